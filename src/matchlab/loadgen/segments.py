"""One open-model schedule split across N load-generator workers, and their measurements merged back.

Like k6's execution segments: worker ``i`` of ``N`` takes slots ``i, i+N, i+2N, ...`` of the same
schedule, so every worker follows the same rate shape at 1/N of the rate and together they send the
single schedule's requests at its due times. Each worker draws the whole seeded order stream and keeps
its own share, so slot k carries the same order whichever worker sends it (and order ids stay unique).

Each worker's ``Recorder`` serializes to plain JSON (HdrHistograms in their standard compressed
encoding); merging the parts gives the Recorder one process would have filled with every sample, so a
merged run reports exactly like a single-process one. For collection from pods the JSON travels as
log lines (``result_lines`` / ``read_result_lines``), which need no volume and no API permissions.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.results import LoadResult, Recorder, decode_histogram, encode_histogram, new_histogram
from matchlab.loadgen.runner import Request, RequestSource

RESULT_MARKER = "MATCHLAB-RESULT"
LINE_CHARS = 3000  # well under the container runtimes' 16 KiB log-line split


@dataclass(frozen=True)
class Segment:
    """Worker ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"a segment is worker INDEX of COUNT with 0 <= INDEX < COUNT, got {self.index}/{self.count}")

    def owns(self, slot: int) -> bool:
        return slot % self.count == self.index


class SegmentProfile:
    """The runner's view of a profile when it runs one segment: the same shape, only this worker's slots."""

    def __init__(self, profile: LoadProfile, segment: Segment) -> None:
        self.profile = profile
        self.segment = segment

    @property
    def duration_s(self) -> float:
        return self.profile.duration_s

    def rate_at(self, t: float) -> float:
        return self.profile.rate_at(t) / self.segment.count

    def expected_requests(self) -> float:
        return self.profile.expected_requests() / self.segment.count

    def send_offsets(self) -> Iterator[float]:
        for slot, offset in enumerate(self.profile.send_offsets()):
            if self.segment.owns(slot):
                yield offset


def segment_source(source: RequestSource, segment: Segment) -> RequestSource:
    """This worker's requests from the whole stream: skip the other workers' share between its own."""
    first = True

    def next_request() -> Request:
        nonlocal first
        for _ in range(segment.index if first else segment.count - 1):
            source()
        first = False
        return source()

    return next_request


# -- measurements -------------------------------------------------------------------------------------


_encode = encode_histogram


def _decode_into(target: HdrHistogram, encoded: str) -> None:
    target.add(decode_histogram(encoded))


def recorder_to_dict(rec: Recorder, cpu_seconds: float = 0.0) -> dict:
    """Everything a Recorder holds, as JSON-ready data (histograms encoded)."""
    return {
        "scheduled": rec.scheduled, "sent": rec.sent, "ok": rec.ok, "dropped": rec.dropped,
        "statuses": dict(rec.statuses), "cpu_seconds": cpu_seconds,
        "overall": _encode(rec.overall),
        "by_target": {t: _encode(h) for t, h in rec.by_target.items()},
        "schedule_error": _encode(rec.schedule_error),
        "seconds": [
            {"second": s, "scheduled": st.scheduled, "sent": st.sent, "ok": st.ok, "dropped": st.dropped,
             "errors": st.errors, "hist": _encode(rec._second_hists[s])}
            for s, st in sorted(rec._seconds.items())
        ],
    }


def merge_recorders(parts: Iterable[dict]) -> Recorder:
    """One Recorder holding every part's samples and counts, as if a single process had recorded them."""
    rec = Recorder()
    for part in parts:
        rec.scheduled += part["scheduled"]
        rec.sent += part["sent"]
        rec.ok += part["ok"]
        rec.dropped += part["dropped"]
        rec.statuses.update(part["statuses"])
        _decode_into(rec.overall, part["overall"])
        for target, encoded in part["by_target"].items():
            _decode_into(rec.by_target.setdefault(target, new_histogram()), encoded)
        _decode_into(rec.schedule_error, part["schedule_error"])
        for sec in part["seconds"]:
            stats = rec._second(sec["second"])
            stats.scheduled += sec["scheduled"]
            stats.sent += sec["sent"]
            stats.ok += sec["ok"]
            stats.dropped += sec["dropped"]
            for status, n in sec["errors"].items():
                stats.errors[status] = stats.errors.get(status, 0) + n
            _decode_into(rec._second_hists[sec["second"]], sec["hist"])
    return rec


def merged_result(parts: list[dict], profile: LoadProfile) -> LoadResult:
    """The run's result over all workers, against the whole profile."""
    rec = merge_recorders(parts)
    duration = profile.duration_s
    result = rec.result(profile.expected_requests() / duration, duration, sum(p["cpu_seconds"] for p in parts))
    result.extra["workers"] = len(parts)
    return result


# -- carrying a part through a pod's log ------------------------------------------------------------------


def result_lines(doc: dict) -> list[str]:
    """The part as numbered log lines: ``MATCHLAB-RESULT i/n <base64 of zlib'd JSON>``."""
    payload = base64.b64encode(zlib.compress(json.dumps(doc).encode(), 9)).decode("ascii")
    chunks = [payload[i:i + LINE_CHARS] for i in range(0, len(payload), LINE_CHARS)] or [""]
    return [f"{RESULT_MARKER} {i}/{len(chunks)} {chunk}" for i, chunk in enumerate(chunks)]


def read_result_lines(text: str, where: str) -> dict:
    """The part carried by ``result_lines`` somewhere in ``text`` (other log lines ignored)."""
    chunks: dict[int, str] = {}
    total = None
    for line in text.splitlines():
        if not line.startswith(RESULT_MARKER + " "):
            continue
        _, position, chunk = (line.split(" ", 2) + [""])[:3]
        index, _, count = position.partition("/")
        chunks[int(index)] = chunk
        total = int(count)
    missing = [i for i in range(total or 0) if i not in chunks]
    if total is None or missing:
        raise ValueError(f"no complete load result in the log of {where} "
                         f"({'no result lines' if total is None else f'missing lines {missing} of {total}'})")
    return json.loads(zlib.decompress(base64.b64decode("".join(chunks[i] for i in range(total)))))
