"""C-class two-layer nets and their kernel limits: losses, finite training, infinite-width predictors and
targeted attacks toward a class (docs/theory.md, "Ten classes: the lazy limit of D_rand and D_det").

Outputs are ``f(x) in R^C`` (``TwoLayerConfig(n_out=C)``: readout a (m, C), frozen by default), labels are
integer class indices ``y in {0..C-1}`` of shape (N,). With the first layer trained and the readout frozen,
the C-output NTK is ``Theta(x, z) I_C``: the scalar two-layer NTK times the C x C identity, because the
readout columns a_c are independent with mean zero, so the cross terms ``sum_i a_ic a_ic' (...)`` average to
zero for c != c' and to the scalar kernel for c = c' (tested against the empirical NTK of wide nets). Every
infinite-width predictor is therefore a :class:`ntk_adv.limits.KernelPredictor` with coefficients (N, C):
``f(z) = f_0(z) + Theta(z, X) @ coef``, output (M, C).

Losses (mean over the N points; ``e_y`` the one-hot vector of y):

* ``identity``          l = -<e_y, f(x)>                 (the analogue of the binary identity loss)
* ``centred_identity``  l = -<e_y - 1/C, f(x)>           (the targets summed over classes are 0)
* ``cross_entropy``     l = -log softmax(f(x))_y          (the C-class logistic loss)
* ``mse``               l = ||f(x) - e_y||^2 / 2

Kernel gradient descent at step lr for T steps (time ``tau = lr T``): ``coef <- coef - (lr/N) dl/df(X)``,
so the identity losses are closed forms, ``coef = (tau/N) e_y`` and ``(tau/N) (e_y - 1/C)``; MSE is the
eigendecomposition of :func:`ntk_adv.limits.mse_predictor` per output column (refused at lr >= 2N /
lambda_max); cross-entropy is a ``lax.scan``. Both identity losses give the same argmax (they differ by a
class-independent function), so every accuracy below is the same for the two.

Targeted attacks toward classes ``t`` (N,) decrease the targeted loss ``l_att(f(x + eta), t)`` (default
``cross_entropy``: raise the softmax probability of t; ``identity``: raise f_t). They take any pointwise
predictor ``(M, d) -> (M, C)`` - a finite net or a kernel predictor - and return the perturbation eta (N, d):

* :func:`one_step_l2`  eta = -eps g / ||g||_2 (L2 norm exactly eps, rows with g = 0 stay 0);
* :func:`pgd`          projected gradient descent in the L2 or L-inf ball of radius eps (exact projection).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_adv import validate
from ntk_adv.attack_checks import normalize_l2, row_norm
from ntk_adv.kernels import KernelFn, kernel_matrix
from ntk_adv.limits import KernelPredictor, mse_descent_gain
from ntk_adv.training import masked_optimizer

MCLoss = Literal["identity", "centred_identity", "cross_entropy", "mse"]  # C-class training losses
AttackLoss = Literal["cross_entropy", "identity"]  # targeted attack losses
MCAttack = Literal["one_step_l2", "pgd_l2", "pgd_linf"]  # the C-class targeted attacks
MC_LOSSES: tuple[str, ...] = get_args(MCLoss)
ATTACK_LOSSES: tuple[str, ...] = get_args(AttackLoss)
MC_ATTACKS: tuple[str, ...] = get_args(MCAttack)
Predictor = Callable[[jax.Array], jax.Array]


def check_loss(name: str, options: tuple[str, ...] = MC_LOSSES, what: str = "loss") -> str:
    if name not in options:
        raise ValueError(f"unknown {what} {name!r}; expected one of {', '.join(options)}")
    return name


def onehot(y: jax.Array, n_classes: int, dtype=jnp.float32) -> jax.Array:
    """One-hot targets (N, C) of integer (or integer-valued float) labels y (N,)."""
    return jax.nn.one_hot(jnp.asarray(y).astype(jnp.int32), n_classes, dtype=dtype)


def targets_matrix(loss: str, y: jax.Array, n_classes: int, dtype=jnp.float32) -> jax.Array:
    """The matrix the identity losses pair with f: e_y (identity) or e_y - 1/C (centred_identity)."""
    e = onehot(y, n_classes, dtype)
    return e - 1.0 / n_classes if loss == "centred_identity" else e


def pointwise_loss(name: str, out: jax.Array, y: jax.Array) -> jax.Array:
    """Per-point loss (N,) of outputs ``out`` (N, C) against integer labels ``y`` (N,)."""
    check_loss(name)
    c = out.shape[1]
    if name in ("identity", "centred_identity"):
        return -jnp.sum(targets_matrix(name, y, c, out.dtype) * out, axis=1)
    e = onehot(y, c, out.dtype)
    if name == "cross_entropy":
        return -jnp.sum(e * jax.nn.log_softmax(out, axis=1), axis=1)
    return 0.5 * jnp.sum((out - e) ** 2, axis=1)


def output_gradient(name: str, out: jax.Array, y: jax.Array) -> jax.Array:
    """d l / d f per point (N, C): the function-space gradient that kernel gradient descent follows."""
    check_loss(name)
    e = onehot(y, out.shape[1], out.dtype)
    if name in ("identity", "centred_identity"):
        return -targets_matrix(name, y, out.shape[1], out.dtype)
    if name == "cross_entropy":
        return jax.nn.softmax(out, axis=1) - e
    return out - e


def accuracy(out: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of rows whose argmax equals y (a scalar)."""
    return jnp.mean(jnp.argmax(out, axis=1) == jnp.asarray(y).astype(jnp.int32))


