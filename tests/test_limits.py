"""Infinite-width predictors (ntk_adv.limits) against closed forms, neural-tangents' predict, the linearized
finite net, and trained finite nets of growing width."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_adv import empirical, kernels, limits, models, training
from ntk_adv.models import TwoLayerConfig
from ntk_adv.training import TrainConfig


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def f0_fn(z):
    """A fixed non-zero 'initial function' for predictors."""
    return 0.3 * jnp.sin(z[:, 0]) - 0.1 * z[:, 1]


def test_identity_predictor_equals_closed_form(small_data):
    """f_t(z) = f_0(z) + (t/N) sum_n y_n Theta(x_n, z), summed term by term."""
    x, y, z = small_data
    t = 3.7
    with enable_x64():
        x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
        kern = kernels.two_layer_kernel("ntk", gamma=0.2)
        expected = f0_fn(z) + (t / x.shape[0]) * sum(
            y[n] * kern(x[n : n + 1], z)[0] for n in range(x.shape[0])
        )
        pred = limits.identity_predictor(kern, x, y, t=t, f0=f0_fn)
        np.testing.assert_allclose(pred(z), expected, rtol=1e-12)
        centred = limits.identity_predictor(kern, x, y, t=t)
        np.testing.assert_allclose(centred(z), expected - f0_fn(z), rtol=1e-12)
        # a pytree: passes through jit with the kernel and f0 static
        np.testing.assert_allclose(jax.jit(lambda p, zz: p(zz))(pred, z), expected, rtol=1e-12)
        # and differentiable in z (attacks need it)
        assert bool(jnp.all(jnp.isfinite(jax.grad(lambda zz: jnp.sum(pred(zz)))(x))))


@pytest.mark.oracle
@pytest.mark.parametrize("t", [0.5, 20.0, np.inf])
def test_mse_predictor_equals_neural_tangents_gradient_descent_mse(small_data, t):
    """Our loss is the mean over N of (f - y)^2 / 2 under gradient flow for time t, i.e.
    df/dt = -(1/N) Theta (f - y); neural-tangents' gradient_descent_mse normalizes by y_train.size = N with
    learning_rate 1 and y of shape (N, 1), so the times coincide (t = inf: its Cholesky solve)."""
    x, y, z = small_data
    nt = kernels.neural_tangents()
    with enable_x64():
        x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
        kern = kernels.two_layer_kernel("ntk", gamma=0.1, parametrization="ntk")
        q = jnp.concatenate([z, x])  # held-out points and the training points themselves
        k_train, k_test = kernels.kernel_matrix(kern, x), kern(q, x)
        predict_fn = nt.predict.gradient_descent_mse(k_train, y[:, None], learning_rate=1.0)
        nt_train, nt_test = predict_fn(
            None if np.isinf(t) else t, f0_fn(x)[:, None], f0_fn(q)[:, None], k_test
        )
        pred = limits.mse_predictor(kern, x, y, t=t, f0=f0_fn, k_train=k_train)
        assert rel_err(pred(q), nt_test[:, 0]) < (1e-9 if np.isinf(t) else 1e-12)
        assert rel_err(pred(x), nt_train[:, 0]) < 1e-6  # see below
        if np.isinf(t):  # the interpolant
            np.testing.assert_allclose(pred(x), y, atol=1e-8)
        # without k_train the predictor builds Theta(X, X) itself. Its diagonal sits at the cone tip rho = 1,
        # where arccos turns round-off eps into an angle ~ sqrt(eps) ~ 1e-8: hence the looser tolerance.
        default = limits.mse_predictor(kern, x, y, t=t, f0=f0_fn)
        assert rel_err(default(q), nt_test[:, 0]) < 1e-6


def test_mse_predictor_at_time_zero_is_the_initial_function(small_data):
    x, y, z = small_data
    with enable_x64():
        x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
        pred = limits.mse_predictor(kernels.two_layer_kernel("ntk"), x, y, t=0.0, f0=f0_fn)
        np.testing.assert_allclose(pred(z), f0_fn(z), rtol=0, atol=1e-14)


def test_flow_predictor_with_identity_loss_equals_identity_predictor(small_data):
    x, y, z = small_data
    with enable_x64():
        x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
        kern = kernels.two_layer_kernel("ntk", gamma=0.4)
        flow = limits.flow_predictor(kern, x, y, loss="identity", lr=0.05, steps=40, f0=f0_fn)
        closed = limits.identity_predictor(kern, x, y, t=0.05 * 40, f0=f0_fn)
        np.testing.assert_allclose(flow(z), closed(z), rtol=1e-12)
        # make_predictor dispatches on the loss
        for loss, reference in [
            ("identity", closed),
            ("mse", limits.mse_predictor(kern, x, y, lr=0.05, steps=40, f0=f0_fn)),
            ("logistic", limits.flow_predictor(kern, x, y, loss="logistic", lr=0.05, steps=40, f0=f0_fn)),
        ]:
            made = limits.make_predictor(kern, x, y, loss=loss, lr=0.05, steps=40, f0=f0_fn)
            np.testing.assert_allclose(made(z), reference(z), rtol=1e-12)
        np.testing.assert_allclose(
            limits.flow_predictor(kern, x, y, loss="mse", lr=0.05, steps=40, f0=f0_fn)(z),
            limits.mse_predictor(kern, x, y, lr=0.05, steps=40, f0=f0_fn)(z),
            rtol=1e-12,
        )


def test_mse_gradient_descent_limit_is_the_iterated_kernel_step(small_data):
    """The MSE limit at a finite lr is gradient *descent* in function space: f <- f - (lr/N) K (f - y) on the
    training set, with the coefficients accumulating (lr/N)(y - f). Checked against the loop written out, and
    against the flow as lr -> 0 at fixed t = lr * steps."""
    x, y, z = small_data
    with enable_x64():
        x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
        kern = kernels.two_layer_kernel("ntk", gamma=0.2, parametrization="standard")
        k = np.asarray(kernels.kernel_matrix(kern, x))
        n = x.shape[0]
        lam_max = np.linalg.eigvalsh(k).max()
        lr, steps = 1.5 * n / lam_max, 25  # large steps: far from the flow, still convergent
        coef, f = np.zeros(n), np.asarray(f0_fn(x))
        for _ in range(steps):
            step = lr / n * (np.asarray(y) - f)
            coef, f = coef + step, f + k @ step
        gd = limits.mse_predictor(kern, x, y, lr=lr, steps=steps, f0=f0_fn)
        np.testing.assert_allclose(np.asarray(gd.coef), coef, rtol=1e-9, atol=1e-12)
        flow = limits.mse_predictor(kern, x, y, t=lr * steps, f0=f0_fn)
        assert np.max(np.abs(np.asarray(gd(z) - flow(z)))) > 1e-3  # GD at this lr is not the flow
        fine = limits.mse_predictor(kern, x, y, lr=lr / 1000, steps=steps * 1000, f0=f0_fn)
        np.testing.assert_allclose(fine(z), flow(z), rtol=2e-3, atol=1e-6)
        with pytest.raises(ValueError, match=r"lr .* diverges .* below 2N/lambda_max"):
            limits.mse_predictor(kern, x, y, lr=2.01 * n / lam_max, steps=10)


def test_flow_predictor_one_logistic_step(small_data):
    """From f_0 = 0 one Euler step of the logistic loss has coef = (lr / N) y sigmoid(0) = lr y / (2N)."""
    x, y, z = small_data
    with enable_x64():
        x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
        kern = kernels.two_layer_kernel("ntk")
        pred = limits.flow_predictor(kern, x, y, loss="logistic", lr=0.3, steps=1)
        np.testing.assert_allclose(pred.coef, 0.3 * y / (2 * x.shape[0]), rtol=1e-14)
        exp_pred = limits.flow_predictor(kern, x, y, loss="exponential", lr=0.3, steps=1)
        np.testing.assert_allclose(exp_pred.coef, 0.3 * y / x.shape[0], rtol=1e-14)


@pytest.mark.parametrize("loss", ["identity", "logistic", "exponential"])
def test_flow_predictor_equals_gradient_descent_on_the_linearized_net(small_data, loss):
    """Full-batch GD on the linearized net is exactly kernel GD in function space with the empirical NTK at
    init: train(linearize(f, p0)) and flow_predictor(Theta_m, f0 = f(p0)) agree to round-off (float64)."""
    x, y, z = small_data
    cfg = TwoLayerConfig(width=32, gamma=0.2)
    apply_fn, mask = models.make_apply(cfg), models.trainable_mask(cfg)
    with enable_x64():
        x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
        p0 = models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(4), dtype=jnp.float64)
        lin = empirical.linearize(apply_fn, p0)
        tc = TrainConfig.theory(lr=0.5, steps=30, loss=loss)
        trained = training.train(lin, p0, x, y, tc, mask=mask).params

        def theta_m(a, b):
            return empirical.empirical_ntk(apply_fn, p0, a, b, mask=mask)

        pred = limits.flow_predictor(
            theta_m, x, y, loss=loss, lr=tc.lr, steps=tc.steps, f0=lambda zz: apply_fn(p0, zz)
        )
        out = lin(trained, z)
        assert rel_err(out - apply_fn(p0, z), pred(z) - apply_fn(p0, z)) < 1e-9
        assert float(jnp.max(jnp.abs(out - apply_fn(p0, z)))) > 0.1  # training moved the function


@pytest.mark.parametrize("parametrization,lr", [("standard", 0.04), ("ntk", 0.2)])
def test_trained_finite_net_approaches_infinite_width_predictor(wide_init, parametrization, lr):
    """Theory preset, identity loss, t = lr * steps chosen so the function moves by O(1) (about 1x / 1.5x the
    RMS of f_0). Gap = RMS over 8 seeds and 64 test points of (trained net - infinite-width predictor
    f_0 + (t/N) sum_n y_n Theta(x_n, .) with the net's own f_0), relative to the RMS function change.
    In the lazy regime it shrinks like m^(-1/2)."""
    n, d, seeds, widths = 32, wide_init.dim, 8, np.array([64, 256, 1024, 4096])
    tc = TrainConfig.theory(lr=lr, steps=100, loss="identity")
    kern = kernels.two_layer_kernel("ntk", parametrization=parametrization)
    gaps = []
    with enable_x64():
        rng = np.random.default_rng(5)
        x = jnp.asarray(rng.standard_normal((n, d)))
        y = jnp.asarray(np.where(rng.random(n) < 0.5, -1.0, 1.0))
        z = jnp.asarray(rng.standard_normal((64, d)))
        for m in widths:
            cfg = TwoLayerConfig(width=int(m), parametrization=parametrization)
            apply_fn, mask = models.make_apply(cfg), models.trainable_mask(cfg)

            def one_seed(p0, apply_fn=apply_fn, mask=mask):
                trained = training.train(apply_fn, p0, x, y, tc, mask=mask).params
                pred = limits.identity_predictor(
                    kern, x, y, t=tc.lr * tc.steps, f0=lambda zz: apply_fn(p0, zz)
                )
                f0_z, pred_z = apply_fn(p0, z), pred(z)
                return jnp.sum((apply_fn(trained, z) - pred_z) ** 2), jnp.sum((pred_z - f0_z) ** 2)

            gap_sq, move_sq = jax.vmap(one_seed)(wide_init.params(int(m), parametrization, seeds))
            gaps.append(float(jnp.sqrt(jnp.mean(gap_sq) / jnp.mean(move_sq))))
    gaps = np.array(gaps)
    slope = np.polyfit(np.log(widths), np.log(gaps), 1)[0]
    print(f"{parametrization}: relative gaps {np.round(gaps, 4)} slope {slope:.3f}")
    assert slope < -0.3, (gaps, slope)
    assert np.all(gaps[1:] < 1.25 * gaps[:-1]), gaps  # monotone up to seed noise
    assert gaps[-1] < gaps[0] / 3 and gaps[-1] < 0.15


def test_predictor_input_validation(small_data):
    x, y, _ = small_data
    kern = kernels.two_layer_kernel("ntk")
    with pytest.raises(ValueError, match=r"y_train must have shape \(12,\)"):
        limits.identity_predictor(kern, x, y[:5], t=1.0)
    with pytest.raises(ValueError, match="t = lr \\* steps must be finite and >= 0"):
        limits.identity_predictor(kern, x, y, t=-1.0)
    with pytest.raises(ValueError, match="must be finite"):
        limits.identity_predictor(kern, x, y, t=float("nan"))
    with pytest.raises(ValueError, match="2-D"):
        limits.mse_predictor(kern, x[0], y, t=1.0)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        limits.flow_predictor(kern, x, y, loss="hinge", lr=0.1, steps=3)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        limits.make_predictor(kern, x, y, loss="hinge", lr=0.1, steps=3)


@pytest.mark.parametrize("bias", [True, False])
def test_limit_classifiers_follow_theory_formulas(small_data, bias):
    """hat_f(z) = (1/N) sum_n y_n Phi(x_n, z) <x_n, z>;
    hat_g(z) = (1/N) sum_n Phi(x^adv_n, z) [(1/N) sum_k y_k Phi(x_n, x_k) <x_k, z>] (theory.md), term by term.
    Without bias Theta_std = Phi <x, z>, so hat_f is the centred identity-loss predictor at t = 1."""
    x, y, z = small_data
    gamma = 0.3
    rng = np.random.default_rng(2)
    x_adv = rng.standard_normal(x.shape)
    with enable_x64():
        x, y, z, x_adv = (jnp.asarray(v) for v in (x, y, z, x_adv))
        hat_f, hat_g = limits.limit_classifiers(x, y, x_adv, gamma=gamma, bias=bias)
        n = x.shape[0]

        def ph(a, b):
            return kernels.phi(a[None], b[None], gamma=gamma, bias=bias)[0, 0]

        for j in range(3):
            zj = z[j]
            f_ref = sum(y[k] * ph(x[k], zj) * (x[k] @ zj) for k in range(n)) / n
            g_ref = (
                sum(
                    ph(x_adv[i], zj) * sum(y[k] * ph(x[i], x[k]) * (x[k] @ zj) for k in range(n)) / n
                    for i in range(n)
                )
                / n
            )
            np.testing.assert_allclose(hat_f(z)[j], f_ref, rtol=1e-12)
            np.testing.assert_allclose(hat_g(z)[j], g_ref, rtol=1e-12)
        if not bias:
            kern = kernels.two_layer_kernel("ntk", gamma=gamma, bias=False, parametrization="standard")
            np.testing.assert_allclose(hat_f(z), limits.identity_predictor(kern, x, y, t=1.0)(z), rtol=1e-12)


def test_flow_coefficients_with_decay_and_weights_is_gd_on_the_linearized_net():
    """decay and sample_weight: the same coefficients as a plain loop of the stated update, restricted to the
    weighted subset (the other points' coefficients stay 0); decay 0 and unit weights give plain kernel GD."""
    key = jax.random.PRNGKey(3)
    x = jax.random.normal(key, (12, 4))
    y = jnp.sign(jax.random.normal(jax.random.PRNGKey(4), (12,)))
    k = x @ x.T / 4 + 1.0
    w = jnp.asarray([1.0] * 8 + [0.0] * 4)
    lr, decay, steps = 0.3, 0.05, 25
    coef = np.zeros(12)
    for _ in range(steps):  # the update written out
        f = np.asarray(k) @ coef
        coef = (1 - lr * decay) * coef + lr / 8 * np.asarray(w * y) / (1 + np.exp(np.asarray(y) * f))
    got = limits.flow_coefficients(
        "logistic", k, y, jnp.zeros(12), lr=lr, steps=steps, decay=decay, sample_weight=w
    )
    np.testing.assert_allclose(got, coef, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(got)[8:] == 0)
    plain = limits.flow_coefficients("logistic", k, y, jnp.zeros(12), lr=lr, steps=steps)
    ones = limits.flow_coefficients(
        "logistic", k, y, jnp.zeros(12), lr=lr, steps=steps, sample_weight=jnp.ones(12)
    )
    np.testing.assert_array_equal(plain, ones)
