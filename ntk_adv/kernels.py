"""Closed-form infinite-width kernels of the two-layer leaky-ReLU net, and a bridge to neural-tangents.

Notation (docs/theory.md): inputs x, z in R^d; with bias, the pre-activation covariance is
``s(x, z) = x.z / d + 1`` (``x.z / d`` without bias); ``rho = s(x,z) / sqrt(s(x,x) s(z,z))``,
``theta = arccos(rho)``; activation ``sigma(u) = max(u, gamma u)``, ``gamma in [0, 1)``.

* ``phi``   Phi(x,z)   = E[sigma'(u_x) sigma'(u_z)] = (1+gamma^2)(pi-theta)/(2 pi) + gamma theta / pi
* ``nngp``  Sigma(x,z) = E[sigma(u_x) sigma(u_z)]   = gamma s + (1-gamma)^2 sqrt(s_xx s_zz)(sin t + (pi-t) cos
  t)/(2 pi)
* ``ntk``   first layer trained:
      standard parametrization (w ~ N(0, I/d), a ~ N(0, 1/m)):  Phi(x,z) * (x.z + 1)
      NTK parametrization (w = W/sqrt(d), f = A.sigma/sqrt(m)): Phi(x,z) * (x.z/d + 1)
  (``+1`` only with bias); readout trained too adds Sigma (NTK parametrization) or ``m * Sigma``
  (standard parametrization, where the readout term grows with width m).

Every kernel here is a :data:`KernelFn`: ``kernel(x (N, d), z (M, d)) -> (N, M)``, differentiable in both
arguments (the angle has a zero subgradient at ``rho = +-1``), so it can be used by the infinite-width
predictors and attacked. This module is the only place that imports neural-tangents.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from functools import partial
from typing import Literal, get_args

import jax
import jax.numpy as jnp

from ntk_adv import validate

KernelFn = Callable[[jax.Array, jax.Array], jax.Array]
Parametrization = Literal["standard", "ntk"]
PARAMETRIZATIONS: tuple[str, ...] = get_args(Parametrization)


def check_gamma(gamma: float) -> float:
    return float(validate.gamma(gamma))


def check_parametrization(parametrization: str) -> str:
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"unknown parametrization {parametrization!r}; expected one of {', '.join(PARAMETRIZATIONS)}"
        )
    return parametrization


def check_pair(x, z) -> None:
    """Raise ValueError unless x (N, d) and z (M, d) are 2-D with the same d
    (:func:`ntk_adv.validate.pair`)."""
    validate.pair(x, z, ("kernel inputs x", "z"))


def _check_call(x, z, gamma) -> None:
    """The checks of every public kernel: shapes, gamma in [0, 1), finite inputs (concrete arrays only)."""
    check_pair(x, z)
    validate.gamma(gamma)
    validate.finite("x", x)
    if z is not x:
        validate.finite("z", z)


@jax.custom_jvp
def _safe_arccos(rho: jax.Array) -> jax.Array:
    return jnp.arccos(jnp.clip(rho, -1.0, 1.0))


@_safe_arccos.defjvp
def _safe_arccos_jvp(primals, tangents):
    (rho,), (drho,) = primals, tangents
    one_minus = 1.0 - jnp.clip(rho, -1.0, 1.0) ** 2
    tiny = jnp.finfo(rho.dtype).eps * 8
    inner = one_minus > tiny
    # Zero subgradient at the cone tips rho = +-1 (z parallel to x in the augmented space).
    slope = jnp.where(inner, -1.0 / jnp.sqrt(jnp.where(inner, one_minus, 1.0)), 0.0)
    return _safe_arccos(rho), slope * drho


def _covariances(x: jax.Array, z: jax.Array, bias: bool):
    """Pre-activation covariances: s(x,z) (N, M), s(x,x) (N,), s(z,z) (M,)."""
    d = x.shape[1]
    b = 1.0 if bias else 0.0
    sxz = x @ z.T / d + b
    sxx = jnp.sum(x * x, axis=1) / d + b
    szz = jnp.sum(z * z, axis=1) / d + b
    return sxz, sxx, szz


def _angle(sxz, sxx, szz):
    norm = jnp.sqrt(sxx[:, None] * szz[None, :])
    rho = sxz / jnp.where(norm > 0, norm, 1.0)
    return _safe_arccos(rho), norm


def phi(x: jax.Array, z: jax.Array, *, gamma: float = 0.0, bias: bool = True) -> jax.Array:
    """Phi(x, z) = E[sigma'(u_x) sigma'(u_z)], shape (N, M). Same in both parametrizations."""
    _check_call(x, z, gamma)
    theta, _ = _angle(*_covariances(x, z, bias))
    return (1.0 + gamma**2) * (jnp.pi - theta) / (2 * jnp.pi) + gamma * theta / jnp.pi


def nngp(x: jax.Array, z: jax.Array, *, gamma: float = 0.0, bias: bool = True) -> jax.Array:
    """Sigma(x, z) = E[sigma(u_x) sigma(u_z)] (leaky arc-cosine kernel of degree 1), shape (N, M)."""
    _check_call(x, z, gamma)
    sxz, sxx, szz = _covariances(x, z, bias)
    theta, norm = _angle(sxz, sxx, szz)
    relu_part = norm * (jnp.sin(theta) + (jnp.pi - theta) * jnp.cos(theta)) / (2 * jnp.pi)
    return gamma * sxz + (1.0 - gamma) ** 2 * relu_part


def nngp_diag(z: jax.Array, *, gamma: float = 0.0, bias: bool = True) -> jax.Array:
    """Sigma(z, z) = E[sigma(u_z)^2] = (1 + gamma^2) s(z, z) / 2, shape (M,): the variance of a random net's
    initial function f_0(z) at any width (a_i ~ N(0, 1/m) standard, or A/sqrt(m) NTK parametrization)."""
    _, _, szz = _covariances(z[:1], z, bias)
    return (1.0 + gamma**2) * szz / 2


def ntk(
    x: jax.Array,
    z: jax.Array,
    *,
    gamma: float = 0.0,
    bias: bool = True,
    parametrization: str = "standard",
    train_readout: bool = False,
    width: int | None = None,
) -> jax.Array:
    """Infinite-width NTK of the two-layer net, shape (N, M); see the module docstring for the formulas.

    ``train_readout=True`` with the standard parametrization needs ``width`` (the readout term is m * Sigma:
    this is the exact expectation of the finite net's empirical NTK, which has no width-independent limit).
    """
    _check_call(x, z, gamma)
    check_parametrization(parametrization)
    d = x.shape[1]
    b = 1.0 if bias else 0.0
    inner = x @ z.T
    feature = inner + b if parametrization == "standard" else inner / d + b
    out = phi(x, z, gamma=gamma, bias=bias) * feature
    if train_readout:
        readout_scale = 1.0 if parametrization == "ntk" else float(width)
        out = out + readout_scale * nngp(x, z, gamma=gamma, bias=bias)
    return out


def two_layer_kernel(
    kind: str = "ntk",
    *,
    gamma: float = 0.0,
    bias: bool = True,
    parametrization: str = "standard",
    train_readout: bool = False,
    width: int | None = None,
) -> KernelFn:
    """A validated :data:`KernelFn` for ``kind`` in {'ntk', 'nngp', 'phi'} of the two-layer net."""
    check_gamma(gamma)
    check_parametrization(parametrization)
    if train_readout and parametrization == "standard" and (width is None or width < 1):
        raise ValueError("train_readout=True in the standard parametrization needs the width m >= 1")
    if kind == "ntk":
        fn = partial(
            ntk,
            gamma=gamma,
            bias=bias,
            parametrization=parametrization,
            train_readout=train_readout,
            width=width,
        )
    elif kind == "nngp":
        fn = partial(nngp, gamma=gamma, bias=bias)
    elif kind == "phi":
        fn = partial(phi, gamma=gamma, bias=bias)
    else:
        raise ValueError(f"unknown kernel kind {kind!r}; expected one of ntk, nngp, phi")
    return fn


def kernel_matrix(
    kernel: KernelFn, x: jax.Array, z: jax.Array | None = None, *, block_size: int = 2048
) -> jax.Array:
    """Evaluate ``kernel(x, z)`` (N, M) in row blocks of ``block_size`` so that N x M kernels of 10^4
    points never materialize more than ``block_size x M`` intermediates per elementwise op."""
    z = x if z is None else z
    check_pair(x, z)
    x, z = jnp.asarray(x), jnp.asarray(z)
    n = x.shape[0]
    if n <= block_size:
        return jax.jit(kernel)(x, z)
    n_blocks = -(-n // block_size)
    pad = n_blocks * block_size - n
    xb = jnp.pad(x, ((0, pad), (0, 0))).reshape(n_blocks, block_size, x.shape[1])
    out = jax.jit(lambda xs, zz: jax.lax.map(lambda xi: kernel(xi, zz), xs))(xb, z)
    return out.reshape(n_blocks * block_size, z.shape[0])[:n]


def predicted_direction(
    points: jax.Array, x_train: jax.Array, y_train: jax.Array, *, gamma: float = 0.0, bias: bool = True
) -> jax.Array:
    """D_n = normalize(sum_k y_k Phi(x_n, x_k) x_k) for each row x_n of ``points``; shape (P, d).

    The direction a lazily trained net's input gradient takes at x_n (Kumano et al. 2024)."""
    raw = phi(points, x_train, gamma=gamma, bias=bias) @ (y_train[:, None] * x_train)
    norms = jnp.linalg.norm(raw, axis=1, keepdims=True)
    return raw / jnp.where(norms > 0, norms, 1.0)


# ----------------------------------------------------------------------------- neural-tangents bridge
def neural_tangents():
    """Import neural-tangents without its TensorFlow-only ``experimental`` submodule (environment.md)."""
    if "neural_tangents" not in sys.modules:
        sys.modules.setdefault(
            "neural_tangents.experimental", types.ModuleType("neural_tangents.experimental")
        )
    try:
        import neural_tangents as nt
    except ImportError as err:
        sys.modules.pop("neural_tangents.experimental", None)
        absent = isinstance(err, ModuleNotFoundError) and err.name == "neural_tangents"
        why = "is not installed" if absent else f"fails to import ({(str(err) or repr(err)).splitlines()[0]})"
        raise OracleMissing(
            f"the neural-tangents oracle {why}: its last release (0.6.5) needs jax <= 0.5.3, so it lives in "
            "the pinned oracle environment - build it with `bash oracle/build` in a checkout, then run "
            "`.venv-oracle/bin/python -m pytest -m oracle`"
        ) from err
    return nt


class OracleMissing(ImportError):
    """neural-tangents (the test oracle; pinned in the repository's ``oracle/`` environment) is absent."""


def stax_kernel(kernel_fn, get: str = "ntk") -> KernelFn:
    """Wrap any neural-tangents stax ``kernel_fn`` into a :data:`KernelFn` (x, z) -> (N, M).

    This is how users go beyond two layers: every predictor and attack of the suite accepts the result.
    Note neural-tangents uses the NTK parametrization by default."""
    if get not in ("ntk", "nngp"):
        raise ValueError(f"unknown kernel {get!r}; expected 'ntk' or 'nngp'")

    def kernel(x, z):
        return kernel_fn(x, z, get)

    return kernel


def stax_two_layer(gamma: float = 0.0, bias: bool = True):
    """The neural-tangents stax description of the two-layer net (NTK parametrization, scalar output):
    ``(init_fn, apply_fn, kernel_fn)``; its 'ntk' minus 'nngp' is ``Phi (x.z/d + 1)``."""
    stax = neural_tangents().stax
    return stax.serial(
        stax.Dense(1, W_std=1.0, b_std=1.0 if bias else None),
        stax.LeakyRelu(check_gamma(gamma)),
        stax.Dense(1, W_std=1.0, b_std=None),
    )
