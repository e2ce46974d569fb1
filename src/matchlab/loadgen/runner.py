"""The open-model runner: send on schedule, measure from the schedule.

Requests leave at the profile's due times whether or not earlier ones have
answered. A cap on requests in flight protects the client: a request due
while the cap is reached is counted as dropped (k6's ``dropped_iterations``),
never silently skipped or delayed. Latency runs from the due time, so a
stalled server shows up in full in the percentiles.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from matchlab.http1 import Upstreams
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.remote_write import RemoteWriteExporter
from matchlab.loadgen.results import LoadResult, Recorder
from matchlab.loadgen.timerfd import MonotonicTimer, open_timer
from matchlab.service import GIL_SWITCH_INTERVAL_S, event_loop_runner

DEFAULT_MAX_IN_FLIGHT = 1000
REQUEST_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 2.0
# Event-loop timers round to whole milliseconds (uvloop even fires up to 1 ms
# early). On Linux a timerfd wakes the loop itself at each due time
# (``matchlab.loadgen.timerfd``); elsewhere a pacer thread sleeps to each due
# time with the OS's precise sleep and hands the request to the loop, in
# slices so that a cancelled run stops promptly.
PACER_SLICE_S = 0.1
PROGRESS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Request:
    """One request: where it goes, under which target label, with which JSON body."""

    target: str
    url: str
    body: bytes


# A source of requests; called once per scheduled slot.
RequestSource = Callable[[], Request]


def json_request(target: str, url: str, doc: dict) -> Request:
    return Request(target, url, orjson.dumps(doc))


class OpenModelRunner:
    """Runs one profile against one request source; reusable across runs."""

    def __init__(
        self,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        progress: Callable[[dict], None] | None = None,
        exporter: RemoteWriteExporter | None = None,
        use_timerfd: bool = True,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.request_timeout_s = request_timeout_s
        self.progress = progress
        self.exporter = exporter
        self.use_timerfd = use_timerfd
        self.recorder = Recorder()

    async def run(self, profile: LoadProfile, source: RequestSource) -> LoadResult:
        rec = self.recorder = Recorder()
        upstreams = Upstreams(self.max_in_flight, self.request_timeout_s, CONNECT_TIMEOUT_S)
        loop = asyncio.get_running_loop()
        clock = time.perf_counter  # uvloop's loop.time() has only millisecond resolution
        in_flight = 0
        pending: set[asyncio.Task] = set()
        cpu0 = time.process_time()
        # Everything alive now (a whole pytest session, when the harness runs this) stays out of the
        # collector's reach for the run: a full collection over it pauses the schedule for as long as it takes.
        gc.freeze()
        push_task = None
        if self.exporter is not None:
            rec.listeners.append(self.exporter)
            push_task = loop.create_task(self.exporter.push_forever())
        # The pacer thread must get the GIL back promptly after each sleep.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

        post_status = upstreams.post_status

        async def send(req: Request, due: float, second: int) -> None:
            nonlocal in_flight
            try:
                status = await post_status(req.url, req.body)
            finally:
                in_flight -= 1
            rec.on_done(second, req.target, status, int((clock() - due) * 1e6))

        def fire(due: float, offset: float) -> None:
            nonlocal in_flight, next_progress
            second = int(offset)
            rec.on_scheduled(second)
            if in_flight >= self.max_in_flight:
                rec.on_dropped(second)
                return
            req = source()
            in_flight += 1
            rec.on_sent(second, int((clock() - due) * 1e6))
            task = loop.create_task(send(req, due, second))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if self.progress is not None and clock() >= next_progress:
                next_progress += PROGRESS_INTERVAL_S
                self.progress(self._snapshot(clock() - start, profile, rec, in_flight))

        start = clock() + 0.01  # a moment for the pacer to start
        next_progress = start + PROGRESS_INTERVAL_S
        stop = threading.Event()
        timer = open_timer() if self.use_timerfd else None
        if timer is not None:
            pacer = self._pace_on_loop(profile, start, loop, fire, timer)
        else:
            pacer = loop.run_in_executor(None, self._pace, profile, start, loop, fire, stop)
        try:
            await pacer
            await asyncio.sleep(0)  # run the last fire() callbacks
            # The schedule is over; let what is in flight finish (bounded by the request timeout).
            if pending:
                await asyncio.wait(set(pending), timeout=self.request_timeout_s + 1)
        finally:
            stop.set()
            if timer is not None:
                loop.remove_reader(timer.fd)
                timer.close()
            sys.setswitchinterval(switch_interval)
            for task in list(pending):
                task.cancel()
            if push_task is not None:
                push_task.cancel()
                await asyncio.gather(push_task, return_exceptions=True)
            upstreams.close()
            gc.unfreeze()
        elapsed = profile.duration_s
        return rec.result(profile.expected_requests() / elapsed, elapsed, time.process_time() - cpu0)

    @staticmethod
    def _pace_on_loop(profile: LoadProfile, start: float, loop, fire, timer: MonotonicTimer) -> asyncio.Future:
        """Fire each slot from the loop when the timerfd says it is due; the future resolves after the last."""
        finished = loop.create_future()
        offsets = iter(profile.send_offsets())
        upcoming = next(offsets, None)
        clock = time.perf_counter

        def due_slots() -> None:
            nonlocal upcoming
            if finished.done():
                return
            try:
                timer.clear()
                while upcoming is not None and start + upcoming <= clock():
                    fire(start + upcoming, upcoming)
                    upcoming = next(offsets, None)
                if upcoming is None:
                    finished.set_result(None)
                else:
                    timer.arm(start + upcoming)
            except Exception as exc:  # noqa: BLE001 - e.g. a failing request source: the run ends with it, never hangs
                finished.set_exception(exc)

        loop.add_reader(timer.fd, due_slots)
        if upcoming is None:
            finished.set_result(None)
        else:
            timer.arm(start + upcoming)
        return finished

    @staticmethod
    def _pace(profile: LoadProfile, start: float, loop, fire, stop: threading.Event) -> None:
        """Pacer thread: wake at each due time and hand the slot to the event loop."""
        clock = time.perf_counter
        for offset in profile.send_offsets():
            due = start + offset
            while (delay := due - clock()) > 0:
                if stop.is_set():
                    return
                time.sleep(min(delay, PACER_SLICE_S))
            if stop.is_set():
                return
            loop.call_soon_threadsafe(fire, due, offset)

    @staticmethod
    def _snapshot(elapsed: float, profile: LoadProfile, rec: Recorder, in_flight: int) -> dict:
        return {
            "elapsed_s": elapsed,
            "remaining_s": max(0.0, profile.duration_s - elapsed),
            "target_rate": profile.rate_at(elapsed),
            "sent": rec.sent,
            "ok": rec.ok,
            "errors": sum(rec.statuses.values()),
            "dropped": rec.dropped,
            "in_flight": in_flight,
            "p99_ms": rec.overall.get_value_at_percentile(99) / 1000.0 if rec.overall.get_total_count() else 0.0,
        }


def run_load(
    profile: LoadProfile,
    source: RequestSource,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    progress: Callable[[dict], None] | None = None,
    exporter: RemoteWriteExporter | None = None,
    use_timerfd: bool = True,
) -> LoadResult:
    """Blocking convenience for scripts and fixtures: one run on a fresh event loop."""
    runner = OpenModelRunner(max_in_flight, progress=progress, exporter=exporter, use_timerfd=use_timerfd)
    return event_loop_runner()(runner.run(profile, source))
