"""A nanosecond timer the event loop can wait on: Linux's timerfd, armed at absolute monotonic times.

The loop's own timers round to whole milliseconds (uvloop even fires up to 1 ms early), which an
open-model schedule cannot use. Sleeping to each due time in a thread and handing the slot over
costs that thread's wake-up, the GIL changing hands and the loop's self-pipe, per request. A timerfd
registered with the loop as a reader wakes the loop itself at the due time: one wake-up per slot.

``time.perf_counter`` reads CLOCK_MONOTONIC on Linux (checked at start), so due times in its
seconds arm the timer directly. Where there is no timerfd (another OS, no libc symbol), ``open_timer``
returns None and the caller keeps its thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time

CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or "CLOCK_MONOTONIC" not in time.get_clock_info("perf_counter").implementation:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return libc


class MonotonicTimer:
    """One timerfd: ``arm(at)`` makes ``fd`` readable at ``at`` (perf_counter seconds); ``clear()`` after each wake."""

    def __init__(self, libc: ctypes.CDLL) -> None:
        self._libc = libc
        self._spec = _Itimerspec()
        self.fd = libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")

    def arm(self, at: float) -> None:
        seconds = int(at)
        # A zero it_value would disarm the timer: a time in the past fires at once, so 1 ns will do.
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = seconds, max(1, int((at - seconds) * 1e9))
        if self._libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def clear(self) -> None:
        try:
            os.read(self.fd, 8)  # the expiry count; reading it makes the fd unreadable until the next expiry
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_timer() -> MonotonicTimer | None:
    """A timerfd if this system has one, else None."""
    libc = _libc()
    if libc is None:
        return None
    try:
        return MonotonicTimer(libc)
    except OSError:
        return None
