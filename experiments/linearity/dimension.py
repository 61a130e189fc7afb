"""(a) Dimension: the FGSM logit change eps ||grad_x f||_1 grows linearly in the input dimension d, a
random-sign perturbation of the same L-inf size only like sqrt(d) (first order: eps |grad_x f . r|, r uniform
signs), so their ratio grows like sqrt(d). Synthetic data, d swept, for a linear model, a wide net and the NTK
limit, trained with the identity loss; predicted log-log slopes vs d: 1 and 1/2 (tolerance 0.15).

Always the standard parametrization: Goodfellow's argument assumes weights of fixed per-coordinate size (in
the NTK parametrization both slopes drop by 1; the ratio still grows like sqrt(d))."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import attacks, kernels, limits, models, verdicts
from ntk_adv.data import DataSpec, load_spec
from ntk_adv.metrics import fit_loglog_slope
from ntk_adv.results import select
from ntk_adv.training import centered

from .common import GOODFELLOW, linear_apply, train_centered, train_linear
from .config import Config

DIM_MODELS = ("linear", "net", "limit")
DIM_METRICS = ("fgsm_change", "fgsm_first_order", "random_change", "random_first_order", "fgsm_random_ratio")
THEORY = {
    "fgsm_change": 1.0,
    "fgsm_first_order": 1.0,
    "random_change": 0.5,
    "random_first_order": 0.5,
    "fgsm_random_ratio": 0.5,
}
TOL_SLOPE = (
    0.15  # neglected: curvature of the net over an eps-ball, finite-d fluctuations of ||g||_1 / ||g||_2
)


def _padded_ntk(cfg: Config, scale, x, z):
    """The standard-parametrization NTK Phi(x, z) (x.z + b) of d-dimensional inputs zero-padded to D
    coordinates: Phi's covariances divide by D, so the inputs enter it scaled by ``scale`` = sqrt(D / d)
    (exactly :func:`ntk_adv.kernels.ntk` of the unpadded inputs)."""
    b = 1.0 if cfg.net.bias else 0.0
    return kernels.phi(x * scale, z * scale, gamma=cfg.net.gamma, bias=cfg.net.bias) * (x @ z.T + b)


@partial(jax.jit, static_argnums=0)
def _cell(cfg: Config, dims, x, y, z, keys):
    """Every (d, seed) problem, one after another (``lax.map``): dims (R,), x (R, N, D), y (R, N), z (R, M,
    D), keys (R, 2) -> metric dicts (R,). Inputs are zero-padded to D = max(dims) coordinates: the padded
    coordinates carry no signal, get no weight (first-layer columns zero at init and zero gradient, as x is 0
    there), no FGSM step (sign(0) = 0) and no random sign, so each problem is exactly its d-dimensional one;
    one compiled program serves all d."""
    tcfg = cfg.dim_train()
    big_d = max(cfg.dims)
    net = replace(cfg.net.with_width(cfg.dim_width), parametrization="standard")
    apply_c = centered(models.make_apply(net))
    eps = cfg.dim_eps

    def one(args):
        d, x, y, z, key = args
        k_net, k_sign = jax.random.split(key)
        cols = (jnp.arange(big_d) < d).astype(x.dtype)
        p0 = models.init_params(net, big_d, key=k_net, dtype=x.dtype)  # w ~ N(0, 1/D): rescale to N(0, 1/d)
        p0 = models.TwoLayerParams(w=p0.w * cols[None, :] * jnp.sqrt(big_d / d), b=p0.b, a=p0.a)
        lin = train_linear(x, y, tcfg)
        pair = train_centered(net, x, y, tcfg, k_net, params0=p0)
        limit = limits.make_predictor(
            partial(_padded_ntk, cfg, jnp.sqrt(big_d / d)), x, y, loss=tcfg.loss, lr=tcfg.lr, steps=tcfg.steps
        )
        preds = {"linear": partial(linear_apply, lin), "net": partial(apply_c, pair), "limit": limit}
        up = jnp.ones((z.shape[0],), z.dtype)
        r = eps * jax.random.rademacher(k_sign, z.shape, dtype=z.dtype) * cols[None, :]
        out = {}
        for name, f in preds.items():
            fz = f(z)
            g = -attacks.input_gradients(
                f, z, targets=up, loss="identity"
            )  # grad_x f (identity loss: l = -f)
            eta = eps * jnp.sign(g)  # = attacks.fgsm(f, z, targets=up, eps=eps): the FGSM step that raises f
            fgsm_change = jnp.mean(jnp.abs(f(z + eta) - fz))
            random_change = jnp.mean(jnp.abs(f(z + r) - fz))
            out[name] = {
                "fgsm_change": fgsm_change,
                "fgsm_first_order": eps * jnp.mean(jnp.sum(jnp.abs(g), axis=1)),
                "random_change": random_change,
                "random_first_order": jnp.mean(jnp.abs(jnp.sum(g * r, axis=1))),
                "fgsm_random_ratio": fgsm_change / random_change,
            }
        return out

    return jax.lax.map(one, (dims, x, y, z, keys))


def run(cfg: Config, seeds=None) -> list[dict]:
    """Rows (part a) of every input dimension and of the seeds ``seeds`` (default: all ``cfg.seeds``); seed s
    draws its data with seed ``cfg.seed * 1000 + s`` and its nets from key s of ``cfg.seeds`` keys per d, so a
    seed's numbers do not depend on which other seeds run with it."""
    seeds = list(range(cfg.seeds)) if seeds is None else [int(s) for s in seeds]
    big_d = max(cfg.dims)
    pad = lambda a: np.pad(np.asarray(a), ((0, 0), (0, big_d - a.shape[1])))
    xs, ys, zs, keys, dims, seed_of = [], [], [], [], [], []
    for d in cfg.dims:
        for s in seeds:
            ds = load_spec(
                DataSpec(
                    cfg.synthetic, n_train=cfg.n_synthetic, n_test=cfg.n_points, d=d, seed=cfg.seed * 1000 + s
                )
            )
            xs.append(pad(ds.x_train))
            ys.append(ds.y_train)
            zs.append(pad(ds.x_test))
            dims.append(d)
            seed_of.append(s)
        keys.append(
            jax.random.split(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), d), cfg.seeds)[
                jnp.asarray(seeds)
            ]
        )
    x, y, z = (jnp.asarray(np.stack(v)) for v in (xs, ys, zs))
    res = _cell(cfg, jnp.asarray(dims, x.dtype), x, y, z, jnp.concatenate(keys))
    width = {"linear": None, "net": cfg.dim_width, "limit": None}
    return [
        {
            "part": "a",
            "model": model,
            "width": width[model],
            "d": d,
            "seed": s,
            "metric": metric,
            "value": float(v),
        }
        for model in DIM_MODELS
        for metric in DIM_METRICS
        for d, s, v in zip(dims, seed_of, np.asarray(res[model][metric]))
    ]


