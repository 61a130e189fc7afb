"""Convolutional networks and their exact infinite-width kernels (docs/theory.md, "Deep and convolutional
kernels").

    block l (l = 1..depth):  h_l = sigma(conv_l(h_{l-1}) + b_l)   [then 2x2 average pooling if ``pool``]
    readout:                 f(x) = W_out flatten(h_depth)   or   W_out mean_positions(h_depth)   (``gap``)

Convolutions have ``width`` output channels, ``filter_shape`` (3, 3), stride 1 and SAME (zero) padding;
pooling is a 2x2 window with stride 2 (VALID). Inputs are images (N, H, W, C). Parametrizations, ``trained``,
``bias``, ``w_std``/``b_std`` as in :mod:`ntk_adv.arch.fc` (fan-in of a convolution = channels x filter size;
of the flatten readout = width x positions).

Kernel: neural-tangents' stax ``Conv(width, filter_shape, padding='SAME')`` + activation
[+ ``AvgPool((2, 2), strides=(2, 2))``] blocks, then ``Flatten()`` or ``GlobalAvgPool()`` and
``Dense(n_out, b_std=None)``. The recursion tracks, per pair of inputs, the covariance of two pre-activations
as a function of their positions. A convolution moves both positions by the same filter offset, so with a
flatten readout and no pooling (which only average same-position covariances) the same-position covariances
(N1, N2, H, W) close on themselves: cost linear in the pixels. Pooling and global average pooling mix
positions: then the full pixel-pair covariance (N1, N2, H, W, H, W) is carried (quadratic in the pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from ntk_adv.arch._deep import DeepArchitecture

Readout = Literal["flatten", "gap"]


@dataclass(frozen=True)
class CNN(DeepArchitecture):
    """A convolutional net (``--arch cnn``): ``depth`` >= 1 conv + activation blocks of ``width`` channels,
    optional 2x2 average ``pool`` after each block, then ``readout`` 'flatten' or 'gap' (global average
    pooling) and a dense readout without bias. Other fields as :class:`~ntk_adv.arch.FC`. Params: a tuple
    of ``depth`` conv dicts {'w': (fh, fw, C_in, width), 'b': (width,)} and the readout
    {'w': (n_out, fan_in)}."""

    name: ClassVar[str] = "cnn"
    _min_depth: ClassVar[int] = 1

    readout: Readout = "flatten"
    pool: bool = False
    filter_shape: tuple[int, int] = (3, 3)

    def __post_init__(self):
        super().__post_init__()
        fs = self.filter_shape
        if not (
            isinstance(fs, tuple)
            and len(fs) == 2
            and all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in fs)
        ):
            raise ValueError(f"filter_shape must be a tuple of two integers >= 1, got {fs!r}")
        if not isinstance(self.pool, bool):
            raise ValueError(f"pool must be True or False, got {self.pool!r}")

    @property
    def full_spatial(self) -> bool:
        """Whether the kernel needs pixel-pair covariances (pooling or global average pooling)."""
        return self.pool or self.readout == "gap"

    def _check_shape(self, input_shape) -> tuple[int, int, int]:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"CNN inputs are images (N, H, W, C); got one example of shape {shape}")
        h, w, _ = shape
        for _ in range(self.depth if self.pool else 0):
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"images of shape {shape} are too small for {self.depth} 2x2 poolings")
        return shape

    def _out_positions(self, input_shape) -> int:
        h, w, _ = input_shape
        for _ in range(self.depth if self.pool else 0):
            h, w = h // 2, w // 2
        return h * w

    # ---- finite net
    def init(self, key, input_shape: tuple[int, ...], dtype=None):
        m = self._finite("init")
        shape = self._check_shape(input_shape)
        dtype = dtype or jnp.float32
        fh, fw = self.filter_shape
        keys = jax.random.split(key, self.depth + 1)
        params = []
        c_in = shape[2]
        for i in range(self.depth):
            params.append(self._layer_params(keys[i], fh * fw * c_in, (fh, fw, c_in, m), m, dtype))
            c_in = m
        fan_in = m * (self._out_positions(shape) if self.readout == "flatten" else 1)
        params.append(self._layer_params(keys[-1], fan_in, (self.n_out, fan_in), None, dtype))
        return tuple(params)

    def _conv(self, layer, h):
        fh, fw, c_in, _ = layer["w"].shape
        u = jax.lax.conv_general_dilated(
            h, layer["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return self._scaled(u, layer, fh * fw * c_in)

    def apply(self, params, x):
        """Outputs (N,) for ``n_out == 1`` else (N, n_out); ``x`` (N, H, W, C)."""
        _check_images(x)
        h = x
        for layer in params[:-1]:
            h = self.act(self._conv(layer, h))
            if self.pool:
                h = _avg_pool(h)
        h = jnp.reshape(h, (h.shape[0], -1)) if self.readout == "flatten" else jnp.mean(h, axis=(1, 2))
        readout = params[-1]
        scale_w, _ = self._scales(h.shape[-1])
        out = h @ readout["w"].T
        out = out * scale_w if scale_w != 1.0 else out
        return out[:, 0] if self.n_out == 1 else out

    def preactivations(self, params, x):
        """The first conv layer's pre-activations (N, H, W, width)."""
        _check_images(x)
        return self._conv(params[0], x)

    # ---- infinite width
    def kernel(self, x1, x2, get: str = "ntk"):
        """The infinite-width kernel (N1, N2) of one output (``get`` 'ntk' of the trained layers, or 'nngp');
        inputs (N, H, W, C). Jit-able, differentiable in both inputs."""
        self._check_get(get)
        self._needs_width_for_ntk(get)
        s1, s2 = jnp.shape(x1), jnp.shape(x2)
        if len(s1) != 4 or len(s2) != 4 or s1[1:] != s2[1:]:
            raise ValueError(f"CNN kernel inputs must be images (N, H, W, C) of one shape, got {s1} and {s2}")
        self._check_shape(s1[1:])
        return _cnn_kernel(self, jnp.asarray(x1), jnp.asarray(x2), get)


