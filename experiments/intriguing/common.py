"""Models shared by every part: centred two-layer nets f(x; theta_t) - f(x; theta_0) trained with the
library's :func:`ntk_adv.training.train` (first layer only, logistic loss; anchored weight decay between its
steps), their infinite-width limit (kernel gradient descent with the same decay), batched predictors and the
minimal box-constrained L-BFGS attack of every stacked model.

Shapes: x (N, d) training inputs, y (N,) labels in {-1, +1}; R stacked runs (decays / seeds); outputs (R,
P)."""

from __future__ import annotations

import base64
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import attacks, kernels, limits, models, training
from ntk_adv.arch import INF_WIDTH
from ntk_adv.models import apply_in_chunks
from ntk_adv.results import select
from ntk_adv.training import centered

from .config import Config

ATTACK_LOSS = "logistic"  # Szegedy et al.'s cross-entropy, binary form


# ------------------------------------------------------------------------------------------------ training
def decayed_train(cfg: Config, width: int, x, y, decay, key):
    """One centred net of ``width`` (standard or NTK parametrization as ``cfg.net``), initialized from ``key``
    and trained on (x (N, d), y (N,)) by full-batch gradient descent on

        mean_n l(y_n f(x_n)) + (decay / 2) ||W - W_0||^2,

    the L2 penalty (weight decay) anchored at the initialization, the form whose infinite-width limit is exact
    (:func:`ntk_adv.limits.flow_coefficients` with ``decay``): the library's one loop
    :func:`ntk_adv.training.fit` with an anchored objective (anchor = the initialization, mask = the first
    layer) and the optimizer of ``cfg.train``; with ``decay = 0`` this is ``train`` for ``cfg.train.steps``
    steps. ``decay`` may be traced (vmap). Returns the pair (params, params0)."""
    apply_c, pair, mask = models.centred_pair(cfg.net.with_width(width), x.shape[1], key=key, dtype=x.dtype)
    objective = training.Objective(cfg.train.loss, anchored=True)
    return training.fit(
        apply_c,
        pair,
        x,
        y,
        objective,
        training.make_optimizer(cfg.train, cfg.train.lr),
        steps=cfg.train.steps,
        key=None,  # a clean objective draws nothing
        mask=mask,
        anchor=pair,
        decay=decay,
    ).params


@partial(jax.jit, static_argnums=(0, 1))
def train_cell(cfg: Config, width: int, x, y, decays, keys):
    """Runs (R,): decays (R,), keys (R, 2) -> centred pairs (params, params0) stacked along R."""
    return jax.vmap(lambda lam, key: decayed_train(cfg, width, x, y, lam, key))(decays, keys)


@partial(jax.jit, static_argnums=0)
def limit_cell(cfg: Config, x, y, decays, sample_weights):
    """Infinite-width coefficients (R, N) for decays (R,) and training subsets sample_weights (R, N)."""
    k_train = kernels.kernel_matrix(cfg.net.with_width(INF_WIDTH).kernel, x)
    return jax.vmap(
        lambda lam, w: limits.flow_coefficients(
            cfg.train.loss,
            k_train,
            y,
            jnp.zeros_like(y),  # centred: f_0 = 0
            lr=cfg.train.lr,
            steps=cfg.train.steps,
            decay=lam,
            sample_weight=w,
        )
    )(decays, sample_weights)


# ------------------------------------------------------------------------------------------------ models
def predictor(cfg: Config, width: int | None):
    """``predict(params, q (Q, d)) -> (Q,)``: a centred net of ``width`` (params = (params, params0)) or, for
    ``width=None``, the infinite-width predictor (params = (x_train, coef))."""
    if width is None:
        kernel = cfg.net.with_width(INF_WIDTH).kernel
        return lambda p, q: limits.KernelPredictor(x_train=p[0], coef=p[1], kernel=kernel)(q)
    apply_c = centered(models.make_apply(cfg.net.with_width(width)))
    return lambda p, q: apply_c(p, q)


@partial(jax.jit, static_argnums=(0, 1))
def outputs(cfg: Config, width: int | None, params, pts):
    """Outputs (R, P) of the R stacked models of one kind on shared points pts (P, d) or on per-model points
    (R, P, d)."""
    predict = predictor(cfg, width)
    if pts.ndim == 2:
        return jax.vmap(lambda p: apply_in_chunks(partial(predict, p), pts))(params)
    return jax.vmap(lambda p, q: apply_in_chunks(partial(predict, p), q))(params, pts)


@partial(jax.jit, static_argnums=(0, 1, 2))
def attack_cell(cfg: Config, width: int | None, box, params, z, y):
    """Minimal box-constrained L-BFGS perturbations (L2) toward -y for the R stacked models: eta (R, M, d),
    success (R, M)."""
    predict = predictor(cfg, width)

    def one(p):
        return attacks.minimal_lbfgs_distortion(
            partial(predict, p),
            z,
            labels=y,
            c_grid=cfg.c_grid,
            clip=box,
            refine_steps=cfg.refine_steps,
            steps=cfg.lbfgs_steps,
            loss=ATTACK_LOSS,
        )

    return jax.vmap(one)(params)


def pixel_box(ds):
    """Pixel box of image data ([0, 1] minus the subtracted mean), None for synthetic data."""
    mean = ds.meta.get("mean_subtracted")
    return None if mean is None else (float(-mean), float(1.0 - mean))


def take(tree, idx):
    """Rows ``idx`` of every leaf of a stacked pytree."""
    return jax.tree_util.tree_map(lambda a: a[np.asarray(idx)], tree)


# ------------------------------------------------------------------------------------------------ rows
def values(rows, **where) -> np.ndarray:
    return np.asarray([r["value"] for r in select(rows, **where)], float)


def mean(rows, **where) -> float:
    v = values(rows, **where)
    v = v[np.isfinite(v)]
    return float(np.mean(v)) if v.size else float("nan")


def nanmean(v) -> float:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


# -------------------------------------------------------------------------------------------- arrays in rows
def encode(a) -> str:
    """An array as one JSON-safe string ``"dtype:shape:base64"`` (exact: the raw bytes), so that per-point
    intermediate results (perturbations, norms, masks, purities) ride in a stored row."""
    a = np.ascontiguousarray(np.asarray(a))
    shape = "x".join(str(n) for n in a.shape)
    return f"{a.dtype.str}:{shape}:{base64.b64encode(a.tobytes()).decode('ascii')}"


def decode(s: str) -> np.ndarray:
    """Inverse of :func:`encode`: the array with its dtype and shape."""
    dtype, shape, data = s.split(":", 2)
    dims = tuple(int(n) for n in shape.split("x")) if shape else ()
    return np.frombuffer(base64.b64decode(data), dtype=np.dtype(dtype)).reshape(dims).copy()
