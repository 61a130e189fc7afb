"""Exact deep (ntk_adv.arch.fc) and convolutional (ntk_adv.arch.cnn) kernels against (a) the neural-tangents
oracle, (b) Monte Carlo over finite nets of growing width (empirical NTK, error ~ m^(-1/2)) and (c) the
two-layer closed forms of ntk_adv.kernels; plus jit, input gradients and bad inputs.

Float64 throughout (``with enable_x64()``). "Relative error" is normwise: max |a - b| / max |b|.
Oracle tests are marked ``oracle`` and skip, saying why, where neural-tangents does not import.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_adv import empirical, kernels, metrics, models
from ntk_adv.arch import ARCHITECTURES, FC, INF_WIDTH, architecture, blockwise


def _oracle_mark():
    """``pytest.mark.oracle`` whether or not the marker is registered (pyproject registers it where the oracle
    environment is built; unregistered, the lookup's unknown-mark warning is not an error here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        return pytest.mark.oracle


ORACLE = _oracle_mark()
ORACLE_REASON = "neural-tangents oracle not importable here (it runs in the pinned oracle environment): "


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def stax_or_skip():
    try:
        return kernels.neural_tangents().stax
    except kernels.OracleMissing as err:
        pytest.skip(ORACLE_REASON + str(err).splitlines()[0])


def stax_activation(stax, arch):
    return stax.Erf() if arch.activation == "erf" else stax.LeakyRelu(arch.gamma)


def stax_dense_kwargs(arch, *, readout: bool):
    return dict(
        W_std=arch.w_std,
        b_std=None if (readout or not arch.bias) else arch.b_std,
        parameterization=arch.parametrization,
    )


def stax_fc(stax, arch: FC):
    """The same FC net in neural-tangents stax (hidden width only matters in the standard parametrization)."""
    width = int(arch.width) if not arch.infinite else 1
    layers = []
    for _ in range(arch.depth - 1):
        layers += [stax.Dense(width, **stax_dense_kwargs(arch, readout=False)), stax_activation(stax, arch)]
    layers.append(stax.Dense(1, **stax_dense_kwargs(arch, readout=True)))
    return stax.serial(*layers)[2]


@pytest.fixture
def vectors(rng):
    return rng.standard_normal((7, 6)), rng.standard_normal((5, 6))


ACTIVATIONS = [("leaky_relu", 0.0), ("leaky_relu", 0.2), ("erf", 0.0)]


# ----------------------------------------------------------------------------- (a) oracle: FC
@ORACLE
@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation,gamma", ACTIVATIONS)
@pytest.mark.parametrize("depth", [3, 5])
def test_fc_kernel_equals_neural_tangents(vectors, depth, activation, gamma, bias, parametrization):
    stax = stax_or_skip()
    # a finite width: the standard parametrization's NTK (trained='all') is that of this width
    arch = FC(
        width=37 if parametrization == "standard" else INF_WIDTH,
        depth=depth,
        activation=activation,
        gamma=gamma,
        bias=bias,
        parametrization=parametrization,
        w_std=1.3,
        b_std=0.7,
    )
    with enable_x64():
        x, z = (jnp.asarray(v) for v in vectors)
        ref = stax_fc(stax, arch)(x, z, ("nngp", "ntk"))
        assert ref.ntk.dtype == jnp.float64
        for get in ("nngp", "ntk"):
            ours = arch.kernel(x, z, get)
            assert ours.shape == (7, 5) and ours.dtype == jnp.float64
            assert rel_err(ours, getattr(ref, get)) <= 1e-6, get


# ----------------------------------------------------------------------------- (c) two-layer closed forms
@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.3])
def test_fc_depth_two_first_layer_equals_two_layer_closed_forms(vectors, gamma, bias, parametrization):
    arch = FC(
        width=INF_WIDTH, depth=2, gamma=gamma, bias=bias, parametrization=parametrization, trained="first"
    )
    two = models.TwoLayerConfig(width=INF_WIDTH, gamma=gamma, bias=bias, parametrization=parametrization)
    with enable_x64():
        x, z = (jnp.asarray(v) for v in vectors)
        closed = kernels.ntk(x, z, gamma=gamma, bias=bias, parametrization=parametrization)
        ours = arch.kernel(x, z, "ntk")
        assert float(jnp.max(jnp.abs(ours - closed))) <= 1e-12 * float(jnp.max(jnp.abs(closed)))
        assert float(jnp.max(jnp.abs(ours - two.kernel(x, z, "ntk")))) <= 1e-12 * float(jnp.max(closed))
        sigma = kernels.nngp(x, z, gamma=gamma, bias=bias)
        assert float(jnp.max(jnp.abs(arch.kernel(x, z, "nngp") - sigma))) <= 1e-12 * float(jnp.max(sigma))


