"""The halfway experiment: flip points are exact class changes, and on a tiny config the predicted directions
hold (flip points of two nets approach each other with width, boundary agreement goes with transfer, the net
approaches the kernel predictor)."""

import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import halfway
from ntk_adv import engine, limits
from ntk_adv.arch import INF_WIDTH
from ntk_adv.data import DataSpec, load_spec
from ntk_adv.metrics import flip_points
from ntk_adv.results import read_csv


def test_flip_point_is_a_real_class_change_of_a_kernel_predictor():
    cfg = halfway.Config()
    ds = load_spec(DataSpec("digits", n_train=80, n_test=60, pos=3, neg=8))
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    pred = limits.make_predictor(
        cfg.net.with_width(INF_WIDTH).kernel, x, y, loss="logistic", lr=0.1, steps=100
    )
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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seeds": 3}, "seeds must be an even integer"),
        ({"seeds": 2}, "seeds must be an even integer >= 4"),
        ({"halfway_tolerance": 0.5}, "halfway_tolerance"),
        ({"widths": ()}, "widths must be"),
        ({"attack": "pgd"}, "unknown attack 'pgd'"),
        ({"eps": 0.0}, "eps must be"),
    ],
)
def test_bad_config_fails_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        halfway.Config(**kwargs)


QUICK_VERDICTS = {  # measured on the quick config (fixed seeds): value [95% interval] vs prediction
    "flip_points_converge": "confirmed",  # -0.499 [-0.681, -0.316] vs -0.500 +- 0.250
    "halfway_sides_with_1nn_m16": "inconclusive",  # 0.208 [0.000, 0.669] vs > 0.5
    "flip_point_halfway_m16": "inconclusive",  # 0.535 [0.395, 0.674] vs 0.500 +- 0.050
    "transfer_follows_boundaries_m16": "inconclusive",  # -0.486 [-0.939, 0.584] vs < 0
    "net_agrees_with_kernel_m16": "confirmed",  # 0.988 [0.950, 1.000] vs > 0.9 (paired_proportion)
    # seed_proportion's Wilson interval over 4 seeds: was refuted at 0.083 [0.000, 0.250]
    "halfway_sides_with_1nn_m256": "inconclusive",  # 0.083 [0.000, 0.569] vs > 0.5
    "flip_point_halfway_m256": "refuted",  # 0.591 [0.556, 0.627] vs 0.500 +- 0.050
    "transfer_follows_boundaries_m256": "inconclusive",  # -0.486 [-0.939, 0.584] vs < 0
    "net_agrees_with_kernel_m256": "confirmed",  # 0.995 [0.968, 1.000] vs > 0.9 (paired_proportion)
    "halfway_sides_with_1nn_m2048": "refuted",  # 0.000 [0.000, 0.490] vs > 0.5
    "flip_point_halfway_m2048": "refuted",  # 0.609 [0.601, 0.618] vs 0.500 +- 0.050
    "transfer_follows_boundaries_m2048": "inconclusive",  # -0.393 [-0.924, 0.655] vs < 0
    "net_agrees_with_kernel_m2048": "confirmed",  # 1.000 [0.982, 1.000] vs > 0.9 (paired_proportion)
    # seed_proportion's Wilson interval over 12 seeds: was refuted at 0.440 [0.408, 0.473]
    "attack_white_box_success": "inconclusive",  # 0.440 [0.210, 0.700] vs > 0.5
}


TRAINED = []  # widths trained by the quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("halfway")
    train_width = halfway.units.train_width
    halfway.units.train_width = lambda cfg, w, *a: TRAINED.append(w) or train_width(cfg, w, *a)
    try:
        return out, halfway.main(halfway.QUICK_CONFIG, out, progress=False)
    finally:
        halfway.units.train_width = train_width


