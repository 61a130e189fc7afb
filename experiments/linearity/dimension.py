"""(a) Dimension: the FGSM logit change eps ||grad_x f||_1 grows linearly in the input dimension d, a random-sign
perturbation of the same L-inf size only like sqrt(d) (first order: eps |grad_x f . r|, r uniform signs), so their
ratio grows like sqrt(d). Synthetic data, d swept, for a linear model, a wide net and the NTK limit, trained with
the identity loss; predicted log-log slopes vs d: 1 and 1/2 (tolerance 0.15).

Always the standard parametrization: Goodfellow's argument assumes weights of fixed per-coordinate size (in the
NTK parametrization both slopes drop by 1; the ratio still grows like sqrt(d))."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import attacks, limits, models, verdicts
from ntk_adv.data import DataSpec, load_spec
from ntk_adv.metrics import fit_loglog_slope
from ntk_adv.results import select
from ntk_adv.training import centered

from .common import GOODFELLOW, linear_apply, train_centered, train_linear
from .config import Config

DIM_MODELS = ("linear", "net", "limit")
DIM_METRICS = ("fgsm_change", "fgsm_first_order", "random_change", "random_first_order", "fgsm_random_ratio")
THEORY = {"fgsm_change": 1.0, "fgsm_first_order": 1.0, "random_change": 0.5, "random_first_order": 0.5,
          "fgsm_random_ratio": 0.5}
TOL_SLOPE = 0.15  # neglected: curvature of the net over an eps-ball, finite-d fluctuations of ||g||_1 / ||g||_2


@partial(jax.jit, static_argnums=0)
def _cell(cfg: Config, x, y, z, keys):
    """All seeds of one dimension d: x (S, N, d), y (S, N), z (S, M, d), keys (S, 2) -> metric dicts (S,)."""
    tcfg = cfg.dim_train()
    net = cfg.net_at(cfg.dim_width, "standard")
    apply_c = centered(models.make_apply(net))
    kernel = cfg.kernel("standard")
    eps = cfg.dim_eps

    def one(x, y, z, key):
        k_net, k_sign = jax.random.split(key)
        lin = train_linear(x, y, tcfg)
        pair = train_centered(net, x, y, tcfg, k_net)
        limit = limits.make_predictor(kernel, x, y, loss=tcfg.loss, lr=tcfg.lr, steps=tcfg.steps)
        preds = {"linear": partial(linear_apply, lin), "net": partial(apply_c, pair), "limit": limit}
        up = jnp.ones((z.shape[0],), z.dtype)
        r = eps * jax.random.rademacher(k_sign, z.shape, dtype=z.dtype)
        out = {}
        for name, f in preds.items():
            fz = f(z)
            g = -attacks.input_gradients(f, z, up, loss="identity")  # grad_x f (identity loss: l = -f)
            eta = eps * jnp.sign(g)  # = attacks.fgsm(f, z, up, eps=eps): the FGSM step that raises f
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

    return jax.vmap(one)(x, y, z, keys)


def run(cfg: Config, d: int) -> list[dict]:
    """Rows (part a) of one input dimension d, all seeds."""
    sets = [load_spec(DataSpec(cfg.synthetic, n_train=cfg.n_synthetic, n_test=cfg.n_points, d=d,
                               seed=cfg.seed * 1000 + s)) for s in range(cfg.seeds)]
    x = jnp.stack([jnp.asarray(ds.x_train) for ds in sets])
    y = jnp.stack([jnp.asarray(ds.y_train) for ds in sets])
    z = jnp.stack([jnp.asarray(ds.x_test) for ds in sets])
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), d), cfg.seeds)
    res = _cell(cfg, x, y, z, keys)
    width = {"linear": None, "net": cfg.dim_width, "limit": None}
    return [{"part": "a", "model": model, "width": width[model], "d": d, "seed": s, "metric": metric,
             "value": float(v)}
            for model in DIM_MODELS for metric in DIM_METRICS for s, v in enumerate(np.asarray(res[model][metric]))]


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
    basis = (f"first order: FGSM change = eps ||grad f||_1 ~ d, random-sign change = eps |grad f . r| ~ sqrt(d); "
             f"log-log fit over d in {list(cfg.dims)} and {cfg.seeds} seeds; tolerance {TOL_SLOPE}")
    paper = f"{GOODFELLOW}, Sec. 3 (the argument; no measured slope published)"
    claims = []
    labels = {"linear": "linear model", "net": f"net m={cfg.dim_width}", "limit": "NTK limit"}
    for model in DIM_MODELS:
        claims.append(verdicts.slope(
            f"a_fgsm_linear_in_d_{model}", f"{labels[model]}: the FGSM logit change grows linearly in d",
            1.0, TOL_SLOPE, fits["fgsm_change", model], basis=basis, paper=paper))
        claims.append(verdicts.slope(
            f"a_random_sqrt_d_{model}", f"{labels[model]}: a random-sign change of the same L-inf size grows like "
            "sqrt(d)", 0.5, TOL_SLOPE, fits["random_change", model], basis=basis, paper=paper))
    return claims
