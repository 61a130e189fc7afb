"""Fault injection: every way a careful user saw ntk-adv go wrong (issue 12), pinned.

* cell identity: changed data files, the same relative --data-root from another directory, a switched split,
  other code or library versions -> recomputed (or kept and marked with reuse='accept'); the same content
  under another path -> reused; provenance names the package's own checkout, never the caller's;
* OS-level failures: read-only and full output locations, a file in the way -> one line, exit code != 0, no
  traceback, no temporary debris; concurrent writers of one output never fail a rename;
* processes: kill -9 / Ctrl-C of a sweep with the processes backend leaves no worker alive;
* library inputs: each bad input is a named ValueError, never a silently wrong number;
* CLI options: checked before any work, messages name the option.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import cli
from ntk_adv import (
    attacks,
    data,
    engine,
    kernels,
    limits,
    metrics,
    models,
    pattern_gd,
    results,
    training,
    verdicts,
)
from ntk_adv.models import TwoLayerConfig
from ntk_adv.perturbation.protocol import ProtocolConfig
from ntk_adv.store import ResultStore, cell_id

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- helpers
def write_idx(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    path.write_bytes(header + arr.tobytes())


def make_mnist(root: Path, seed: int = 0, *, invert: bool = False, train: bool = False) -> Path:
    """A tiny MNIST-format root (4x4 images of classes 1 and 2): t10k files, and train files if asked."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = ("t10k", "train") if train else ("t10k",)
    for split in splits:
        images = rng.integers(0, 256, (40, 4, 4))
        write_idx(root / f"{split}-images-idx3-ubyte", 255 - images if invert else images)
        write_idx(root / f"{split}-labels-idx1-ubyte", np.arange(40) % 2 + 1)
    return root


COMPUTED: list = []


def data_mean_batch(chunk):
    """A cheap run_batch whose numbers depend on the data read: mean input and mean label, per cell."""
    COMPUTED.extend(chunk)
    out = []
    for cfg, seed in chunk:
        x, y, z, _ = data.data_arrays(cfg.data)
        out.append(
            {"x_mean": float(jnp.mean(x)) + seed, "y_mean": float(jnp.mean(y)), "z_mean": float(jnp.mean(z))}
        )
    return out


def cells_on(root: str) -> list:
    spec = data.DataSpec("mnist", n_train=None, n_test=None, root=root)
    cfg = ProtocolConfig(data=spec, arch=TwoLayerConfig(8))
    return [(cfg, 0), (cfg, 1)]


def run(cells, store, **kw):
    COMPUTED.clear()
    recs = engine.run_sweep(
        cells, store, run_batch=data_mean_batch, batch_key=lambda cfg: cfg, kind="test", progress=False, **kw
    )
    return recs, len(COMPUTED)


# ------------------------------------------------------------------------------------------- cell identity
def test_changed_data_files_are_recomputed_same_content_elsewhere_is_reused(tmp_path):
    root = make_mnist(tmp_path / "mnist")
    store = tmp_path / "store"
    first, n = run(cells_on(str(root)), store)
    assert n == 2
    assert run(cells_on(str(root)), store)[1] == 0  # nothing changed: all reused
    make_mnist(root, invert=True)  # same root, inverted images
    changed, n = run(cells_on(str(root)), store)
    assert n == 2  # recomputed, not reused
    assert changed[0]["metrics"]["x_mean"] != pytest.approx(first[0]["metrics"]["x_mean"])
    assert changed[0]["data_fingerprint"] != first[0]["data_fingerprint"]
    # the same bytes under another path are the same cell: reused
    make_mnist(tmp_path / "copy", invert=True)
    again, n = run(cells_on(str(tmp_path / "copy")), store)
    assert n == 0 and [r["id"] for r in again] == [r["id"] for r in changed]


def test_same_relative_root_in_another_directory_is_recomputed(tmp_path, monkeypatch):
    make_mnist(tmp_path / "a" / "data", seed=1)
    make_mnist(tmp_path / "b" / "data", seed=2)
    store = tmp_path / "store"
    monkeypatch.chdir(tmp_path / "a")
    in_a, _ = run(cells_on("data"), store)
    monkeypatch.chdir(tmp_path / "b")
    in_b, n = run(cells_on("data"), store)
    assert n == 2
    assert in_a[0]["metrics"] != in_b[0]["metrics"]


