"""Fault injection on the local stack (marker ``faults``): prove nothing acknowledged is lost.

Each test drives real load through the gateway while a fault is injected
through the backend (SIGKILL a shard, its event relay or both, freeze the
broker, restart the gateway or Prometheus), then checks what the clients
were told against what the system kept.
"""

from __future__ import annotations

import threading
import time

import httpx
import msgspec
import pytest

from matchlab.experiment.evidence import journal_change, p99_over, p99_shift
from matchlab.experiment.registry import P99_SECONDARY_S
from matchlab.loadgen.flow import OrderFlow, seed_orders, unique_prefix
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.runner import run_load
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.targets import SHARD_SYMBOLS, flow_source, gateway_targets
from matchlab.observe.events import read_ids
from matchlab.promtext import scrape_counter
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.orders import Order
from matchlab.stack.stack import Stack
from matchlab.waiting import wait_until

pytestmark = pytest.mark.faults

PHASE_S = 25.0
BROKER_OUTAGE_S = 60.0  # issue 9: the broker suspended for 60 s during load
RATE = 150.0  # orders/s through the gateway to shards a and c: enough samples for a stable p99
MAX_P99_RISE = 0.10
SCRAPE_S = 5.0
MAX_PUBLISH_P99_S = 0.001  # produce() only enqueues: ~0.01-0.1 ms; a blocking send takes the broker's round trip


def background_load(stack: Stack, shards: list[str], seconds: float, results: dict, seed: int) -> threading.Thread:
    symbols = [s for shard in shards for s in SHARD_SYMBOLS[shard]]
    results["prefix"] = prefix = unique_prefix(f"f{seed}")  # the flow numbers its ids <prefix>1 .. <prefix>N
    source = flow_source(OrderFlow(symbols, seed=seed, id_prefix=prefix), gateway_targets(stack.endpoints.gateway, shards))

    def run() -> None:
        results["load"] = run_load(LoadProfile.constant(RATE, seconds), source)

    thread = threading.Thread(target=run, name="fault-load")
    thread.start()
    return thread


def assert_p99_held(stack: Stack, shards: str, before: tuple, during: tuple, what: str) -> None:
    """Server-side p99 during a fault under ASR 1's secondary bar (50 ms): a matcher that waits on the fault
    (a blocking send, a stalled loop) fails it by orders of magnitude.

    The change against the window before is printed, not asserted: one window before and one during read
    this VM's fsync stalls as much as the fault (a CI run here: +57 %, interval +12.5 to +86 %, with nothing
    on the matching path touched), so whether a fault moves p99 by 10 % is for the interleaved comparisons
    (A4, B5: docs/experiments/verdicts.md) to decide, not a single before/after window.
    """
    time.sleep(SCRAPE_S + 1)  # the last scrape of the window
    prom = stack.prometheus()
    for shard in shards:
        shift = p99_shift(prom, shard, before, during, MAX_P99_RISE, journal_change(prom, shard, before, during),
                          excuse_slower=True)
        print(f"{what}: {shift.detail}")
        p99, query = p99_over(prom, shard, *during)
        assert p99 is not None and p99 < P99_SECONDARY_S, f"{what}: shard {shard} p99 {p99} s; {query}"


def assert_publishing_never_blocked(stack: Stack, shards: str, window: tuple) -> None:
    """The direct evidence of decoupling: handing an event to the producer stayed sub-millisecond."""
    prom = stack.prometheus()
    for shard in shards:
        p99, query = p99_over(prom, shard, *window, metric="me_event_publish_duration_seconds")
        print(f"shard {shard} event publish p99 {p99 * 1000 if p99 is not None else float('nan'):.3f} ms")
        assert p99 is not None and p99 < MAX_PUBLISH_P99_S, f"shard {shard}: publishing p99 {p99} s; {query}"


def expected_book(symbol: str, seed: list[dict], acked: list[dict]) -> dict:
    engine = MatchingEngine("b", frozenset([symbol]))
    engine.seed(msgspec.convert(seed, list[Order]))
    for doc in acked:
        engine.apply_order(msgspec.convert(doc, Order), [])
    return engine.books[symbol].snapshot()


