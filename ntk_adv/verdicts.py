"""The suite's one verdict type: a numeric prediction with a stated tolerance, a measurement with an interval,
and a verdict in {confirmed, refuted, inconclusive} that the numbers decide (docs/verdicts.md).

Every claim an experiment makes is a :class:`Claim`. The rules are those of an equivalence test (two one-sided
intervals): with the prediction's acceptance region ``P = [predicted - tolerance, predicted + tolerance]`` (or
a one-sided region ``(threshold, inf)``) and the measurement's 95% interval ``M = [low, high]``:

* **confirmed**    ``M`` lies inside ``P``;
* **refuted**      ``M`` and ``P`` do not meet (the data exclude every value the prediction allows);
* **inconclusive** otherwise - the interval straddles an edge of ``P``: too wide to decide.

So a tie in a trend, a single seed or a headline at chance level can never come out "confirmed" by accident,
and any prediction can come out "refuted". Every verdict other than "confirmed" carries a one-line ``reason``
computed from the numbers; an inconclusive proportion over seeds also says how many seeds would decide at the
same mean (:func:`seeds_to_decide`).

The seed (one trained f, its targets, its initial functions) is the statistical unit: cells of one seed are
not independent, and a few seeds can all land on the same side of a bimodal spread. Intervals that respect
their range:

* :func:`wilson` - a proportion k/n of one trained pair over n test points, in [0, 1];
* :func:`seed_proportion` - the mean over seeds of per-seed proportions: the widest of the Wilson interval
  over seeds (each seed one Bernoulli trial, a bound on the between-seed spread of any [0, 1] quantity), a
  two-stage bootstrap widened to Student-t, and the pooled Wilson interval over test points;
* :func:`paired_difference` - a paired difference (measured minus reference) from per-seed cells: the widest
  of a cluster bootstrap over seeds with test-point noise, Student-t over seed means and a test-point floor,
  so it has zero width only when the per-point sd is 0 (:func:`paired_point_sd` gives a bound on that sd);
* :func:`proportion_difference` - a difference of two per-seed proportions on the same test points:
  :func:`paired_difference` with :func:`paired_point_sd` at the adjusted proportions;
* :func:`seed_mean` - any other per-seed quantity: a bootstrap percentile interval over seeds, widened to the
  Student-t interval when that is wider (few seeds), clipped to an optional ``bounds``; one seed or identical
  seeds give a zero-width interval (never for differences of proportions: :func:`proportion_difference`);
* :func:`mean_ci` - the plain Student-t interval over seeds (figures' error bars, geometric means); every
  Student-t interval above is this one.

:class:`Estimate` is the suite's one interval type: the verdicts, the metrics' summaries and the figures'
bands all carry one.

Randomness is explicit: bootstraps take an integer ``seed`` (default 0) for a ``numpy`` generator, so the same
numbers give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats

VERDICTS = ("confirmed", "refuted", "inconclusive")
LEVEL = 0.95
BOOTSTRAP = 4000


@dataclass(frozen=True)
class Estimate:
    """A measured value with its ``level`` interval ``[low, high]`` over ``n`` units (seeds or test points),
    and the interval's ``method`` (wilson, wilson-over-seeds, cluster-bootstrap+t, points, t, fit).
    ``bounds`` is the range the quantity can take, when the interval was computed knowing it (a proportion's
    ``(0, 1)``); :func:`judge` uses it to say how many seeds would decide an inconclusive proportion."""

    value: float
    low: float
    high: float
    n: int
    method: str
    bounds: tuple[float, float] | None = None
    dropped: int = 0  # non-finite values left out before estimating (only when asked: mean_ci(nan="omit"))

    def __post_init__(self):
        if not all(math.isfinite(v) for v in (self.value, self.low, self.high)):
            raise ValueError(f"an estimate needs finite numbers, got {self.value}, [{self.low}, {self.high}]")
        if not self.low <= self.value <= self.high:
            raise ValueError(f"estimate {self.value} lies outside its interval [{self.low}, {self.high}]")

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

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


def mean_ci(values, level: float = LEVEL, *, nan: str = "raise") -> Estimate:
    """Mean over seeds with the two-sided Student-t interval ``mean +- t_{(1+level)/2, n-1} s / sqrt(n)``
    (method ``t``); a single value gets a zero-width interval (method ``single``, which :func:`judge` never
    confirms with).

    A NaN or inf value is an error (``nan="raise"``, the default: a diverged seed must not vanish from a
    mean); ``nan="omit"`` drops them explicitly and counts them in ``Estimate.dropped``. No value left is a
    ValueError (an estimate of nothing has no number)."""
    if nan not in ("raise", "omit"):
        raise ValueError(f"nan must be 'raise' or 'omit', got {nan!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    v = np.asarray(values, dtype=float).reshape(-1)
    ok = np.isfinite(v)
    dropped = int(v.size - np.count_nonzero(ok))
    if dropped and nan == "raise":
        raise ValueError(
            f"mean_ci: {dropped} of {v.size} values are NaN or inf; fix the source or pass "
            f"nan='omit' to drop them explicitly"
        )
    v = v[ok]
    if v.size == 0:
        raise ValueError(f"mean_ci: no finite values to estimate from (dropped {dropped})")
    mean = float(v.mean())
    if v.size == 1:
        return Estimate(mean, mean, mean, 1, "single", dropped=dropped)
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return Estimate(mean, mean - half, mean + half, int(v.size), "t", dropped=dropped)


SEED_PROPORTION_METHOD = "wilson-over-seeds"


def seed_proportion(
    proportions: Sequence[float],
    n_points: int,
    *,
    level: float = LEVEL,
    seed: int = 0,
    n_boot: int = BOOTSTRAP,
) -> Estimate:
    """Mean over seeds of per-seed proportions, each over ``n_points`` test points; the seed is the unit.

    The interval is the widest, on each side, of

    * the **Wilson interval over seeds**: :func:`wilson` with ``k = sum of the proportions`` and ``n = S``,
      as if each seed were one Bernoulli trial. A quantity in [0, 1] with mean ``p`` has variance at most
      ``p (1 - p)``, so this bounds the between-seed spread whatever its shape - including the bimodal
      agreement of random targets, where a seed lands either near chance or near 1 and a handful of seeds can
      all land on the same side;
    * a two-stage bootstrap (resample the seeds with replacement, redraw each resampled seed's count from
      Binomial(n_points, p_seed)), percentile interval, widened to the Student-t interval over seeds;
    * the Wilson interval of the pooled count over all ``S * n_points`` test points (a floor that matters only
      when the seeds agree exactly).

    Clipped to [0, 1]; ``method`` is :data:`SEED_PROPORTION_METHOD` and ``bounds`` is ``(0, 1)``. One seed
    gets the same treatment (its Wilson interval over seeds is wide: one seed says little about the protocol's
    mean); :func:`wilson` alone describes that one trained pair over its test points."""
    p = _finite(proportions, "seed_proportion")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"seed_proportion: proportions must lie in [0, 1], got {p.min()}..{p.max()}")
    if n_points < 1:
        raise ValueError(f"seed_proportion: n_points must be >= 1, got {n_points}")
    m = float(p.mean())
    over_seeds = wilson(min(float(p.sum()), float(p.size)), int(p.size), level)
    pooled = wilson(float(np.round(p.sum() * n_points)), n_points * p.size, level)
    lows, highs = [over_seeds.low, pooled.low, m], [over_seeds.high, pooled.high, m]
    if p.size >= 2:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, p.size, size=(n_boot, p.size))
        means = rng.binomial(n_points, p[idx]).mean(axis=1) / n_points
        boot = _bootstrap_t(p, means, (0.0, 1.0), level)
        lows.append(boot.low)
        highs.append(boot.high)
    low, high = max(0.0, min(lows)), min(1.0, max(highs))
    return Estimate(m, low, high, int(p.size), SEED_PROPORTION_METHOD, (0.0, 1.0))


def seeds_to_decide(
    est_value: float,
    region: tuple[float, float],
    *,
    lo: float = 0.0,
    hi: float = 1.0,
    level: float = LEVEL,
    max_seeds: int = 1_000_000,
) -> int | None:
    """The smallest number of seeds ``S`` (up to ``max_seeds``) at which the Wilson interval over seeds of a
    proportion with mean ``est_value`` (a quantity in ``[lo, hi]``, rescaled to [0, 1]) would lie entirely
    inside ``region`` or entirely outside it, so that :func:`judge` decides; ``None`` if no ``S`` does (a
    mean on the region's edge). A one-sided region (one infinite end) is open at its finite edge, as
    :func:`above` and :func:`below` require. It counts only the between-seed bound of
    :func:`seed_proportion`; a wider observed spread, or few test points, can need more seeds."""
    if not hi > lo:
        raise ValueError(f"seeds_to_decide needs lo < hi, got {lo}, {hi}")
    if not lo <= est_value <= hi:
        raise ValueError(f"seeds_to_decide: {est_value} lies outside [{lo}, {hi}]")
    r_lo, r_hi = (float(e) for e in region)
    if not r_lo <= r_hi:
        raise ValueError(f"acceptance region must have low <= high, got {region}")
    open_lo, open_hi = math.isinf(r_hi) and math.isfinite(r_lo), math.isinf(r_lo) and math.isfinite(r_hi)
    p = (est_value - lo) / (hi - lo)
    zq = float(stats.norm.ppf(0.5 + level / 2))
    start = 1
    while start <= max_seeds:  # chunks of 10^4, 9 x 10^4, ...: the common case needs only the first
        n = np.arange(start, min(max(10 * start, 10_000), max_seeds + 1), dtype=float)
        denom = 1 + zq**2 / n
        centre = (p + zq**2 / (2 * n)) / denom
        half = zq * np.sqrt(p * (1 - p) / n + zq**2 / (4 * n**2)) / denom
        low = lo + (hi - lo) * np.clip(np.minimum(p, centre - half), 0.0, 1.0)
        high = lo + (hi - lo) * np.clip(np.maximum(p, centre + half), 0.0, 1.0)
        inside = ((low > r_lo) if open_lo else (low >= r_lo)) & ((high < r_hi) if open_hi else (high <= r_hi))
        hit = np.flatnonzero(inside | (high < r_lo) | (low > r_hi))
        if hit.size:
            return int(n[hit[0]])
        start = int(n[-1]) + 1
    return None


def paired_point_sd(p_a, p_b):
    """Bound on the per-test-point standard deviation of the difference ``a_i - b_i`` of two [0, 1]-valued
    per-point series with means ``p_a`` and ``p_b``: ``sqrt(p_a (1 - p_a)) + sqrt(p_b (1 - p_b))`` (each
    series has variance at most ``p (1 - p)``, whatever the correlation between them; exact for independent
    indicators only as a bound). Vectorised over arrays; a float for scalar input."""
    a = np.clip(np.asarray(p_a, dtype=float), 0.0, 1.0)
    b = np.clip(np.asarray(p_b, dtype=float), 0.0, 1.0)
    out = np.sqrt(a * (1 - a)) + np.sqrt(b * (1 - b))
    return float(out) if out.ndim == 0 else out


def _per_seed(values, what: str) -> list[np.ndarray]:
    """A sequence over seeds of per-cell values (a flat sequence of numbers = one cell per seed)."""
    rows = [np.asarray(r, dtype=float).reshape(-1) for r in values]
    if not rows:
        raise ValueError(f"{what}: no seeds")
    for s, r in enumerate(rows):
        if r.size == 0:
            raise ValueError(f"{what}: seed {s} has no cells")
        if not np.all(np.isfinite(r)):
            bad = int(np.sum(~np.isfinite(r)))
            raise ValueError(f"{what}: seed {s} has {bad} of {r.size} values that are not finite")
    return rows


def paired_difference(
    values,
    point_sd,
    n_points: int,
    *,
    bounds: tuple[float, float] = (-1.0, 1.0),
    level: float = LEVEL,
    seed: int = 0,
    n_boot: int = BOOTSTRAP,
) -> Estimate:
    """Mean paired difference (measured minus reference) with the seed as the statistical unit.

    ``values[s]`` holds the per-cell differences of seed ``s`` (cells of one seed share its f, targets and
    initial functions, so they are not independent); a flat sequence of numbers is one cell per seed.
    ``point_sd`` has the same nesting: the per-test-point standard deviation of each cell's difference (an
    upper bound such as :func:`paired_point_sd` will do); ``n_points`` test points per cell.

    Value: the mean over seeds of each seed's mean over its cells. Interval: the widest, per side, of

    * a two-stage cluster bootstrap: resample the seeds with replacement, shift each resampled seed's mean by
      a normal draw with sd ``mean_c(point_sd) / sqrt(n_points)`` (test-point noise, one draw per seed);
    * the Student-t interval over the ``S`` seed means (``S >= 2``);
    * a test-point floor ``mean +- z sqrt(sum_s v_s) / S`` with ``v_s = mean_c(point_sd)^2 / n_points`` and
      ``z`` the normal quantile (the variance comes from the many test points of each seed),

    clipped to ``bounds``. The interval has zero width only if every ``point_sd`` is 0; one seed gets a real
    interval from its test points (method ``points``; ``single`` if its point_sd is 0)."""
    rows = _per_seed(values, "paired_difference")
    sds = _per_seed(point_sd, "paired_difference point_sd")
    if len(sds) != len(rows) or any(a.size != b.size for a, b in zip(rows, sds)):
        raise ValueError(
            "paired_difference: point_sd must have the nesting of values, got "
            f"{[r.size for r in sds]} cells per seed for {[r.size for r in rows]}"
        )
    if any(np.any(s < 0) for s in sds):
        raise ValueError("paired_difference: point_sd must be >= 0")
    if n_points < 1:
        raise ValueError(f"paired_difference: n_points must be >= 1, got {n_points}")
    means = np.array([r.mean() for r in rows])
    se = np.array([s.mean() for s in sds]) / math.sqrt(n_points)
    n_seeds = means.size
    m = float(means.mean())
    if not bounds[0] <= m <= bounds[1]:
        raise ValueError(f"paired_difference: mean {m} lies outside bounds {bounds}")
    # the floor's variance comes from n_points test points per seed (many degrees of freedom): normal quantile
    floor = float(stats.norm.ppf(0.5 + level / 2)) * math.sqrt(float(np.sum(se**2))) / n_seeds
    low, high = m - floor, m + floor
    if n_seeds >= 2:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        boot = (means[idx] + se[idx] * rng.standard_normal((n_boot, n_seeds))).mean(axis=1)
        b_lo, b_hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
        t = mean_ci(means, level)
        low, high = min(low, float(b_lo), t.low), max(high, float(b_hi), t.high)
        method = "cluster-bootstrap+t"
    else:
        method = "points" if floor > 0 else "single"
    low, high = max(low, bounds[0]), min(high, bounds[1])
    low, high = float(min(low, m)), float(max(high, m))
    return Estimate(m, low, high, int(n_seeds), method, (float(bounds[0]), float(bounds[1])))


def adjusted_proportion(p, n_points: int):
    """Agresti-Coull's adjusted proportion ``(p n + 2) / (n + 4)`` of a proportion ``p`` (scalar or array)
    measured on ``n_points`` test points: a proportion observed at 0 or 1 still has the per-point spread the
    test points cannot rule out (as the Wilson interval says). The floor of every paired interval."""
    return (np.clip(p, 0.0, 1.0) * n_points + 2.0) / (n_points + 4.0)


def paired_proportion(
    proportions, n_points: int, *, level: float = LEVEL, seed: int = 0, n_boot: int = BOOTSTRAP
) -> Estimate:
    """Mean over seeds of a per-seed proportion that compares two functions of the *same* seed on ``n_points``
    test points (a net against its own kernel limit, a net's signs against its same-init limit): a paired
    quantity, judged like :func:`paired_difference` - cluster bootstrap and Student-t over the seeds, with a
    test-point floor at Agresti-Coull's adjusted proportion ``(p n + 2) / (n + 4)`` (so 0 or 1 on every
    point still leaves an interval). Marginal rates whose seeds can fall in separate modes (an agreement
    under random targets) use :func:`seed_proportion` instead. ``proportions``: one per seed, or a list per
    seed of its cells' proportions."""
    values = [np.atleast_1d(np.asarray(v, float)) for v in proportions]
    if not values or any(v.ndim != 1 or v.size == 0 for v in values):
        raise ValueError("paired_proportion: give one proportion, or a non-empty list, per seed")
    if any(np.any((v < 0) | (v > 1)) for v in values):
        raise ValueError("paired_proportion: proportions must lie in [0, 1]")
    adj = [adjusted_proportion(v, n_points) for v in values]
    sds = [np.sqrt(a * (1 - a)) for a in adj]
    est = paired_difference(
        [v.tolist() for v in values],
        [s.tolist() for s in sds],
        n_points,
        bounds=(0.0, 1.0),
        level=level,
        seed=seed,
        n_boot=n_boot,
    )
    if len(values) < 2:
        return est
    # near 0 or 1 the seeds' spread is skewed: also the Student-t interval on the logit of the adjusted seed
    # means, mapped back, whichever is wider on each side
    t = mean_ci(np.array([np.log(a.mean() / (1 - a.mean())) for a in adj]), level)
    lo, hi = (float(1 / (1 + np.exp(-e))) for e in (t.low, t.high))
    return replace(est, low=min(est.low, lo), high=max(est.high, hi))


