"""The intriguing-properties experiment (Szegedy et al. 2014) on tiny configs: outputs exist and the predicted
directions hold, with the tolerances stated in each assertion."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import intriguing
from ntk_adv import kernels, limits, models
from ntk_adv.data import DataSpec
from ntk_adv.results import read_csv, select
from ntk_adv.training import TrainConfig, centered, centered_mask, train

DIGITS = DataSpec("digits", n_train=120, n_test=40)
ATTACK = dict(n_attack=20, lbfgs_steps=30, refine_steps=3, c_grid=(0.01, 0.1, 1.0))


def _outputs_exist(out, figures):
    for name in ("results.csv", "summary.json", *(f"{f}.{ext}" for f in figures for ext in ("png", "pdf"))):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert all(c["verdict"] in ("confirmed", "refuted") and (c["verdict"] == "confirmed" or c["reason"]) for c in summary["claims"])
    assert set(summary["predictions"]) == {c["name"] for c in summary["claims"]}
    return summary, read_csv(out / "results.csv")


@pytest.mark.slow  # ~20 s: in CI's slow run
def test_lbfgs_distortion_and_noise(tmp_path):
    """(a) L-BFGS always succeeds and finite widths approach the limit's distortion; (b) Gaussian noise of up to
    5x the adversarial norm barely changes the error."""
    cfg = intriguing.Config(widths=(16, 64, 256), seeds=2, data=DIGITS, steps=100, decays=(0.0, 0.01, 0.1),
                            decay_width=64, parts="ab", **ATTACK)
    summary = intriguing.main(cfg, tmp_path, progress=False)
    _, rows = _outputs_exist(tmp_path, ["intriguing_distortion", "intriguing_noise"])
    assert min(summary["lbfgs_success_rate"].values()) >= 0.95  # stated: success on (almost) every point
    assert summary["distortion_gap_slope"] < 0  # per-point distortion gap to the limit shrinks with width
    gaps = summary["distortion_gap_by_width"]
    assert gaps["256"] < gaps["16"]
    assert summary["predictions"]["a_decay_matches_limit"]["measured"] <= 0.05  # finite = limit at every decay
    for name, t in summary["noise_vs_adversarial"].items():
        assert t["adversarial_error"] >= 0.95, name
        assert max(t["noise_error"].values()) - t["clean_error"] <= 0.15, name  # noise stays near clean error
    assert {r["multiple"] for r in select(rows, part="b", metric="noise_error")} == {0.0, 1.0, 2.0, 5.0}


@pytest.mark.slow  # ~20 s: in CI's slow run
def test_transfer_matrix(tmp_path):
    """(c) the transfer matrix covers widths, seeds, the limit and the disjoint halves; a model's own minimal
    examples fool it; amplified perturbations transfer more than minimal ones."""
    cfg = intriguing.Config(widths=(16, 64, 256), seeds=2, data=DIGITS, steps=100, transfer_width=64, parts="c",
                            **ATTACK)
    summary = intriguing.main(cfg, tmp_path, progress=False)
    _, rows = _outputs_exist(tmp_path, ["intriguing_transfer"])
    cells = select(rows, part="c", metric="transfer")
    names = {r["source"] for r in cells}
    assert names == {f"m={w} s{s}" for w in (16, 64, 256) for s in (0, 1)} | {
        "limit", "m=64 half A", "m=64 half B", "limit half A", "limit half B"}
    assert len(cells) == 2 * len(names) ** 2
    diag = [r["value"] for r in cells if r["source"] == r["target"] and r["variant"] == "eta"]
    assert min(diag) >= 0.95  # minimal L-BFGS examples fool their own model
    plain = np.mean([r["value"] for r in cells if r["source"] != r["target"] and r["variant"] == "eta"])
    amplified = np.mean([r["value"] for r in cells if r["source"] != r["target"] and r["variant"] == "amplified"])
    assert amplified >= plain + 0.2, (plain, amplified)
    assert summary["transfer_halves"]["amplified"]["net_A_to_B"] >= 0.5  # across disjoint training sets
    tr = summary["transfer"]["amplified"]
    assert tr["net_net"]["256"] >= tr["net_net"]["16"]  # wider nets share their decision boundary more
    kappa = select(rows, part="c", metric="kappa_excess")
    assert len(kappa) == len(names) ** 2


def test_units_and_lipschitz(tmp_path):
    """(d) unit purity = random-direction purity (wide, lazy net) and both well above chance; (e) the
    product-of-norms bound holds and loosens with width."""
    cfg = intriguing.Config(data=DataSpec("digits", n_train=120, n_test=None), seeds=2, steps=100,
                            probe_widths=(64, 256, 1024, 4096), parts="de")
    summary = intriguing.main(cfg, tmp_path, progress=False)
    _, rows = _outputs_exist(tmp_path, ["intriguing_probes"])
    p = summary["purity_by_width"]
    assert abs(p["purity_units"]["4096"] - p["purity_random_pre"]["4096"]) <= 0.03
    assert min(p["purity_units"]["4096"], p["purity_random_pre"]["4096"]) >= p["purity_chance"]["4096"] + 0.1
    lp = summary["lipschitz"]
    assert lp["init"]["min_ratio"] >= 1.0 and lp["trained"]["min_ratio"] >= 1.0  # it is an upper bound
    assert lp["init"]["slope_top3"] >= 0.2  # theory ~0.4 over m = 256..4096 (d = 64)
    assert lp["trained"]["ratio_by_width"]["4096"] > lp["trained"]["ratio_by_width"]["256"]
    ratio = lp["trained"]["ratio_by_width"]["4096"] / lp["trained"]["theory_by_width"]["4096"]
    assert 0.75 <= ratio <= 1.25  # the lazy-regime prediction


def test_anchored_training_reduces_to_library():
    """Decay 0 and unit sample weights: anchored_train is ntk_adv.training.train (theory preset) and
    anchored_limit_coefficients is limits.flow_coefficients; a half mask equals training on that half."""
    x = jax.random.normal(jax.random.PRNGKey(0), (30, 5))
    y = jnp.where(x[:, 0] > 0, 1.0, -1.0)
    net = models.TwoLayerConfig(16)
    apply_c = centered(models.make_apply(net))
    p0 = models.init_params(net, 5, key=jax.random.PRNGKey(1))
    mask = centered_mask(models.trainable_mask(net))
    ones = jnp.ones(30)
    ours = intriguing.anchored_train(apply_c, (p0, p0), (p0, p0), x, y, sample_weight=ones, decay=0.0,
                                     loss="logistic", lr=0.3, steps=20, mask=mask)
    ref = train(apply_c, (p0, p0), x, y, TrainConfig.theory(lr=0.3, steps=20, loss="logistic"), mask=mask).params
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    half = intriguing.anchored_train(apply_c, (p0, p0), (p0, p0), x, y, sample_weight=(jnp.arange(30) < 15) * 1.0,
                                     decay=0.0, loss="logistic", lr=0.3, steps=20, mask=mask)
    ref = train(apply_c, (p0, p0), x[:15], y[:15], TrainConfig.theory(lr=0.3, steps=20, loss="logistic"),
                mask=mask).params
    for a, b in zip(jax.tree_util.tree_leaves(half), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    k = kernels.kernel_matrix(kernels.two_layer_kernel(), x)
    coef = intriguing.anchored_limit_coefficients("logistic", k, y, sample_weight=ones, decay=0.0, lr=0.3, steps=20)
    np.testing.assert_allclose(coef, limits.flow_coefficients("logistic", k, y, jnp.zeros(30), lr=0.3, steps=20),
                               rtol=1e-5, atol=1e-7)
    decayed = intriguing.anchored_limit_coefficients("logistic", k, y, sample_weight=ones, decay=1.0, lr=0.3,
                                                     steps=20)
    assert jnp.linalg.norm(decayed) < jnp.linalg.norm(coef)  # weight decay shrinks the learned function


def test_top_k_purity():
    labels = jnp.asarray([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    scores = jnp.asarray([[3.0, 0.0], [2.0, 5.0], [1.0, 0.1], [0.0, 4.0], [-1.0, 0.2], [-2.0, 0.3]])
    np.testing.assert_allclose(intriguing.top_k_purity(scores, labels, 3), [1.0, 2 / 3])


@pytest.mark.parametrize("kwargs, message", [
    ({"widths": (16, 64)}, "widths must hold >= 3"),
    ({"decays": (0.01, 0.1)}, "include 0.0"),
    ({"parts": "af"}, "parts must be"),
    ({"seeds": 1}, "needs seeds >= 2"),
    ({"c_grid": (0.0, 1.0)}, "c_grid"),
    ({"loss": "mse"}, "margin loss"),
    ({"data": DataSpec("gauss")}, "random labels"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        intriguing.Config(**kwargs)


def test_cli_rejects_bad_decays(capsys):
    from experiments import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["intriguing", "--decays", "0.1", "1.0", "--quiet"])
    assert exc.value.code == 2
    assert "include 0.0" in capsys.readouterr().err
