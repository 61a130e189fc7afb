"""Training of any ``apply_fn(params, x)`` with optax, under ``jit`` with ``lax.scan`` (no Python loop per step).

Two presets (docs/theory.md):

* ``TrainConfig.theory(...)``: plain full-batch gradient descent with a small step - the discretization of the
  gradient flow assumed by the lazy-regime theory (time t = lr * steps).
* ``TrainConfig.paper(...)``: full-batch SGD with momentum 0.9 and a reduce-on-plateau schedule, as in the
  reference implementation of Kumano et al. (2024).

The learning rate is a traced argument so that learning-rate grids and seeds can be batched with ``jax.vmap``:
``jax.vmap(lambda p, lr: train(apply_fn, p, x, y, cfg, lr=lr).params)(stacked_params, lrs)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from ntk_adv import validate
from ntk_adv.losses import check_loss, mean_loss
from ntk_adv.models import ApplyFn, TwoLayerParams

OPTIMIZERS = ("gd", "momentum")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: loss, number of full-batch steps, learning rate and optimizer.

    ``plateau``: reduce the learning rate by ``plateau_factor`` when the loss has not improved (relative
    tolerance 1e-4) for ``plateau_patience`` steps (PyTorch's ReduceLROnPlateau defaults)."""

    loss: str = "identity"
    steps: int = 100
    lr: float = 0.01
    optimizer: str = "gd"
    momentum: float = 0.9
    plateau: bool = False
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    record_loss: bool = True

    def __post_init__(self):
        check_loss(self.loss)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        if not (np.isfinite(self.lr) and self.lr >= 0):
            raise ValueError(f"learning rate must be finite and >= 0, got {self.lr!r}")

    @classmethod
    def theory(cls, lr: float = 0.01, steps: int = 100, loss: str = "identity", **kw) -> TrainConfig:
        """Plain full-batch gradient descent (gradient flow for time lr * steps)."""
        return cls(loss=loss, steps=steps, lr=lr, optimizer="gd", plateau=False, **kw)

    @classmethod
    def paper(cls, lr: float = 0.01, steps: int = 100, loss: str = "identity", **kw) -> TrainConfig:
        """Full-batch SGD, momentum 0.9, reduce-on-plateau (reference implementation)."""
        return cls(loss=loss, steps=steps, lr=lr, optimizer="momentum", momentum=0.9, plateau=True, **kw)

    def with_(self, **changes) -> TrainConfig:
        return replace(self, **changes)


def effective_time(cfg: TrainConfig, lr=None):
    """Training time tau of the lazy (infinite-width) limit that ``cfg`` reaches (docs/theory.md, "Effective
    time"). Plain GD: ``tau = lr * steps``. Heavy ball (optax ``sgd(momentum=beta)``: v_t = g_t + beta v_{t-1},
    theta_t = theta_{t-1} - lr v_t) under a constant gradient, which is exact for the identity loss of the
    linearized net (its function-space gradient does not depend on f):

        tau = lr / (1 - beta) * (T - beta (1 - beta^T) / (1 - beta))

    (about 10 lr (T - 9) for beta = 0.9). The plateau schedule is assumed not to cut the rate: for the identity
    loss of a lazy net the loss falls every step (by an amount that grows over the first ~1/(1 - beta) steps,
    then stays constant), so it does not plateau. ``lr`` may be traced.
    """
    lr = cfg.lr if lr is None else lr
    if cfg.optimizer == "gd":
        return lr * cfg.steps
    beta = float(cfg.momentum)
    steps = float(cfg.steps)
    return lr / (1.0 - beta) * (steps - beta * (1.0 - beta**steps) / (1.0 - beta))


@struct.dataclass
class TrainResult:
    """Trained ``params`` and the full-batch loss before each step, shape (steps,) (or None)."""

    params: Any
    losses: jax.Array | None


def make_optimizer(cfg: TrainConfig, lr) -> optax.GradientTransformationExtraArgs:
    """``optax.sgd`` (heavy-ball momentum ``trace = momentum * trace + grad``, update ``-lr * trace``), chained
    with :func:`plateau_transform` (which multiplies the update by its scale) when ``cfg.plateau``. The
    plateau transform is fed the full-batch loss *before* the step (``value=`` in :func:`train`)."""
    momentum = cfg.momentum if cfg.optimizer == "momentum" else None
    opt = optax.sgd(learning_rate=lr, momentum=momentum)
    if cfg.plateau:
        opt = optax.chain(opt, plateau_transform(cfg))
    return optax.with_extra_args_support(opt)


def plateau_transform(cfg: TrainConfig) -> optax.GradientTransformationExtraArgs:
    """The reduce-on-plateau schedule of ``cfg`` (optax's defaults otherwise: rtol 1e-4, atol 0, cooldown 0,
    accumulation size 1). One definition, shared with the activation-space solver (:mod:`ntk_adv.pattern_gd`),
    which feeds it the same losses."""
    return optax.contrib.reduce_on_plateau(factor=cfg.plateau_factor, patience=cfg.plateau_patience)


def _mask_leaves(params, mask) -> tuple[bool, ...]:
    if mask is None:
        return tuple(True for _ in jax.tree_util.tree_leaves(params))
    leaves = jax.tree_util.tree_leaves(mask)
    if len(leaves) != len(jax.tree_util.tree_leaves(params)):
        raise ValueError("trainable mask does not match the parameter tree")
    return tuple(bool(m) for m in leaves)


