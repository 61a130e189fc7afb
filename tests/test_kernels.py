"""Closed-form infinite-width kernels (ntk_adv.kernels) against neural-tangents, Monte-Carlo and algebra.

All comparisons with closed forms run in float64 (``with enable_x64()``). "Relative error" is normwise:
max |a - b| / max |b| (elementwise ratios are meaningless where a kernel entry crosses zero).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_adv import kernels, limits

GAMMAS = [0.0, 0.1, 0.5, 0.9]


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def leaky(u, gamma):
    return jnp.where(u > 0, u, gamma * u)


def leaky_grad(u, gamma):
    return jnp.where(u > 0, 1.0, gamma)


# ----------------------------------------------------------------------------- neural-tangents oracle
@pytest.mark.oracle
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_closed_forms_equal_neural_tangents_ntk_parametrization(small_data, gamma, bias):
    x, _, z = small_data
    d = x.shape[1]
    with enable_x64():
        x, z = jnp.asarray(x), jnp.asarray(z)
        _, _, kernel_fn = kernels.stax_two_layer(gamma, bias)
        k = kernel_fn(x, z, ("nngp", "ntk"))
        assert k.ntk.dtype == jnp.float64 and k.ntk.shape == (x.shape[0], z.shape[0])

        first = kernels.ntk(x, z, gamma=gamma, bias=bias, parametrization="ntk")
        nngp = kernels.nngp(x, z, gamma=gamma, bias=bias)
        full = kernels.two_layer_kernel(
            "ntk", gamma=gamma, bias=bias, parametrization="ntk", train_readout=True
        )(x, z)
        phi = kernels.two_layer_kernel("phi", gamma=gamma, bias=bias)(x, z)

        assert rel_err(first, k.ntk - k.nngp) < 1e-10  # first-layer NTK
        assert rel_err(nngp, k.nngp) < 1e-10
        assert rel_err(full, k.ntk) < 1e-10  # readout trained too
        # theory.md: NTK-parametrization first-layer kernel = Phi * (x.z/d + 1)
        assert rel_err(phi * (x @ z.T / d + (1.0 if bias else 0.0)), k.ntk - k.nngp) < 1e-10
        assert rel_err(kernels.two_layer_kernel("nngp", gamma=gamma, bias=bias)(x, z), k.nngp) < 1e-10


@pytest.mark.oracle
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_standard_parametrization_equals_neural_tangents_standard(small_data, gamma, bias):
    """neural-tangents' standard parametrization (W ~ N(0, 1/fan_in), b ~ N(0, 1)) of a width-m net is our
    standard parametrization exactly: total NTK = Phi (x.z + 1) + m Sigma, so 'ntk' - m 'nngp' is the
    first-layer kernel. Relation to the NTK parametrization: only the feature factor differs,
    Theta_std - Theta_ntk = Phi x.z (1 - 1/d); without bias Theta_std(x, z) = Theta_ntk(sqrt(d) x, sqrt(d)
    z)."""
    x, _, z = small_data
    d, m = x.shape[1], 37
    stax = kernels.neural_tangents().stax
    with enable_x64():
        x, z = jnp.asarray(x), jnp.asarray(z)
        _, _, kernel_fn = stax.serial(
            stax.Dense(m, W_std=1.0, b_std=1.0 if bias else None, parameterization="standard"),
            stax.LeakyRelu(gamma),
            stax.Dense(1, W_std=1.0, b_std=None, parameterization="standard"),
        )
        k = kernel_fn(x, z, ("nngp", "ntk"))
        std = kernels.ntk(x, z, gamma=gamma, bias=bias, parametrization="standard")
        assert rel_err(std, k.ntk - m * k.nngp) < 1e-10
        full = kernels.two_layer_kernel(
            "ntk", gamma=gamma, bias=bias, parametrization="standard", train_readout=True, width=m
        )(x, z)
        assert rel_err(full, k.ntk) < 1e-10

        phi = kernels.phi(x, z, gamma=gamma, bias=bias)
        assert rel_err(std, phi * (x @ z.T + (1.0 if bias else 0.0))) < 1e-12
        ntk_par = kernels.ntk(x, z, gamma=gamma, bias=bias, parametrization="ntk")
        assert rel_err(std - ntk_par, phi * (x @ z.T) * (1 - 1 / d)) < 1e-10
        if not bias:  # Phi depends only on the angle: the sqrt(d) rescaling maps one onto the other exactly
            scaled = kernels.ntk(
                np.sqrt(d) * x, np.sqrt(d) * z, gamma=gamma, bias=False, parametrization="ntk"
            )
            assert rel_err(std, scaled) < 1e-10
            assert rel_err(std, d * ntk_par) < 1e-10


@pytest.mark.parametrize("gamma", GAMMAS)
def test_phi_and_nngp_special_angles(gamma):
    """Phi at theta = 0, pi/2, pi and the NNGP diagonal, from the formulas in theory.md."""
    with enable_x64():
        e = jnp.eye(4)
        x = jnp.concatenate([e[:2], -e[:1]])  # e0, e1, -e0
        phi = kernels.phi(x, x, gamma=gamma, bias=False)
        np.testing.assert_allclose(jnp.diag(phi), (1 + gamma**2) / 2, rtol=1e-14)  # theta = 0
        np.testing.assert_allclose(phi[0, 1], (1 + gamma) ** 2 / 4, rtol=1e-14)  # independent: E[sigma']^2
        np.testing.assert_allclose(phi[0, 2], gamma, rtol=1e-14, atol=1e-15)  # antipodal: one side each
        nngp = kernels.nngp(x, x, gamma=gamma, bias=True)
        s_xx = jnp.sum(x * x, axis=1) / 4 + 1
        np.testing.assert_allclose(jnp.diag(nngp), s_xx * (1 + gamma**2) / 2, rtol=1e-13)
        # antipodal without bias: E[sigma(u) sigma(-u)] = -gamma E[u^2] = -gamma s
        np.testing.assert_allclose(
            kernels.nngp(x, x, gamma=gamma, bias=False)[0, 2], -gamma / 4, rtol=1e-13, atol=1e-16
        )


# ----------------------------------------------------------------------------- Monte-Carlo over neurons
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_closed_forms_equal_monte_carlo_over_neurons(small_data, gamma, bias):
    """Average over 200k random neurons w ~ N(0, I/d), b ~ N(0, 1), a ~ N(0, 1/m): every entry within 5
    standard errors of the closed form (Phi, NNGP, first-layer NTK in both parametrizations)."""
    x, _, z = small_data
    x, z = x[:6], z[:5]
    n = 200_000
    with enable_x64():
        x, z = jnp.asarray(x), jnp.asarray(z)
        results = _monte_carlo(x, z, gamma, bias, n)
        for name, (mean, se, closed) in results.items():
            excess = np.asarray(jnp.abs(mean - closed) - 5 * se)
            assert np.all(excess <= 1e-12), (
                f"{name}: max |MC - closed| / se = "
                f"{float(jnp.max(jnp.abs(mean - closed) / (se + 1e-300))):.2f}"
            )
            assert float(jnp.max(se)) < 1e-2 * float(jnp.max(jnp.abs(closed)))  # the test has power


def _monte_carlo(x, z, gamma, bias, n):
    """(MC mean, its standard error, closed form) for each kernel; samples are per-neuron, shape (N, M, n)."""
    d = x.shape[1]
    rng = np.random.default_rng(42)
    w = jnp.asarray(rng.standard_normal((n, d)) / np.sqrt(d))
    b = jnp.asarray(rng.standard_normal(n) if bias else np.zeros(n))
    a = jnp.asarray(rng.standard_normal(n) / np.sqrt(n))
    ux, uz = x @ w.T + b[None, :], z @ w.T + b[None, :]
    beta = 1.0 if bias else 0.0
    # first-layer NTK sample = <grad_(w_i, b_i) f(x), grad_(w_i, b_i) f(z)>
    grad_prod = leaky_grad(ux, gamma)[:, None, :] * leaky_grad(uz, gamma)[None, :, :]
    samples = {
        "phi": (grad_prod, kernels.phi(x, z, gamma=gamma, bias=bias)),
        "nngp": (
            leaky(ux, gamma)[:, None, :] * leaky(uz, gamma)[None, :, :],
            kernels.nngp(x, z, gamma=gamma, bias=bias),
        ),
        # standard: grad_w f = a_i sigma' x, grad_b f = a_i sigma' (times m = n: an average over neurons)
        "ntk_standard": (
            n * (a * a)[None, None, :] * grad_prod * (x @ z.T + beta)[:, :, None],
            kernels.ntk(x, z, gamma=gamma, bias=bias, parametrization="standard"),
        ),
        # ntk: W = sqrt(d) w, A = sqrt(m) a; grad_W f = A sigma' x / sqrt(d m), grad_b f = A sigma' / sqrt(m)
        "ntk_ntk": (
            n * (a * a)[None, None, :] * grad_prod * (x @ z.T / d + beta)[:, :, None],
            kernels.ntk(x, z, gamma=gamma, bias=bias, parametrization="ntk"),
        ),
    }
    return {
        name: (jnp.mean(s, axis=-1), jnp.std(s, axis=-1) / np.sqrt(n), closed)
        for name, (s, closed) in samples.items()
    }


# ----------------------------------------------------------------------------- blockwise evaluation, bridge
def test_kernel_matrix_blockwise_equals_direct(small_data):
    x, _, z = small_data
    assert x.shape[0] % 5 != 0
    with enable_x64():
        x, z = jnp.asarray(x), jnp.asarray(z)
        kern = kernels.two_layer_kernel("ntk", gamma=0.3)
        direct = kern(x, z)
        scale = float(jnp.max(jnp.abs(direct)))
        for block in (1, 5, 7, 100):
            out = kernels.kernel_matrix(kern, x, z, block_size=block)
            assert out.shape == direct.shape and out.dtype == jnp.float64
            np.testing.assert_allclose(out, direct, rtol=1e-13, atol=1e-13 * scale)
        square = kernels.kernel_matrix(kern, x, block_size=5)
        np.testing.assert_allclose(square, kern(x, x), rtol=1e-13, atol=1e-13 * scale)
        np.testing.assert_allclose(square, square.T, rtol=1e-13, atol=1e-13 * scale)
    with pytest.raises(ValueError, match="dimension"):
        kernels.kernel_matrix(kern, x, z[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        kernels.kernel_matrix(kern, x[0], z)


@pytest.mark.oracle
def test_stax_kernel_bridge_for_deeper_net(small_data):
    """A 3-layer stax net goes through ``stax_kernel`` into ``kernel_matrix`` and ``identity_predictor``."""
    x, y, z = small_data
    stax = kernels.neural_tangents().stax
    _, _, kernel_fn = stax.serial(
        stax.Dense(512, W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Dense(512, W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Dense(1, W_std=1.5, b_std=0.0),
    )
    with enable_x64():
        x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
        kern = kernels.stax_kernel(kernel_fn, "ntk")
        k_zx = kern(z, x)
        assert k_zx.shape == (z.shape[0], x.shape[0])
        np.testing.assert_allclose(k_zx, kernel_fn(z, x, "ntk"), rtol=1e-14)
        np.testing.assert_allclose(
            kernels.stax_kernel(kernel_fn, "nngp")(z, x), kernel_fn(z, x, "nngp"), rtol=1e-14
        )
        np.testing.assert_allclose(kernels.kernel_matrix(kern, z, x, block_size=4), k_zx, rtol=1e-12)
        # a genuinely deeper kernel: not the two-layer one, and a valid (PSD) Gram matrix
        assert rel_err(k_zx, kernels.ntk(z, x, parametrization="ntk", train_readout=True)) > 1e-2
        assert float(jnp.min(jnp.linalg.eigvalsh(kern(x, x)))) > -1e-10

        t = 2.5
        pred = limits.identity_predictor(kern, x, y, t=t)
        np.testing.assert_allclose(pred(z), (t / x.shape[0]) * kernel_fn(z, x, "ntk") @ y, rtol=1e-12)
    with pytest.raises(ValueError, match="'cov'"):
        kernels.stax_kernel(kernel_fn, "cov")


# ----------------------------------------------------------------------------- safe gradients
GRAD_KINDS = [
    ("phi", {}),
    ("nngp", {}),
    ("ntk", {"parametrization": "standard"}),
    ("ntk", {"parametrization": "ntk", "train_readout": True}),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.5])
@pytest.mark.parametrize("kind,kw", GRAD_KINDS, ids=["phi", "nngp", "ntk_std", "ntk_ntk_readout"])
def test_gradient_at_training_points_is_finite(small_data, kind, kw, gamma, bias):
    """At z == x_n the angle sits at the cone tip rho = 1: arccos' is infinite there. The safe arccos must
    give a finite gradient, equal to the symmetric (central-difference) derivative: the zero subgradient of
    the tip for Phi and the NTK, the true gradient for the (differentiable) NNGP."""
    x, _, _ = small_data
    kern = kernels.two_layer_kernel(kind, gamma=gamma, bias=bias, **kw)
    c = np.linspace(-1.0, 1.0, x.shape[0])
    with enable_x64():
        x64, c = jnp.asarray(x), jnp.asarray(c)

        def objective(zz):
            return jnp.sum(kern(zz, x64) @ c)  # row n of zz meets training point n at the tip

        grad = jax.grad(objective)(x64)
        assert bool(jnp.all(jnp.isfinite(grad)))
        v = jnp.asarray(np.random.default_rng(3).standard_normal(x.shape))
        h = 1e-5
        central = (objective(x64 + h * v) - objective(x64 - h * v)) / (2 * h)
        directional = jnp.sum(grad * v)
        assert abs(float(central - directional)) < 1e-4 * (1.0 + abs(float(directional)))
    x32, c32 = jnp.asarray(x, jnp.float32), jnp.asarray(c, jnp.float32)
    grad32 = jax.grad(lambda zz: jnp.sum(kern(zz, x32) @ c32))(x32)
    assert grad32.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(grad32)))


def test_gradient_away_from_tips_matches_finite_differences(small_data):
    x, _, z = small_data
    with enable_x64():
        x, z = jnp.asarray(x), jnp.asarray(z)
        for kind in ("phi", "nngp", "ntk"):
            kern = kernels.two_layer_kernel(kind, gamma=0.2)
            obj = lambda zz: jnp.sum(jnp.sin(kern(zz, x)))  # noqa: B023, E731
            grad = jax.grad(obj)(z)
            v = jnp.asarray(np.random.default_rng(4).standard_normal(z.shape))
            h = 1e-6
            central = (obj(z + h * v) - obj(z - h * v)) / (2 * h)
            np.testing.assert_allclose(jnp.sum(grad * v), central, rtol=1e-6)


# ----------------------------------------------------------------------------- misc API
def test_predicted_direction_is_normalized_weighted_sum(small_data):
    x, y, z = small_data
    with enable_x64():
        x, y, z = jnp.asarray(x), jnp.asarray(y), jnp.asarray(z)
        dirs = kernels.predicted_direction(z, x, y, gamma=0.3)
        assert dirs.shape == z.shape
        np.testing.assert_allclose(jnp.linalg.norm(dirs, axis=1), 1.0, rtol=1e-12)
        for i in range(z.shape[0]):
            raw = sum(
                y[k] * kernels.phi(z[i : i + 1], x[k : k + 1], gamma=0.3)[0, 0] * x[k]
                for k in range(x.shape[0])
            )
            np.testing.assert_allclose(dirs[i], raw / jnp.linalg.norm(raw), rtol=1e-10)


def test_kernel_argument_validation():
    with pytest.raises(ValueError, match=r"gamma=1\.0 is outside \[0, 1\)"):
        kernels.two_layer_kernel("ntk", gamma=1.0)
    with pytest.raises(ValueError, match="outside"):
        kernels.check_gamma(-0.1)
    with pytest.raises(ValueError, match="outside"):
        kernels.check_gamma(float("nan"))
    with pytest.raises(ValueError, match="unknown parametrization 'mup'"):
        kernels.two_layer_kernel("ntk", parametrization="mup")
    with pytest.raises(ValueError, match="unknown kernel kind 'cntk'"):
        kernels.two_layer_kernel("cntk")
    with pytest.raises(ValueError, match="width"):
        kernels.two_layer_kernel("ntk", train_readout=True, parametrization="standard")
    with pytest.raises(ValueError, match="dimension"):
        kernels.check_pair(np.zeros((3, 4)), np.zeros((2, 5)))
