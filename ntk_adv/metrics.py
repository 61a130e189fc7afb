"""Metrics of the suite: classification agreement/accuracy, cosines, gaps, statistics over seeds, flip points
along segments (decision-boundary geometry) and transfer rates of adversarial examples between models.

Statistics conventions (used by every experiment and figure):
* intervals over seeds are :class:`ntk_adv.verdicts.Estimate` (the one interval type; the Student-t mean is
  :func:`ntk_adv.verdicts.mean_ci`);
* ``fit_loglog_slope``: least squares of log(value) on log(width) over all (width, seed) points,
  slope with a 95% Student-t interval (n - 2 degrees of freedom).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from ntk_adv import validate


def _nan_if(bad, value: jax.Array) -> jax.Array:
    """``value``, or NaN where the traced ``bad`` flag of :mod:`ntk_adv.validate` is set (concrete bad values
    were refused before; under jit / vmap they surface as a NaN metric, never as a number)."""
    if bad is False:
        return value
    return jnp.where(bad, jnp.nan, value)


def agreement(f_out: jax.Array, g_out: jax.Array) -> jax.Array:
    """Fraction of points where sign f == sign g; zero counts as +1 in both.

    Domain: ``f_out`` and ``g_out`` are real-valued scalar outputs (scores, logits) of one equal shape (M,),
    M >= 1, with a real floating dtype. Integer or boolean arrays (class ids such as {0, 1}, or predicted
    classes) are refused, as are complex ones: only a real output has a sign. Shapes never broadcast.
    Eagerly a bad shape, dtype or a NaN/inf value is a ``ValueError``; under jit shape and dtype still raise
    at trace time and NaN/inf values give a NaN result."""
    bad = validate.scores("f_out", f_out) | validate.scores("g_out", g_out, np.shape(f_out)[0])
    f, g = jnp.asarray(f_out), jnp.asarray(g_out)
    return _nan_if(bad, jnp.mean(jnp.where(f >= 0, 1, -1) == jnp.where(g >= 0, 1, -1)))


def accuracy(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of points with sign(output) == label; zero counts as +1.

    Domain: ``outputs`` real-valued scalar outputs (M,), M >= 1, of a real floating dtype (integer/bool
    class ids and complex are refused); ``labels`` (M,) of a floating dtype with values exactly in
    {-1.0, +1.0} (class ids {0, 1} are refused). Eagerly any violation is a ``ValueError``; under jit shapes
    and dtypes still raise at trace time, NaN/inf outputs or labels outside {-1, +1} give a NaN result."""
    bad = validate.scores("outputs", outputs) | validate.sign_labels("labels", labels, np.shape(outputs)[0])
    out = jnp.asarray(outputs)
    return _nan_if(bad, jnp.mean(jnp.where(out >= 0, 1.0, -1.0) == jnp.asarray(labels)))


def mean_abs_cosine(u: jax.Array, v: jax.Array) -> jax.Array:
    """mean_n |cos(u_n, v_n)| over rows of u, v; rows of zero norm count as cosine 0.

    Domain: ``u`` and ``v`` real-valued (integer or floating) arrays of exactly the same shape (N, d), N >= 1
    (no broadcasting: a (N, 1) column is refused), finite values. Eagerly a violation is a ``ValueError``;
    under jit shape/dtype still raise and NaN/inf values give a NaN result (never a cosine of 0)."""
    validate.same_shape(("u", "v"), u, v, ndim=2)
    bad = validate.real_values("u", u) | validate.real_values("v", v)
    u, v = jnp.asarray(u), jnp.asarray(v)
    nu = jnp.linalg.norm(u, axis=1)
    nv = jnp.linalg.norm(v, axis=1)
    denom = nu * nv
    cos = jnp.sum(u * v, axis=1) / jnp.where(denom > 0, denom, 1.0)
    return _nan_if(bad, jnp.mean(jnp.abs(jnp.where(denom > 0, cos, 0.0))))


def relative_gap(a: jax.Array, b: jax.Array) -> jax.Array:
    """||a - b|| / ||b|| (e.g. finite-width outputs a vs infinite-width outputs b).

    Domain: ``a`` and ``b`` real-valued arrays of exactly the same shape (no broadcasting), at least one
    element, finite values, ``b`` not all zero (the gap relative to nothing is undefined). Eagerly a violation
    is a ``ValueError``; under jit shape/dtype still raise and bad values (NaN/inf, ||b|| = 0) give NaN."""
    validate.same_shape(("a", "b"), a, b)
    bad = validate.real_values("a", a) | validate.real_values("b", b)
    a, b = jnp.asarray(a), jnp.asarray(b)
    nb = jnp.linalg.norm(b)
    if not validate.is_tracer(nb) and float(nb) == 0.0:
        raise ValueError("b is all zero (||b|| = 0): the relative gap ||a - b|| / ||b|| is undefined")
    return jnp.where(bad | (nb == 0), jnp.nan, jnp.linalg.norm(a - b) / jnp.where(nb == 0, 1.0, nb))


