"""The generic engine: a reference perturbation-learning sweep (digits, 2 widths x 2 seeds) gives the records
the pre-refactor code gave (tests/data/reference_sweep_digits.json, to a few float32 ulps, on CPU);
the engine needs its batch function and grouping key, plans generically and sets dotted fields of any nested
dataclass."""

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal  # noqa: F401 - resolves the string annotations of Choices

import jax
import pytest

from ntk_adv import engine, validate
from ntk_adv import store as store_mod
from ntk_adv.data import DataSpec
from ntk_adv.models import TwoLayerConfig
from ntk_adv.perturbation import batch, protocol
from ntk_adv.training import TrainConfig

REFERENCE = json.loads((Path(__file__).parent / "data" / "reference_sweep_digits.json").read_text())


@pytest.mark.skipif(
    jax.__version__ != "0.5.3",
    reason="the reference records were computed on the locked stack (jax 0.5.3); other XLA releases round "
    "float32 differently, so an exact comparison only holds there",
)
def test_reference_sweep_records_are_unchanged(tmp_path):
    base = protocol.ProtocolConfig(
        data=DataSpec("digits", n_train=40, n_test=30),
        arch=TwoLayerConfig(16),
        steps_f=20,
        steps_g=20,
        lr_f=0.1,
        lr_g=0.1,
        eps=1.0,
    )
    grid = engine.Grid(base, axes=(("width", (16, 64)),), seeds=2)
    records = batch.run_sweep(grid, tmp_path, progress=False)
    got = [
        {"width": cfg.width, "seed": s, "metrics": r["metrics"]} for (cfg, s), r in zip(grid.cells(), records)
    ]
    assert [(g["width"], g["seed"]) for g in got] == [(w["width"], w["seed"]) for w in REFERENCE]
    for g, want in zip(got, REFERENCE):
        # the reference's metrics are unchanged to the last bit; newer metrics (regime, coefficients, paired
        # second moments) are additions
        assert set(want["metrics"]) <= set(g["metrics"])
        for k, v in want["metrics"].items():
            # float32 to a few ulps: adding metrics to the same jitted cell (regime, coefficients, paired
            # moments) changes XLA's fusion of the shared computation, which moves last bits (1.5e-7 seen)
            assert g["metrics"][k] == pytest.approx(v, rel=1e-6, abs=1e-7, nan_ok=True), (
                g["width"],
                g["seed"],
                k,
            )


@dataclass(frozen=True)
class Inner:
    n: int = 1
    name: str = "a"


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    x: float = 0.0


def square(chunk):
    """A module-level batch function: one metric per cell."""
    return [{"y": cfg.x**2 + cfg.inner.n + seed} for cfg, seed in chunk]


def test_engine_is_generic(tmp_path):
    grid = engine.Grid(Outer(), axes=(("inner.n", (1, 2)), ("x", (3.0, 1.0))), seeds=2)
    assert engine.set_field(Outer(), "inner.name", "b").inner.name == "b"
    with pytest.raises(ValueError, match="unknown sweep axis 'inner.m'"):
        engine.set_field(Outer(), "inner.m", 1)
    with pytest.raises(ValueError, match="unknown sweep axis 'n'"):  # no bare names of nested fields
        engine.Grid(Outer(), axes=(("n", (1,)),))
    with pytest.raises(TypeError):  # the batch function and its key are required
        engine.run_sweep(grid, tmp_path)
    chunks = engine.plan(grid.cells(), batch_key=lambda c: c.inner.n, max_batch=3, order=lambda c: c[0].x)
    assert [[(c.inner.n, c.x, s) for c, s in ch] for ch in chunks] == [
        [(1, 1.0, 0), (1, 1.0, 1), (1, 3.0, 0)],
        [(1, 3.0, 1)],
        [(2, 1.0, 0), (2, 1.0, 1), (2, 3.0, 0)],
        [(2, 3.0, 1)],
    ]
    stable = engine.plan(grid.cells(), batch_key=lambda c: 0)
    assert stable == [grid.cells()]
    recs = engine.run_sweep(
        grid, tmp_path, run_batch=square, batch_key=lambda c: c.inner.n, kind="toy", progress=False
    )
    assert [r["metrics"]["y"] for r in recs] == [c.x**2 + c.inner.n + s for c, s in grid.cells()]
    assert {r["kind"] for r in recs} == {"toy"}


