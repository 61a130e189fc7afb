"""Exact deep (ntk_adv.arch.fc) and convolutional (ntk_adv.arch.cnn) kernels against (a) the neural-tangents
oracle, (b) Monte Carlo over finite nets of growing width (empirical NTK, error ~ m^(-1/2)) and (c) the
two-layer closed forms of ntk_adv.kernels; plus jit, input gradients and bad inputs.

Float64 throughout (``with enable_x64()``). "Relative error" is normwise: max |a - b| / max |b|.
Oracle tests are marked ``oracle`` and skip, saying why, where neural-tangents does not import.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_adv import empirical, kernels, metrics, models
from ntk_adv.arch import ARCHITECTURES, CNN, FC, INF_WIDTH, architecture, blockwise


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


def stax_cnn(stax, arch: CNN):
    width = int(arch.width) if not arch.infinite else 1
    layers = []
    for _ in range(arch.depth):
        conv = stax.Conv(width, arch.filter_shape, padding="SAME", **stax_dense_kwargs(arch, readout=False))
        layers += [conv, stax_activation(stax, arch)]
        if arch.pool:
            layers.append(stax.AvgPool((2, 2), strides=(2, 2)))
    layers.append(stax.Flatten() if arch.readout == "flatten" else stax.GlobalAvgPool())
    layers.append(stax.Dense(1, **stax_dense_kwargs(arch, readout=True)))
    return stax.serial(*layers)[2]


@pytest.fixture
def images(rng):
    return rng.standard_normal((3, 6, 5, 2)), rng.standard_normal((2, 6, 5, 2))


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


# ----------------------------------------------------------------------------- (a) oracle: CNN
CNN_CASES = [  # (activation, gamma, bias, parametrization)
    ("leaky_relu", 0.0, True, "ntk"),
    ("leaky_relu", 0.2, False, "standard"),
    ("leaky_relu", 0.2, True, "standard"),
    ("erf", 0.0, False, "ntk"),
]


@ORACLE
@pytest.mark.parametrize("activation,gamma,bias,parametrization", CNN_CASES)
@pytest.mark.parametrize(
    "readout,pool", [("flatten", False), ("flatten", True), ("gap", False), ("gap", True)]
)
def test_cnn_kernel_equals_neural_tangents(images, readout, pool, activation, gamma, bias, parametrization):
    stax = stax_or_skip()
    arch = CNN(
        width=5 if parametrization == "standard" else INF_WIDTH,
        depth=2,
        readout=readout,
        pool=pool,
        activation=activation,
        gamma=gamma,
        bias=bias,
        parametrization=parametrization,
        w_std=1.3,
        b_std=0.7,
    )
    with enable_x64():
        x, z = (jnp.asarray(v) for v in images)
        ref = stax_cnn(stax, arch)(x, z, ("nngp", "ntk"))
        for get in ("nngp", "ntk"):
            ours = arch.kernel(x, z, get)
            assert ours.shape == (3, 2) and ours.dtype == jnp.float64
            assert rel_err(ours, getattr(ref, get)) <= 1e-6, get


@ORACLE
@pytest.mark.parametrize("readout,pool", [("flatten", False), ("gap", False)])
def test_cnn_depth_three_equals_neural_tangents(rng, readout, pool):
    stax = stax_or_skip()
    arch = CNN(width=INF_WIDTH, depth=3, readout=readout, pool=pool, gamma=0.1)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((3, 5, 5, 3)))
        ref = stax_cnn(stax, arch)(x, x, ("nngp", "ntk"))
        for get in ("nngp", "ntk"):
            assert rel_err(arch.kernel(x, x, get), getattr(ref, get)) <= 1e-6, get


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


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize("pool", [False, True])
def test_one_pixel_cnn_is_the_two_layer_net(vectors, parametrization, pool):
    """A depth-1 CNN with 1x1 filters on 1x1 images of d channels is the two-layer net on d inputs (with or
    without the pixel-pair path): trained='first' gives kernels.ntk, trained='all' (NTK parametrization) the
    FC depth-2 kernel."""
    cnn = CNN(
        width=INF_WIDTH, depth=1, filter_shape=(1, 1), gamma=0.2, parametrization=parametrization,
        trained="first", readout="gap" if pool else "flatten",
    )  # fmt: skip
    with enable_x64():
        x, z = (jnp.asarray(v) for v in vectors)
        xi, zi = x[:, None, None, :], z[:, None, None, :]
        closed = kernels.ntk(x, z, gamma=0.2, parametrization=parametrization)
        assert rel_err(cnn.kernel(xi, zi, "ntk"), closed) <= 1e-12
        assert rel_err(cnn.kernel(xi, zi, "nngp"), kernels.nngp(x, z, gamma=0.2)) <= 1e-12
        if parametrization == "ntk":
            fc = FC(width=INF_WIDTH, depth=2, gamma=0.2)
            assert rel_err(dataclasses.replace(cnn, trained="all").kernel(xi, zi), fc.kernel(x, z)) <= 1e-12


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


MC_WIDTHS = (64, 256, 1024)


@pytest.mark.parametrize(
    "depth,trained,activation", [(2, "first", "leaky_relu"), (3, "all", "leaky_relu"), (5, "all", "erf")]
)
def test_fc_empirical_ntk_converges_at_half_power(rng, depth, trained, activation):
    arch = FC(width=64, depth=depth, gamma=0.2, activation=activation, trained=trained)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((5, 4)))
        ws, errs = monte_carlo_errors(arch, x, MC_WIDTHS, seeds=5)
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


def test_cnn_empirical_ntk_converges_at_half_power(rng):
    arch = CNN(width=8, depth=2, trained="first", gamma=0.2)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((4, 3, 3, 1)))
        ws, errs = monte_carlo_errors(arch, x, (8, 32, 128), seeds=5)
    assert_half_power(ws, errs)


@pytest.mark.slow
@pytest.mark.parametrize(
    "readout,pool,trained", [("flatten", False, "all"), ("flatten", True, "all"), ("gap", False, "all")]
)
def test_cnn_empirical_ntk_converges_at_half_power_to_512(rng, readout, pool, trained):
    arch = CNN(width=16, depth=2, readout=readout, pool=pool, trained=trained, gamma=0.2)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((4, 4, 4, 2)))
        ws, errs = monte_carlo_errors(arch, x, (16, 32, 64, 128, 256, 512), seeds=4)
    assert_half_power(ws, errs, tolerance=0.1)


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


@pytest.mark.parametrize("readout,pool", [("flatten", False), ("flatten", True), ("gap", False)])
def test_cnn_kernel_jits_and_input_gradient_is_finite(images, readout, pool):
    arch = CNN(width=INF_WIDTH, depth=2, readout=readout, pool=pool, gamma=0.1)
    with enable_x64():
        x, z = (jnp.asarray(v) for v in images)
        alpha = jnp.asarray([0.5, -1.0, 2.0])

        def predictor(p):
            return jnp.sum(arch.kernel(p[None], x, "ntk")[0] * alpha)

        for point in (z[0], x[1]):  # a fresh point and a training point (rho = 1 at every position)
            g = jax.jit(jax.grad(predictor))(point)
            assert g.shape == (6, 5, 2) and bool(jnp.all(jnp.isfinite(g)))
        params = arch.with_width(4).init(jax.random.PRNGKey(0), (6, 5, 2), jnp.float64)
        net = arch.with_width(4)
        assert net.apply(params, x).shape == (3,)
        assert net.preactivations(params, x).shape == (3, 6, 5, 4)
        assert net.first_layer(params)[0].shape == (3, 3, 2, 4)


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


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(depth=0), "depth must be an integer >= 1"),
        (dict(readout="max"), "readout"),
        (dict(filter_shape=(3,)), "filter_shape"),
        (dict(gamma=1.5), "gamma"),
    ],
)
def test_cnn_bad_options_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        CNN(**{"width": 8, **kwargs})
    assert "\n" not in str(err.value)


def test_cnn_bad_inputs_are_one_line_errors(images, vectors):
    x, z = images
    arch = CNN(width=INF_WIDTH, depth=3, pool=True)
    for a, b in ((vectors[0], vectors[1]), (x, z[:, :, :, :1]), (x[0], z)):
        with pytest.raises(ValueError, match=r"images \(N, H, W, C\)") as err:
            arch.kernel(a, b)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="too small for 3 2x2 poolings"):
        arch.kernel(x, z)
    with pytest.raises(ValueError, match=r"images \(N, H, W, C\)"):
        CNN(width=4).init(jax.random.PRNGKey(0), (36,))
    net = CNN(width=4, depth=1)
    with pytest.raises(ValueError, match=r"images \(N, H, W, C\)"):
        net.apply(net.init(jax.random.PRNGKey(0), (6, 5, 2)), jnp.zeros((3, 60)))


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
    assert all(ARCHITECTURES[name].name == name for name in ARCHITECTURES)
    with pytest.raises(ValueError, match="unknown architecture 'mlp'; expected one of two-layer, fc, cnn"):
        architecture("mlp")


def test_build_one_constructor_for_every_command():
    """arch.build is how every command turns --arch/--depth/--gamma/... into an architecture."""
    from ntk_adv.arch import CNN, FC, INF_WIDTH, build
    from ntk_adv.models import TwoLayerConfig

    assert build("fc", 16, depth=3, gamma=0.2, parametrization="ntk") == FC(
        width=16, depth=3, gamma=0.2, parametrization="ntk"
    )
    assert build("two-layer", INF_WIDTH, depth=2, gamma=0.1, n_out=10) == TwoLayerConfig(
        INF_WIDTH, gamma=0.1, n_out=10
    )
    assert build("cnn", 4, depth=1).depth == 1 and isinstance(build("cnn", 4), CNN)
    assert build("two-layer", 8, trained=None) == TwoLayerConfig(8)  # a neutral value of an absent field
    with pytest.raises(ValueError, match="fixed depth 2; got 3"):
        build("two-layer", 8, depth=3)
    with pytest.raises(ValueError, match="--arch two-layer has no field 'trained'"):
        build("two-layer", 8, trained="all")
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        build("resnet", 8)
