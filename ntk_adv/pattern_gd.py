"""Exact full-batch training of a two-layer net in activation space (identity loss, frozen readout): plain
gradient descent (``theory`` preset) and the papers' optimizer, SGD with heavy-ball momentum and the
reduce-on-plateau schedule (``paper`` preset).

For ``f(x) = sum_i a~_i sigma(theta_i . phi(x))`` with ``sigma(u) = max(u, gamma u)``, first layer
``theta_i = (w_i, b_i)`` trained, readout ``a~`` frozen, and the identity loss ``L = -(1/N) sum_n y_n
f(x_n)``, one GD step with rate ``lr`` is

    theta_i <- theta_i + (lr / N) a~_i sum_n y_n S_ni phi(x_n),      S = sigma'(U),  U_ni = theta_i . phi(x_n)

so the pre-activations move by ``U <- U + (lr / N) (K diag(y) S) diag(a~)`` with the Gram matrix
``K = Phi Phi^T`` (N x N). The velocity ``V = K diag(y) S`` changes only where an activation *flips*
(``S_ni`` jumps by ``+-(1 - gamma)``), and under lazy training very few of the N m entries flip per step
(about 1e-3 of them at N = 2000, m = 4096, lr = 0.01). This solver therefore keeps (U, V) and, per step,
does one elementwise pass over U plus one row update of V, ``V_i += +-(1 - gamma) y_n K_n``, per flip, instead
of the two N x d x m matmuls of a backpropagated step. The trained parameters are recovered once at the end
from the accumulated patterns: ``theta_T = theta_0 + (lr / N) diag(a~) (sum_t S_t)^T diag(y) Phi``.

In exact arithmetic this is the same sequence of iterates as autodiff training (:func:`ntk_adv.training.train`
with the same :class:`ntk_adv.training.TrainConfig`); in floating point U is accumulated instead of
recomputed, so the results agree to rounding (about 1e-6 relative in float32; tested). A pre-activation
exactly at 0 counts as inactive (autodiff's ``max`` splits the gradient there; both happen with probability 0
for continuous data).

**Momentum and the plateau schedule** (:func:`_train_momentum`). optax's SGD keeps a trace
``tau_k = mu tau_{k-1} + g_k`` of the gradients and steps by ``-lr s_k tau_k``, where ``s_k`` is the plateau
scale after it has seen the loss before step k. Each g_k is linear in the pattern S_k, so in activation space
the velocity is ``T_k = mu T_{k-1} + V_k`` and ``U_{k+1} = U_k + (lr s_k / N) diag(a~) T_k``; the loss that
drives the schedule is ``-mean(y f)`` with ``f = sigma(U_k) a~`` (one pass over U). Because s_k is only known
once the loss is, the pattern weights of theta_T (``sum_k s_k sum_{j<=k} mu^(k-j) S_j``) are accumulated
densely: four more elementwise passes over (m, N) arrays per step. The same optax transform decides the
schedule (:func:`ntk_adv.training.plateau_transform`), so cuts happen at the same steps as under
backpropagation (tested to 1e-10 in float64, including the steps where the rate is cut). Momentum lets the
iterates move up to 1 / (1 - mu) = 10 times further per step than GD at the same rate, so more activations
flip per step and each costs a row update of V; the gain over backpropagation is therefore smaller than for
the theory preset (``ntk-adv bench``, ``training.paper_preset``). Memory: three more (m, N) arrays.

**Where it does not apply** (:func:`unsupported_reason`; ``solver="auto"`` then backpropagates): the logistic,
exponential and mse losses (their per-example gradient weights depend on the outputs, so a step is no longer a
function of the activation pattern alone), a trained readout (its gradient is sigma(U), not linear in the
pattern), and vector outputs.

Features ``phi(x)``: ``(x, 1)`` in the standard parametrization, ``(x / sqrt(d), 1)`` in the NTK one (without
the 1 when the net has no bias); ``a~ = a`` (standard) or ``A / sqrt(m)`` (ntk).

Cost per training: ``2 N^2 (d+1)`` for K plus ``~4 N (d+1) m + 2 N^2 m`` for the first and last step, then
per step ``O(N m)`` elementwise work plus ``O(N)`` per flip; memory ``N^2 + 3 N m`` floats. It pays off at
large widths (one training: 1.5-3x at m = 64-128, 5-6x at m = 1000-4000 over autodiff, N = 2000, d = 784;
``ntk-adv bench``), not at the smallest ones, which :func:`choose` leaves to autodiff under ``solver="auto"``.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import validate
from ntk_adv.models import TwoLayerConfig, TwoLayerParams
from ntk_adv.training import TrainConfig, check_data, plateau_transform

Solver = Literal["auto", "autodiff", "pattern"]
SOLVERS: tuple[str, ...] = get_args(Solver)
# "auto" uses this solver from this width on. Measured at N = 2000, d = 784 (bench task), 12-cell engine
# groups: pattern 1.4 / 2.2 / 2.4 s vs autodiff 3.7 / 8.6 / 6.7 s at widths 32 / 64 / 100, and about even at 8
# / 16, where its cost (which grows with the number of flips, unlike backprop's) is not worth the risk.
AUTO_MIN_WIDTH = 32
AUTO_MAX_N = 16384  # and up to this many training points (the N x N Gram matrix must fit comfortably)
BLOCK = 64  # flips are located through per-block counts of the flattened (m, N) flip mask


def unsupported_reason(net: TwoLayerConfig, cfg=None) -> str | None:
    """Why this solver cannot train ``net`` (with the :class:`ntk_adv.training.TrainConfig` ``cfg``, if
    given), or None if it can. Both presets are supported (plain GD; momentum with or without the plateau
    schedule); the logistic / exponential / mse losses are not (their gradients depend on the outputs, so a
    step is no longer a function of the activation pattern alone), nor trained readouts (the readout's
    gradient is not linear in the pattern) or vector outputs: those train by backpropagation."""
    if net.train_readout:
        return "a trained readout (needs a frozen readout)"
    if net.n_out != 1:
        return f"n_out={net.n_out} (needs scalar outputs)"
    if cfg is not None and cfg.loss != "identity":
        return f"loss {cfg.loss!r} (needs 'identity': its gradient does not depend on the outputs)"
    return None


def choose(net: TwoLayerConfig, cfg, n_train: int | None, solver: str = "auto") -> str:
    """The solver to use, ``'pattern'`` or ``'autodiff'``, for ``solver`` in :data:`SOLVERS`.

    ``auto`` picks ``pattern`` when it applies (either preset) and ``net.width >= AUTO_MIN_WIDTH`` and
    ``n_train <= AUTO_MAX_N`` (``None``, a whole split, is not known to be small); asking for ``pattern``
    where it does not apply raises ValueError naming the
    reason."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}")
    if solver == "autodiff":
        return "autodiff"
    reason = unsupported_reason(net, cfg)
    if solver == "pattern":
        if reason is not None:
            raise ValueError(f"solver 'pattern' does not support {reason}")
        return "pattern"
    ok = reason is None and net.width >= AUTO_MIN_WIDTH and n_train is not None and n_train <= AUTO_MAX_N
    return "pattern" if ok else "autodiff"


