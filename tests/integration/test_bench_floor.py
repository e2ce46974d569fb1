"""benchmarks/bench_floor.py: its framing, and one short scenario over real processes and sockets."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_floor.py"


@pytest.fixture(scope="module")
def floor():
    spec = importlib.util.spec_from_file_location("bench_floor", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_messages_frames_by_content_length_and_keeps_the_rest(floor):
    buf = bytearray(floor.REQUEST + floor.REPLY + floor.REQUEST[:30])
    assert floor.split_messages(buf) == [floor.REQUEST, floor.REPLY]
    assert bytes(buf) == floor.REQUEST[:30]  # a partial message waits for its bytes
    buf += floor.REQUEST[30:-1]
    assert floor.split_messages(buf) == []  # the head is complete, the body one byte short
    buf += floor.REQUEST[-1:]
    assert floor.split_messages(buf) == [floor.REQUEST] and not buf


def test_a_proxied_scenario_serves_every_scheduled_request_and_prints_each_process(floor, tmp_path, capsys):
    floor.scenario("client -> proxy -> 3 servers + fsync", 300, 1.0, str(tmp_path / "j"), servers=3, proxied=True)
    line = capsys.readouterr().out
    assert "ok 300 unanswered 0" in line, line
    cells = dict(re.findall(r"(client|proxy|server\d) +(\d+) \(", line))
    assert set(cells) == {"client", "proxy", "server1", "server2", "server3"}, line
    assert all(int(v) > 0 for v in cells.values()), line
    # Each server fsync'd its own file, one 200-byte record per request it handled (a third each).
    # The warm-up's 600 requests and the window's 300, dealt round-robin.
    sizes = [(tmp_path / f"j.{i}").stat().st_size for i in range(3)]
    assert sizes == [300 * len(floor.RECORD)] * 3
