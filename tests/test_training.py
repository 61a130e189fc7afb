"""Full-batch training (ntk_adv.training): presets, masks, vmap over seeds and learning rates, centring,
and the lazy-regime link between one GD step and the empirical NTK."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import enable_x64

from ntk_adv import empirical, models, training
from ntk_adv.losses import mean_loss
from ntk_adv.models import TwoLayerConfig
from ntk_adv.training import TrainConfig

LOSSES = ["identity", "logistic", "exponential", "mse"]


def setup(small_data, cfg: TwoLayerConfig, dtype=jnp.float32, seed: int = 0):
    x, y, _ = small_data
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    p0 = models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(seed), dtype=dtype)
    return models.make_apply(cfg), p0, x, y


@pytest.mark.parametrize("preset", ["theory", "paper"])
@pytest.mark.parametrize("loss", LOSSES)
def test_training_decreases_the_loss(small_data, loss, preset):
    cfg = TwoLayerConfig(width=32, gamma=0.1)
    apply_fn, p0, x, y = setup(small_data, cfg)
    tc = getattr(TrainConfig, preset)(lr=0.02, steps=60, loss=loss)
    result = training.train(apply_fn, p0, x, y, tc, mask=models.trainable_mask(cfg))
    losses = np.asarray(result.losses)
    assert losses.shape == (60,) and np.all(np.isfinite(losses))
    np.testing.assert_allclose(
        losses[0], mean_loss(loss, apply_fn(p0, x), y), rtol=1e-6
    )  # loss before step 1
    final = float(mean_loss(loss, apply_fn(result.params, x), y))
    assert final < losses[0] - 0.05 * max(abs(losses[0]), 0.1), (losses[0], final)
    if preset == "theory":  # small-step gradient descent: (nearly) monotone
        assert np.all(np.diff(losses) <= 1e-6 * (1 + np.abs(losses[1:])))


def test_first_gradient_step_follows_the_empirical_ntk(small_data):
    """Identity loss, one GD step of size lr on the first layer: the loss drops by lr y^T Theta_m y / N^2
    (exact for the piecewise-linear net while no pre-activation changes sign), Theta_m the empirical NTK."""
    cfg = TwoLayerConfig(width=32, gamma=0.3)
    with enable_x64():
        apply_fn, p0, x, y = setup(small_data, cfg, jnp.float64)
        lr, n = 1e-3, x.shape[0]
        result = training.train(
            apply_fn, p0, x, y, TrainConfig.theory(lr=lr, steps=2), mask=models.trainable_mask(cfg)
        )
        theta = empirical.empirical_ntk(apply_fn, p0, x, mask=models.trainable_mask(cfg))
        drop = result.losses[0] - result.losses[1]
        np.testing.assert_allclose(drop, lr * (y @ theta @ y) / n**2, rtol=1e-9)


def test_frozen_readout_stays_bit_identical_and_trained_readout_moves(small_data):
    for bias in (True, False):
        cfg = TwoLayerConfig(width=32, bias=bias)
        apply_fn, p0, x, y = setup(small_data, cfg)
        out = training.train(
            apply_fn,
            p0,
            x,
            y,
            TrainConfig.paper(lr=0.05, steps=20, loss="logistic"),
            mask=models.trainable_mask(cfg),
        ).params
        np.testing.assert_array_equal(out.a, p0.a)
        assert float(jnp.max(jnp.abs(out.w - p0.w))) > 1e-4
        if bias:
            assert float(jnp.max(jnp.abs(out.b - p0.b))) > 1e-4
        else:
            np.testing.assert_array_equal(out.b, p0.b)  # no bias: stays exactly zero
            assert not bool(jnp.any(out.b))

    cfg = TwoLayerConfig(width=32, train_readout=True)
    apply_fn, p0, x, y = setup(small_data, cfg)
    out = training.train(
        apply_fn,
        p0,
        x,
        y,
        TrainConfig.theory(lr=0.05, steps=20, loss="logistic"),
        mask=models.trainable_mask(cfg),
    ).params
    assert float(jnp.max(jnp.abs(out.a - p0.a))) > 1e-4
    # without a mask the config's mask applies: train_readout=True trains the readout
    out = training.train(apply_fn, p0, x, y, TrainConfig.theory(lr=0.05, steps=5)).params
    assert float(jnp.max(jnp.abs(out.a - p0.a))) > 1e-5


def test_default_mask_follows_the_net_config(small_data):
    """train(...) without mask= keeps a config-frozen readout frozen (it used to move), for the plain, the
    centred and the linen net, bit-identical to passing the config's mask; adversarial_train too."""
    cfg = TwoLayerConfig(width=32)  # train_readout=False
    apply_fn, p0, x, y = setup(small_data, cfg)
    tc = TrainConfig.theory(lr=0.5, steps=20, loss="logistic")
    out = training.train(apply_fn, p0, x, y, tc).params
    np.testing.assert_array_equal(out.a, p0.a)
    assert float(jnp.max(jnp.abs(out.w - p0.w))) > 1e-4
    explicit = training.train(apply_fn, p0, x, y, tc, mask=models.trainable_mask(cfg)).params
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(explicit)):
        np.testing.assert_array_equal(a, b)
    # an explicit all-True mask still trains everything
    every = training.train(apply_fn, p0, x, y, tc, mask=models.TwoLayerParams(True, True, True)).params
    assert float(jnp.max(jnp.abs(every.a - p0.a))) > 1e-4

    apply_c = models.centered(apply_fn)
    pair = training.train(apply_c, (p0, p0), x, y, tc).params
    np.testing.assert_array_equal(pair[0].a, p0.a)
    np.testing.assert_array_equal(pair[1].w, p0.w)  # params0 never trained

    module = models.TwoLayerNet(cfg)
    variables = module.init(jax.random.PRNGKey(0), x)
    lin = training.train(models.linen_apply(module), variables["params"], x, y, tc).params
    np.testing.assert_array_equal(lin["two_layer"].a, variables["params"]["two_layer"].a)

    adv = training.adversarial_train(
        apply_fn, p0, x, y, perturb=lambda f, q, t, k: 0.0 * q, lr=0.5, steps=5, key=jax.random.PRNGKey(1)
    )
    np.testing.assert_array_equal(adv.a, p0.a)