def test_adding_train_files_switches_the_split_and_the_fingerprint(tmp_path):
    root = make_mnist(tmp_path / "mnist")
    spec = data.DataSpec("mnist", n_train=None, n_test=None, root=str(root))
    before = data.fingerprint(spec)
    assert data.load_spec_cached(spec).meta["split"] == "t10k-only"
    make_mnist(root, train=True)
    assert data.load_spec_cached(spec).meta["split"] == "standard"
    assert data.fingerprint(spec) != before
    assert cell_id(*cells_on(str(root))[0]) != cell_id(cells_on(str(root))[0][0], 0, before)


def stamp_records(store: Path, **fields) -> None:
    for p in (store / "records").glob("*.json"):
        rec = json.loads(p.read_text())
        rec.update(fields)
        p.write_text(json.dumps(rec))


def test_records_from_other_code_are_recomputed_or_kept_and_marked(tmp_path):
    root = make_mnist(tmp_path / "mnist")
    store = tmp_path / "store"
    first, _ = run(cells_on(str(root)), store)
    # the library's source and versions, and the package of the test's own batch function
    assert first[0]["code_fingerprint"] == results.code_fingerprint(*engine.caller_sources(data_mean_batch))
    assert first[0]["code_fingerprint"] != results.code_fingerprint()
    stamp_records(store, code_fingerprint="0" * 16, git_rev="0" * 40, jax="0.4.1")
    with pytest.warns(engine.StaleRecord, match="2 stored records were computed by other code"):
        fresh, n = run(cells_on(str(root)), store)
    assert n == 2
    assert all(
        r["code_fingerprint"] == first[0]["code_fingerprint"] and r["jax"] == jax.__version__ for r in fresh
    )
    stamp_records(store, jax="0.4.1")  # a record that claims other library versions is stale too
    with pytest.warns(engine.StaleRecord, match="2 stored records"):
        assert run(cells_on(str(root)), store)[1] == 2
    stamp_records(store, code_fingerprint="0" * 16)
    with pytest.warns(engine.StaleRecord, match="keeping 2 stored records"):
        kept, n = run(cells_on(str(root)), store, reuse="accept")
    assert n == 0 and [r["stale"] for r in kept] == ["code", "code"]
    rows = ResultStore(store).rows(kept)
    assert {r["stale"] for r in rows} == {"code"} and {r["fingerprint"] for r in rows} == {"0" * 16}
    # accept also keeps the same settings computed on other data, marked 'data'
    make_mnist(root, invert=True)
    with pytest.warns(engine.StaleRecord):
        kept, n = run(cells_on(str(root)), store, reuse="accept")
    assert n == 0 and [r["stale"] for r in kept] == ["code,data", "code,data"]
    # force recomputes everything
    assert run(cells_on(str(root)), store, force=True)[1] == 2


def test_code_fingerprint_covers_versions_and_source(monkeypatch):
    fp = results.code_fingerprint()
    assert fp == results.provenance()["code_fingerprint"]
    installed = results.versions()
    monkeypatch.setattr(results, "versions", lambda: {**installed, "jax": "0.4.1"})
    assert results.code_fingerprint() != fp
    monkeypatch.undo()
    monkeypatch.setattr(results, "source_fingerprint", lambda: "f" * 16)
    assert results.code_fingerprint() != fp


def test_provenance_names_the_package_checkout_not_the_callers(tmp_path):
    prov = results.provenance()
    for key in (
        "ntk_adv",
        "source_fingerprint",
        "code_fingerprint",
        "git_rev",
        "git_dirty",
        "jax",
        "jaxlib",
        "numpy",
        "neural_tangents",
        "flax",
        "optax",
        "python",
        "device",
        "command",
    ):
        assert key in prov, key
    repo = tmp_path / "other"
    (repo / "pkg").mkdir(parents=True)
    src = repo / "pkg" / "mod.py"
    src.write_text("x = 1\n")
    git = lambda *a: subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *a],
        cwd=repo,  # noqa: E731
        check=True,
        capture_output=True,
    )
    git("init", "-q")
    assert results.checkout_state(src) == (None, None)  # inside a repository that does not track it
    git("add", "pkg/mod.py")
    git("commit", "-qm", "c")
    rev = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    assert results.checkout_state(src) == (rev, False)
    src.write_text("x = 2\n")
    assert results.checkout_state(src) == (rev, True)


