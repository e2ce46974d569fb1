"""Every ASR criterion, by stable id: the one list the suite, ``check``, the report and the tests use.

What an ASR expects is derived from here (``expected``), never counted by
hand, and criteria are looked up by id, never by their display text. A few
thresholds depend on the profile (the sustained stretch), so the registry is
built for one.
"""

from __future__ import annotations

from matchlab.experiment.profiles import ProfileSettings
from matchlab.observe.verdicts import DURATION, LATENCY, RATIO, AsrRule, Criterion, Role

ASR1, ASR2 = "ASR 1", "ASR 2"
CALIBRATION = "calibration"  # shams and known effects: they check the comparisons, and belong to no ASR
P99_BAR_S = 0.2
P99_SECONDARY_S = 0.05
MAX_ERROR_RATIO = 0.01
ASR2_BAR = 4750.0
SCALING_FACTOR = 0.9
DECOUPLING_RATIO = 0.10
ISOLATION_RATIO = 0.05
OUTAGE_ORDERS_RATIO = 0.9  # the outage window must hold >= 90 % of the orders the schedule sent
EVENTS_AGREE_RATIO = 0.01  # Prometheus' match count and the topic's events agree within 1 %
REPLICA_AGREEMENT = 0.02  # the shards' fills and a replica's for the orders sent agree within 2 %
MAX_QUEUE_FILL = 0.01  # "near empty": at most 1 % of the matcher's queue in use at any scrape
MAX_DEPTH_FACTOR = 3.0  # a stationary book stays within 3x of its starting depth, either way, on each side
MIN_HOT_SHARE = 0.75  # B4: 80 % of orders to one symbol of shard a (plus a's share of the rest)
MIN_LOAD_RISE_RATIO = 0.9  # B5: shard b got >= 90 % of its planned orders
MAX_MEMORY_GROWTH = 0.05
A3_DEPTHS = ((100, 10), (1000, 100), (10_000, 500))
SHARDS = ("a", "b", "c")

RULES = {
    ASR1: AsrRule(ASR1, frozenset({Role.PRIMARY, Role.ERROR_RATE, Role.DECOUPLING}), frozenset({Role.SECONDARY})),
    ASR2: AsrRule(ASR2, frozenset({Role.PRIMARY, Role.SCALING, Role.PEAK_LATENCY, Role.ERROR_RATE}),
                  frozenset({Role.ISOLATION, Role.MEMORY, Role.SECONDARY})),
}


def depth_name(count: int, levels: int) -> str:
    return f"{count}/{levels}"


