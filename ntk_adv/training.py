"""Training of any ``apply_fn(params, x)`` with optax, under ``jit`` with ``lax.scan`` (no Python loop per
step).

Two presets (docs/theory.md):

* ``TrainConfig.theory(...)``: plain full-batch gradient descent with a small step - the discretization of the
  gradient flow assumed by the lazy-regime theory (time t = lr * steps).
* ``TrainConfig.paper(...)``: full-batch SGD with momentum 0.9 and a reduce-on-plateau schedule, as in the
  reference implementation of Kumano et al. (2024).

The learning rate is a traced argument so that learning-rate grids and seeds can be batched with ``jax.vmap``:
``jax.vmap(lambda p, lr: train(apply_fn, p, x, y, cfg, lr=lr).params)(stacked_params, lrs)``.

There is one loop, :func:`fit` (one ``lax.scan``): frozen parameters go through ``optax.multi_transform`` with
``optax.set_to_zero`` (:func:`masked_optimizer`); clean, adversarial (a perturbation per step, its own key),
anchored (L2 towards reference parameters) and sample-weighted training are options of its :class:`Objective`.
:func:`train` (a :class:`TrainConfig`'s optimizer, jitted) and :func:`adversarial_train` (plain GD) are that
loop. Centred nets (:func:`ntk_adv.models.centred_pair`, :func:`centered`, :func:`centered_mask`) train with
it like any other pytree of parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from ntk_adv import validate
from ntk_adv.losses import Loss, check_loss, mean_loss, pointwise_loss
from ntk_adv.models import ApplyFn, TwoLayerParams, centered, centered_mask, mask_of

__all__ = [
    "OPTIMIZERS",
    "Objective",
    "TrainConfig",
    "TrainResult",
    "adversarial_train",
    "centered",
    "centered_mask",
    "check_data",
    "default_mask",
    "effective_time",
    "fit",
    "make_optimizer",
    "masked_optimizer",
    "plateau_transform",
    "train",
]

Optimizer = Literal["gd", "momentum"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: loss, number of full-batch steps, learning rate and optimizer.

    ``plateau``: reduce the learning rate by ``plateau_factor`` when the loss has not improved (relative
    tolerance 1e-4) for ``plateau_patience`` steps (PyTorch's ReduceLROnPlateau defaults)."""

    loss: Loss = "identity"  # training loss of the labels +-1 (ntk_adv.losses)
    steps: int = 100  # full-batch gradient-descent steps T, >= 0
    lr: float = 0.01  # learning rate of full-batch gradient descent, > 0 (time tau = lr * steps for gd)
    optimizer: Optimizer = "gd"  # gd: plain gradient descent; momentum: heavy ball (optax sgd with momentum)
    momentum: float = 0.9  # heavy-ball coefficient beta of the momentum optimizer, in [0, 1)
    plateau: bool = False  # cut the learning rate by plateau_factor when the loss stops improving
    plateau_factor: float = 0.1  # factor applied to the learning rate on a plateau, in (0, 1)
    plateau_patience: int = 10  # steps without improvement (relative 1e-4) before the cut, >= 1
    record_loss: bool = True  # record the training loss at every step (the loss curve)

    def __post_init__(self):
        validate.check_choices(self)  # loss, optimizer
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        if not (np.isfinite(self.lr) and self.lr >= 0):
            raise ValueError(f"learning rate must be finite and >= 0, got {self.lr!r}")

    # The fields theory() fixes for plain full-batch GD without a loss curve: a command that always trains
    # this way hides them from its options (CLI_HIDE: *(f"train.{f}" for f in TrainConfig.PLAIN_GD_FIXED)).
    PLAIN_GD_FIXED: ClassVar[tuple[str, ...]] = (
        "optimizer",
        "momentum",
        "plateau",
        "plateau_factor",
        "plateau_patience",
        "record_loss",
    )

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
    time"). Plain GD: ``tau = lr * steps``. Heavy ball (optax ``sgd(momentum=beta)``: v_t = g_t + beta
    v_{t-1}, theta_t = theta_{t-1} - lr v_t) under a constant gradient, which is exact for the identity loss
    of the linearized net (its function-space gradient does not depend on f):

        tau = lr / (1 - beta) * (T - beta (1 - beta^T) / (1 - beta))

    (about 10 lr (T - 9) for beta = 0.9). The plateau schedule is assumed not to cut the rate: for the
    identity loss of a lazy net the loss falls every step (by an amount that grows over the first ~1/(1 -
    beta) steps, then stays constant), so it does not plateau. ``lr`` may be traced.
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
    """``optax.sgd`` (heavy-ball momentum ``trace = momentum * trace + grad``, update ``-lr * trace``),
    chained with :func:`plateau_transform` (which multiplies the update by its scale) when ``cfg.plateau``.
    The plateau transform is fed the full-batch loss *before* the step (``value=`` in :func:`train`)."""
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


