"""Result store: one JSON record per sweep cell, written atomically, safe to share between sweeps.

Layout: ``ROOT/records/<cell_id>.json``. A record holds the cell's id, its config key, kind, config, seed,
metrics, the fingerprints of the data it read and of the code that computed it, the provenance
(:func:`ntk_adv.results.provenance`: versions, git revision and dirty flag, device, command line), wall time
and a schema version.

Identity: a cell id is the hash of the config, the seed and the *content* fingerprint of the data the config
reads (:func:`ntk_adv.data.fingerprint`; the data root's path is left out, its content is what counts), so
changed data files are a different cell. The code fingerprint (:func:`ntk_adv.results.code_fingerprint`) is
checked when a record is reused: a record computed by other code or other library versions is *stale*
(:meth:`ResultStore.status`); the sweep engine recomputes it unless asked to accept it (then its rows are
marked).

Writes go to a unique temporary file in the same directory and are renamed into place (atomic on POSIX), so a
killed sweep leaves either a whole record or none, two sweeps writing the same store never corrupt it, and a
failed write removes its temporary file (old debris is swept when a store is opened). A record that cannot be
parsed, or whose id/schema does not match, is reported (``CorruptRecord`` warning naming the file) and treated
as missing, so the cell is recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ntk_adv import data as data_mod
from ntk_adv.arch.base import INF_WIDTH, Architecture
from ntk_adv.results import atomic_write, provenance, sweep_temp_files, versions, write_csv

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)  # schema-1 records (no fingerprints) are read, and are stale


class CorruptRecord(UserWarning):
    """A stored record could not be read; the cell will be recomputed."""


NOT_IDENTITY = {"identity": False}  # field metadata: how a run is executed, not what it computes


def canonical(obj: Any) -> Any:
    """JSON-ready canonical form of a (nested) frozen dataclass config; fields declared with
    ``metadata=NOT_IDENTITY`` (execution switches such as ``--dry-run``) are left out. An
    :class:`~ntk_adv.arch.Architecture` also records its ``--arch`` name and depth (``__arch__``,
    ``__depth__``: the store's ``arch`` and ``depth`` columns); an infinite width is the float ``inf``."""
    if isinstance(obj, Architecture):
        return {"__arch__": obj.name, "__depth__": int(obj.depth), **_fields(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _fields(obj)
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items())}
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def _fields(obj: Any) -> dict:
    return {
        "__type__": type(obj).__name__,
        **{
            f.name: canonical(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.metadata.get("identity", True)
            # a field added later with this flag leaves the ids of configs at its default unchanged
            and not (f.metadata.get("omit_if_default") and getattr(obj, f.name) == f.default)
        },
    }


def _hash(obj: Any) -> str:
    payload = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def data_fingerprint(config: Any) -> str:
    """Content fingerprint of the data a config reads: its ``data`` field's :func:`ntk_adv.data.fingerprint`,
    or "" for configs without a :class:`ntk_adv.data.DataSpec` (their data is the caller's business)."""
    spec = getattr(config, "data", None)
    return data_mod.fingerprint(spec) if isinstance(spec, data_mod.DataSpec) else ""


def config_key(config: Any, seed: int) -> str:
    """Hash of (config, seed) alone, without the data's path (``data.root``): equal for the same settings on
    any data; records carry it so that a record of the same settings on other data can be found."""
    canon = canonical(config)
    if isinstance(canon.get("data") if isinstance(canon, dict) else None, dict):
        canon = {**canon, "data": {k: v for k, v in canon["data"].items() if k != "root"}}
    return _hash({"config": canon, "seed": int(seed)})


def cell_id(config: Any, seed: int, data_fp: str | None = None) -> str:
    """Stable id of a cell: hash of (config without the data path, seed, data content fingerprint), 16 hex
    digits. ``data_fp`` defaults to :func:`data_fingerprint` (loads the data once per process and spec)."""
    data_fp = data_fingerprint(config) if data_fp is None else data_fp
    return _hash({"key": config_key(config, seed), "data": data_fp})


def check_record(rec: Any, cid: str) -> None:
    """Raise ValueError unless ``rec`` is a whole record of cell ``cid``: a JSON object of a readable schema
    whose config and seed hash to its key and whose key and data fingerprint hash to ``cid`` (a record edited
    by hand - a width changed, an id copied - does not), with a non-empty ``metrics`` object of numbers (or
    row lists of flat objects)."""
    if not isinstance(rec, dict):
        raise ValueError(f"not a JSON object but {type(rec).__name__}")
    if rec.get("id") != cid or rec.get("schema") not in READABLE_SCHEMAS:
        raise ValueError("id or schema do not match")
    metrics = rec.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("no metrics")
    for name, v in metrics.items():
        if isinstance(v, list):
            if not all(isinstance(r, dict) for r in v):
                raise ValueError(f"metric {name!r} is not a list of rows")
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"metric {name!r} is not a number: {v!r:.40}")
    if not isinstance(rec.get("config"), dict) or isinstance(rec.get("seed"), bool):
        raise ValueError("no config")
    if not isinstance(rec.get("seed"), int):
        raise ValueError("no integer seed")
    if rec["schema"] == SCHEMA:
        key = config_key(rec["config"], rec["seed"])
        if rec.get("key") != key or _hash({"key": key, "data": rec.get("data_fingerprint")}) != cid:
            raise ValueError("its config, seed and data fingerprint do not hash to its id (edited?)")


class ResultStore:
    """A directory of per-cell JSON records (see module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.records_dir.mkdir(parents=True, exist_ok=True)
        sweep_temp_files(self.records_dir)
        self._provenance = provenance()
        self.code_fingerprint = self._provenance["code_fingerprint"]
        self.corrupt: set[str] = set()  # ids of the corrupt records seen by get() (recomputed by the engine)

    def path(self, cid: str) -> Path:
        return self.records_dir / f"{cid}.json"

    def get(self, cid: str) -> dict | None:
        """The record of cell ``cid``, or None if missing or corrupt (corruption is warned about)."""
        p = self.path(cid)
        if not p.exists():
            return None
        try:
            rec = json.loads(p.read_text())
            check_record(rec, cid)
        except (ValueError, OSError, UnicodeDecodeError) as err:
            self.corrupt.add(cid)
            warnings.warn(
                f"corrupt result record {p} ({err}); the cell will be recomputed", CorruptRecord, stacklevel=2
            )
            return None
        return rec

    def has(self, cid: str) -> bool:
        return self.get(cid) is not None

    def status(self, rec: dict | None, code_fp: str | None = None) -> str:
        """``missing`` (None), ``fresh`` (computed by this code: fingerprint ``code_fp``, default the store's,
        and the recorded library versions are the installed ones), or ``stale`` (other code, other library
        versions, or no fingerprint at all)."""
        if rec is None:
            return "missing"
        if rec.get("code_fingerprint") != (code_fp or self.code_fingerprint):
            return "stale"
        # the recorded versions must match too (a record edited, or written by a tool that stamps them itself)
        return "fresh" if all(rec.get(k) == v for k, v in versions().items()) else "stale"

    def by_key(self) -> dict[str, dict]:
        """Readable records indexed by their config key (settings without data): for reusing a record of the
        same settings computed on other data, which only ``reuse='accept'`` does."""
        return {rec["key"]: rec for rec in self.records() if "key" in rec}

    def put(
        self,
        cid: str,
        config: Any,
        seed: int,
        metrics: dict[str, Any],
        *,
        kind: str,
        elapsed_s: float | None = None,
        data_fp: str | None = None,
        code_fp: str | None = None,
    ) -> dict:
        """Write one record atomically (unique temporary name, removed on failure); returns it. A metric is a
        number, or a list of flat rows (dicts of JSON scalars: the long-format rows of a cell whose result is
        more than a few numbers, see :func:`ntk_adv.engine.run_rows`)."""
        rec = {
            "id": cid,
            "key": config_key(config, seed),
            "schema": SCHEMA,
            "kind": kind,
            "config": canonical(config),
            "seed": int(seed),
            "metrics": {k: _metric(k, v) for k, v in metrics.items()},
            **self._provenance,
            "code_fingerprint": code_fp or self.code_fingerprint,
            "data_fingerprint": data_fingerprint(config) if data_fp is None else data_fp,
            "elapsed_s": elapsed_s,
        }
        atomic_write(self.path(cid), json.dumps(rec, sort_keys=True))
        return rec

    def records(self) -> list[dict]:
        """All readable records, sorted by id."""
        out = []
        for p in sorted(self.records_dir.glob("*.json")):
            rec = self.get(p.stem)
            if rec is not None:
                out.append(rec)
        return out

    def rows(self, records: Iterable[dict] | None = None) -> list[dict]:
        """Long-format rows: flattened config columns + seed + cell_id + fingerprint (of the code) +
        data_fingerprint + stale (why a reused record is stale - ``code``, ``data`` - or empty) + metric +
        value. A config holding an architecture (:func:`canonical`) gets the architecture's fields as
        columns by their own names (``width``, ``gamma``, ...; ``width = inf`` at infinite width) plus
        ``arch`` (its ``--arch`` name) and ``depth``; a legacy config with ``width=None`` gets
        ``width = inf``."""
        rows = []
        for rec in self.records() if records is None else records:
            cols = arch_columns(rec["config"])
            if "width" in cols and cols["width"] is None:
                cols["width"] = INF_WIDTH  # legacy infinite-width cells
            cols.update(
                seed=rec["seed"],
                cell_id=rec["id"],
                fingerprint=rec.get("code_fingerprint", "none"),
                data_fingerprint=rec.get("data_fingerprint", "none"),
                stale=rec.get("stale", ""),
            )
            rows += [
                {**cols, "metric": m, "value": v}
                for m, v in sorted(rec["metrics"].items())
                if not isinstance(v, list)  # row-valued metrics are read by the experiment that wrote them
            ]
        return rows

    def export_csv(self, path: str | os.PathLike, records: Iterable[dict] | None = None) -> Path:
        return write_csv(self.rows(records), path)


def _metric(name: str, value: Any) -> float | list[dict]:
    """A metric as stored: a float, or a list of flat rows (each a dict of str/int/float/bool/None)."""
    if isinstance(value, (list, tuple)):
        rows = [canonical(r) for r in value]
        for r in rows:
            if not isinstance(r, dict) or any(isinstance(v, (dict, list)) for v in r.values()):
                raise ValueError(f"metric {name!r}: a row-valued metric holds flat dicts, got {r!r:.80}")
        return rows
    return float(value)


def arch_columns(config: dict) -> dict:
    """:func:`flatten` of a canonical config, with the fields of an architecture it holds (a nested dict
    carrying ``__arch__``) as top-level columns by their own names, plus ``arch`` and ``depth``."""
    arch_keys = [k for k, v in config.items() if isinstance(v, dict) and "__arch__" in v]
    cols = flatten({k: v for k, v in config.items() if k not in arch_keys})
    for k in arch_keys:
        arch = config[k]
        cols.update(flatten(arch))
        cols.update(arch=arch["__arch__"], depth=arch["__depth__"])
    return cols


def flatten(config: dict, prefix: str = "") -> dict:
    """Flatten a canonical config: nested ``data`` fields become ``data.name``, ``data.n_train``, ...;
    ``__type__`` (and other ``__...__``) markers are dropped; tuples become space-separated strings."""
    out: dict = {}
    for k, v in config.items():
        if k.startswith("__") and k.endswith("__"):
            continue
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out[prefix + k] = " ".join(map(str, v))
        else:
            out[prefix + k] = v
    return out