def summarize(cfg: Config, rows, summary: dict) -> list[verdicts.Claim]:
    slopes: dict = {}
    fits = {}
    for model in DIM_MODELS:
        for metric in DIM_METRICS:
            sub = select(rows, part="a", model=model, metric=metric)
            fit = fit_loglog_slope([r["d"] for r in sub], [r["value"] for r in sub])
            fits[metric, model] = fit
            slopes[f"{metric}_{model}"] = {"slope": fit.slope, "ci95": [fit.low, fit.high]}
    summary["dim_slopes"] = slopes
    summary["dim_theory"] = dict(THEORY)
    basis = (
        f"first order: FGSM change = eps ||grad f||_1 ~ d, random-sign change = eps |grad f . r| ~ sqrt(d); "
        f"log-log fit over d in {list(cfg.dims)} and {cfg.seeds} seeds; tolerance {TOL_SLOPE}"
    )
    paper = f"{GOODFELLOW}, Sec. 3 (the argument; no measured slope published)"
    claims = []
    labels = {"linear": "linear model", "net": f"net m={cfg.dim_width}", "limit": "NTK limit"}
    for model in DIM_MODELS:
        claims.append(
            verdicts.slope(
                f"a_fgsm_linear_in_d_{model}",
                f"{labels[model]}: the FGSM logit change grows linearly in d",
                1.0,
                TOL_SLOPE,
                fits["fgsm_change", model],
                basis=basis,
                paper=paper,
            )
        )
        claims.append(
            verdicts.slope(
                f"a_random_sqrt_d_{model}",
                f"{labels[model]}: a random-sign change of the same L-inf size grows like sqrt(d)",
                0.5,
                TOL_SLOPE,
                fits["random_change", model],
                basis=basis,
                paper=paper,
            )
        )
    return claims
