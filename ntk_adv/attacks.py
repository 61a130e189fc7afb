"""Adversarial attacks on scalar-output predictors, untargeted (``labels=``) or targeted (``targets=``).

Contract
--------
* A *predictor* is any function ``predict(x: (N, d)) -> (N,)`` that is pointwise (output ``n`` depends
  only on row ``n``) and differentiable in ``x`` with jax: a finite net ``lambda x: apply(params, x)`` or
  an infinite-width kernel predictor.
* Every attack takes, keyword-only, **exactly one** of ``labels=y`` (untargeted, the torchattacks /
  foolbox convention: move ``f`` away from the true labels) or ``targets=t`` (targeted: move ``f`` toward
  them), floats of shape ``(N,)`` in {-1, +1}.  Neither or both is a ValueError; there is no positional
  label argument whose sign would decide the direction.
* Internally every attack decreases the margin loss ``l(t * f(x + eta))`` (``l`` from
  :func:`ntk_adv.losses.margin_loss`), i.e. pushes ``f`` toward the sign ``t``; ``labels=y`` is exactly
  ``targets=-y`` (same numbers).  With the default ``identity`` loss ``l(u) = -u`` this raises
  ``t * f(x + eta)``.
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
``jax.jit(lambda x, y: pgd(predict, x, labels=y, eps=0.5, step_size=0.1, steps=20))``.  Argument checks
run eagerly in Python on shapes and static parameters only (values of ``labels`` / ``targets`` are checked
when concrete).
Iterations use ``lax.fori_loop`` / ``lax.while_loop`` / ``lax.scan``, never a Python loop.

Boxes (``clip=(lo, hi)``, scalars or arrays broadcastable to ``(N, d)``) constrain ``x + eta``; the clean
``x`` is assumed to lie in the box.  The returned ``eta`` is nudged by at most a few ulps so that
``x + eta``, evaluated in the dtype of ``x``, lies in ``[lo, hi]`` exactly.

Modules: the argument checks and the small shared helpers (row norms, boxes) are in
:mod:`ntk_adv.attack_checks`, the batched projected L-BFGS solver in :mod:`ntk_adv.lbfgs`; every attack and
every public name (``ATTACKS``, ``NORMS``, the attack functions, ``make_attack``) is importable from here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ntk_adv import lbfgs
from ntk_adv.attack_checks import (  # argument checks and shared helpers (shapes in their docstrings)
    NORMS,
    Array,
    Predictor,
    check_direction,
    check_l0_mode,
    check_params,
    checked_predict,
    clip_box,
    fit_box,
    is_tracer,
    loss_fn,
    loss_grad,
    normalize_l2,
    row_norm,
)

AttackName = Literal["one_step_l2", "fgsm", "fgm", "pgd_l2", "pgd_linf", "l0", "lbfgs"]  # make_attack names
ATTACKS: tuple[str, ...] = get_args(AttackName)

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
# Gradients and one-step attacks
# --------------------------------------------------------------------------------------------------


def input_gradients(
    predict: Predictor,
    x: Array,
    *,
    labels: Array | None = None,
    targets: Array | None = None,
    loss: str = "identity",
) -> Array:
    """Per-example input gradients of a margin loss, ``g_n = grad_x l(s_n f(x_n))``.

    With ``targets=t`` (``s = t``) this is the gradient of the loss a targeted attack *descends*; with
    ``labels=y`` (``s = y``) the gradient of the true-label loss an untargeted attack *ascends*.  Exactly one
    of the two is given.

    Args:
      predict: pointwise predictor, ``(N, d) -> (N,)``.
      x: inputs ``(N, d)``.
      labels / targets: exactly one, ``(N,)`` in {-1, +1}: true labels or target signs.
      loss: margin loss name (``identity``, ``logistic``, ``exponential``).

    Returns:
      ``(N, d)`` gradients, computed with a single backward pass of ``sum_n l(s_n f(x_n))``.
    """
    check_params(loss=loss)
    x, t = check_direction(x, labels, targets)
    s = t if labels is None else -t
    return loss_grad(predict, x, s, loss_fn(loss))


def one_step_l2(
    predict: Predictor,
    x: Array,
    *,
    labels: Array | None = None,
    targets: Array | None = None,
    eps: float,
    loss: str = "identity",
) -> Array:
    """The papers' attack (protocol step 3): ``eta_n = -eps * g_n / ||g_n||_2``, ``g_n = grad_x l(t_n
    f(x_n))``.

    Args:
      predict: pointwise predictor ``(N, d) -> (N,)``.
      x: inputs ``(N, d)``.
      labels / targets: exactly one, ``(N,)`` in {-1, +1}: true labels (untargeted) or target signs.
      eps: L2 radius (>= 0; may be a traced scalar).
      loss: margin loss name.

    Returns:
      The perturbation ``eta`` ``(N, d)`` (not ``x + eta``), with ``||eta_n||_2 == eps`` to float rounding.
      A row whose gradient is exactly zero gets ``eta_n = 0`` (no direction is invented for it).
      For the margin losses ``l' < 0``, so the direction does not depend on the loss: it is ``t_n grad f``.
    """
    check_params(eps=eps, loss=loss)
    x, t = check_direction(x, labels, targets)
    g = loss_grad(predict, x, t, loss_fn(loss))
    return -jnp.asarray(eps, x.dtype) * normalize_l2(g)


def fgm(
    predict: Predictor,
    x: Array,
    *,
    labels: Array | None = None,
    targets: Array | None = None,
    eps: float,
    loss: str = "identity",
) -> Array:
    """Fast gradient method (L2-normalized gradient step); identical to :func:`one_step_l2`."""
    return one_step_l2(predict, x, labels=labels, targets=targets, eps=eps, loss=loss)


def fgsm(
    predict: Predictor,
    x: Array,
    *,
    labels: Array | None = None,
    targets: Array | None = None,
    eps: float,
    loss: str = "identity",
) -> Array:
    """Fast gradient sign method (Goodfellow et al. 2015): ``eta = -eps * sign(g)``, ``g = grad_x l(t f(x))``
    with ``t = targets`` or ``t = -labels`` (``labels=y`` is the usual untargeted FGSM, ``eps * sign(grad_x
    l(y f))`` for the margin losses).

    Returns the perturbation ``(N, d)``; ``||eta_n||_inf == eps`` unless ``g_n == 0`` (coordinates with a
    zero gradient are left unchanged).
    """
    check_params(eps=eps, loss=loss)
    x, t = check_direction(x, labels, targets)
    g = loss_grad(predict, x, t, loss_fn(loss))
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
    n = row_norm(eta)[:, None]
    eta = eta * jnp.where(n > eps, eps / jnp.where(n > 0, n, 1), 1)
    if box is not None:
        eta = jnp.clip(x + eta, box[0], box[1]) - x
    return eta


def pgd(
    predict: Predictor,
    x: Array,
    *,
    labels: Array | None = None,
    targets: Array | None = None,
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
      labels / targets: exactly one, ``(N,)`` in {-1, +1}: true labels (untargeted) or target signs.
      eps: radius (>= 0).  step_size: step length (> 0).  steps: number of iterations (>= 1).
      norm: ``'linf'`` or ``'l2'``.
      key: PRNG key; if given, start from a uniform random point of the ball (else from ``eta = 0``).
      clip: ``None`` or ``(lo, hi)`` box on ``x + eta`` (scalars or arrays broadcastable to ``(N, d)``).
      loss: margin loss name.

    Returns:
      The final perturbation ``eta`` ``(N, d)``: ``||eta_n|| <= eps`` (L-inf exactly, L2 to float rounding)
      and ``x + eta`` inside the box exactly.
    """
    check_params(eps=eps, step_size=step_size, steps=steps, norm=norm, clip=clip, loss=loss)
    x, t = check_direction(x, labels, targets)
    lfn = loss_fn(loss)
    box = clip_box(clip, x)
    eps_a = jnp.asarray(eps, x.dtype)
    step_a = jnp.asarray(step_size, x.dtype)
    n, d = x.shape
    if key is None:
        eta0 = jnp.zeros_like(x)
    elif norm == "linf":
        eta0 = jax.random.uniform(key, x.shape, x.dtype, minval=-1.0, maxval=1.0) * eps_a
    else:
        k_dir, k_rad = jax.random.split(key)
        direction = normalize_l2(jax.random.normal(k_dir, x.shape, x.dtype))
        radius = jax.random.uniform(k_rad, (n, 1), x.dtype) ** (1.0 / d)
        eta0 = eps_a * radius * direction
    eta0 = _project_ball_box(x, eta0, eps_a, norm, box)

    def body(_: int, eta: Array) -> Array:
        g = loss_grad(predict, x + eta, t, lfn)
        direction = jnp.sign(g) if norm == "linf" else normalize_l2(g)
        return _project_ball_box(x, eta - step_a * direction, eps_a, norm, box)

    eta = lax.fori_loop(0, steps, body, eta0)
    return fit_box(x, eta, box)


