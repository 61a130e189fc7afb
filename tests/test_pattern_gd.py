"""The activation-space solver is gradient descent: the same iterates as backpropagated GD (float64, 1e-10),
also when many activations flip per step (several inner chunks), for every activation, bias and
parametrization; with the paper preset (momentum 0.9 + reduce-on-plateau) the same iterates as optax's SGD,
including the steps where the schedule cuts the rate; batched over learning rates; selected and refused as
documented."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_adv import models, pattern_gd
from ntk_adv.data import DataSpec
from ntk_adv.perturbation import protocol
from ntk_adv.training import TrainConfig, centered, centered_mask, plateau_transform, train

N, D, WIDTH, STEPS, LR = 96, 6, 128, 12, 10.0


def autodiff(net, params, x, y, lr, steps):
    cfg = TrainConfig.theory(lr=lr, steps=steps, loss="identity", record_loss=False)
    return train(models.make_apply(net), params, x, y, cfg, mask=models.trainable_mask(net)).params


def flips_per_step(net, params, x, y, lr, steps) -> np.ndarray:
    """Activations that change sign at each step of the backpropagated trajectory (the reference)."""
    patterns = [models.hidden(autodiff(net, params, x, y, lr, t), x, net) > 0 for t in range(steps + 1)]
    return np.array([int(jnp.sum(a != b)) for a, b in zip(patterns[:-1], patterns[1:])])


@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.2])
def test_same_iterates_as_backpropagated_gd(rng, parametrization, bias, gamma):
    net = models.TwoLayerConfig(WIDTH, gamma=gamma, bias=bias, parametrization=parametrization)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((N, D)))
        y = jnp.asarray(np.where(rng.random(N) < 0.5, -1.0, 1.0))
        p0 = models.init_params(net, D, key=jax.random.PRNGKey(7), dtype=jnp.float64)
        lr = LR if parametrization == "standard" else LR * D  # the ntk kernel is d times smaller
        flips = flips_per_step(net, p0, x, y, lr, STEPS)
        assert flips.max() > pattern_gd._chunk(WIDTH)  # the multi-chunk path runs
        assert np.count_nonzero(flips) >= STEPS - 1  # and patterns move at nearly every step
        for steps in (0, 1, STEPS):
            want = autodiff(net, p0, x, y, lr, steps)
            got = pattern_gd.train(net, p0, x, y, lr=lr, steps=steps)
            for name in ("w", "b", "a"):
                a, b = getattr(got, name), getattr(want, name)
                assert a.dtype == jnp.float64
                np.testing.assert_allclose(
                    a, b, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(b))), err_msg=name
                )
        if not bias:
            assert not np.any(np.asarray(got.b))


def test_learning_rates_batch_with_vmap(rng):
    net = models.TwoLayerConfig(WIDTH)
    x = jnp.asarray(rng.standard_normal((N, D)), jnp.float32)
    y = jnp.asarray(np.where(rng.random(N) < 0.5, -1.0, 1.0), jnp.float32)
    p0 = models.init_params(net, D, key=jax.random.PRNGKey(1))
    lrs = jnp.asarray([0.1, 1.0, 3.0], jnp.float32)
    batched = jax.vmap(lambda lr: pattern_gd.train(net, p0, x, y, lr=lr, steps=STEPS))(lrs)
    for i, lr in enumerate(lrs):
        alone = autodiff(net, p0, x, y, float(lr), STEPS)
        np.testing.assert_allclose(batched.w[i], alone.w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(batched.b[i], alone.b, rtol=1e-4, atol=1e-5)


def test_solver_choice_and_refusals():
    wide, narrow = models.TwoLayerConfig(1024), models.TwoLayerConfig(16)
    gd = TrainConfig.theory(lr=0.01, steps=10)
    assert pattern_gd.choose(wide, gd, 2000) == "pattern"
    assert pattern_gd.choose(narrow, gd, 2000) == "autodiff"  # small widths: backprop is cheaper
    assert pattern_gd.choose(wide, gd, 10**5) == "autodiff"  # the N x N Gram matrix would be too big
    assert pattern_gd.choose(narrow, gd, 2000, "pattern") == "pattern"
    assert pattern_gd.choose(wide, gd, 2000, "autodiff") == "autodiff"
    assert pattern_gd.choose(wide, TrainConfig.paper(lr=0.01, steps=10), 2000) == "pattern"  # both presets
    assert pattern_gd.choose(wide, TrainConfig.paper(loss="logistic"), 2000) == "autodiff"
    refusals = [
        (wide, TrainConfig.theory(loss="logistic"), "loss 'logistic'"),
        (models.TwoLayerConfig(1024, train_readout=True), gd, "trained readout"),
        (models.TwoLayerConfig(1024, n_out=3), gd, "n_out=3"),
    ]
    for net, cfg, why in refusals:
        assert pattern_gd.choose(net, cfg, 2000) == "autodiff"
        with pytest.raises(ValueError, match=why):
            pattern_gd.choose(net, cfg, 2000, "pattern")
    with pytest.raises(ValueError, match="unknown solver 'fast'"):
        pattern_gd.choose(wide, gd, 2000, "fast")


@pytest.mark.parametrize("centered, preset", [(False, "theory"), (True, "theory"), (True, "paper")])
def test_protocol_trains_f_and_g_alike_with_both_solvers(centered, preset):
    """train_f / train_g: the centred pair (theta, theta_0) keeps theta_0 and trains theta like the plain
    net."""
    cfg = protocol.ProtocolConfig(
        data=DataSpec("shifted_gauss", n_train=40, n_test=10, d=5),
        arch=models.TwoLayerConfig(32),
        steps_f=15,
        steps_g=15,
        lr_f=0.5,
        lr_g=0.5,
        eps=0.5,
        centered=centered,
        preset=preset,
    )
    from ntk_adv.data import data_arrays

    x, y, _, _ = data_arrays(cfg.data)
    key = jax.random.PRNGKey(3)
    pf = {s: protocol.train_f(cfg, x, y, key, solver=s) for s in ("autodiff", "pattern")}
    apply_fn = protocol.model_apply(cfg)
    adv = protocol.adversarial_set(cfg, lambda q: apply_fn(pf["autodiff"], q), x, y, key)
    pg = {s: protocol.train_g(cfg, adv, key, solver=s) for s in ("autodiff", "pattern")}
    for trained in (pf, pg):
        for a, b in zip(
            jax.tree_util.tree_leaves(trained["pattern"]), jax.tree_util.tree_leaves(trained["autodiff"])
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    if centered:
        start = protocol.init_model(cfg, x.shape[1], protocol.stream(key, "f_init"), x.dtype)[0][1]
        assert all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree_util.tree_leaves(pf["pattern"][1]), jax.tree_util.tree_leaves(start))
        )


def test_bad_inputs_are_named():
    net = models.TwoLayerConfig(8)
    p0 = models.init_params(net, 3, key=jax.random.PRNGKey(0))
    x, y = jnp.ones((5, 3)), jnp.ones((5,))
    with pytest.raises(ValueError, match=r"y must have shape \(5,\); got \(4,\)"):
        pattern_gd.train(net, p0, x, jnp.ones((4,)), lr=0.1, steps=2)
    with pytest.raises(ValueError, match=r"expected \(width, d\) = \(8, 4\)"):
        pattern_gd.train(net, p0, jnp.ones((5, 4)), y, lr=0.1, steps=2)
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        pattern_gd.train(net, p0, x, y, lr=0.1, steps=-1)
    with pytest.raises(ValueError, match="trained readout"):
        pattern_gd.train(models.TwoLayerConfig(8, train_readout=True), p0, x, y, lr=0.1, steps=2)


# ------------------------------------------------------------------------------------------- paper preset
PAPER_STEPS = 40


def paper_autodiff(net, params, x, y, cfg, steps, center=False):
    """Backpropagated training with optax (the reference), and the losses it fed the plateau schedule."""
    cfg = cfg.with_(steps=steps, record_loss=True)
    mask = models.trainable_mask(net)
    if center:
        res = train(centered(models.make_apply(net)), (params, params), x, y, cfg, mask=centered_mask(mask))
        return res.params[0], res.losses
    res = train(models.make_apply(net), params, x, y, cfg, mask=mask)
    return res.params, res.losses


def plateau_scales(cfg, losses) -> np.ndarray:
    """The learning-rate scale optax's plateau transform applies at each step, given the losses it was fed."""
    plateau = plateau_transform(cfg)
    state, out = plateau.init(jnp.zeros((), losses.dtype)), []
    for loss in losses:
        _, state = plateau.update(jnp.zeros((), losses.dtype), state, value=loss)
        out.append(float(state.scale))
    return np.asarray(out)


