"""Long-format result tables (one row per cell/seed/metric) and JSON summaries.

A row is a flat dict of scalars; the canonical columns are ``metric`` and ``value`` plus the config columns
that identify the cell (``width``, ``seed``, ``eps``, ...). Plots read only these tables.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ntk_adv.guards import OutputLocked


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

    def write(fh):
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)

    return atomic_write(path, write, newline="")


TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[Any], None] | str | bytes,
    *,
    newline: str | None = None,
    binary: bool = False,
) -> Path:
    """Write a file atomically: ``write(fh)`` (or the given string / bytes) goes to a uniquely named temporary
    file in the same directory (``.NAME.<random>.tmp``), which is renamed over ``path``; concurrent writers
    never share a temporary name, and on any failure (full disk, a signal) the temporary file is removed. The
    rename replaces whatever ``path`` is - a symlink planted there is replaced, its target never written.
    ``binary`` opens the temporary file in binary mode (figures)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    binary = binary or isinstance(write, bytes)
    try:
        with os.fdopen(fd, "wb" if binary else "w", newline=None if binary else newline) as fh:
            if isinstance(write, (str, bytes)):
                fh.write(write)
            else:
                write(fh)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files: give the output the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.filename is None:  # e.g. ENOSPC on write: name the file
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    return path


LOCK_NAME = ".ntk-adv.lock"
MANIFEST_NAME = "manifest.json"


@contextlib.contextmanager
def output_lock(out: str | os.PathLike):
    """Hold ``OUT/.ntk-adv.lock`` (an exclusive, non-blocking ``flock``) while a run writes its outputs: a
    second run on the same output directory is refused at once with :class:`OutputLocked` naming the
    holder's pid, so two runs never mix their results.csv / summary.json / figures. The lock is released when
    the holder ends, however it ends (the kernel drops it with the process); the file is removed on a normal
    exit (a killed holder leaves it, unlocked: the next run takes it)."""
    import fcntl

    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputLocked(
                f"--out {out} is in use by another ntk-adv run (pid {holder}); wait for it to finish or "
                f"choose another --out"
            ) from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file we opened as it finished: lock the new one
    else:  # pragma: no cover - twenty runs racing for one directory
        raise OutputLocked(f"--out {out} is contended by other ntk-adv runs; try again")
    try:
        with contextlib.suppress(OSError):  # the pid is for the refusal message only (a full disk: "unknown")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: a waiting opener sees the inode change and retries
        os.close(fd)  # releases the lock
        if created:  # a run that failed before writing anything leaves no empty output directory
            with contextlib.suppress(OSError):
                out.rmdir()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(out: str | os.PathLike, written: Iterable[str | os.PathLike] = ()) -> Path:
    """Write ``OUT/manifest.json`` last: every output file under ``out`` (relative path -> sha256 and size;
    stored cell records, the lock and temporary files are left out) and which of them this run wrote. A
    directory whose files do not match its manifest was changed after the run finished (or by a run that did
    not finish)."""
    out = Path(out)
    written = {Path(p).resolve() for p in written}
    files = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if (
            not p.is_file()
            or p.is_symlink()
            or "records" in rel.parts
            or p.name in (LOCK_NAME, MANIFEST_NAME)
            or (p.name.startswith(".") and p.name.endswith(TMP_SUFFIX))
        ):
            continue
        files[rel.as_posix()] = {
            "sha256": _sha256(p),
            "bytes": p.stat().st_size,
            "this_run": p.resolve() in written,
        }
    manifest = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "files": files}
    return atomic_write(out / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True))


def sweep_temp_files(directory: str | os.PathLike, max_age_s: float = 3600.0) -> int:
    """Remove temporary files (``.*.tmp``) of atomic writes in ``directory`` older than ``max_age_s`` seconds
    (debris of a killed process; a live writer finishes its file within seconds); returns how many."""
    import time

    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    now = time.time()
    for e in entries:
        if e.name.startswith(".") and e.name.endswith(TMP_SUFFIX):
            try:
                if now - e.stat().st_mtime > max_age_s:
                    os.unlink(e.path)
                    removed += 1
            except OSError:
                pass
    return removed


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


