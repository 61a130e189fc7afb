"""Compile time counted: a sweep whose cells share shapes traces (and compiles) each group function once, and
a second sweep of the same shapes with other values (eps, learning rates) compiles nothing. Also (slow), under
the paper preset the engine's activation-space trainings give every metric of the backpropagated per-cell
protocol."""

import jax
import numpy as np
import pytest

from ntk_adv import engine, pattern_gd
from ntk_adv.data import DataSpec, data_arrays
from ntk_adv.models import TwoLayerConfig
from ntk_adv.perturbation import batch, protocol

# n_train = 26 appears in no other test, so that no compiled group of another test is reused here
BASE = protocol.ProtocolConfig(
    data=DataSpec("shifted_gauss", n_train=26, n_test=20, d=8),
    arch=TwoLayerConfig(8),
    steps_f=10,
    steps_g=10,
    lr_f=0.1,
    lr_g=0.1,
    eps=1.0,
    preset="paper",
)
WIDTHS = (8, pattern_gd.AUTO_MIN_WIDTH)  # backpropagated and activation-space groups


def compiled() -> dict[str, int]:
    """Entries in the jit caches of the group functions: one per distinct trace (static config x shapes).
    ``_cache_size`` is JAX's own count on jitted functions (the same on jax 0.5 and 0.12), so no log
    parsing."""
    return {name: getattr(batch, name)._cache_size() for name in ("_finite_batch", "_infinite_batch")}


def grid(eps, lrs):
    return engine.Grid(BASE, axes=(("width", WIDTHS), ("eps", eps), ("lr_g", lrs)), seeds=2)


def test_each_group_function_compiles_once(tmp_path):
    before = compiled()
    batch.run_sweep(grid((0.5, 2.0), (0.1, 0.05)), tmp_path / "a", progress=False)
    after = compiled()
    # one trace per width group of 8 cells
    assert after["_finite_batch"] - before["_finite_batch"] == len(WIDTHS)
    batch.run_sweep(grid((0.25, 1.0), (0.2, 0.01)), tmp_path / "b", progress=False)  # same shapes, new values
    assert compiled() == after  # nothing traced or compiled again


@pytest.mark.slow
def test_paper_preset_group_equals_backprop_cells(tmp_path):
    """The paper preset's activation-space group equals the backpropagated per-cell protocol on every metric
    (float32, 1e-4). Slow (a per-cell jit of the whole protocol); train_f / train_g are compared by default in
    test_pattern_gd."""
    first = batch.run_sweep(grid((0.5, 2.0), (0.1, 0.05)), tmp_path, progress=False)
    arrays = data_arrays(BASE.data)
    wide = [
        (rec, cfg)
        for rec, (cfg, _) in zip(first, grid((0.5, 2.0), (0.1, 0.05)).cells())
        if cfg.width == WIDTHS[1]
    ]
    assert pattern_gd.choose(wide[0][1].net(), wide[0][1].train_config("f"), BASE.data.n_train) == "pattern"
    run = jax.jit(
        lambda k, e, lg: protocol.finite_cell(wide[0][1], *arrays, k, eps=e, lr_g=lg, solver="autodiff")
    )
    for rec, cfg in wide[::3]:
        want = run(jax.random.PRNGKey(rec["seed"]), cfg.eps, cfg.lr_g)
        for k, v in want.items():
            assert rec["metrics"][k] == pytest.approx(float(np.asarray(v)), abs=1e-4), k
