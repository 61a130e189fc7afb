"""Targeted adversarial attacks on scalar-output predictors.

Contract
--------
* A *predictor* is any function ``predict(x: (N, d)) -> (N,)`` that is pointwise (output ``n`` depends
  only on row ``n``) and differentiable in ``x`` with jax: a finite net ``lambda x: apply(params, x)`` or
  an infinite-width kernel predictor.
* ``targets`` are floats of shape ``(N,)`` in {-1, +1}.
* Every attack is **targeted**: it decreases the margin loss ``l(t * f(x + eta))`` (``l`` from
  :func:`ntk_adv.losses.margin_loss`), i.e. it pushes ``f`` toward the sign ``t``.  With the default
  ``identity`` loss ``l(u) = -u`` this raises ``t * f(x + eta)``.  An untargeted attack against the true
  labels ``y`` is the targeted attack with ``t = -y``.
* Every attack returns the **perturbation** ``eta`` of shape ``(N, d)``, not ``x + eta``, so that the
  perturbation-learning protocol can train on ``eta`` alone (scenario (a)) or on ``x + eta`` (scenario (b)).

Attacks
-------
one_step_l2 / fgm   eta = -eps * g / ||g||_2, g = grad_x l(t f(x))   (Kumano et al. 2024, step 3)
fgsm                eta = -eps * sign(g)                                (Goodfellow et al. 2015)
pgd                 projected gradient descent in an L2 or L-inf ball, optional box on x + eta
l0_attack           greedy few-coordinate attack, at most k coordinates changed per point
lbfgs_attack        box-constrained L-BFGS, min c ||eta||^2 + l(t f(x + eta))   (Szegedy et al. 2014)
minimal_lbfgs_distortion   line search on c for the smallest successful L-BFGS perturbation

All functions are pure and traceable: wrap them in ``jax.jit`` with the predictor closed over, e.g.
``jax.jit(lambda x, t: pgd(predict, x, t, eps=0.5, step_size=0.1, steps=20))``.  Argument checks run
eagerly in Python on shapes and static parameters only (values of ``targets`` are checked when concrete).
Iterations use ``lax.fori_loop`` / ``lax.while_loop`` / ``lax.scan``, never a Python loop.

Boxes (``clip=(lo, hi)``, scalars or arrays broadcastable to ``(N, d)``) constrain ``x + eta``; the clean
``x`` is assumed to lie in the box.  The returned ``eta`` is nudged by at most a few ulps so that
``x + eta``, evaluated in the dtype of ``x``, lies in ``[lo, hi]`` exactly.
"""

from __future__ import annotations

import inspect
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

ATTACKS = ("one_step_l2", "fgsm", "fgm", "pgd_l2", "pgd_linf", "l0", "lbfgs")
NORMS = ("l2", "linf")

__all__ = [
    "ATTACKS",
    "NORMS",
    "fgm",
    "fgsm",
    "input_gradients",
    "l0_attack",
    "lbfgs_attack",
    "make_attack",
    "minimal_lbfgs_distortion",
    "one_step_l2",
    "pgd",
]


# --------------------------------------------------------------------------------------------------
# Argument checks (eager, Python level: shapes and static parameters only)
# --------------------------------------------------------------------------------------------------


def _is_tracer(v: Any) -> bool:
    return isinstance(v, jax.core.Tracer)


def _check_inputs(x: Any, targets: Any) -> tuple[Array, Array]:
    """Validate ``x`` (N, d) and ``targets`` (N,) in {-1, +1}; return them as arrays of x's float dtype."""
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-D array of shape (N, d); got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    validate.finite("x", x)
    t = jnp.asarray(targets)
    if t.shape != (x.shape[0],):
        raise ValueError(
            f"targets must have shape (N,) = ({x.shape[0]},) to match x of shape {tuple(x.shape)}; "
            f"got shape {tuple(t.shape)}"
        )
    if not _is_tracer(t):
        tv = np.asarray(t)
        if not np.all((tv == 1) | (tv == -1)):
            raise ValueError("targets must contain only -1 and +1")
    return x, t.astype(x.dtype)


def _check_scalar(name: str, value: Any, *, positive: bool) -> None:
    """A finite real scalar, > 0 (``positive``) or >= 0; traced scalars are accepted unchecked."""
    if _is_tracer(value):
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
    if _is_tracer(c):
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
    if not (_is_tracer(lo) or _is_tracer(hi)):
        lo_v, hi_v = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        if np.any(np.isnan(lo_v)) or np.any(np.isnan(hi_v)) or np.any(lo_v >= hi_v):
            raise ValueError(f"clip must satisfy lo < hi; got {clip!r}")


