"""Tests for ntk_adv.attacks: constraints, untargeted (labels=) and targeted (targets=) objectives, closed
forms on a linear model, validation."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_adv import attack_checks, lbfgs
from ntk_adv import attacks as A

N, D, H = 24, 6, 32


def _two_layer_relu(key: jax.Array, d: int = D, h: int = H):
    """Small random two-layer ReLU net, f(x) = a . relu(W x + b) (the predictor used by the tests)."""
    kw, kb, ka = jax.random.split(key, 3)
    w = jax.random.normal(kw, (h, d)) / jnp.sqrt(d)
    b = jax.random.normal(kb, (h,))
    a = jax.random.normal(ka, (h,)) / jnp.sqrt(h)
    return lambda x: jax.nn.relu(x @ w.T + b[None, :]) @ a


def _linear(w, b):
    return lambda x: x @ w + b


@pytest.fixture(scope="module")
def data():
    kx, kt, kn, kw = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.uniform(kx, (N, D), minval=0.05, maxval=0.95)
    t = jnp.where(jax.random.bernoulli(kt, 0.5, (N,)), 1.0, -1.0)
    net = _two_layer_relu(kn)
    w = jax.random.normal(kw, (D,))
    lin = _linear(w, jnp.asarray(0.3))
    return x, t, net, lin, w


def _margin(predict, x, t):
    return t * predict(x)


def _in_box(x, eta, lo, hi):
    z = x + eta
    lo, hi = jnp.broadcast_to(lo, z.shape), jnp.broadcast_to(hi, z.shape)
    return bool(jnp.all(z >= lo) & jnp.all(z <= hi))


# --------------------------------------------------------------------------------------------------
# gradients and one-step attacks
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["identity", "logistic", "exponential"])
def test_input_gradients_match_per_example_grad(data, loss):
    x, t, net, _, _ = data
    lfn = {"identity": lambda u: -u, "logistic": jax.nn.softplus, "exponential": jnp.exp}[loss]
    sign = 1.0 if loss == "identity" else -1.0  # softplus(-u), exp(-u)

    def per_example(xn, tn):
        return jax.grad(lambda z: lfn(sign * tn * net(z[None])[0]))(xn)

    ref = jax.vmap(per_example)(x, t)
    got = A.input_gradients(net, x, targets=t, loss=loss)
    assert got.shape == (N, D)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_one_step_l2_norm_is_eps_and_fgm_is_the_same(data):
    x, t, net, _, _ = data
    eta = A.one_step_l2(net, x, targets=t, eps=0.7)
    assert eta.shape == (N, D) and eta.dtype == x.dtype
    np.testing.assert_allclose(jnp.linalg.norm(eta, axis=1), 0.7, rtol=1e-6)
    np.testing.assert_array_equal(A.fgm(net, x, targets=t, eps=0.7), eta)
    assert jnp.mean(_margin(net, x + eta, t)) > jnp.mean(_margin(net, x, t))


def test_one_step_l2_zero_gradient_gives_zero_perturbation(data):
    x, t, _, _, _ = data
    xs = x.at[: N // 2, 0].set(-1.0)  # relu(x_0) has zero gradient on these rows
    eta = A.one_step_l2(lambda z: jax.nn.relu(z[:, 0]), xs, targets=t, eps=0.5)
    assert bool(jnp.all(eta[: N // 2] == 0))
    np.testing.assert_allclose(jnp.linalg.norm(eta[N // 2 :], axis=1), 0.5, rtol=1e-6)
    assert bool(jnp.all(jnp.isfinite(eta)))


def test_one_step_l2_tiny_gradient_is_still_normalized(data):
    x, t, _, _, w = data
    eta = A.one_step_l2(_linear(1e-30 * w, 0.0), x, targets=t, eps=0.5)
    np.testing.assert_allclose(jnp.linalg.norm(eta, axis=1), 0.5, rtol=1e-6)


def test_fgsm_linf_constraint_is_attained(data):
    x, t, net, _, _ = data
    eta = A.fgsm(net, x, targets=t, eps=0.1)
    assert bool(jnp.all(jnp.abs(eta) <= 0.1))
    np.testing.assert_array_equal(jnp.max(jnp.abs(eta), axis=1), jnp.full((N,), 0.1, jnp.float32))
    assert bool(jnp.all((eta == 0) | (jnp.abs(eta) == jnp.float32(0.1))))
    assert jnp.mean(_margin(net, x + eta, t)) > jnp.mean(_margin(net, x, t))


@pytest.mark.parametrize("loss", ["identity", "logistic", "exponential"])
def test_linear_closed_forms_float64(loss):
    with enable_x64():
        rng = np.random.default_rng(1)
        x = jnp.asarray(rng.normal(size=(N, D)))
        t = jnp.asarray(rng.choice([-1.0, 1.0], size=N))
        w = jnp.asarray(rng.normal(size=D))
        lin = _linear(w, jnp.asarray(-0.2))
        eps = 0.37
        eta = A.one_step_l2(lin, x, targets=t, eps=eps, loss=loss)
        assert eta.dtype == jnp.float64
        expected = eps * t[:, None] * w[None, :] / jnp.linalg.norm(w)
        np.testing.assert_allclose(eta, expected, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(
            A.fgsm(lin, x, targets=t, eps=eps, loss=loss), eps * t[:, None] * jnp.sign(w)[None, :], rtol=1e-15
        )


# --------------------------------------------------------------------------------------------------
# PGD
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_ball_box_and_objective(data, norm, random_start):
    x, t, net, lin, _ = data
    eps = 0.6 if norm == "l2" else 0.3
    key = jax.random.PRNGKey(3) if random_start else None
    for predict in (net, lin):
        eta = A.pgd(
            predict, x, targets=t, eps=eps, step_size=eps / 4, steps=10, norm=norm, key=key, clip=(0.0, 1.0)
        )
        assert eta.shape == (N, D)
        if norm == "l2":
            assert bool(jnp.all(jnp.linalg.norm(eta, axis=1) <= eps * (1 + 1e-6)))
        else:
            assert bool(jnp.all(jnp.abs(eta) <= jnp.float32(eps)))
        assert _in_box(x, eta, 0.0, 1.0)
        gain = _margin(predict, x + eta, t) - _margin(predict, x, t)
        assert jnp.mean(gain) > 0
    assert bool(jnp.all(gain > 0))  # linear model: every point moves toward its target


def test_pgd_without_box_reaches_ball_boundary_on_linear(data):
    x, t, _, lin, w = data
    eta = A.pgd(lin, x, targets=t, eps=0.5, step_size=0.2, steps=5, norm="l2")
    np.testing.assert_allclose(eta, 0.5 * t[:, None] * w[None, :] / jnp.linalg.norm(w), rtol=1e-5, atol=1e-6)
    eta = A.pgd(lin, x, targets=t, eps=0.2, step_size=0.1, steps=3, norm="linf")
    np.testing.assert_allclose(eta, 0.2 * t[:, None] * jnp.sign(w)[None, :], rtol=1e-6)


def test_pgd_array_box_and_jit(data):
    x, t, net, _, _ = data
    lo = jnp.linspace(0.0, 0.04, D)
    hi = jnp.linspace(0.96, 1.0, D)
    kwargs = {"eps": 0.25, "step_size": 0.1, "steps": 8, "norm": "linf", "clip": (lo, hi)}
    eta = A.pgd(net, x, targets=t, **kwargs)
    assert _in_box(x, eta, lo, hi)
    jitted = jax.jit(lambda xx, tt: A.pgd(net, xx, targets=tt, **kwargs))(x, t)
    np.testing.assert_allclose(jitted, eta, atol=1e-6)


def test_fit_box_repairs_rounding():
    """fl(x + fl(hi - x)) can exceed hi in float32 (here for x outside the box); fit_box nudges eta."""
    lo, hi = -0.3, 0.7
    x = jax.random.uniform(jax.random.PRNGKey(11), (4096, 2), minval=-3.0, maxval=3.0)
    box = (jnp.full(x.shape, lo), jnp.full(x.shape, hi))
    naive = hi - x
    assert bool(jnp.any(x + naive > hi))  # the rounding problem is real
    for naive in (hi - x, lo - x):
        fixed = attack_checks.fit_box(x, naive, box)
        assert _in_box(x, fixed, lo, hi)
        assert float(jnp.max(jnp.abs(fixed - naive))) < 1e-6


def test_box_attacks_end_on_the_bounds(data):
    """Strong attacks on the linear model push every coordinate to the bound t*sign(w); exactly in the box."""
    _, t, _, lin, w = data
    lo, hi = -0.3, 0.7
    x = jax.random.uniform(jax.random.PRNGKey(11), (N, D), minval=lo, maxval=hi)
    etas = [
        A.pgd(lin, x, targets=t, eps=5.0, step_size=2.0, steps=2, norm="linf", clip=(lo, hi)),
        A.l0_attack(lin, x, targets=t, k=D, clip=(lo, hi)),
        A.lbfgs_attack(lin, x, targets=t, c=1e-3, clip=(lo, hi), loss="identity", steps=5),
    ]
    for eta in etas:
        assert _in_box(x, eta, lo, hi)
        assert float(jnp.max(jnp.abs(x + eta - jnp.where(t[:, None] * w[None, :] > 0, hi, lo)))) < 1e-6


# --------------------------------------------------------------------------------------------------
# L0
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("step", "clip"), [(None, (0.0, 1.0)), (0.5, None), (2.0, (0.0, 1.0))])
def test_l0_changes_at_most_k_coordinates(data, step, clip):
    x, t, net, lin, _ = data
    for predict, k in ((net, 2), (lin, D + 2)):  # k > d acts as d
        eta = A.l0_attack(predict, x, targets=t, k=k, step=step, clip=clip)
        assert bool(jnp.all(jnp.sum(eta != 0, axis=1) <= k))
        if clip is not None:
            assert _in_box(x, eta, *clip)
        gain = _margin(predict, x + eta, t) - _margin(predict, x, t)
        assert jnp.mean(gain) > 0
    assert bool(jnp.all(gain > 0))  # linear model


def test_l0_linear_picks_largest_weights(data):
    x, t, _, lin, w = data
    eta = A.l0_attack(lin, x, targets=t, k=2, step=0.1)
    top2 = set(np.argsort(-np.abs(np.asarray(w)))[:2].tolist())
    for row in np.asarray(eta):
        assert set(np.flatnonzero(row).tolist()) == top2


# --------------------------------------------------------------------------------------------------
# L-BFGS
# --------------------------------------------------------------------------------------------------


def test_lbfgs_linear_closed_form_float64():
    with enable_x64():
        rng = np.random.default_rng(2)
        x = jnp.asarray(rng.normal(size=(N, D)))
        t = jnp.asarray(rng.choice([-1.0, 1.0], size=N))
        w = jnp.asarray(rng.normal(size=D))
        c = 0.8
        # identity loss: min c||eta||^2 - t (w.(x + eta) + b)  =>  eta = t w / (2c)
        eta = A.lbfgs_attack(_linear(w, 0.1), x, targets=t, c=c, loss="identity")
        np.testing.assert_allclose(eta, t[:, None] * w[None, :] / (2 * c), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("model", "loss"), [("net", "logistic"), ("linear", "identity")])
def test_lbfgs_box_and_objective(data, model, loss):
    x, t, net, lin, _ = data
    predict = net if model == "net" else lin
    eta = A.lbfgs_attack(predict, x, targets=t, c=0.05, clip=(0.0, 1.0), loss=loss, steps=50)
    assert _in_box(x, eta, 0.0, 1.0)
    gain = _margin(predict, x + eta, t) - _margin(predict, x, t)
    assert jnp.mean(gain) > 0
    if model == "linear":
        assert bool(jnp.all(gain > 0))


def test_lbfgs_is_a_kkt_point_with_box(data):
    """At the returned point the projected gradient of c||eta||^2 + l(t f(x+eta)) vanishes (float32).

    Uses a smooth (tanh) two-layer net: with ReLU the objective is piecewise smooth and minimizers may sit
    on a kink, where no gradient vanishes.
    """
    x, t, _, _, _ = data
    kw, kb, ka = jax.random.split(jax.random.PRNGKey(7), 3)
    w = jax.random.normal(kw, (H, D)) / jnp.sqrt(D)
    b = jax.random.normal(kb, (H,))
    a = jax.random.normal(ka, (H,)) / jnp.sqrt(H)

    def net(z):
        return jnp.tanh(z @ w.T + b[None, :]) @ a

    c = 0.1
    eta = A.lbfgs_attack(net, x, targets=t, c=c, clip=(0.0, 1.0), loss="logistic", steps=100)
    g = 2 * c * eta + A.input_gradients(net, x + eta, targets=t, loss="logistic")
    pg = jnp.clip(x + eta - g, 0.0, 1.0) - (x + eta)
    assert float(jnp.max(jnp.abs(pg))) < 1e-4


def test_minimal_lbfgs_distortion_linear_matches_distance_to_hyperplane(data):
    x, t, _, _, w = data
    b = 0.3
    lin = _linear(w, jnp.asarray(b))
    f = lin(x)
    eta, success = A.minimal_lbfgs_distortion(
        lin, x, targets=t, c_grid=np.logspace(-2, 2, 5), refine_steps=12, steps=30
    )
    assert eta.shape == (N, D) and success.shape == (N,) and success.dtype == jnp.bool_
    assert bool(jnp.all(success))
    wrong = np.asarray(jnp.sign(f) != t)
    assert wrong.sum() >= 3
    dist = np.asarray(jnp.abs(f) / jnp.linalg.norm(w))
    norms = np.asarray(jnp.linalg.norm(eta, axis=1))
    # within 5% of the closed-form minimal distance |f(x)| / ||w||, from above (eta must cross the plane)
    np.testing.assert_array_less(norms[wrong], 1.05 * dist[wrong])
    np.testing.assert_array_less(0.999 * dist[wrong], norms[wrong])
    assert bool(jnp.all(jnp.sign(lin(x + eta)) == t))
    assert bool(jnp.all(eta[~wrong] == 0))  # already on the target side: zero distortion


def test_minimal_lbfgs_distortion_box_and_failure(data):
    x, t, net, _, _ = data
    eta, success = A.minimal_lbfgs_distortion(
        net, x, targets=t, c_grid=[0.01, 1.0, 100.0], clip=(0.0, 1.0), refine_steps=2, steps=30
    )
    assert _in_box(x, eta, 0.0, 1.0)
    ok = np.asarray(success)
    assert bool(jnp.all(jnp.sign(net(x + eta))[ok] == t[ok]))
    assert bool(jnp.all(eta[~ok] == 0))
    # a predictor that cannot be moved: nothing succeeds where the target sign disagrees
    const = lambda z: 0.0 * jnp.sum(z, axis=1) - 1.0  # noqa: E731
    eta, success = A.minimal_lbfgs_distortion(const, x, targets=t, c_grid=[1.0], refine_steps=1, steps=5)
    np.testing.assert_array_equal(success, t < 0)
    assert bool(jnp.all(eta == 0))


# --------------------------------------------------------------------------------------------------
# registry and validation
# --------------------------------------------------------------------------------------------------

REGISTRY_PARAMS = {
    "one_step_l2": {"eps": 0.5},
    "fgsm": {"eps": 0.1},
    "fgm": {"eps": 0.5},
    "pgd_l2": {"eps": 0.5, "step_size": 0.2, "steps": 5, "clip": (0.0, 1.0), "random_start": True},
    "pgd_linf": {"eps": 0.1, "step_size": 0.05, "steps": 5},
    "l0": {"k": 2, "clip": (0.0, 1.0)},
    "lbfgs": {"c": 0.1, "clip": (0.0, 1.0), "steps": 20},
}


def test_registry_covers_all_attacks(data):
    x, t, net, lin, _ = data
    assert set(REGISTRY_PARAMS) == set(A.ATTACKS)
    key = jax.random.PRNGKey(5)
    for name in A.ATTACKS:
        attack = A.make_attack(name, **REGISTRY_PARAMS[name])
        for predict in (net, lin):
            eta = attack(predict, x, targets=t, key=key)
            assert eta.shape == (N, D), name
            gain = _margin(predict, x + eta, t) - _margin(predict, x, t)
            assert jnp.mean(gain) > 0, name
        assert bool(jnp.all(gain > 0)), name


def test_make_attack_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown attack 'cw'") as err:
        A.make_attack("cw", eps=1.0)
    for name in A.ATTACKS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("fgsm", {"eps": -0.1}, "eps must be >= 0"),
        ("one_step_l2", {"eps": float("nan")}, "eps must be a finite number"),
        ("one_step_l2", {}, "needs parameter.*eps"),
        ("one_step_l2", {"eps": 1.0, "steps": 3}, "unknown parameter.*steps"),
        ("pgd_l2", {"eps": 1.0, "step_size": 0.1, "steps": 0}, "steps must be an integer >= 1"),
        ("pgd_l2", {"eps": 1.0, "step_size": 0.0, "steps": 2}, "step_size must be > 0"),
        ("pgd_linf", {"eps": 1.0, "step_size": 0.1, "steps": 2, "norm": "l2"}, "unknown parameter.*norm"),
        ("pgd_linf", {"eps": 1.0, "step_size": 0.1, "steps": 2, "clip": (1.0, 0.0)}, "lo < hi"),
        ("l0", {"k": 0, "step": 0.1}, "k must be an integer >= 1"),
        ("l0", {"k": 1.5, "step": 0.1}, "k must be an integer >= 1"),
        ("l0", {"k": 2}, "needs step .* or clip"),
        ("lbfgs", {"c": 0.0}, "c must be a positive"),
        ("lbfgs", {"steps": 0}, "steps must be an integer >= 1"),
        ("fgsm", {"eps": 0.1, "loss": "mse"}, "margin loss"),
    ],
)
def test_make_attack_rejects_bad_params(name, params, message):
    with pytest.raises(ValueError, match=message):
        A.make_attack(name, **params)


def test_bad_inputs_raise(data):
    x, t, net, _, _ = data
    with pytest.raises(ValueError, match="x must be a 2-D array"):
        A.fgsm(net, x[0], targets=t[:1], eps=0.1)
    with pytest.raises(ValueError, match=r"targets must have shape \(N,\)"):
        A.one_step_l2(net, x, targets=t[:-1], eps=0.1)
    with pytest.raises(ValueError, match=r"targets must have shape \(N,\)"):
        A.pgd(net, x, targets=t[:, None], eps=0.1, step_size=0.1, steps=1)
    with pytest.raises(ValueError, match="targets must contain only -1 and \\+1"):
        A.l0_attack(net, x, targets=jnp.zeros(N), k=1, step=0.1)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        A.one_step_l2(net, x, targets=t, eps=-1.0)
    with pytest.raises(ValueError, match="c_grid must be"):
        A.minimal_lbfgs_distortion(net, x, targets=t, c_grid=[1.0, -1.0])
    with pytest.raises(ValueError, match="outputs of shape"):
        A.fgsm(lambda z: z[:, :1], x, targets=t, eps=0.1)
    attack = A.make_attack("pgd_linf", eps=0.1, step_size=0.1, steps=1, random_start=True)
    with pytest.raises(ValueError, match="needs a key"):
        attack(net, x, targets=t)
    bad_targets = A.make_attack("lbfgs")
    with pytest.raises(ValueError, match="targets must contain only"):
        bad_targets(net, x, targets=2 * t)


@pytest.fixture(scope="module")
def trained():
    """A two-layer net trained (logistic loss) on a noiseless linear rule: (predict, x, y), train accuracy
    near 1."""
    from ntk_adv import models, training

    x = jax.random.normal(jax.random.PRNGKey(21), (64, D))
    y = jnp.where(x[:, 0] + 0.5 * x[:, 1] > 0, 1.0, -1.0)
    net = models.TwoLayerConfig(width=64)
    p0 = models.init_params(net, D, key=jax.random.PRNGKey(22))
    tc = training.TrainConfig.theory(lr=0.5, steps=300, loss="logistic")
    params = training.train(models.make_apply(net), p0, x, y, tc).params
    return (lambda q: models.apply(params, q, net)), x, y


def _accuracy(predict, x, y):
    return float(jnp.mean(jnp.sign(predict(x)) == y))


def test_labels_is_untargeted_and_lowers_a_trained_nets_accuracy(trained):
    """The torchattacks / foolbox convention: fgsm(f, x, labels=y) moves away from the true labels."""
    predict, x, y = trained
    clean = _accuracy(predict, x, y)
    assert clean > 0.9
    for attack in (A.fgsm, A.fgm, A.one_step_l2):
        eps = 0.5 if attack is A.fgsm else 1.5
        eta = attack(predict, x, labels=y, eps=eps)
        assert _accuracy(predict, x + eta, y) < clean - 0.3, attack.__name__
        np.testing.assert_array_equal(eta, attack(predict, x, targets=-y, eps=eps))  # labels=y is targets=-y
    eta = A.pgd(predict, x, labels=y, eps=0.5, step_size=0.1, steps=10)
    assert _accuracy(predict, x + eta, y) < clean - 0.3
    eta = A.make_attack("fgsm", eps=0.5)(predict, x, labels=y)
    assert _accuracy(predict, x + eta, y) < clean - 0.3


def test_targets_is_targeted_and_moves_outputs_toward_the_targets(trained):
    predict, x, y = trained
    t = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(23), 0.5, y.shape), 1.0, -1.0)
    eta = A.fgsm(predict, x, targets=t, eps=1.0)
    assert float(jnp.mean(t * predict(x + eta))) > float(jnp.mean(t * predict(x))) + 2.0
    assert float(jnp.mean(jnp.sign(predict(x + eta)) == t)) > 0.9  # about half agreed before the attack
    # targets=y raises the accuracy (the old positional call's surprising direction, now explicit)
    assert _accuracy(predict, x + A.fgsm(predict, x, targets=y, eps=0.5), y) >= _accuracy(predict, x, y)


@pytest.mark.parametrize(
    "attack",
    [
        lambda f, x, **kw: A.fgsm(f, x, eps=0.1, **kw),
        lambda f, x, **kw: A.pgd(f, x, eps=0.1, step_size=0.1, steps=1, **kw),
        lambda f, x, **kw: A.l0_attack(f, x, k=1, step=0.1, **kw),
        lambda f, x, **kw: A.lbfgs_attack(f, x, steps=2, **kw),
        lambda f, x, **kw: A.minimal_lbfgs_distortion(f, x, c_grid=[1.0], steps=2, **kw),
        lambda f, x, **kw: A.input_gradients(f, x, **kw),
        lambda f, x, **kw: A.make_attack("one_step_l2", eps=0.1)(f, x, **kw),
    ],
)
def test_exactly_one_of_labels_and_targets(data, attack):
    x, t, net, _, _ = data
    with pytest.raises(ValueError, match=r"^pass exactly one of labels= .* or targets= .*; got both$"):
        attack(net, x, labels=t, targets=t)
    with pytest.raises(ValueError, match=r"^pass exactly one of labels= .* or targets= .*; got neither$"):
        attack(net, x)
    with pytest.raises(ValueError, match="labels must contain only -1 and \\+1"):
        attack(net, x, labels=2 * t)


def test_no_positional_labels():
    """The sign of a positional third argument can no longer decide the direction."""
    x, t = jnp.ones((3, 2)), jnp.ones(3)
    for fn in (A.fgsm, A.fgm, A.one_step_l2):
        with pytest.raises(TypeError):
            fn(lambda q: q.sum(1), x, t, eps=0.1)
    for name in A.__all__:
        fn = getattr(A, name)
        if callable(fn) and name != "make_attack":
            params = inspect.signature(fn).parameters
            assert params["labels"].kind is inspect.Parameter.KEYWORD_ONLY, name
            assert params["targets"].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_input_gradients_labels_is_the_true_label_loss(data):
    x, t, net, _, _ = data
    got = A.input_gradients(net, x, labels=t, loss="logistic")
    ref = jax.vmap(jax.grad(lambda z, tn: jax.nn.softplus(-tn * net(z[None])[0])))(x, t)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_traced_eps_allows_vmap_over_radii(data):
    x, t, net, _, _ = data
    radii = jnp.array([0.1, 0.5, 1.0])
    etas = jax.vmap(lambda e: A.one_step_l2(net, x, targets=t, eps=e))(radii)
    np.testing.assert_allclose(
        jnp.linalg.norm(etas, axis=2), jnp.broadcast_to(radii[:, None], (3, N)), rtol=1e-6
    )


def test_split_modules_keep_the_public_names():
    """The solver and the checks live in their own modules; every public attack name stays in
    ntk_adv.attacks."""
    for name in A.__all__:
        assert hasattr(A, name), name
    assert A.NORMS is attack_checks.NORMS
    assert inspect.getmodule(lbfgs.solve) is lbfgs
    assert list(inspect.signature(A.fgsm).parameters) == ["predict", "x", "labels", "targets", "eps", "loss"]
    assert list(inspect.signature(A.pgd).parameters)[:4] == ["predict", "x", "labels", "targets"]