def proportion_difference(
    a,
    b,
    n_points: int,
    *,
    bounds: tuple[float, float] = (-1.0, 1.0),
    level: float = LEVEL,
    seed: int = 0,
    n_boot: int = BOOTSTRAP,
) -> Estimate:
    """Mean over seeds of the difference ``a - b`` of two per-seed proportions, each measured on ``n_points``
    test points (an error rate with and without weight decay, a transfer rate against a baseline).

    ``a`` and ``b``: shape ``(S,)`` (one proportion per seed), ``(S, cells)``, or a list per seed of its
    cells' proportions (seeds may have different numbers of cells); ``b`` pairs with ``a`` cell by cell.
    The value is the mean over seeds of each seed's mean ``a - b`` over its cells; the interval is
    :func:`paired_difference` (the seed is the unit) with the per-point sd :func:`paired_point_sd` at
    Agresti-Coull's adjusted proportions ``(p n + 2) / (n + 4)``, so seeds that measure the same difference -
    even identical proportions at 0 or 1 - still get a real interval. When ``a`` and ``b`` are measured on
    different numbers of points, pass the smaller (a wider floor)."""
    if n_points < 1:
        raise ValueError(f"proportion_difference: n_points must be >= 1, got {n_points}")
    rows_a = [np.atleast_1d(np.asarray(r, dtype=float)).reshape(-1) for r in a]
    rows_b = [np.atleast_1d(np.asarray(r, dtype=float)).reshape(-1) for r in b]
    if not rows_a or len(rows_a) != len(rows_b) or any(x.shape != y.shape for x, y in zip(rows_a, rows_b)):
        raise ValueError(
            "proportion_difference: a and b need the same shape (S,), (S, cells) or cells per seed, got "
            f"{[x.size for x in rows_a]} and {[y.size for y in rows_b]}"
        )
    both = np.concatenate(rows_a + rows_b)
    if not np.all(np.isfinite(both)):
        raise ValueError("proportion_difference: proportions must be finite")
    if np.any((both < 0) | (both > 1)):
        raise ValueError("proportion_difference: proportions must lie in [0, 1]")

    return paired_difference(
        [(x - y).tolist() for x, y in zip(rows_a, rows_b)],
        [
            np.atleast_1d(
                paired_point_sd(adjusted_proportion(x, n_points), adjusted_proportion(y, n_points))
            ).tolist()
            for x, y in zip(rows_a, rows_b)
        ],
        n_points,
        bounds=bounds,
        level=level,
        seed=seed,
        n_boot=n_boot,
    )


