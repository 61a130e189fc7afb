"""Infinite-width predictors: a kernel machine ``f(z) = f_0(z) + Theta(z, X) @ coef`` for every loss.

Gradient flow of the linearized (infinite-width) net on the mean loss over N training points, for time
``t = lr * steps``, moves the function along the kernel: ``df(z)/dt = -(1/N) sum_n Theta(z, x_n) dl/df(x_n)``.
Hence the trained predictor is always ``f_0(z) + Theta(z, X) coef`` with

* identity loss  (l = -y f):          coef = (t / N) y                                   (closed form, exact)
* MSE           (l = (f - y)^2 / 2):   coef = V diag((1 - exp(-lambda t / N)) / lambda) V^T (y - f_0(X))
                                       with Theta(X, X) = V diag(lambda) V^T (as neural-tangents' predict)
* logistic / exponential:              coef = integral of -(1/N) y l'(y f_s(X)) ds, integrated with the same
                                       Euler steps as full-batch gradient descent with step ``lr`` (under jit)

``f_0`` is either zero (the *centred* predictor) or the initial function of a finite net (the *with initial
function* variant, which a trained finite net converges to as width grows).

:data:`ntk_adv.arch.INF_WIDTH` (``math.inf``) is the width of these predictors wherever results carry a
``width``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ntk_adv import validate
from ntk_adv.kernels import KernelFn, check_pair, kernel_matrix, phi
from ntk_adv.losses import check_loss, margin_loss_derivative

InitFn = Callable[[jax.Array], jax.Array]


@struct.dataclass
class KernelPredictor:
    """``f(z) = f0(z) + kernel(z, x_train) @ coef``; call it on z (M, d) to get (M,).

    A pytree (x_train, coef are leaves) so it can be passed through jit/vmap; ``kernel`` and ``f0`` are
    static. Differentiable in z, so every attack works on it."""

    x_train: jax.Array
    coef: jax.Array
    kernel: KernelFn = struct.field(pytree_node=False)
    f0: InitFn | None = struct.field(pytree_node=False, default=None)

    def __call__(self, z: jax.Array) -> jax.Array:
        validate.inputs("z", z, np.shape(self.x_train)[-1])
        out = self.kernel(z, self.x_train) @ self.coef
        return out if self.f0 is None else out + self.f0(z)


def _validate(x_train, y_train, t):
    validate.data(x_train, y_train, ("x_train", "y_train"))
    if not isinstance(t, jax.core.Tracer) and (not np.isfinite(t) or t < 0):
        raise ValueError(f"training time t = lr * steps must be finite and >= 0, got {t}")


def identity_predictor(
    kernel: KernelFn, x_train, y_train, *, t: float, f0: InitFn | None = None
) -> KernelPredictor:
    """Identity loss: f_t(z) = f_0(z) + (t/N) sum_n y_n Theta(x_n, z) (exact for the linearized net)."""
    _validate(x_train, y_train, t)
    n = x_train.shape[0]
    return KernelPredictor(
        x_train=jnp.asarray(x_train), coef=jnp.asarray(y_train) * (t / n), kernel=kernel, f0=f0
    )


def mse_predictor(
    kernel: KernelFn,
    x_train,
    y_train,
    *,
    t: float = np.inf,
    f0: InitFn | None = None,
    k_train: jax.Array | None = None,
    lr: float | None = None,
    steps: int | None = None,
) -> KernelPredictor:
    """MSE loss l = (f - y)^2 / 2 averaged over N points.

    * ``lr`` and ``steps`` given: full-batch gradient *descent* of the linearized net, exactly. With
      ``K = V diag(lam) V^T`` the residual on the training set contracts by ``(1 - lr lam / N)`` per step, so
      ``coef = V diag((1 - (1 - lr lam/N)^steps) / lam) V^T (y - f_0)``. It converges only for
      ``lr < 2 N / lam_max``: a concrete larger ``lr`` is refused in one line, a traced one gives NaN
      coefficients (docs/theory.md, "Lazy limits and training time").
    * otherwise gradient flow for time ``t`` (t = inf: the interpolant), the ``lr -> 0`` limit at ``t = lr *
      steps``.

    Eigenvalues below ``1e-12 * max`` are treated as zero (their modes do not move)."""
    _validate(x_train, y_train, 0.0 if t == np.inf else t)
    n = x_train.shape[0]
    k = kernel_matrix(kernel, x_train) if k_train is None else k_train
    lam, vec = jnp.linalg.eigh(k)
    resid = jnp.asarray(y_train) - (0.0 if f0 is None else f0(x_train))
    lam_max = jnp.max(lam)
    keep = lam > 1e-12 * lam_max
    safe = jnp.where(keep, lam, 1.0)
    if lr is not None:
        if steps is None:
            raise ValueError("mse_predictor: gradient descent needs both lr and steps")
        gain = mse_descent_gain(lam, n, lr, steps)
    elif np.isinf(t):
        gain = jnp.where(keep, 1.0 / safe, 0.0)
    else:
        gain = jnp.where(keep, -jnp.expm1(-safe * t / n) / safe, t / n)
    coef = vec @ (gain * (vec.T @ resid))
    return KernelPredictor(x_train=jnp.asarray(x_train), coef=coef, kernel=kernel, f0=f0)


def mse_descent_gain(lam: jax.Array, n: int, lr, steps: int) -> jax.Array:
    """Per eigenvalue ``lam`` of Theta(X, X), the gain of ``steps`` steps of full-batch gradient descent on
    the MSE loss averaged over ``n`` points, ``(1 - (1 - lr lam / n)^steps) / lam`` (``lr steps / n`` for
    eigenvalues below ``1e-12 max``): the coefficients are ``V diag(gain) V^T (y - f_0(X))``, one output or
    C. Converges only for ``lr < 2n / lam_max``: a concrete larger lr is refused in one line, a traced one
    gives NaN (docs/theory.md, "Lazy limits and training time")."""
    lam_max = jnp.max(lam)
    limit = 2.0 * n / lam_max
    if not isinstance(lr, jax.core.Tracer) and not isinstance(limit, jax.core.Tracer):
        if float(lr) >= float(limit):
            raise ValueError(
                f"lr {float(lr):g}: gradient descent on the MSE loss diverges in the kernel limit; "
                f"lr must be below 2N/lambda_max = {float(limit):.4g} (N = {n})"
            )
    keep = lam > 1e-12 * lam_max
    safe = jnp.where(keep, lam, 1.0)
    gain = jnp.where(keep, (1.0 - (1.0 - lr * safe / n) ** int(steps)) / safe, lr * int(steps) / n)
    return jnp.where(lr < limit, gain, jnp.nan)


def flow_predictor(
    kernel: KernelFn,
    x_train,
    y_train,
    *,
    loss: str,
    lr: float,
    steps: int,
    f0: InitFn | None = None,
    k_train: jax.Array | None = None,
) -> KernelPredictor:
    """Kernel gradient descent for any margin loss (identity, logistic, exponential): ``steps`` Euler steps
    of size ``lr`` - exactly full-batch GD on the linearized net in function space; t = lr * steps."""
    check_loss(loss)
    if loss == "mse":
        return mse_predictor(kernel, x_train, y_train, f0=f0, k_train=k_train, lr=lr, steps=int(steps))
    _validate(x_train, y_train, lr * steps)
    k = kernel_matrix(kernel, x_train) if k_train is None else k_train
    f0_train = jnp.zeros(x_train.shape[0], k.dtype) if f0 is None else f0(x_train)
    coef = flow_coefficients(loss, k, jnp.asarray(y_train, k.dtype), f0_train, lr=lr, steps=int(steps))
    return KernelPredictor(x_train=jnp.asarray(x_train), coef=coef, kernel=kernel, f0=f0)


def flow_coefficients(
    loss: str,
    k_train: jax.Array,
    y: jax.Array,
    f0_train: jax.Array,
    *,
    lr,
    steps: int,
    decay=0.0,
    sample_weight: jax.Array | None = None,
) -> jax.Array:
    """Coefficients (N,) of kernel gradient descent for a margin loss; jit- and vmap-friendly (``lr`` and
    ``decay`` may be traced). ``k_train`` (N, N) = Theta(X, X), ``f0_train`` (N,) the initial function on X.

    One step: ``coef <- (1 - lr decay) coef - lr / sum(w) * w * y * l'(y f)`` with ``f = f0 + K coef``: the
    linearized net trained by full-batch GD with weight decay ``decay`` toward its initialization (anchored
    decay, which is what decay on a centred net's parameters is in function space) on the training subset
    selected by ``sample_weight`` w (N,) (default all ones). ``decay=0`` and no weights is plain kernel GD."""
    plain = sample_weight is None and isinstance(decay, (int, float)) and decay == 0
    if loss == "identity" and plain:
        return y * (lr * steps / y.shape[0])
    dtype = k_train.dtype
    w = jnp.ones_like(y) if sample_weight is None else jnp.asarray(sample_weight, dtype)
    lr, decay = jnp.asarray(lr, dtype), jnp.asarray(decay, dtype)
    return _kernel_flow(loss, k_train, y, f0_train, lr, int(steps), decay, w)


@partial(jax.jit, static_argnums=(0, 5))
def _kernel_flow(loss, k, y, f0_train, lr, steps, decay, w):
    dl = margin_loss_derivative(loss)
    n_eff = jnp.sum(w)

    def step(coef, _):
        f = f0_train + k @ coef
        return (1.0 - lr * decay) * coef - lr / n_eff * w * y * dl(y * f), None

    coef, _ = jax.lax.scan(step, jnp.zeros_like(y), None, length=steps)
    return coef


def make_predictor(
    kernel: KernelFn,
    x_train,
    y_train,
    *,
    loss: str,
    lr: float,
    steps: int,
    f0: InitFn | None = None,
    k_train: jax.Array | None = None,
) -> KernelPredictor:
    """The infinite-width counterpart of ``train`` with the theory preset: dispatches on ``loss``."""
    check_loss(loss)
    validate.positive("lr", lr)
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if loss == "identity":
        return identity_predictor(kernel, x_train, y_train, t=lr * steps, f0=f0)
    if loss == "mse":
        return mse_predictor(kernel, x_train, y_train, f0=f0, k_train=k_train, lr=lr, steps=int(steps))
    return flow_predictor(kernel, x_train, y_train, loss=loss, lr=lr, steps=steps, f0=f0, k_train=k_train)


def kernel_parts(
    x_train, coef, z, *, gamma: float = 0.0, bias: bool = True, parametrization: str = "standard"
) -> tuple[jax.Array, jax.Array]:
    """Split the kernel part ``Theta(z, X) @ coef`` of a two-layer predictor (first layer trained) into

        B(z) = sum_n coef_n Phi(x_n, z)              (through the trained biases; 0 without bias)
        S(z) = sum_n coef_n Phi(x_n, z) <x_n, z> / c  (through the trained weights; c = 1 standard, d ntk)

    so that ``B + S == Theta(z, X) @ coef`` (docs/theory.md, "The limit g, decomposed"). ``x_train`` (N, d),
    ``coef`` (N,), ``z`` (M, d); returns (B (M,), S (M,))."""
    p = phi(z, x_train, gamma=gamma, bias=bias)
    inner = z @ x_train.T
    if parametrization == "ntk":
        inner = inner / x_train.shape[1]
    s_part = (p * inner) @ coef
    b_part = p @ coef if bias else jnp.zeros_like(s_part)
    return b_part, s_part


def first_order_in_eps(kernel: KernelFn, base, y_adv, u, z) -> tuple[jax.Array, jax.Array]:
    """First-order expansion in eps of the identity-loss limit g trained on x_adv_n = base_n + eps y_adv_n u_n
    (scenario a: base = 0; b: base = x; ``u`` (N, d) the attack's unit direction, independent of eps and of
    the target for one-step L2 / FGM / FGSM):

        (g - g_0)(z) / tau = A(z) + eps L(z) + O(eps^2),
        A(z) = (1/N) sum_n y_adv_n Theta(base_n, z)                  (targets only: the imbalance term)
        L(z) = (1/N) sum_n d/ds Theta(base_n + s u_n, z) |_{s=0}      (the signal: does not see the targets)

    Returns (A (M,), L (M,)). Each test point's threshold is eps*(z) = -A(z) / L(z) where positive.
    Scenario (a) needs a kernel with bias: without it the kernel is not differentiable at base = 0 and the
    expansion does not exist (refused when ``base`` is all zeros and ``kernel(0, z)`` vanishes)."""
    base, u, z = jnp.asarray(base), jnp.asarray(u), jnp.asarray(z)
    y_adv = jnp.asarray(y_adv, base.dtype)
    n = base.shape[0]
    if (
        not isinstance(base, jax.core.Tracer)
        and not bool(jnp.any(base))
        and not bool(jnp.any(kernel(base[:1], z)))
    ):
        raise ValueError(
            "first_order_in_eps at base = 0 needs a kernel with bias (a bias-free kernel is not "
            "differentiable there)"
        )
    k0, dk = jax.jvp(lambda b: kernel(b, z), (base,), (u,))
    return y_adv @ k0 / n, jnp.sum(dk, axis=0) / n


def limit_classifiers(
    x_train, y_train, x_adv, *, gamma: float = 0.0, bias: bool = True, base=None
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    """The limit classifiers of perturbation learning (Kumano et al. 2024; docs/theory.md), as closures
    ``z (M, d) -> (M,)``:

        hat_f(z) = (1/N) sum_n y_n Phi(x_n, z) <x_n, z>
        hat_g(z) = (1/N) sum_n Phi(x^adv_n, z) * [(1/N) sum_k y_k Phi(x_n, x_k) <x_k, z>]

    hat_f is the clean classifier f and hat_g the classifier g trained on the adversarial set
    R = {x^adv_n} (scenario (a): x^adv_n = eta_n, whose direction is y^adv_n D_n, so that y^adv_n <x^adv_n, z>
    becomes the bracket), both up to positive factors (t, eps, the norms of D_n) and without the init terms.
    ``Phi`` is :func:`ntk_adv.kernels.phi` with slope ``gamma`` and ``bias`` (the same in both
    parametrizations). ``x_train`` (N, d), ``y_train`` (N,) in {-1, +1}, ``x_adv`` (N, d); ``base`` (N, d),
    default ``x_train``, the points x_n the perturbations were computed at (the noise for the noise scenario).
    Both closures are differentiable in z."""
    x_train, x_adv = jnp.asarray(x_train), jnp.asarray(x_adv)
    base = x_train if base is None else jnp.asarray(base)
    check_pair(x_train, x_adv)
    check_pair(x_train, base)
    n = x_train.shape[0]
    if np.shape(y_train) != (n,) or x_adv.shape[0] != n or base.shape[0] != n:
        raise ValueError(
            f"need x_train (N, d), y_train (N,), x_adv and base (N, d); got {x_train.shape}, "
            f"{np.shape(y_train)}, {x_adv.shape}, {base.shape}"
        )
    y = jnp.asarray(y_train, x_train.dtype)
    # rows of a_rows: (1/N) sum_k y_k Phi(x_n, x_k) x_k  (the unnormalized predicted direction D_n, over N)
    a_rows = (phi(base, x_train, gamma=gamma, bias=bias) * y[None, :]) @ x_train / n

    def hat_f(z):
        return jnp.mean(y[:, None] * phi(x_train, z, gamma=gamma, bias=bias) * (x_train @ z.T), axis=0)

    def hat_g(z):
        return jnp.mean(phi(x_adv, z, gamma=gamma, bias=bias) * (a_rows @ z.T), axis=0)

    return hat_f, hat_g