def test_kill_9_a_shard_under_gateway_load(multi_stack: Stack):
    """Shard b dies: its orders get 502, a and c keep their p99, b comes back with every acknowledged order."""
    ep, backend = multi_stack.endpoints, multi_stack.backend
    for shard in "abc":
        multi_stack.reset_shard(shard)
    seed_books({s: ep.shards[s] for s in "ac"}, SHARD_SYMBOLS, 100, 10, token=ep.admin_token)
    symbol = "TEST-ASSET-F"  # shard b: one client, one order at a time, so arrival order is known
    b_seed = seed_orders(symbol, 100, 10)
    seeded = httpx.post(f"{ep.shards['b']}/seed", json={"orders": b_seed}, headers=ep.admin_headers)
    assert seeded.json() == {"seeded": 100}

    acked: list[dict] = []
    refused: list[dict] = []  # unacknowledged: retried after the restart
    first_refused: list[tuple[int, dict]] = []  # (position in acked, order) of the first 502
    statuses: dict[int, int] = {}
    duplicates: list[str] = []
    stop = threading.Event()
    kill_prefix = unique_prefix("kill")
    flow = OrderFlow([symbol], seed=77, id_prefix=kill_prefix)

    def send(client: httpx.Client, doc: dict) -> int:
        r = client.post("/orders", json=doc)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        if r.status_code == 200:
            acked.append(doc)
            if r.json().get("duplicate"):
                duplicates.append(doc["orderId"])
        return r.status_code

    def b_client(retry: list[dict]) -> None:
        with httpx.Client(base_url=ep.gateway, timeout=10) as client:
            for doc in retry:  # a client retries what it was never told was accepted (same orderId)
                assert send(client, doc) == 200
            while not stop.is_set():
                doc = flow.next_order()
                code = send(client, doc)
                if code == 502:
                    refused.append(doc)
                    if not first_refused:
                        first_refused.append((len(acked), doc))
                time.sleep(0.01)

    results: dict = {}
    t0 = time.time()
    load = background_load(multi_stack, ["a", "c"], 3 * PHASE_S, results, seed=1)
    client = threading.Thread(target=b_client, args=([],))
    client.start()
    try:
        time.sleep(PHASE_S)  # fault injection point
        killed_at = time.time()
        backend.kill_service("me-shard-b")
        wait_until(lambda: first_refused, 10, "the shard-b client to see a 502")
        time.sleep(PHASE_S)
    finally:
        stop.set()
        client.join(15)
    restarted_at = time.time()
    backend.restart_service("me-shard-b")  # replays its journal
    recovered = httpx.get(f"{ep.shards['b']}/book/{symbol}").json()
    cut, maybe = first_refused[0]
    stop.clear()
    retried = list(refused)
    client = threading.Thread(target=b_client, args=(retried,))  # retries, then new orders
    client.start()
    wait_until(lambda: len(acked) > cut + len(retried) + 50, 60, "shard b to take new orders after the retries")
    stop.set()
    client.join(15)
    load.join(3 * PHASE_S + 30)

    assert statuses.get(502, 0) > 0, statuses  # refused while down, with the gateway's reason
    assert set(statuses) <= {200, 502}, statuses
    # The order in flight at the kill was refused to its client but may have been journaled already:
    # the recovered book is the acknowledged orders' book, with or without that one order.
    before_kill = acked[:cut]
    with_maybe = before_kill + [maybe]
    assert recovered in (expected_book(symbol, b_seed, before_kill), expected_book(symbol, b_seed, with_maybe)), (
        "shard b's recovered book differs from what its clients were told")
    # Retrying every refused order by its orderId executes each exactly once: only the one that was
    # in flight at the kill can come back as a duplicate, and the book is the one of each order once.
    assert set(duplicates) <= {maybe["orderId"]}, duplicates
    executed = [doc for doc in acked if doc["orderId"] not in set(duplicates)]
    final = httpx.get(f"{ep.shards['b']}/book/{symbol}").json()
    assert len(acked) > cut + len(retried), "no order was acknowledged after the restart"
    assert final == expected_book(symbol, b_seed, executed if not duplicates else with_maybe + executed[cut:])
    # The events the killed producer still held come back from the journal: none lost.
    assert_matches_published(multi_stack, "b", crashed=True)
    placed = set(read_ids(ep.broker, "orders", "orderId", kill_prefix, len(acked), 90))
    lost = {doc["orderId"] for doc in acked} - placed
    assert not lost, f"{len(lost)} acknowledged orders of shard b have no ORDER_PLACED event, e.g. {sorted(lost)[:5]}"

    assert_p99_held(multi_stack, "ac", (t0 + 5, killed_at), (killed_at, restarted_at), "while b was down")
    assert results["load"].ok == results["load"].scheduled, results["load"].summary_line()