def seed_mean(
    values: Sequence[float],
    *,
    bounds: tuple[float, float] = (-np.inf, np.inf),
    level: float = LEVEL,
    seed: int = 0,
    n_boot: int = BOOTSTRAP,
) -> Estimate:
    """Mean over seeds with the wider of a percentile bootstrap and a Student-t interval, clipped to
    ``bounds`` (e.g. (-1, 1) for a difference of proportions). One seed gives a zero-width interval, which
    :func:`judge` never confirms a tolerance claim with (it says so in the reason)."""
    v = _finite(values, "seed_mean")
    m = float(v.mean())
    if v.size == 1:
        return Estimate(m, m, m, 1, "single")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    return _bootstrap_t(v, means, bounds, level)


def _bootstrap_t(
    values: np.ndarray, boot_means: np.ndarray, bounds: tuple[float, float], level: float
) -> Estimate:
    """The percentile interval of ``boot_means``, widened to the Student-t interval over ``values`` where that
    is wider (a percentile bootstrap over few seeds is too narrow), clipped to ``bounds``."""
    t = mean_ci(values, level)
    m = t.value
    lo, hi = np.quantile(boot_means, [0.5 - level / 2, 0.5 + level / 2])
    lo, hi = max(min(lo, t.low), bounds[0]), min(max(hi, t.high), bounds[1])
    return Estimate(m, float(min(lo, m)), float(max(hi, m)), int(values.size), "bootstrap+t")