# ------------------------------------------------------------------------------------------ OS-level failures
def test_atomic_writes_use_unique_temp_names_under_concurrency(tmp_path):
    """Two writers of the same results.csv / summary.json: no failed rename, a whole file at the end."""
    errors = []
    rows = [{"width": w, "metric": "agreement", "value": w / 10} for w in range(50)]

    def writer(i):
        try:
            for k in range(40):
                results.write_csv(rows, tmp_path / "results.csv")
                results.write_json({"writer": i, "k": k}, tmp_path / "summary.json")
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert len(results.read_csv(tmp_path / "results.csv")) == 50
    assert json.loads((tmp_path / "summary.json").read_text())["k"] == 39
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "summary.json"]


def test_failed_writes_leave_no_debris_and_old_debris_is_swept(tmp_path, monkeypatch):
    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(results.os, "replace", full)
        with pytest.raises(OSError, match="No space left"):
            results.write_json({"a": 1}, tmp_path / "summary.json")
        store = ResultStore(tmp_path / "store")
        with pytest.raises(OSError, match="No space left"):
            store.put("abc", ProtocolConfig(), 0, {"m": 1.0}, kind="t", data_fp="")
    assert list(tmp_path.iterdir()) == [tmp_path / "store"]
    assert list((tmp_path / "store" / "records").iterdir()) == []
    old = tmp_path / "store" / "records" / ".abc.json.x1.tmp"
    old.write_text("")
    os.utime(old, (0, 0))
    ResultStore(tmp_path / "store")  # opening a store sweeps old temporary files
    assert not old.exists()


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory):
    """A finished tiny perturbation-learning run whose store later runs reuse (no computation)."""
    base = tmp_path_factory.mktemp("pl")
    argv = [
        "perturbation-learning",
        "--dataset",
        "shifted_gauss",
        "--n-train",
        "16",
        "--n-test",
        "16",
        "--d",
        "4",
        "--widths",
        "8",
        "--no-infinite",
        "--seeds",
        "1",
        "--steps-f",
        "5",
        "--steps-g",
        "5",
        "--no-decision-map",
        "--quiet",
        "--store",
        str(base / "store"),
    ]
    assert cli.main([*argv, "--out", str(base / "first")]) == 0
    return argv


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def cli_fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code not in (0, None)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_output_location_faults_are_one_line_errors(tmp_path, cached_run, capsys):
    in_the_way = tmp_path / "file"
    in_the_way.write_text("x")
    err = cli_fails([*cached_run, "--out", str(in_the_way)], capsys)
    assert str(in_the_way) in err and "exists" in err
    err = cli_fails([*cached_run, "--out", str(in_the_way / "sub")], capsys)
    assert str(in_the_way) in err and "Not a directory" in err
    argv = [a if a != cached_run[-1] else str(in_the_way / "store") for a in cached_run]
    err = cli_fails([*argv, "--out", str(tmp_path / "out")], capsys)
    assert "Not a directory" in err
    # results.csv blocked by a directory: the error names it and no temporary file is left behind
    (tmp_path / "blocked" / "results.csv").mkdir(parents=True)
    err = cli_fails([*cached_run, "--out", str(tmp_path / "blocked")], capsys)
    assert "results.csv" in err and "Is a directory" in err
    assert [p.name for p in (tmp_path / "blocked").iterdir()] == ["results.csv"]


