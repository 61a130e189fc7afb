"""Hostile use (issue 21): cell identity closes, outputs are one unit, limits are checked before work.

* identity: the numeric mode (x64, matmul precision, device kind) is part of the code fingerprint; a record
  whose content does not hash to its id, or that is not a whole record, is corrupt (recomputed, counted,
  warned); data files replaced during a run are refused, never filed under the old data's id;
* outputs: one run per output directory (a lock naming the holder), every output replaced atomically (a
  planted symlink is replaced, never followed), a manifest written last;
* limits: memory / cell-count estimates refuse oversize plans before any work, naming the option; worker
  deaths, unreachable clusters, option conflicts, a broken option cache, Ctrl-C and XLA out-of-memory end in
  one line and a documented exit code.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pytest

from ntk_adv import data, engine, results
from ntk_adv.store import CorruptRecord, ResultStore


def make_mnist(root: Path, seed: int = 0, *, invert: bool = False) -> Path:
    """A tiny MNIST-format root: t10k files of 40 4x4 images of classes 1 and 2."""
    root.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(seed).integers(0, 256, (40, 4, 4))
    images = 255 - images if invert else images
    for name, arr in (("images-idx3", images), ("labels-idx1", np.arange(40) % 2 + 1)):
        arr = np.asarray(arr, np.uint8)
        header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
        (root / f"t10k-{name}-ubyte").write_bytes(header + arr.tobytes())
    return root


@dataclass(frozen=True)
class Cfg:
    width: int = 16
    scale: float = 1.0


CALLS: list = []


def width_batch(chunk):
    CALLS.extend(chunk)
    return [{"w": float(cfg.width) * cfg.scale + seed} for cfg, seed in chunk]


def sweep(store, cells=None, **kw):
    CALLS.clear()
    cells = cells if cells is not None else [(Cfg(), 0), (Cfg(), 1)]
    return engine.run_sweep(
        cells, store, run_batch=width_batch, batch_key=lambda c: c, kind="t", progress=False, **kw
    )


# ------------------------------------------------------------------------------------------- identity
def test_numeric_mode_enters_the_code_fingerprint_and_records_of_the_other_mode_are_stale(tmp_path):
    first = sweep(tmp_path)
    assert len(CALLS) == 2
    assert "device" in results.numerics() and results.numerics()["device"].startswith(
        jax.devices()[0].platform
    )
    before = results.code_fingerprint()
    jax.config.update("jax_enable_x64", True)
    try:
        assert results.code_fingerprint() != before
        with pytest.warns(engine.StaleRecord, match="other code"):
            again = sweep(tmp_path)
        assert len(CALLS) == 2 and again[0]["code_fingerprint"] != first[0]["code_fingerprint"]
    finally:
        jax.config.update("jax_enable_x64", False)
    with pytest.warns(engine.StaleRecord):
        sweep(tmp_path)  # and back: the x64 records are stale in the default mode
    assert len(CALLS) == 2
    jax.config.update("jax_default_matmul_precision", "highest")
    try:
        assert results.code_fingerprint() != before
    finally:
        jax.config.update("jax_default_matmul_precision", None)
    assert results.code_fingerprint() == before


def _edit(store: Path, edit) -> None:
    for p in (store / "records").glob("*.json"):
        p.write_text(json.dumps(edit(json.loads(p.read_text()))))


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: {**r, "config": {**r["config"], "width": 4096}},  # hand-edited width, id unchanged
        lambda r: {**r, "seed": r["seed"] + 7},
        lambda r: [],
        lambda r: None,
        lambda r: "a record",
        lambda r: {**r, "metrics": {"w": "sixteen"}},
        lambda r: {**r, "metrics": {}},
        lambda r: {**r, "metrics": {"w": None}},
        lambda r: {k: v for k, v in r.items() if k != "config"},
    ],
    ids=[
        "width",
        "seed",
        "list",
        "null",
        "string",
        "string-metric",
        "empty-metrics",
        "null-metric",
        "no-config",
    ],
)
def test_records_that_are_not_whole_or_do_not_hash_to_their_id_are_recomputed(tmp_path, edit):
    sweep(tmp_path)
    _edit(tmp_path, edit)
    with pytest.warns(CorruptRecord):
        recs = sweep(tmp_path)
    assert len(CALLS) == 2  # recomputed, never served
    assert [r["config"]["width"] for r in recs] == [16, 16]
    assert [r["metrics"]["w"] for r in recs] == [16.0, 17.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ResultStore(tmp_path).records()) == 2  # the store is whole again
        sweep(tmp_path)
    assert CALLS == []


def test_the_engine_counts_corrupt_records(tmp_path):
    sweep(tmp_path)
    _edit(tmp_path, lambda r: [])
    with pytest.warns(CorruptRecord) as seen:
        sweep(tmp_path)
    assert sum("recomputing 2 cells whose stored record is corrupt" in str(w.message) for w in seen) == 1


REPLACE_ROOT: list = []


def replacing_batch(chunk):
    """Reads the data, then (first call only) replaces the data files: the next chunk computes on new data."""
    out = [{"x_mean": float(np.mean(data.data_arrays(cfg.data)[0])) + seed} for cfg, seed in chunk]
    if REPLACE_ROOT:
        make_mnist(Path(REPLACE_ROOT.pop()), invert=True)
    return out


def test_data_replaced_during_a_run_is_refused_naming_the_path(tmp_path):
    from ntk_adv.models import TwoLayerConfig
    from ntk_adv.perturbation.protocol import ProtocolConfig

    root = make_mnist(tmp_path / "mnist")
    cfg = ProtocolConfig(
        data=data.DataSpec("mnist", n_train=None, n_test=None, root=str(root)), arch=TwoLayerConfig(8)
    )
    REPLACE_ROOT[:] = [str(root)]
    with pytest.raises(ValueError, match=r"--data-root .*mnist.*changed during the run") as err:
        engine.run_sweep(
            [(cfg, 0), (cfg, 1)],
            tmp_path / "store",
            run_batch=replacing_batch,
            batch_key=lambda c: c,
            kind="t",
            progress=False,
            max_batch=1,
        )
    assert "\n" not in str(err.value)
    assert list((tmp_path / "store" / "records").glob("*.json")) == []  # nothing filed under the old id
    # a run on the (now stable) new data computes and files both cells under the new data's id
    recs = engine.run_sweep(
        [(cfg, 0), (cfg, 1)],
        tmp_path / "store",
        run_batch=replacing_batch,
        batch_key=lambda c: c,
        kind="t",
        progress=False,
    )
    assert recs[0]["data_fingerprint"] == data.fingerprint(cfg.data)


# ------------------------------------------------------------------------------------------- outputs
def test_a_second_run_on_the_same_out_is_refused_naming_the_holder(tmp_path, capsys):
    import os

    from experiments import cli

    with results.output_lock(tmp_path):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["convergence", "--widths", "16", "32", "--out", str(tmp_path), "--quiet"])
    assert exit_.value.code == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pid {os.getpid()}" in err and str(tmp_path) in err
    assert not (tmp_path / "results.csv").exists()
    with results.output_lock(tmp_path):  # released when its holder ends
        pass


def test_outputs_replace_a_planted_symlink_never_its_target(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntk_adv import plots

    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep me")
    for name in ("agreement_vs_width.png", "agreement_vs_width.pdf", "results.csv", "summary.json"):
        (out / name).symlink_to(victim)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = plots.save(fig, out, "agreement_vs_width")
    results.write_csv([{"a": 1}], out / "results.csv")
    results.write_json({"a": 1}, out / "summary.json")
    assert victim.read_text() == "keep me"
    for p in [*paths, out / "results.csv", out / "summary.json"]:
        assert not p.is_symlink() and p.stat().st_size > 0
    assert paths[0].read_bytes().startswith(b"\x89PNG") and paths[1].read_bytes().startswith(b"%PDF")
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_a_run_writes_its_manifest_last(tmp_path, capsys):
    import hashlib

    from experiments import cli

    argv = ["convergence", "--widths", "16", "32", "--seeds", "2", "--n-train", "10", "--n-test", "5"]
    argv += ["--n-kernel", "5", "--steps", "2", "--out", str(tmp_path), "--quiet"]
    assert cli.main(argv) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    files = manifest["files"]
    assert {"results.csv", "summary.json"} <= set(files)
    assert not any("records" in f or f.endswith(".lock") for f in files)
    for name, entry in files.items():
        assert entry["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    newest = max((tmp_path / f).stat().st_mtime_ns for f in files)
    assert (tmp_path / "manifest.json").stat().st_mtime_ns >= newest
    assert "manifest.json" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- limits
def cli_exit(argv, capsys) -> tuple[int, str]:
    from experiments import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err.strip()
    return exit_.value.code, err.splitlines()[-1] if err else ""


@pytest.mark.parametrize(
    "argv, option",
    [
        (["perturbation-learning", "--widths", "2000000000"], "--widths 2000000000"),
        (["perturbation-learning", "--widths", "100000000"], "--widths 100000000"),
        (["demo", "--dataset", "gauss", "--n-train", "2000000000"], "--n-train 2000000000"),
        (["demo", "--d", "100000000"], "--d 100000000"),
        (["bench", "--matmul-sizes", "200000"], "--matmul-sizes 200000"),
        (["convergence", "--widths", "64", "30000000"], "--widths 64 30000000"),
        (["halfway", "--grid", "100000000"], "--grid 100000000"),
        (["perturbation-learning", "--seeds", "100000000"], "--seeds 100000000"),
    ],
)
def test_oversize_plans_are_refused_before_work_naming_the_option(argv, option, capsys, tmp_path):
    code, err = cli_exit([*argv, "--out", str(tmp_path / "o")], capsys)
    assert code == 3 and option in err and "error:" in err, err
    assert not (tmp_path / "o").exists()  # before any work: nothing written, not even the lock


def test_integer_options_have_a_range_and_max_memory_raises_the_limit(capsys, tmp_path):
    from ntk_adv import guards

    code, err = cli_exit(["perturbation-learning", "--widths", "9000000000", "--out", str(tmp_path)], capsys)
    assert code == 2 and "out of range" in err and "--widths" in err
    code, err = cli_exit(["demo", "--max-memory", "0", "--out", str(tmp_path)], capsys)
    assert code == 2 and "--max-memory" in err
    opts = {"widths": [100000000], "seeds": 5, "data.n_train": 200, "data.d": 100}
    with pytest.raises(guards.ResourceLimit, match="--widths"):
        guards.check_plan(opts)
    guards.check_plan(opts, max_memory_gb=1e5)  # the user knows better
    with pytest.raises(guards.ResourceLimit, match="--max-memory"):
        guards.check_plan({"widths": [1024], "seeds": 5, "data.n_train": 200}, max_memory_gb=1e-3)


def test_the_default_plan_of_every_command_fits():
    from experiments import cli
    from ntk_adv import cli as lib_cli
    from ntk_adv import guards

    for name in cli.commands():
        spec = lib_cli.load_command_spec(cli.app(), name)
        opts = {o["dest"]: o["default"] for o in spec["options"]}
        guards.check_plan(opts, max_memory_gb=16.0)  # a 16 GB machine runs every default


def test_ray_address_is_probed_and_conflicts_are_refused(capsys, tmp_path):
    import time

    t0 = time.perf_counter()
    code, err = cli_exit(["convergence", "--ray-address", "127.0.0.1:1", "--out", str(tmp_path)], capsys)
    assert code == 5 and "127.0.0.1:1" in err and time.perf_counter() - t0 < 10
    argv = ["convergence", "--backend", "processes", "--ray-address", "127.0.0.1:1", "--out", str(tmp_path)]
    code, err = cli_exit(argv, capsys)
    assert code == 2 and "--backend" in err and "--ray-address" in err
    from ntk_adv import guards

    with pytest.raises(guards.BackendFailure, match="127.0.0.1:1"):
        guards.probe_address("ray://127.0.0.1:1", timeout=1.0)
    guards.probe_address("auto")  # left to Ray


def suicide_batch(chunk):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_is_one_backend_failure(tmp_path, capfd, monkeypatch):
    from experiments import convergence
    from ntk_adv import guards

    with pytest.raises(guards.BackendFailure, match="worker process .* died"):
        engine.run_sweep(
            [(Cfg(), 0)],
            tmp_path,
            run_batch=suicide_batch,
            batch_key=lambda c: c,
            kind="t",
            progress=False,
            backend="processes",
            workers=1,
        )
    assert "Traceback" not in capfd.readouterr().err
    # the command maps it to one line and exit code 5

    def dies(*a, **k):
        raise guards.BackendFailure("a worker process of --backend processes died")

    monkeypatch.setattr(convergence, "main", dies)
    code, err = cli_exit(["convergence", "--out", str(tmp_path / "o"), "--quiet"], capfd)
    assert code == 5 and err.endswith("died")


def test_a_wrong_shape_option_cache_is_rebuilt(tmp_path, monkeypatch, capsys):
    from experiments import cli
    from ntk_adv import cli as lib_cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "SCHEMA_FILE", tmp_path / "absent.json")  # as after an edit: the cache answers
    path = lib_cli._cache_dir() / f"demo-{lib_cli.source_hash(cli.PACKAGE)}.json"
    path.parent.mkdir(parents=True)
    for bad in ([], {"options": 3, "out": "x"}, {"options": [{"dest": "eps"}], "out": "x"}, "x", None):
        path.write_text(json.dumps(bad))
        with pytest.raises(SystemExit) as exit_:
            cli.main(["demo", "--help"])
        assert exit_.value.code == 0 and "--eps" in capsys.readouterr().out
        assert lib_cli.valid_command_spec(json.loads(path.read_text()))  # rebuilt


@pytest.mark.parametrize("where", ["parse", "check_plan", "output_lock", "main"])
def test_ctrl_c_anywhere_is_one_line_and_exit_130(where, monkeypatch, capsys, tmp_path):
    import contextlib

    from experiments import convergence
    from ntk_adv import cli as lib_cli

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    if where == "main":
        monkeypatch.setattr(convergence, "main", interrupt)
    elif where == "output_lock":
        monkeypatch.setattr(results, "output_lock", contextlib.contextmanager(lambda out: interrupt()))
    else:
        monkeypatch.setattr(lib_cli, where, interrupt)
    code, err = cli_exit(["convergence", "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 130 and "interrupted" in err
    assert len(capsys.readouterr().err.strip().splitlines()) <= 1


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 12345678 bytes."),
        MemoryError("Unable to allocate 10.0 GiB"),
    ],
)
def test_out_of_memory_is_one_line_naming_the_likely_option(error, monkeypatch, capsys, tmp_path):
    from experiments import convergence

    def oom(*a, **k):
        raise error

    monkeypatch.setattr(convergence, "main", oom)
    argv = ["convergence", "--widths", "16", "8192", "--out", str(tmp_path), "--quiet"]
    from experiments import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 3 and len(err.splitlines()) == 1
    assert "out of memory" in err and "--widths 16 8192" in err


def test_ray_address_reaches_the_engine_as_an_argument_never_through_the_environment(
    capsys, tmp_path, monkeypatch
):
    """--ray-address is passed to the sweep engine in the config (``run.ray_address``); the process
    environment is left as it was (no RAY_ADDRESS written for the engine to read)."""
    from ntk_adv import cli as lib_cli

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    probed, seen = [], {}
    monkeypatch.setattr(lib_cli, "probe_address", probed.append)

    def fake_run_sweep(cells, store, **kw):
        seen.update(kw)
        raise SystemExit(0)

    monkeypatch.setattr(engine, "run_sweep", fake_run_sweep)
    code, _ = cli_exit(["convergence", "--ray-address", "127.0.0.1:9", "--out", str(tmp_path)], capsys)
    assert code == 0 and probed == ["127.0.0.1:9"]
    assert (seen["backend"], seen["ray_address"]) == ("ray", "127.0.0.1:9")
    # (imported libraries set variables of their own, e.g. KMP_*: none of them carries the address)
    assert "RAY_ADDRESS" not in os.environ and "127.0.0.1:9" not in os.environ.values()
    # RAY_ADDRESS is read (never written) with --backend ray; without an address the engine starts Ray locally
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:8")
    code, _ = cli_exit(["convergence", "--backend", "ray", "--out", str(tmp_path)], capsys)
    assert code == 0 and seen["ray_address"] == "127.0.0.1:8" and os.environ["RAY_ADDRESS"] == "127.0.0.1:8"
    monkeypatch.delenv("RAY_ADDRESS")
    code, _ = cli_exit(["convergence", "--backend", "ray", "--out", str(tmp_path)], capsys)
    assert code == 0 and seen["ray_address"] is None