# ------------------------------------------------------------------------------------------- verdicts
def _where(measured: Estimate) -> str:
    return f"measured {measured.text()} ({measured.method}, n={measured.n})"


def _seeds_hint(region: tuple[float, float], measured: Estimate) -> str:
    """For an inconclusive proportion over seeds: how many seeds would decide at the same mean."""
    if measured.method != SEED_PROPORTION_METHOD:
        return ""
    lo, hi = measured.bounds if measured.bounds is not None else (0.0, 1.0)
    k = seeds_to_decide(measured.value, region, lo=lo, hi=hi)
    if k is None:
        return "; no number of seeds would decide at this mean"
    # The interval also carries the observed spread, so it can stay undecided beyond the between-seed bound.
    return f"; about {max(k, measured.n + 1)} seeds would decide"


def judge(region: tuple[float, float], measured: Estimate) -> tuple[str, str]:
    """(verdict, reason) of a measurement against an acceptance region (see the module docstring)."""
    lo, hi = region
    if not lo <= hi:
        raise ValueError(f"acceptance region must have low <= high, got {region}")
    m_lo, m_hi = measured.low, measured.high
    where = _where(measured)
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
        f"{_seeds_hint(region, measured)}"
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
    """Claim 'measured > threshold' (one-sided): confirmed when the whole interval is strictly above it."""
    region = (float(threshold), math.inf)
    verdict, reason = _one_sided(region, measured, float(threshold), "above")
    return Claim(name, claim, None, None, region, measured, verdict, reason, basis, paper)


