"""(b) Rays and (c) the FGSM error curve over eps, on real data, for nets of several widths and their limit.

(b) Along the FGSM ray x + t s (s the sign of the loss gradient, t in [-T, T]) a finite ReLU net is exactly
    piecewise linear, with kinks only where a hidden unit changes sign (their number grows like the width m),
    and close to linear overall (R^2 of a line fit); as m grows the curve converges to the smooth
    infinite-width curve (sup distance ~ m^(-1/2)); the wrong-class set along the ray is one interval.
(c) FGSM error vs eps (L-inf) for logistic regression, the RBF machine, every width and the limit; the
    finite-width curves approach the limit's.

Finite nets are centred, f(x; theta_t) - f(x; theta_0) (docs/theory.md): their infinite-width limit is the
width-independent kernel predictor (standard or NTK parametrization as ``cfg.net``); first layer trained."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import attacks, limits, models, verdicts
from ntk_adv.arch import INF_WIDTH
from ntk_adv.metrics import fit_loglog_slope
from ntk_adv.models import apply_in_chunks
from ntk_adv.results import select
from ntk_adv.training import centered

from .common import (
    GOODFELLOW,
    fgsm_errors,
    geomean,
    linear_apply,
    padded_init,
    rbf_predictor,
    train_centered,
    train_linear,
)
from .common import values as _values
from .config import Config

RAY_METRICS = ("ray_sup_gap", "ray_kinks", "ray_pl_residual", "ray_wrong_contiguous", "ray_linear_r2")
PL_TOLERANCE = 1e-4  # max relative deviation from linearity between consecutive kinks (float32 round-off)
TOL_KINKS = 0.15  # slope of kinks vs m: units crossing inside [-T, T] are a fixed share of m (binomial noise)
TOL_GAP_SLOPE = 0.2  # m^(-1/2): CLT fluctuation of the centred net around its limit, plus pre-asymptotic bias
R2_LINEAR = 0.9  # "close to linear": a line explains >= 90% of the logit's variance along the ray
CONTIGUOUS = 0.9  # share of rays whose wrong-class set is one interval


def _on_ray(f, z, s, ts):
    """f(z_j + t s_j) for rays j: z, s (M, d); ts (G,) shared or (M, G) per ray -> (M, G)."""
    ts = jnp.broadcast_to(ts, (z.shape[0], ts.shape[-1]))
    pts = z[:, None, :] + ts[:, :, None] * s[:, None, :]
    return apply_in_chunks(f, pts.reshape(-1, z.shape[1])).reshape(ts.shape)


def _crossings(p, net, z, s, t_max):
    """Ray parameters t (M, m) at which each hidden unit's pre-activation w.(z + t s) + b is zero; units that
    do not cross inside [-t_max, t_max] get +t_max (a zero-length segment, harmless for the midpoint test)."""
    u = models.hidden(p, z, net)
    v = models.hidden(p, z + s, net) - u
    t = -u / jnp.where(v != 0, v, 1.0)
    inside = (v != 0) & (jnp.abs(t) <= t_max)
    return jnp.where(inside, t, t_max), inside


def _wrong_runs(out, y):
    """Number of maximal runs of grid points classified wrongly, per ray: out (M, G), y (M,) -> (M,)."""
    wrong = (jnp.where(out >= 0, 1.0, -1.0) != y[:, None]).astype(jnp.int32)
    starts = jnp.sum((wrong[:, 1:] - wrong[:, :-1]) == 1, axis=1)
    return starts + wrong[:, 0]


def _linear_r2(ts, out):
    """R^2 of the least-squares line through (t, f(t)) per ray; out (M, G) -> (M,)."""
    tc = ts - jnp.mean(ts)
    oc = out - jnp.mean(out, axis=1, keepdims=True)
    slope = (oc @ tc) / jnp.sum(tc**2)
    resid = oc - slope[:, None] * tc[None, :]
    return 1.0 - jnp.sum(resid**2, axis=1) / jnp.maximum(jnp.sum(oc**2, axis=1), 1e-30)


def _ray_grid(cfg: Config, dtype):
    return jnp.linspace(-cfg.ray_t, cfg.ray_t, cfg.ray_points, dtype=dtype)


@partial(jax.jit, static_argnums=0)
def _width_cell(cfg: Config, x, y, z, yz, z_ray, y_ray, eps_grid, widths, keys):
    """Every (width, seed) net, one after another (``lax.map``; widths (R,), keys (R, 2)): FGSM errors over
    eps
    (c) and the ray metrics (b) of the centred net. Each net is a width-m net padded to max(widths) units
    (:func:`padded_init`), so one compiled program serves all widths."""
    net = cfg.net.with_width(max(cfg.widths))
    apply_c = centered(models.make_apply(net))
    ts = _ray_grid(cfg, x.dtype)

    def one(args):
        m, key = args
        p0 = padded_init(net, m, x.shape[1], key, x.dtype)
        pair = train_centered(net, x, y, cfg.train, key, params0=p0)
        f = partial(apply_c, pair)
        errors = fgsm_errors(f, z, yz, eps_grid, cfg.train.loss)
        s = attacks.fgsm(
            f, z_ray, labels=y_ray, eps=1.0, loss=cfg.train.loss
        )  # the net's own FGSM ray direction
        fm = _on_ray(f, z_ray, s, ts)
        span = jnp.max(fm, axis=1) - jnp.min(fm, axis=1)
        t1, in1 = _crossings(pair[0], net, z_ray, s, cfg.ray_t)
        t0, in0 = _crossings(pair[1], net, z_ray, s, cfg.ray_t)
        kinks = jnp.sum(in1, axis=1) + jnp.sum(in0, axis=1)
        edge = jnp.full((1,), cfg.ray_t, x.dtype)
        knots = jnp.sort(jnp.concatenate([-edge, t1[0], t0[0], edge]))[None, :]
        mids = 0.5 * (knots[:, 1:] + knots[:, :-1])
        f_knots = _on_ray(f, z_ray[:1], s[:1], knots)
        f_mids = _on_ray(f, z_ray[:1], s[:1], mids)
        dev = jnp.abs(f_mids - 0.5 * (f_knots[:, 1:] + f_knots[:, :-1]))
        return {
            "errors": errors,
            "direction": s,
            "curve": fm,
            "ray_kinks": jnp.mean(kinks.astype(x.dtype)),
            "ray_pl_residual": jnp.max(dev) / span[0],
            "ray_wrong_contiguous": jnp.mean((_wrong_runs(fm, y_ray) <= 1).astype(x.dtype)),
            "ray_linear_r2": jnp.mean(_linear_r2(ts, fm)),
            "contiguous_count": jnp.sum(_wrong_runs(fm, y_ray) <= 1),
        }

    return jax.lax.map(one, (widths, keys))


@partial(jax.jit, static_argnums=0)
def _limit_on_rays(cfg: Config, limit, z_ray, s, fm):
    """The limit along the finite nets' rays s (S, M, d) and the relative sup distance to their curves fm."""
    ts = _ray_grid(cfg, z_ray.dtype)

    def one(s, fm):
        fi = _on_ray(limit, z_ray, s, ts)
        span = jnp.max(fi, axis=1) - jnp.min(fi, axis=1)
        return jnp.mean(jnp.max(jnp.abs(fm - fi), axis=1) / span), fi[0]

    return jax.vmap(one)(s, fm)


