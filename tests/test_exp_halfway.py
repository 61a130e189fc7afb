"""The halfway experiment: flip points are exact class changes, and on a tiny config the predicted directions
hold (flip points of two nets approach each other with width, boundary agreement goes with transfer, the net
approaches the kernel predictor)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import halfway
from ntk_adv import limits
from ntk_adv.data import DataSpec, load_spec
from ntk_adv.metrics import flip_points
from ntk_adv.results import read_csv


def test_flip_point_is_a_real_class_change_of_a_kernel_predictor():
    cfg = halfway.Config()
    ds = load_spec(DataSpec("digits", n_train=80, n_test=60, pos=3, neg=8))
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    pred = limits.make_predictor(cfg.kernel(), x, y, loss="logistic", lr=0.1, steps=100)
    ia, ib = halfway.make_pairs(halfway.Config(n_pairs=30), ds.x_test, ds.y_test)
    xa, xb = jnp.asarray(ds.x_test[ia]), jnp.asarray(ds.x_test[ib])
    t, found = (np.asarray(v) for v in flip_points(pred, xa, xb, grid=32, bisection=20))
    assert found.mean() > 0.7  # a few pairs have an end point misclassified
    t, xa, xb = t[found], np.asarray(xa)[found], np.asarray(xb)[found]
    assert np.all((t >= 0) & (t <= 1))
    delta = 1e-3  # >> bisection resolution 1/32/2^20
    at = lambda s: jnp.asarray(xa * (1 - s)[:, None] + xb * s[:, None])
    cls = lambda v: np.where(np.asarray(v) >= 0, 1, -1)
    start = cls(pred(jnp.asarray(xa)))
    before, after = cls(pred(at(np.clip(t - delta, 0, 1)))), cls(pred(at(np.clip(t + delta, 0, 1))))
    assert np.all(before == start)
    assert np.all(after != start)


def test_nearest_neighbour_score_matches_argmin():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 4)).astype(np.float32)
    y = np.where(rng.random(30) < 0.5, -1.0, 1.0).astype(np.float32)
    z = rng.standard_normal((50, 4)).astype(np.float32)
    score = np.asarray(halfway.nearest_neighbour(jnp.asarray(x), jnp.asarray(y))(jnp.asarray(z)))
    nearest = np.argmin(((z[:, None, :] - x[None, :, :]) ** 2).sum(-1), axis=1)
    assert np.array_equal(np.where(score >= 0, 1.0, -1.0), y[nearest])


@pytest.mark.parametrize("kwargs, message", [
    ({"seeds": 3}, "seeds must be an even integer"),
    ({"widths": ()}, "widths must be"),
    ({"attack": "pgd"}, "unknown attack 'pgd'"),
    ({"eps_rel": 0.0}, "eps_rel must be"),
])
def test_bad_config_fails_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        halfway.Config(**kwargs)


def test_halfway_main_tiny(tmp_path):
    cfg = halfway.Config(widths=(16, 2048), seeds=4, data=DataSpec("digits", n_train=120, n_test=80, pos=3, neg=8),
                         steps=100, n_pairs=60, grid=32, bisection=12, permutations=200)
    summary = halfway.main(cfg, tmp_path, progress=False)
    for name in ("results.csv", "pairs.csv", "summary.json", "halfway.png", "halfway.pdf"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = read_csv(tmp_path / "results.csv")
    assert len(rows) == 2 * (4 * len(halfway.SEED_METRICS) + 2)
    n_models = 2 * 4 + 1
    assert len(read_csv(tmp_path / "pairs.csv")) == n_models * (n_models - 1) // 2
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["verdicts"] == summary["verdicts"]
    flip = [r for r in rows if r["metric"] == "flip_t"]
    assert all(0 <= r["value"] <= 1 for r in flip)
    # (i) two nets' flip points: at least 2x closer at width 2048 than at 16 (theory: sqrt(128) ~ 11x)
    by_w = summary["flip_net_net_by_width"]
    assert by_w["2048"]["mean"] < 0.5 * by_w["16"]["mean"]
    assert summary["flip_net_limit_by_width"]["2048"]["mean"] < 0.5 * summary["flip_net_limit_by_width"]["16"]["mean"]
    # (ii) closer flip points go with more transfer
    assert summary["rho"] < -0.2
    # (iii) the wide net agrees with the kernel predictor on >= 97% of test points, more than the narrow one
    agree = summary["agree_net_limit_by_width"]
    assert agree["2048"]["mean"] >= max(0.97, agree["16"]["mean"] - 1e-9)
    assert abs(summary["agree_net_1nn_by_width"]["2048"]["mean"] - summary["limit_1nn_agreement"]) <= 0.03
    assert jax.__version__ == on_disk["jax"]
