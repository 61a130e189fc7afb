"""Long-format result tables (one row per cell/seed/metric) and JSON summaries.

A row is a flat dict of scalars; the canonical columns are ``metric`` and ``value`` plus the config columns
that identify the cell (``width``, ``seed``, ``eps``, ...). Plots read only these tables.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def _scalar(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if hasattr(v, "shape") and getattr(v, "shape", None) == ():
        return np.asarray(v).item()
    return v


def write_csv(rows: Iterable[dict], path: str | os.PathLike) -> Path:
    """Write rows (dicts) to CSV atomically; columns are the union of keys in first-seen order."""
    rows = [{k: _scalar(v) for k, v in r.items()} for r in rows]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def _parse(v: str):
    if v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() and math.isfinite(f) else f


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Read a long-format CSV back into rows with numbers parsed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results table not found: {path}")
    with open(path, newline="") as fh:
        return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def write_json(obj: dict, path: str | os.PathLike) -> Path:
    """Write a JSON summary atomically (NaN written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")

    def clean(o):
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        o = _scalar(o)
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return o

    tmp.write_text(json.dumps(clean(obj), indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def select(rows: Iterable[dict], **where) -> list[dict]:
    """Rows whose columns equal every ``where`` item."""
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def values(rows: Iterable[dict], column: str) -> list:
    """Sorted distinct values of a column."""
    return sorted({r[column] for r in rows if r.get(column) is not None})


def provenance() -> dict:
    """Git revision of the working tree (if any) and jax / jaxlib versions, recorded with every result."""
    import subprocess

    import jax
    import jaxlib

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        rev = "unknown"
    return {"git_rev": rev, "jax": jax.__version__, "jaxlib": jaxlib.__version__}


def verdict(ok) -> str:
    """The verdict word of a boolean criterion: 'confirmed' or 'refuted' (:data:`ntk_adv.verdicts.VERDICTS`;
    new claims should use :mod:`ntk_adv.verdicts`, whose rules can also say 'inconclusive')."""
    return "confirmed" if bool(ok) else "refuted"


def claim(claim: str, prediction: str, measured: str, confirmed: bool) -> dict:
    """One line of an experiment's verdict table (``summary['claims']``, collected by ``ntk-adv report``),
    judged by a boolean criterion; a refuted line carries the numbers as its reason."""
    from ntk_adv.verdicts import from_check

    out = from_check("", claim, prediction, measured, confirmed)
    out.pop("name")
    out.pop("criterion")
    return out


def prediction(statement: str, predicted, measured, criterion: str, ok: bool, **extra) -> dict:
    """One machine-readable prediction (``summary['predictions'][name]``): raw numbers, a verdict and, when not
    confirmed, the reason (the criterion and the measured numbers)."""
    entry = {"statement": statement, "prediction": predicted, "measured": measured, "criterion": criterion,
             "verdict": verdict(ok), **extra}
    return with_reason(entry)


def with_reason(entry: dict) -> dict:
    """``entry`` with a ``reason`` computed from its numbers when its verdict is not 'confirmed'."""
    if entry.get("verdict") != "confirmed" and not entry.get("reason"):
        numbers = format_value({k: v for k, v in entry.items()
                                if k not in ("statement", "verdict", "criterion", "prediction", "reason")})
        entry = {**entry, "reason": f"criterion {entry.get('criterion', 'of the prediction')!r} not met by the "
                                    f"measured numbers ({numbers})"}
    return entry


def format_value(v) -> str:
    """Compact text of a number, bool or (nested) dict of them, for claims tables."""
    import numpy as np

    if isinstance(v, dict):
        return ", ".join(f"{k}: {format_value(x)}" for k, x in v.items())
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, float, np.floating, np.integer)):
        return f"{float(v):.3g}"
    return str(v)


def claims_table(predictions: dict) -> list[dict]:
    """``summary['claims']`` (for ``ntk-adv report``) from :func:`prediction` entries: one :func:`claim` each."""
    rows = []
    for name, p in predictions.items():
        p = with_reason(p)
        rows.append({"name": name, "claim": p["statement"], "prediction": format_value(p["prediction"]),
                     "measured": format_value(p["measured"]), "verdict": p["verdict"],
                     "reason": p.get("reason", ""), "criterion": p["criterion"]})
    return rows
