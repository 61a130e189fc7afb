"""Batched projected L-BFGS (L-BFGS-B-like) for the box-constrained attack of Szegedy et al. (2014).

:func:`solve` minimizes, independently per row n, ``F_n(eta) = c_n ||eta_n||_2^2 + l(t_n f(x_n + eta_n))`` for
x (N, d), targets t (N,) in {-1, +1}, subject to ``lo <= x + eta <= hi``. The attacks built on it
(:func:`ntk_adv.attacks.lbfgs_attack`, :func:`ntk_adv.attacks.minimal_lbfgs_distortion`) live in
:mod:`ntk_adv.attacks`; this module is the numerical solver only. Norms are L2 per row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ntk_adv.attack_checks import Array, Predictor, checked_predict, fit_box

# --------------------------------------------------------------------------------------------------
# Two-loop recursion and the solver
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


def solve(
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
        return c * jnp.sum(eta**2, axis=1) + lfn(t * checked_predict(predict, x + eta))

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
    return fit_box(x, final["eta"], box)