def test_default_mask_refused_when_the_config_is_unknown(small_data):
    cfg = TwoLayerConfig(width=8)
    apply_fn, p0, x, y = setup(small_data, cfg)
    tc = TrainConfig.theory(lr=0.1, steps=2)
    with pytest.raises(ValueError, match="^mask: params hold TwoLayerParams but apply_fn carries no"):
        training.train(lambda p, q: apply_fn(p, q), p0, x, y, tc)
    # other pytrees (no TwoLayerParams) train every leaf, as before
    lin0 = (jnp.zeros((x.shape[1],)), jnp.zeros(()))
    out = training.train(lambda p, q: q @ p[0] + p[1], lin0, x, y, tc).params
    assert float(jnp.abs(out[1])) > 0


@pytest.mark.parametrize("preset", ["theory", "paper"])
def test_vmap_over_seeds_and_learning_rates_equals_one_by_one(small_data, preset):
    """Batched runs agree with sequential runs to rtol 1e-10 (float64; only summation order may differ)."""
    cfg = TwoLayerConfig(width=32, gamma=0.2)
    with enable_x64():
        apply_fn, p0, x, y = setup(small_data, cfg, jnp.float64)
        tc = getattr(TrainConfig, preset)(lr=0.05, steps=25, loss="logistic")
        mask = models.trainable_mask(cfg)

        def run(params, lr):
            return training.train(apply_fn, params, x, y, tc, lr=lr, mask=mask)

        inits = [
            models.init_params(cfg, x.shape[1], key=jax.random.PRNGKey(s), dtype=jnp.float64)
            for s in range(3)
        ]
        stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *inits)
        batched = jax.vmap(lambda p: run(p, tc.lr))(stacked)
        lrs = jnp.array([0.01, 0.05, 0.2])
        batched_lr = jax.vmap(lambda lr: run(p0, lr))(lrs)
        for i in range(3):
            single = run(jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], stacked), tc.lr)
            for got, want in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(single)):
                np.testing.assert_allclose(got[i], want, rtol=1e-10, atol=1e-12)
            single_lr = run(p0, float(lrs[i]))
            for got, want in zip(jax.tree_util.tree_leaves(batched_lr), jax.tree_util.tree_leaves(single_lr)):
                np.testing.assert_allclose(got[i], want, rtol=1e-10, atol=1e-12)
        # the batch is not degenerate: different seeds / learning rates give different results
        assert float(jnp.abs(batched.losses[0, -1] - batched.losses[1, -1])) > 1e-4
        assert float(batched_lr.losses[2, -1]) < float(batched_lr.losses[0, -1])