def _check_images(x) -> None:
    if jnp.ndim(x) != 4:
        raise ValueError(f"CNN inputs must be images (N, H, W, C), got shape {jnp.shape(x)}")


def _avg_pool(h):
    """2x2 average pooling, stride 2, VALID, on (N, H, W, C)."""
    n, hh, ww, c = h.shape
    h = h[:, : hh // 2 * 2, : ww // 2 * 2]
    return jnp.mean(h.reshape(n, hh // 2, 2, ww // 2, 2, c), axis=(2, 4))


# ----------------------------------------------------------------------------- the recursion
# A covariance tensor has ``nb`` leading batch axes ((N1, N2) for a pair of input sets, (N,) for one set with
# itself) followed by its spatial axes: (H, W) for same-position covariances, (H, W, H, W) for pixel pairs.


def _pad(size: int, f: int) -> tuple[int, int]:
    """SAME padding of a stride-1 filter of size f (lax's convention)."""
    total = f - 1
    return total // 2, total - total // 2


def _conv_cov(t, nb: int, full: bool, filter_shape):
    """Covariance after a (unit-variance, fan-in-averaged) SAME convolution: the mean over filter offsets
    delta of t(p + delta, q + delta), zero outside the image."""
    fh, fw = filter_shape
    hh, ww = t.shape[nb], t.shape[nb + 1]
    ph, pw = _pad(hh, fh), _pad(ww, fw)
    if not full:  # a plain window sum over the two spatial axes
        window = (1,) * nb + (fh, fw)
        pads = ((0, 0),) * nb + (ph, pw)
        return jax.lax.reduce_window(t, 0.0, jax.lax.add, window, (1,) * (nb + 2), pads) / (fh * fw)
    tp = jnp.pad(t, [(0, 0)] * nb + [ph, pw, ph, pw])
    out = None
    for i in range(fh):
        for j in range(fw):
            rows, cols = slice(i, i + hh), slice(j, j + ww)
            part = tp[(slice(None),) * nb + (rows, cols, rows, cols)]
            out = part if out is None else out + part
    return out / (fh * fw)


def _pool_cov(t, nb: int):
    """Covariance after 2x2 average pooling of both positions (pixel-pair layout)."""
    shape = t.shape[:nb]
    hh, ww = t.shape[nb] // 2, t.shape[nb + 1] // 2
    t = t[(slice(None),) * nb + (slice(0, 2 * hh), slice(0, 2 * ww)) * 2]
    t = t.reshape(*shape, hh, 2, ww, 2, hh, 2, ww, 2)
    return jnp.mean(t, axis=tuple(nb + k for k in (1, 3, 5, 7)))


def _diag(t, nb: int):
    """Same-position entries (nb batch axes, H, W) of a pixel-pair covariance (nb, H, W, H, W)."""
    hh, ww = t.shape[nb], t.shape[nb + 1]
    flat = t.reshape(*t.shape[:nb], hh * ww, hh * ww)
    return jnp.diagonal(flat, axis1=-2, axis2=-1).reshape(*t.shape[:nb], hh, ww)


def _readout_cov(t, nb: int, full: bool, readout: str):
    """Covariance of the readout's input, averaged over its fan-in: the mean over positions of same-position
    covariances (flatten), or over all position pairs (global average pooling)."""
    if not full:
        return jnp.mean(t, axis=(nb, nb + 1))
    if readout == "flatten":
        return jnp.mean(_diag(t, nb), axis=(nb, nb + 1))
    return jnp.mean(t, axis=tuple(range(nb, nb + 4)))


@partial(jax.jit, static_argnums=(0, 3))
def _cnn_kernel(arch: CNN, x1, x2, get: str):
    full = arch.full_spatial
    c = x1.shape[-1]
    fh, fw = arch.filter_shape
    width = None if arch.infinite else float(arch.width)
    if full:
        cov = jnp.einsum("nhwc,mijc->nmhwij", x1, x2) / c
        s1 = jnp.einsum("nhwc,nijc->nhwij", x1, x1) / c
        s2 = jnp.einsum("nhwc,nijc->nhwij", x2, x2) / c
    else:
        cov = jnp.einsum("nhwc,mhwc->nmhw", x1, x2) / c
        s1 = jnp.sum(x1 * x1, axis=-1) / c
        s2 = jnp.sum(x2 * x2, axis=-1) / c

    def conv(t, nb):
        return _conv_cov(t, nb, full, arch.filter_shape)

    # first conv layer (always trained)
    pre = conv(cov, 2)
    nngp = arch.affine(pre, bias=True)
    ntk = arch.ntk_term(pre, nngp, fh * fw * c, bias=True) if get == "ntk" else None
    s1, s2 = arch.affine(conv(s1, 1), bias=True), arch.affine(conv(s2, 1), bias=True)
    for block in range(arch.depth):
        # activation: needs each input's variance at each position
        if full:
            v1, v2 = _diag(s1, 1), _diag(s2, 1)
            a = v1[:, None, :, :, None, None]
            b = v2[None, :, None, None, :, :]
            s1 = arch.dual(s1, v1[:, :, :, None, None], v1[:, None, None, :, :])[0]
            s2 = arch.dual(s2, v2[:, :, :, None, None], v2[:, None, None, :, :])[0]
        else:
            a, b = s1[:, None], s2[None, :]
            s1, s2 = arch.dual_self(s1), arch.dual_self(s2)
        post, dot = arch.dual(nngp, a, b)
        if ntk is not None:
            ntk = ntk * dot
        if arch.pool:
            post, s1, s2 = _pool_cov(post, 2), _pool_cov(s1, 1), _pool_cov(s2, 1)
            ntk = None if ntk is None else _pool_cov(ntk, 2)
        last = block == arch.depth - 1
        if last:
            break
        pre = conv(post, 2)
        nngp = arch.affine(pre, bias=True)
        if ntk is not None:
            ntk = arch.w_std**2 * conv(ntk, 2)
            if arch.trained == "all":
                ntk = ntk + arch.ntk_term(pre, nngp, None if width is None else fh * fw * width, bias=True)
        s1, s2 = arch.affine(conv(s1, 1), bias=True), arch.affine(conv(s2, 1), bias=True)
    # readout
    positions = post.shape[2] * post.shape[3]
    pre = _readout_cov(post, 2, full, arch.readout)
    nngp = arch.affine(pre, bias=False)
    if ntk is None:
        return nngp
    ntk = arch.w_std**2 * _readout_cov(ntk, 2, full, arch.readout)
    if arch.trained == "all":
        fan_in = None if width is None else width * (positions if arch.readout == "flatten" else 1)
        ntk = ntk + arch.ntk_term(pre, nngp, fan_in, bias=False)
    return ntk
