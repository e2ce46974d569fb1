"""The admin-token rules in isolation: which paths, which answers, which settings."""

from __future__ import annotations

import pytest

from matchlab.admin_auth import NOT_CONFIGURED, bearer, check, is_protected, new_token, token_from_env
from matchlab.errors import ConfigError
from matchlab.gateway.config import GatewayConfig
from matchlab.loadgen.__main__ import main as loadgen_main
from matchlab.shard.config import ShardConfig

TOKEN = new_token()


@pytest.mark.parametrize(("path", "protected"), [
    ("/seed", True), ("/seed/a", True), ("/admin/reset", True), ("/admin/stats", True),
    ("/orders", False), ("/health", False), ("/metrics", False), ("/book/TEST-ASSET-A", False),
])
def test_protected_paths(path, protected):
    assert is_protected(path) is protected


@pytest.mark.parametrize(("configured", "header", "status"), [
    (None, f"Bearer {TOKEN}", 401),
    (TOKEN, None, 401),
    (TOKEN, "", 401),
    (TOKEN, f"Basic {TOKEN}", 401),
    (TOKEN, "Bearer ", 401),
    (TOKEN, f"Bearer {TOKEN}x", 403),
    (TOKEN, f"Bearer {TOKEN[:-1]}", 403),
    (TOKEN, f"Bearer {TOKEN}", None),
    (TOKEN, f"bearer {TOKEN}", None),
])
def test_answers(configured, header, status):
    refused = check(configured, header)
    assert (refused.status if refused is not None else None) == status
    if refused is not None:
        assert TOKEN.encode() not in refused.body


def test_unset_token_means_admin_off_with_a_reason():
    assert token_from_env({}) is None and token_from_env({"ADMIN_TOKEN": "  "}) is None
    assert "ADMIN_TOKEN" in NOT_CONFIGURED
    assert bearer(None) == {} and bearer(TOKEN) == {"Authorization": f"Bearer {TOKEN}"}


def test_short_token_is_a_config_error_that_does_not_echo_it():
    with pytest.raises(ConfigError, match="too short") as err:
        token_from_env({"ADMIN_TOKEN": "hunter2"})
    assert "hunter2" not in str(err.value)


def test_configs_carry_the_token_but_never_print_it():
    shard = ShardConfig.from_env({"ADMIN_TOKEN": TOKEN})
    gateway = GatewayConfig.from_env({"ADMIN_TOKEN": TOKEN})
    assert shard.admin_token == gateway.admin_token == TOKEN
    assert TOKEN not in repr(shard) and TOKEN not in repr(gateway)


def test_loadgen_seeding_without_a_token_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    code = loadgen_main(["--shard", "a=http://127.0.0.1:9", "--seed-books", "5/1", "--rate", "1", "--duration", "1"])
    assert code == 2 and "--seed-books needs the services' admin token in the ADMIN_TOKEN" in capsys.readouterr().err