@pytest.mark.parametrize("bias", [True, False])
def test_fc_depth_two_all_layers_equals_two_layer_with_trained_readout(vectors, bias):
    """trained='all' at depth 2 (NTK parametrization) adds the readout's Sigma: the two-layer net with
    train_readout=True."""
    arch = FC(width=INF_WIDTH, depth=2, gamma=0.1, bias=bias, trained="all")
    with enable_x64():
        x, z = (jnp.asarray(v) for v in vectors)
        ref = kernels.ntk(x, z, gamma=0.1, bias=bias, parametrization="ntk", train_readout=True)
        assert rel_err(arch.kernel(x, z, "ntk"), ref) <= 1e-12


def test_fc_finite_net_is_the_same_function_in_both_parametrizations(vectors):
    x = vectors[0]
    with enable_x64():
        outs = []
        for par in ("ntk", "standard"):
            arch = FC(width=16, depth=4, gamma=0.2, parametrization=par, w_std=1.3, b_std=0.7)
            params = arch.init(jax.random.PRNGKey(3), (6,), jnp.float64)
            outs.append(arch.apply(params, jnp.asarray(x)))
        assert outs[0].shape == (7,)
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-12)


def test_fc_mask_preactivations_first_layer(vectors):
    arch = FC(width=8, depth=3, bias=True, trained="first", n_out=2)
    params = arch.init(jax.random.PRNGKey(0), (2, 3))
    assert [sorted(layer) for layer in params] == [["b", "w"], ["b", "w"], ["w"]]
    assert arch.trainable_mask(params) == ({"w": True, "b": True}, {"w": False, "b": False}, {"w": False})
    assert FC(width=8, depth=3).trainable_mask(params)[2] == {"w": True}
    x = jnp.asarray(vectors[0], jnp.float32).reshape(7, 2, 3)
    assert arch.apply(params, x).shape == (7, 2)
    assert arch.preactivations(params, x).shape == (7, 8)
    w, b = arch.first_layer(params)
    assert w.shape == (8, 6) and b.shape == (8,)
    nobias = FC(width=8, depth=3, bias=False)
    assert float(jnp.abs(nobias.first_layer(nobias.init(jax.random.PRNGKey(0), (6,)))[1]).sum()) == 0.0


# ----------------------------------------------------------------------------- (b) Monte Carlo
def monte_carlo_errors(arch, x, widths, seeds):
    """Relative Frobenius error of the empirical NTK (trainable layers) against the kernel, per (width,
    seed); float64."""
    ref = arch.with_width(INF_WIDTH).kernel(x, x, "ntk")
    ws, errs = [], []
    for m in widths:
        net = arch.with_width(m)
        for s in range(seeds):
            params = net.init(jax.random.PRNGKey(1000 * m + s), x.shape[1:], jnp.float64)
            k = empirical.empirical_ntk(net.apply, params, x, mask=net.trainable_mask(params))
            ws.append(m)
            errs.append(float(empirical.relative_frobenius_error(k, ref)))
    return np.asarray(ws), np.asarray(errs)


def assert_half_power(ws, errs, tolerance=0.15):
    """The log-log slope of error vs width: its 95% interval meets [-0.5 - tol, -0.5 + tol]."""
    fit = metrics.fit_loglog_slope(ws, errs)
    assert fit.high < 0, fit  # the error shrinks
    assert fit.low - tolerance <= -0.5 <= fit.high + tolerance, fit
    return fit


MC_WIDTHS = (64, 128, 256, 512, 1024)


@pytest.mark.parametrize(
    "depth,trained,activation", [(2, "first", "leaky_relu"), (3, "all", "leaky_relu"), (5, "all", "erf")]
)
def test_fc_empirical_ntk_converges_at_half_power(rng, depth, trained, activation):
    arch = FC(width=64, depth=depth, gamma=0.2, activation=activation, trained=trained)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((6, 5)))
        ws, errs = monte_carlo_errors(arch, x, MC_WIDTHS, seeds=6)
    assert_half_power(ws, errs)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [2, 3, 5])
