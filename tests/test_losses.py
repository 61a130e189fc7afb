"""Margin losses (ntk_adv.losses): values, derivatives, multi-class forms, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_adv import losses

MARGINS = np.array([-3.0, -0.5, 0.0, 0.7, 2.0])


@pytest.mark.parametrize(
    "name,formula",
    [
        ("identity", lambda u: -u),
        ("logistic", lambda u: np.log1p(np.exp(-u))),
        ("exponential", lambda u: np.exp(-u)),
    ],
)
def test_margin_loss_values(name, formula):
    with enable_x64():
        u = jnp.asarray(MARGINS)
        np.testing.assert_allclose(losses.margin_loss(name)(u), formula(MARGINS), rtol=1e-14)
        # pointwise_loss evaluates l(y f) for labels in {-1, +1}
        f = jnp.asarray([0.3, -1.2, 2.0, 0.0])
        y = jnp.asarray([1.0, 1.0, -1.0, -1.0])
        np.testing.assert_allclose(losses.pointwise_loss(name, f, y), formula(np.asarray(y * f)), rtol=1e-14)
        np.testing.assert_allclose(
            losses.mean_loss(name, f, y), np.mean(formula(np.asarray(y * f))), rtol=1e-14
        )


def test_known_values():
    with enable_x64():
        np.testing.assert_allclose(losses.margin_loss("logistic")(jnp.asarray(0.0)), np.log(2.0), rtol=1e-15)
        np.testing.assert_allclose(losses.margin_loss("exponential")(jnp.asarray(0.0)), 1.0, rtol=1e-15)
        np.testing.assert_allclose(losses.margin_loss("identity")(jnp.asarray(1.5)), -1.5, rtol=1e-15)
        # mse: (f - y)^2 / 2, not a function of the margin
        np.testing.assert_allclose(
            losses.pointwise_loss("mse", jnp.asarray([0.5, -2.0]), jnp.asarray([1.0, -1.0])),
            [0.125, 0.5],
            rtol=1e-15,
        )


def test_logistic_is_stable_at_extreme_margins():
    u = jnp.asarray([-1000.0, 1000.0], jnp.float32)
    out = losses.margin_loss("logistic")(u)
    np.testing.assert_allclose(out, [1000.0, 0.0], rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(losses.margin_loss_derivative("logistic")(u), [-1.0, 0.0], atol=1e-30)


@pytest.mark.parametrize("name", losses.MARGIN_LOSSES)
def test_margin_loss_derivative_is_the_autodiff_derivative(name):
    with enable_x64():
        u = jnp.asarray(MARGINS)
        auto = jax.vmap(jax.grad(losses.margin_loss(name)))(u)
        np.testing.assert_allclose(losses.margin_loss_derivative(name)(u), auto, rtol=1e-14)
        assert bool(jnp.all(losses.margin_loss_derivative(name)(u) < 0))  # all decrease in the margin


def test_multiclass_forms():
    with enable_x64():
        out = jnp.asarray([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
        labels = jnp.asarray([1, 2])
        logp = out - jax.scipy.special.logsumexp(out, axis=1, keepdims=True)
        np.testing.assert_allclose(
            losses.pointwise_loss("logistic", out, labels), [-logp[0, 1], -logp[1, 2]], rtol=1e-14
        )
        onehot = np.eye(3)[[1, 2]]
        np.testing.assert_allclose(
            losses.pointwise_loss("mse", out, labels),
            0.5 * np.sum((np.asarray(out) - onehot) ** 2, axis=1),
            rtol=1e-14,
        )
        with pytest.raises(ValueError, match="loss 'identity' is defined for scalar outputs only"):
            losses.pointwise_loss("identity", out, labels)


def test_check_loss_errors_name_the_loss():
    assert losses.check_loss("logistic") == "logistic"
    with pytest.raises(
        ValueError, match=r"unknown loss 'hinge'; expected one of identity, logistic, exponential, mse"
    ):
        losses.check_loss("hinge")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.pointwise_loss("hinge", jnp.zeros(2), jnp.ones(2))
    with pytest.raises(ValueError, match="unknown loss 'cross_entropy'"):
        losses.margin_loss("cross_entropy")
    with pytest.raises(ValueError, match="loss 'mse' is not a margin loss"):
        losses.margin_loss("mse")
    with pytest.raises(ValueError, match="loss 'mse' is not a margin loss"):
        losses.margin_loss_derivative("mse")
