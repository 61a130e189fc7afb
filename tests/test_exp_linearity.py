"""The linearity experiment (Goodfellow et al. 2015) on tiny configs: outputs exist and the predicted directions
hold, with the tolerances stated in each assertion."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import linearity
from ntk_adv import models
from ntk_adv.data import DataSpec
from ntk_adv.results import read_csv
from ntk_adv.training import TrainConfig, centered, centered_mask, train

DIGITS = DataSpec("digits", n_train=120, n_test=60)


def _outputs_exist(out, figures):
    for name in ("results.csv", "summary.json", *(f"{f}.{ext}" for f in figures for ext in ("png", "pdf"))):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert all(c["verdict"] in ("confirmed", "refuted") and (c["verdict"] == "confirmed" or c["reason"]) for c in summary["claims"])
    assert set(summary["predictions"]) == {c["name"] for c in summary["claims"]}
    return summary, read_csv(out / "results.csv")


def test_dimension_slopes(tmp_path):
    """(a) FGSM logit change ~ d, random-sign change ~ sqrt(d), for the linear model, a net and the limit."""
    cfg = linearity.Config(dims=(16, 64, 256), seeds=3, dim_width=256, n_synthetic=100, n_points=50, parts="a")
    summary = linearity.main(cfg, tmp_path, progress=False)
    _, rows = _outputs_exist(tmp_path, ["linearity_dimension"])
    assert len(rows) == 3 * 3 * len(linearity.DIM_MODELS) * len(linearity.DIM_METRICS)
    for model in linearity.DIM_MODELS:
        fgsm = summary["dim_slopes"][f"fgsm_change_{model}"]["slope"]
        rand = summary["dim_slopes"][f"random_change_{model}"]["slope"]
        assert 0.8 <= fgsm <= 1.2, (model, fgsm)  # theory 1
        assert 0.3 <= rand <= 0.7, (model, rand)  # theory 1/2
        assert 0.3 <= summary["dim_slopes"][f"fgsm_random_ratio_{model}"]["slope"] <= 0.7  # theory 1/2
    # The linear model is exactly linear: the actual change equals eps * ||w||_1 to float round-off.
    lin = [(r["value"], s["value"]) for r in rows for s in rows
           if r["model"] == s["model"] == "linear" and r["d"] == s["d"] and r["seed"] == s["seed"]
           and r["metric"] == "fgsm_change" and s["metric"] == "fgsm_first_order"]
    np.testing.assert_allclose(*np.asarray(lin).T, rtol=1e-4)
    assert summary["predictions"]["a_fgsm_linear_in_d"]["verdict"] == "confirmed"
    assert summary["predictions"]["a_random_sqrt_d"]["verdict"] == "confirmed"


@pytest.mark.slow  # ~10 s: in CI's slow run
def test_rays_and_fgsm_error(tmp_path):
    """(b) piecewise linear rays converging to the limit, (c) FGSM error rising with eps, widths -> limit."""
    cfg = linearity.Config(widths=(16, 128, 1024), seeds=2, data=DIGITS, steps=100, ray_points=201, n_rays=8,
                           eps_grid=(0.0, 0.1, 0.2, 0.3, 0.4), parts="bc")
    summary = linearity.main(cfg, tmp_path, progress=False)
    _outputs_exist(tmp_path, ["linearity_ray", "linearity_fgsm"])
    assert summary["ray_pl_residual_max"] < 1e-4  # exactly linear between kinks (float32 round-off)
    assert 0.8 <= summary["ray_kinks_slope"] <= 1.2  # kinks ~ m
    assert summary["ray_sup_gap_slope"] < -0.25  # theory -1/2
    assert min(summary["ray_wrong_contiguous"].values()) >= 0.9  # one wrong-class interval per ray
    curves = summary["fgsm_error_curves"]
    for name, curve in curves.items():
        assert curve[-1] - curve[0] >= 0.3, name  # FGSM error rises with eps
    gaps = summary["fgsm_error_gap_to_limit_by_width"]
    assert gaps["1024"] < gaps["16"]  # finite widths approach the limit's error curve


def test_adversarial_training(tmp_path):
    """(d) adversarial training lowers the FGSM error at its eps by >= 0.1; random-sign noise training does not."""
    cfg = linearity.Config(seeds=2, data=DIGITS, steps=100, adv_width=128, eps_grid=(0.0, 0.1, 0.2, 0.3),
                           adv_eps=0.3, parts="d")
    summary = linearity.main(cfg, tmp_path, progress=False)
    _outputs_exist(tmp_path, ["linearity_fgsm"])
    err = {m: v["mean"] for m, v in summary["adv_fgsm_error_at_eps"].items()}
    assert err["clean"] - err["fgsm"] >= 0.1, err
    assert abs(err["clean"] - err["noise"]) < 0.1, err


def test_adversarial_train_clean_equals_library_training():
    """mode='clean' is plain full-batch gradient descent: identical to ntk_adv.training.train (theory preset)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (30, 5))
    y = jnp.where(x[:, 0] > 0, 1.0, -1.0)
    net = models.TwoLayerConfig(16)
    apply_c = centered(models.make_apply(net))
    p0 = models.init_params(net, 5, key=jax.random.PRNGKey(1))
    mask = centered_mask(models.trainable_mask(net))
    ours = linearity.adversarial_train(apply_c, (p0, p0), x, y, mode="clean", eps=0.1, alpha=0.5, loss="logistic",
                                       lr=0.3, steps=20, key=jax.random.PRNGKey(2), mask=mask)
    ref = train(apply_c, (p0, p0), x, y, TrainConfig.theory(lr=0.3, steps=20, loss="logistic"), mask=mask).params
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown adversarial training mode"):
        linearity.adversarial_train(apply_c, (p0, p0), x, y, mode="pgd", eps=0.1, alpha=0.5, loss="logistic",
                                    lr=0.3, steps=2, key=jax.random.PRNGKey(2))


@pytest.mark.parametrize("kwargs, message", [
    ({"dims": (16, 32)}, "dims must hold >= 3"),
    ({"widths": (8, 8, 16)}, "widths must hold >= 3 distinct"),
    ({"parts": "ax"}, "parts must be"),
    ({"adv_alpha": 1.5}, "adv_alpha"),
    ({"loss": "mse"}, "margin loss"),
    ({"synthetic": "digits"}, "synthetic must be"),
    ({"eps_grid": ()}, "eps_grid"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        linearity.Config(**kwargs)


def test_cli_rejects_bad_parts(capsys):
    from experiments import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["linearity", "--parts", "xyz", "--quiet"])
    assert exc.value.code == 2
    assert "parts must be a non-empty subset of 'abcd'" in capsys.readouterr().err