def agreement(out_a: jax.Array, out_b: jax.Array) -> jax.Array:
    """Fraction of rows where the argmax of two output matrices (M, C) coincide."""
    return jnp.mean(jnp.argmax(out_a, axis=1) == jnp.argmax(out_b, axis=1))


# ----------------------------------------------------------------------------------------------- finite
def train_net(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params,
    x: jax.Array,
    y: jax.Array,
    *,
    loss: str,
    lr,
    steps: int,
    mask=None,
):
    """Full-batch gradient descent (step ``lr``, ``steps`` steps, one ``lax.scan``) of a C-output net
    ``apply_fn(params, x (N, d)) -> (N, C)`` on the mean ``loss`` against labels y (N,); ``mask`` (a pytree of
    bools like params, e.g. :func:`ntk_adv.models.trainable_mask`) freezes leaves. Traceable (vmap over
    params / keys / lr); returns the trained params."""
    check_loss(loss)
    leaves = jax.tree_util.tree_leaves(params)
    mask_leaves = (
        tuple(True for _ in leaves)
        if mask is None
        else tuple(bool(m) for m in jax.tree_util.tree_leaves(mask))
    )
    opt = masked_optimizer(optax.sgd(lr), params, mask_leaves)

    def objective(p):
        return jnp.mean(pointwise_loss(loss, apply_fn(p, x), y))

    def step(carry, _):
        p, state = carry
        grads = jax.grad(objective)(p)
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=int(steps))
    return params


# --------------------------------------------------------------------------------------------- limits
def kernel_coefficients(
    loss: str, k_train: jax.Array, y: jax.Array, f0_train: jax.Array, *, lr, steps: int
) -> jax.Array:
    """Coefficients (N, C) of kernel gradient descent, ``coef <- coef - (lr/N) dl/df(f0 + K coef)``, for
    ``steps`` steps from 0: ``k_train`` (N, N) = Theta(X, X), ``y`` (N,) labels, ``f0_train`` (N, C) the
    initial function on X (zeros: the centred limit). Identity losses in closed form; MSE by the
    eigendecomposition (exactly the same GD iterates; refused for a concrete lr >= 2N/lambda_max); cross
    entropy by ``lax.scan``. Traceable in lr for the identity and cross-entropy losses."""
    check_loss(loss)
    n, c = f0_train.shape
    if loss in ("identity", "centred_identity"):
        return targets_matrix(loss, y, c, k_train.dtype) * (lr * steps / n)
    if loss == "mse":
        lam, vec = jnp.linalg.eigh(k_train)
        gain = mse_descent_gain(lam, n, lr, steps)
        resid = onehot(y, c, k_train.dtype) - f0_train
        return vec @ (gain[:, None] * (vec.T @ resid))
    return _ce_flow(
        k_train, onehot(y, c, k_train.dtype), f0_train, jnp.asarray(lr, k_train.dtype), int(steps)
    )


@partial(jax.jit, static_argnums=(4,))
def _ce_flow(k, e, f0_train, lr, steps):
    n = k.shape[0]

    def step(coef, _):
        f = f0_train + k @ coef
        return coef - lr / n * (jax.nn.softmax(f, axis=1) - e), None

    coef, _ = jax.lax.scan(step, jnp.zeros_like(e), None, length=steps)
    return coef


def make_predictor(
    kernel: KernelFn,
    x_train: jax.Array,
    y_train: jax.Array,
    *,
    n_classes: int,
    loss: str,
    lr: float,
    steps: int,
    f0: Callable[[jax.Array], jax.Array] | None = None,
    k_train: jax.Array | None = None,
) -> KernelPredictor:
    """Infinite-width C-output predictor ``f(z) = f0(z) + Theta(z, X) coef`` (M, C) after ``steps`` steps of
    full-batch gradient descent at ``lr`` on ``loss`` (the C-output NTK is Theta I_C). ``f0``: None for the
    centred limit (f_0 = 0), or a finite net's initial function (M, d) -> (M, C) (the same-init limit)."""
    check_loss(loss)
    validate.positive("lr", lr)
    validate.inputs("x_train", x_train)
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    x_train = jnp.asarray(x_train)
    k = kernel_matrix(kernel, x_train) if k_train is None else k_train
    f0_train = jnp.zeros((x_train.shape[0], n_classes), k.dtype) if f0 is None else f0(x_train)
    coef = kernel_coefficients(loss, k, jnp.asarray(y_train), f0_train, lr=lr, steps=steps)
    return KernelPredictor(x_train=x_train, coef=coef, kernel=kernel, f0=f0)


