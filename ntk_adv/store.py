"""Result store: one JSON record per sweep cell, written atomically, safe to share between sweeps.

Layout: ``ROOT/records/<cell_id>.json``. A record holds the cell's id, kind, config, seed, metrics,
the git revision, jax/jaxlib versions, wall time and a schema version. Writes go to a unique temporary file
in the same directory and are renamed into place (atomic on POSIX), so a killed sweep leaves either a whole
record or none, and two sweeps writing the same store never corrupt it (the same cell computed twice is simply
replaced by an equal record). A record that cannot be parsed, or whose id/schema does not match, is reported
(``CorruptRecord`` warning naming the file) and treated as missing, so the cell is recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ntk_adv.results import provenance, write_csv

SCHEMA = 1


class CorruptRecord(UserWarning):
    """A stored record could not be read; the cell will be recomputed."""


def canonical(obj: Any) -> Any:
    """JSON-ready canonical form of a (nested) frozen dataclass config."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__, **{f.name: canonical(getattr(obj, f.name))
                                                  for f in dataclasses.fields(obj)}}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items())}
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def cell_id(config: Any, seed: int) -> str:
    """Stable id of a cell: sha256 of the canonical JSON of (config, seed), 16 hex digits."""
    payload = json.dumps({"config": canonical(config), "seed": int(seed)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class ResultStore:
    """A directory of per-cell JSON records (see module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self._provenance = provenance()

    def path(self, cid: str) -> Path:
        return self.records_dir / f"{cid}.json"

    def get(self, cid: str) -> dict | None:
        """The record of cell ``cid``, or None if missing or corrupt (corruption is warned about)."""
        p = self.path(cid)
        if not p.exists():
            return None
        try:
            rec = json.loads(p.read_text())
            if rec.get("id") != cid or rec.get("schema") != SCHEMA or not isinstance(rec.get("metrics"), dict):
                raise ValueError("id, schema or metrics do not match")
        except (ValueError, OSError, UnicodeDecodeError) as err:
            warnings.warn(f"corrupt result record {p} ({err}); the cell will be recomputed", CorruptRecord,
                          stacklevel=2)
            return None
        return rec

    def has(self, cid: str) -> bool:
        return self.get(cid) is not None

    def put(self, cid: str, config: Any, seed: int, metrics: dict[str, float], *, kind: str,
            elapsed_s: float | None = None) -> dict:
        """Write one record atomically; returns it."""
        rec = {"id": cid, "schema": SCHEMA, "kind": kind, "config": canonical(config), "seed": int(seed),
               "metrics": {k: float(v) for k, v in metrics.items()}, **self._provenance,
               "elapsed_s": elapsed_s}
        tmp = self.records_dir / f".{cid}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(rec, sort_keys=True))
        os.replace(tmp, self.path(cid))
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
        """Long-format rows: flattened config columns + seed + cell_id + metric + value; a cell with
        ``width=None`` (infinite width) gets ``width = inf``."""
        rows = []
        for rec in self.records() if records is None else records:
            cols = flatten(rec["config"])
            if "width" in cols and cols["width"] is None:
                cols["width"] = math.inf  # infinite-width cells (the plots' convention)
            cols.update(seed=rec["seed"], cell_id=rec["id"])
            rows += [{**cols, "metric": m, "value": v} for m, v in sorted(rec["metrics"].items())]
        return rows

    def export_csv(self, path: str | os.PathLike, records: Iterable[dict] | None = None) -> Path:
        return write_csv(self.rows(records), path)


def flatten(config: dict, prefix: str = "") -> dict:
    """Flatten a canonical config: nested ``data`` fields become ``data.name``, ``data.n_train``, ...;
    ``__type__`` markers are dropped; tuples become space-separated strings."""
    out: dict = {}
    for k, v in config.items():
        if k == "__type__":
            continue
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out[prefix + k] = " ".join(map(str, v))
        else:
            out[prefix + k] = v
    return out