def big_unit(net, params, x, y, offset):
    """Unit 0 made huge (bias, or weight norm, = ``offset``) and its readout set so that it adds a large
    positive constant to the loss: the loss then improves by less than the plateau's relative tolerance (1e-4)
    per step, and the schedule cuts the rate every ``patience`` steps, while the other units keep flipping
    activations."""
    if net.bias:
        params = params.replace(b=params.b.at[0].set(offset))
    else:
        params = params.replace(w=params.w.at[0].set(offset * params.w[0] / jnp.linalg.norm(params.w[0])))
    h0 = models.leaky_relu(models.hidden(params, x, net)[:, 0], net.gamma)
    a0 = np.sqrt(net.width) if net.parametrization == "ntk" else 1.0
    return params.replace(a=params.a.at[0].set(a0 * jnp.sign(-jnp.mean(y * h0))))


def assert_same(got, want, rows=slice(None)):
    for name in ("w", "b"):
        a, b = getattr(got, name)[rows], getattr(want, name)[rows]
        assert a.dtype == jnp.float64
        np.testing.assert_allclose(
            a, b, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(b))) + 1e-300, err_msg=name
        )


@pytest.mark.parametrize("parametrization, bias, gamma", [("standard", True, 0.0), ("ntk", False, 0.2)])
def test_paper_preset_same_iterates_as_optax_sgd_momentum_plateau(rng, parametrization, bias, gamma):
    """Momentum 0.9 + reduce-on-plateau: the iterates equal optax's (float64, 1e-10) on the two steps after
    the first cut and at the end, after three cuts, with activations flipping in the steps after a cut."""
    net = models.TwoLayerConfig(WIDTH, gamma=gamma, bias=bias, parametrization=parametrization)
    lr = LR if parametrization == "standard" else LR * D  # the ntk kernel is d times smaller
    cfg = TrainConfig.paper(lr=lr, steps=PAPER_STEPS)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((N, D)))
        y = jnp.asarray(np.where(rng.random(N) < 0.6, -1.0, 1.0))
        p0 = models.init_params(net, D, key=jax.random.PRNGKey(7), dtype=jnp.float64)
        p0 = big_unit(net, p0, x, y, 1e7)
        _, losses = paper_autodiff(net, p0, x, y, cfg, PAPER_STEPS)
        scales = plateau_scales(cfg, losses)
        cuts = np.flatnonzero(np.diff(np.concatenate([[1.0], scales])))
        assert len(cuts) >= 3 and cuts[0] < 12, scales  # the schedule does cut the rate, repeatedly
        iterates = {}
        for steps in (cuts[0] + 1, cuts[0] + 2, PAPER_STEPS):
            want, _ = paper_autodiff(net, p0, x, y, cfg, int(steps))
            got = pattern_gd.train(net, p0, x, y, lr=lr, steps=int(steps), config=cfg)
            assert_same(got, want, slice(1, None))  # unit 0 (~1e7) has its own scale
            assert_same(got, want, slice(0, 1))
            iterates[int(steps)] = want
        after = [models.hidden(iterates[int(cuts[0]) + k], x, net) > 0 for k in (1, 2)]
        assert int(jnp.sum(after[0] != after[1])) > 0  # activations flip at the reduced rate


