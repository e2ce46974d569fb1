"""Reading typed settings from an environment mapping, with errors that name the variable."""

from __future__ import annotations

from collections.abc import Mapping

from matchlab.errors import ConfigError


def _parse(env: Mapping[str, str], name: str, convert, expected: str):
    """``convert(raw)`` of a set variable, None for an unset or blank one; an error names the variable."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return convert(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {expected}, got {raw!r}") from None


def note_default(env: Mapping[str, str], name: str, default: object) -> None:
    """Tell an environment that records what a configuration reads (``matchlab.docs_reference``) the value
    ``name`` falls back to; an ordinary mapping has no ``note_default`` and is left alone."""
    note = getattr(env, "note_default", None)
    if note is not None:
        note(name, default)


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    note_default(env, name, default)
    value = _parse(env, name, int, "an integer")
    if value is None:
        return default
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def env_port(env: Mapping[str, str], name: str, default: int) -> int:
    port = env_int(env, name, default)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be a TCP port (0-65535), got {port}")
    return port


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    note_default(env, name, default)
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
    note_default(env, name, default)
    value = _parse(env, name, float, "a number of seconds")
    if value is None:
        return default
    if not value >= minimum:  # also refuses NaN
        raise ConfigError(f"{name} must be >= {minimum:g} seconds, got {env[name]!r}")
    return value