def test_centered_model_is_zero_at_init_and_trains(small_data):
    cfg = TwoLayerConfig(width=32, gamma=0.1)
    apply_fn, p0, x, y = setup(small_data, cfg)
    apply_c = training.centered(apply_fn)
    assert training.centered(apply_fn) is apply_c  # cached
    assert float(jnp.std(apply_fn(p0, x))) > 0.05  # the raw net has an O(1) initial function ...
    np.testing.assert_array_equal(apply_c((p0, p0), x), jnp.zeros(x.shape[0]))  # ... the centred one none
    mask = training.centered_mask(models.trainable_mask(cfg))
    assert jax.tree_util.tree_leaves(mask[1]) == [False, False, False]
    res = training.train(apply_c, (p0, p0), x, y, TrainConfig.theory(lr=0.05, steps=30), mask=mask)
    trained, frozen = res.params
    for got, want in zip(jax.tree_util.tree_leaves(frozen), jax.tree_util.tree_leaves(p0)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(trained.a, p0.a)
    out = apply_c(res.params, x)
    np.testing.assert_allclose(out, apply_fn(trained, x) - apply_fn(p0, x), rtol=1e-6, atol=1e-6)
    assert float(jnp.mean(y * out)) > 0.05  # identity loss pushes the margins up
    assert float(res.losses[0]) == 0.0


def test_gd_and_momentum_presets_on_a_linear_model():
    """Identity loss on a linear model has a constant gradient g = -X^T y / N: GD moves by -lr T g, heavy-ball
    momentum 0.9 by -lr g sum_{k=1..T} (1 - 0.9^k) / 0.1. The loss keeps improving, so the paper preset's
    plateau schedule never fires and it equals plain momentum."""
    rng = np.random.default_rng(0)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((10, 3)))
        y = jnp.asarray(np.where(rng.random(10) < 0.5, -1.0, 1.0))
        w0 = jnp.asarray(rng.standard_normal(3))

        def apply_fn(w, xx):
            return xx @ w

        g = -(x.T @ y) / x.shape[0]
        lr, steps = 0.1, 30
        gd = training.train(apply_fn, w0, x, y, TrainConfig.theory(lr=lr, steps=steps)).params
        np.testing.assert_allclose(gd, w0 - lr * steps * g, rtol=1e-12)
        factor = sum((1 - 0.9**k) / 0.1 for k in range(1, steps + 1))
        mom = training.train(apply_fn, w0, x, y, TrainConfig(lr=lr, steps=steps, optimizer="momentum")).params
        np.testing.assert_allclose(mom, w0 - lr * factor * g, rtol=1e-12)
        paper = training.train(apply_fn, w0, x, y, TrainConfig.paper(lr=lr, steps=steps)).params
        np.testing.assert_allclose(paper, mom, rtol=1e-12)


def test_plateau_schedule_reduces_a_divergent_learning_rate():
    """MSE on f = p (1-D, target 1): GD with lr = 2.5 multiplies the error by (1 - 2.5) = -1.5 per step and
    diverges. With the plateau schedule (patience 3, factor 0.1) the loss rises for 3 steps without improving
    on the first, so the 4th update uses lr 0.25: the error shrinks by 0.75 (loss by 0.5625) from then on."""
    with enable_x64():
        x, y = jnp.ones((4, 1)), jnp.ones(4)

        def apply_fn(p, xx):
            return xx[:, 0] * p

        p0 = jnp.asarray(0.0)
        base = TrainConfig(loss="mse", lr=2.5, steps=40, optimizer="gd", plateau_patience=3)
        diverged = training.train(apply_fn, p0, x, y, base)
        np.testing.assert_allclose(diverged.losses[1:] / diverged.losses[:-1], 2.25, rtol=1e-10)
        rescued = training.train(apply_fn, p0, x, y, base.with_(plateau=True)).losses
        np.testing.assert_allclose(rescued[:4], diverged.losses[:4], rtol=1e-12)  # same until the cut
        np.testing.assert_allclose(rescued[4] / rescued[3], 0.75**2, rtol=1e-10)  # lr 2.5 -> 0.25
        assert np.all(np.diff(np.asarray(rescued[3:])) <= 0) and float(rescued[-1]) < float(rescued[3])