@dataclass(frozen=True)
class SlopeFit:
    slope: float
    low: float
    high: float
    intercept: float
    n: int
    dropped: int = 0  # points left out of the fit (x or y not finite and positive), see ``why``
    why: str = ""  # the reasons, e.g. "2 with y <= 0, 1 with NaN/inf" ("" when nothing was dropped)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def fit_loglog_slope(x, y, level: float = 0.95) -> SlopeFit:
    """Fit log y = intercept + slope log x over all points; Student-t interval (``level``) on the slope.

    ``x`` and ``y`` are 1-D of one length. A point whose x or y is NaN/inf or <= 0 has no logarithm: it is
    left out, never silently: ``SlopeFit.dropped`` counts such points and ``SlopeFit.why`` says why. Fewer
    than 3 usable points, or fewer than 2 distinct x among them, is a ``ValueError`` naming what was
    dropped."""
    validate.scalar("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of the same length; got shapes {x.shape} and {y.shape}")
    for name, v in (("x", x), ("y", y)):
        if v.dtype.kind not in "iuf":
            raise ValueError(f"{name} must be real-valued (integer or floating); got dtype {v.dtype}")
    x, y = x.astype(float), y.astype(float)
    nonfinite = ~(np.isfinite(x) & np.isfinite(y))
    with np.errstate(invalid="ignore"):
        x_bad = ~nonfinite & (x <= 0)
        y_bad = ~nonfinite & ~x_bad & (y <= 0)
    reasons = [
        f"{int(c)} {what}"
        for c, what in (
            (nonfinite.sum(), "with NaN/inf"),
            (x_bad.sum(), "with x <= 0"),
            (y_bad.sum(), "with y <= 0"),
        )
        if c
    ]
    ok = ~(nonfinite | x_bad | y_bad)
    dropped, why = int(x.size - ok.sum()), ", ".join(reasons)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    if lx.size < 3 or np.ptp(lx) == 0:
        note = f" (dropped {dropped} of {x.size} points: {why})" if dropped else ""
        raise ValueError(
            f"a log-log slope needs >= 3 positive points (finite, x > 0, y > 0) over >= 2 distinct x; "
            f"got {lx.size}{note}"
        )
    res = stats.linregress(lx, ly)
    half = float(stats.t.ppf(0.5 + level / 2, lx.size - 2) * res.stderr)
    return SlopeFit(
        float(res.slope),
        float(res.slope - half),
        float(res.slope + half),
        float(res.intercept),
        int(lx.size),
        dropped,
        why,
    )


# ------------------------------------------------------------------------------------------ decision geometry
def flip_points(
    predict, xa: jax.Array, xb: jax.Array, *, grid: int = 64, bisection: int = 20
) -> tuple[jax.Array, jax.Array]:
    """First class change of ``predict`` along x(t) = (1-t) xa + t xb, per row; returns (t (P,), found (P,)).

    The class at t=0 is sign(f(xa)) (0 counts as +1). A grid of ``grid`` intervals locates the first interval
    whose right end has another class; ``bisection`` halvings shrink it (the left end always keeps the start
    class, the right end the other one); t is the bracket's midpoint. Rows without a change get t = NaN.
    Traceable (jit/vmap); ``predict`` is pointwise (N, d) -> (N,). ``xa`` and ``xb`` must have exactly the
    same shape (P, d) (no broadcasting), ``grid`` >= 1 and ``bisection`` >= 0 integers."""
    validate.same_shape(("xa", "xb"), xa, xb, ndim=2)
    validate.count("grid", grid, low=1)
    validate.count("bisection", bisection, low=0)
    p, d = xa.shape
    ts = jnp.linspace(0.0, 1.0, grid + 1, dtype=xa.dtype)

    def along(t):  # t (P, K) -> points (P*K, d)
        pts = xa[:, None, :] * (1 - t)[..., None] + xb[:, None, :] * t[..., None]
        return pts.reshape(-1, d)

    cls = lambda v: jnp.where(v >= 0, 1.0, -1.0)
    s = cls(predict(along(jnp.broadcast_to(ts, (p, grid + 1))))).reshape(p, grid + 1)
    changed = s[:, 1:] != s[:, :1]
    found = jnp.any(changed, axis=1)
    i = jnp.argmax(changed, axis=1)
    lo, hi = ts[i], ts[i + 1]

    def halve(_, bracket):
        lo, hi = bracket
        mid = (lo + hi) / 2
        same = cls(predict(along(mid[:, None])))[:] == s[:, 0]
        return jnp.where(same, mid, lo), jnp.where(same, hi, mid)

    lo, hi = jax.lax.fori_loop(0, bisection, halve, (lo, hi))
    return jnp.where(found, (lo + hi) / 2, jnp.nan), found


