"""Perturbation learning on any architecture (ProtocolConfig.arch): a deep FC net at finite and infinite width
converges to its same-init limit as width grows; the two-layer numbers are those of the code before the
architecture was threaded through (pinned); infinite width has one spelling; one seed rule; the store's
columns come from the architecture and it does not import the limits."""

import json
import math
import subprocess
import sys

import jax
import numpy as np
import pytest

from ntk_adv.arch import INF_WIDTH
from ntk_adv.arch.fc import FC
from ntk_adv.data import DataSpec, data_arrays
from ntk_adv.models import TwoLayerConfig
from ntk_adv.perturbation import batch, protocol
from ntk_adv.store import ResultStore, cell_id

DIGITS = DataSpec("digits", n_train=40, n_test=40)


# ------------------------------------------------------------------------------------------- deep FC
def test_fc_depth3_cells_run_and_converge_to_their_same_init_limit():
    """An FC net of depth 3 (NTK parametrization, every layer trained) at widths 64 and 1024 and at
    INF_WIDTH: every cell runs, the two-layer-only metrics are absent, and the relative output gap of g to
    the limit started from g's own initial function shrinks with width (lazy theory: ~ m^(-1/2), i.e. a
    factor 1/4 from 64 to 1024; asserted: below 0.7 of the narrow net's, averaged over 3 seeds)."""
    base = protocol.ProtocolConfig(
        data=DIGITS,
        arch=FC(width=64, depth=3, parametrization="ntk"),
        steps_f=20,
        steps_g=20,
        lr_f=0.5,
        lr_g=0.5,
        eps=1.0,
    )
    gaps = {}
    for width in (64, 1024):
        cfg = base.with_(width=width)
        assert cfg.arch == FC(width=width, depth=3, parametrization="ntk")
        res = batch.run_protocol_batch([(cfg, s) for s in range(3)])
        for r in res:
            assert "cos_predicted" not in r and "agreement_predicted" not in r and "g_coef_bias" not in r
            assert all(np.isfinite(r[k]) for k in ("agreement", "g_gap", "f_gap", "g_weight_move"))
            assert 0.0 <= r["g_flip_test"] <= 1.0
        gaps[width] = float(np.mean([r["g_gap"] for r in res]))
    assert gaps[1024] < 0.7 * gaps[64], gaps
    inf = base.with_(width=INF_WIDTH)
    assert inf.infinite
    (r,) = batch.run_protocol_batch([(inf, 0)])
    assert 0.0 <= r["agreement"] <= 1.0 and "bias_term_abs" not in r


# ------------------------------------------------------------------------------------------- two-layer pinned
# Recorded with the code before ProtocolConfig took an architecture (commit 6f8bbdb, jax 0.5.3, CPU):
# ProtocolConfig(DIGITS, width, loss, steps 10, lr 0.1, eps 0.5) through run_protocol_batch, seeds 0 and 1.
PINNED = {
    (16, "identity"): {
        "agreement": (0.949999988079071, 0.10000000149011612),
        "g_gap": (0.4921979010105133, 0.01704253815114498),
        "agreement_predicted": (0.6423495411872864, 0.4990394711494446),
        "g_coef_signal": (2.013159990310669, 0.8840164542198181),
    },
    (INF_WIDTH, "identity"): {"agreement": (0.9000000357627869, 0.9750000238418579)},
    (16, "logistic"): {"agreement": (0.9000000357627869, 0.02500000037252903)},
    (INF_WIDTH, "logistic"): {"agreement": (0.925000011920929, 1.0)},
}


@pytest.mark.parametrize("width, loss", list(PINNED))
def test_two_layer_numbers_are_unchanged_by_the_refactor(width, loss):
    cfg = protocol.ProtocolConfig(
        data=DIGITS, arch=TwoLayerConfig(width), loss=loss, steps_f=10, steps_g=10, lr_f=0.1, lr_g=0.1
    ).with_(eps=0.5)
    got = batch.run_protocol_batch([(cfg, 0), (cfg, 1)])
    for metric, want in PINNED[(width, loss)].items():
        for seed in (0, 1):
            # agreements are multiples of 1/40: exact; continuous metrics to float32 rounding across XLA
            assert got[seed][metric] == pytest.approx(want[seed], rel=1e-4, abs=1e-6), (metric, seed)


