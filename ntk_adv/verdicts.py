"""The suite's one verdict type: a numeric prediction with a stated tolerance, a measurement with an interval,
and a verdict in {confirmed, refuted, inconclusive} that the numbers decide (docs/verdicts.md).

Every claim an experiment makes is a :class:`Claim`. The rules are those of an equivalence test (two one-sided
intervals): with the prediction's acceptance region ``P = [predicted - tolerance, predicted + tolerance]`` (or
a one-sided region ``(threshold, inf)``) and the measurement's 95% interval ``M = [low, high]``:

* **confirmed**    ``M`` lies inside ``P``;
* **refuted**      ``M`` and ``P`` do not meet (the data exclude every value the prediction allows);
* **inconclusive** otherwise - the interval straddles an edge of ``P``: too wide to decide.

So a tie in a trend, a single seed (whose interval is the Wilson interval over test points, not a point) or a
headline at chance level can never come out "confirmed" by accident, and any prediction can come out
"refuted". Every verdict other than "confirmed" carries a one-line ``reason`` computed from the numbers.

Intervals that respect their range:

* :func:`wilson` - a proportion k/n (agreement or accuracy of one seed over n test points), in [0, 1];
* :func:`seed_proportion` - the mean over seeds of per-seed proportions: a two-stage bootstrap (resample
  seeds, then each resampled seed's count from its binomial), percentile interval widened to the Student-t
  interval over seeds when that is wider, clipped to [0, 1]; one seed gives its Wilson interval;
* :func:`seed_mean` - any other per-seed quantity (differences, gaps): a bootstrap percentile interval over
  seeds, widened to the Student-t interval when that is wider (few seeds), clipped to an optional ``bounds``.

Randomness is explicit: bootstraps take an integer ``seed`` (default 0) for a ``numpy`` generator, so the same
numbers give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

VERDICTS = ("confirmed", "refuted", "inconclusive")
LEVEL = 0.95
BOOTSTRAP = 4000


@dataclass(frozen=True)
class Estimate:
    """A measured value with its ``level`` interval ``[low, high]`` over ``n`` units (seeds or test points),
    and the interval's ``method`` (wilson, bootstrap, t, fit)."""

    value: float
    low: float
    high: float
    n: int
    method: str

    def __post_init__(self):
        if not all(math.isfinite(v) for v in (self.value, self.low, self.high)):
            raise ValueError(f"an estimate needs finite numbers, got {self.value}, [{self.low}, {self.high}]")
        if not self.low <= self.value <= self.high:
            raise ValueError(f"estimate {self.value} lies outside its interval [{self.low}, {self.high}]")

    def text(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class Claim:
    """One judged claim. ``predicted`` is the theory's value (``None`` for a one-sided claim), ``region`` the
    acceptance region ``[low, high]`` it implies with the stated tolerance (``-inf``/``inf`` for one side),
    ``measured`` the data's estimate; ``verdict`` and ``reason`` follow from them (:func:`judge`)."""

    name: str
    claim: str
    predicted: float | None
    tolerance: float | None
    region: tuple[float, float]
    measured: Estimate
    verdict: str
    reason: str
    basis: str = ""  # how the prediction was derived (a formula, a docs section)
    paper: str = ""  # the published number for the closest setting, with its source and how settings differ

    def to_dict(self) -> dict:
        out = asdict(self)
        out["measured_value"] = self.measured.value
        out["measured_ci95"] = [self.measured.low, self.measured.high]
        out["prediction"] = self.prediction_text()
        out["measured"] = self.measured.text()
        out["region"] = [_json_number(v) for v in self.region]
        return out

    def prediction_text(self) -> str:
        lo, hi = self.region
        if self.predicted is not None and self.tolerance is not None:
            return f"{self.predicted:.3f} +- {self.tolerance:.3f}"
        if math.isinf(hi):
            return f"> {lo:.3g}"
        if math.isinf(lo):
            return f"< {hi:.3g}"
        return f"in [{lo:.3g}, {hi:.3g}]"


def _json_number(v: float):
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")


# ------------------------------------------------------------------------------------------- intervals
def wilson(k: float, n: int, level: float = LEVEL) -> Estimate:
    """Wilson score interval for the proportion k/n (k successes out of n); inside [0, 1] by construction."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"wilson needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    p = k / n
    zq = float(stats.norm.ppf(0.5 + level / 2))
    denom = 1 + zq**2 / n
    centre = (p + zq**2 / (2 * n)) / denom
    half = zq * math.sqrt(p * (1 - p) / n + zq**2 / (4 * n**2)) / denom
    return Estimate(p, max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)), int(n), "wilson")


def _finite(values, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 0:
        raise ValueError(f"{what}: no values")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what}: {int(np.sum(~np.isfinite(v)))} of {v.size} values are not finite")
    return v


def seed_proportion(
    proportions: Sequence[float], n_points: int, *, level: float = LEVEL, seed: int = 0
) -> Estimate:
    """Mean over seeds of per-seed proportions, each measured on ``n_points`` test points.

    Two-stage bootstrap: resample the seeds with replacement, then redraw each resampled seed's count from
    Binomial(n_points, p_seed); the percentile interval of the resampled means, widened to the Student-t
    interval over seeds where that is wider (few seeds), clipped to [0, 1]. It reflects both the spread over
    seeds and the finite test set; never narrower than the Wilson interval of the pooled count (all seeds at
    exactly 0 or 1 would otherwise give a zero-width interval). One seed: :func:`wilson` over the test
    points."""
    p = _finite(proportions, "seed_proportion")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"seed_proportion: proportions must lie in [0, 1], got {p.min()}..{p.max()}")
    if n_points < 1:
        raise ValueError(f"seed_proportion: n_points must be >= 1, got {n_points}")
    if p.size == 1:
        w = wilson(float(np.round(p[0] * n_points)), n_points, level)
        return Estimate(float(p[0]), min(w.low, float(p[0])), max(w.high, float(p[0])), 1, "wilson")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, p.size, size=(BOOTSTRAP, p.size))
    counts = rng.binomial(n_points, p[idx])
    means = counts.mean(axis=1) / n_points
    est = _bootstrap_t(p, means, (0.0, 1.0), level)
    # Never narrower than the Wilson interval of the pooled count: when every seed measures exactly 0 or 1 the
    # bootstrap collapses to a point, but n_points x seeds test points still leave binomial uncertainty.
    pooled = wilson(float(np.round(p.sum() * n_points)), n_points * p.size, level)
    return Estimate(est.value, min(est.low, pooled.low), max(est.high, pooled.high), est.n, est.method)


def seed_mean(
    values: Sequence[float],
    *,
    bounds: tuple[float, float] = (-np.inf, np.inf),
    level: float = LEVEL,
    seed: int = 0,
) -> Estimate:
    """Mean over seeds with the wider of a percentile bootstrap and a Student-t interval, clipped to
    ``bounds`` (e.g. (-1, 1) for a difference of proportions). One seed gives a zero-width interval, which
    :func:`judge` never confirms a tolerance claim with (it says so in the reason)."""
    v = _finite(values, "seed_mean")
    m = float(v.mean())
    if v.size == 1:
        return Estimate(m, m, m, 1, "single")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(BOOTSTRAP, v.size))].mean(axis=1)
    return _bootstrap_t(v, means, bounds, level)


def _bootstrap_t(
    values: np.ndarray, boot_means: np.ndarray, bounds: tuple[float, float], level: float
) -> Estimate:
    """The percentile interval of ``boot_means``, widened to the Student-t interval over ``values`` where that
    is wider (a percentile bootstrap over few seeds is too narrow), clipped to ``bounds``."""
    m = float(values.mean())
    lo, hi = np.quantile(boot_means, [0.5 - level / 2, 0.5 + level / 2])
    half = float(stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    lo, hi = max(min(lo, m - half), bounds[0]), min(max(hi, m + half), bounds[1])
    return Estimate(m, float(min(lo, m)), float(max(hi, m)), int(values.size), "bootstrap+t")


# ------------------------------------------------------------------------------------------- verdicts
def judge(region: tuple[float, float], measured: Estimate) -> tuple[str, str]:
    """(verdict, reason) of a measurement against an acceptance region (see the module docstring)."""
    lo, hi = region
    if not lo <= hi:
        raise ValueError(f"acceptance region must have low <= high, got {region}")
    m_lo, m_hi = measured.low, measured.high
    where = f"measured {measured.text()} ({measured.method}, n={measured.n})"
    if m_hi < lo or m_lo > hi:
        side = "below" if m_hi < lo else "above"
        edge = lo if m_hi < lo else hi
        return "refuted", f"{where} lies entirely {side} the predicted region's edge {edge:.3f}"
    if lo <= m_lo and m_hi <= hi:
        if measured.n == 1 and measured.method == "single":
            return "inconclusive", f"{where}: one seed, no interval to judge with"
        return "confirmed", ""
    edges = [f"{e:.3f}" for e, inside in ((lo, m_lo < lo), (hi, m_hi > hi)) if inside and math.isfinite(e)]
    width = m_hi - m_lo
    return "inconclusive", (
        f"{where} straddles the predicted region's edge {' and '.join(edges)} "
        f"(interval width {width:.3f}): more seeds or test points needed to decide"
    )


def equals(
    name: str,
    claim: str,
    predicted: float,
    tolerance: float,
    measured: Estimate,
    *,
    basis: str = "",
    paper: str = "",
) -> Claim:
    """Claim 'measured == predicted within tolerance' (two one-sided intervals)."""
    if not (math.isfinite(predicted) and tolerance >= 0):
        raise ValueError(f"{name}: need a finite prediction and tolerance >= 0, got {predicted}, {tolerance}")
    region = (predicted - tolerance, predicted + tolerance)
    verdict, reason = judge(region, measured)
    return Claim(
        name, claim, float(predicted), float(tolerance), region, measured, verdict, reason, basis, paper
    )


def above(
    name: str, claim: str, threshold: float, measured: Estimate, *, basis: str = "", paper: str = ""
) -> Claim:
    """Claim 'measured > threshold' (one-sided): confirmed when the whole interval is above it."""
    region = (float(threshold), math.inf)
    verdict, reason = judge(region, measured)
    if verdict == "confirmed" and measured.low <= threshold:  # strictly above
        verdict = "inconclusive"
    if verdict == "inconclusive":
        reason = f"measured {measured.text()} contains the threshold {threshold:.3f}"
    return Claim(name, claim, None, None, region, measured, verdict, reason, basis, paper)


def below(
    name: str, claim: str, threshold: float, measured: Estimate, *, basis: str = "", paper: str = ""
) -> Claim:
    """Claim 'measured < threshold' (one-sided)."""
    region = (-math.inf, float(threshold))
    verdict, reason = judge(region, measured)
    if verdict == "confirmed" and measured.high >= threshold:  # strictly below
        verdict = "inconclusive"
    if verdict == "inconclusive":
        reason = f"measured {measured.text()} contains the threshold {threshold:.3f}"
    return Claim(name, claim, None, None, region, measured, verdict, reason, basis, paper)


def slope(
    name: str, claim: str, predicted: float, tolerance: float, fit, *, basis: str = "", paper: str = ""
) -> Claim:
    """Claim 'fitted log-log slope == predicted within tolerance'; ``fit`` is a
    :class:`ntk_adv.metrics.SlopeFit` (95% Student-t interval on the slope)."""
    est = Estimate(fit.slope, fit.low, fit.high, fit.n, "fit")
    if getattr(fit, "dropped", 0):  # points without a logarithm were left out: say so in the claim
        note = f"{fit.dropped} points dropped from the log-log fit ({fit.why})"
        basis = f"{basis}; {note}" if basis else note
    return equals(name, claim, predicted, tolerance, est, basis=basis, paper=paper)


def summarize(claims: Sequence[Claim | dict]) -> dict:
    """Counts of each verdict."""
    words = [c.verdict if isinstance(c, Claim) else c["verdict"] for c in claims]
    return {v: words.count(v) for v in VERDICTS}