def _chunk(width: int) -> int:
    """Flips handled per inner iteration (a static size): about the width, between 128 and 1024."""
    return int(min(1024, max(128, 2 ** int(np.ceil(np.log2(width))))))


def train(
    net: TwoLayerConfig,
    params: TwoLayerParams,
    x: jax.Array,
    y: jax.Array,
    *,
    lr,
    steps: int,
    config: TrainConfig | None = None,
    centered: bool = False,
) -> TwoLayerParams:
    """``steps`` full-batch steps of the first layer (w, b if ``net.bias``) on (x (N, d), y (N,)) with the
    identity loss and the readout frozen, in ``net.parametrization``; returns the trained parameters (same
    tree as ``params``). ``lr`` may be traced (vmap over a grid); ``steps`` is static. Traceable.

    ``config`` (a :class:`ntk_adv.training.TrainConfig` with the identity loss; its ``lr`` and ``steps`` are
    ignored): the optimizer, as :func:`ntk_adv.training.make_optimizer` builds it - plain GD (None, or the
    ``theory`` preset), heavy-ball momentum, and/or the reduce-on-plateau schedule (``paper`` preset).
    ``centered``: the loss that drives the plateau schedule is that of the centred net f - f_0
    (:func:`ntk_adv.training.centered`); it does not change the gradients, only the loss values."""
    reason = unsupported_reason(net, config)
    if reason is not None:
        raise ValueError(f"solver 'pattern' does not support {reason}")
    check_data(x, y)
    validate.positive("lr", lr)
    if np.shape(params.w) != (net.width, np.shape(x)[1]):
        raise ValueError(
            f"first-layer weights have shape {np.shape(params.w)}, expected (width, d) = "
            f"{(net.width, np.shape(x)[1])}"
        )
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    plain = config is None or (config.optimizer == "gd" and not config.plateau)
    # static: the optimizer's structure, not the learning rate or the step count (those do not recompile)
    opt = None if plain else config.with_(lr=0.0, steps=0, record_loss=False)
    return _train(net, int(steps), opt, bool(centered) and not plain, params, x, y, jnp.asarray(lr, x.dtype))


