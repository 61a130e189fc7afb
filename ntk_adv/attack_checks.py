"""Argument checks of the attacks (eager, Python level: shapes and static parameters only; values of traced
arrays are not known) and the small numerical helpers that the attacks (:mod:`ntk_adv.attacks`) and the
L-BFGS solver (:mod:`ntk_adv.lbfgs`) share: per-row gradients and norms, boxes on ``x + eta``.

Shapes: inputs ``x`` (N, d), targets ``(N,)`` in {-1, +1}; boxes ``(lo, hi)`` broadcast to (N, d)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ntk_adv import validate
from ntk_adv.losses import MARGIN_LOSSES, margin_loss

Array = jax.Array
Predictor = Callable[[Array], Array]

NORMS = ("l2", "linf")


# --------------------------------------------------------------------------------------------------
# Argument checks (eager, Python level: shapes and static parameters only)
# --------------------------------------------------------------------------------------------------


def is_tracer(v: Any) -> bool:
    return isinstance(v, jax.core.Tracer)


def check_direction(x: Any, labels: Any, targets: Any) -> tuple[Array, Array]:
    """Resolve the attack direction: exactly one of ``labels`` (untargeted: move away from the true labels)
    and ``targets`` (targeted: move toward them), each ``(N,)`` in {-1, +1}.

    Returns ``(x, t)``: ``x`` (N, d) in a float dtype and the target signs ``t`` (N,) of the attacked margin
    loss ``l(t f)`` (``t = -labels`` or ``t = targets``), in x's dtype."""
    if (labels is None) == (targets is None):
        raise ValueError(
            "pass exactly one of labels= (untargeted, away from the true labels) or targets= (targeted, "
            f"toward them); got {'both' if labels is not None else 'neither'}"
        )
    if labels is None:
        return check_inputs(x, targets)
    x, y = check_inputs(x, labels, name="labels")
    return x, -y


def check_inputs(x: Any, targets: Any, name: str = "targets") -> tuple[Array, Array]:
    """Validate ``x`` (N, d) and ``targets`` (N,) in {-1, +1} (called ``name`` in errors); return them as
    arrays of x's float dtype."""
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-D array of shape (N, d); got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    validate.finite("x", x)
    t = jnp.asarray(targets)
    if t.shape != (x.shape[0],):
        raise ValueError(
            f"{name} must have shape (N,) = ({x.shape[0]},) to match x of shape {tuple(x.shape)}; "
            f"got shape {tuple(t.shape)}"
        )
    if not is_tracer(t):
        tv = np.asarray(t)
        if not np.all((tv == 1) | (tv == -1)):
            raise ValueError(f"{name} must contain only -1 and +1")
    return x, t.astype(x.dtype)