# ------------------------------------------------------------------------------------------- transferability
def transfer_matrix(
    out_clean: np.ndarray, out_adv: np.ndarray, y: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """T[a, b] = transfer rate from source a to model b: among points that a and b classify correctly and
    on which a's perturbation fools a, the fraction on which it fools b too.

    ``out_clean`` (n_models, n_test) outputs on clean test points; ``out_adv`` (n_sources, n_models, n_test)
    outputs of every model on each source's adversarial inputs; ``target`` (n_test,) the attack targets.
    Outputs are real-valued and finite, ``y`` and ``target`` float labels in {-1, +1} (a NaN output is an
    error, never a class). A pair without base points gets NaN (no point to transfer on)."""
    _check_transfer(out_clean, out_adv, y)
    validate.sign_labels("target", target, np.shape(y)[0])
    cls = lambda v: np.where(v >= 0, 1.0, -1.0)
    correct = cls(out_clean) == y[None, :]  # (models, n)
    fooled = cls(out_adv) == target[None, None, :]  # (sources, models, n)
    success = np.stack([fooled[a, a] & correct[a] for a in range(out_adv.shape[0])])  # (sources, n)
    base = success[:, None, :] & correct[None, :, :]
    with np.errstate(invalid="ignore"):
        return (fooled & base).sum(-1) / base.sum(-1)


def _check_transfer(out_clean, out_adv, y) -> None:
    """Shapes and domains of :func:`transfer_matrix` / :func:`white_box_success` (numpy: eager)."""
    sc, sa = np.shape(out_clean), np.shape(out_adv)
    if len(sc) != 2 or len(sa) != 3 or sa[1:] != sc or sa[0] > sc[0]:
        raise ValueError(
            "out_clean must be (n_models, n_test) and out_adv (n_sources <= n_models, n_models, n_test); got "
            f"shapes {sc} and {sa}"
        )
    validate.sign_labels("y", y, sc[1])
    for name, v in (("out_clean", out_clean), ("out_adv", out_adv)):
        validate.scores_nd(name, v)


def white_box_success(out_clean: np.ndarray, out_adv: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per model: among test points it classifies correctly, the fraction its own perturbation flips (0 for a
    model that classifies none correctly). Inputs as in :func:`transfer_matrix`."""
    _check_transfer(out_clean, out_adv, y)
    cls = lambda v: np.where(v >= 0, 1.0, -1.0)
    correct = cls(out_clean) == y[None, :]
    own = np.stack([cls(out_adv[a, a]) == -y for a in range(out_adv.shape[0])])
    return (own & correct).sum(-1) / np.maximum(correct.sum(-1), 1)


def mantel(dist: np.ndarray, sim: np.ndarray, permutations: int, seed: int) -> tuple[float, float]:
    """Spearman correlation of the upper triangles of two symmetric matrices and the one-sided (negative)
    Mantel permutation p-value (models permuted jointly in rows and columns)."""
    sd, ss = np.shape(dist), np.shape(sim)
    if len(sd) != 2 or sd[0] != sd[1] or sd != ss:
        raise ValueError(f"dist and sim must be square matrices of one shape (n, n); got {sd} and {ss}")
    validate.count("permutations", permutations, low=0)
    n = dist.shape[0]
    iu = np.triu_indices(n, 1)
    ok = np.isfinite(dist[iu]) & np.isfinite(sim[iu])
    if ok.sum() < 3 or np.ptp(dist[iu][ok]) == 0 or np.ptp(sim[iu][ok]) == 0:
        return np.nan, 1.0  # no variation: no correlation to test
    rd = stats.rankdata(dist[iu][ok])
    rho = float(stats.spearmanr(dist[iu][ok], sim[iu][ok]).statistic)
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(permutations):
        perm = rng.permutation(n)
        s = sim[np.ix_(perm, perm)][iu][ok]
        count += np.corrcoef(rd, stats.rankdata(s))[0, 1] <= rho + 1e-12
    return rho, (1 + count) / (1 + permutations)
