"""Empirical NTK and linearization (ntk_adv.empirical) against neural-tangents, the closed forms and
the m^(-1/2) convergence law."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_adv import empirical, kernels, models
from ntk_adv.models import TwoLayerConfig

WIDTHS = [64, 256, 1024, 4096]
PARAM_READOUT = [("standard", False), ("standard", True), ("ntk", False), ("ntk", True)]


def rel_err(a, b) -> float:
    return float(empirical.relative_frobenius_error(jnp.asarray(a), jnp.asarray(b)))


def limit_kernel(x, z, cfg: TwoLayerConfig):
    return kernels.ntk(
        x,
        z,
        gamma=cfg.gamma,
        bias=cfg.bias,
        parametrization=cfg.parametrization,
        train_readout=cfg.train_readout,
        width=cfg.width,
    )


# ----------------------------------------------------------------------------- oracle: neural-tangents
@pytest.mark.oracle
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("parametrization,train_readout", PARAM_READOUT)
def test_empirical_ntk_equals_neural_tangents_empirical_ntk_fn(
    small_data, parametrization, train_readout, bias
):
    """Same model, same params: our Jacobian contraction restricted to the trainable leaves equals
    neural-tangents' empirical_ntk_fn on the sub-pytree of those leaves (float64, rtol 1e-12)."""
    x, _, z = small_data
    nt = kernels.neural_tangents()
    cfg = TwoLayerConfig(
        width=32, gamma=0.3, bias=bias, train_readout=train_readout, parametrization=parametrization
    )
    apply_fn = models.make_apply(cfg)
    with enable_x64():
        x, z = jnp.asarray(x), jnp.asarray(z)
        p0 = models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(5), dtype=jnp.float64)
        mask = models.trainable_mask(cfg)
        ours = empirical.empirical_ntk(apply_fn, p0, x, z, mask=mask)
        assert ours.shape == (x.shape[0], z.shape[0]) and ours.dtype == jnp.float64

        trained = {name: getattr(p0, name) for name in ("w", "b", "a") if getattr(mask, name)}

        def f_sub(sub, xx):  # the net as a function of its trainable leaves only, output (N, 1)
            return apply_fn(p0.replace(**sub), xx)[:, None]

        for implementation in (1, 2):  # jacobian contraction, NTK-vector products
            oracle = nt.empirical_ntk_fn(f_sub, trace_axes=(-1,), implementation=implementation)(
                x, z, trained
            )
            np.testing.assert_allclose(ours, oracle, rtol=1e-12, atol=1e-12 * float(jnp.max(jnp.abs(oracle))))
        # all leaves (mask=None) = neural-tangents on the full pytree
        full = nt.empirical_ntk_fn(lambda p, xx: apply_fn(p, xx)[:, None])(x, z, p0)
        np.testing.assert_allclose(
            empirical.empirical_ntk(apply_fn, p0, x, z),
            full,
            rtol=1e-12,
            atol=1e-12 * float(jnp.max(jnp.abs(full))),
        )


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("parametrization,train_readout", PARAM_READOUT)
def test_two_layer_empirical_ntk_equals_jacobian_contraction(
    small_data, parametrization, train_readout, bias
):
    x, _, z = small_data
    cfg = TwoLayerConfig(
        width=32, gamma=0.3, bias=bias, train_readout=train_readout, parametrization=parametrization
    )
    with enable_x64():
        x, z = jnp.asarray(x), jnp.asarray(z)
        p0 = models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(6), dtype=jnp.float64)
        reference = empirical.empirical_ntk(models.make_apply(cfg), p0, x, z, mask=models.trainable_mask(cfg))
        fast = empirical.two_layer_empirical_ntk(p0, x, z, cfg)
        np.testing.assert_allclose(
            fast, reference, rtol=1e-12, atol=1e-12 * float(jnp.max(jnp.abs(reference)))
        )


def test_empirical_ntk_rejects_vector_outputs(small_data):
    x, _, _ = small_data
    cfg = TwoLayerConfig(width=32, n_out=2)
    p0 = models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"scalar outputs .* shape \(1, 2\)"):
        empirical.empirical_ntk(models.make_apply(cfg), p0, jnp.asarray(x, jnp.float32))


# ----------------------------------------------------------------------------- convergence to the limit
@pytest.mark.parametrize("parametrization,train_readout", PARAM_READOUT)
def test_empirical_ntk_approaches_closed_form_at_large_width(small_data, parametrization, train_readout):
    """At m = 16384 the empirical NTK (of the leaves the net trains) is within 6% (Frobenius) of kernels.ntk
    in the net's own parametrization (expected error ~ 0.3 / sqrt(m / 64) ~ 2%); the other parametrization's
    kernel is far off, so the test tells them apart."""
    x, _, _ = small_data
    m = 16384
    cfg = TwoLayerConfig(width=m, gamma=0.2, train_readout=train_readout, parametrization=parametrization)
    with enable_x64():
        x = jnp.asarray(x)
        p0 = models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(11), dtype=jnp.float64)
        emp = empirical.empirical_ntk(models.make_apply(cfg), p0, x, mask=models.trainable_mask(cfg))
        assert rel_err(emp, limit_kernel(x, x, cfg)) < 0.06
        other = "ntk" if parametrization == "standard" else "standard"
        wrong = limit_kernel(
            x, x, TwoLayerConfig(width=m, gamma=0.2, train_readout=train_readout, parametrization=other)
        )
        assert rel_err(emp, wrong) > 0.3