def _loss_fn(loss: Any) -> Callable[[Array], Array]:
    if loss not in MARGIN_LOSSES:
        raise ValueError(
            f"attacks need a margin loss; got loss {loss!r}, expected one of {', '.join(MARGIN_LOSSES)}"
        )
    return margin_loss(loss)


def _check_norm(norm: Any) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")


def _check_l0_mode(step: Any, clip: Any) -> None:
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
    "loss": _loss_fn,
    "norm": _check_norm,
    "history": lambda v: _check_int("history", v),
    "tol": lambda v: _check_scalar("tol", v, positive=False),
    "max_linesearch": lambda v: _check_int("max_linesearch", v),
    "refine_steps": lambda v: _check_int("refine_steps", v, minimum=0),
    "random_start": lambda v: _check_bool("random_start", v),
}


def _check_params(**params: Any) -> None:
    for name, value in params.items():
        _PARAM_CHECKS[name](value)


# --------------------------------------------------------------------------------------------------
# Small numerical helpers
# --------------------------------------------------------------------------------------------------


def _predict(predict: Predictor, z: Array) -> Array:
    out = predict(z)
    if jnp.shape(out) != (z.shape[0],):
        raise ValueError(
            f"predict must map x of shape (N, d) to outputs of shape (N,); got {jnp.shape(out)} for N={z.shape[0]}"
        )
    return out


def _grad(predict: Predictor, x: Array, t: Array, lfn: Callable[[Array], Array]) -> Array:
    """grad_x sum_n l(t_n f(x_n)): per-row gradients (N, d), one backward pass (predict is pointwise)."""
    return jax.grad(lambda z: jnp.sum(lfn(t * _predict(predict, z))))(x)


def _row_norm(v: Array) -> Array:
    """Row L2 norms (N,), overflow/underflow safe (rows are rescaled by their max |entry| first)."""
    scale = jnp.max(jnp.abs(v), axis=-1, keepdims=True)
    safe = jnp.where(scale > 0, scale, 1)
    return (safe * jnp.sqrt(jnp.sum((v / safe) ** 2, axis=-1, keepdims=True)))[..., 0]


def _normalize_l2(v: Array) -> Array:
    """Rows of ``v`` scaled to unit L2 norm; an all-zero row stays zero (no arbitrary direction)."""
    scale = jnp.max(jnp.abs(v), axis=-1, keepdims=True)
    u = v / jnp.where(scale > 0, scale, 1)  # entries in [-1, 1], max |entry| = 1 unless the row is 0
    n = jnp.sqrt(jnp.sum(u**2, axis=-1, keepdims=True))
    return jnp.where(n > 0, u / jnp.where(n > 0, n, 1), 0)


def _box(clip: Any, x: Array) -> tuple[Array, Array] | None:
    if clip is None:
        return None
    lo, hi = clip
    return (
        jnp.broadcast_to(jnp.asarray(lo, x.dtype), x.shape),
        jnp.broadcast_to(jnp.asarray(hi, x.dtype), x.shape),
    )


def _fit_box(x: Array, eta: Array, box: tuple[Array, Array] | None) -> Array:
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


# --------------------------------------------------------------------------------------------------
# Gradients and one-step attacks
# --------------------------------------------------------------------------------------------------


def input_gradients(predict: Predictor, x: Array, targets: Array, loss: str = "identity") -> Array:
    """Per-example input gradients of the targeted loss, ``g_n = grad_x l(t_n f(x_n))``.

    Args:
      predict: pointwise predictor, ``(N, d) -> (N,)``.
      x: inputs ``(N, d)``.
      targets: target signs ``(N,)`` in {-1, +1}.
      loss: margin loss name (``identity``, ``logistic``, ``exponential``).

    Returns:
      ``(N, d)`` gradients, computed with a single backward pass of ``sum_n l(t_n f(x_n))``.
    """
    _check_params(loss=loss)
    x, t = _check_inputs(x, targets)
    return _grad(predict, x, t, _loss_fn(loss))


