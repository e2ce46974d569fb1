"""The one way to wait: poll a check on a monotonic clock until it holds or time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from matchlab.errors import WaitTimeoutError

T = TypeVar("T")

DEFAULT_INTERVAL_S = 0.1


def wait_until(
    check: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = DEFAULT_INTERVAL_S,
    hint: str = "",
    log_tail: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns a truthy value (returned) or ``timeout`` passes.

    Exceptions from ``check`` count as "not yet" and the last one is reported.
    The timeout error names what was awaited, the last error, a hint and the
    tail of the relevant log.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
        except Exception as exc:  # a probe failing is the normal "not ready yet"
            last_error = exc
        else:
            if result:
                return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeoutError(
                what=what,
                timeout=timeout,
                last_error=f"{type(last_error).__name__}: {last_error}" if last_error else "",
                hint=hint,
                log_tail=log_tail() if log_tail else "",
            )
        time.sleep(min(interval, remaining))
