"""The one training loop gives the numbers of the two loops it replaced: float64 parameters (and losses) of
``train`` (plain and centred, both presets, two losses, frozen and trained readout) and of
``adversarial_train`` at a small config, stored in tests/data/reference_training.json by the pre-refactor
code, equal to 1e-12."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import enable_x64

from ntk_adv import models
from ntk_adv.training import TrainConfig, adversarial_train, centered, centered_mask, train

REFERENCE = json.loads((Path(__file__).parent / "data" / "reference_training.json").read_text())


def flat(tree, losses=None):
    parts = [np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(tree)]
    return np.concatenate(parts + ([np.asarray(losses)] if losses is not None else []))


def perturb(predict, x, y, k):
    g = jax.grad(lambda q: jnp.sum(-y * predict(q)))(x)
    return 0.3 * jnp.sign(g) + 0.01 * jax.random.normal(k, x.shape, x.dtype)


@pytest.mark.parametrize(("parametrization", "readout"), [("standard", False), ("ntk", True)])
def test_train_and_adversarial_train_match_the_reference(parametrization, readout):
    with enable_x64():
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((12, 5)))
        y = jnp.asarray(np.where(rng.random(12) < 0.5, -1.0, 1.0))
        net = models.TwoLayerConfig(7, gamma=0.1, parametrization=parametrization, train_readout=readout)
        p0 = models.init_params(net, 5, key=jax.random.PRNGKey(3), dtype=jnp.float64)
        f, mask = models.make_apply(net), models.trainable_mask(net)
        for preset in ("theory", "paper"):
            for loss in ("identity", "logistic"):
                cfg = getattr(TrainConfig, preset)(lr=0.05, steps=15, loss=loss)
                r = train(f, p0, x, y, cfg, mask=mask)
                want = REFERENCE[f"train/{parametrization}/{preset}/{loss}"]
                np.testing.assert_allclose(flat(r.params, r.losses), want, rtol=1e-12, atol=1e-12)
                r = train(centered(f), (p0, p0), x, y, cfg, mask=centered_mask(mask))
                want = REFERENCE[f"centred/{parametrization}/{preset}/{loss}"]
                np.testing.assert_allclose(flat(r.params, r.losses), want, rtol=1e-12, atol=1e-12)
        for alpha in (0.0, 0.5):
            p = adversarial_train(
                f,
                p0,
                x,
                y,
                perturb=perturb,
                alpha=alpha,
                loss="logistic",
                lr=0.05,
                steps=10,
                key=jax.random.PRNGKey(5),
                mask=mask,
            )
            np.testing.assert_allclose(
                flat(p), REFERENCE[f"adv/{parametrization}/{alpha}"], rtol=1e-12, atol=1e-12
            )


def test_anchored_weighted_fit_equals_a_plain_loop():
    """The anchored, sample-weighted objective of the one loop (plain GD through optax, frozen readout through
    ``optax.multi_transform``) equals a hand-written masked GD loop (the one experiments/intriguing.py
    had)."""
    from ntk_adv.losses import pointwise_loss
    from ntk_adv.training import Objective, fit, make_optimizer

    with enable_x64():
        rng = np.random.default_rng(1)
        x = jnp.asarray(rng.standard_normal((10, 4)))
        y = jnp.asarray(np.where(rng.random(10) < 0.5, -1.0, 1.0))
        w = jnp.asarray((rng.random(10) < 0.7).astype(float))
        net = models.TwoLayerConfig(6, gamma=0.2)
        apply_c, pair, mask = models.centred_pair(net, 4, key=jax.random.PRNGKey(2), dtype=jnp.float64)
        lr, decay, steps = 0.1, 0.05, 12
        mask_leaves = [bool(m) for m in jax.tree_util.tree_leaves(mask)]

        def objective(p):
            fit_term = jnp.sum(w * pointwise_loss("logistic", apply_c(p, x), y)) / jnp.sum(w)
            reg = sum(
                jnp.sum((a - b) ** 2)
                for a, b, m in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(pair), mask_leaves)
                if m
            )
            return fit_term + 0.5 * decay * reg

        p = pair
        for _ in range(steps):
            g = jax.tree_util.tree_leaves(jax.grad(objective)(p))
            leaves = [
                a - lr * gl if m else a for a, gl, m in zip(jax.tree_util.tree_leaves(p), g, mask_leaves)
            ]
            p = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(pair), leaves)
        got = fit(
            apply_c,
            pair,
            x,
            y,
            Objective("logistic", anchored=True, weighted=True),
            make_optimizer(TrainConfig.theory(), lr),
            steps=steps,
            key=None,
            mask=mask,
            sample_weight=w,
            anchor=pair,
            decay=decay,
        ).params
        np.testing.assert_allclose(flat(got), flat(p), rtol=1e-12, atol=1e-12)
