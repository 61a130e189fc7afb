"""Finite-width two-layer networks (docs/theory.md), as pure init/apply functions and as a flax.linen module.

    f(x) = sum_{i=1..m} a_i sigma(w_i . x + b_i),   sigma(u) = max(u, gamma u)

Parametrizations (the same function at init for the same key, different gradient scales):

* ``standard``  stored w ~ N(0, I/d), b ~ N(0, 1), a ~ N(0, 1/m);  f = sigma(x w^T + b) a
* ``ntk``       stored W ~ N(0, I),   b ~ N(0, 1), A ~ N(0, 1);    f = sigma(x W^T / sqrt(d) + b) A / sqrt(m)

``init_scale`` < 1 multiplies every initial parameter (a small initialization, the feature-learning regime
used by the feature-purification experiment; the NTK formulas assume ``init_scale == 1``).

The first-layer NTK is Phi (x.z + 1) in the standard and Phi (x.z/d + 1) in the NTK parametrization
(:mod:`ntk_adv.kernels`). By default only the first layer (w, b) is trained and the readout is frozen,
as in Kumano et al. (2024).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ntk_adv import kernels, validate
from ntk_adv.arch.base import Architecture, Parametrization
from ntk_adv.kernels import check_gamma

ApplyFn = Callable[[Any, jax.Array], jax.Array]


@dataclass(frozen=True)
class TwoLayerConfig(Architecture):
    """The two-layer net as an :class:`~ntk_adv.arch.Architecture` (``--arch two-layer``). ``n_out=1`` gives
    scalar outputs (N,), else (N, n_out). ``width`` is an int >= 1 or :data:`~ntk_adv.arch.INF_WIDTH` (then
    only :meth:`kernel` applies). Its closed forms (:mod:`ntk_adv.kernels`), the decomposition of the limit
    g and :mod:`ntk_adv.pattern_gd` are capabilities of this architecture only."""

    name: ClassVar[str] = "two-layer"

    width: int | float  # hidden width m (number of hidden units), >= 1; INF_WIDTH: the infinite-width limit
    parametrization: Parametrization = (
        "standard"  # standard (init variance 1/fan_in) or ntk (1/sqrt(fan_in) in the pass)
    )
    n_out: int = 1  # outputs: 1 gives a scalar f(x) (binary labels +-1), C gives (N, C)
    gamma: float = 0.0  # leaky-ReLU slope gamma of the activation, in [0, 1) (0: ReLU)
    bias: bool = True  # hidden units have a bias term (trained with the first layer)
    train_readout: bool = False  # also train the readout layer (default: only the first layer trains)
    init_scale: float = 1.0  # multiplies every initial parameter (< 1: small init, outside NTK theory), > 0

    def __post_init__(self):
        super().__post_init__()
        check_gamma(self.gamma)
        validate.check_choices(self)  # parametrization
        if not (np.isfinite(self.init_scale) and self.init_scale > 0):
            raise ValueError(f"init_scale must be finite and > 0, got {self.init_scale!r}")

    @property
    def depth(self) -> int:
        return 2

    def init(self, key, input_shape: tuple[int, ...], dtype=None) -> TwoLayerParams:
        """:func:`init_params` for one example of shape ``input_shape`` (flattened to d = prod(shape))."""
        self._finite("init")
        return init_params(self, int(np.prod(input_shape)), key=key, dtype=dtype or jnp.float32)

    def apply(self, params: TwoLayerParams, x: jax.Array) -> jax.Array:
        """:func:`apply` on x (N, *shape), flattened to (N, d)."""
        return apply(params, jnp.reshape(x, (x.shape[0], -1)), self)

    def kernel(self, x1: jax.Array, x2: jax.Array, get: str = "ntk") -> jax.Array:
        """The closed-form kernel (N1, N2) of :mod:`ntk_adv.kernels` (``get`` 'ntk' of the trained layers,
        'nngp' of the output, or 'phi'); inputs flattened to (N, d)."""
        fn = kernels.two_layer_kernel(
            get,
            gamma=self.gamma,
            bias=self.bias,
            parametrization=self.parametrization,
            train_readout=self.train_readout,
            width=None if self.infinite else int(self.width),
        )
        return fn(jnp.reshape(x1, (x1.shape[0], -1)), jnp.reshape(x2, (x2.shape[0], -1)))

    def trainable_mask(self, params=None) -> TwoLayerParams:
        return trainable_mask(self)

    def preactivations(self, params: TwoLayerParams, x: jax.Array) -> jax.Array:
        return hidden(params, jnp.reshape(x, (x.shape[0], -1)), self)

    def first_layer(self, params: TwoLayerParams) -> tuple[jax.Array, jax.Array]:
        """(w (m, d), b (m,))."""
        return params.w, params.b


@struct.dataclass
class TwoLayerParams:
    """Parameters: w (m, d), b (m,), a (m,) for scalar output or (m, C)."""

    w: jax.Array
    b: jax.Array
    a: jax.Array


def leaky_relu(u: jax.Array, gamma: float) -> jax.Array:
    return jnp.maximum(u, gamma * u)


def init_params(cfg: TwoLayerConfig, d: int, *, key: jax.Array, dtype=jnp.float32) -> TwoLayerParams:
    """Draw parameters for inputs of dimension ``d`` in ``cfg.parametrization``."""
    if d < 1:
        raise ValueError(f"input dimension d must be >= 1, got {d}")
    cfg._finite("init_params")
    k_w, k_b, k_a = jax.random.split(key, 3)
    m = cfg.width
    w = jax.random.normal(k_w, (m, d), dtype)
    b = jax.random.normal(k_b, (m,), dtype) if cfg.bias else jnp.zeros((m,), dtype)
    a_shape = (m,) if cfg.n_out == 1 else (m, cfg.n_out)
    a = jax.random.normal(k_a, a_shape, dtype)
    if cfg.parametrization == "standard":
        w, a = w / np.sqrt(d), a / np.sqrt(m)
    if cfg.init_scale != 1.0:  # small init: the feature-learning regime (outside the NTK theory)
        w, b, a = cfg.init_scale * w, cfg.init_scale * b, cfg.init_scale * a
    return TwoLayerParams(w=w, b=b, a=a)


def hidden(params: TwoLayerParams, x: jax.Array, cfg: TwoLayerConfig) -> jax.Array:
    """Pre-activations u = w.x + b, shape (N, m) (with the 1/sqrt(d) factor in the NTK parametrization)."""
    u = x @ params.w.T
    if cfg.parametrization == "ntk":
        u = u / np.sqrt(x.shape[-1])
    return u + jnp.broadcast_to(params.b, u.shape)  # explicit: tests forbid implicit rank promotion


def apply(params: TwoLayerParams, x: jax.Array, cfg: TwoLayerConfig) -> jax.Array:
    """Network outputs: (N,) for ``n_out == 1`` else (N, n_out); ``x`` is (N, d)."""
    h = leaky_relu(hidden(params, x, cfg), cfg.gamma)
    out = h @ params.a
    if cfg.parametrization == "ntk":
        out = out / np.sqrt(cfg.width)
    return out


@cache
def make_apply(cfg: TwoLayerConfig) -> ApplyFn:
    """``apply_fn(params, x)`` for ``cfg``; cached so that equal configs share one function (and one jit)."""

    def apply_fn(params, x):
        return apply(params, x, cfg)

    apply_fn.trainable_mask = trainable_mask(cfg)  # the default of training.train (see mask_of)
    return apply_fn


def mask_of(apply_fn: ApplyFn) -> Any | None:
    """The trainable mask that ``apply_fn``'s net config implies (a pytree of bools laid out like its params),
    or None when ``apply_fn`` carries no config: set by :func:`make_apply` (:func:`trainable_mask`), kept by
    :func:`centered` (:func:`centered_mask`) and :func:`linen_apply` of a :class:`TwoLayerNet`."""
    return getattr(apply_fn, "trainable_mask", None)


def trainable_mask(cfg: TwoLayerConfig) -> TwoLayerParams:
    """Which leaves are trained: w always, b if the net has a bias, a if the readout is trained."""
    return TwoLayerParams(w=True, b=cfg.bias, a=cfg.train_readout)


@cache
def centered(apply_fn: ApplyFn) -> ApplyFn:
    """Centred model ``(params, params0), x -> f(x; params) - f(x; params0)`` (removes the random init
    function f_0). Train it with mask ``(mask, frozen-all)``, see :func:`centered_mask`."""

    def apply_centered(pair, x):
        params, params0 = pair
        return apply_fn(params, x) - apply_fn(params0, x)

    if mask_of(apply_fn) is not None:
        apply_centered.trainable_mask = centered_mask(mask_of(apply_fn))
    return apply_centered


def centered_mask(mask):
    """Mask for :func:`centered`: train ``params`` as ``mask`` says, never ``params0``."""
    return (mask, jax.tree_util.tree_map(lambda _: False, mask))


def centred_pair(cfg: TwoLayerConfig, d: int, *, key: jax.Array, dtype=jnp.float32):
    """A freshly initialized *centred* net, ``f(x) = net(params)(x) - net(params0)(x)`` (zero at init):
    ``(apply_fn, (params0, params0), mask)`` with ``apply_fn = centered(make_apply(cfg))`` taking the pair and
    x (N, d) to (N,), both halves drawn by :func:`init_params` with ``key`` (the plain net's draw), and the
    trainable mask :func:`centered_mask` (params as :func:`trainable_mask` says, params0 frozen)."""
    p0 = init_params(cfg, d, key=key, dtype=dtype)
    return centered(make_apply(cfg)), (p0, p0), centered_mask(trainable_mask(cfg))


def check_inputs(x, d: int | None = None, name: str = "x") -> None:
    """Raise ValueError on a wrong shape or non-finite values (called eagerly, outside jit)."""
    shape = np.shape(x)
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (N, d); got shape {shape}")
    if d is not None and shape[1] != d:
        raise ValueError(f"{name} has dimension {shape[1]} but the model expects d={d}")
    if not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name} contains NaN or inf")


class TwoLayerNet(nn.Module):
    """flax.linen wrapper around :func:`apply` (one implementation): ``TwoLayerNet(cfg).init(key, x)``.

    Any linen model can be trained, attacked and kernelized with the same code via :func:`linen_apply`."""

    cfg: TwoLayerConfig

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        init = lambda key: init_params(self.cfg, d, key=key, dtype=x.dtype)
        params = self.param("two_layer", init)
        return apply(params, x, self.cfg)


def linen_apply(module: nn.Module) -> ApplyFn:
    """``apply_fn(params, x)`` for a linen module whose variables are ``{'params': params}``."""

    def apply_fn(params, x):
        return module.apply({"params": params}, x)

    if isinstance(module, TwoLayerNet):
        apply_fn.trainable_mask = {"two_layer": trainable_mask(module.cfg)}
    return apply_fn


def apply_in_chunks(predict: Callable[[jax.Array], jax.Array], x: jax.Array, chunk: int = 2048) -> jax.Array:
    """A pointwise predictor (M, d) -> (M,) on the rows of ``x`` in chunks of ``chunk`` rows (``lax.map``),
    so that wide nets and kernel predictors on many points keep memory bounded. Traceable."""
    n = x.shape[0]
    if n <= chunk:
        return predict(x)
    n_chunks = -(-n // chunk)
    padded = jnp.pad(x, ((0, n_chunks * chunk - n), (0, 0))).reshape(n_chunks, chunk, x.shape[1])
    return jax.lax.map(predict, padded).reshape(-1)[:n]