def test_halfway_quick_verdicts(quick):
    """Every claim of the quick run, verdict pinned as measured; proportions keep their intervals in [0,
    1]."""
    cfg = halfway.QUICK_CONFIG
    tmp_path, summary = quick
    for name in ("results.csv", "pairs.csv", "summary.json", "halfway.png", "halfway.pdf"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = read_csv(tmp_path / "results.csv")
    n_w, n_s = len(cfg.widths), cfg.seeds
    assert len(rows) == n_w * (n_s * len(halfway.SEED_METRICS) + n_s // 2)
    n_models = n_w * n_s + 1
    assert len(read_csv(tmp_path / "pairs.csv")) == n_models * (n_models - 1) // 2
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["verdicts"] == summary["verdicts"] == QUICK_VERDICTS
    assert all(0 <= r["value"] <= 1 for r in rows if r["metric"] == "flip_t")
    for c in summary["claims"]:
        assert c["verdict"] == "confirmed" or c["reason"], c["name"]
        lo, hi = c["measured_ci95"]
        assert c["verdict"] != "confirmed" or lo < hi, c["name"]  # never confirmed on a zero-width interval
        assert c["paper"], c["name"]
        if c["name"].startswith(("halfway_sides", "net_agrees", "attack_white")):
            lo, hi = c["measured_ci95"]
            assert 0.0 <= lo <= c["measured_value"] <= hi <= 1.0, c["name"]
    assert set(summary["rho_within_width"]) == {str(w) for w in cfg.widths}  # per width, not pooled
    assert jax.__version__ == on_disk["jax"]


def _records(store):
    return {f: json.loads(f.read_text()) for f in sorted((store / "records").glob("*.json"))}


def test_halfway_resumes_per_cell(quick, monkeypatch):
    """A killed run (the nets' record missing) recomputes that cell alone - every width trained once, in the
    unit that computes the transfer; the reference read from the store - and concludes the same; the cells
    are the reference and the nets."""
    out, summary = quick
    assert TRAINED == list(halfway.QUICK_CONFIG.widths)  # once each: the nets unit owns them for the transfer
    records = _records(out / "store")
    assert sorted(r["config"]["part"] for r in records.values()) == ["nets", "reference"]
    reference = next(r for r in records.values() if r["config"]["part"] == "reference")["config"]["settings"]
    assert reference["widths"] == list(halfway.Config().widths)  # not read by the reference
    before = (out / "results.csv").read_text(), (out / "pairs.csv").read_text()
    lost = next(f for f, r in records.items() if r["config"]["part"] == "nets")
    lost.unlink()
    calls = []
    train_width = halfway.units.train_width
    monkeypatch.setattr(
        halfway.units, "train_width", lambda cfg, w, *a: calls.append(w) or train_width(cfg, w, *a)
    )
    again = halfway.main(halfway.QUICK_CONFIG, out, progress=False)
    assert calls == list(halfway.QUICK_CONFIG.widths)
    assert again["verdicts"] == summary["verdicts"] and again["rho"] == summary["rho"]
    assert ((out / "results.csv").read_text(), (out / "pairs.csv").read_text()) == before


TINY = halfway.Config(
    widths=(8, 16),
    seeds=4,
    data=DataSpec("digits", n_train=40, n_test=30, pos=3, neg=8),
    train=halfway.TrainConfig.theory(lr=0.2, steps=10, loss="logistic", record_loss=False),
    n_pairs=20,
    grid=16,
    bisection=8,
    permutations=50,
)


@pytest.mark.slow
def test_halfway_transfer_on_processes_retrains_nothing(tmp_path):
    """On two worker processes the transfer is computed from the nets the same unit trained: each width is
    trained exactly once over all cells (the records count the trainings), and the rows equal the main
    process's."""
    halfway.main(TINY, tmp_path / "a", progress=False)
    other = replace(TINY, run=engine.Execution(backend="processes", workers=2))
    halfway.main(other, tmp_path / "b", progress=False)
    for name in ("results.csv", "pairs.csv"):
        assert read_csv(tmp_path / "a" / name) == read_csv(tmp_path / "b" / name), name
    for run in ("a", "b"):
        rows = [row for r in _records(tmp_path / run / "store").values() for row in r["metrics"]["rows"]]
        trained = sorted(r["width"] for r in rows if r["part"] == "trainings")
        assert trained == sorted(TINY.widths), run  # once per width: nothing retrains for the transfer
        assert {r["part"] for r in rows} == {"reference", "width", "transfer", "trainings"}
