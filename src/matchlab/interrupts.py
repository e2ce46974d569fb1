"""A Ctrl-C deferred until a step that must not be cut in half has finished.

Some calls leave something running that the caller can only clean up if the
call returns: ``Popen`` interrupted after its fork returns no handle to the
child it started; a Docker engine that received a create request goes on to
create the container after its client gave up waiting. Such calls run inside
``interrupt_after``, and the interrupt is raised when they return, with what
they made already recorded.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interrupt_after() -> Iterator[None]:
    """A Ctrl-C while the body runs is raised when it ends. (Signal handlers belong to the main thread:
    elsewhere the body runs as it is.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