def test_momentum_alone_plateau_alone_and_centred_loss(rng):
    """Each part of the paper optimizer on its own (momentum without the schedule, the schedule without
    momentum) and a centred net, whose plateau schedule sees the loss of f - f_0: with unit 0 huge the plain
    loss would plateau at once, the centred one (0 at the start, then decreasing) never does."""
    net = models.TwoLayerConfig(WIDTH)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((N, D)))
        y = jnp.asarray(np.where(rng.random(N) < 0.6, -1.0, 1.0))
        p0 = big_unit(
            net, models.init_params(net, D, key=jax.random.PRNGKey(3), dtype=jnp.float64), x, y, 1e7
        )
        paper = TrainConfig.paper(lr=LR, steps=PAPER_STEPS)
        cases = [(paper.with_(plateau=False), False), (paper.with_(optimizer="gd"), False), (paper, True)]
        for cfg, center in cases:
            want, losses = paper_autodiff(net, p0, x, y, cfg, 25, center)
            got = pattern_gd.train(net, p0, x, y, lr=LR, steps=25, config=cfg, centered=center)
            assert_same(got, want, slice(1, None))
            if cfg.plateau:
                cut = np.any(plateau_scales(cfg, losses) < 1)
                assert cut != center  # the plain loss plateaus, the centred one does not


def test_paper_preset_batches_over_learning_rates(rng):
    net = models.TwoLayerConfig(WIDTH)
    x = jnp.asarray(rng.standard_normal((N, D)), jnp.float32)
    y = jnp.asarray(np.where(rng.random(N) < 0.5, -1.0, 1.0), jnp.float32)
    p0 = models.init_params(net, D, key=jax.random.PRNGKey(1))
    cfg = TrainConfig.paper(steps=STEPS)
    lrs = jnp.asarray([0.1, 1.0, 3.0], jnp.float32)
    batched = jax.vmap(lambda lr: pattern_gd.train(net, p0, x, y, lr=lr, steps=STEPS, config=cfg))(lrs)
    for i, lr in enumerate(lrs):
        alone, _ = paper_autodiff(net, p0, x, y, cfg.with_(lr=float(lr)), STEPS)
        np.testing.assert_allclose(batched.w[i], alone.w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(batched.b[i], alone.b, rtol=1e-4, atol=1e-5)