def one_step_l2(predict: Predictor, x: Array, targets: Array, *, eps: float, loss: str = "identity") -> Array:
    """The papers' attack (protocol step 3): ``eta_n = -eps * g_n / ||g_n||_2``, ``g_n = grad_x l(t_n f(x_n))``.

    Args:
      predict: pointwise predictor ``(N, d) -> (N,)``.
      x: inputs ``(N, d)``.
      targets: target signs ``(N,)`` in {-1, +1}.
      eps: L2 radius (>= 0; may be a traced scalar).
      loss: margin loss name.

    Returns:
      The perturbation ``eta`` ``(N, d)`` (not ``x + eta``), with ``||eta_n||_2 == eps`` to float rounding.
      A row whose gradient is exactly zero gets ``eta_n = 0`` (no direction is invented for it).
      For the margin losses ``l' < 0``, so the direction does not depend on the loss: it is ``t_n grad f``.
    """
    _check_params(eps=eps, loss=loss)
    x, t = _check_inputs(x, targets)
    g = _grad(predict, x, t, _loss_fn(loss))
    return -jnp.asarray(eps, x.dtype) * _normalize_l2(g)


def fgm(predict: Predictor, x: Array, targets: Array, *, eps: float, loss: str = "identity") -> Array:
    """Fast gradient method (L2-normalized gradient step); identical to :func:`one_step_l2`."""
    return one_step_l2(predict, x, targets, eps=eps, loss=loss)


def fgsm(predict: Predictor, x: Array, targets: Array, *, eps: float, loss: str = "identity") -> Array:
    """Fast gradient sign method (Goodfellow et al. 2015), targeted: ``eta = -eps * sign(g)``.

    Returns the perturbation ``(N, d)``; ``||eta_n||_inf == eps`` unless ``g_n == 0`` (coordinates with a
    zero gradient are left unchanged).
    """
    _check_params(eps=eps, loss=loss)
    x, t = _check_inputs(x, targets)
    g = _grad(predict, x, t, _loss_fn(loss))
    return -jnp.asarray(eps, x.dtype) * jnp.sign(g)


# --------------------------------------------------------------------------------------------------
# PGD
# --------------------------------------------------------------------------------------------------


def _project_ball_box(x: Array, eta: Array, eps: Array, norm: str, box: tuple[Array, Array] | None) -> Array:
    """A feasible point of {||eta|| <= eps} ∩ {lo <= x + eta <= hi} (x assumed in the box).

    L-inf: exact Euclidean projection (the intersection is a box).  L2: radial projection onto the ball,
    then coordinate clipping to the box; clipping only shrinks |eta_i| when x is in the box, so the result
    stays in the ball.
    """
    if norm == "linf":
        lo_e, hi_e = -eps, eps
        if box is not None:
            lo_e = jnp.maximum(lo_e, box[0] - x)
            hi_e = jnp.minimum(hi_e, box[1] - x)
        return jnp.clip(eta, lo_e, hi_e)
    n = _row_norm(eta)[:, None]
    eta = eta * jnp.where(n > eps, eps / jnp.where(n > 0, n, 1), 1)
    if box is not None:
        eta = jnp.clip(x + eta, box[0], box[1]) - x
    return eta


