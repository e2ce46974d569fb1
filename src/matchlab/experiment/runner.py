"""Running experiment phases on a stack: seed, calibrate, drive load, record.

Talks to the stack's endpoints only (URLs, Prometheus, broker pause and
resume), so it runs unchanged on every backend. Each phase's client metrics
are remote-written to Prometheus labelled with the run and experiment, and
progress lines (elapsed, achieved rate, client p99, matches/min) go to the
``progress`` callable.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from matchlab.experiment.profiles import ProfileSettings
from matchlab.experiment.record import ExperimentRecord, PhaseRecord
from matchlab.loadgen.calibration import Calibration, calibrate, settled
from matchlab.loadgen.driver import DescribedSource, FlowSpec, PhaseLoad, driver_for
from matchlab.loadgen.fill_forecast import FillForecast, seeds_for
from matchlab.loadgen.flow import STATIONARY, OrderFlow, OrderMix
from matchlab.loadgen.match_rate import AdaptiveRateProfile, MatchRateController
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.remote_write import RemoteWriteExporter
from matchlab.loadgen.run_label import run_label
from matchlab.loadgen.runner import RequestSource
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.targets import direct_targets, flow_source, gateway_targets
from matchlab.promtext import counter_total, scrape, scrape_counter
from matchlab.stack.spec import Topology, app_services
from matchlab.stack.stack import Stack
from matchlab.topology import SHARD_SYMBOLS

CALIBRATION_ORDER_RATE = 40.0
SCRAPE_STEP_S = 5.0  # windows slide by one scrape
FALLBACK_MARGIN = 0.12
# The windows' spread behind the margin is read over this much of the flow (the full profile's judged window):
# a quick phase's few overlapping windows see too little of how fills per order wander.
MARGIN_SPREAD_S = 300.0
# The final scrape after a run must land before verdicts read it: a scrape of every service that began
# after the matcher drained (about half a 5 s interval on average), or this long at most.
SCRAPE_WAIT_S = 12.0
SCRAPED_APPS = frozenset(spec.labels["app"] for spec in app_services(Topology.MULTI))


@dataclass(frozen=True)
class Route:
    """Which shards' symbols a phase trades, and whether through the gateway."""

    shards: tuple[str, ...]
    via_gateway: bool

    @property
    def label(self) -> str:
        return "gateway" if self.via_gateway else f"shard {','.join(self.shards)} direct"


@dataclass
class WindowForecast:
    """The open-loop window's order rate from a fill forecast, once the warm-up has confirmed the forecast."""

    forecast: FillForecast
    matches_per_min: float
    window_s: float
    info: dict = field(default_factory=dict)  # what was forecast and measured; kept in the phase record

    def window_rate(self, orders: float, matches: float) -> float | None:
        """For a steered warm-up, at its end: the window's rate, if the warm-up confirmed the forecast."""
        if not self.check_warmup(orders, matches):
            self.info["used"] = False
            return None
        return self._used(self.forecast.order_rate_for(self.matches_per_min, round(orders), self.window_s))

    def phase_rate(self, guess: float, warmup_s: float) -> float | None:
        """For a phase sent at one rate throughout: chosen before it starts, checked against its warm-up after."""
        return self._used(self.forecast.constant_rate_for(self.matches_per_min, warmup_s, warmup_s + self.window_s,
                                                          guess))

    def check_warmup(self, orders: float, matches: float) -> bool:
        k = round(orders)
        agreed = self.forecast.agrees(k, matches)
        self.info.update(warmup_orders=k, warmup_matches=round(matches), warmup_forecast=self.forecast.fills_of_first(k),
                         agreed=agreed)
        return agreed

    def _used(self, got: tuple[float, float] | None) -> float | None:
        self.info["used"] = got is not None
        if got is None:
            return None
        rate, fills = got
        self.info.update(window_fills_per_order=round(fills, 4), order_rate=round(rate, 2))
        return rate


