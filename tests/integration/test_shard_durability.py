"""The journal's edges with a real shard process: WAL_PATH forms, a full disk, repeated orderIds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from matchlab.stack.probes import free_port

pytestmark = pytest.mark.integration

SYM = "TEST-ASSET-A"
TMPFS_SIZE = "256k"
STOP_BOUND_S = 25.0


def order(oid: str, side: str = "SELL", price: int = 100 + 0, qty: int = 1) -> dict:
    return {"orderId": oid, "symbol": SYM, "side": side, "type": "LIMIT", "price": price, "quantity": qty}


@pytest.mark.parametrize("form", ["directory", "file"])
def test_wal_path_as_a_directory_or_a_file_keeps_the_book_across_a_restart(shard_factory, tmp_path: Path, form: str):
    wal = tmp_path / ("journal-dir" if form == "directory" else "data/wal-a.log")
    shard = shard_factory("a", WAL_PATH=str(wal))
    with shard.client() as c:
        assert c.post("/orders", json=order("w1")).status_code == 200
        before = c.get(f"/book/{SYM}").json()
    shard.process.stop()
    assert (wal / "wal.log").is_file() if form == "directory" else wal.is_file()
    assert any(p.name.startswith(("wal.log.snap.", "wal-a.log.snap.")) for p in (wal if form == "directory" else wal.parent).iterdir())
    shard.start()
    with shard.client() as c:
        assert c.get(f"/book/{SYM}").json() == before


def test_an_unusable_wal_path_exits_2_with_one_line_naming_it(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    wal = blocker / "wal"
    env = {**os.environ, "WAL_PATH": str(wal), "HTTP_PORT": str(free_port()), "METRICS_PORT": str(free_port()), "KAFKA_BOOTSTRAP": ""}
    done = subprocess.run([sys.executable, "-m", "matchlab.shard"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 1 and str(wal) in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_a_repeated_order_id_gets_the_original_reply_and_a_different_body_409(shard_factory):
    shard = shard_factory("a")
    with shard.client() as c:
        first = c.post("/orders", json=order("r1"))
        again = c.post("/orders", json=order("r1"))
        other = c.post("/orders", json=order("r1", qty=2))
        metrics = httpx.get(shard.metrics_url).text
        book = c.get(f"/book/{SYM}").json()
    assert first.status_code == again.status_code == 200
    assert again.json() == {**first.json(), "duplicate": True}
    assert other.status_code == 409 and "different order" in other.json()["reason"]
    assert 'me_orders_duplicate_total{shard="a"} 1.0' in metrics
    assert sum(len(orders) for _, orders in book["asks"]) == 1  # rested once


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (mount -t tmpfs)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_acknowledges_nothing_it_did_not_write_and_recovers(shard_factory, small_tmpfs: Path):
    wal = small_tmpfs / "journal"
    shard = shard_factory("a", WAL_PATH=str(wal), SNAPSHOT_EVERY_RECORDS="100000000")
    acked, refused = [], []
    with shard.client() as c:
        for i in range(6000):  # resting orders, one at a time, until the disk is full and then some
            doc = order(f"disk-{i}", price=100 + i % 50)
            r = c.post("/orders", json=doc)
            assert r.status_code in (200, 503), r.text
            (acked if r.status_code == 200 else refused).append(doc)
            if len(refused) >= 20:
                break
        assert refused, "the tmpfs never filled"
        assert "journal" in c.post("/orders", json=order("late")).json()["reason"]
        ready = c.get("/ready")
        assert ready.status_code == 503 and "journal" in ready.json()["reason"]
        assert c.get("/health").status_code == 200  # alive, just not ready
        metrics = httpx.get(shard.metrics_url).text
        assert 'me_journal_write_errors_total{shard="a"} 0.0' not in metrics
        # Space returns: the shard takes orders again without a restart.
        subprocess.run(["mount", "-o", "remount,size=1m", str(small_tmpfs)], check=True)
        deadline = time.monotonic() + 10
        while c.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.get("/ready").status_code == 200
        after = order("after-space", price=90)
        assert c.post("/orders", json=after).status_code == 200
        acked.append(after)
        book = c.get(f"/book/{SYM}").json()
    # Restart on the same journal: exactly the acknowledged orders rest in the book.
    shard.process.kill()
    shard.start()
    with shard.client() as c:
        recovered = c.get(f"/book/{SYM}").json()
    resting = {oid for _, orders in recovered["asks"] for oid, _ in orders}
    assert resting == {d["orderId"] for d in acked}, f"{len(acked)} acknowledged, {len(resting)} recovered"
    assert recovered == book
    print(f"full disk: {len(acked)} acknowledged, {len(refused)} refused with 503, all acknowledged recovered")


def test_sigterm_stops_the_shard_in_bounded_time_while_the_disk_is_full(shard_factory, small_tmpfs: Path):
    shard = shard_factory("a", WAL_PATH=str(small_tmpfs / "journal"))
    with shard.client() as c:
        for i in range(6000):
            if c.post("/orders", json=order(f"full-{i}", price=100 + i % 50)).status_code == 503:
                break
        assert c.get("/ready").status_code == 503
    shard.process.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_BOUND_S
    while shard.process.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not shard.process.running(), "SIGTERM did not stop the shard"
    assert shard.process.exit_code() == 0
    print(f"SIGTERM with a full disk: stopped in {STOP_BOUND_S - (deadline - time.monotonic()):.1f} s")