def test_grid_takes_a_mapping_and_inf_width():
    """``axes={"width": [64, INF_WIDTH]}`` (the one spelling of infinite width, ``math.inf``) sets the
    architecture's width (``ProtocolConfig.arch``); ``None`` and ``"inf"`` are refused naming INF_WIDTH;
    ``depth`` is an axis of architectures that have a depth field."""
    import math

    from ntk_adv.arch import INF_WIDTH

    base = protocol.ProtocolConfig(data=DataSpec("digits", n_train=40, n_test=30), arch=TwoLayerConfig(16))
    spelled = engine.Grid(base, axes=(("width", (64, INF_WIDTH)), ("eps", (0.5, 1.0))), seeds=2)
    for axes in (
        {"width": [64, INF_WIDTH], "eps": [0.5, 1.0]},
        [("width", [64, math.inf]), ("eps", [0.5, 1.0])],
    ):
        grid = engine.Grid(base, axes=axes, seeds=2)
        assert grid == spelled
        assert grid.cells() == spelled.cells()
    assert [c.arch.width for c, _ in spelled.cells()] == [64] * 4 + [INF_WIDTH] * 4
    assert [c.infinite for c, _ in spelled.cells()] == [False] * 4 + [True] * 4
    assert {c.arch.gamma for c, _ in engine.Grid(base, axes={"gamma": [0.0, 0.5]}).cells()} == {0.0, 0.5}
    for bad in (None, "inf", "infinite", 0):
        with pytest.raises(ValueError, match="INF_WIDTH"):
            engine.Grid(base, axes={"width": [64, bad]})
    with pytest.raises(
        ValueError, match="unknown sweep axis 'depth'"
    ):  # the two-layer net has no depth field
        engine.Grid(base, axes={"depth": [2, 3]})
    nested = engine.Grid(Outer(), axes={"inner.n": [1, 2], "x": [3.0]})
    assert [(c.inner.n, c.x) for c in nested.configs()] == [(1, 3.0), (2, 3.0)]
    assert engine.Grid(Outer(), axes={"x": [math.inf]}).configs()[0].x == math.inf  # only width means it
    with pytest.raises(ValueError, match="^axis 'width': values must be a list or tuple; got 64$"):
        engine.Grid(base, axes={"width": 64})
    with pytest.raises(ValueError, match="^axes: expected"):
        engine.Grid(base, axes=("width", (64,)))
    with pytest.raises(ValueError, match="axis 'eps' has no values"):
        engine.Grid(base, axes={"eps": []})


@dataclass(frozen=True)
class Choices:
    mode: "Literal['a', 'b', 'c']" = "a"  # a string annotation, as under `from __future__ import annotations`
    maybe: "Literal['x'] | None" = None

    def __post_init__(self):
        validate.check_choices(self)


def test_literal_choices_are_validated_in_one_place():
    Choices("b", "x")
    with pytest.raises(ValueError, match=r"^unknown mode 'd'; expected one of a, b, c$"):
        Choices("d")
    with pytest.raises(ValueError, match="unknown maybe 'y'"):
        Choices(maybe="y")
    with pytest.raises(ValueError, match="unknown scenario 'c'; expected one of a, b, noise"):
        protocol.ProtocolConfig(scenario="c")
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        TrainConfig(optimizer="adam")


@dataclass(frozen=True)
class Table:
    scale: float = 1.0
    shape: Literal["line", "square"] = "line"


CALLS: list = []


def table_rows(cfg: Table, seeds):
    """A cell whose result is a table: two rows per seed (the processes backend pickles this function)."""
    CALLS.append(tuple(seeds))
    return [
        {"seed": s, "x": x, "value": cfg.scale * (s + x) ** (2 if cfg.shape == "square" else 1), "tag": "t"}
        for s in seeds
        for x in (0, 1)
    ]