def _check_scalar(name: str, value: Any, *, positive: bool) -> None:
    """A finite real scalar, > 0 (``positive``) or >= 0; traced scalars are accepted unchecked."""
    if is_tracer(value):
        if jnp.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar; got shape {jnp.shape(value)}")
        return
    try:
        v = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        v = np.asarray(np.nan)
    is_bool = isinstance(value, (bool, np.bool_))
    if is_bool or v.dtype.kind != "f" or v.ndim != 0 or not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    if not positive and v < 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}")


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not (is_int and value >= minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _check_c(c: Any) -> None:
    """L-BFGS trade-off ``c``: a positive scalar or a positive array of shape (N,) (per point)."""
    if is_tracer(c):
        return
    try:
        v = np.asarray(c, dtype=float)
    except (TypeError, ValueError):
        v = np.asarray(np.nan)
    if v.ndim > 1 or not np.all(np.isfinite(v)) or not np.all(v > 0):
        raise ValueError(f"c must be a positive finite scalar or (N,) array; got {c!r}")


def _check_clip(clip: Any) -> None:
    if clip is None:
        return
    if not isinstance(clip, (tuple, list)) or len(clip) != 2:
        raise ValueError(f"clip must be None or a pair (lo, hi); got {clip!r}")
    lo, hi = clip
    if not (is_tracer(lo) or is_tracer(hi)):
        lo_v, hi_v = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        if np.any(np.isnan(lo_v)) or np.any(np.isnan(hi_v)) or np.any(lo_v >= hi_v):
            raise ValueError(f"clip must satisfy lo < hi; got {clip!r}")


def loss_fn(loss: Any) -> Callable[[Array], Array]:
    if loss not in MARGIN_LOSSES:
        raise ValueError(
            f"attacks need a margin loss; got loss {loss!r}, expected one of {', '.join(MARGIN_LOSSES)}"
        )
    return margin_loss(loss)


def _check_norm(norm: Any) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")


def check_l0_mode(step: Any, clip: Any) -> None:
    if step is None and clip is None:
        raise ValueError("l0 attack needs step (a coordinate change size) or clip (move to the box bound)")
    if step is not None:
        _check_scalar("step", step, positive=True)


def _check_bool(name: str, value: Any) -> None:
    if value is not True and value is not False and not isinstance(value, np.bool_):
        raise ValueError(f"{name} must be a bool; got {value!r}")


_PARAM_CHECKS: dict[str, Callable[[Any], None]] = {
    "eps": lambda v: _check_scalar("eps", v, positive=False),
    "step_size": lambda v: _check_scalar("step_size", v, positive=True),
    "steps": lambda v: _check_int("steps", v),
    "k": lambda v: _check_int("k", v),
    "step": lambda v: None if v is None else _check_scalar("step", v, positive=True),
    "c": _check_c,
    "clip": _check_clip,
    "loss": loss_fn,
    "norm": _check_norm,
    "history": lambda v: _check_int("history", v),
    "tol": lambda v: _check_scalar("tol", v, positive=False),
    "max_linesearch": lambda v: _check_int("max_linesearch", v),
    "refine_steps": lambda v: _check_int("refine_steps", v, minimum=0),
    "random_start": lambda v: _check_bool("random_start", v),
}


def check_params(**params: Any) -> None:
    for name, value in params.items():
        _PARAM_CHECKS[name](value)


# --------------------------------------------------------------------------------------------------
# Small numerical helpers
# --------------------------------------------------------------------------------------------------


def checked_predict(predict: Predictor, z: Array) -> Array:
    out = predict(z)
    if jnp.shape(out) != (z.shape[0],):
        raise ValueError(
            f"predict must map x of shape (N, d) to outputs of shape (N,); got {jnp.shape(out)} "
            f"for N={z.shape[0]}"
        )
    return out


def loss_grad(predict: Predictor, x: Array, t: Array, lfn: Callable[[Array], Array]) -> Array:
    """grad_x sum_n l(t_n f(x_n)): per-row gradients (N, d), one backward pass (predict is pointwise)."""
    return jax.grad(lambda z: jnp.sum(lfn(t * checked_predict(predict, z))))(x)


def row_norm(v: Array) -> Array:
    """Row L2 norms (N,), overflow/underflow safe (rows are rescaled by their max |entry| first)."""
    scale = jnp.max(jnp.abs(v), axis=-1, keepdims=True)
    safe = jnp.where(scale > 0, scale, 1)
    return (safe * jnp.sqrt(jnp.sum((v / safe) ** 2, axis=-1, keepdims=True)))[..., 0]


def normalize_l2(v: Array) -> Array:
    """Rows of ``v`` scaled to unit L2 norm; an all-zero row stays zero (no arbitrary direction)."""
    scale = jnp.max(jnp.abs(v), axis=-1, keepdims=True)
    u = v / jnp.where(scale > 0, scale, 1)  # entries in [-1, 1], max |entry| = 1 unless the row is 0
    n = jnp.sqrt(jnp.sum(u**2, axis=-1, keepdims=True))
    return jnp.where(n > 0, u / jnp.where(n > 0, n, 1), 0)


def clip_box(clip: Any, x: Array) -> tuple[Array, Array] | None:
    if clip is None:
        return None
    lo, hi = clip
    return (
        jnp.broadcast_to(jnp.asarray(lo, x.dtype), x.shape),
        jnp.broadcast_to(jnp.asarray(hi, x.dtype), x.shape),
    )


def fit_box(x: Array, eta: Array, box: tuple[Array, Array] | None) -> Array:
    """Nudge ``eta`` by ulps (toward the box) until ``x + eta`` lies in ``[lo, hi]`` in floating point.

    ``eta`` comes from ``clip(x + eta, lo, hi) - x``, whose rounding can put ``x + eta`` an ulp outside
    (seen for ``x`` outside the box; a cheap safeguard otherwise).  One or two nudges suffice in practice;
    the loop is capped at 16 and exits at once when nothing is outside.
    """
    if box is None:
        return eta
    lo, hi = box
    down = jnp.asarray(-jnp.inf, eta.dtype)
    up = jnp.asarray(jnp.inf, eta.dtype)

    def outside(e: Array) -> Array:
        z = x + e
        return (z > hi) | (z < lo)

    def cond(state: tuple[int, Array]) -> Array:
        i, e = state
        return (i < 16) & jnp.any(outside(e))

    def body(state: tuple[int, Array]) -> tuple[int, Array]:
        i, e = state
        z = x + e
        e = jnp.where(z > hi, jnp.nextafter(e, down), e)
        e = jnp.where(z < lo, jnp.nextafter(e, up), e)
        return i + 1, e

    _, eta = lax.while_loop(cond, body, (0, eta))
    return eta
