"""Pass or fail against load: where a logistic curve crosses 50 %, fitted to every step, and a bootstrap over steps.

A capacity step at a fixed rate passes or fails; near the knee the same rate
does either. The model is P(pass | rate) = 1 / (1 + exp(-(a + b x))) with x
the log of the rate, and the capacity is its 50 % point, exp(-a / b): the
rate at which a step is as likely to pass as to fail.

Fitted by Newton-Raphson on the log-likelihood plus Firth's penalty, half the
log-determinant of the Fisher information (Jeffreys' prior). Steps that
separate perfectly (every pass below every fail, common when the knee is
sharp) have no finite maximum-likelihood slope; the penalised slope is finite
and puts the 50 % point between the highest pass and the lowest fail, where
the data put it. Each Newton step is halved until the penalised likelihood
rises.

Every function works on a matrix of step weights, one row per fit (how often
a bootstrap resample draws each step), so a bootstrap refits thousands of
resamples in one pass of array arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_ITERATIONS = 60
TOLERANCE = 1e-6  # in the centred, scaled units: far finer than any step spacing
MAX_HALVINGS = 30
RESAMPLES = 2000
SEED = 33  # fixed: the same steps always give the same interval


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


def _penalised(x: np.ndarray, y: np.ndarray, v: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each row: the penalised log-likelihood, the Firth-modified score, and the inverse information."""
    eta = theta[:, :1] + theta[:, 1:] * x  # rows x steps
    p = _sigmoid(eta)
    w = np.clip(p * (1 - p), 1e-300, None)
    vw = v * w
    i00, i01, i11 = vw.sum(1), (vw * x).sum(1), (vw * x * x).sum(1)
    det = np.clip(i00 * i11 - i01 * i01, 1e-300, None)
    inv = np.stack([np.stack([i11, -i01], -1), np.stack([-i01, i00], -1)], -2) / det[:, None, None]
    # The hat matrix's diagonal: each step's leverage, v w (1, x) I^-1 (1, x)'.
    h = vw * (inv[:, 0, 0, None] + 2 * inv[:, 0, 1, None] * x + inv[:, 1, 1, None] * x * x)
    r = v * (y - p) + h * (0.5 - p)
    score = np.stack([r.sum(1), (r * x).sum(1)], -1)
    loglik = (v * (y * np.log(np.clip(p, 1e-300, None)) + (1 - y) * np.log(np.clip(1 - p, 1e-300, None)))).sum(1)
    return loglik + 0.5 * np.log(det), score, inv


def fit(x: Sequence[float], passed: Sequence[bool], weights: np.ndarray | None = None) -> np.ndarray:
    """(intercept, slope) of the Firth-penalised logistic fit, one row per row of ``weights`` (default: one fit,
    every step once). ``x`` should be centred and scaled (``Curve`` does that)."""
    xs = np.asarray(x, dtype=float)[None, :]
    y = np.asarray(passed, dtype=float)[None, :]
    v = np.ones_like(xs) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    theta = np.zeros((len(v), 2))
    current, score, inv = _penalised(xs, y, v, theta)
    active = np.ones(len(v), dtype=bool)
    for _ in range(MAX_ITERATIONS):
        step = np.einsum("bij,bj->bi", inv, score)
        step[~active] = 0.0
        scale = np.ones(len(v))
        for _ in range(MAX_HALVINGS):
            trial = theta + scale[:, None] * step
            value, s2, inv2 = _penalised(xs, y, v, trial)
            worse = (value < current - 1e-12) & active
            if not worse.any():
                break
            scale[worse] /= 2
        theta, current, score, inv = trial, value, s2, inv2
        active &= np.abs(scale[:, None] * step).max(1) > TOLERANCE
        if not active.any():
            break
    return theta


@dataclass(frozen=True)
class Curve:
    """One configuration's steps as a pass/fail curve against log rate."""

    rates: tuple[float, ...]
    passed: tuple[bool, ...]

    def __post_init__(self) -> None:
        if len(self.rates) != len(self.passed) or any(r <= 0 for r in self.rates):
            raise ValueError(f"a pass/fail curve needs one positive rate per outcome, got {len(self.rates)} rates "
                             f"and {len(self.passed)} outcomes")

    @property
    def decidable(self) -> bool:
        """Both outcomes occurred: the 50 % point lies within the steps' reach."""
        return any(self.passed) and not all(self.passed)

    def _x(self) -> tuple[np.ndarray, float, float]:
        logs = np.log(np.asarray(self.rates, dtype=float))
        centre = float(logs.mean())
        scale = float(logs.std()) or 0.05
        return (logs - centre) / scale, centre, scale

    def midpoints(self, weights: np.ndarray | None = None) -> np.ndarray:
        """The 50 % rate of each weighted fit; NaN where a row's drawn steps hold only one outcome."""
        x, centre, scale = self._x()
        theta = fit(x, self.passed, weights)
        v = np.ones((1, len(x))) if weights is None else np.atleast_2d(weights)
        y = np.asarray(self.passed, dtype=bool)
        both = (v[:, y].sum(1) > 0) & (v[:, ~y].sum(1) > 0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = np.exp(centre - theta[:, 0] / theta[:, 1] * scale)
        return np.where(both & (theta[:, 1] < 0), out, np.nan)  # a curve that rises with load has no knee

    def capacity(self) -> float | None:
        """The 50 % point of all the steps; None unless both outcomes occurred."""
        if not self.decidable:
            return None
        value = float(self.midpoints()[0])
        return value if math.isfinite(value) else None

    def probability(self, rates: Sequence[float]) -> list[float]:
        """The fitted chance of a pass at each rate (for the chart)."""
        x, centre, scale = self._x()
        a, b = fit(x, self.passed)[0]
        z = (np.log(np.asarray(rates, dtype=float)) - centre) / scale
        return [float(v) for v in _sigmoid(a + b * z)]


def resample_weights(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` steps is drawn in each resample (rows), drawing ``n`` with replacement."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
