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
    assert sum("2 stored records are corrupt" in str(w.message) for w in seen) == 1


REPLACE_ROOT: list = []


def replacing_batch(chunk):
    """Reads the data, then (first call only) replaces the data files: the next chunk computes on new data."""
    out = [{"x_mean": float(np.mean(data.data_arrays(cfg.data)[0])) + seed} for cfg, seed in chunk]
    if REPLACE_ROOT:
        make_mnist(Path(REPLACE_ROOT.pop()), invert=True)
    return out


def test_data_replaced_during_a_run_is_refused_naming_the_path(tmp_path):
    from ntk_adv.perturbation.protocol import ProtocolConfig

    root = make_mnist(tmp_path / "mnist")
    cfg = ProtocolConfig(data=data.DataSpec("mnist", n_train=None, n_test=None, root=str(root)), width=8)
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