def build(profile: ProfileSettings) -> dict[str, Criterion]:
    c: list[Criterion] = []

    def add(id_: str, asr: str, exp: str, name: str, role: Role, cmp: str, threshold: float, unit: str = "",
            measures: str = "") -> None:
        c.append(Criterion(id_, asr, exp, name, role, cmp, threshold, unit, measures))

    queue = "highest fill of the matcher's bounded queue at any scrape in the window"
    depth = ("how far each side's resting orders moved from their level at the window's start (x times, "
             "either way; an empty side is infinitely far)")
    # ASR 1
    add("A2.p99", ASR1, "A2", "p99 match latency (shard a)", Role.PRIMARY, "<", P99_BAR_S, LATENCY,
        "server-side p99, HTTP receipt to match result, over the run minus its warm-up")
    add("A2.p99_secondary", ASR1, "A2", "p99 match latency, secondary bar", Role.SECONDARY, "<", P99_SECONDARY_S,
        LATENCY, "the same p99 against the 50 ms bar")
    add("A2.error_rate", ASR1, "A2", "error rate", Role.ERROR_RATE, "<", MAX_ERROR_RATIO, RATIO,
        "the larger of the client's and the server's non-200 share; they must agree within 1 point")
    add("A2.queue", ASR1, "A2", "matcher queue near empty", Role.PRECONDITION, "<=", MAX_QUEUE_FILL, RATIO, queue)
    add("A2.depth", ASR1, "A2", "book stationary (bounded, never empty)", Role.PRECONDITION, "<=",
        MAX_DEPTH_FACTOR, "x", depth)
    for count, levels in A3_DEPTHS:
        name = depth_name(count, levels)
        add(f"A3.p99.{name}", ASR1, "A3", f"p99 match latency at depth {name}", Role.SECONDARY, "<",
            P99_SECONDARY_S, LATENCY, "server-side p99 of the sub-test from an empty book, against the 50 ms bar")
    rise = ("pooled p99 of the {arm} arms / pooled p99 of the baseline arms either side - 1, over cycles of "
            "interleaved arms; its interval a bootstrap over blocks paired by cycle, at the look's share of a 5 % "
            "error rate")
    add("A4.decoupling", ASR1, "A4", "p99 rise during the broker outage", Role.DECOUPLING, "<=", DECOUPLING_RATIO,
        RATIO, rise.format(arm="outage") + "; passes when the interval's top is within the bar, fails when its "
        "bottom is above it")
    add("A4.events_lost", ASR1, "A4", "MATCH_EXECUTED events lost across the outage", Role.DECOUPLING, "==", 0,
        "events", "shard a's match count against the distinct events read back from the topic")
    add("A4.outage_orders", ASR1, "A4", "orders matched within the outage window", Role.DECOUPLING, ">=",
        OUTAGE_ORDERS_RATIO, RATIO, "orders the matcher completed during the outage / orders the schedule sent then")
    # ASR 2
    add("B2.sustained", ASR2, "B2", f"aggregate >= {ASR2_BAR:,.0f} matches/min sustained (longest stretch)",
        Role.PRIMARY, ">=", profile.sustain_s, DURATION,
        f"longest stretch of the open-loop window's match rate (each shard's raw counter deltas over trailing "
        f"{profile.rate_window_s} s windows) at or above the bar, with no dip longer than {profile.max_gap_s:g} s")
    add("B2.replica", ASR2, "B2", "the shards made the fills the orders sent should make", Role.PRIMARY, "<=",
        REPLICA_AGREEMENT, RATIO, "|the shards' matches - a replica of the seeded books' matches for the orders sent| "
        "/ the replica's, per shard between its own scrapes of the window: a margin above the bar cannot hide a "
        "matcher that fills less")
    add("B2.events_agree", ASR2, "B2", "match count agrees with the MATCH_EXECUTED events", Role.PRIMARY, "<=",
        EVENTS_AGREE_RATIO, RATIO, "Prometheus' match count over the window against the events on the topic")
    add("S1.scaling", ASR2, "S1", "linear scaling: capacity(3) / (3 x capacity(1))", Role.SCALING, ">=",
        SCALING_FACTOR, "", "the highest rate 1 and 3 shards behind the gateway sustain within the 200 ms bar "
        "(client and server p99) with >= 95 % answered, each shard under the same CPU budget")
    for shard in SHARDS:
        add(f"B2.p99.{shard}", ASR2, "B2", f"p99 match latency at peak, shard {shard}", Role.PEAK_LATENCY, "<",
            P99_BAR_S, LATENCY, "server-side p99 over the open-loop window")
    add("B2.error_rate", ASR2, "B2", "error rate", Role.ERROR_RATE, "<", MAX_ERROR_RATIO, RATIO,
        "the larger of the client's and the gateway's non-200 share; they must agree within 1 point")
    add("B2.queue", ASR2, "B2", "matcher queues near empty", Role.PRECONDITION, "<=", MAX_QUEUE_FILL, RATIO, queue)
    add("B2.depth", ASR2, "B2", "books stationary on every shard", Role.PRECONDITION, "<=", MAX_DEPTH_FACTOR, "x", depth)
    add("B3.hold", ASR2, "B3", "matches/min during the 5,000/min hold after the ramp", Role.SECONDARY, ">=", ASR2_BAR,
        "matches/min", "mean match rate over the open-loop part of the hold")
    for shard in SHARDS:
        add(f"B3.memory.{shard}", ASR2, "B3", f"no monotonic memory growth, shard {shard}", Role.MEMORY, "<=",
            MAX_MEMORY_GROWTH, RATIO, "resident memory growth first to last quarter of B2-B3, failing only with a "
            "significant Mann-Kendall upward trend")
    add("B4.p99_hot", ASR2, "B4", "p99 match latency of the hot shard a", Role.SECONDARY, "<", P99_BAR_S, LATENCY,
        "server-side p99 of shard a while it takes most of the flow")
    add("B4.hot_share", ASR2, "B4", "hot shard a's share of accepted orders", Role.PRECONDITION, ">=", MIN_HOT_SHARE,
        RATIO, "shard a's accepted orders / all shards' over the window")
    add("B5.isolation", ASR2, "B5", "shard a p99 change when shard b's load rises", Role.ISOLATION, "within",
        ISOLATION_RATIO, RATIO, rise.format(arm="b-loaded") + "; passes when the interval lies within +-5 %, fails "
        "when it lies wholly outside")
    add("B5.b_load", ASR2, "B5", "shard b's load rose as planned", Role.PRECONDITION, ">=", MIN_LOAD_RISE_RATIO, RATIO,
        "orders shard b accepted in the loaded arms / orders planned for it")
    add("B5.b_errors", ASR2, "B5", "shard b's error rate while loaded", Role.PRECONDITION, "<", MAX_ERROR_RATIO, RATIO,
        "the gateway's non-2xx share of shard b's requests in the loaded arms")
    # Calibration: the same comparisons where the truth is known.
    add("A4-sham.decoupling", CALIBRATION, "A4-sham", "p99 rise with nothing paused (sham outage)", Role.CALIBRATION,
        "<=", DECOUPLING_RATIO, RATIO, rise.format(arm="sham outage") + "; must never FAIL")
    add("A4-power.decoupling", CALIBRATION, "A4-power", "p99 rise with a match delay injected in the outage arms",
        Role.CALIBRATION, "<=", DECOUPLING_RATIO, RATIO, rise.format(arm="injected-delay") + "; must FAIL")
    add("B5-sham.isolation", CALIBRATION, "B5-sham", "shard a p99 change with shard b 'loaded' at zero",
        Role.CALIBRATION, "within", ISOLATION_RATIO, RATIO, rise.format(arm="sham-loaded") + "; must never FAIL")
    return {x.id: x for x in c}


def expected(profile: ProfileSettings, asr: str) -> list[Criterion]:
    return [x for x in build(profile).values() if x.asr == asr]
