"""The services' collector policy: what start-up leaves alive, and what survives a full collection, is frozen."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_isolated(code: str) -> str:
    """In a fresh interpreter: the policy installs a process-wide gc callback."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_start_up_objects_are_frozen_and_each_full_collection_freezes_its_survivors():
    out = run_isolated("""
        import gc
        from matchlab.gcpolicy import keep_full_collections_short
        start_up = [[i] for i in range(50_000)]
        keep_full_collections_short()
        after_start = gc.get_freeze_count()
        book = [[i] for i in range(20_000)]  # long-lived growth after start (a shard's resting orders)
        gc.collect(1)  # a younger collection freezes nothing
        after_young = gc.get_freeze_count()
        gc.collect()
        after_full = gc.get_freeze_count()
        keep_full_collections_short()  # installing twice adds one callback, not two
        print(after_start, after_young, after_full, len(gc.callbacks))
    """)
    after_start, after_young, after_full, callbacks = map(int, out.split())
    assert after_start >= 50_000
    assert after_young == after_start
    assert after_full >= after_start + 20_000
    assert callbacks == 1


def test_a_full_collection_walks_only_what_came_since_the_last_one():
    """The pause no longer grows with the process: 200k live objects, then a full collection of 1k new ones."""
    out = run_isolated("""
        import gc, time
        from matchlab.gcpolicy import keep_full_collections_short
        def full_pause_s():
            fresh = [[i] for i in range(1_000)]
            t = time.perf_counter(); gc.collect(); return time.perf_counter() - t
        heap = [[i] for i in range(200_000)]
        unfrozen = min(full_pause_s() for _ in range(3))
        keep_full_collections_short()
        frozen = min(full_pause_s() for _ in range(3))
        print(f"{unfrozen:.6f} {frozen:.6f}")
    """)
    unfrozen, frozen = map(float, out.split())
    print(f"full collection with 200k live objects: {unfrozen * 1e3:.2f} ms unfrozen, {frozen * 1e3:.2f} ms with the policy")
    assert frozen < unfrozen / 5
