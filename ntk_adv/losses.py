"""Margin losses l(y * f) used for training and for targeted attacks.

Every loss is a function of the margin ``u = y * f(x)`` (scalar outputs, labels in {-1, +1}),
except ``mse`` which depends on ``f - y``.  All are averaged over the set by the callers.

identity     l(u) = -u                  (Kumano et al. 2024, the lazy-regime theory loss)
logistic     l(u) = log(1 + exp(-u))
exponential  l(u) = exp(-u)             (Kumano et al. ICLR 2024, no-bias variant)
mse          l(f, y) = (f - y)^2 / 2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import jax
import jax.numpy as jnp

Loss = Literal["identity", "logistic", "exponential", "mse"]
LOSSES: tuple[str, ...] = get_args(Loss)
MARGIN_LOSSES = ("identity", "logistic", "exponential")


def check_loss(name: str) -> str:
    """Return ``name`` if it is a known loss, else raise ValueError listing the valid names."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    return name


def margin_loss(name: str) -> Callable[[jax.Array], jax.Array]:
    """Elementwise loss of the margin u = y f(x) for a margin loss ``name``."""
    if name == "identity":
        return lambda u: -u
    if name == "logistic":
        return lambda u: jax.nn.softplus(-u)
    if name == "exponential":
        return lambda u: jnp.exp(-u)
    check_loss(name)
    raise ValueError(f"loss {name!r} is not a margin loss; expected one of {', '.join(MARGIN_LOSSES)}")


def margin_loss_derivative(name: str) -> Callable[[jax.Array], jax.Array]:
    """d l / d u for a margin loss (used by kernel gradient flow)."""
    if name == "identity":
        return lambda u: -jnp.ones_like(u)
    if name == "logistic":
        return lambda u: -jax.nn.sigmoid(-u)
    if name == "exponential":
        return lambda u: -jnp.exp(-u)
    return margin_loss(name)  # raises with a clear message


def pointwise_loss(name: str, outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example loss, shape ``(N,)`` for scalar ``outputs`` (N,) and ``labels`` (N,) in {-1, +1}.

    For C-class outputs (N, C) with integer labels (N,), ``logistic`` is the softmax cross-entropy and
    ``mse`` the squared error against one-hot targets.
    """
    check_loss(name)
    if outputs.ndim == 2:
        n_classes = outputs.shape[1]
        onehot = jax.nn.one_hot(labels.astype(jnp.int32), n_classes, dtype=outputs.dtype)
        if name == "logistic":
            return -jnp.sum(onehot * jax.nn.log_softmax(outputs), axis=1)
        if name == "mse":
            return 0.5 * jnp.sum((outputs - onehot) ** 2, axis=1)
        raise ValueError(
            f"loss {name!r} is defined for scalar outputs only; use 'logistic' or 'mse' for C classes"
        )
    if name == "mse":
        return 0.5 * (outputs - labels) ** 2
    return margin_loss(name)(labels * outputs)


def mean_loss(name: str, outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean of :func:`pointwise_loss` over the set (a scalar)."""
    return jnp.mean(pointwise_loss(name, outputs, labels))