def test_zero_steps_returns_the_initial_params(small_data):
    cfg = TwoLayerConfig(width=32)
    apply_fn, p0, x, y = setup(small_data, cfg)
    res = training.train(apply_fn, p0, x, y, TrainConfig.theory(steps=0))
    np.testing.assert_array_equal(res.params.w, p0.w)
    assert res.losses.shape == (0,)
    assert training.train(apply_fn, p0, x, y, TrainConfig.theory(steps=3, record_loss=False)).losses is None


def test_bad_configuration_is_rejected(small_data):
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; expected one of identity, logistic"):
        TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'"):
        TrainConfig.paper(loss="hinge")
    with pytest.raises(ValueError, match=r"unknown optimizer 'adam'; expected one of gd, momentum"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match=r"steps must be an integer >= 0, got -1"):
        TrainConfig.theory(steps=-1)
    with pytest.raises(ValueError, match="steps must be an integer"):
        TrainConfig(steps=2.5)
    with pytest.raises(ValueError, match=r"learning rate must be finite and >= 0, got nan"):
        TrainConfig.theory(lr=float("nan"))
    for bad in (float("inf"), -0.1):
        with pytest.raises(ValueError, match="learning rate must be finite"):
            TrainConfig(lr=bad)
    with pytest.raises(ValueError, match="unknown loss"):
        TrainConfig().with_(loss="l2")
    cfg = TwoLayerConfig(width=32)
    apply_fn, p0, x, y = setup(small_data, cfg)
    with pytest.raises(ValueError, match="trainable mask does not match the parameter tree"):
        training.train(apply_fn, p0, x, y, TrainConfig(), mask=(True, False))


def test_adversarial_train_reduces_to_train_and_attack_changes_it(rng):
    """With a zero perturbation (or alpha = 1) adversarial training is plain GD; an FGSM perturbation moves
    the result and lowers the loss at the perturbed points more than clean training does."""
    from ntk_adv import attacks, training

    x = jnp.asarray(rng.standard_normal((24, 6)), jnp.float32)
    y = jnp.sign(x[:, 0] + 0.1)
    cfg = models.TwoLayerConfig(32)
    apply_fn, mask = models.make_apply(cfg), models.trainable_mask(cfg)
    p0 = models.init_params(cfg, 6, key=jax.random.PRNGKey(3))
    plain = training.train(
        apply_fn, p0, x, y, training.TrainConfig.theory(lr=0.1, steps=30, loss="logistic"), mask=mask
    ).params
    zero = training.adversarial_train(
        apply_fn,
        p0,
        x,
        y,
        perturb=lambda f, x, y, k: jnp.zeros_like(x),
        alpha=0.5,
        loss="logistic",
        lr=0.1,
        steps=30,
        mask=mask,
        key=jax.random.PRNGKey(0),
    )
    np.testing.assert_allclose(np.asarray(zero.w), np.asarray(plain.w), rtol=1e-5, atol=1e-6)
    fgsm = lambda f, x, y, k: attacks.fgsm(f, x, labels=y, eps=0.3, loss="logistic")  # noqa: E731
    adv = training.adversarial_train(
        apply_fn,
        p0,
        x,
        y,
        perturb=fgsm,
        alpha=0.0,
        loss="logistic",
        lr=0.1,
        steps=30,
        mask=mask,
        key=jax.random.PRNGKey(0),
    )
    np.testing.assert_array_equal(np.asarray(adv.a), np.asarray(p0.a))  # frozen readout stays frozen

    def adv_loss(p):
        f = lambda q: apply_fn(p, q)  # noqa: E731
        return float(jnp.mean(jax.nn.softplus(-y * f(x + fgsm(f, x, y, None)))))

    assert adv_loss(adv) < adv_loss(plain)
    with pytest.raises(TypeError, match="key"):  # a required keyword: no silent default key
        training.adversarial_train(apply_fn, p0, x, y, perturb=fgsm, lr=0.1, steps=3, mask=mask)
    with pytest.raises(ValueError, match="key: a perturbed objective"):  # and never None
        training.adversarial_train(apply_fn, p0, x, y, perturb=fgsm, lr=0.1, steps=3, mask=mask, key=None)
    objective, opt = training.Objective("logistic", perturb=fgsm), optax.sgd(0.1)
    with pytest.raises(TypeError, match="key"):
        training.fit(apply_fn, p0, x, y, objective, opt, steps=3)
    with pytest.raises(ValueError, match="key: a perturbed objective"):
        training.fit(apply_fn, p0, x, y, objective, opt, steps=3, key=None)