@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
def test_empirical_ntk_error_decays_like_inverse_sqrt_width(wide_init, parametrization):
    """RMS relative Frobenius error sqrt(E ||Theta_m - Theta||_F^2) / ||Theta||_F over 8 inits per width.
    Theta_m is an average of m i.i.d. neuron terms with mean Theta, so it is proportional to m^(-1/2):
    the fitted log-log slope over m = 64 ... 4096 must lie in [-0.65, -0.35]."""
    errors = []
    with enable_x64():
        x = jnp.asarray(np.random.default_rng(0).standard_normal((16, wide_init.dim)))
        for m in WIDTHS:
            cfg = TwoLayerConfig(width=m, gamma=0.1, parametrization=parametrization)
            apply_fn, mask = models.make_apply(cfg), models.trainable_mask(cfg)
            params = wide_init.params(m, parametrization)
            emp = jax.vmap(lambda p, f=apply_fn, mk=mask: empirical.empirical_ntk(f, p, x, mask=mk))(params)
            ref = limit_kernel(x, x, cfg)
            sq = jnp.sum((emp - ref[None]) ** 2, axis=(1, 2))
            errors.append(float(jnp.sqrt(jnp.mean(sq)) / jnp.linalg.norm(ref)))
    errors = np.array(errors)
    slope = np.polyfit(np.log(WIDTHS), np.log(errors), 1)[0]
    print(f"{parametrization}: relative errors {np.round(errors, 4)} slope {slope:.3f}")
    assert -0.65 <= slope <= -0.35, (errors, slope)
    assert errors[-1] < errors[0] / 4  # 64x the width: about 8x smaller
    assert errors[-1] < 0.08


# ----------------------------------------------------------------------------- linearization
def test_linearize_equals_model_at_params0_and_is_second_order_accurate(small_data):
    """f(p0 + dv) - f_lin(p0 + dv) = d^2 Q exactly while no pre-activation changes sign, with
    Q(x) = sum_i v_a,i sigma'(u_i(x)) (v_w,i . x + v_b,i) (the only bilinear term of the net); with a frozen
    readout (v_a = 0) the net is piecewise linear in (w, b) and the linearization is exact."""
    x, _, _ = small_data
    gamma = 0.2
    cfg = TwoLayerConfig(width=32, gamma=gamma, train_readout=True)
    apply_fn = models.make_apply(cfg)
    with enable_x64():
        x = jnp.asarray(x)
        p0 = models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(8), dtype=jnp.float64)
        lin = empirical.linearize(apply_fn, p0)
        f0 = apply_fn(p0, x)
        np.testing.assert_allclose(lin(p0, x), f0, rtol=0, atol=1e-15 * float(jnp.max(jnp.abs(f0))))

        rng = np.random.default_rng(9)
        v = jax.tree_util.tree_map(lambda leaf: jnp.asarray(rng.standard_normal(leaf.shape)), p0)
        u = models.hidden(p0, x, cfg)
        slope = jnp.where(u > 0, 1.0, gamma)
        q = (slope * (x @ v.w.T + v.b[None, :])) @ v.a
        assert float(jnp.max(jnp.abs(q))) > 1e-2

        def shifted(delta, direction):
            return jax.tree_util.tree_map(lambda p, t: p + delta * t, p0, direction)

        for delta in (1e-4, 1e-5):
            p = shifted(delta, v)
            assert bool(jnp.all(jnp.sign(models.hidden(p, x, cfg)) == jnp.sign(u)))  # no kink crossed
            gap = apply_fn(p, x) - lin(p, x)
            np.testing.assert_allclose(gap / delta**2, q, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(q))))
            first_order = lin(p, x) - f0
            assert float(jnp.max(jnp.abs(gap))) < 1e-2 * float(jnp.max(jnp.abs(first_order)))

        v_frozen = v.replace(a=jnp.zeros_like(v.a))
        p = shifted(1e-4, v_frozen)
        np.testing.assert_allclose(apply_fn(p, x), lin(p, x), rtol=0, atol=1e-13)


def test_relative_frobenius_error():
    ref = jnp.array([[3.0, 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(
        empirical.relative_frobenius_error(ref + jnp.array([[0.0, 0.5], [0.0, 0.0]]), ref), 0.1, rtol=1e-6
    )
    assert float(empirical.relative_frobenius_error(ref, ref)) == 0.0


def test_implicit_empirical_ntk_equals_explicit_on_deep_nets():
    """The Jacobian-free empirical NTK (vjp then jvp per column) equals the explicit one to round-off on a
    3-layer fc net (every layer trained, and the first layer only) and on the two-layer net."""
    from ntk_adv.arch import ARCHITECTURES

    with jax.experimental.enable_x64():
        x = jax.random.normal(jax.random.PRNGKey(0), (7, 5), jnp.float64)
        z = jax.random.normal(jax.random.PRNGKey(1), (4, 5), jnp.float64)
        for trained in ("all", "first"):
            net = ARCHITECTURES["fc"](width=16, depth=3, trained=trained)
            p = net.init(jax.random.PRNGKey(2), (5,), jnp.float64)
            mask = net.trainable_mask(p)
            explicit = empirical.empirical_ntk(net.apply, p, x, z, mask=mask)
            implicit = empirical.empirical_ntk_implicit(net.apply, p, x, z, mask=mask, batch=3)
            assert implicit.shape == (7, 4)
            np.testing.assert_allclose(implicit, explicit, rtol=1e-12, atol=1e-12)
        cfg = models.TwoLayerConfig(32, gamma=0.2)
        p = models.init_params(cfg, 5, key=jax.random.PRNGKey(3), dtype=jnp.float64)
        ref = empirical.two_layer_empirical_ntk(p, x, z, cfg)
        got = empirical.empirical_ntk_implicit(
            models.make_apply(cfg), p, x, z, mask=models.trainable_mask(cfg)
        )
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