def train(apply_fn: ApplyFn, params, x: jax.Array, y: jax.Array, cfg: TrainConfig, *, lr=None,
          mask=None) -> TrainResult:
    """Full-batch training of ``apply_fn`` on (x (N, d), y (N,)) for ``cfg.steps`` steps.

    ``mask``: a pytree of bools like ``params`` (e.g. :func:`ntk_adv.models.trainable_mask`); frozen leaves
    get exactly zero updates. ``lr`` overrides ``cfg.lr`` and may be a traced scalar (vmap over a grid)."""
    check_data(x, y)
    _check_d(params, x)
    lr = cfg.lr if lr is None else lr
    validate.positive("lr", lr)
    return _train(apply_fn, cfg, _mask_leaves(params, mask), params, x, y, jnp.asarray(lr, x.dtype))


def check_data(x, y) -> None:
    """x (N, d) finite, y (N,) float labels in {-1, +1} (:func:`ntk_adv.validate.data`): shapes always, values
    only for concrete arrays (inside jit/vmap the values are not known)."""
    validate.data(x, y)


def _check_d(params, x) -> None:
    """The first layer of every two-layer net in ``params`` takes x's d inputs (else a named error, not a
    JAX shape error from deep inside the trace)."""
    nets = jax.tree_util.tree_leaves(params, is_leaf=lambda node: isinstance(node, TwoLayerParams))
    for p in nets:
        if isinstance(p, TwoLayerParams) and np.shape(p.w)[-1:] != np.shape(x)[1:]:
            raise ValueError(f"params.w has shape {np.shape(p.w)} (d = {np.shape(p.w)[-1]}) but x has shape "
                             f"{np.shape(x)} (d = {np.shape(x)[1]})")


@partial(jax.jit, static_argnums=(0, 1, 2))
def _train(apply_fn, cfg, mask_leaves, params, x, y, lr):
    treedef = jax.tree_util.tree_structure(params)
    opt = make_optimizer(cfg, lr)

    def loss_fn(p):
        return mean_loss(cfg.loss, apply_fn(p, x), y)

    def step(carry, _):
        p, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p)
        g_leaves = [g if m else jnp.zeros_like(g) for g, m in zip(jax.tree_util.tree_leaves(grads), mask_leaves)]
        grads = jax.tree_util.tree_unflatten(treedef, g_leaves)
        updates, state = opt.update(grads, state, p, value=loss)
        p = optax.apply_updates(p, updates)
        return (p, state), (loss if cfg.record_loss else None)

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=cfg.steps)
    return TrainResult(params=params, losses=losses)


@cache
def centered(apply_fn: ApplyFn) -> ApplyFn:
    """Centred model ``(params, params0), x -> f(x; params) - f(x; params0)`` (removes the random init
    function f_0). Train it with mask ``(mask, frozen-all)``, see :func:`centered_mask`."""

    def apply_centered(pair, x):
        params, params0 = pair
        return apply_fn(params, x) - apply_fn(params0, x)

    return apply_centered


def centered_mask(mask):
    """Mask for :func:`centered`: train ``params`` as ``mask`` says, never ``params0``."""
    return (mask, jax.tree_util.tree_map(lambda _: False, mask))


def adversarial_train(apply_fn: ApplyFn, params, x: jax.Array, y: jax.Array, *, perturb, alpha=0.0,
                      loss: str = "identity", lr, steps: int, key: jax.Array | None = None, mask=None):
    """Full-batch adversarial training (one implementation for every experiment), under ``lax.scan``:

        J~(theta) = alpha J(theta; x) + (1 - alpha) J(theta; x + eta),   eta = perturb(f_theta, x, y, key_t)

    recomputed from the current parameters at every step and treated as a constant (no gradient flows
    through the attack). ``perturb(predict, x, y, key) -> eta`` (N, d) - e.g. FGSM/PGD against the true
    labels (targets -y), or random-sign noise for the control. Plain gradient descent with step ``lr``;
    ``alpha``, ``lr`` may be traced (vmap over them); ``mask`` freezes leaves as in :func:`train`.
    Returns the trained parameters. Goodfellow et al. (2015) use alpha = 0.5; Madry-style training alpha = 0."""
    check_loss(loss)
    check_data(x, y)
    _check_d(params, x)
    validate.scalar("alpha", alpha, low=0.0, high=1.0)
    validate.positive("lr", lr)
    mask_leaves = _mask_leaves(params, mask)
    treedef = jax.tree_util.tree_structure(params)
    keys = jax.random.split(jax.random.PRNGKey(0) if key is None else key, steps)
    opt = optax.sgd(lr)

    def objective(p, k):
        f = partial(apply_fn, p)
        eta = jax.lax.stop_gradient(perturb(f, x, y, k))
        return alpha * mean_loss(loss, f(x), y) + (1.0 - alpha) * mean_loss(loss, f(x + eta), y)

    def step(carry, k):
        p, state = carry
        grads = jax.grad(objective)(p, k)
        g = [gl if m else jnp.zeros_like(gl) for gl, m in zip(jax.tree_util.tree_leaves(grads), mask_leaves)]
        updates, state = opt.update(jax.tree_util.tree_unflatten(treedef, g), state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), keys)
    return params