# --------------------------------------------------------------------------------------------------
# L0 (few-coordinate) attack
# --------------------------------------------------------------------------------------------------


def l0_attack(
    predict: Predictor,
    x: Array,
    *,
    labels: Array | None = None,
    targets: Array | None = None,
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
      labels / targets: exactly one, ``(N,)`` in {-1, +1}: true labels (untargeted) or target signs.
      k: maximal number of changed coordinates per point (>= 1; values above d act as d).
      step: size of a coordinate change (> 0), or ``None`` to move to the box bound.
      clip: ``None`` or ``(lo, hi)`` box on ``x + eta``.
      loss: margin loss name.

    Returns:
      The perturbation ``eta`` ``(N, d)`` with at most ``k`` nonzeros per row and ``x + eta`` in the box.
    """
    check_params(k=k, step=step, clip=clip, loss=loss)
    check_l0_mode(step, clip)
    x, t = check_direction(x, labels, targets)
    lfn = loss_fn(loss)
    box = clip_box(clip, x)
    n, d = x.shape
    rows = jnp.arange(n)

    def body(_: int, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        eta, changed = carry
        g = loss_grad(predict, x + eta, t, lfn)
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
    return fit_box(x, eta, box)


# --------------------------------------------------------------------------------------------------
# Box-constrained L-BFGS (Szegedy et al. 2014); the solver is ntk_adv.lbfgs.solve
# --------------------------------------------------------------------------------------------------


def lbfgs_attack(
    predict: Predictor,
    x: Array,
    *,
    labels: Array | None = None,
    targets: Array | None = None,
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
    ``lo <= x + eta <= hi`` with a projected L-BFGS method (see :func:`ntk_adv.lbfgs.solve`), starting at
    ``eta = 0``.  The default loss is ``logistic``, the binary analogue of Szegedy et al.'s cross-entropy;
    with ``identity`` the loss is unbounded below, so without a box the minimizer lies at distance
    ~ ``||grad f|| / (2 c)``.

    Args:
      predict: pointwise predictor ``(N, d) -> (N,)``.
      x: inputs ``(N, d)`` (inside the box when ``clip`` is given).
      labels / targets: exactly one, ``(N,)`` in {-1, +1}: true labels (untargeted) or target signs.
      c: positive trade-off, scalar or per-point ``(N,)``.
      clip: ``None`` or ``(lo, hi)`` box on ``x + eta``.
      steps: maximal number of L-BFGS iterations.  history: number of stored curvature pairs.
      loss: margin loss name.  tol: projected-gradient stopping tolerance (max-norm).
      max_linesearch: maximal backtracking trials per iteration.

    Returns:
      The perturbation ``eta`` ``(N, d)`` (the minimizer found); ``x + eta`` lies in the box exactly.
      Success (``sign f(x + eta) == t``) is not guaranteed; see :func:`minimal_lbfgs_distortion`.
    """
    check_params(
        c=c, clip=clip, steps=steps, history=history, loss=loss, tol=tol, max_linesearch=max_linesearch
    )
    x, t = check_direction(x, labels, targets)
    if not is_tracer(c) and np.ndim(c) == 1 and np.shape(c) != (x.shape[0],):
        raise ValueError(f"c must be a scalar or have shape (N,) = ({x.shape[0]},); got shape {np.shape(c)}")
    return lbfgs.solve(
        predict, x, t, loss_fn(loss), c, clip_box(clip, x), steps, history, tol, max_linesearch
    )


def minimal_lbfgs_distortion(
    predict: Predictor,
    x: Array,
    *,
    labels: Array | None = None,
    targets: Array | None = None,
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
    ``sign f(x_n + eta_n) == t_n`` (i.e. ``t_n f > 0``; ``t = targets``, or ``t = -labels``: with ``labels=``
    success is a misclassification).  Keep, per point, the successful ``eta`` of
    smallest L2 norm, then refine by ``refine_steps`` bisection steps in ``log c`` (per point) between
    that ``c`` (success) and the next larger grid value that failed (the distortion of the minimizer
    shrinks as ``c`` grows); points without such a bracket are not refined.  Grid and bisection run in
    one ``lax.fori_loop``.  Points that already satisfy ``t f(x) > 0`` get ``eta = 0``.
    Cost: ``len(c_grid) + refine_steps`` L-BFGS solves.

    Args:
      predict, x, labels / targets: as in :func:`lbfgs_attack` (``x`` ``(N, d)``, ``targets`` ``(N,)``).
      c_grid: 1-D sequence of positive trade-offs (static), any order.
      clip, steps, history, loss, tol, max_linesearch: passed to :func:`lbfgs_attack`.
      refine_steps: number of bisection steps (0 disables the refinement).

    Returns:
      ``(eta, success)``: ``eta`` ``(N, d)`` the smallest successful perturbation found (zeros where none
      succeeded) and ``success`` ``(N,)`` bool.
    """
    check_params(
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
    x, t = check_direction(x, labels, targets)
    lfn = loss_fn(loss)
    box = clip_box(clip, x)
    cs = jnp.asarray(np.unique(grid), x.dtype)  # ascending
    n = x.shape[0]

    def run(c: Array) -> tuple[Array, Array, Array]:
        eta = lbfgs.solve(predict, x, t, lfn, c, box, steps, history, tol, max_linesearch)
        success = t * checked_predict(predict, x + eta) > 0
        return eta, success, row_norm(eta)

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
    already = t * checked_predict(predict, x) > 0
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
    """Build ``attack(predict, x, *, labels=None, targets=None, key=None) -> eta`` (N, d) from a registry
    name.

    The returned attack takes exactly one of ``labels=`` (untargeted) and ``targets=`` (targeted), as every
    attack function here does.
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
    allowed = set(keyword) - set(fixed) - {"key", "labels", "targets"}
    if fn is pgd:
        allowed.add("random_start")
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for attack {name!r}; expected some of "
            f"{', '.join(sorted(allowed))}"
        )
    missing = sorted(
        k for k, p in keyword.items() if p.default is inspect.Parameter.empty and k not in params
    )
    if missing:
        raise ValueError(f"attack {name!r} needs parameter(s) {', '.join(missing)}")
    check_params(**params)
    if fn is l0_attack:
        check_l0_mode(params.get("step"), params.get("clip"))
    random_start = bool(params.pop("random_start", False))
    kwargs = {**params, **fixed}

    def attack(
        predict: Predictor,
        x: Array,
        *,
        labels: Array | None = None,
        targets: Array | None = None,
        key: Array | None = None,
    ) -> Array:
        direction = {"labels": labels, "targets": targets}
        if random_start:
            if key is None:
                raise ValueError(f"attack {name!r} was made with random_start=True and needs a key")
            return fn(predict, x, **direction, key=key, **kwargs)
        return fn(predict, x, **direction, **kwargs)

    attack.__name__ = f"attack_{name}"
    attack.__doc__ = (
        f"{name!r} attack with {kwargs}: ``attack(predict, x, *, labels=y | targets=t, key=None)``; "
        "returns the perturbation eta (N, d)."
    )
    return attack