def test_run_rows_stores_tables_per_cell_and_resumes(tmp_path):
    grid = engine.Grid(Table(), axes=(("shape", ("line", "square")),), seeds=3)
    CALLS.clear()
    rows = engine.run_rows(grid, tmp_path, run=table_rows, kind="table", progress=False)
    assert CALLS == [(0, 1, 2), (0, 1, 2)]  # one call per config, its seeds together
    assert len(rows) == 12 and rows[-1] == {"seed": 2, "x": 1, "value": 9.0, "tag": "t"}
    # a killed run: remove one cell's record; only that cell runs again, and the rows are the same
    recs = sorted((tmp_path / "records").glob("*.json"))
    assert len(recs) == 6
    recs[0].unlink()
    CALLS.clear()
    again = engine.run_rows(grid, tmp_path, run=table_rows, kind="table", progress=False)
    assert [len(c) for c in CALLS] == [1] and again == rows
    # the store's long-format rows leave row-valued metrics to the experiment that wrote them
    assert engine.ResultStore(tmp_path).rows() == []
    # other backends give the same rows
    other = engine.run_rows(
        grid, tmp_path / "p", run=table_rows, kind="table", progress=False, backend="processes", workers=2
    )
    assert other == rows


def test_run_rows_refuses_rows_of_a_seed_it_did_not_ask_for(tmp_path):
    with pytest.raises(ValueError, match=r"seed 7 is not one of the cells. seeds \[0\]"):
        engine.run_rows([(Table(), 0)], tmp_path, run=lambda c, s: [{"seed": 7}], kind="t", progress=False)
    with pytest.raises(ValueError, match="flat dicts"):
        engine.run_rows([(Table(), 0)], tmp_path, run=lambda c, s: [{"seed": 0, "v": [1]}], kind="t")


def test_execution_options():
    ex = engine.Execution(backend="processes", workers=3, force=True, accept_stale=True)
    opts = ex.sweep_options("out")
    assert opts == dict(
        store=Path("out/store"),
        backend="processes",
        workers=3,
        ray_address=None,
        force=True,
        reuse="accept",
        dry_run=False,
    )
    ray = engine.Execution(backend="ray", ray_address="10.0.0.1:6379")
    assert ray.sweep_options("out")["ray_address"] == "10.0.0.1:6379"
    with pytest.raises(ValueError, match="--ray-address 10.0.0.1:6379 .* --backend is processes"):
        engine.Execution(backend="processes", ray_address="10.0.0.1:6379")
    # the address says where cells run, not what they compute: not part of a cell's identity
    assert store_mod.config_key(ray, 0) == store_mod.config_key(engine.Execution(backend="ray"), 0)
    assert engine.Execution(store="/s").store_path("out") == Path("/s")
    with pytest.raises(ValueError, match="backend"):
        engine.Execution(backend="gpu")
    with pytest.raises(ValueError, match="workers"):
        engine.Execution(workers=0)


def coupled_rows(cfg: Table, seeds):
    """A unit that couples nets of several seeds: its rows' seed column is not the cell's."""
    CALLS.append(tuple(seeds))
    return [{"seed": s, "value": cfg.scale * s} for s in range(3)]


def test_run_rows_keeps_coupled_units_whole(tmp_path):
    CALLS.clear()
    cells = [(Table(), 0), (Table(scale=2.0), 0)]
    rows = engine.run_rows(
        cells, tmp_path, run=coupled_rows, kind="t", seed_column=None, progress=False, max_batch=8
    )
    assert CALLS == [(0,), (0,)] and [r["value"] for r in rows] == [0, 1, 2, 0, 2, 4]


def test_run_rows_marks_the_rows_of_accepted_stale_records(tmp_path):
    cells = [(Table(), 0), (Table(), 1)]
    rows = engine.run_rows(cells, tmp_path, run=table_rows, kind="t", progress=False)
    rec = sorted((tmp_path / "records").glob("*.json"))[0]
    data = json.loads(rec.read_text())
    rec.write_text(json.dumps({**data, "code_fingerprint": "other"}))
    with pytest.warns(engine.StaleRecord):
        kept = engine.run_rows(cells, tmp_path, run=table_rows, kind="t", progress=False, reuse="accept")
    assert sum(r.get("stale") == "code" for r in kept) == 2 and len(kept) == len(rows)
    assert [{k: v for k, v in r.items() if k != "stale"} for r in kept] == rows