def _features(net: TwoLayerConfig, params: TwoLayerParams, x, y):
    """Padded features phi (Np, p), labels (Np,), rows y_n K_n (Np, Np), theta (m, p), effective readout."""
    n, d = x.shape
    m, dtype = net.width, x.dtype
    npad = -(-n // BLOCK) * BLOCK  # padded samples have phi = 0, y = 0: their pre-activations never move
    xs = x / np.sqrt(d) if net.parametrization == "ntk" else x
    phi = jnp.concatenate([xs, jnp.ones((n, 1), dtype)], axis=1) if net.bias else xs
    phi = jnp.pad(phi, ((0, npad - n), (0, 0)))
    yp = jnp.pad(y.astype(dtype), (0, npad - n))
    ky = yp[:, None] * (phi @ phi.T)  # row n = y_n K_n
    theta = jnp.concatenate([params.w, params.b[:, None]], axis=1) if net.bias else params.w  # (m, p)
    a_eff = params.a / np.sqrt(m) if net.parametrization == "ntk" else params.a
    return phi, yp, ky, theta, a_eff


def _flip_updates(net: TwoLayerConfig, flips, active, v, ky, acc=None, weight=None):
    """For every flipped activation (unit i, sample n) of the (m, Np) mask ``flips``: ``V_i += +-(1 - gamma)
    y_n K_n`` (sign: + if it switched on, per ``active``), and ``acc[i, n] += weight * +-(1 - gamma)`` if
    ``acc`` (flattened) is given. The flips are located through per-block counts (a searchsorted over them),
    in static chunks of :func:`_chunk` inside a ``while_loop``."""
    m, npad = flips.shape
    dtype = v.dtype
    n_blocks, chunk, jump = m * npad // BLOCK, _chunk(m), 1.0 - net.gamma
    flips = flips.reshape(n_blocks, BLOCK)
    ends = jnp.cumsum(jnp.sum(flips, axis=1, dtype=jnp.int32))  # flips up to the end of each block
    count = ends[-1]
    active = active.reshape(-1)

    def apply_chunk(state):
        k, v, acc = state
        rank = k * chunk + jnp.arange(chunk, dtype=jnp.int32)  # the rank-th flip of this step
        valid = rank < count
        with warnings.catch_warnings():  # jax >= 0.12 asks for int64 indices inside searchsorted and warns
            warnings.simplefilter("ignore", UserWarning)  # when x64 is off; int32 is what we use anyway
            blk = jnp.minimum(jnp.searchsorted(ends, rank + 1, side="left"), n_blocks - 1).astype(jnp.int32)
        before = jnp.where(blk > 0, ends[jnp.maximum(blk - 1, 0)], 0)
        local = jnp.cumsum(flips[blk].astype(jnp.int32), axis=1)  # (chunk, BLOCK)
        offset = jnp.sum(local < (rank - before + 1)[:, None], axis=1, dtype=jnp.int32)
        # flat indices ascend with the rank; the unused tail points at the last entry with a zero update,
        # so the row indices stay sorted
        flat = jnp.where(valid, blk * BLOCK + jnp.minimum(offset, BLOCK - 1), m * npad - 1)
        unit, sample = flat // npad, flat % npad
        delta = jnp.where(valid, jnp.where(active[flat], jump, -jump), 0.0).astype(dtype)
        v = v.at[unit].add(delta[:, None] * ky[sample], indices_are_sorted=True)
        if acc is not None:
            acc = acc.at[flat].add(weight * delta, indices_are_sorted=True)
        return k + 1, v, acc

    _, v, acc = jax.lax.while_loop(lambda st: st[0] * chunk < count, apply_chunk, (jnp.int32(0), v, acc))
    return v, acc


def _finish(net: TwoLayerConfig, params: TwoLayerParams, theta, acc, a_eff, yp, phi, lr, n):
    """theta_T = theta_0 + (lr / N) diag(a~) acc^T diag(y) Phi, with acc the (m, Np) weighted sum of
    patterns."""
    theta = theta + (lr / n) * ((acc * a_eff[:, None]) @ (yp[:, None] * phi))
    if net.bias:
        return params.replace(w=theta[:, :-1], b=theta[:, -1])
    return params.replace(w=theta)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _train(
    net: TwoLayerConfig, steps: int, opt: TrainConfig | None, centered: bool, params: TwoLayerParams, x, y, lr
):
    if opt is not None:
        return _train_momentum(net, steps, opt, centered, params, x, y, lr)
    n = x.shape[0]
    m, dtype, gamma = net.width, x.dtype, net.gamma
    phi, yp, ky, theta, a_eff = _features(net, params, x, y)
    npad = phi.shape[0]
    coef = (lr / n) * a_eff[:, None]  # (m, 1)

    u = theta @ phi.T  # (m, Np): U transposed, so that one unit's row is contiguous
    s0 = _slope(u > 0, gamma, dtype)
    v = s0 @ ky  # (m, Np): V_i = sum_n S_in y_n K_n

    def step(carry, t):
        u, v, acc = carry
        u_new = u + coef * v
        active = u_new > 0
        weight = (steps - 1 - t).astype(dtype)  # the new pattern holds for the remaining steps of sum_t S_t
        v, acc = _flip_updates(net, active != (u > 0), active, v, ky, acc, weight)
        return (u_new, v, acc), None

    acc0 = (steps * s0).reshape(-1)  # sum_t S_t = steps S_0 + sum over flips of (steps - t) dS
    # step t computes U_{t+1}; U_steps is never used, so steps - 1 iterations suffice
    (_, _, acc), _ = jax.lax.scan(step, (u, v, acc0), jnp.arange(max(steps - 1, 0), dtype=jnp.int32))
    return _finish(net, params, theta, acc.reshape(m, npad), a_eff, yp, phi, lr, n)


def _slope(active, gamma, dtype):
    return jnp.where(active, jnp.asarray(1.0, dtype), jnp.asarray(gamma, dtype))


def _train_momentum(
    net: TwoLayerConfig, steps: int, opt: TrainConfig, centered: bool, params: TwoLayerParams, x, y, lr
):
    """Heavy-ball momentum and the plateau schedule in activation space. With the per-step gradient
    ``g_k = -(1/N) diag(a~) S_k^T diag(y) Phi``, optax's SGD (``tau_k = mu tau_{k-1} + g_k``, update
    ``-lr s_k tau_k`` with the plateau scale s_k) moves the pre-activations by

        U_{k+1} = U_k + (lr s_k / N) diag(a~) T_k,    T_k = mu T_{k-1} + V_k,   V_k = S_k^T diag(y) K

    and the parameters by ``theta_T = theta_0 + (lr / N) diag(a~) (sum_k s_k M_k)^T diag(y) Phi`` with
    ``M_k = mu M_{k-1} + S_k``. Since s_k depends on the loss, which is not known in advance, T, M and their
    weighted sum are kept as dense (m, Np) arrays (four elementwise passes per step; V still changes only at
    flips). The loss before step k, ``-mean(y (sigma(U_k) a~))`` (minus that of f_0 for a centred net), is fed
    to the same optax plateau transform as backpropagated training
    (:func:`ntk_adv.training.plateau_transform`), so the schedule's decisions are optax's own."""
    n = x.shape[0]
    m, dtype, gamma = net.width, x.dtype, net.gamma
    mu = opt.momentum if opt.optimizer == "momentum" else 0.0
    phi, yp, ky, theta, a_eff = _features(net, params, x, y)
    npad = phi.shape[0]
    u = theta @ phi.T
    v = _slope(u > 0, gamma, dtype) @ ky
    plateau = plateau_transform(opt) if opt.plateau else None

    def outputs(u):  # f on the padded training set (padded entries have y = 0); as a fused column sum rather
        # than a matrix-vector product: the whole training ran ~1.4x faster at m = 1000, N = 2000 (measured)
        return jnp.sum(a_eff[:, None] * jnp.where(u > 0, u, gamma * u), axis=0)

    f0 = outputs(u) if centered else None
    zero = jnp.zeros((), dtype)

    def step(carry, _):
        u, v, tr, mm, acc, pstate = carry
        active = u > 0
        if plateau is not None:
            f = outputs(u)
            f = f - f0 if centered else f
            loss = jnp.mean(-(yp[:n] * f[:n]))
            _, pstate = plateau.update(zero, pstate, value=loss)
            scale = pstate.scale
        else:
            scale = jnp.asarray(1.0, dtype)
        mm = mu * mm + _slope(active, gamma, dtype)
        acc = acc + scale * mm
        tr = mu * tr + v
        u_new = u + ((lr * scale / n) * a_eff)[:, None] * tr
        active_new = u_new > 0
        v, _ = _flip_updates(net, active_new != active, active_new, v, ky)
        return (u_new, v, tr, mm, acc, pstate), None

    pstate0 = plateau.init(zero) if plateau is not None else ()
    dense0 = jnp.zeros((m, npad), dtype)
    carry0 = (u, v, dense0, dense0, dense0, pstate0)
    (_, _, _, _, acc, _), _ = jax.lax.scan(step, carry0, None, length=steps)
    return _finish(net, params, theta, acc, a_eff, yp, phi, lr, n)
