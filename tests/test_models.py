"""Finite-width two-layer nets (ntk_adv.models): validation, parametrizations, flax wrapper, shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_adv import models
from ntk_adv.models import TwoLayerConfig


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("width", [0, -3, 2.5])
def test_width_below_one_or_non_integer_is_rejected(width):
    with pytest.raises(ValueError, match=r"width must be an integer >= 1"):
        TwoLayerConfig(width=width)


@pytest.mark.parametrize("gamma", [-0.1, 1.0, 1.5, float("nan")])
def test_gamma_outside_unit_interval_is_rejected(gamma):
    with pytest.raises(ValueError, match=r"gamma=.* is outside \[0, 1\)"):
        TwoLayerConfig(width=4, gamma=gamma)


def test_unknown_parametrization_and_bad_n_out_are_rejected():
    with pytest.raises(ValueError, match=r"unknown parametrization 'mup'; expected one of standard, ntk"):
        TwoLayerConfig(width=4, parametrization="mup")
    with pytest.raises(ValueError, match="n_out must be an integer >= 1"):
        TwoLayerConfig(width=4, n_out=0)
    with pytest.raises(ValueError, match="input dimension d must be >= 1"):
        models.init_params(TwoLayerConfig(width=4), 0, key=jax.random.PRNGKey(0))


def test_check_inputs_rejects_wrong_shapes_and_non_finite_values():
    models.check_inputs(np.zeros((3, 4)), d=4)  # valid: no error
    with pytest.raises(ValueError, match=r"x must be 2-D \(N, d\); got shape \(4,\)"):
        models.check_inputs(np.zeros(4))
    with pytest.raises(ValueError, match="2-D"):
        models.check_inputs(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="dimension 5 but the model expects d=4"):
        models.check_inputs(np.zeros((3, 5)), d=4)
    for bad in (np.nan, np.inf, -np.inf):
        x = np.zeros((3, 4))
        x[1, 2] = bad
        with pytest.raises(ValueError, match="z contains NaN or inf"):
            models.check_inputs(x, d=4, name="z")


# ----------------------------------------------------------------------------- parametrizations
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.3])
def test_standard_and_ntk_parametrizations_are_the_same_function_at_init(small_data, gamma, bias):
    x, _, z = small_data
    with enable_x64():
        inputs = jnp.asarray(np.concatenate([x, z]))
        outs = {}
        for par in ("standard", "ntk"):
            cfg = TwoLayerConfig(width=32, gamma=gamma, bias=bias, parametrization=par)
            params = models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(7), dtype=jnp.float64)
            outs[par] = models.make_apply(cfg)(params, inputs)
        np.testing.assert_allclose(outs["standard"], outs["ntk"], rtol=1e-12, atol=1e-13)
        assert float(jnp.std(outs["standard"])) > 0.05  # a non-trivial function
        # but the stored parameters differ by the sqrt(d), sqrt(m) factors
        p_std = models.init_params(
            TwoLayerConfig(width=32), x.shape[1], key=jax.random.PRNGKey(7), dtype=jnp.float64
        )
        p_ntk = models.init_params(
            TwoLayerConfig(width=32, parametrization="ntk"),
            x.shape[1],
            key=jax.random.PRNGKey(7),
            dtype=jnp.float64,
        )
        np.testing.assert_allclose(p_ntk.w, p_std.w * np.sqrt(x.shape[1]), rtol=1e-14)
        np.testing.assert_allclose(p_ntk.a, p_std.a * np.sqrt(32), rtol=1e-14)


def test_init_variances_follow_the_standard_parametrization():
    """w ~ N(0, I/d), b ~ N(0, 1), a ~ N(0, 1/m) (theory.md), checked on a wide net (m d = 2e5 samples)."""
    d, m = 20, 10_000
    p = models.init_params(TwoLayerConfig(width=m), d, key=jax.random.PRNGKey(1))
    assert p.w.shape == (m, d) and p.b.shape == (m,) and p.a.shape == (m,)
    np.testing.assert_allclose(float(jnp.var(p.w)) * d, 1.0, atol=0.02)
    np.testing.assert_allclose(float(jnp.var(p.b)), 1.0, atol=0.05)
    np.testing.assert_allclose(float(jnp.var(p.a)) * m, 1.0, atol=0.05)
    assert abs(float(jnp.mean(p.w))) * np.sqrt(d) < 0.01
    nobias = models.init_params(TwoLayerConfig(width=m, bias=False), d, key=jax.random.PRNGKey(1))
    assert not bool(jnp.any(nobias.b))


def test_apply_matches_the_defining_formula(small_data):
    """f(x) = sum_i a_i sigma(w_i . x + b_i), sigma(u) = max(u, gamma u), evaluated neuron by neuron."""
    x, _, _ = small_data
    cfg = TwoLayerConfig(width=32, gamma=0.2)
    with enable_x64():
        p = models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(2), dtype=jnp.float64)
        out = models.apply(p, jnp.asarray(x), cfg)
        w, b, a = (np.asarray(v) for v in (p.w, p.b, p.a))
        for n in range(x.shape[0]):
            u = w @ x[n] + b
            expected = sum(a[i] * max(u[i], 0.2 * u[i]) for i in range(32))
            np.testing.assert_allclose(out[n], expected, rtol=1e-12)


def test_trainable_mask_names_the_trained_leaves():
    assert models.trainable_mask(TwoLayerConfig(width=3)) == models.TwoLayerParams(w=True, b=True, a=False)
    assert models.trainable_mask(
        TwoLayerConfig(width=3, bias=False, train_readout=True)
    ) == models.TwoLayerParams(w=True, b=False, a=True)


def test_make_apply_is_cached_per_config():
    assert models.make_apply(TwoLayerConfig(width=3)) is models.make_apply(TwoLayerConfig(width=3))
    assert models.make_apply(TwoLayerConfig(width=3)) is not models.make_apply(TwoLayerConfig(width=4))


# ----------------------------------------------------------------------------- flax wrapper, shapes
@pytest.mark.parametrize("n_out", [1, 3])
@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
def test_linen_module_equals_apply(small_data, parametrization, n_out):
    x, _, _ = small_data
    x = jnp.asarray(x, jnp.float32)
    cfg = TwoLayerConfig(width=32, gamma=0.1, n_out=n_out, parametrization=parametrization)
    module = models.TwoLayerNet(cfg)
    variables = module.init(jax.random.PRNGKey(3), x)
    params = variables["params"]["two_layer"]
    assert isinstance(params, models.TwoLayerParams)
    out = module.apply(variables, x)
    expected_shape = (x.shape[0],) if n_out == 1 else (x.shape[0], n_out)
    assert out.shape == expected_shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out, models.apply(params, x, cfg), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(models.linen_apply(module)(variables["params"], x), out, rtol=1e-6, atol=1e-7)


def test_multi_output_shapes(small_data):
    x, _, _ = small_data
    cfg = TwoLayerConfig(width=8, n_out=4)
    p = models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(0))
    assert p.a.shape == (8, 4)
    out = models.make_apply(cfg)(p, jnp.asarray(x, jnp.float32))
    assert out.shape == (x.shape[0], 4)
    assert models.hidden(p, jnp.asarray(x, jnp.float32), cfg).shape == (x.shape[0], 8)
    # each output column is its own scalar two-layer net sharing the hidden layer
    col = models.apply(
        models.TwoLayerParams(w=p.w, b=p.b, a=p.a[:, 2]), jnp.asarray(x, jnp.float32), TwoLayerConfig(width=8)
    )
    np.testing.assert_allclose(out[:, 2], col, rtol=1e-6)


def test_init_scale_multiplies_every_initial_parameter():
    d = 5
    base = models.init_params(TwoLayerConfig(width=32), d, key=jax.random.PRNGKey(4))
    small = models.init_params(TwoLayerConfig(width=32, init_scale=0.1), d, key=jax.random.PRNGKey(4))
    for got, want in zip(jax.tree_util.tree_leaves(small), jax.tree_util.tree_leaves(base)):
        np.testing.assert_allclose(got, 0.1 * want, rtol=1e-6)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="init_scale must be finite and > 0"):
            TwoLayerConfig(width=4, init_scale=bad)