def test_an_edit_of_the_application_code_makes_its_records_stale(tmp_path, monkeypatch):
    """The code fingerprint covers the package of the run function (not only ntk_adv): editing any module
    of it makes stored cells stale, so they are recomputed instead of silently reused."""
    pkg = tmp_path / "src" / "myapp"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("OFFSET = 0\n")
    (pkg / "runs.py").write_text(
        "from .helpers import OFFSET\n\n"
        "def run(cfg, seeds):\n    return [{'seed': s, 'v': s + OFFSET} for s in seeds]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    import myapp.runs

    assert sorted(Path(f).name for f in engine.caller_sources(myapp.runs.run)) == [
        "__init__.py",
        "helpers.py",
        "runs.py",
    ]
    assert engine.caller_sources(batch.run_protocol_batch) == []  # library code: the package fingerprint
    cells = [(Table(), 0)]
    engine.run_rows(cells, tmp_path / "s", run=myapp.runs.run, kind="t", progress=False)
    (pkg / "helpers.py").write_text("OFFSET = 0  # edited: an edit in the same process is seen\n")
    with pytest.warns(engine.StaleRecord, match="recomputing"):
        engine.run_rows(cells, tmp_path / "s", run=myapp.runs.run, kind="t", progress=False)


def test_execution_switches_do_not_enter_cell_identity():
    """--parquet and --dry-run are how a run executes: a cell config holding an Execution hashes the same
    with them on, and as before they existed (the canonical form omits them)."""
    from ntk_adv import store

    @dataclass(frozen=True)
    class WithRun:
        x: int = 1
        run: engine.Execution = field(default_factory=engine.Execution)

    plain = store.config_key(WithRun(), 0)
    assert store.config_key(WithRun(run=engine.Execution(parquet=True, dry_run=True)), 0) == plain
    canon = store.canonical(engine.Execution())
    assert set(canon) == {"__type__", "backend", "workers", "store", "force", "accept_stale"}


def test_dry_run_raises_the_plan_before_any_work(tmp_path):
    grid = engine.Grid(Outer(), axes={"x": [1.0, 2.0, 3.0]}, seeds=2)
    calls = []

    def run_batch(chunk):
        calls.append(len(chunk))
        return square(chunk)

    opts = dict(run_batch=run_batch, batch_key=lambda c: 0, kind="toy", progress=False, max_batch=4)
    with pytest.raises(engine.DryRun) as err:
        engine.run_sweep(grid, tmp_path, dry_run=True, **opts)
    assert calls == []
    assert err.value.plan == {
        "total": 6,
        "fresh": 0,
        "kept": 0,
        "compute": 6,
        "missing": 6,
        "stale": 0,
        "corrupt": 0,
        "chunks": 2,
        "backend": "inprocess",
    }
    assert str(err.value).startswith("toy: dry run: 6 cells, 0 already in the store and fresh, 6 to compute")
    engine.run_sweep(engine.Grid(Outer(), axes={"x": [1.0]}, seeds=2), tmp_path, **opts)
    with pytest.raises(engine.DryRun) as err:
        engine.run_sweep(grid, tmp_path, dry_run=True, **opts)
    assert (err.value.plan["fresh"], err.value.plan["compute"], err.value.plan["chunks"]) == (2, 4, 1)
    with pytest.raises(engine.DryRun) as err:
        engine.run_sweep(grid, tmp_path, dry_run=True, force=True, **opts)
    assert (err.value.plan["fresh"], err.value.plan["compute"]) == (0, 6)


def slow_square(chunk):
    import time

    time.sleep(0.3)
    return square(chunk)


def test_plain_progress_lines_off_a_terminal(tmp_path, monkeypatch, capsys):
    """stderr not a TTY: a plain line every NTK_ADV_PROGRESS_EVERY seconds with cells done, cached and an
    ETA, and one at the end; none with progress=False; a bad value is refused naming the variable."""
    monkeypatch.setenv("NTK_ADV_PROGRESS_EVERY", "0.1")
    grid = engine.Grid(Outer(), axes={"x": [1.0, 2.0, 3.0]}, seeds=1)
    opts = dict(run_batch=slow_square, batch_key=lambda c: c.x, kind="toy")
    engine.run_sweep(engine.Grid(Outer(), axes={"x": [1.0]}), tmp_path, progress=False, **opts)
    assert capsys.readouterr().err == ""
    engine.run_sweep(grid, tmp_path, **opts)  # pytest's captured stderr is not a TTY
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("toy: ")]
    assert len(lines) >= 3, lines  # ~0.6 s of work at 0.1 s, plus the final line
    assert lines[-1].startswith("toy: 2/2 cells computed, 1 cached (from the store), ")
    assert lines[-1].endswith("ETA 0s")
    assert all("cells computed" in ln and "ETA" in ln for ln in lines)
    monkeypatch.setenv("NTK_ADV_PROGRESS_EVERY", "often")
    with pytest.raises(ValueError, match="^NTK_ADV_PROGRESS_EVERY must be a positive number of seconds"):
        engine.run_sweep(grid, tmp_path, force=True, **opts)
    monkeypatch.delenv("NTK_ADV_PROGRESS_EVERY")
    assert engine.progress_every() == 30.0