def test_broker_frozen_under_load_loses_no_event(multi_stack: Stack):
    """The broker frozen for 60 s: matching keeps its p99, and every order and match reaches its topic once."""
    ep, backend = multi_stack.endpoints, multi_stack.backend
    for shard in "abc":
        multi_stack.reset_shard(shard)
    seed_books({s: ep.shards[s] for s in "ac"}, SHARD_SYMBOLS, 100, 10, token=ep.admin_token)
    results: dict = {}
    t0 = time.time()
    load = background_load(multi_stack, ["a", "c"], 2 * PHASE_S + BROKER_OUTAGE_S, results, seed=2)
    try:
        time.sleep(PHASE_S)
        paused_at = time.time()
        backend.pause_broker()
        time.sleep(BROKER_OUTAGE_S)
    finally:
        resumed_at = time.time()
        backend.resume_broker()
        load.join(2 * PHASE_S + BROKER_OUTAGE_S + 30)
    assert_p99_held(multi_stack, "ac", (t0 + 5, paused_at), (paused_at, resumed_at), "with the broker frozen")
    assert_publishing_never_blocked(multi_stack, "ac", (paused_at, resumed_at))
    load_result = results["load"]
    assert load_result.ok == load_result.scheduled, load_result.summary_line()

    # Every acknowledged order once on `orders`.
    prefix = results["prefix"]
    acked = {f"{prefix}{n}" for n in range(1, load_result.ok + 1)}
    placed_ids = read_ids(ep.broker, "orders", "orderId", prefix, len(acked), 90)
    assert set(placed_ids) == acked and len(placed_ids) == len(acked), (
        f"{len(acked)} orders acknowledged, {len(set(placed_ids))} distinct ORDER_PLACED events, "
        f"{len(placed_ids) - len(set(placed_ids))} duplicates, missing e.g. {sorted(acked - set(placed_ids))[:5]}")
    # Every match counted by me_matches_total once on `matches`.
    for shard in "ac":
        assert_matches_published(multi_stack, shard)


def sequential_client(stack: Stack, symbol: str, prefix: str, acked: list[dict], stop: threading.Event) -> threading.Thread:
    """One order at a time through the gateway; a refused one (its shard down) is sent again until it is taken."""
    flow = OrderFlow([symbol], seed=41, id_prefix=prefix)

    def run() -> None:
        pending = None
        with httpx.Client(base_url=stack.endpoints.gateway, timeout=10) as client:
            while not stop.is_set():
                doc = pending or flow.next_order()
                if client.post("/orders", json=doc).status_code == 200:
                    acked.append(doc)
                    pending = None
                else:
                    pending = doc
                time.sleep(0.01)

    thread = threading.Thread(target=run, name="sequential-client")
    thread.start()
    return thread


def test_kill_9_relays_under_gateway_load_loses_no_event(multi_stack: Stack):
    """Shard a's relay dies mid-burst: a keeps its p99 and takes every order. Shard c and its relay die together:
    c's orders are refused until it is back. Restarted, the relays publish every event (copies only as ids can
    drop them). After the broker test in this module, which counts copies: these kills leave some."""
    ep, backend = multi_stack.endpoints, multi_stack.backend
    assert set(ep.relays) == {"a", "b", "c"}, "the stack runs a relay per shard"
    for shard in "abc":
        multi_stack.reset_shard(shard)
    seed_books({s: ep.shards[s] for s in "ac"}, SHARD_SYMBOLS, 100, 10, token=ep.admin_token)
    results: dict = {}
    c_acked: list[dict] = []
    c_prefix, stop = unique_prefix("both"), threading.Event()
    t0 = time.time()
    load = background_load(multi_stack, ["a"], 3 * PHASE_S, results, seed=4)
    c_client = sequential_client(multi_stack, "TEST-ASSET-K", c_prefix, c_acked, stop)
    try:
        time.sleep(PHASE_S)  # fault injection point, mid-burst
        killed_at = time.time()
        backend.kill_service("me-relay-a")
        backend.kill_service("me-shard-c")
        backend.kill_service("me-relay-c")
        time.sleep(PHASE_S)
        restarted_at = time.time()
        backend.restart_service("me-shard-c")
        backend.restart_service("me-relay-c")
        backend.restart_service("me-relay-a")
        load.join(3 * PHASE_S + 30)
    finally:
        stop.set()
        c_client.join(30)
    load_result = results["load"]
    assert load_result.ok == load_result.scheduled, load_result.summary_line()  # the relay's death cost shard a nothing
    assert_p99_held(multi_stack, "a", (t0 + 5, killed_at), (killed_at, restarted_at), "with its relay killed")
    for shard in "ac":
        assert_matches_published(multi_stack, shard, crashed=True)
    prefix = results["prefix"]
    acked = {f"{prefix}{n}" for n in range(1, load_result.ok + 1)} | {d["orderId"] for d in c_acked}
    placed = set(read_ids(ep.broker, "orders", "orderId", prefix, load_result.ok, 90))
    placed |= set(read_ids(ep.broker, "orders", "orderId", c_prefix, len(c_acked), 90))
    assert not acked - placed, f"{len(acked - placed)} acknowledged orders have no ORDER_PLACED"


