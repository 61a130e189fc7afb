"""The purification experiment: neuron metrics are right on constructed weights, and on a tiny config the
predicted directions hold (clean training is accurate but not robust, adversarial training purifies the neurons
and raises robust accuracy, the NTK limit is not robust)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import purification
from ntk_adv import models
from ntk_adv.results import read_csv


def _problem(**kw):
    cfg = purification.Config(**kw)
    return cfg, {k: jnp.asarray(v) for k, v in purification.make_problem(cfg, 0).items()}


def test_problem_is_sparse_coding():
    cfg, prob = _problem(d=16, n_atoms=16, n_train=50, n_test=10, noise=0.0)
    dic = np.asarray(prob["dic"])
    np.testing.assert_allclose(dic.T @ dic, np.eye(16), atol=1e-5)
    z = np.asarray(prob["x"]) @ dic  # noise-free: the codes themselves
    np.testing.assert_allclose(np.sum(np.abs(z) > 0.5, axis=1), cfg.sparsity)
    np.testing.assert_allclose(np.sign(z @ np.asarray(prob["w_star"])), np.asarray(prob["y"]))


def test_neuron_metrics_on_pure_and_dense_neurons():
    _, prob = _problem(d=16, n_atoms=16, n_train=10, n_test=10)
    dic, w_star = prob["dic"], prob["w_star"]
    w = jnp.stack([3.0 * dic[:, 0], dic @ w_star, dic[:, 1] + 0.5 * dic[:, 2]])
    st = purification.neuron_stats(w, jnp.ones(3), dic, pure_atoms=1)
    np.testing.assert_allclose(st["purity"], [1.0, 1 / 4, 1 / np.sqrt(1.25)], rtol=1e-5)
    np.testing.assert_allclose(st["dense_mass"], [0.0, 15 / 16, 0.25 / 1.25], atol=1e-5)
    np.testing.assert_array_equal(st["pure"], [1.0, 0.0, 1.0])
    two = purification.neuron_stats(w, jnp.ones(3), dic, pure_atoms=2)
    np.testing.assert_allclose(two["dense_mass"][2], 0.0, atol=1e-5)  # two atoms explain it fully


def test_oracle_is_the_purified_net():
    cfg, prob = _problem(d=16, n_atoms=16, n_train=10, n_test=200)
    params = purification.oracle_params(prob["dic"], prob["w_star"], 0.5)
    out = models.make_apply(purification.oracle_net(cfg))(params, prob["x_test"])
    assert float(jnp.mean(jnp.sign(out) == prob["y_test"])) == 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"sparsity": 2}, "sparsity must be odd"),
    ({"n_atoms": 64, "d": 32}, "orthogonal dictionary needs n_atoms <= d"),
    ({"adv_attack": "lbfgs"}, "unknown adversarial-training attack"),
    ({"adv_steps": 1000, "checkpoints": 3}, "multiple of checkpoints"),
    ({"init_scale": 0.0}, "init_scale must be"),
])
def test_bad_config_fails_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        purification.Config(**kwargs)


def test_purification_main_tiny(tmp_path):
    cfg = purification.Config(seeds=2, n_train=500, n_test=200, width=128, steps=500, adv_steps=600,
                              checkpoints=2, lazy_width=256, lazy_steps=200, eval_steps=10)
    summary = purification.main(cfg, tmp_path, progress=False)
    for name in ("results.csv", "neurons.csv", "summary.json", "purification.png", "purification.pdf"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = read_csv(tmp_path / "results.csv")
    assert {"model", "seed", "metric", "value"} <= set(rows[0])
    assert json.loads((tmp_path / "summary.json").read_text())["verdicts"] == summary["verdicts"]
    m = {model: {k: v["mean"] for k, v in res.items()} for model, res in summary["models"].items()}
    # clean feature learning: accurate, dense (purity near 1/sqrt(D) = 0.18), and not robust
    assert m["clean"]["clean_acc"] >= 0.95
    assert m["clean"]["robust_acc_l2"] <= m["clean"]["clean_acc"] - 0.3
    assert m["clean"]["purity"] < 0.25
    assert m["clean"]["weight_move"] > 5  # rich regime: weights move far from the small init
    # adversarial training: robust accuracy +0.1 or more, purity +0.05, dense mass -0.03
    assert m["adversarial"]["robust_acc_l2"] >= m["clean"]["robust_acc_l2"] + 0.1
    assert m["adversarial"]["purity"] >= m["clean"]["purity"] + 0.05
    assert m["adversarial"]["dense_mass"] <= m["clean"]["dense_mass"] - 0.03
    # lazy regime and its NTK limit: weights barely move, robust accuracy far below clean accuracy
    assert m["lazy"]["weight_move"] < 0.2
    for norm in ("l2", "linf"):
        assert m["ntk_limit"][f"robust_acc_{norm}"] <= m["ntk_limit"]["clean_acc"] - 0.2
    # the ideal purified net is robust at the same radii: the gap is not a property of the task
    assert m["oracle"]["robust_acc_l2"] >= 0.9 and m["oracle"]["robust_acc_linf"] >= 0.9