def default_mask(apply_fn: ApplyFn, params) -> Any:
    """The mask used when none is given: the one ``apply_fn``'s net config implies (:func:`ntk_adv.models.
    mask_of`, e.g. the frozen readout of ``TwoLayerConfig(train_readout=False)``) when ``params`` hold
    :class:`~ntk_adv.models.TwoLayerParams`; None (train every leaf) for other pytrees. Raises ValueError
    when ``params`` hold TwoLayerParams but ``apply_fn`` carries no config (a user lambda): pass ``mask=``."""
    nets = jax.tree_util.tree_leaves(params, is_leaf=lambda node: isinstance(node, TwoLayerParams))
    if not any(isinstance(p, TwoLayerParams) for p in nets):
        return None
    mask = mask_of(apply_fn)
    if mask is None:
        raise ValueError(
            "mask: params hold TwoLayerParams but apply_fn carries no TwoLayerConfig, so which leaves are "
            "frozen is unknown; pass mask=models.trainable_mask(cfg) (or models.make_apply(cfg) as apply_fn)"
        )
    return mask


def _mask_leaves(params, mask) -> tuple[bool, ...]:
    if mask is None:
        return tuple(True for _ in jax.tree_util.tree_leaves(params))
    leaves = jax.tree_util.tree_leaves(mask)
    if len(leaves) != len(jax.tree_util.tree_leaves(params)):
        raise ValueError("trainable mask does not match the parameter tree")
    return tuple(bool(m) for m in leaves)


def masked_optimizer(
    opt: optax.GradientTransformationExtraArgs, params, mask_leaves: tuple[bool, ...]
) -> optax.GradientTransformationExtraArgs:
    """``opt`` on the trained leaves, :func:`optax.set_to_zero` on the frozen ones (``optax.multi_transform``
    over labels ``train`` / ``frozen`` laid out like ``params``); ``opt`` itself when nothing is frozen."""
    if all(mask_leaves):
        return opt
    labels = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(params), ["train" if m else "frozen" for m in mask_leaves]
    )
    return optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()}, labels)


@dataclass(frozen=True)
class Objective:
    """What one training step minimizes (static; the traced numbers are arguments of :func:`fit`):

        J(theta) = alpha L(theta; x) + (1 - alpha) L(theta; x + eta) + (decay / 2) ||theta - theta_a||^2_mask

    * ``loss``: the pointwise loss; L is its mean over the N points, or with ``sample_weight`` (N,) the
      weighted mean ``sum_n w_n l_n / sum_n w_n`` (a 0/1 weight selects a subset without changing shapes);
    * ``perturb``: None for clean training (J = L(theta; x)); else adversarial training,
      ``eta = stop_gradient(perturb(f_theta, x, y, key_t))`` (N, d) recomputed at every step with its own key;
    * ``anchored``: add the L2 penalty towards the anchor parameters theta_a over the trained leaves (weight
      decay anchored at, e.g., the initialization)."""

    loss: str = "identity"
    perturb: Callable | None = None
    anchored: bool = False
    weighted: bool = False

    def __post_init__(self):
        check_loss(self.loss)


def fit(
    apply_fn: ApplyFn,
    params,
    x: jax.Array,
    y: jax.Array,
    objective: Objective,
    optimizer: optax.GradientTransformationExtraArgs,
    *,
    steps: int,
    key: jax.Array | None,
    mask=None,
    alpha=0.0,
    sample_weight=None,
    anchor=None,
    decay=0.0,
    record_loss: bool = False,
) -> TrainResult:
    """THE training loop: ``steps`` full-batch steps of ``optimizer`` (fed ``value=`` the objective before the
    step) on ``objective`` (:class:`Objective`), one ``lax.scan``; :func:`train` and :func:`adversarial_train`
    are this loop. Traceable (call it under jit / vmap; :func:`train` jits it).

    ``params`` any pytree (``apply_fn(params, x (N, d)) -> (N,)``); ``mask`` a pytree of bools with one leaf
    per parameter leaf: frozen leaves go through :func:`optax.set_to_zero` (:func:`masked_optimizer`);
    ``key`` (keyword, required: the PRNG key split into one key per step of a perturbed objective, or an
    explicit ``None`` for an objective without ``perturb``, which draws nothing); ``alpha``, ``decay`` may be
    traced; ``sample_weight`` (N,) with ``objective.weighted``; ``anchor`` (like ``params``) with
    ``objective.anchored``. Returns the params and, with ``record_loss``, the objective before each step
    (steps,). ``mask=None`` is :func:`default_mask` (the net config's frozen leaves stay frozen)."""
    mask_leaves = _mask_leaves(params, default_mask(apply_fn, params) if mask is None else mask)
    opt = masked_optimizer(optimizer, params, mask_leaves)
    if objective.perturb is not None and key is None:
        raise ValueError("key: a perturbed objective draws a perturbation per step; pass key=PRNGKey(seed)")

    def mean(per_point_out):
        if objective.weighted:
            return jnp.sum(sample_weight * pointwise_loss(objective.loss, per_point_out, y)) / jnp.sum(
                sample_weight
            )
        return mean_loss(objective.loss, per_point_out, y)

    def loss_fn(p, k):
        out = apply_fn(p, x)
        if objective.perturb is None:
            value = mean(out)
        else:
            f = partial(apply_fn, p)
            eta = jax.lax.stop_gradient(objective.perturb(f, x, y, k))
            value = alpha * mean(out) + (1.0 - alpha) * mean(f(x + eta))
        if objective.anchored:
            pairs = zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(anchor), mask_leaves)
            value = value + 0.5 * decay * sum(jnp.sum((a - b) ** 2) for a, b, m in pairs if m)
        return value

    def step(carry, k):
        p, state = carry
        value, grads = jax.value_and_grad(loss_fn)(p, k)
        updates, state = opt.update(grads, state, p, value=value)
        return (optax.apply_updates(p, updates), state), (value if record_loss else None)

    keys = jax.random.split(key, steps) if objective.perturb is not None else None
    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), keys, length=steps)
    return TrainResult(params=params, losses=losses)


