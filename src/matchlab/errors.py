"""Every exception the project raises on purpose, in one flat module."""

from __future__ import annotations


class MatchlabError(Exception):
    """Base of all project errors."""


class ConfigError(MatchlabError):
    """A setting (environment variable, option, map) is missing or malformed."""


class QueueFullError(MatchlabError):
    """The shard's bounded matching queue is full; the caller should back off."""


class WaitTimeoutError(MatchlabError):
    """Something awaited did not happen in time; the message says what, where and why."""

    def __init__(self, what: str, timeout: float, last_error: str = "", hint: str = "", log_tail: str = "") -> None:
        self.what = what
        self.last_error = last_error
        self.log_tail = log_tail
        lines = [f"timed out after {timeout:g}s waiting for {what}"]
        if last_error:
            lines.append(f"last error: {last_error}")
        if hint:
            lines.append(f"hint: {hint}")
        if log_tail:
            lines.append("log tail:\n" + log_tail)
        super().__init__("\n".join(lines))


class ProcessError(MatchlabError):
    """A managed process could not be started, or died when it should be running."""


class PrerequisiteError(MatchlabError):
    """A tool or binary the run needs is missing; the message says how to install it."""


class UsageError(MatchlabError):
    """Command-line arguments or options that do not fit together."""


class SeedError(MatchlabError):
    """A seed request was refused; the message carries the server's reason."""


class CalibrationError(MatchlabError):
    """A calibration run could not measure a usable fills-per-order ratio."""


class QueryError(MatchlabError):
    """Prometheus refused or failed a query; the message names the query."""


class CommandError(MatchlabError):
    """An external command failed; the message has the command, exit code and output tail."""