def test_read_only_and_full_output_locations(tmp_path, cached_run, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        err = cli_fails([*cached_run, "--out", str(ro / "out")], capsys)
        assert str(ro / "out") in err and "Read-only file system" in err
    with tmpfs(tmp_path / "full", "size=64k") as full:
        (full / "out").mkdir()
        with contextlib.suppress(OSError), open(full / "filler", "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
        err = cli_fails([*cached_run, "--out", str(full / "out")], capsys)
        assert "No space left on device" in err and "results.csv" in err
        assert list((full / "out").iterdir()) == []  # the temporary file was removed


def test_debug_shows_the_traceback(tmp_path, cached_run, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        cli.main([*cached_run, "--out", str(tmp_path / "file"), "--debug"])
    monkeypatch.setenv("NTK_ADV_DEBUG", "1")
    with pytest.raises(FileExistsError):
        cli.main([*cached_run, "--out", str(tmp_path / "file")])


def test_ctrl_c_is_one_line_exit_130(cached_run, monkeypatch, tmp_path, capsys):
    from experiments import perturbation_learning

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(perturbation_learning, "main", interrupted)
    with pytest.raises(SystemExit) as exc:
        cli.main([*cached_run, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 130 and "finished cells are kept" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------- worker processes
WORKER_SCRIPT = """
import os, sys, time
sys.path.insert(0, {tests!r})
import slow_batch
from ntk_adv.perturbation import batch
from ntk_adv.data import DataSpec
from experiments import cli
from ntk_adv.perturbation.protocol import ProtocolConfig
from ntk_adv.models import TwoLayerConfig
cfg = ProtocolConfig(data=DataSpec("shifted_gauss", n_train=8, n_test=8, d=2), arch=TwoLayerConfig(4))
cells = [(cfg.with_(eps=e), 0) for e in (0.5, 1.0, 2.0, 4.0)]
print("parent", os.getpid(), flush=True)
try:
    batch.run_sweep(cells, {store!r}, run_batch=slow_batch.run, \
backend="processes", workers={workers}, max_batch=1,
                    progress=False)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""

SLOW_BATCH = """
import os, time
def run(chunk):
    open(os.path.join({marks!r}, str(os.getpid())), "w").close()
    time.sleep(600)
"""


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (p / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("how", ["kill -9", pytest.param("ctrl-c", marks=pytest.mark.slow)])
def test_no_orphan_workers_when_the_parent_dies(tmp_path, how):
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "slow_batch.py").write_text(SLOW_BATCH.format(marks=str(marks)))
    workers = 1 if how == "kill -9" else 2  # one worker keeps the default run fast; it is the same watchdog
    script = WORKER_SCRIPT.format(tests=str(tmp_path), store=str(tmp_path / "store"), workers=workers)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(marks.iterdir())) < workers:  # every worker is inside run_batch
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        children = _children(proc.pid)
        workers = {int(p.name) for p in marks.iterdir()}
        assert workers <= set(children)
        if how == "kill -9":
            os.kill(proc.pid, signal.SIGKILL)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
        proc.wait(timeout=120)  # generous: a loaded 2-core machine needs time to tear down
        deadline = time.monotonic() + 15
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [c for c in children if _alive(c)], "orphaned worker processes"
        if how == "ctrl-c":
            assert proc.returncode == 130
            err = proc.stderr.read().decode()
            assert "Traceback" not in err, err
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# ------------------------------------------------------------------------------------------- library inputs
X = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
Y = np.where(np.arange(12) % 2 == 0, 1.0, -1.0).astype(np.float32)
NET = models.TwoLayerConfig(8)
P0 = models.init_params(NET, 5, key=jax.random.PRNGKey(0))
APPLY = models.make_apply(NET)
TCFG = training.TrainConfig.theory(lr=0.1, steps=2)
KERN = kernels.two_layer_kernel("ntk")
NAN_X = X.copy()
NAN_X[3, 1] = np.nan


def train(x=X, y=Y, **kw):
    return training.train(APPLY, P0, x, y, TCFG, **kw)


BAD_INPUTS = {
    "train: y (N, 1)": (lambda: train(y=Y[:, None]), r"y must have shape \(12,\); got \(12, 1\)"),
    "train: labels {0, 1}": (
        lambda: train(y=(Y + 1) / 2),
        r"y must contain only -1.0 and \+1.0; found \[0.0\]",
    ),
    "train: labels {-2, 2}": (lambda: train(y=2 * Y), r"y must contain only .*found \[-2.0, 2.0\]"),
    "train: int labels": (lambda: train(y=Y.astype(np.int32)), "y must be floating-point labels"),
    "train: NaN inputs": (lambda: train(x=NAN_X), r"x contains NaN or inf \(1 of 60 values\)"),
    "train: N = 0": (lambda: train(x=X[:0], y=Y[:0]), r"x has N = 0 points \(shape \(0, 5\)\)"),
    "make_predictor: N = 0": (
        lambda: limits.make_predictor(KERN, X[:0], Y[:0], loss="identity", lr=0.1, steps=1),
        "x_train has N = 0 points",
    ),
    "agreement: class ids {0, 1}": (
        lambda: metrics.agreement(np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])),
        "f_out must be real-valued outputs with a real floating dtype; got dtype int",
    ),
    "mean_abs_cosine: (N, d) vs (N, 1)": (lambda: metrics.mean_abs_cosine(X, X[:, :1]), "same shape"),
    "relative_gap: (N,) vs (N, 1)": (lambda: metrics.relative_gap(Y, Y[:, None]), "same shape"),
    "train: negative lr": (lambda: train(lr=-0.1), "lr must be > 0"),
    "train: NaN lr": (lambda: train(lr=float("nan")), "lr must be a finite number"),
    "train: wrong d": (
        lambda: train(x=X[:, :4]),
        r"params.w has shape \(8, 5\) \(d = 5\) but x has shape \(12, 4\)",
    ),
    "pattern_gd: labels {0, 1}": (
        lambda: pattern_gd.train(NET, P0, X, (Y + 1) / 2, lr=0.1, steps=2),
        "y must contain only",
    ),
    "pattern_gd: NaN lr": (lambda: pattern_gd.train(NET, P0, X, Y, lr=float("nan"), steps=2), "lr must be"),
    "make_predictor: labels {0, 1}": (
        lambda: limits.make_predictor(KERN, X, (Y + 1) / 2, loss="identity", lr=0.1, steps=1),
        "y_train must contain only",
    ),
    "make_predictor: negative lr": (
        lambda: limits.make_predictor(KERN, X, Y, loss="logistic", lr=-1.0, steps=1),
        "lr must be > 0",
    ),
    "make_predictor: NaN inputs": (
        lambda: limits.make_predictor(KERN, NAN_X, Y, loss="identity", lr=0.1, steps=1),
        "x_train contains NaN",
    ),
    "predictor: wrong d": (
        lambda: limits.make_predictor(KERN, X, Y, loss="identity", lr=0.1, steps=1)(X[:, :3]),
        "z has d = 3 features, expected d = 5",
    ),
    "predictor: NaN z": (
        lambda: limits.make_predictor(KERN, X, Y, loss="identity", lr=0.1, steps=1)(NAN_X),
        "z contains NaN",
    ),
    "ntk: gamma=1": (lambda: kernels.ntk(X, X, gamma=1.0), r"gamma=1.0 is outside \[0, 1\)"),
    "phi: NaN inputs": (lambda: kernels.phi(NAN_X, X), "x contains NaN"),
    "nngp: d mismatch": (lambda: kernels.nngp(X, X[:, :3]), "disagree in dimension d"),
    "attack: NaN inputs": (
        lambda: attacks.one_step_l2(lambda q: q.sum(1), NAN_X, targets=Y, eps=1.0),
        "x contains NaN",
    ),
    "agreement: (N,) vs (N, 1)": (lambda: metrics.agreement(Y, Y[:, None]), r"g_out must have shape \(12,\)"),
    "accuracy: labels {0, 1}": (lambda: metrics.accuracy(Y, (Y + 1) / 2), "labels must contain only"),
    "accuracy: NaN outputs": (
        lambda: metrics.accuracy(np.where(Y > 0, np.nan, Y), Y),
        "outputs contains NaN",
    ),
    "mean_ci: a NaN seed": (lambda: verdicts.mean_ci([0.5, np.nan, 0.7]), "1 of 3 values are NaN"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_library_input_is_a_named_error(case):
    call, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        call()


def test_valid_inputs_still_work_and_nan_is_never_a_class_under_jit():
    assert float(metrics.agreement(Y, Y)) == 1.0 and float(metrics.accuracy(Y, Y)) == 1.0
    assert train().params.w.shape == (8, 5)
    assert np.isnan(float(jax.jit(metrics.agreement)(jnp.asarray(Y), jnp.asarray(Y).at[0].set(jnp.nan))))
    assert np.isnan(float(jax.jit(metrics.accuracy)(jnp.asarray(Y).at[0].set(jnp.nan), jnp.asarray(Y))))
    # traced learning rates and labels pass the checks (values unknown there)
    lrs = jnp.asarray([0.1, 0.2])
    out = jax.vmap(lambda lr: training.train(APPLY, P0, X, Y, TCFG, lr=lr).params.w)(lrs)
    assert out.shape == (2, 8, 5)


# ------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "argv, message",
    [
        (["convergence", "--n-kernel", "0"], "--n-kernel 0 is out of range: expected >= 1"),
        (["convergence", "--n-kernel", "500", "--n-train", "30"], "--n-kernel 500 exceeds the --n-train 30"),
        (["convergence", "--widths", "64", "--seeds", "4"], ">= 2 distinct --widths"),
        (["convergence", "--widths", "64", "128", "--seeds", "1"], r">= 3 \(width, seed\) points"),
        (["convergence", "--n-test", "5000"], r"--n-test 5000: n_test must be in \[1, 108\]"),
        (["convergence", "--dataset", "mnist"], "give --data-root DIR"),
        (
            ["convergence", "--data-seed", "-1"],
            r"data_seed \(--data-seed\) must be an integer in \[0, 2\*\*32\); got -1",
        ),
        (
            ["convergence", "--data-seed", str(10**23)],
            r"--data-seed 1000+ is out of range: integer options take at most 2147483647",
        ),
        # a swept --n-train is the value every data step reads, checked before any cell (not the default 200)
        (["perturbation-learning", "--n-train", "500"], r"--n-train 500: n_train must be in \[1, 252\]"),
        (
            ["perturbation-learning", "--n-train", "20", "500"],
            r"--n-train 500: n_train must be in \[1, 252\]",
        ),
        (
            ["convergence", "--dataset", "mnist", "--data-root", "/nonexistent/dir"],
            "--data-root /nonexistent/dir",
        ),
    ],
)
def test_options_are_checked_before_work_naming_the_option(argv, message, capsys, tmp_path):
    t0 = time.perf_counter()
    err = cli_fails([*argv, "--out", str(tmp_path / "out")], capsys)
    assert exc_message(err, message)
    assert time.perf_counter() - t0 < 10  # nothing was trained
    assert not (tmp_path / "out").exists()


def exc_message(err: str, pattern: str) -> bool:
    import re

    return re.search(pattern, err) is not None or pytest.fail(f"{pattern!r} not in {err!r}")


def test_atomic_writes_keep_the_usual_file_permissions(tmp_path):
    """Outputs are written through a private temporary file (mode 0600); the result gets 0666 minus the
    umask."""
    import os

    from ntk_adv.results import write_json

    mask = os.umask(0o022)
    try:
        path = write_json({"a": 1}, tmp_path / "summary.json")
    finally:
        os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o644


def _ray_processes() -> set[int]:
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if (
                    "ray::" in cmd
                    or "raylet" in cmd
                    or "gcs_server" in cmd
                    or "default_worker" in cmd
                    or "dashboard" in cmd
                ) and _alive(int(p.name)):
                    out.add(int(p.name))
    return out


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_orphan_ray_processes_when_the_driver_dies(tmp_path):
    """kill -9 of a driver running a sweep on a local Ray cluster: the running task, raylet and GCS stop with
    it; Ray's own dashboard / runtime-env agents notice the dead raylet and exit too (measured ~100 s)."""
    pytest.importorskip("ray")
    before = _ray_processes()
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "slow_batch.py").write_text(SLOW_BATCH.format(marks=str(marks)))
    script = WORKER_SCRIPT.format(tests=str(tmp_path), store=str(tmp_path / "store"), workers=1).replace(
        'backend="processes"', 'backend="ray"'
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 180
        while not list(marks.iterdir()):
            assert proc.poll() is None, "the driver died before its task started"
            assert time.monotonic() < deadline, "the ray task did not start"
            time.sleep(0.5)
        started = _ray_processes() - before
        assert started, "no ray processes seen"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 240
        while (_ray_processes() & started) and time.monotonic() < deadline:
            time.sleep(1.0)
        assert not (_ray_processes() & started), "ray processes outlived their driver by 240 s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