def test_ray_tasks_request_one_cpu_and_a_gpu_when_jax_has_one(monkeypatch):
    assert engine.ray_resources() == {"num_cpus": 1, "num_gpus": 1 if jax.default_backend() == "gpu" else 0}
    monkeypatch.setattr(engine.jax, "default_backend", lambda: "gpu")
    assert engine.ray_resources() == {"num_cpus": 1, "num_gpus": 1}
    monkeypatch.setattr(engine.jax, "default_backend", lambda: "cpu")
    assert engine.ray_resources() == {"num_cpus": 1, "num_gpus": 0}


@dataclass(frozen=True)
class Experiment:
    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=20, n_test=10))
    widths: tuple[int, ...] = (8, 16)
    lr: float = 0.1
    tolerance: float = 0.05  # read by the verdicts only
    run: engine.Execution = field(default_factory=engine.Execution)


def unit_rows(u: engine.Unit, seeds):
    return [{"part": u.part, "lr": u.settings.lr, "width": u.get("width"), "n": u.config().data.n_train}]


def test_a_units_identity_is_only_what_it_reads(tmp_path):
    """engine.unit keeps the fields a unit reads (``reads``; all but ``ignores``), resets the rest and the
    execution to their defaults and leaves the data path out: cells whose read settings agree are one cell
    in the store, whatever the execution, the verdict-only settings or the data's folder."""
    cfg = Experiment(
        data=DataSpec("digits", n_train=20, n_test=10, root=str(tmp_path / "d")),
        widths=(4,),
        lr=0.3,
        tolerance=0.2,
        run=engine.Execution(backend="processes", workers=3),
    )
    u = engine.unit("train", cfg, ignores=("tolerance",), data=cfg.data, width=4)
    assert u.settings == replace(
        cfg, data=replace(cfg.data, root=None), tolerance=0.05, run=engine.Execution()
    )
    assert (u["width"], u.get("tag", "none"), u.config().data) == (4, "none", cfg.data)
    with pytest.raises(KeyError, match="no label 'tag'"):
        u["tag"]
    only_lr = engine.unit("lr", cfg, reads=("lr",))
    assert only_lr.settings == Experiment(lr=0.3) and only_lr.data is None
    with pytest.raises(ValueError, match="Experiment has no field 'lrs'"):
        engine.unit("x", cfg, reads=("lrs",))
    # what a unit does not read does not change its cell: one record, computed once
    other = replace(cfg, tolerance=0.9, widths=(4, 8), run=engine.Execution())
    cells = [(engine.unit("lr", c, reads=("lr",), width=4), 0) for c in (cfg, other)]
    assert cells[0] == cells[1]
    rows = engine.run_rows(
        cells[:1], tmp_path / "s", run=unit_rows, kind="t", seed_column=None, progress=False
    )
    assert rows == [{"part": "lr", "lr": 0.3, "width": 4, "n": 20}]
    again = engine.run_rows(cells[1:], tmp_path / "s", run=lambda u, s: 1 / 0, kind="t", seed_column=None)
    assert again == rows  # read from the store: nothing recomputed