def pgd(
    predict: Predictor,
    x: Array,
    targets: Array,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "linf",
    key: Array | None = None,
    clip: tuple[Any, Any] | None = None,
    loss: str = "identity",
) -> Array:
    """Targeted projected gradient descent (Madry et al. 2018) on ``l(t f(x + eta))``.

    Each of the ``steps`` iterations (a ``lax.fori_loop``) takes a normalized descent step of length
    ``step_size`` (``-sign(g)`` for L-inf, ``-g / ||g||_2`` for L2) and projects back onto the norm ball of
    radius ``eps`` and, with ``clip=(lo, hi)``, onto the box ``lo <= x + eta <= hi``.

    Args:
      predict: pointwise predictor ``(N, d) -> (N,)``.
      x: inputs ``(N, d)`` (inside the box when ``clip`` is given).
      targets: target signs ``(N,)`` in {-1, +1}.
      eps: radius (>= 0).  step_size: step length (> 0).  steps: number of iterations (>= 1).
      norm: ``'linf'`` or ``'l2'``.
      key: PRNG key; if given, start from a uniform random point of the ball (else from ``eta = 0``).
      clip: ``None`` or ``(lo, hi)`` box on ``x + eta`` (scalars or arrays broadcastable to ``(N, d)``).
      loss: margin loss name.

    Returns:
      The final perturbation ``eta`` ``(N, d)``: ``||eta_n|| <= eps`` (L-inf exactly, L2 to float rounding)
      and ``x + eta`` inside the box exactly.
    """
    _check_params(eps=eps, step_size=step_size, steps=steps, norm=norm, clip=clip, loss=loss)
    x, t = _check_inputs(x, targets)
    lfn = _loss_fn(loss)
    box = _box(clip, x)
    eps_a = jnp.asarray(eps, x.dtype)
    step_a = jnp.asarray(step_size, x.dtype)
    n, d = x.shape
    if key is None:
        eta0 = jnp.zeros_like(x)
    elif norm == "linf":
        eta0 = jax.random.uniform(key, x.shape, x.dtype, minval=-1.0, maxval=1.0) * eps_a
    else:
        k_dir, k_rad = jax.random.split(key)
        direction = _normalize_l2(jax.random.normal(k_dir, x.shape, x.dtype))
        radius = jax.random.uniform(k_rad, (n, 1), x.dtype) ** (1.0 / d)
        eta0 = eps_a * radius * direction
    eta0 = _project_ball_box(x, eta0, eps_a, norm, box)

    def body(_: int, eta: Array) -> Array:
        g = _grad(predict, x + eta, t, lfn)
        direction = jnp.sign(g) if norm == "linf" else _normalize_l2(g)
        return _project_ball_box(x, eta - step_a * direction, eps_a, norm, box)

    eta = lax.fori_loop(0, steps, body, eta0)
    return _fit_box(x, eta, box)


# --------------------------------------------------------------------------------------------------
# L0 (few-coordinate) attack
# --------------------------------------------------------------------------------------------------