@partial(jax.jit, static_argnums=0)
def _limit_cell(cfg: Config, z, yz, z_ray, y_ray, limit, lin, rbf, eps_grid):
    """FGSM error curves of the limit, the linear model and the RBF machine; the limit's own rays."""
    ts = _ray_grid(cfg, z.dtype)
    loss = cfg.train.loss
    s = attacks.fgsm(limit, z_ray, labels=y_ray, eps=1.0, loss=loss)
    fi = _on_ray(limit, z_ray, s, ts)
    return {
        "errors_limit": fgsm_errors(limit, z, yz, eps_grid, loss),
        "errors_linear": fgsm_errors(partial(linear_apply, lin), z, yz, eps_grid, loss),
        "errors_rbf": fgsm_errors(rbf, z, yz, eps_grid, loss),
        "ray_wrong_contiguous": (_wrong_runs(fi, y_ray) <= 1).astype(z.dtype),
        "ray_linear_r2": _linear_r2(ts, fi),
        "example": fi[0],
    }


def _limit(cfg: Config, x, y):
    tc = cfg.train
    return limits.make_predictor(
        cfg.net.with_width(INF_WIDTH).kernel, x, y, loss=tc.loss, lr=tc.lr, steps=tc.steps
    )


def _example_points(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """The ray grid t (G,) and the indices of the (at most 401) points of it kept for the example curves."""
    ts = np.linspace(-cfg.ray_t, cfg.ray_t, cfg.ray_points)
    keep = np.unique(np.linspace(0, cfg.ray_points - 1, min(cfg.ray_points, 401)).round().astype(int))
    return ts, keep


def run_models(cfg: Config, x, y, z, yz) -> list[dict]:
    """Parts (b) and (c) of the deterministic models (rows with seed 0): the FGSM error curves of the limit,
    logistic regression and the RBF machine over ``eps``, the limit's ray metrics per ray (its own FGSM
    rays from the first ``n_rays`` test points) and its example curve along the first ray."""
    n_rays = min(cfg.n_rays, z.shape[0])
    z_ray, y_ray = z[:n_rays], yz[:n_rays]
    eps_grid = jnp.asarray(cfg.eps, x.dtype)
    tc = cfg.train
    limit = _limit(cfg, x, y)
    lin = train_linear(x, y, tc)
    rbf = rbf_predictor(x, y, tc, cfg.rbf_scale)
    res = _limit_cell(cfg, z, yz, z_ray, y_ray, limit, lin, rbf, eps_grid)
    rows = []
    for model in ("limit", "linear", "rbf"):  # deterministic: one row each (seed 0)
        rows += [
            {"part": "c", "model": model, "eps": e, "seed": 0, "metric": "fgsm_error", "value": float(v)}
            for e, v in zip(cfg.eps, np.asarray(res["errors_" + model]))
        ]
    for metric in ("ray_wrong_contiguous", "ray_linear_r2"):
        rows += [
            {"part": "b", "model": "limit", "seed": 0, "ray": j, "metric": metric, "value": float(v)}
            for j, v in enumerate(np.asarray(res[metric]))
        ]
    ts, keep = _example_points(cfg)
    rows += [
        {
            "part": "b",
            "model": "limit",
            "t": float(ts[i]),
            "seed": 0,
            "metric": "ray_example",
            "value": float(np.asarray(res["example"])[i]),
        }
        for i in keep
    ]
    return rows


def run_nets(cfg: Config, x, y, z, yz, seeds=None) -> list[dict]:
    """Parts (b) and (c) of the finite nets of every width and of the seeds ``seeds`` (default: all
    ``cfg.seeds``): FGSM error curves, ray metrics and (for seed 0) the example curves of the net and of the
    limit along the net's first ray. The net of width m and seed s starts from key s of ``cfg.seeds`` keys
    folded with m, whichever seeds run with it."""
    seeds = list(range(cfg.seeds)) if seeds is None else [int(s) for s in seeds]
    n_rays = min(cfg.n_rays, z.shape[0])
    z_ray, y_ray = z[:n_rays], yz[:n_rays]
    eps_grid = jnp.asarray(cfg.eps, x.dtype)
    limit = _limit(cfg, x, y)
    root = jax.random.PRNGKey(cfg.seed)
    pick = jnp.asarray(seeds)
    keys = jnp.concatenate(
        [jax.random.split(jax.random.fold_in(root, w), cfg.seeds)[pick] for w in cfg.widths]
    )
    n = len(seeds)
    widths = jnp.repeat(jnp.asarray(cfg.widths, x.dtype), n)
    res_all = _width_cell(cfg, x, y, z, yz, z_ray, y_ray, eps_grid, widths, keys)
    ts, keep = _example_points(cfg)
    rows = []
    for k, width in enumerate(cfg.widths):
        res = jax.tree_util.tree_map(lambda v, k=k: v[k * n : (k + 1) * n], res_all)
        gap, example_limit = _limit_on_rays(cfg, limit, z_ray, res["direction"], res["curve"])
        res = {**res, "ray_sup_gap": gap}
        errors = np.asarray(res["errors"])
        for i, s in enumerate(seeds):
            rows += [
                {
                    "part": "c",
                    "model": "net",
                    "width": width,
                    "eps": e,
                    "seed": s,
                    "metric": "fgsm_error",
                    "value": float(errors[i, j]),
                }
                for j, e in enumerate(cfg.eps)
            ]
            rows += [
                {
                    "part": "b",
                    "model": "net",
                    "width": width,
                    "seed": s,
                    "metric": metric,
                    "value": float(np.asarray(res[metric])[i]),
                }
                for metric in (*RAY_METRICS, "contiguous_count")
            ]
        if 0 not in seeds:
            continue
        first = seeds.index(0)
        for name, arr in (("ray_example", res["curve"][:, 0]), ("ray_example_limit", example_limit)):
            rows += [
                {
                    "part": "b",
                    "model": "net",
                    "width": width,
                    "t": float(ts[i]),
                    "seed": 0,
                    "metric": name,
                    "value": float(np.asarray(arr)[first, i]),
                }
                for i in keep
            ]
    return rows


# ------------------------------------------------------------------------------------------------ claims
def summarize_b(cfg: Config, rows, summary: dict) -> list[verdicts.Claim]:
    widths = list(cfg.widths)
    gap = select(rows, part="b", model="net", metric="ray_sup_gap")
    gap_fit = fit_loglog_slope([r["width"] for r in gap], [r["value"] for r in gap])
    kinks = select(rows, part="b", model="net", metric="ray_kinks")
    kink_fit = fit_loglog_slope([r["width"] for r in kinks], [r["value"] for r in kinks])
    pl = _values(rows, part="b", model="net", metric="ray_pl_residual")
    by_width = lambda metric, agg: {
        str(w): agg(_values(rows, part="b", model="net", width=w, metric=metric)) for w in widths
    }
    contiguous = by_width("ray_wrong_contiguous", lambda v: float(np.mean(v)))
    lim_contig = _values(rows, part="b", model="limit", metric="ray_wrong_contiguous")
    contiguous["limit"] = float(np.mean(lim_contig))
    r2 = by_width("ray_linear_r2", lambda v: float(np.mean(v)))
    lim_r2 = _values(rows, part="b", model="limit", metric="ray_linear_r2")
    r2["limit"] = float(np.mean(lim_r2))
    summary.update(
        {
            "ray_sup_gap_slope": gap_fit.slope,
            "ray_sup_gap_slope_ci95": [gap_fit.low, gap_fit.high],
            "ray_sup_gap_by_width": by_width("ray_sup_gap", geomean),
            "ray_kinks_slope": kink_fit.slope,
            "ray_kinks_slope_ci95": [kink_fit.low, kink_fit.high],
            "ray_kinks_by_width": by_width("ray_kinks", geomean),
            # an identity (a ReLU net is linear between kinks), checked by tests/test_exp_linearity.py
            # against PL_TOLERANCE (float32 round-off), reported here; not a claim
            "ray_pl_residual_max": float(np.max(pl)),
            "ray_wrong_contiguous": contiguous,
            "ray_linear_r2": r2,
        }
    )
    paper = (
        f"{GOODFELLOW}, Sec. 3 and Fig. 4 (logits along the FGSM direction are piecewise linear; no number)"
    )
    claims = [
        verdicts.slope(
            "b_kinks_grow_with_width",
            "the number of kinks along the ray grows like the width m",
            1.0,
            TOL_KINKS,
            kink_fit,
            basis="each unit crosses zero inside [-T, T] with an m-independent probability",
            paper=paper,
        ),
        verdicts.slope(
            "b_ray_converges_to_limit",
            "sup distance between the finite-width and the infinite-width "
            "logit curve along the ray ~ m^(-1/2)",
            -0.5,
            TOL_GAP_SLOPE,
            gap_fit,
            basis="docs/theory.md, finite width vs limit",
            paper=paper,
        ),
    ]
    for w in widths:
        v = _values(rows, part="b", model="net", width=w, metric="ray_linear_r2")
        claims.append(
            verdicts.above(
                f"b_ray_nearly_linear_m{w}",
                f"net m={w}: logits along the FGSM ray are close to linear over [-T, T] "
                "(mean R^2 of a line fit)",
                R2_LINEAR,
                verdicts.seed_mean(v, bounds=(-np.inf, 1.0)),
                basis=(
                    f"Goodfellow's linearity: a line explains >= {R2_LINEAR} of the variance; T = "
                    f"{cfg.ray_t:g}"
                ),
                paper=paper,
            )
        )
    claims.append(
        verdicts.above(
            "b_ray_nearly_linear_limit",
            "NTK limit: logits along its FGSM ray are close to linear (R^2, over rays)",
            R2_LINEAR,
            verdicts.seed_mean(lim_r2, bounds=(-np.inf, 1.0)),
            basis="interval over rays",
            paper=paper,
        )
    )
    counts = _values(rows, part="b", model="net", metric="contiguous_count")
    n_rays = min(cfg.n_rays, int(summary["n_test"]))
    k = float(np.sum(counts) + np.sum(lim_contig))
    n = int(counts.size * n_rays + lim_contig.size)
    claims.append(
        verdicts.above(
            "b_wrong_region_contiguous",
            "the wrong-class region along the FGSM ray is one interval (share of rays, "
            "pooled over widths, seeds and the limit)",
            CONTIGUOUS,
            verdicts.wilson(k, n),
            basis="a nearly linear logit crosses zero once",
            paper=paper,
        )
    )
    return claims


def summarize_c(cfg: Config, rows, summary: dict) -> list[verdicts.Claim]:
    curves = {m: _values(rows, part="c", model=m, metric="fgsm_error") for m in ("linear", "rbf", "limit")}
    gaps = {}
    per_width = {}
    for w in cfg.widths:
        per_seed = np.asarray(
            [
                _values(rows, part="c", model="net", width=w, seed=s, metric="fgsm_error")
                for s in range(cfg.seeds)
            ]
        )
        per_width[w] = per_seed
        curves[str(w)] = per_seed.mean(axis=0)
        gaps[str(w)] = float(np.mean(np.abs(per_seed - curves["limit"][None, :])))
    order = np.argsort(cfg.eps)
    summary["fgsm_eps"] = [float(e) for e in np.asarray(cfg.eps)[order]]
    summary["fgsm_error_curves"] = {k: [float(v) for v in c[order]] for k, c in curves.items()}
    summary["fgsm_error_gap_to_limit_by_width"] = gaps
    w_small, w_large = min(cfg.widths), max(cfg.widths)
    gap_seed = lambda w: np.mean(np.abs(per_width[w] - curves["limit"][None, :]), axis=1)
    diff = gap_seed(w_small) - gap_seed(w_large)
    return [
        verdicts.above(
            "c_error_converges_to_limit",
            f"FGSM error curves approach the infinite-width curve as the width grows "
            f"(mean |error_m - error_inf| over eps: m={w_small} minus m={w_large}, per seed)",
            0.0,
            verdicts.seed_mean(diff, bounds=(-1.0, 1.0)),
            basis="the centred net converges to its kernel limit",
            paper="not in the paper (the NTK limit postdates it)",
        )
    ]