def _results_csv(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "results.csv" if path.is_dir() else path


def to_frame(path: str | os.PathLike):
    """A run's long-format results as a pandas DataFrame, to hand over: ``path`` is a run directory (its
    ``results.csv``) or a CSV path. Columns keep the file's order; a column whose values are all numbers is
    numeric (int64 when all are integers and none is missing, else float64: an infinite width stays
    ``float('inf')``, :data:`ntk_adv.arch.INF_WIDTH`), one of True/False is bool (``boolean`` with gaps),
    any other column holds strings (missing values are None / NaN). Shape: (rows, columns)."""
    import pandas as pd

    csv_path = _results_csv(path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"results table not found: {csv_path}")
    with open(csv_path, newline="") as fh:
        header = next(csv.reader(fh), [])
    rows = read_csv(csv_path)
    columns = {}
    for col in header:
        vals = [r.get(col) for r in rows]
        present = [v for v in vals if v is not None]
        if present and all(isinstance(v, bool) for v in present):
            columns[col] = pd.array(vals, dtype="bool" if len(present) == len(vals) else "boolean")
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            ints = len(present) == len(vals) and all(isinstance(v, int) for v in present)
            columns[col] = np.asarray(
                [np.nan if v is None else v for v in vals], dtype=np.int64 if ints else np.float64
            )
        else:
            columns[col] = pd.array([None if v is None else str(v) for v in vals], dtype=object)
    return pd.DataFrame(columns, columns=header)


def write_parquet(source: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Write a run's results (``source``: run directory or CSV path, read with :func:`to_frame`) as Parquet,
    atomically; ``path`` defaults to ``results.parquet`` beside the CSV. Needs pyarrow."""
    import io

    csv_path = _results_csv(source)
    frame = to_frame(csv_path)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return atomic_write(Path(path) if path else csv_path.with_suffix(".parquet"), buffer.getvalue())


def write_json(obj: dict, path: str | os.PathLike) -> Path:
    """Write a JSON summary atomically (NaN written as null)."""

    def clean(o):
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        o = _scalar(o)
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return o

    return atomic_write(path, json.dumps(clean(obj), indent=2, sort_keys=True))


def select(rows: Iterable[dict], **where) -> list[dict]:
    """Rows whose columns equal every ``where`` item."""
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def values(rows: Iterable[dict], column: str) -> list:
    """Sorted distinct values of a column."""
    return sorted({r[column] for r in rows if r.get(column) is not None})


# Distributions whose versions can change the numbers; they are part of the code fingerprint.
VERSIONED = ("jax", "jaxlib", "numpy", "scipy", "neural-tangents", "flax", "optax")


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Installed versions of :data:`VERSIONED` and of Python."""
    from importlib import metadata

    out = {}
    for dist in VERSIONED:
        try:
            out[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist.replace("-", "_")] = "missing"
    out["python"] = platform.python_version()
    return out


def _files_hash(files: Iterable[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """sha256 (16 hex digits) of the ntk_adv package's source files (paths and contents): correct in a git
    checkout, in someone else's, and after ``pip install`` (no git involved)."""
    root = Path(__file__).resolve().parent
    return _files_hash(root.rglob("*.py"), root)


def module_fingerprint(filename: str) -> str:
    """sha256 (16 hex digits) of one source file (the module of a sweep's ``run_batch`` outside ntk_adv).
    Cached per (file, modification time, size), so an edit in a long-lived process (a notebook) is seen."""
    p = Path(filename)
    st = p.stat()
    return _module_fingerprint(str(p), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=1024)
def _module_fingerprint(filename: str, mtime_ns: int, size: int) -> str:
    p = Path(filename)
    return _files_hash([p], p.parent)


# Global JAX settings that change the numbers a computation returns (precision, default dtypes, PRNG).
NUMERIC_CONFIG = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_numpy_dtype_promotion",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
    "jax_softmax_custom_jvp",
    "jax_enable_custom_prng",
)


def numerics() -> dict[str, str]:
    """The numeric mode of this process: the global JAX settings of :data:`NUMERIC_CONFIG` (read now, not
    cached: ``jax.config.update`` may change them; ``JAX_ENABLE_X64=1`` sets one) and the device kind
    (``platform:device_kind`` of the first device). Part of :func:`code_fingerprint`: a record computed in
    float64, at another matmul precision or on another kind of device is stale in this mode."""
    import jax

    out = {}
    for name in NUMERIC_CONFIG:
        try:
            out[name] = str(getattr(jax.config, name))
        except AttributeError:  # an option this jax release does not have
            out[name] = "n/a"
    dev = jax.devices()[0]
    out["device"] = f"{dev.platform}:{getattr(dev, 'device_kind', '?')}"
    return out


def code_fingerprint(*extra_files: str) -> str:
    """Fingerprint of everything that computes a result: the package source, :func:`versions`, the numeric
    mode (:func:`numerics`: x64, matmul precision, ..., device kind), and ``extra_files`` (source files of
    code outside the package, e.g. a custom ``run_batch``)."""
    payload = json.dumps(
        {
            "source": source_fingerprint(),
            "versions": versions(),
            "numerics": numerics(),
            "extra": sorted(module_fingerprint(f) for f in extra_files),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(revision, dirty) of the git checkout that holds this package's own files, or (None, None) when the
    package is not tracked by one (pip install, a venv inside another repository, no git)."""
    return checkout_state(Path(__file__).resolve())


def checkout_state(source_file: Path) -> tuple[str | None, bool | None]:
    """(HEAD revision, dirty flag) of the git repository that *tracks* ``source_file``; (None, None) if none
    does. git runs in the file's directory (never the caller's working directory), and the repository found
    there must track the file: a copy or a venv inside another checkout is not that checkout's code."""
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", *args], cwd=source_file.parent, capture_output=True, text=True, timeout=10
        )

    try:
        if git("ls-files", "--error-unmatch", source_file.name).returncode != 0:
            return None, None
        rev = git("rev-parse", "HEAD").stdout.strip() or None
        status = git("status", "--porcelain", "--untracked-files=no")
        return rev, (bool(status.stdout.strip()) if status.returncode == 0 else None)
    except (OSError, subprocess.SubprocessError):
        return None, None


def _device() -> str:
    import jax

    devs = jax.devices()
    return f"{devs[0].platform}:{getattr(devs[0], 'device_kind', '?')} x{len(devs)}"


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ntk-adv")
    except metadata.PackageNotFoundError:
        return "unknown"


def provenance() -> dict:
    """What produced a result, recorded with every record and summary: package version, source and code
    fingerprints, git revision and dirty flag of the package's own checkout (None outside one), versions of
    jax / jaxlib / numpy / scipy / neural-tangents / flax / optax / python, the device and the command
    line."""
    rev, dirty = git_state()
    return {
        "ntk_adv": _package_version(),
        "source_fingerprint": source_fingerprint(),
        "code_fingerprint": code_fingerprint(),
        "git_rev": rev or "unknown",
        "git_dirty": dirty,
        **versions(),
        "device": _device(),
        "numerics": numerics(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
