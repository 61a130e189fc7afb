"""Deep fully-connected networks and their exact infinite-width kernels (docs/theory.md, "Deep and
convolutional kernels").

    h_1 = W_1 x + b_1,   h_{l+1} = W_{l+1} sigma(h_l) + b_{l+1},   f(x) = W_L sigma(h_{L-1})

``depth`` L >= 2 weight layers (L = 2 is the two-layer net of :mod:`ntk_adv.models`); hidden layers have
``width`` units and a bias when ``bias``; the readout W_L (``n_out`` x width) has no bias. Inputs (N, *shape)
are flattened to (N, d).

Parametrizations (the same function at init for the same key, different gradient scales):

* ``ntk``       stored W ~ N(0, 1), b ~ N(0, 1); a layer computes (w_std / sqrt(fan_in)) W h + b_std b
* ``standard``  stored W ~ N(0, w_std^2 / fan_in), b ~ N(0, b_std^2); a layer computes W h + b

``trained='all'`` trains every layer; ``trained='first'`` only the first (W_1, b_1), every other layer frozen.

The kernel is neural-tangents' (stax ``Dense``/``LeakyRelu``/``Erf``, same ``W_std``/``b_std``, readout
``b_std=None``) with the NTK restricted to the trained layers. In the standard parametrization the NTK term of
a layer is fan_in * (its input covariance) + 1 [bias], so with ``trained='all'`` it grows with the width: the
kernel then needs a finite ``width`` (it is the one of that width, as neural-tangents computes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import jax
import jax.numpy as jnp

from ntk_adv.arch._deep import DeepArchitecture


@dataclass(frozen=True)
class FC(DeepArchitecture):
    """A fully-connected net of ``depth`` weight layers (``--arch fc``); fields: ``width`` (int or
    ``INF_WIDTH``), ``depth`` >= 2, ``activation`` 'leaky_relu' (slope ``gamma`` in [0, 1)) or 'erf', ``bias``
    (hidden layers), ``parametrization`` 'ntk' | 'standard', ``trained`` 'all' | 'first', ``n_out``,
    ``w_std``, ``b_std``. Params: a tuple of ``depth`` dicts {'w': (fan_out, fan_in), 'b': (fan_out,)} ('b'
    only in hidden layers with a bias)."""

    name: ClassVar[str] = "fc"
    _min_depth: ClassVar[int] = 2

    # ---- finite net
    def init(self, key, input_shape: tuple[int, ...], dtype=None):
        """Parameters for one example of shape ``input_shape`` (flattened to d = prod(shape))."""
        m = self._finite("init")
        d = _flat_dim(input_shape)
        dtype = dtype or jnp.float32
        fans = [d] + [m] * (self.depth - 1)
        outs = [m] * (self.depth - 1) + [self.n_out]
        keys = jax.random.split(key, self.depth)
        return tuple(
            self._layer_params(
                keys[i], fans[i], (outs[i], fans[i]), outs[i] if i < self.depth - 1 else None, dtype
            )
            for i in range(self.depth)
        )

    def _dense(self, layer, h):
        return self._scaled(h @ layer["w"].T, layer, h.shape[-1])

    def apply(self, params, x):
        """Outputs (N,) for ``n_out == 1`` else (N, n_out); ``x`` (N, *shape)."""
        h = jnp.reshape(x, (x.shape[0], -1))
        for layer in params[:-1]:
            h = self.act(self._dense(layer, h))
        out = self._dense(params[-1], h)
        return out[:, 0] if self.n_out == 1 else out

    def preactivations(self, params, x):
        """The first hidden layer's pre-activations (N, width)."""
        return self._dense(params[0], jnp.reshape(x, (x.shape[0], -1)))

    # ---- infinite width
    def kernel(self, x1, x2, get: str = "ntk"):
        """The infinite-width kernel (N1, N2) of one output (``get`` 'ntk' of the trained layers, or 'nngp');
        inputs (N, *shape) flattened. Jit-able, differentiable in both inputs."""
        self._check_get(get)
        self._needs_width_for_ntk(get)
        _check_inputs(x1, x2)
        return _fc_kernel(self, jnp.asarray(x1), jnp.asarray(x2), get)


def _flat_dim(input_shape) -> int:
    d = 1
    for s in tuple(input_shape):
        d *= int(s)
    if d < 1:
        raise ValueError(f"input_shape must describe at least one feature, got {tuple(input_shape)}")
    return d


def _check_inputs(x1, x2) -> None:
    s1, s2 = jnp.shape(x1), jnp.shape(x2)
    if len(s1) < 2 or s1[1:] != s2[1:]:
        raise ValueError(f"kernel inputs must be (N, *shape) with one example shape, got {s1} and {s2}")


@partial(jax.jit, static_argnums=(0, 3))
def _fc_kernel(arch: FC, x1, x2, get: str):
    x1 = jnp.reshape(x1, (x1.shape[0], -1))
    x2 = jnp.reshape(x2, (x2.shape[0], -1))
    d = x1.shape[1]
    cov = x1 @ x2.T / d  # input covariance averaged over the d input features
    v1 = jnp.sum(x1 * x1, axis=1) / d
    v2 = jnp.sum(x2 * x2, axis=1) / d
    nngp = arch.affine(cov, bias=True)
    ntk = arch.ntk_term(cov, nngp, d, bias=True) if get == "ntk" else None
    v1, v2 = arch.affine(v1, bias=True), arch.affine(v2, bias=True)
    width = None if arch.infinite else float(arch.width)
    for layer in range(1, arch.depth):
        readout = layer == arch.depth - 1
        post, dot = arch.dual(nngp, v1[:, None], v2[None, :])
        nngp = arch.affine(post, bias=not readout)
        if ntk is not None:
            ntk = arch.w_std**2 * dot * ntk
            if arch.trained == "all":
                ntk = ntk + arch.ntk_term(post, nngp, width, bias=not readout)
        if not readout:
            v1 = arch.affine(arch.dual_self(v1), bias=True)
            v2 = arch.affine(arch.dual_self(v2), bias=True)
    return nngp if get == "nngp" else ntk
