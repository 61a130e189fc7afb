"""The theory's numbers against independent computations: the decomposition of the limit g, the NNGP variance
of the initial function (Monte Carlo), the predicted agreement over g's random init (Monte Carlo), the
heavy-ball effective time (optax), the first-order expansion in eps, balanced targets."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import enable_x64

from ntk_adv import kernels, limits, models
from ntk_adv.data import DataSpec
from ntk_adv.models import TwoLayerConfig
from ntk_adv.perturbation import protocol
from ntk_adv.training import TrainConfig, effective_time


@pytest.mark.parametrize("param", ["standard", "ntk"])
@pytest.mark.parametrize("bias", [True, False])
def test_kernel_parts_sum_to_the_kernel(param, bias):
    with enable_x64():
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
        x = jax.random.normal(k1, (30, 7), jnp.float64)
        z = jax.random.normal(k2, (11, 7), jnp.float64)
        coef = jax.random.normal(k3, (30,), jnp.float64)
        b, s = limits.kernel_parts(x, coef, z, gamma=0.3, bias=bias, parametrization=param)
        full = kernels.ntk(z, x, gamma=0.3, bias=bias, parametrization=param) @ coef
        np.testing.assert_allclose(np.asarray(b + s), np.asarray(full), rtol=1e-12, atol=1e-12)
        if not bias:
            assert float(jnp.max(jnp.abs(b))) == 0.0


def test_nngp_diag_is_the_variance_of_the_initial_function():
    z = 2.0 * np.random.default_rng(1).standard_normal((5, 6))
    with enable_x64():
        z64 = jnp.asarray(z, jnp.float64)
        np.testing.assert_allclose(
            np.asarray(kernels.nngp_diag(z64, gamma=0.2)),
            np.diag(np.asarray(kernels.nngp(z64, z64, gamma=0.2))),
            rtol=1e-12,
        )
    cfg = models.TwoLayerConfig(2048, gamma=0.2)
    keys = jax.random.split(jax.random.PRNGKey(2), 400)
    outs = jax.vmap(lambda k: models.apply(models.init_params(cfg, 6, key=k), z.astype(jnp.float32), cfg))(
        keys
    )
    var = np.var(np.asarray(outs), axis=0)
    # 400 draws: the sample variance is within ~4 * sqrt(2/400) = 28% of the truth
    np.testing.assert_allclose(var, np.asarray(kernels.nngp_diag(jnp.asarray(z), gamma=0.2)), rtol=0.28)


def test_predicted_agreement_is_the_expectation_over_g0():
    """E over g_0 ~ N(0, Sigma(z,z)) of agreement(f, g_0 + h): closed form vs Monte Carlo over 4000 draws."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((50, 4))
    f_z, h = rng.standard_normal(50), 0.7 * rng.standard_normal(50)
    var = np.asarray(kernels.nngp_diag(jnp.asarray(z)))
    g0 = rng.standard_normal((4000, 50)) * np.sqrt(var)
    mc = np.mean(np.where(f_z >= 0, 1, -1) == np.where(g0 + h >= 0, 1, -1))
    cfg = protocol.ProtocolConfig(data=DataSpec("gauss", n_train=4, n_test=4, d=4))
    out = protocol.decomposition(
        cfg, jnp.asarray(f_z), jnp.zeros(50), jnp.asarray(h), jnp.ones(4), jnp.asarray(z), g0_z=jnp.zeros(50)
    )
    assert float(out["agreement_predicted"]) == pytest.approx(mc, abs=0.01)


@pytest.mark.parametrize("steps", [1, 7, 100])
def test_heavy_ball_effective_time_matches_optax(steps):
    """Constant gradient 1: optax sgd(momentum=0.9) moves the parameter by exactly the effective time."""
    with enable_x64():
        opt = optax.sgd(0.03, momentum=0.9)
        p = jnp.zeros((), jnp.float64)
        state = opt.init(p)
        for _ in range(steps):
            upd, state = opt.update(jnp.ones((), jnp.float64), state, p)
            p = optax.apply_updates(p, upd)
        tau = effective_time(TrainConfig.paper(lr=0.03, steps=steps))
        assert float(-p) == pytest.approx(tau, rel=1e-12)
    assert effective_time(TrainConfig.theory(lr=0.03, steps=steps)) == pytest.approx(0.03 * steps)
    assert effective_time(TrainConfig.paper(lr=1.0, steps=100)) == pytest.approx(910.0, abs=0.01)


