"""Change points in a figure over runs: binary segmentation with a permutation test at each split.

The statistic of a split at t is the standardised difference of the means
before and after it, |mean(x[:t]) - mean(x[t:])| * sqrt(t (n - t) / n), and
the series' statistic is its largest value over the splits. Its p-value
is the share of random orderings of the same values (PERMUTATIONS of them,
seeded) whose statistic is at least as large: if nothing changed, the runs
are exchangeable and every ordering is as likely as the one observed. A
split with p < ALPHA is a change point, and each side is searched again.

False-alarm rate: on a history with no change the first test rejects with
probability at most ALPHA (5 %), and nothing further is tested unless it
does, so such a history shows a change point in at most 5 % of cases.
Needs at least 2 * MIN_SEGMENT runs; shorter histories are never flagged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALPHA = 0.05
PERMUTATIONS = 999
MIN_SEGMENT = 3  # runs on each side of a split
SEED = 2026


def split_statistics(x: np.ndarray) -> np.ndarray:
    """For each row of x: the statistic at each split t = MIN_SEGMENT .. n - MIN_SEGMENT."""
    x = np.atleast_2d(x)
    n = x.shape[1]
    t = np.arange(MIN_SEGMENT, n - MIN_SEGMENT + 1)
    cum = x.cumsum(axis=1)
    before = cum[:, t - 1] / t
    after = (cum[:, -1:] - cum[:, t - 1]) / (n - t)
    return np.abs(before - after) * np.sqrt(t * (n - t) / n)


def best_split(x: np.ndarray, rng: np.random.Generator) -> tuple[int, float] | None:
    """(split index, p-value) of the strongest split, or None when the series is too short."""
    n = len(x)
    if n < 2 * MIN_SEGMENT:
        return None
    observed = split_statistics(x)[0]
    t = int(observed.argmax()) + MIN_SEGMENT
    shuffled = np.array([rng.permutation(x) for _ in range(PERMUTATIONS)])
    null = split_statistics(shuffled).max(axis=1)
    p = (1 + int((null >= observed.max() - 1e-12).sum())) / (PERMUTATIONS + 1)
    return t, p


def change_points(values: Sequence[float], alpha: float = ALPHA) -> list[int]:
    """Indices i where a new level begins (values[i] is the first of it), in order."""
    rng = np.random.default_rng(SEED)
    found: list[int] = []
    pending = [(0, len(values))]
    x = np.asarray(values, dtype=float)
    while pending:
        lo, hi = pending.pop()
        split = best_split(x[lo:hi], rng)
        if split is None or split[1] >= alpha:
            continue
        at = lo + split[0]
        found.append(at)
        pending += [(lo, at), (at, hi)]
    return sorted(found)