def assert_matches_published(stack: Stack, shard: str, crashed: bool = False) -> None:
    """Every match of the shard's life once on ``matches``: ids {shard}-1 .. {shard}-N, N from the journal.

    A shard that was killed may repeat events confirmed after its last
    delivery mark (at-least-once across a crash); one that was not, none.
    """
    url, auth = stack.endpoints.shards[shard], stack.endpoints.admin_headers
    wait_until(lambda: httpx.get(f"{url}/admin/stats", headers=auth).json()["eventsPending"] == 0, 90,
               f"shard {shard}'s events to be confirmed by the broker")
    counted = httpx.get(f"{url}/admin/stats", headers=auth).json()["matches"]
    if not crashed:  # the process counter and the journal agree when the process saw every match
        assert int(scrape_counter([stack.endpoints.shard_metrics[shard]])) == counted
    ids = read_ids(stack.endpoints.broker, "matches", "matchId", f"{shard}-", counted, 90)
    missing = {f"{shard}-{n}" for n in range(1, counted + 1)} - set(ids)
    duplicates = len(ids) - len(set(ids))
    print(f"shard {shard}: {counted} matches, {len(set(ids))} distinct events, {duplicates} repeated, {len(missing)} lost")
    assert not missing, f"shard {shard}: {len(missing)} of {counted} match events lost, e.g. {sorted(missing)[:5]}"
    assert crashed or duplicates == 0, f"shard {shard}: {duplicates} match events published twice"


def test_gateway_restart_errors_only_during_the_restart(multi_stack: Stack):
    ep, backend = multi_stack.endpoints, multi_stack.backend
    seed_books({s: ep.shards[s] for s in "ac"}, SHARD_SYMBOLS, 100, 10, token=ep.admin_token)
    results: dict = {}
    start = time.time()
    load = background_load(multi_stack, ["a", "c"], 2 * PHASE_S, results, seed=3)
    time.sleep(PHASE_S / 2)
    down_at = time.time() - start
    backend.restart_service("edge-gateway")
    up_at = time.time() - start
    load.join(2 * PHASE_S + 30)
    timeline = results["load"].timeline
    failing = [s.second for s in timeline if s.errors]
    assert failing, "a restart must have refused some requests"
    assert all(down_at - 1 <= sec <= up_at + 1 for sec in failing), (failing, down_at, up_at)
    assert sum(s.ok for s in timeline if s.second > up_at + 1) > 0


def test_prometheus_restart_keeps_scraping_and_verdict_queries(multi_stack: Stack):
    prom = multi_stack.prometheus()
    prom.wait_for('up{job="matching-engine"} == 1', 30)
    time.sleep(SCRAPE_S * 3)
    before = time.time()
    # A window query read before the restart must read the same after it (the TSDB survived).
    query = 'sum(count_over_time(up{job="matching-engine"}[20s]))'
    pre = prom.scalar(query, at=before)
    assert pre is not None and pre >= 3, f"{query} @ {before:.0f} returned {pre}"
    multi_stack.backend.restart_service("prometheus")
    prom.wait_for('up{job="matching-engine"} == 1', 30, what="scraping to resume after a Prometheus restart")
    wait_until(lambda: prom.scalar('count(up{job="matching-engine"} == 1)') == 3, 30, "all shards scraped again")
    assert prom.scalar(query, at=before) == pre, f"{query} @ {before:.0f}: {pre} before the restart"
