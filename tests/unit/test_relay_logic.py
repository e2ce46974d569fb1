"""The relay's parts without processes: reading the journal's durable records, the delivery mark, the hand-off files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from matchlab.relay.delivery import Deliveries
from matchlab.relay.tail import JournalGapError, JournalTail
from matchlab.shard.handoff import DurableIndexReader, DurableIndexWriter, read_relay_mark, write_relay_mark
from matchlab.shard.journal import JournalLayout
from matchlab.shard.wal import GroupCommitLog, encode_record


def layout_in(tmp_path: Path) -> JournalLayout:
    return JournalLayout(tmp_path, "wal.log")


def write_journal(tmp_path: Path, payloads: list[bytes], segment_bytes: int = 1 << 20, rotate_every: int = 0) -> int:
    """Journal ``payloads`` through the real group commit (rotating every ``rotate_every``); return the durable index."""
    durable: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        wal = GroupCommitLog(layout_in(tmp_path), 0, 0, loop, lambda *_: None, fsync=False,
                             segment_bytes=segment_bytes, on_durable_index=durable.append)
        for i, payload in enumerate(payloads):
            if rotate_every and i and i % rotate_every == 0:
                wal.request_rotation()
            await wal.append(1, payload)
        await wal.close()

    asyncio.run(main())
    return durable[-1]


def test_the_tail_hands_out_durable_records_in_order_across_segments(tmp_path: Path):
    payloads = [f"r{i}".encode() * (1 + i % 7) for i in range(500)]
    durable = write_journal(tmp_path, payloads, rotate_every=97)
    assert durable == 500 and len(layout_in(tmp_path).segments()) == 6
    tail = JournalTail(layout_in(tmp_path), 0)
    got = []
    while len(got) < 500:
        batch = tail.read(durable, 64)
        assert batch and len(batch) <= 64
        got += batch
    assert [i for i, _, _ in got] == list(range(500)) and [p for _, _, p in got] == payloads
    assert tail.read(durable, 64) == [] and tail.next_index == 500


def test_the_tail_stops_at_the_durable_index_and_rereads_what_lies_beyond(tmp_path: Path):
    """Bytes past the durable index may still be cut back by a failed write: not handed out, read again later."""
    write_journal(tmp_path, [b"a", b"b", b"c"])
    path = layout_in(tmp_path).segment_path(0)
    with open(path, "ab") as f:
        f.write(encode_record(1, b"not yet durable"))
    tail = JournalTail(layout_in(tmp_path), 0)
    assert [p for _, _, p in tail.read(3, 100)] == [b"a", b"b", b"c"]
    assert tail.read(3, 100) == []
    path.write_bytes(path.read_bytes()[: -len(encode_record(1, b"not yet durable"))] + encode_record(1, b"d"))
    assert tail.read(4, 100) == [(3, 1, b"d")]  # what replaced the cut-back bytes, not what was there before


def test_the_tail_starts_at_any_record_and_at_a_segment_not_yet_written(tmp_path: Path):
    payloads = [bytes([65 + i % 26]) * 50 for i in range(300)]
    write_journal(tmp_path, payloads, rotate_every=100)
    tail = JournalTail(layout_in(tmp_path), 150)
    assert [i for i, _, _ in tail.read(300, 1000)] == list(range(150, 300))
    (tmp_path / "nothing-yet").mkdir()  # the relay's folder exists (it resolves it), the shard has written nothing
    assert JournalTail(layout_in(tmp_path / "nothing-yet"), 0).read(10, 10) == []


def test_a_tail_whose_records_were_deleted_says_so(tmp_path: Path):
    write_journal(tmp_path, [b"x"] * 300, rotate_every=100)
    layout_in(tmp_path).segment_path(0).unlink()
    with pytest.raises(JournalGapError, match="needs record 5 but the oldest segment starts at 100"):
        JournalTail(layout_in(tmp_path), 5).read(300, 10)


def test_a_checksum_that_fails_below_the_durable_index_stops_the_tail(tmp_path: Path):
    write_journal(tmp_path, [b"first", b"second"])
    path = layout_in(tmp_path).segment_path(0)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    tail = JournalTail(layout_in(tmp_path), 0)
    assert [p for _, _, p in tail.read(2, 10)] == [b"first"]
    assert tail.read(2, 10) == [] and tail.next_index == 1  # waits: never sends what may not be the shard's record


def test_the_mark_is_the_lowest_unconfirmed_record():
    d = Deliveries(10)
    assert d.mark() == 10 and d.oldest_ms() is None
    d.sent(10, 1000)
    d.skip(11)  # a seed: nothing to send
    d.sent(12, 1200)
    assert d.mark() == 10 and d.oldest_ms() == 1000 and d.pending == 2
    d.confirmed(12)
    assert d.mark() == 10
    d.confirmed(10)
    assert d.mark() == 13 and d.oldest_ms() is None and d.pending == 0
    d.confirmed(10)  # a repeated confirmation changes nothing
    assert d.mark() == 13


def test_the_durable_index_crosses_processes_through_one_mapped_file(tmp_path: Path):
    layout = layout_in(tmp_path)
    reader = DurableIndexReader(layout)
    assert reader.read() is None  # no shard yet
    writer = DurableIndexWriter(layout)
    writer.store(41)
    assert reader.read() == 41
    writer.store(2**40 + 3)
    assert reader.read() == 2**40 + 3
    writer.close()
    again = DurableIndexWriter(layout)  # a restarted shard maps the same file: the reader's mapping stays valid
    again.store(7)
    assert reader.read() == 7 and not reader.replaced()
    again.close()
    reader.close()


def test_the_relays_mark_round_trips_and_a_torn_one_reads_as_none(tmp_path: Path):
    layout = layout_in(tmp_path)
    assert read_relay_mark(layout) is None
    write_relay_mark(layout, 123_456)
    assert read_relay_mark(layout) == 123_456
    write_relay_mark(layout, 7)  # overwritten in place: same file, same size
    assert read_relay_mark(layout) == 7 and len(list(tmp_path.iterdir())) == 1
    path = tmp_path / "wal.log.relay-mark"
    good = path.read_bytes()
    path.write_bytes(good[:10] + b"\xff" + good[11:])  # a byte of the mark changed: the checksum refuses it
    assert read_relay_mark(layout) is None
    path.write_bytes(b"MLRMARK1\x01")  # short: refused, not misread
    assert read_relay_mark(layout) is None
    path.write_bytes(b"MLRMARK1" + (99).to_bytes(8, "little"))  # an earlier relay's mark still reads
    assert read_relay_mark(layout) == 99
