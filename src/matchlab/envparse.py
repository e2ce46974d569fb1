"""Reading typed settings from an environment mapping, with errors that name the variable."""

from __future__ import annotations

from collections.abc import Mapping

from matchlab.errors import ConfigError


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def env_port(env: Mapping[str, str], name: str, default: int) -> int:
    port = env_int(env, name, default)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be a TCP port (0-65535), got {port}")
    return port


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def env_seconds(env: Mapping[str, str], name: str, default: float, minimum: float = 0.001) -> float:
    """A duration in seconds (fractions allowed), at least ``minimum``."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value >= minimum:  # also refuses NaN
        raise ConfigError(f"{name} must be >= {minimum:g} seconds, got {raw!r}")
    return value
