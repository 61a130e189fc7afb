"""Metrics of the suite: classification agreement/accuracy, cosines, gaps, and statistics over seeds.

Statistics conventions (used by every experiment and figure):
* ``mean_ci``: mean over seeds with a two-sided 95% Student-t interval (half-width t_{0.975,n-1} s / sqrt(n)).
* ``fit_loglog_slope``: least squares of log(value) on log(width) over all (width, seed) points,
  slope with a 95% Student-t interval (n - 2 degrees of freedom).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats


def agreement(f_out: jax.Array, g_out: jax.Array) -> jax.Array:
    """Fraction of points where sign f == sign g (scalar outputs (M,)); zero counts as +1 in both."""
    return jnp.mean(jnp.where(f_out >= 0, 1, -1) == jnp.where(g_out >= 0, 1, -1))


def accuracy(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of points with sign(output) == label, labels in {-1, +1}."""
    return jnp.mean(jnp.where(outputs >= 0, 1.0, -1.0) == labels)


def mean_abs_cosine(u: jax.Array, v: jax.Array) -> jax.Array:
    """mean_n |cos(u_n, v_n)| over rows of u, v (N, d); rows of zero norm count as cosine 0."""
    nu = jnp.linalg.norm(u, axis=1)
    nv = jnp.linalg.norm(v, axis=1)
    denom = nu * nv
    cos = jnp.sum(u * v, axis=1) / jnp.where(denom > 0, denom, 1.0)
    return jnp.mean(jnp.abs(jnp.where(denom > 0, cos, 0.0)))


def relative_gap(a: jax.Array, b: jax.Array) -> jax.Array:
    """||a - b|| / ||b|| (e.g. finite-width outputs a vs infinite-width outputs b)."""
    return jnp.linalg.norm(a - b) / jnp.linalg.norm(b)


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def mean_ci(values, level: float = 0.95) -> Interval:
    """Mean and Student-t interval over seeds; a single value gets a zero-width interval."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    mean = float(v.mean())
    if v.size == 1:
        return Interval(mean, mean, mean, 1)
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return Interval(mean, mean - half, mean + half, int(v.size))


@dataclass(frozen=True)
class SlopeFit:
    slope: float
    low: float
    high: float
    intercept: float
    n: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def fit_loglog_slope(x, y, level: float = 0.95) -> SlopeFit:
    """Fit log y = intercept + slope log x over all points; 95% interval on the slope."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    if lx.size < 3 or np.ptp(lx) == 0:
        raise ValueError(f"a log-log slope needs >= 3 positive points over >= 2 distinct x; got {lx.size}")
    res = stats.linregress(lx, ly)
    half = float(stats.t.ppf(0.5 + level / 2, lx.size - 2) * res.stderr)
    return SlopeFit(float(res.slope), float(res.slope - half), float(res.slope + half),
                    float(res.intercept), int(lx.size))
