"""free_port never hands out one port twice: a port given to a service is free until that service binds it."""

from __future__ import annotations

import socket

import pytest

from matchlab import ports


def offering(monkeypatch, offers: list[int]) -> None:
    """The OS offers ``offers`` in order."""
    it = iter(offers)
    monkeypatch.setattr(ports, "offered_port", lambda _host: next(it))


@pytest.fixture()
def fresh_ledger(monkeypatch):
    monkeypatch.setattr(ports, "_handed_out", set())


def test_a_port_offered_again_before_it_is_bound_is_refused(monkeypatch, fresh_ledger):
    offering(monkeypatch, [41000, 41000, 41000, 41001])
    assert [ports.free_port(), ports.free_port()] == [41000, 41001]


def test_ports_to_avoid_are_never_handed_out(monkeypatch, fresh_ledger):
    offering(monkeypatch, [42000, 42001])
    assert ports.free_port(avoid=(42000,)) == 42001


def test_running_out_of_new_ports_is_a_clear_error(monkeypatch, fresh_ledger):
    offering(monkeypatch, [43000] * (ports.ATTEMPTS + 1))
    ports.free_port()
    with pytest.raises(OSError, match="already handed out"):
        ports.free_port()


def test_real_ports_are_distinct_and_bindable(fresh_ledger):
    handed = [ports.free_port() for _ in range(50)]
    assert len(set(handed)) == len(handed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", handed[-1]))