class ExperimentRunner:
    def __init__(
        self,
        stack: Stack,
        profile: ProfileSettings,
        run_id: str,
        progress: Callable[[str], None] = print,
    ) -> None:
        self.stack = stack
        self.profile = profile
        self.run_id = run_id
        self.progress = progress
        self.calibration: Calibration | None = None
        self._flows = 0
        # For fill forecasts: each shard's last seed (orders, levels per symbol) while no load has touched its
        # books since, and each source's flow rebuilt from its seed (a twin: same orders, own ids).
        self._fresh_seeds: dict[str, tuple[int, int]] = {}
        self._twins: weakref.WeakKeyDictionary[RequestSource, Callable[[], OrderFlow]] = weakref.WeakKeyDictionary()
        self.load_driver = driver_for(stack.backend)  # where each phase's requests are sent from
        # Per experiment: the replica of the seeded books its open-loop rate came from, the phase's start, the rate.
        self.replicas: dict[str, tuple[FillForecast, float, float, int]] = {}  # forecast, start, rate, orders sent

    # -- building blocks ---------------------------------------------------

    def source(self, route: Route, tag: str, mix: OrderMix = STATIONARY, symbols: Sequence[str] | None = None) -> RequestSource:
        ep = self.stack.endpoints
        symbols = list(symbols or [s for shard in route.shards for s in ep.shard_symbols[shard]])
        if route.via_gateway:
            targets = gateway_targets(ep.gateway, list(route.shards), ep.shard_symbols)
        else:
            targets = direct_targets({s: ep.shards[s] for s in route.shards}, ep.shard_symbols)
        self._flows += 1
        # Each flow its own ids: shards de-duplicate by orderId, and tags (e.g. "cal") recur within a run.
        prefix = f"{self.run_id}-{tag}-{self._flows}-"
        source = flow_source(OrderFlow(symbols, mix, seed=self._flows, id_prefix=prefix), targets)
        # A FlowSpec is rebuilt elsewhere from the standard symbol map: a flow over other symbols, or over a layout
        # with the symbols re-spread (--max-shards K), is not the generator's own choice, and only this
        # process can draw it.
        if not (any(ep.shard_symbols[shard] != SHARD_SYMBOLS.get(shard) for shard in route.shards) or
                symbols != sorted(s for shard in route.shards for s in SHARD_SYMBOLS.get(shard, ()))):
            source = DescribedSource(source, ((1.0, FlowSpec(tuple(route.shards), route.via_gateway, self._flows, mix)),))
        self._twins[source] = lambda seed=self._flows: OrderFlow(symbols, mix, seed=seed, id_prefix="twin-")
        return source

    def reset_and_seed(self, shards: Sequence[str], count: int, levels: int, per_shard: dict | None = None) -> str:
        """Empty the books, then seed them (so every experiment starts from a known book)."""
        for shard in shards:
            self.stack.reset_shard(shard)
        ep = self.stack.endpoints
        seeded = seed_books({s: ep.shards[s] for s in shards}, ep.shard_symbols, count, levels,
                            token=ep.admin_token, per_shard=per_shard)
        seeds = {s: (per_shard or {}).get(s, (count, levels)) for s in shards}
        self._fresh_seeds.update(seeds)
        detail = ", ".join(f"{s}: {n}/{lv}" for s, (n, lv) in seeds.items())
        return f"{sum(seeded.values())} resting orders ({detail} per symbol)"

    def match_count(self, shards: Sequence[str]) -> float:
        return scrape_counter([self.stack.endpoints.shard_metrics[s] for s in shards])

    def calibrate(self, route: Route) -> Calibration:
        """Measure fills per order of the stationary flow against the real target."""
        self._fresh_seeds.clear()
        self.calibration = calibrate(
            self.source(route, "cal"), lambda: self.match_count(route.shards), CALIBRATION_ORDER_RATE,
            self.profile.calibration_s,
        )
        self.progress(
            f"calibration: {self.calibration.fills_per_order:.3f} fills/order over {self.calibration.orders_ok} orders "
            f"({route.label})"
        )
        return self.calibration

    def recalibrate_from(self, phase: PhaseRecord, matches: float) -> Calibration:
        """A longer measured phase gives a better fills-per-order estimate than the calibration run."""
        if phase.load.ok and matches > 0:
            self.calibration = Calibration(phase.order_rate, phase.load.ok, matches, matches / phase.load.ok)
            self.progress(f"recalibrated from {phase.name}: {self.calibration.fills_per_order:.3f} fills/order")
        return self.calibration

    def order_rate(self, matches_per_min: float) -> float:
        if self.calibration is None:
            raise RuntimeError("calibrate before converting a match rate to an order rate")
        return self.calibration.order_rate_for(matches_per_min)

    # -- one phase of load ------------------------------------------------------

    def drive(
        self,
        experiment: ExperimentRecord,
        phase: str,
        route: Route,
        load: LoadProfile,
        source: RequestSource,
        matches_per_min: float | None,
        events: Sequence[tuple[float, Callable[[], None]]] = (),
        marks: dict[str, float] | None = None,
        start_at: float | None = None,
        quiet: bool = False,
    ) -> PhaseRecord:
        """Run one load phase; ``events`` are (offset_s, action) fired during it (e.g. broker pause).

        ``start_at``: the Unix time the schedule's t=0 should fall on (an arm aligned to the scrape grid);
        never earlier than the load driver can start.

        ``marks`` name offsets into the phase; the record keeps them as absolute
        times. "measured" (where the verdicts' window begins) defaults to the
        profile's warm-up exclusion.

        ``quiet``: no progress lines while it runs (they query Prometheus from this process), so a capacity
        step holds nothing of the harness's but the load itself.
        """
        self._fresh_seeds.clear()  # from now on the books hold what this phase's orders left
        labels = {"run": run_label(self.run_id), "experiment": experiment.id, "phase": phase}
        exporter = RemoteWriteExporter(self.stack.endpoints.remote_write, dict(labels))
        offsets = {"measured": self.profile.warmup_exclusion_s, **(marks or {})}
        exporter.window = "warm-up" if offsets["measured"] > 0 else "measured"
        windows = [(at, lambda name=name: setattr(exporter, "window", name)) for name, at in offsets.items()]
        # The driver decides when the schedule's t=0 is (pods elsewhere need a lead); events follow it.
        start = max(self.load_driver.schedule_start(), start_at or 0.0)
        lead = max(0.0, start - time.time())
        timers = [threading.Timer(lead + at, action) for at, action in [*events, *windows]]
        label = f"{experiment.id}/{phase}" if phase != experiment.id else experiment.id
        latest: dict = {}
        done = threading.Event()

        def report_progress() -> None:
            # Its own thread: a Prometheus query on the load's event loop would stall
            # the client and show up in its own latency.
            while not done.wait(self.profile.progress_every_s):
                snap = dict(latest)
                if snap:
                    self.progress(
                        f"[{label}] {snap['elapsed_s']:5.0f}/{load.duration_s:.0f} s | target {snap['target_rate']:7.1f} "
                        f"orders/s | sent {snap['sent']:>7} errors {snap['errors']} dropped {snap['dropped']} | "
                        f"client p99 {snap['p99_ms']:7.2f} ms | matches/min {self._matches_per_minute()}"
                    )

        reporter = threading.Thread(target=report_progress, name="progress", daemon=True)
        for t in [*timers, *([] if quiet else [reporter])]:
            t.start()
        if lead and start_at is None:
            self.progress(f"[{label}] load from {self.load_driver.name}: starts in {lead:.0f} s")
        try:
            result = self.load_driver.run(PhaseLoad(experiment.id, phase, load, source, start, labels, exporter,
                                                    latest.update, self.stack.endpoints))
        finally:
            done.set()
            for t in timers:
                t.cancel()
            if not quiet:
                reporter.join()
        end = time.time()
        record = PhaseRecord(phase, start, end, matches_per_min, load.expected_requests() / load.duration_s,
                             list(route.shards), result, {k: start + v for k, v in offsets.items()})
        experiment.phases.append(record)
        self.progress(f"[{label}] done: {result.summary_line()}")
        return record

    def drive_matches(
        self,
        experiment: ExperimentRecord,
        phase: str,
        route: Route,
        matches_per_min: float,
        duration_s: float,
        source: RequestSource,
        events: Sequence[tuple[float, Callable[[], None]]] = (),
        steer_for_s: float | None = None,
    ) -> PhaseRecord:
        """A phase at a target match rate: calibrated start, then steered by measured fills per order.

        With ``steer_for_s`` the controller steers only for that long (the
        warm-up); the rest of the phase runs open loop at the order rate fixed
        then, marked "measured" in the record, so a criterion judges a window
        the load did not steer.
        """
        if not self.load_driver.steers_live:
            return self._drive_unsteered(experiment, phase, route, matches_per_min, duration_s, source, events,
                                         steer_for_s)
        load = AdaptiveRateProfile(self.order_rate(matches_per_min), duration_s)
        forecast = self._window_forecast(source, matches_per_min, duration_s, steer_for_s)
        controller = MatchRateController(load, matches_per_min, lambda: self.counters(route.shards)).start()
        fixed: list[float] = []

        def freeze() -> None:
            fixed.append(controller.hold_steady(forecast.window_rate if forecast else None))
            how = (f" (forecast: the window's orders make {forecast.info['window_fills_per_order']:.3f} fills per order)"
                   if forecast and forecast.info.get("used") else "")
            self.progress(f"[{experiment.id}/{phase}] warm-up over: open loop at {load.rate:,.1f} orders/s from here{how}")

        timed = [(steer_for_s, freeze)] if steer_for_s is not None else []
        marks = {"measured": steer_for_s} if steer_for_s is not None else None
        try:
            record = self.drive(experiment, phase, route, load, source, matches_per_min, [*events, *timed], marks)
        finally:
            controller.stop()
        if fixed:
            record.extra["fixed_order_rate"] = fixed[0]
        if forecast:
            record.extra["fill_forecast"] = forecast.info
        experiment.extra.setdefault("rate_control", {})[phase] = [
            {"t": round(t, 1), "fills_per_order": round(f, 4), "order_rate": round(r, 2)}
            for t, f, r in controller.adjustments
        ]
        return record

    def drive_at_margin(self, experiment: ExperimentRecord, phase: str, route: Route, bar_per_min: float,
                        duration_s: float, warmup_s: float, source: RequestSource, sigmas: float) -> PhaseRecord:
        """Open loop at one rate from the start, chosen before the phase: the lowest rate at which every trailing
        ``rate_window_s`` window of the orders the schedule sends after ``warmup_s`` makes ``bar_per_min`` plus
        ``sigmas`` standard deviations of the windows' spread over ``MARGIN_SPREAD_S`` of the flow, as a replica of
        the freshly seeded books forecasts.
        Without a replica (a flow the harness cannot rebuild) the calibrated rate is raised by the same margin
        as the replica would (12 %, about three standard deviations of a 30 s window here), and said so.
        The replica is kept (``replicas``) so the verdicts can count the fills the orders sent should make."""
        guess = self.order_rate(bar_per_min)
        twin = self._twins.get(source)
        seeds = seeds_for(twin().symbols, self.stack.endpoints.shard_symbols, self._fresh_seeds) if twin else None
        window = float(self.profile.rate_window_s)
        offered: dict = {"sigmas": sigmas}
        forecast = None
        if twin is not None and seeds is not None:
            forecast = FillForecast(twin(), seeds)
            try:
                rate, mean, sd, lowest = forecast.margin_rate_for(bar_per_min, warmup_s, duration_s, window,
                                                                  SCRAPE_STEP_S, sigmas, guess, MARGIN_SPREAD_S)
                offered.update(mean=mean, sd=sd, minimum=lowest, forecast=True,
                               spread_over_s=max(MARGIN_SPREAD_S, duration_s - warmup_s))
            except ValueError as exc:  # a flow that hardly fills: said, and the calibrated rate's margin used
                self.progress(f"[{experiment.id}/{phase}] {exc}")
                forecast = None
        if forecast is None:
            rate = guess * (1 + FALLBACK_MARGIN)
            offered.update(mean=bar_per_min * (1 + FALLBACK_MARGIN), sd=0.0, minimum=0.0, forecast=False)
        self.progress(f"[{experiment.id}/{phase}] open loop at {rate:,.1f} orders/s: "
                      + (f"the replica forecasts {offered['mean']:,.0f} matches/min per {window:g} s window (sd "
                         f"{offered['sd']:,.0f}, lowest {offered['minimum']:,.0f})" if forecast else
                         f"no replica of this flow: the calibrated rate plus {FALLBACK_MARGIN:.0%}"))
        record = self.drive(experiment, phase, route, LoadProfile.constant(rate, duration_s), source, bar_per_min,
                            marks={"measured": warmup_s})
        record.extra["fixed_order_rate"] = rate
        record.extra["offered"] = offered
        if forecast is not None:
            self.replicas[experiment.id] = (forecast, record.start, rate, record.load.scheduled)
        return record

    def _window_forecast(self, source: RequestSource, matches_per_min: float, duration_s: float,
                         steer_for_s: float | None) -> WindowForecast | None:
        """A forecast of the open-loop window's fills, where the source is a known flow on freshly seeded books."""
        twin = self._twins.get(source)
        if twin is None or steer_for_s is None or steer_for_s >= duration_s:
            return None
        flow = twin()
        seeds = seeds_for(flow.symbols, self.stack.endpoints.shard_symbols, self._fresh_seeds)
        if seeds is None:
            return None
        forecast = FillForecast(flow, seeds)
        # Replay the orders a phase of this length may send now, so the freeze only looks them up.
        forecast.fills_of_first(math.ceil(self.order_rate(matches_per_min) * duration_s * 1.5))
        return WindowForecast(forecast, matches_per_min, duration_s - steer_for_s)

    def _drive_unsteered(self, experiment: ExperimentRecord, phase: str, route: Route, matches_per_min: float,
                         duration_s: float, source: RequestSource, events: Sequence[tuple[float, Callable[[], None]]],
                         steer_for_s: float | None) -> PhaseRecord:
        """A match-rate phase whose senders cannot be steered while it runs: one order rate throughout, the
        forecast's where there is one (checked against the warm-up's matches when it ends), else the calibrated."""
        marks = {"measured": steer_for_s} if steer_for_s is not None else None
        rate = self.order_rate(matches_per_min)
        forecast = self._window_forecast(source, matches_per_min, duration_s, steer_for_s)
        forecast_rate = forecast.phase_rate(rate, steer_for_s) if forecast else None
        if forecast_rate:
            before = self.counters(route.shards)

            def check() -> None:
                matches, orders = self.counters(route.shards)
                forecast.check_warmup(orders - before[1], matches - before[0])

            events = [*events, (steer_for_s, check)]
        record = self.drive(experiment, phase, route, LoadProfile.constant(forecast_rate or rate, duration_s),
                            source, matches_per_min, events, marks)
        record.extra["fixed_order_rate"] = record.order_rate
        record.extra["steered"] = False  # the verdicts' details say how the one rate was chosen
        if forecast:
            record.extra["fill_forecast"] = forecast.info
        experiment.extra.setdefault("rate_control", {})[phase] = []
        how = "as the fill forecast chose it" if forecast_rate else "as calibrated"
        experiment.notes.append(f"{phase}: not steered to the match rate (load from {self.load_driver.name} fixes a "
                                f"phase's rate when it starts): {record.order_rate:,.1f} orders/s {how}")
        return record

    def counters(self, shards: Sequence[str]) -> tuple[float, float]:
        """(matches, accepted orders) summed over the shards' own /metrics pages."""
        matches = orders = 0.0
        for shard in shards:
            text = scrape(self.stack.endpoints.shard_metrics[shard])
            matches += counter_total(text, "me_matches")
            orders += counter_total(text, "me_orders_received")
        return matches, orders

    def _matches_per_minute(self) -> str:
        try:
            value = self.stack.prometheus().scalar("me:matches_per_minute_total:30s")
        except Exception:  # progress is best effort; verdicts do the strict reading
            return "?"
        return "n/a" if value is None else f"{value:,.0f}"

    def settle(self, shards: Sequence[str], wait_for_scrape: bool = True) -> float:
        """Wait for the matcher to drain (and the last scrape to land); return the shards' match count."""
        count = settled(lambda: self.match_count(shards))
        if wait_for_scrape and not self.stack.prometheus().wait_for_scrapes(
                lambda labels: labels.get("app") in SCRAPED_APPS, SCRAPE_WAIT_S):
            self.progress(f"warning: Prometheus did not scrape every service within {SCRAPE_WAIT_S:g} s of the "
                          "load's end; verdicts may miss its last seconds")
        return count
