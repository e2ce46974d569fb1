"""The delivery mark: the lowest journal record whose event is still unconfirmed."""

from __future__ import annotations

from matchlab.shard.outbox import Outbox
from matchlab.shard.records import decode_mark, encode_mark


def test_mark_is_the_lowest_pending_record_or_the_next_index():
    box = Outbox(next_index=10)
    assert box.mark() == 10
    for _ in range(4):
        box.hold(box.take_index())  # 10, 11, 12, 13
    box.take_index()  # 14: a record without an event (seed, reset, mark)
    assert box.mark() == 10 and box.pending == 4
    box.delivered(11)  # confirmed out of order: the mark cannot pass 10 yet
    assert box.mark() == 10
    box.delivered(10)
    assert box.mark() == 12
    box.delivered(12)
    box.delivered(13)
    assert box.mark() == 15 and box.pending == 0


def test_a_confirmation_repeated_or_unknown_changes_nothing():
    box = Outbox(0)
    box.hold(box.take_index())
    box.delivered(7)
    assert box.mark() == 0
    box.delivered(0)
    box.delivered(0)
    assert box.mark() == 1


def test_mark_round_trips_through_the_journal_payload():
    assert decode_mark(encode_mark(123_456_789_012)) == 123_456_789_012


def test_a_new_mark_only_when_it_covers_an_event_the_last_one_did_not():
    box = Outbox(next_index=0)
    assert box.new_mark() is None  # nothing ever held
    box.hold(box.take_index())  # 0
    assert box.new_mark() is None  # still pending
    box.delivered(0)
    assert box.new_mark() == 1
    box.last_mark = 1
    box.take_index()  # 1: the mark record itself
    assert box.new_mark() is None  # idle: no mark past the mark
    box.hold(box.take_index())  # 2
    box.delivered(2)
    assert box.new_mark() == 3