def train(
    apply_fn: ApplyFn, params, x: jax.Array, y: jax.Array, cfg: TrainConfig, *, lr=None, mask=None
) -> TrainResult:
    """Full-batch training of ``apply_fn`` on (x (N, d), y (N,)) for ``cfg.steps`` steps (:func:`fit` with
    the optimizer of ``cfg``, :func:`make_optimizer`, under jit).

    ``mask``: a pytree of bools like ``params`` (e.g. :func:`ntk_adv.models.trainable_mask`); frozen leaves
    get exactly zero updates. Without ``mask`` the net config's mask applies (:func:`default_mask`: the
    readout stays frozen unless ``train_readout``; refused when params are TwoLayerParams of an unknown
    config). ``lr`` overrides ``cfg.lr`` and may be a traced scalar (vmap over a grid)."""
    check_data(x, y)
    _check_d(params, x)
    lr = cfg.lr if lr is None else lr
    validate.positive("lr", lr)
    mask = default_mask(apply_fn, params) if mask is None else mask
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
            raise ValueError(
                f"params.w has shape {np.shape(p.w)} (d = {np.shape(p.w)[-1]}) but x has shape "
                f"{np.shape(x)} (d = {np.shape(x)[1]})"
            )


@partial(jax.jit, static_argnums=(0, 1, 2))
def _train(apply_fn, cfg, mask_leaves, params, x, y, lr):
    return fit(
        apply_fn,
        params,
        x,
        y,
        Objective(cfg.loss),
        make_optimizer(cfg, lr),
        steps=cfg.steps,
        key=None,  # a clean objective draws nothing
        mask=mask_leaves,
        record_loss=cfg.record_loss,
    )


def adversarial_train(
    apply_fn: ApplyFn,
    params,
    x: jax.Array,
    y: jax.Array,
    *,
    perturb,
    alpha=0.0,
    loss: str = "identity",
    lr,
    steps: int,
    key: jax.Array,
    mask=None,
):
    """Full-batch adversarial training (one implementation for every experiment; :func:`fit` with
    ``Objective(loss, perturb)`` and plain gradient descent ``optax.sgd(lr)``):

        J~(theta) = alpha J(theta; x) + (1 - alpha) J(theta; x + eta),   eta = perturb(f_theta, x, y, key_t)

    recomputed from the current parameters at every step and treated as a constant (no gradient flows
    through the attack). ``perturb(predict, x, y, key) -> eta`` (N, d) - e.g. FGSM/PGD against the true
    labels (``attacks.fgsm(f, x, labels=y, eps=...)``), or random-sign noise for the control. ``key`` is a
    required keyword (split into one key per step; ``None`` is refused by :func:`fit`); ``alpha``, ``lr``
    may be traced (vmap over them); ``mask`` freezes leaves as in :func:`train` (default
    :func:`default_mask`). Returns the trained parameters.
    Goodfellow et al. (2015) use alpha = 0.5; Madry-style training alpha = 0."""
    check_loss(loss)
    check_data(x, y)
    _check_d(params, x)
    validate.scalar("alpha", alpha, low=0.0, high=1.0)
    validate.positive("lr", lr)
    opt = optax.with_extra_args_support(optax.sgd(lr))
    return fit(
        apply_fn,
        params,
        x,
        y,
        Objective(loss, perturb=perturb),
        opt,
        steps=steps,
        mask=mask,
        key=key,
        alpha=alpha,
    ).params