def below(
    name: str, claim: str, threshold: float, measured: Estimate, *, basis: str = "", paper: str = ""
) -> Claim:
    """Claim 'measured < threshold' (one-sided): confirmed when the whole interval is strictly below it."""
    region = (-math.inf, float(threshold))
    verdict, reason = _one_sided(region, measured, float(threshold), "below")
    return Claim(name, claim, None, None, region, measured, verdict, reason, basis, paper)


def _one_sided(
    region: tuple[float, float], measured: Estimate, threshold: float, side: str
) -> tuple[str, str]:
    """:func:`judge` for a strict one-sided claim, with a reason that says what actually happened: an interval
    end exactly at the threshold (``touches``), the threshold inside the interval (``contains``), or judge's
    own reason (one seed without an interval, refuted)."""
    verdict, reason = judge(region, measured)
    near, far = (measured.low, measured.high) if side == "above" else (measured.high, measured.low)
    where, t = _where(measured), f"{threshold:.3f}"
    if verdict == "confirmed" and near == threshold:  # strictly above (below): an end at the threshold fails
        verdict = "inconclusive"
        end = "lower" if side == "above" else "upper"
        reason = f"{where} touches the threshold {t} with its {end} end: not strictly {side} it"
    elif verdict == "inconclusive" and measured.low < threshold < measured.high:
        reason = f"{where} contains the threshold {t}{_seeds_hint(region, measured)}"
    elif verdict == "inconclusive" and far == threshold and measured.low < measured.high:
        end = "upper" if side == "above" else "lower"
        reason = (
            f"{where} lies on the wrong side of the threshold {t}, reaching it only with its {end} end"
            f"{_seeds_hint(region, measured)}"
        )
    return verdict, reason


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