# ------------------------------------------------------------------------------------------- one spelling
def test_infinite_width_has_one_spelling():
    cfg = protocol.ProtocolConfig(data=DIGITS)
    assert cfg.arch == TwoLayerConfig(100, parametrization="standard", gamma=0.0, bias=True)
    assert not cfg.infinite and cfg.with_(width=INF_WIDTH).infinite
    for bad in (None, "inf", "infinite"):
        with pytest.raises(ValueError, match="INF_WIDTH"):
            cfg.with_(width=bad)
    with pytest.raises(ValueError, match="INF_WIDTH"):
        protocol.ProtocolConfig(arch="two-layer")
    with pytest.raises(TypeError):
        protocol.ProtocolConfig(width=16)  # the loose field is gone: the width is the architecture's
    with pytest.raises(ValueError, match="finite width"):
        protocol.init_model(cfg.with_(width=INF_WIDTH), 64, jax.random.PRNGKey(0), np.float32)
    with pytest.raises(ValueError, match="unknown field 'depht'"):
        cfg.with_(depht=3)


# ------------------------------------------------------------------------------------------- seed rule
def test_seed_s_is_one_key_in_the_sweep_and_in_run_seeds():
    """Seed s is PRNGKey(s) in a sweep cell (batch.cell_key) and in protocol.run_seeds (base_seed + i)."""
    for s in (0, 3, 7):
        key = np.asarray(jax.random.PRNGKey(s))
        assert np.array_equal(np.asarray(batch.cell_key(s)), key)
        assert np.array_equal(np.asarray(protocol.seed_key(s)), key)
    cfg = protocol.ProtocolConfig(
        data=DIGITS, arch=TwoLayerConfig(INF_WIDTH), steps_f=10, steps_g=10, lr_f=0.1, lr_g=0.1, eps=0.5
    )
    seeds = protocol.run_seeds(cfg, data_arrays(DIGITS), 3, base_seed=4)
    cells = batch.run_protocol_batch([(cfg, s) for s in (4, 5, 6)])
    for metric in ("agreement", "g_acc_test", "bias_term_abs"):
        np.testing.assert_allclose(seeds[metric], [c[metric] for c in cells], rtol=1e-5, atol=1e-6)
    # the targets differ between seeds: the seeds are distinct draws, not one key reused
    assert len({round(c["mean_y_adv"], 6) for c in cells}) > 1


# ------------------------------------------------------------------------------------------- store
def test_store_does_not_import_the_limits():
    code = "import sys, ntk_adv.store; print('ntk_adv.limits' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_store_columns_come_from_the_architecture(tmp_path):
    store = ResultStore(tmp_path)
    base = protocol.ProtocolConfig(data=DIGITS, arch=FC(width=32, depth=3, gamma=0.5))
    for cfg in (base, base.with_(width=INF_WIDTH), base.with_(arch=TwoLayerConfig(8))):
        store.put(cell_id(cfg, 0), cfg, 0, {"agreement": 0.5}, kind="t")
    rows = {(r["arch"], r["width"], r["depth"]): r for r in store.rows()}
    assert set(rows) == {("fc", 32, 3), ("fc", math.inf, 3), ("two-layer", 8, 2)}
    assert rows[("fc", 32, 3)]["gamma"] == 0.5 and rows[("two-layer", 8, 2)]["gamma"] == 0.0
    assert not any(k.startswith("arch.") for r in rows.values() for k in r)
    # the record keeps the architecture's name and depth, so the columns come back from disk alone
    rec = json.loads(next((tmp_path / "records").glob("*.json")).read_text())
    assert {"__arch__", "__depth__", "width"} <= set(rec["config"]["arch"])
    # the width and depth are part of a cell's identity
    assert cell_id(base, 0) != cell_id(base.with_(depth=4), 0) != cell_id(base.with_(width=64), 0)


def test_image_architectures_need_an_image_data_set():
    class Conv(FC):  # stands in for the CNN (name 'cnn'): images (N, H, W, C) from the data set's shape
        name = "cnn"

    fns = protocol.arch_fns(Conv(width=4), "digits")
    x = jax.numpy.arange(2 * 64, dtype=np.float32).reshape(2, 64)
    assert fns.inputs(x).shape == (2, 8, 8, 1)
    assert fns.input_shape(64) == (8, 8, 1)
    cifar = protocol.arch_fns(Conv(width=4), "cifar10")
    img = cifar.inputs(jax.numpy.arange(3072, dtype=np.float32)[None])
    assert img.shape == (1, 32, 32, 3) and float(img[0, 0, 1, 0]) == 1.0 and float(img[0, 0, 0, 1]) == 1024.0
    with pytest.raises(ValueError, match="--arch cnn takes images.*'gauss'"):
        protocol.arch_fns(Conv(width=4), "gauss")
    assert protocol.arch_fns(FC(width=4), "gauss").input_shape(7) == (7,)