@pytest.mark.parametrize("trained", ["first", "all"])
def test_fc_empirical_ntk_converges_at_half_power_to_4096(rng, depth, trained):
    arch = FC(width=64, depth=depth, gamma=0.2, trained=trained)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((5, 5)))
        ws, errs = monte_carlo_errors(arch, x, (64, 256, 1024, 4096), seeds=8)
    fit = assert_half_power(ws, errs, tolerance=0.1)
    assert fit.high - fit.low < 0.4


# ----------------------------------------------------------------------------- jit, grad, blockwise, errors
def test_fc_kernel_jits_and_input_gradient_is_finite(vectors):
    arch = FC(width=INF_WIDTH, depth=4, gamma=0.1)
    with enable_x64():
        x, z = (jnp.asarray(v) for v in vectors)
        alpha = jnp.linspace(-1.0, 1.0, 7)

        def predictor(p):  # a kernel predictor at one point, differentiated in that point
            return jnp.sum(arch.kernel(p[None, :], x, "ntk")[0] * alpha)

        g = jax.jit(jax.grad(predictor))(z[0])
        assert g.shape == (6,) and bool(jnp.all(jnp.isfinite(g)))
        # at a training point itself (rho = 1 on the diagonal) the gradient stays finite
        assert bool(jnp.all(jnp.isfinite(jax.grad(predictor)(x[0]))))
        gx = jax.grad(lambda a: jnp.sum(arch.kernel(a, z, "nngp")))(x)
        assert bool(jnp.all(jnp.isfinite(gx)))
        np.testing.assert_allclose(jax.jit(arch.kernel, static_argnums=2)(x, z, "ntk"), arch.kernel(x, z))


def test_blockwise_equals_one_call(rng):
    arch = FC(width=INF_WIDTH, depth=3)
    x, z = rng.standard_normal((23, 5)), rng.standard_normal((11, 5))
    with enable_x64():
        full = np.asarray(arch.kernel(jnp.asarray(x), jnp.asarray(z)))
        sym = np.asarray(arch.kernel(jnp.asarray(x), jnp.asarray(x)))
        kern = lambda a, b: arch.kernel(a, b, "ntk")  # noqa: E731
        np.testing.assert_allclose(blockwise(kern, x, z, block=4, dtype=np.float64), full, rtol=1e-12)
        out = np.zeros((23, 23))
        got = blockwise(kern, x, block=5, out=out)
        assert got is out
        # entries at rho = 1 differ at sqrt(round-off) (arccos near 1): tiles sum x.x in another order
        np.testing.assert_allclose(out, sym, rtol=1e-7)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(depth=1), "depth must be an integer >= 2"),
        (dict(depth=2.5), "depth must be"),
        (dict(gamma=1.0), "gamma"),
        (dict(gamma=-0.1), "gamma"),
        (dict(activation="tanh"), "activation"),
        (dict(trained="last"), "trained"),
        (dict(parametrization="mup"), "parametrization"),
        (dict(w_std=0.0), "w_std"),
        (dict(width=None), "INF_WIDTH"),
    ],
)
def test_fc_bad_options_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        FC(**{"width": 8, **kwargs})
    assert "\n" not in str(err.value)


def test_fc_bad_calls_are_one_line_errors(vectors):
    x, z = vectors
    with pytest.raises(ValueError, match="same example shape|one example shape") as err:
        FC(width=INF_WIDTH).kernel(x, z[:, :3])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="no infinite-width limit"):
        FC(width=INF_WIDTH, parametrization="standard").kernel(x, z)
    with pytest.raises(ValueError, match="'ntk' or 'nngp'"):
        FC(width=INF_WIDTH).kernel(x, z, "phi")
    with pytest.raises(ValueError, match="finite width"):
        FC(width=INF_WIDTH).init(jax.random.PRNGKey(0), (6,))
    assert math.isinf(FC(width=INF_WIDTH).width)


def test_registry_names_every_architecture():
    assert list(ARCHITECTURES) == ["two-layer", "fc", "cnn"]
    assert architecture("two-layer") is models.TwoLayerConfig and architecture("fc") is FC
    assert models.TwoLayerConfig.name == "two-layer" and FC.name == "fc"
    with pytest.raises(ValueError, match="unknown architecture 'mlp'; expected one of two-layer, fc, cnn"):
        architecture("mlp")
