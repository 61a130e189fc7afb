"""The sweep engine: resumable, batched == one-by-one, backends agree, grids expand as documented."""

import json
import math
import threading

import numpy as np
import pytest

from ntk_adv import engine
from ntk_adv.arch import INF_WIDTH
from ntk_adv.data import DataSpec, data_arrays
from ntk_adv.models import TwoLayerConfig
from ntk_adv.perturbation import batch, protocol
from ntk_adv.store import ResultStore, cell_id

BASE = protocol.ProtocolConfig(
    data=DataSpec("shifted_gauss", n_train=24, n_test=20, d=8),
    arch=TwoLayerConfig(8),
    steps_f=10,
    steps_g=10,
    lr_f=0.1,
    lr_g=0.1,
    eps=1.0,
)
GRID = engine.Grid(
    BASE, axes=(("width", (8, INF_WIDTH)), ("eps", (0.5, 2.0)), ("lr_g", (0.1, 0.05))), seeds=2
)
N_CELLS = 2 * 2 * 2 * 2


def metrics_by_id(records):
    return {r["id"]: r["metrics"] for r in records}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted in-process run of GRID."""
    return batch.run_sweep(GRID, tmp_path_factory.mktemp("ref"), progress=False, max_batch=8)


def test_grid_expands_and_ids_are_stable():
    cells = GRID.cells()
    assert len(cells) == N_CELLS
    ids = [cell_id(c, s) for c, s in cells]
    assert len(set(ids)) == N_CELLS
    assert ids == [cell_id(c, s) for c, s in engine.Grid(BASE, GRID.axes, seeds=2).cells()]
    assert engine.set_field(BASE, "data.n_train", 7).data.n_train == 7
    with pytest.raises(ValueError, match="unknown sweep axis 'n_train'"):  # dotted paths only
        engine.set_field(BASE, "n_train", 7)
    with pytest.raises(ValueError, match="unknown sweep axis 'widht'"):
        engine.Grid(BASE, axes=(("widht", (1,)),))


def test_interrupted_sweep_resumes_without_loss_or_duplicates(tmp_path, reference):
    calls = {"n": 0}

    def dying_batch(chunk):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return batch.run_protocol_batch(chunk)

    with pytest.raises(KeyboardInterrupt):
        batch.run_sweep(GRID, tmp_path, run_batch=dying_batch, progress=False, max_batch=8)
    finished = len(list((tmp_path / "records").glob("*.json")))
    assert finished == 8  # the first chunk (all finite-width cells) was committed before the kill

    recomputed = []

    def counting_batch(chunk):
        recomputed.extend(chunk)
        return batch.run_protocol_batch(chunk)

    records = batch.run_sweep(GRID, tmp_path, run_batch=counting_batch, progress=False, max_batch=8)
    assert len(recomputed) == N_CELLS - finished  # nothing finished is recomputed
    assert len(list((tmp_path / "records").glob("*.json"))) == N_CELLS  # one record per cell
    assert metrics_by_id(records) == metrics_by_id(reference)  # same chunks -> same numbers, bit for bit


def test_batched_equals_one_by_one(reference):
    """vmapped cells vs each cell alone: equal up to float32 reduction-order effects - the tolerance the
    README states (rtol 1e-5, atol 1e-6)."""
    for rec, (cfg, seed) in list(zip(reference, GRID.cells()))[::3]:
        alone = batch.run_protocol_batch([(cfg, seed)])[0]
        for k, v in alone.items():
            assert v == pytest.approx(rec["metrics"][k], rel=1e-5, abs=1e-6), k


@pytest.mark.parametrize("batching", ["vmap", "map"])
def test_vmap_and_sequential_batching_agree(reference, batching):
    """Both execution strategies of a finite-width group give the reference numbers (float32, 1e-5)."""
    cells = [c for c in GRID.cells() if not c[0].infinite]
    got = batch.run_protocol_batch(cells, batching=batching)
    want = {r["id"]: r["metrics"] for r in reference}
    for (cfg, seed), metrics in zip(cells, got):
        for k, v in metrics.items():
            assert v == pytest.approx(want[cell_id(cfg, seed)][k], abs=1e-5), k
    with pytest.raises(ValueError, match="unknown batching 'scan'"):
        batch.run_protocol_batch(cells, batching="scan")


def test_force_recomputes_and_shares_f(tmp_path):
    seen = []

    def spy(chunk):
        seen.append(len(chunk))
        return batch.run_protocol_batch(chunk)

    small = engine.Grid(BASE, axes=(("eps", (0.5, 1.0, 2.0)),), seeds=1)
    batch.run_sweep(small, tmp_path, run_batch=spy, progress=False)
    batch.run_sweep(small, tmp_path, run_batch=spy, progress=False)
    assert seen == [3]  # one batch for all eps; second run recomputed nothing
    batch.run_sweep(small, tmp_path, run_batch=spy, progress=False, force=True)
    assert seen == [3, 3]


def test_corrupt_record_is_reported_and_recomputed(tmp_path):
    small = engine.Grid(BASE, seeds=1)
    (rec,) = batch.run_sweep(small, tmp_path, progress=False)
    path = tmp_path / "records" / f"{rec['id']}.json"
    path.write_text('{"id": "truncated')
    with pytest.warns(UserWarning, match=f"corrupt result record .*{rec['id']}"):
        (again,) = batch.run_sweep(small, tmp_path, progress=False)
    assert again["metrics"] == rec["metrics"]
    assert json.loads(path.read_text())["id"] == rec["id"]


def test_two_sweeps_share_a_store(tmp_path):
    """Two sweeps writing the same store at once leave exactly one readable record per cell."""
    grids = [
        engine.Grid(BASE, axes=(("eps", (0.5, 1.0)),), seeds=2),
        engine.Grid(BASE, axes=(("eps", (1.0, 2.0)),), seeds=2),
    ]
    errors = []

    def go(g):
        try:
            batch.run_sweep(g, tmp_path, progress=False, max_batch=1)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=go, args=(g,)) for g in grids]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    store = ResultStore(tmp_path)
    assert len(store.records()) == 6
    assert not list((tmp_path / "records").glob("*.tmp"))


def test_export_long_format(tmp_path, reference):
    store = ResultStore(tmp_path)
    rows = store.rows(reference)
    assert len(rows) == sum(len(r["metrics"]) for r in reference)
    assert {"width", "eps", "lr_g", "data.name", "seed", "metric", "value", "cell_id"} <= set(rows[0])
    infinite = [r for r in rows if r["width"] == math.inf and r["metric"] == "agreement"]
    assert len(infinite) == N_CELLS // 2 and all(0 <= r["value"] <= 1 for r in infinite)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # JAX warns when ray forks
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
@pytest.mark.parametrize(
    "backend",
    [pytest.param("processes", marks=pytest.mark.slow), pytest.param("ray", marks=pytest.mark.slow)],
)  # ~25 s each: CI's slow run
def test_backends_match_inprocess(tmp_path, reference, backend):
    records = batch.run_sweep(GRID, tmp_path, backend=backend, workers=2, progress=False, max_batch=8)
    assert metrics_by_id(records) == metrics_by_id(reference)


def test_bad_backend_and_duplicate_cells(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'mpi'"):
        batch.run_sweep(GRID, tmp_path, backend="mpi")
    with pytest.raises(ValueError, match="more than once"):
        batch.run_sweep([(BASE, 0), (BASE, 0)], tmp_path)


def test_vmapped_eps_matches_protocol_cell():
    """The staged, artifact-sharing batch equals the plain protocol cell for the same key."""
    import jax

    cells = [(BASE.with_(eps=e, lr_f=lf), 3) for e in (0.5, 2.0) for lf in (0.1, 0.05)]
    batched = batch.run_protocol_batch(cells)
    arrays = data_arrays(BASE.data)
    for (cfg, seed), got in zip(cells, batched):
        want = protocol.finite_cell(cfg, *arrays, jax.random.PRNGKey(seed))
        for k, v in want.items():
            # regression coefficients on a near-zero term B are large and ill-conditioned: relative 1e-4
            assert got[k] == pytest.approx(float(np.asarray(v)), abs=1e-5, rel=1e-4 if "coef" in k else 0), k


@pytest.mark.parametrize("scenario", ["a", "b"])
def test_wide_group_with_activation_space_solver_matches_backprop_cells(scenario):
    """At width >= pattern_gd.AUTO_MIN_WIDTH the engine trains f and g in activation space; every metric
    equals the plain cell trained by backpropagation (float32, 1e-4), and asking for a solver that does not
    exist fails with its name."""
    import jax

    from ntk_adv import pattern_gd

    wide = BASE.with_(width=pattern_gd.AUTO_MIN_WIDTH, scenario=scenario)
    assert pattern_gd.choose(wide.net(), wide.train_config("g"), wide.data.n_train) == "pattern"
    cells = [(wide.with_(eps=e, lr_g=lg), s) for s in (0, 1) for e in (0.5, 2.0) for lg in (0.1, 0.05)]
    batched = batch.run_protocol_batch(cells)
    arrays = data_arrays(BASE.data)
    for (cfg, seed), got in zip(cells, batched):
        want = protocol.finite_cell(cfg, *arrays, jax.random.PRNGKey(seed), solver="autodiff")
        for k, v in want.items():
            assert got[k] == pytest.approx(float(np.asarray(v)), abs=1e-4, rel=1e-3 if "coef" in k else 0), k
    with pytest.raises(ValueError, match="unknown solver 'newton'"):
        batch.run_protocol_batch(cells[:1], solver="newton")