def l0_attack(
    predict: Predictor,
    x: Array,
    targets: Array,
    *,
    k: int,
    step: float | None = None,
    clip: tuple[Any, Any] | None = None,
    loss: str = "identity",
) -> Array:
    """Greedy targeted L0 attack: changes at most ``k`` coordinates of each point.

    ``k`` rounds (a ``lax.fori_loop``); each round recomputes the gradient ``g`` at ``x + eta`` and, among
    the coordinates not yet changed, picks the one with the largest first-order loss decrease
    ``-g_i * delta_i``, where the candidate change ``delta_i`` moves coordinate ``i`` against its gradient:
    to the box bound (``step=None``, requires ``clip``), or by ``step`` (then clipped to the box if any).
    A coordinate is changed once at most; a round whose best decrease is not positive changes nothing.

    Args:
      predict: pointwise predictor ``(N, d) -> (N,)``.
      x: inputs ``(N, d)`` (inside the box when ``clip`` is given).
      targets: target signs ``(N,)`` in {-1, +1}.
      k: maximal number of changed coordinates per point (>= 1; values above d act as d).
      step: size of a coordinate change (> 0), or ``None`` to move to the box bound.
      clip: ``None`` or ``(lo, hi)`` box on ``x + eta``.
      loss: margin loss name.

    Returns:
      The perturbation ``eta`` ``(N, d)`` with at most ``k`` nonzeros per row and ``x + eta`` in the box.
    """
    _check_params(k=k, step=step, clip=clip, loss=loss)
    _check_l0_mode(step, clip)
    x, t = _check_inputs(x, targets)
    lfn = _loss_fn(loss)
    box = _box(clip, x)
    n, d = x.shape
    rows = jnp.arange(n)

    def body(_: int, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        eta, changed = carry
        g = _grad(predict, x + eta, t, lfn)
        if step is None:
            new = jnp.where(g > 0, box[0], box[1])
        else:
            new = x - jnp.asarray(step, x.dtype) * jnp.sign(g)
            if box is not None:
                new = jnp.clip(new, box[0], box[1])
        delta = new - x
        gain = jnp.where(changed, -jnp.inf, -g * delta)
        j = jnp.argmax(gain, axis=1)
        ok = gain[rows, j] > 0
        pick = jax.nn.one_hot(j, d, dtype=jnp.bool_) & ok[:, None]
        return jnp.where(pick, delta, eta), changed | pick

    init = (jnp.zeros_like(x), jnp.zeros(x.shape, jnp.bool_))
    eta, _ = lax.fori_loop(0, min(k, d), body, init)
    return _fit_box(x, eta, box)


# --------------------------------------------------------------------------------------------------
# Box-constrained L-BFGS (Szegedy et al. 2014)
# --------------------------------------------------------------------------------------------------


def _two_loop(q: Array, s_mem: Array, y_mem: Array, rho: Array, gamma: Array, head: Array) -> Array:
    """Batched L-BFGS two-loop recursion: returns ``H q`` per row.

    ``s_mem``, ``y_mem``: ``(M, N, d)`` circular buffers (newest pair at ``head - 1``); ``rho``: ``(M, N)``
    with ``rho = 1 / s.y`` for valid pairs and 0 for empty/invalid ones (those are exact no-ops);
    ``gamma``: ``(N,)`` initial inverse-Hessian scale.
    """
    m = s_mem.shape[0]
    order = (head - 1 - jnp.arange(m)) % m  # newest first

    def first(q: Array, i: Array) -> tuple[Array, Array]:
        a = rho[i] * jnp.sum(s_mem[i] * q, axis=1)
        return q - a[:, None] * y_mem[i], a

    q, alphas = lax.scan(first, q, order)
    r = gamma[:, None] * q

    def second(r: Array, inputs: tuple[Array, Array]) -> tuple[Array, None]:
        i, a = inputs
        b = rho[i] * jnp.sum(y_mem[i] * r, axis=1)
        return r + s_mem[i] * (a - b)[:, None], None

    r, _ = lax.scan(second, r, (order[::-1], alphas[::-1]))
    return r


def _lbfgs_solve(
    predict: Predictor,
    x: Array,
    t: Array,
    lfn: Callable[[Array], Array],
    c: Any,
    box: tuple[Array, Array] | None,
    steps: int,
    history: int,
    tol: float,
    max_linesearch: int,
) -> Array:
    """Per-row projected L-BFGS on ``F_n(eta) = c_n ||eta_n||^2 + l(t_n f(x_n + eta_n))``, box on x + eta.

    The N problems are independent; they are solved together with row-wise inner products, one batched
    forward/backward pass per iteration and per line-search trial.  Method (L-BFGS-B-like, two-metric
    projection): variables at a bound whose gradient points outward are frozen; the L-BFGS direction of
    the remaining ones is searched along the projected path ``P(eta + alpha p)`` with Armijo backtracking
    (alpha = 1, 1/2, ...).  Initial inverse-Hessian scale ``1 / (2 c)`` (the regularizer's), then
    ``s.y / y.y``.  A row stops when its projected-gradient step ``max |P(eta - g) - eta| <= tol``, when a
    line search fails with an empty memory, or after ``steps`` iterations.
    """
    n, d = x.shape
    dtype = x.dtype
    c = jnp.broadcast_to(jnp.asarray(c, dtype), (n,))
    gamma0 = 1.0 / (2.0 * c)
    tiny = jnp.finfo(dtype).eps
    armijo = 1e-4

    def objective(eta: Array) -> Array:
        return c * jnp.sum(eta**2, axis=1) + lfn(t * _predict(predict, x + eta))

    def value_and_grad(eta: Array) -> tuple[Array, Array]:
        val, vjp = jax.vjp(objective, eta)
        (g,) = vjp(jnp.ones_like(val))
        return val, g

    def project(eta: Array) -> Array:
        if box is None:
            return eta
        return jnp.clip(x + eta, box[0], box[1]) - x

    def frozen(eta: Array, g: Array) -> Array:
        if box is None:
            return jnp.zeros(x.shape, jnp.bool_)
        z = x + eta
        slack = 4 * tiny * (1 + jnp.abs(z))
        return ((z - box[0] <= slack) & (g > 0)) | ((box[1] - z <= slack) & (g < 0))

    def converged(eta: Array, g: Array) -> Array:
        return jnp.max(jnp.abs(project(eta - g) - eta), axis=1) <= tol

    eta0 = project(jnp.zeros_like(x))
    f0, g0 = value_and_grad(eta0)
    state0 = {
        "it": jnp.asarray(0),
        "eta": eta0,
        "f": f0,
        "g": g0,
        "s_mem": jnp.zeros((history, n, d), dtype),
        "y_mem": jnp.zeros((history, n, d), dtype),
        "rho": jnp.zeros((history, n), dtype),
        "gamma": gamma0,
        "head": jnp.asarray(0),
        "fresh": jnp.ones((n,), jnp.bool_),
        "done": converged(eta0, g0),
    }

    def cond(st: dict) -> Array:
        return (st["it"] < steps) & ~jnp.all(st["done"])

    def body(st: dict) -> dict:
        eta, f, g, done = st["eta"], st["f"], st["g"], st["done"]
        free = ~frozen(eta, g)
        g_free = jnp.where(free, g, 0)
        p = -jnp.where(
            free, _two_loop(g_free, st["s_mem"], st["y_mem"], st["rho"], st["gamma"], st["head"]), 0
        )
        # Safeguard: fall back to a scaled projected-gradient step if rounding broke descent (H is PD).
        descent = jnp.sum(g * p, axis=1) < 0
        p = jnp.where(descent[:, None], p, -gamma0[:, None] * g_free)
        p = jnp.where(done[:, None], 0, p)

        def ls_cond(ls: tuple[Array, Array, Array, Array]) -> Array:
            j, _, _, acc = ls
            return (j < max_linesearch) & ~jnp.all(acc)

        def ls_body(ls: tuple[Array, Array, Array, Array]) -> tuple[Array, Array, Array, Array]:
            # Armijo backtracking on the projected path, alpha = 1, 1/2, 1/4, ... for rows not yet accepted.
            j, alpha, eta_new, acc = ls
            alpha = jnp.where(acc, alpha, 0.5 * alpha)
            eta_t = project(eta + alpha[:, None] * p)
            f_t = objective(eta_t)
            ok = jnp.isfinite(f_t) & (f_t <= f + armijo * jnp.sum(g * (eta_t - eta), axis=1))
            newly = ~acc & ok
            return j + 1, alpha, jnp.where(newly[:, None], eta_t, eta_new), acc | ok

        ls0 = (0, jnp.full((n,), 2.0, dtype), eta, done)
        _, _, eta_new, acc = lax.while_loop(ls_cond, ls_body, ls0)
        failed = ~acc & ~done
        eta_new = jnp.where(failed[:, None], eta, eta_new)
        f_new, g_new = value_and_grad(eta_new)

        s = eta_new - eta
        y = g_new - g
        sy = jnp.sum(s * y, axis=1)
        ss = jnp.sum(s * s, axis=1)
        yy = jnp.sum(y * y, axis=1)
        valid = ~done & ~failed & (ss > 0) & (sy > tiny * jnp.sqrt(ss * yy))
        head = st["head"]
        rho = st["rho"].at[head].set(jnp.where(valid, 1.0 / jnp.where(valid, sy, 1), 0))
        rho = jnp.where(failed[None, :], 0, rho)  # forget the memory of rows whose search failed
        gamma = jnp.where(valid, sy / jnp.where(valid, yy, 1), st["gamma"])
        gamma = jnp.where(failed, gamma0, gamma)
        stalled = failed & st["fresh"]
        return {
            "it": st["it"] + 1,
            "eta": eta_new,
            "f": f_new,
            "g": g_new,
            "s_mem": st["s_mem"].at[head].set(s),
            "y_mem": st["y_mem"].at[head].set(y),
            "rho": rho,
            "gamma": gamma,
            "head": (head + 1) % history,
            "fresh": failed | (st["fresh"] & ~valid),
            "done": done | stalled | converged(eta_new, g_new),
        }

    final = lax.while_loop(cond, body, state0)
    return _fit_box(x, final["eta"], box)


def lbfgs_attack(
    predict: Predictor,
    x: Array,
    targets: Array,
    *,
    c: Any = 1.0,
    clip: tuple[Any, Any] | None = None,
    steps: int = 100,
    history: int = 10,
    loss: str = "logistic",
    tol: float = 1e-6,
    max_linesearch: int = 30,
) -> Array:
    """Box-constrained L-BFGS attack (Szegedy et al. 2014), targeted.

    Solves, independently for each point, ``min_eta c ||eta||_2^2 + l(t f(x + eta))`` subject to
    ``lo <= x + eta <= hi`` with a projected L-BFGS method (see :func:`_lbfgs_solve`), starting at
    ``eta = 0``.  The default loss is ``logistic``, the binary analogue of Szegedy et al.'s cross-entropy;
    with ``identity`` the loss is unbounded below, so without a box the minimizer lies at distance
    ~ ``||grad f|| / (2 c)``.

    Args:
      predict: pointwise predictor ``(N, d) -> (N,)``.
      x: inputs ``(N, d)`` (inside the box when ``clip`` is given).
      targets: target signs ``(N,)`` in {-1, +1}.
      c: positive trade-off, scalar or per-point ``(N,)``.
      clip: ``None`` or ``(lo, hi)`` box on ``x + eta``.
      steps: maximal number of L-BFGS iterations.  history: number of stored curvature pairs.
      loss: margin loss name.  tol: projected-gradient stopping tolerance (max-norm).
      max_linesearch: maximal backtracking trials per iteration.

    Returns:
      The perturbation ``eta`` ``(N, d)`` (the minimizer found); ``x + eta`` lies in the box exactly.
      Success (``sign f(x + eta) == t``) is not guaranteed; see :func:`minimal_lbfgs_distortion`.
    """
    _check_params(
        c=c, clip=clip, steps=steps, history=history, loss=loss, tol=tol, max_linesearch=max_linesearch
    )
    x, t = _check_inputs(x, targets)
    if not _is_tracer(c) and np.ndim(c) == 1 and np.shape(c) != (x.shape[0],):
        raise ValueError(f"c must be a scalar or have shape (N,) = ({x.shape[0]},); got shape {np.shape(c)}")
    return _lbfgs_solve(predict, x, t, _loss_fn(loss), c, _box(clip, x), steps, history, tol, max_linesearch)


def minimal_lbfgs_distortion(
    predict: Predictor,
    x: Array,
    targets: Array,
    *,
    c_grid: Any,
    clip: tuple[Any, Any] | None = None,
    refine_steps: int = 10,
    steps: int = 100,
    history: int = 10,
    loss: str = "logistic",
    tol: float = 1e-6,
    max_linesearch: int = 30,
) -> tuple[Array, Array]:
    """Smallest successful box-constrained L-BFGS perturbation per point, by a line search on ``c``.

    For every ``c`` in ``c_grid`` run :func:`lbfgs_attack`; a run succeeds for point n when
    ``sign f(x_n + eta_n) == t_n`` (i.e. ``t_n f > 0``).  Keep, per point, the successful ``eta`` of
    smallest L2 norm, then refine by ``refine_steps`` bisection steps in ``log c`` (per point) between
    that ``c`` (success) and the next larger grid value that failed (the distortion of the minimizer
    shrinks as ``c`` grows); points without such a bracket are not refined.  Grid and bisection run in
    one ``lax.fori_loop``.  Points that already satisfy ``t f(x) > 0`` get ``eta = 0``.
    Cost: ``len(c_grid) + refine_steps`` L-BFGS solves.

    Args:
      predict, x, targets: as in :func:`lbfgs_attack` (``x`` ``(N, d)``, ``targets`` ``(N,)``).
      c_grid: 1-D sequence of positive trade-offs (static), any order.
      clip, steps, history, loss, tol, max_linesearch: passed to :func:`lbfgs_attack`.
      refine_steps: number of bisection steps (0 disables the refinement).

    Returns:
      ``(eta, success)``: ``eta`` ``(N, d)`` the smallest successful perturbation found (zeros where none
      succeeded) and ``success`` ``(N,)`` bool.
    """
    _check_params(
        clip=clip,
        refine_steps=refine_steps,
        steps=steps,
        history=history,
        loss=loss,
        tol=tol,
        max_linesearch=max_linesearch,
    )
    grid = np.asarray(c_grid, dtype=float)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or not np.all(grid > 0):
        raise ValueError(
            f"c_grid must be a non-empty 1-D sequence of positive finite numbers; got {c_grid!r}"
        )
    x, t = _check_inputs(x, targets)
    lfn = _loss_fn(loss)
    box = _box(clip, x)
    cs = jnp.asarray(np.unique(grid), x.dtype)  # ascending
    n = x.shape[0]

    def run(c: Array) -> tuple[Array, Array, Array]:
        eta = _lbfgs_solve(predict, x, t, lfn, c, box, steps, history, tol, max_linesearch)
        success = t * _predict(predict, x + eta) > 0
        return eta, success, _row_norm(eta)

    # One loop over the grid (descending c: distortion grows as c shrinks) followed by the bisection
    # steps, so that the solver is traced once.  c_lo: c of the best success; c_hi: the smallest failing
    # c above it (inf if none); last_fail: the smallest failing grid c seen so far.
    n_grid = cs.shape[0]
    cs_desc = cs[::-1]
    inf = jnp.full((n,), jnp.inf, x.dtype)

    def body(i: Array, carry: tuple[Array, ...]) -> tuple[Array, ...]:
        best_eta, best_norm, c_lo, c_hi, last_fail = carry
        in_grid = i < n_grid
        bracket = jnp.isfinite(best_norm) & jnp.isfinite(c_hi)
        c_grid_i = jnp.broadcast_to(cs_desc[jnp.minimum(i, n_grid - 1)], (n,))
        c_mid = jnp.where(bracket, jnp.sqrt(c_lo * c_hi), cs_desc[0])  # unbracketed rows: any valid c
        c = jnp.where(in_grid, c_grid_i, c_mid)
        eta, success, norm = run(c)
        better = success & (norm < best_norm) & (in_grid | bracket)
        new_eta = jnp.where(better[:, None], eta, best_eta)
        new_norm = jnp.where(better, norm, best_norm)
        grid_lo = jnp.where(better, c, c_lo)
        grid_hi = jnp.where(better, last_fail, c_hi)
        refine_lo = jnp.where(bracket & success, c, c_lo)
        refine_hi = jnp.where(bracket & ~success, c, c_hi)
        return (
            new_eta,
            new_norm,
            jnp.where(in_grid, grid_lo, refine_lo),
            jnp.where(in_grid, grid_hi, refine_hi),
            jnp.where(in_grid & ~success, c, last_fail),
        )

    init = (jnp.zeros_like(x), inf, inf, inf, inf)
    best_eta, best_norm, _, _, _ = lax.fori_loop(0, n_grid + refine_steps, body, init)
    found = jnp.isfinite(best_norm)
    already = t * _predict(predict, x) > 0
    eta = jnp.where((found & ~already)[:, None], best_eta, 0)
    return eta, found | already


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, tuple[Callable[..., Array], dict[str, Any]]] = {
    "one_step_l2": (one_step_l2, {}),
    "fgsm": (fgsm, {}),
    "fgm": (fgm, {}),
    "pgd_l2": (pgd, {"norm": "l2"}),
    "pgd_linf": (pgd, {"norm": "linf"}),
    "l0": (l0_attack, {}),
    "lbfgs": (lbfgs_attack, {}),
}