def test_first_order_in_eps_matches_the_exact_limit():
    """(g - g_0)/tau = A + eps L + O(eps^2): the remainder over eps^2 stays bounded as eps shrinks."""
    with enable_x64():
        k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(3), 4)
        x = jax.random.normal(k1, (40, 10), jnp.float64)
        z = jax.random.normal(k2, (25, 10), jnp.float64)
        u = jax.random.normal(k3, (40, 10), jnp.float64)
        u = u / jnp.linalg.norm(u, axis=1, keepdims=True)
        y_adv = jnp.where(jax.random.bernoulli(k4, 0.5, (40,)), 1.0, -1.0)
        kernel = kernels.two_layer_kernel(gamma=0.1)
        for base in (jnp.zeros_like(x), x):  # scenario (a), scenario (b)
            a_term, l_term = limits.first_order_in_eps(kernel, base, y_adv, u, z)
            rem = []
            for eps in (1e-2, 1e-3):
                exact = y_adv @ kernel(base + eps * y_adv[:, None] * u, z) / 40
                rem.append(float(jnp.max(jnp.abs(exact - a_term - eps * l_term))) / eps**2)
            assert rem[1] < 2 * rem[0] + 1e-6
        # scenario (a): A = mean(y_adv) Phi_0(z), the imbalance through the bias
        a_term, _ = limits.first_order_in_eps(kernel, jnp.zeros_like(x), y_adv, u, z)
        phi0 = kernels.phi(jnp.zeros((1, 10)), z, gamma=0.1)[0]
        np.testing.assert_allclose(np.asarray(a_term), float(jnp.mean(y_adv)) * np.asarray(phi0), rtol=1e-12)
        with pytest.raises(ValueError, match="needs a kernel with bias"):
            limits.first_order_in_eps(kernels.two_layer_kernel(bias=False), jnp.zeros_like(x), y_adv, u, z)


def test_balanced_targets_are_exactly_balanced_and_seeded():
    cfg = protocol.ProtocolConfig(data=DataSpec("gauss", n_train=4, n_test=4, d=4), targets="balanced")
    y = jnp.ones(101)
    t0 = protocol.make_targets(cfg, y, jax.random.PRNGKey(0))
    t1 = protocol.make_targets(cfg, y, jax.random.PRNGKey(1))
    assert float(jnp.sum(t0)) == 1.0 and set(np.unique(np.asarray(t0))) == {-1.0, 1.0}
    assert not np.array_equal(np.asarray(t0), np.asarray(t1))


def test_paper_preset_limit_uses_the_heavy_ball_time():
    """Under momentum 0.9 the finite nets converge to the limit at the effective time ~ 9.1 lr T (T = 100),
    not at lr T: with lr T the relative gap of g to its limit would be ~ 5 (the limit moves 9x too little)."""
    from ntk_adv.perturbation import batch

    data = DataSpec("digits", n_train=60, n_test=60)
    cfg = protocol.ProtocolConfig(
        data=data,
        arch=TwoLayerConfig(2048),
        lr_f=0.01,
        steps_f=100,
        lr_g=0.01,
        steps_g=100,
        eps=1.0,
        preset="paper",
    )
    assert cfg.limit_time("g") == pytest.approx(9.100024, rel=1e-6)
    res = batch.run_protocol_batch([(cfg, s) for s in range(2)])
    assert max(r["g_gap"] for r in res) < 0.15 and max(r["f_gap"] for r in res) < 0.15
    assert all(abs(r["agreement"] - r["agreement_predicted"]) < 0.1 for r in res)
