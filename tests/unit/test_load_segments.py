"""A schedule split across workers adds up to the single schedule; their histograms merge into the single one."""

from __future__ import annotations

import json
import random

import pytest

from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.results import Recorder
from matchlab.loadgen.segments import (
    Segment,
    SegmentProfile,
    merge_recorders,
    merged_result,
    read_result_lines,
    recorder_to_dict,
    result_lines,
    segment_source,
)
from matchlab.loadgen.targets import SHARD_SYMBOLS, flow_source, gateway_targets

PROFILE = LoadProfile.ramping(3.0, [(4.0, 40.0), (3.0, 40.0), (2.0, 7.0)])  # ramp up, hold, ramp down


def schedule(profile, source) -> list[tuple[float, str, bytes]]:
    """(due offset, target, body) of every slot, drawing one request per slot as the runner does."""
    out = []
    for offset in profile.send_offsets():
        req = source()
        out.append((offset, req.target, req.body))
    return out


def source(seed: int = 7):
    """The flow every worker builds: same seed, same id prefix (workers share it, see the loadgen CLI)."""
    symbols = [s for shard in "abc" for s in SHARD_SYMBOLS[shard]]
    flow = OrderFlow(symbols, seed=seed, id_prefix=f"w{seed}-")
    return flow_source(flow, gateway_targets("http://gw:8080", list("abc")))


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 7])
def test_the_workers_segments_add_up_to_the_single_schedule(workers):
    single = schedule(PROFILE, source())
    parts = [schedule(SegmentProfile(PROFILE, Segment(i, workers)), segment_source(source(), Segment(i, workers)))
             for i in range(workers)]
    merged = sorted((slot for part in parts for slot in part), key=lambda s: s[0])
    assert merged == single  # same due times, same orders, same targets: nothing lost, nothing twice
    assert len(single) > 200 and all(abs(len(p) - len(single) / workers) <= 1 for p in parts)
    for part in parts:  # each worker alone follows the same shape at 1/N of the rate
        assert [o for o, _, _ in part] == sorted(o for o, _, _ in part)
        assert SegmentProfile(PROFILE, Segment(0, workers)).rate_at(5.0) == PROFILE.rate_at(5.0) / workers


def test_a_segment_outside_the_workers_is_refused():
    for index, count in ((3, 3), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match="0 <= INDEX < COUNT"):
            Segment(index, count)


def recorded(samples) -> Recorder:
    rec = Recorder()
    for second, target, status, latency_us, dropped in samples:
        rec.on_scheduled(second)
        if dropped:
            rec.on_dropped(second)
            continue
        rec.on_sent(second, latency_us // 50)
        rec.on_done(second, target, status, latency_us)
    return rec


def test_merged_histograms_equal_the_single_process_histograms_of_the_same_samples():
    rng = random.Random(3)
    samples = [(rng.randrange(30), rng.choice("abc"), rng.choice(["200"] * 30 + ["503", "timeout"]),
                int(rng.lognormvariate(7.5, 1.2)), rng.random() < 0.01) for _ in range(20_000)]
    single = recorded(samples)
    workers = 3
    parts = [json.loads(json.dumps(recorder_to_dict(recorded(samples[i::workers]), cpu_seconds=1.5)))
             for i in range(workers)]
    merged = merge_recorders(parts)
    for name in ("overall", "schedule_error"):
        a, b = getattr(single, name), getattr(merged, name)
        assert b.get_total_count() == a.get_total_count() and b.encode() == a.encode(), name
    assert {t: h.encode() for t, h in merged.by_target.items()} == {t: h.encode() for t, h in single.by_target.items()}
    assert merged.result(40.0, 30.0) == single.result(40.0, 30.0)  # percentiles, counts, timeline: identical
    profile = LoadProfile.constant(40.0, 30.0)
    result = merged_result(parts, profile)
    assert result.cpu_seconds == 4.5 and result.extra["workers"] == 3 and result.target_rate == 40.0


def test_a_part_travels_through_log_lines_among_other_output():
    rec = recorded([(s, "a", "200", 1000 + 37 * s, False) for s in range(300)])
    doc = recorder_to_dict(rec, 0.25)
    lines = result_lines(doc)
    assert len(lines) > 1 and all(len(line) < 3100 for line in lines)  # 300 per-second histograms: several lines
    log = "\n".join(["starting", *lines[:1], "progress noise", *lines[1:], "bye"])
    assert read_result_lines(log, "pod loadgen-0") == doc
    with pytest.raises(ValueError, match="no complete load result in the log of pod loadgen-1"):
        read_result_lines("crashed before the end", "pod loadgen-1")
    with pytest.raises(ValueError, match=r"missing lines \[0\]"):
        read_result_lines("\n".join(lines[1:]), "pod loadgen-2")