def make_attack(name: str, **params: Any) -> Callable[..., Array]:
    """Build ``attack(predict, x, targets, *, key=None) -> eta`` (N, d) from a registry name.

    ``name`` is one of :data:`ATTACKS`; ``params`` are the keyword parameters of the underlying function
    (e.g. ``eps``, ``loss`` for ``one_step_l2``/``fgsm``/``fgm``; ``eps``, ``step_size``, ``steps``,
    ``clip``, ``loss`` for ``pgd_l2``/``pgd_linf``, plus ``random_start=False``: when true, the returned
    attack needs ``key`` for a random start; ``k``, ``step``, ``clip``, ``loss`` for ``l0``; ``c``,
    ``clip``, ``steps``, ``history``, ``loss``, ``tol``, ``max_linesearch`` for ``lbfgs``).  Parameters are
    validated here, eagerly; unknown names, unknown or missing parameters and bad values raise ValueError.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown attack {name!r}; expected one of {', '.join(ATTACKS)}")
    fn, fixed = _REGISTRY[name]
    sig = inspect.signature(fn)
    keyword = {p.name: p for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    allowed = set(keyword) - set(fixed) - {"key"}
    if fn is pgd:
        allowed.add("random_start")
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for attack {name!r}; expected some of {', '.join(sorted(allowed))}"
        )
    missing = sorted(
        k for k, p in keyword.items() if p.default is inspect.Parameter.empty and k not in params
    )
    if missing:
        raise ValueError(f"attack {name!r} needs parameter(s) {', '.join(missing)}")
    _check_params(**params)
    if fn is l0_attack:
        _check_l0_mode(params.get("step"), params.get("clip"))
    random_start = bool(params.pop("random_start", False))
    kwargs = {**params, **fixed}

    def attack(predict: Predictor, x: Array, targets: Array, *, key: Array | None = None) -> Array:
        if random_start:
            if key is None:
                raise ValueError(f"attack {name!r} was made with random_start=True and needs a key")
            return fn(predict, x, targets, key=key, **kwargs)
        return fn(predict, x, targets, **kwargs)

    attack.__name__ = f"attack_{name}"
    attack.__doc__ = f"Targeted {name!r} attack with {kwargs}; returns the perturbation eta (N, d)."
    return attack