# -------------------------------------------------------------------------------------------- attacks
def _attack_loss(name: str):
    check_loss(name, ATTACK_LOSSES, "attack loss")
    if name == "identity":
        return lambda out, t: -jnp.sum(onehot(t, out.shape[1], out.dtype) * out, axis=1)
    return lambda out, t: (
        -jnp.sum(onehot(t, out.shape[1], out.dtype) * jax.nn.log_softmax(out, axis=1), axis=1)
    )


def targeted_gradient(
    predict: Predictor, x: jax.Array, t: jax.Array, loss: str = "cross_entropy"
) -> jax.Array:
    """Per-point input gradients (N, d) of the targeted loss ``l_att(f(x_n), t_n)`` (one backward pass of the
    sum; ``predict`` must be pointwise, (N, d) -> (N, C))."""
    lfn = _attack_loss(loss)
    return jax.grad(lambda z: jnp.sum(lfn(predict(z), t)))(x)


def one_step_l2(
    predict: Predictor, x: jax.Array, t: jax.Array, *, eps, loss: str = "cross_entropy"
) -> jax.Array:
    """One normalised gradient step toward classes t: ``eta_n = -eps g_n / ||g_n||_2`` with ``g_n`` the input
    gradient of the targeted loss; ``||eta_n||_2 = eps`` (L2 norm) to float rounding. Returns eta (N, d)."""
    validate.scalar("eps", eps, low=0.0)
    g = targeted_gradient(predict, x, t, loss)
    return -jnp.asarray(eps, x.dtype) * normalize_l2(g)


def project(eta: jax.Array, eps, norm: str) -> jax.Array:
    """Euclidean projection of each row of eta (N, d) onto the ``norm`` ball of radius eps (exact: L-inf by
    clipping, L2 by radial scaling of rows outside the ball)."""
    if norm == "linf":
        return jnp.clip(eta, -eps, eps)
    n = row_norm(eta)[:, None]
    return eta * jnp.where(n > eps, eps / jnp.where(n > 0, n, 1.0), 1.0)


def pgd(
    predict: Predictor,
    x: jax.Array,
    t: jax.Array,
    *,
    eps,
    steps: int,
    step_size=None,
    norm: str = "l2",
    loss: str = "cross_entropy",
) -> jax.Array:
    """Targeted projected gradient descent toward classes t in the ``norm`` (``l2`` | ``linf``) ball of radius
    eps, from eta = 0: ``steps`` normalised steps of length ``step_size`` (default 2.5 eps / steps, as Madry
    et al.; ``-g/||g||_2`` for L2, ``-sign g`` for L-inf), each followed by :func:`project`. A
    ``lax.fori_loop``; returns eta (N, d), ``||eta_n|| <= eps`` (L-inf exactly, L2 to float rounding)."""
    if norm not in ("l2", "linf"):
        raise ValueError(f"unknown norm {norm!r}; expected l2 or linf")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"attack steps must be an integer >= 1, got {steps!r}")
    validate.scalar("eps", eps, low=0.0)
    eps_a = jnp.asarray(eps, x.dtype)
    step = 2.5 * eps_a / steps if step_size is None else jnp.asarray(step_size, x.dtype)

    def body(_, eta):
        g = targeted_gradient(predict, x + eta, t, loss)
        direction = jnp.sign(g) if norm == "linf" else normalize_l2(g)
        return project(eta - step * direction, eps_a, norm)

    return jax.lax.fori_loop(0, int(steps), body, jnp.zeros_like(x))


def attack(
    name: str,
    predict: Predictor,
    x: jax.Array,
    t: jax.Array,
    *,
    eps,
    steps: int = 10,
    loss: str = "cross_entropy",
) -> jax.Array:
    """Dispatch: ``one_step_l2`` | ``pgd_l2`` | ``pgd_linf`` (eps an L2 radius for the first two, an L-inf
    radius for the last); returns eta (N, d)."""
    check_loss(name, MC_ATTACKS, "attack")
    if name == "one_step_l2":
        return one_step_l2(predict, x, t, eps=eps, loss=loss)
    return pgd(predict, x, t, eps=eps, steps=steps, norm=name[4:], loss=loss)
