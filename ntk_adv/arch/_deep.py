"""What the deep architectures (:mod:`ntk_adv.arch.fc`, :mod:`ntk_adv.arch.cnn`) share: the common fields and
their checks, the dual activations of the layer-wise NNGP/NTK recursion, the trained-layer NTK term, and
blockwise evaluation of a kernel (docs/theory.md, "Deep and convolutional kernels").

Dual activations: for a centred Gaussian pair (u, v) with E[u^2] = a, E[v^2] = c, E[uv] = s,

* leaky ReLU sigma(u) = max(u, gamma u) (the degree-1 arc-cosine kernel, any gamma in [0, 1)), with
  theta = arccos(s / sqrt(a c)):
      E[sigma(u) sigma(v)]   = gamma s + (1 - gamma)^2 sqrt(a c) (sin theta + (pi - theta) cos theta) / (2 pi)
      E[sigma'(u) sigma'(v)] = (1 + gamma^2) (pi - theta) / (2 pi) + gamma theta / pi
* erf:
      E[erf(u) erf(v)]   = (2 / pi) arcsin(2 s / sqrt((1 + 2 a)(1 + 2 c)))
      E[erf'(u) erf'(v)] = (4 / pi) / sqrt((1 + 2 a)(1 + 2 c) - 4 s^2)

On the diagonal (u = v) the closed forms are used directly (no arccos of 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import validate
from ntk_adv.arch.base import Architecture
from ntk_adv.kernels import _safe_arccos

Activation = Literal["leaky_relu", "erf"]
Trained = Literal["all", "first"]


@dataclass(frozen=True)
class DeepArchitecture(Architecture):
    """Fields common to :class:`~ntk_adv.arch.FC` and :class:`~ntk_adv.arch.CNN` (see their docstrings)."""

    name: ClassVar[str] = ""

    width: int | float = 1
    parametrization: Literal["standard", "ntk"] = "ntk"
    n_out: int = 1
    depth: int = 3
    activation: Activation = "leaky_relu"
    gamma: float = 0.0
    bias: bool = True
    trained: Trained = "all"
    w_std: float = 1.0
    b_std: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        validate.check_choices(self)
        if isinstance(self.depth, bool) or not isinstance(self.depth, (int, np.integer)):
            raise ValueError(f"depth must be an integer >= {self._min_depth}, got {self.depth!r}")
        if self.depth < self._min_depth:
            raise ValueError(f"depth must be an integer >= {self._min_depth}, got {self.depth!r}")
        validate.gamma(self.gamma)
        for field in ("w_std", "b_std"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float, np.floating)) and np.isfinite(value) and value > 0):
                raise ValueError(f"{field} must be a finite number > 0, got {value!r}")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise ValueError(f"bias must be True or False, got {self.bias!r}")

    _min_depth: ClassVar[int] = 1

    def _needs_width_for_ntk(self, get: str) -> None:
        """The standard parametrization's NTK of layers past the first grows with their fan-in (width): with
        ``trained='all'`` it has no infinite-width limit (as for the two-layer net's trained readout)."""
        if get == "ntk" and self.parametrization == "standard" and self.trained == "all" and self.infinite:
            raise ValueError(
                "the standard parametrization's NTK with trained='all' grows with the width and has no "
                "infinite-width limit: give a finite width, or use parametrization='ntk' or trained='first'"
            )

    def _check_get(self, get: str) -> None:
        if get not in ("ntk", "nngp"):
            raise ValueError(f"unknown kernel {get!r}; expected 'ntk' or 'nngp'")

    # ---- the recursion's building blocks (all elementwise on broadcastable arrays)
    def dual(self, s, a, c):
        """(E[sigma(u) sigma(v)], E[sigma'(u) sigma'(v)]) for covariance s and variances a, c."""
        return dual(self.activation, self.gamma, s, a, c)

    def dual_self(self, a):
        """E[sigma(u)^2] for variance a."""
        return dual_self(self.activation, self.gamma, a)

    def affine(self, cov, *, bias: bool):
        """The NNGP after a weight layer: w_std^2 cov + b_std^2 [bias] (cov: the input covariance averaged
        over the layer's fan-in)."""
        out = self.w_std**2 * cov
        return out + self.b_std**2 if (bias and self.bias) else out

    def ntk_term(self, cov_in, nngp_out, fan_in: float, *, bias: bool):
        """What a trained weight layer adds to the NTK: its NNGP (NTK parametrization), or
        fan_in * cov_in + 1 [bias] (standard parametrization, neural-tangents' convention)."""
        if self.parametrization == "ntk":
            return nngp_out
        out = fan_in * cov_in
        return out + 1.0 if (bias and self.bias) else out

    def _layer_params(self, key, fan_in: int, w_shape, n_b: int | None, dtype):
        """One weight layer's params: {'w'} and {'b'} if it has a bias (n_b not None); NTK parametrization
        stores N(0, 1), the standard one N(0, w_std^2 / fan_in) and b_std N(0, 1)."""
        k_w, k_b = jax.random.split(key)
        w = jax.random.normal(k_w, w_shape, dtype)
        if self.parametrization == "standard":
            w = w * (self.w_std / math.sqrt(fan_in))
        layer = {"w": w}
        if n_b is not None and self.bias:
            b = jax.random.normal(k_b, (n_b,), dtype)
            layer["b"] = b * self.b_std if self.parametrization == "standard" else b
        return layer

    def _scales(self, fan_in: int) -> tuple[float, float]:
        """(weight, bias) multipliers in apply: (w_std / sqrt(fan_in), b_std) in the NTK parametrization,
        (1, 1) in the standard one."""
        if self.parametrization == "ntk":
            return self.w_std / math.sqrt(fan_in), self.b_std
        return 1.0, 1.0

    def _scaled(self, u, layer, fan_in: int):
        """A weight layer's output from its raw product ``u``: times w_std / sqrt(fan_in) and plus b_std b
        (NTK parametrization), or unchanged plus b (standard); the bias only where ``layer`` has one."""
        scale_w, scale_b = self._scales(fan_in)
        u = u * scale_w if scale_w != 1.0 else u
        if "b" in layer:
            b = layer["b"] * scale_b if scale_b != 1.0 else layer["b"]
            u = u + jnp.broadcast_to(b, u.shape)
        return u

    def act(self, u):
        if self.activation == "erf":
            return jax.scipy.special.erf(u)
        return jnp.maximum(u, self.gamma * u)

    def trainable_mask(self, params):
        """Layer 0 trains always; the others iff ``trained == 'all'`` (tuple of dicts like ``params``)."""
        return tuple(
            {k: bool(i == 0 or self.trained == "all") for k in layer} for i, layer in enumerate(params)
        )

    def first_layer(self, params):
        """(w, b) of the first layer (b zeros without bias)."""
        first = params[0]
        w = first["w"]
        b = first.get("b", jnp.zeros((w.shape[-1] if w.ndim == 4 else w.shape[0],), w.dtype))
        return w, b


def dual(activation: str, gamma: float, s, a, c):
    if activation == "erf":
        pa, pc = 1.0 + 2.0 * a, 1.0 + 2.0 * c
        prod = pa * pc
        k = (2.0 / jnp.pi) * jnp.arcsin(2.0 * s / jnp.sqrt(prod))
        kdot = (4.0 / jnp.pi) / jnp.sqrt(prod - 4.0 * s * s)
        return k, kdot
    norm = jnp.sqrt(a * c)
    rho = s / jnp.where(norm > 0, norm, 1.0)
    theta = _safe_arccos(rho)
    k = gamma * s + (1.0 - gamma) ** 2 * norm * _arc1(rho) / (2 * jnp.pi)
    kdot = (1.0 + gamma**2) * (jnp.pi - theta) / (2 * jnp.pi) + gamma * theta / jnp.pi
    return k, kdot


@jax.custom_jvp
def _arc1(rho):
    """sin(theta) + (pi - theta) cos(theta) with theta = arccos(rho), i.e. sqrt(1 - rho^2) + (pi - theta) rho
    (one arccos, no sin/cos); its derivative is pi - theta: the singular terms of the two summands cancel,
    so it is finite at rho = +-1."""
    r = jnp.clip(rho, -1.0, 1.0)
    return jnp.sqrt(jnp.maximum(1.0 - r * r, 0.0)) + (jnp.pi - jnp.arccos(r)) * r


@_arc1.defjvp
def _arc1_jvp(primals, tangents):
    (rho,), (drho,) = primals, tangents
    return _arc1(rho), (jnp.pi - _safe_arccos(rho)) * drho


def dual_self(activation: str, gamma: float, a):
    if activation == "erf":
        return (2.0 / jnp.pi) * jnp.arcsin(2.0 * a / (1.0 + 2.0 * a))
    return (1.0 + gamma**2) * a / 2.0


def blockwise(
    kernel: Callable[[jax.Array, jax.Array], jax.Array],
    x1,
    x2=None,
    *,
    block: int = 2000,
    out: np.ndarray | None = None,
    dtype=np.float32,
) -> np.ndarray:
    """Evaluate ``kernel(x1, x2)`` (N1, N2) in (block x block) tiles into a numpy array (preallocated
    ``out``, else a new one of ``dtype``), so memory beyond the result is one tile's intermediates.

    ``kernel`` is any jit-able (B1, *shape), (B2, *shape) -> (B1, B2) function (e.g. ``arch.kernel`` with
    ``get`` bound). Edge tiles are zero-padded to the block size, so one compiled tile serves the whole
    matrix; with ``x2`` None the symmetric kernel computes only the tiles on and above the diagonal and
    mirrors the rest. The 60000 x 60000 float32 MNIST-train kernel is 14.4 GB of result."""
    sym = x2 is None
    x1 = np.asarray(x1)
    x2 = x1 if sym else np.asarray(x2)
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"x1 and x2 must have the same example shape, got {x1.shape} and {x2.shape}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be an integer >= 1, got {block!r}")
    n1, n2 = x1.shape[0], x2.shape[0]
    if out is None:
        out = np.empty((n1, n2), dtype)
    elif out.shape != (n1, n2):
        raise ValueError(f"out must have shape {(n1, n2)}, got {out.shape}")
    b1, b2 = min(block, n1), min(block, n2)
    tile = jax.jit(kernel)

    def padded(x, start, size):
        part = x[start : start + size]
        if part.shape[0] < size:
            part = np.concatenate([part, np.zeros((size - part.shape[0], *x.shape[1:]), x.dtype)])
        return jnp.asarray(part)

    for i in range(0, n1, b1):
        xi = padded(x1, i, b1)
        for j in range(i if sym else 0, n2, b2):
            k = np.asarray(tile(xi, padded(x2, j, b2)))
            r, c = min(b1, n1 - i), min(b2, n2 - j)
            out[i : i + r, j : j + c] = k[:r, :c]
            if sym and j != i:
                out[j : j + c, i : i + r] = k[:r, :c].T
    return out
