"""A generic sweep engine: a grid of cells -> planned groups -> batched, cached, resumable execution on a
chosen backend. It knows no experiment: the caller passes the function that runs a group and the key that
groups cells.

* A :class:`Grid` is a frozen base config plus axes (dotted field path -> values; ``data.n_train`` reaches a
  field of a nested frozen dataclass; a config naming an architecture field in ``ARCH_AXES`` also takes that
  architecture's fields by their short names: ``width``, ``depth``) and a number of seeds. A *cell* is a
  pair (config, seed) and has a stable id (:func:`ntk_adv.store.cell_id`: config, seed and the content of
  its data).
* :func:`plan` groups cells by the caller's ``batch_key(config)`` (equal keys share shapes and static
  parameters: one compiled function per group), orders each group (by the caller's ``order(cell)``, else as
  given) and cuts it into chunks of at most ``max_batch`` cells.
* :func:`run_sweep` runs every chunk with the caller's ``run_batch(chunk) -> [metrics dict per cell]`` and
  writes finished cells to a :class:`ntk_adv.store.ResultStore` as each chunk completes; a restarted sweep
  skips them (``force=True`` recomputes), so a killed sweep loses at most the chunks in flight and never
  duplicates.
* Backends: ``inprocess`` (default), ``processes`` (local worker processes, spawn start method), and ``ray``
  (a local Ray instance, or the cluster at ``ray_address``, an argument: the engine reads no environment
  variable for it; workers import ntk_adv, nothing else changes).
  ``run_batch`` must then be a module-level function (it is pickled to the workers).
* Progress: a tqdm bar on a terminal; off a terminal (a log file, a Slurm job) a plain line every
  ``NTK_ADV_PROGRESS_EVERY`` seconds (default 30) with cells computed, cached and an ETA. ``dry_run=True``
  raises :class:`DryRun` with the plan (and an estimated time, :func:`estimate_time`) instead of computing;
  a command of several sweeps plans them all with a :class:`Planner`. Ray tasks ask for one CPU (and one GPU
  when jax sees one: :func:`ray_resources`).
* JAX's persistent compilation cache can be enabled with :func:`enable_compilation_cache` (or
  ``NTK_ADV_JAX_CACHE=DIR`` for the CLI); it is off by default because with jaxlib 0.5.3 an L-BFGS attack
  executable loaded from the cache returned all-zero perturbations.

Perturbation learning is one client (:mod:`ntk_adv.perturbation.batch`: ``run_protocol_batch`` and
``protocol_batch_key``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import jax
from tqdm.auto import tqdm

from ntk_adv import data as data_mod
from ntk_adv import validate
from ntk_adv.arch.base import check_width
from ntk_adv.guards import BackendFailure, DryRun, probe_address
from ntk_adv.results import code_fingerprint
from ntk_adv.store import NOT_IDENTITY, CorruptRecord, ResultStore, cell_id, config_key, data_fingerprint

Cell = tuple[Any, int]  # (config, seed)
Backend = Literal["inprocess", "processes", "ray"]
Reuse = Literal["verify", "accept"]
BACKENDS: tuple[str, ...] = get_args(Backend)
REUSE: tuple[str, ...] = get_args(Reuse)


# ------------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class Grid:
    """``base`` config (a frozen dataclass), ``axes`` as a mapping ``{field: [values...]}`` or pairs
    ((field, (values...)), ...), ``seeds`` per config (seeds ``seed0 .. seed0 + seeds - 1``). Axis fields
    are dotted paths into ``base`` (``width``, ``data.n_train``; see :func:`set_field`). Cells are the
    product of the axes (first axis slowest), each config repeated for every seed.

    ``axes`` is normalised to the tuple of pairs (so equal grids compare equal however they were spelled).
    On a ``width`` axis infinite width is :data:`ntk_adv.arch.INF_WIDTH` (``math.inf``), its one spelling;
    ``width`` and ``depth`` of a config with an architecture (``ARCH_AXES``, e.g.
    :class:`ntk_adv.perturbation.protocol.ProtocolConfig`) set the architecture's fields, so
    ``Grid(cfg, axes={"width": [64, INF_WIDTH], "depth": [2, 3]})`` sweeps both (``depth`` only for
    architectures that have one as a field)."""

    base: Any
    axes: Any = ()
    seeds: int = 1
    seed0: int = 0

    def __post_init__(self):
        object.__setattr__(self, "axes", normalize_axes(self.axes))
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        for name, vals in self.axes:
            if len(vals) == 0:
                raise ValueError(f"axis {name!r} has no values")
            set_field(self.base, name, vals[0])  # validates the name

    def configs(self) -> list[Any]:
        names = [n for n, _ in self.axes]
        out = []
        for combo in itertools.product(*[v for _, v in self.axes]):
            cfg = self.base
            for name, value in zip(names, combo):
                cfg = set_field(cfg, name, value)
            out.append(cfg)
        return out

    def cells(self) -> list[Cell]:
        return [(cfg, self.seed0 + s) for cfg in self.configs() for s in range(self.seeds)]


def normalize_axes(axes: Any) -> tuple[tuple[str, tuple], ...]:
    """Sweep axes as ((field, (values...)), ...) from a mapping ``{field: values}`` or a sequence of
    ``(field, values)`` pairs. Values of a field named ``width`` are ints >= 1 or
    :data:`ntk_adv.arch.INF_WIDTH` (``None``, ``"inf"`` are refused, naming the one spelling). A malformed
    axis is a one-line ValueError naming it."""
    items = list(axes.items()) if isinstance(axes, Mapping) else list(axes)
    out = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"axes: expected {{field: [values...]}} or ((field, values), ...); got {item!r}")
        name, vals = item
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Iterable):
            raise ValueError(f"axis {name!r}: values must be a list or tuple; got {vals!r}")
        vals = tuple(vals)
        if name.rsplit(".", 1)[-1] == "width":
            vals = tuple(check_width(v, f"axis {name!r}: a width") for v in vals)
        out.append((name, vals))
    return tuple(out)


def set_field(cfg: Any, path: str, value: Any) -> Any:
    """``dataclasses.replace`` along a dotted path of nested frozen dataclasses: ``set_field(c,
    "data.n_train", 7)`` is ``replace(c, data=replace(c.data, n_train=7))``. A name that is not a field of a
    config whose class names an architecture field (``ARCH_AXES = "arch"``) but is one of that architecture
    (``width``, ``depth``, ``gamma``, ...) sets it there: ``set_field(c, "width", 64)`` is
    ``replace(c, arch=replace(c.arch, width=64))``. An unknown field anywhere on the path is a ValueError
    naming the path and the fields that exist."""
    return _set(cfg, path, path.split("."), value)


def _set(cfg: Any, path: str, names: list[str], value: Any) -> Any:
    if not dataclasses.is_dataclass(cfg):
        raise ValueError(f"unknown sweep axis {path!r}: {type(cfg).__name__} is not a dataclass")
    fields = {f.name for f in dataclasses.fields(cfg)}
    head, rest = names[0], names[1:]
    arch_field = getattr(type(cfg), "ARCH_AXES", None)
    if head not in fields and arch_field in fields:
        arch = getattr(cfg, arch_field)
        if dataclasses.is_dataclass(arch) and head in {f.name for f in dataclasses.fields(arch)}:
            return replace(cfg, **{arch_field: _set(arch, path, names, value)})
        fields = (
            fields | {f.name for f in dataclasses.fields(arch)} if dataclasses.is_dataclass(arch) else fields
        )
    if head not in fields:
        raise ValueError(
            f"unknown sweep axis {path!r}; fields of {type(cfg).__name__}: {', '.join(sorted(fields))}"
        )
    return replace(cfg, **{head: _set(getattr(cfg, head), path, rest, value) if rest else value})


# ------------------------------------------------------------------------------------------- execution
@dataclass(frozen=True)
class Execution:
    """Where and how a sweep's cells run, and where they are kept: the ``run`` sub-config of every sweeping
    experiment (CLI ``--backend``, ``--workers``, ``--store``, ``--force``, ``--accept-stale``, ``--parquet``,
    ``--dry-run``; a Ray cluster is chosen with ``--ray-address``). None of it enters a cell's identity.

    ``parquet``: the CLI writes ``OUT/results.parquet`` beside ``results.csv`` after the command
    (:func:`ntk_adv.results.write_parquet`; from Python call it yourself). ``dry_run``: :func:`run_sweep`
    raises :class:`DryRun` carrying the plan (cells in total, in the store and fresh, to compute) before
    computing anything; the CLI prints it and exits 0. Both are left out of cell configs' hashes
    (``metadata={"identity": False}``, :func:`ntk_adv.store.canonical`), so stores stay valid."""

    backend: Backend = "inprocess"  # where cells run: inprocess, processes (a local pool) or ray
    workers: int = 2  # parallel workers of the processes / ray backends
    store: str = ""  # result store directory (default: OUT/store)
    force: bool = False  # recompute cells already in the store
    accept_stale: bool = False  # keep stored cells computed by other code or on other data (marked 'stale')
    parquet: bool = field(default=False, metadata=NOT_IDENTITY)  # also write OUT/results.parquet (CLI)
    dry_run: bool = field(default=False, metadata=NOT_IDENTITY)  # print the plan, compute nothing, exit 0
    # HOST:PORT of a running Ray cluster for the ray backend ("": a local Ray instance); the CLI's
    # --ray-address (or RAY_ADDRESS with --backend ray) sets it
    ray_address: str = field(default="", metadata={**NOT_IDENTITY, "cli": False})

    def __post_init__(self):
        validate.one_of("backend", self.backend, BACKENDS)
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.ray_address and self.backend != "ray":
            raise ValueError(
                f"--ray-address {self.ray_address} runs cells on a Ray cluster, but --backend is "
                f"{self.backend}: give one or the other"
            )

    def store_path(self, out: str | os.PathLike) -> Path:
        return Path(self.store) if self.store else Path(out) / "store"

    def sweep_options(self, out: str | os.PathLike) -> dict:
        """Keyword arguments of :func:`run_sweep` and :func:`run_rows`: store, backend, workers, ray_address,
        force, reuse, dry_run."""
        return dict(
            store=self.store_path(out),
            backend=self.backend,
            workers=self.workers,
            ray_address=self.ray_address or None,
            force=self.force,
            reuse="accept" if self.accept_stale else "verify",
            dry_run=self.dry_run,
        )


# ------------------------------------------------------------------------------------------- units
@dataclass(frozen=True)
class Unit:
    """One unit of an experiment's work, the config of a :func:`run_rows` cell. A cell's identity is only
    what it reads: ``settings`` is the experiment's config with every field the unit does not read at its
    default (:func:`reads_only`), so editing a setting makes only the cells that read it stale.

    ``part`` names the work (the experiment's run function dispatches on it); ``data`` is the data set the
    unit reads, kept at the top level so that the store fingerprints its content and leaves its path out
    (None: no data set, e.g. synthetic data); ``labels`` is what else tells units of one part apart (a
    width, a tag, the perturbations a transfer unit evaluates), sorted (name, value) pairs of JSON values,
    read with ``unit["width"]`` or :meth:`get`. Build units with :func:`unit`."""

    part: str
    settings: Any
    data: Any = None
    labels: tuple[tuple[str, Any], ...] = ()

    def __getitem__(self, name: str) -> Any:
        for key, value in self.labels:
            if key == name:
                return value
        raise KeyError(f"unit {self.part!r} has no label {name!r}; labels: {[k for k, _ in self.labels]}")

    def get(self, name: str, default: Any = None) -> Any:
        return next((value for key, value in self.labels if key == name), default)

    def config(self) -> Any:
        """The config the unit runs: ``settings`` on the unit's ``data`` (with its path), where the settings
        have a ``data`` field and the unit a data set; else ``settings``."""
        has_data = dataclasses.is_dataclass(self.settings) and "data" in _field_names(self.settings)
        return replace(self.settings, data=self.data) if has_data and self.data is not None else self.settings


def unit(
    part: str,
    cfg: Any,
    *,
    reads: Iterable[str] | None = None,
    ignores: Iterable[str] = (),
    data: Any = None,
    **labels: Any,
) -> Unit:
    """The :class:`Unit` ``part`` of the experiment config ``cfg``: its settings :func:`reads_only`
    (``reads``, ``ignores``), the data set ``data`` it reads and its ``labels`` (keyword arguments, JSON
    values)."""
    return Unit(part, reads_only(cfg, reads, ignores=ignores), data, tuple(sorted(labels.items())))


def reads_only(cfg: Any, reads: Iterable[str] | None = None, *, ignores: Iterable[str] = ()) -> Any:
    """``cfg`` (a frozen dataclass) with every top-level field a unit does not read at its default: the fields
    outside ``reads`` (None: it reads them all), the fields in ``ignores`` (e.g. tolerances only the verdicts
    read) and always the execution (fields holding an :class:`Execution`: where cells run is not what they
    compute); a data spec's path (``data.root``) is dropped (the store fingerprints the data's content). An
    unknown field name is a ValueError naming it."""
    names = _field_names(cfg)
    keep = names if reads is None else set(reads)
    ignores = set(ignores)
    unknown = sorted((keep | ignores) - names)
    if unknown:
        raise ValueError(
            f"{type(cfg).__name__} has no field {unknown[0]!r}; fields: {', '.join(sorted(names))}"
        )
    changes = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, Execution) or f.name not in keep or f.name in ignores:
            default = _default(f)
            if default is not dataclasses.MISSING:
                changes[f.name] = default
        elif isinstance(value, data_mod.DataSpec) and value.root is not None:
            changes[f.name] = replace(value, root=None)
    return replace(cfg, **changes) if changes else cfg


def _field_names(cfg: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cfg)}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


# ------------------------------------------------------------------------------------------- engine
def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Turn on JAX's persistent compilation cache (default ``~/.cache/ntk-adv/jax``): a re-run or a resumed
    sweep reuses compiled executables instead of recompiling every width. Opt-in - see the module docstring
    (cached L-BFGS executables misbehaved with jaxlib 0.5.3)."""
    path = Path(path or Path.home() / ".cache" / "ntk-adv" / "jax")
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def plan(
    cells: Sequence[Cell],
    batch_key: Callable[[Any], Hashable],
    max_batch: int = 64,
    order: Callable[[Cell], Any] | None = None,
) -> list[list[Cell]]:
    """Deterministic chunks of cells: cells with equal ``batch_key(config)`` together (groups in first-seen
    order), each group sorted by ``order(cell)`` if given (stable: ties keep the given order; without
    ``order`` the given order), then cut into chunks of at most ``max_batch`` cells."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    groups: dict = {}
    for cell in cells:
        groups.setdefault(batch_key(cell[0]), []).append(cell)
    chunks = []
    for group in groups.values():
        group = sorted(group, key=order) if order is not None else group
        chunks += [group[i : i + max_batch] for i in range(0, len(group), max_batch)]
    return chunks


PROGRESS_ENV = "NTK_ADV_PROGRESS_EVERY"


def progress_every() -> float:
    """Seconds between the plain progress lines printed when stderr is not a terminal (a log file, a batch
    job): ``NTK_ADV_PROGRESS_EVERY`` (default 30; a positive number)."""
    raw = os.environ.get(PROGRESS_ENV, "").strip()
    if not raw:
        return 30.0
    try:
        every = float(raw)
    except ValueError:
        every = float("nan")
    if not (every > 0 and every < float("inf")):
        raise ValueError(f"{PROGRESS_ENV} must be a positive number of seconds; got {raw!r}")
    return every


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class _PlainProgress:
    """A line on ``stream`` every ``every`` seconds (a daemon thread), and one at the end: cells done of the
    cells to compute, cells taken from the store, elapsed time and an ETA (elapsed / done x remaining)."""

    def __init__(self, kind: str, total: int, cached: int, every: float, stream=None):
        import threading

        self.kind, self.total, self.cached, self.every = kind, total, cached, every
        self.stream = stream or sys.stderr
        self.done = 0
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ntk-adv-progress", daemon=True)
        self._thread.start()

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        left = self.total - self.done
        eta = _duration(elapsed / self.done * left) if self.done else "unknown"
        return (
            f"{self.kind}: {self.done}/{self.total} cells computed, {self.cached} cached (from the store), "
            f"{_duration(elapsed)} elapsed, ETA {eta if left else '0s'}"
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._write()

    def _write(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def update(self, n: int) -> None:
        self.done += n

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._write()


class StaleRecord(UserWarning):
    """Stored records were computed by other code or on other data (recomputed, or kept with
    reuse='accept')."""


def run_sweep(
    cells: Grid | Sequence[Cell],
    store: ResultStore | str | os.PathLike,
    *,
    run_batch: Callable[[Sequence[Cell]], list[dict]],
    batch_key: Callable[[Any], Hashable],
    kind: str,
    order: Callable[[Cell], Any] | None = None,
    describe: Callable[[Any], str] | None = None,
    backend: Backend = "inprocess",
    workers: int = 2,
    ray_address: str | None = None,
    force: bool = False,
    reuse: Reuse = "verify",
    max_batch: int = 64,
    progress: bool | None = True,
    dry_run: bool = False,
) -> list[dict]:
    """Run every cell not already in ``store`` (all of them with ``force``); returns the records of all cells
    in the order given.

    ``run_batch(chunk) -> [metrics dict per cell, in order]`` runs one chunk of cells that share a
    ``batch_key`` (a module-level function for the ``processes`` and ``ray`` backends: it is pickled to the
    workers); ``kind`` names the experiment in the records and messages; ``order`` sorts each group
    (:func:`plan`); ``describe(config)`` labels a finished chunk in the log (default: the batch key).

    A cell's id covers its config, seed and the content of its data (:func:`ntk_adv.store.cell_id`); a stored
    record is reused only if the same code computed it (:func:`ntk_adv.results.code_fingerprint`: package
    source and library versions). ``reuse="verify"`` (default) recomputes stale records;
    ``reuse="accept"`` keeps them - and records of the same settings on other data - and marks them: their
    ``stale`` field (and rows' ``stale`` column) says ``code`` or ``data``. Either way a warning counts
    them.

    ``dry_run``: raise :class:`DryRun` with the plan (cells in total, in the store and fresh, to compute)
    instead of computing. Progress: a tqdm bar on a terminal; when stderr is not a terminal (and
    ``progress`` is not False) a plain line every :func:`progress_every` seconds (``NTK_ADV_PROGRESS_EVERY``,
    default 30) with cells done, cached and an ETA."""
    validate.one_of("backend", backend, BACKENDS)
    validate.one_of("reuse", reuse, REUSE)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cells = cells.cells() if isinstance(cells, Grid) else list(cells)
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    code_fp = code_fingerprint(*caller_sources(run_batch))
    by_data: dict = {}  # one fingerprint per distinct data spec (the loader's cache holds only a few)
    stamps: dict = {}  # data spec -> stamp of its files when it was fingerprinted
    data_fps = []
    for c, _ in cells:
        key = getattr(c, "data", None)
        if key not in by_data:
            stamps[key] = _data_stamp(key)
            by_data[key] = data_fingerprint(c)
            _check_data_unchanged(key, stamps[key])
        data_fps.append(by_data[key])
    ids = [cell_id(c, s, fp) for (c, s), fp in zip(cells, data_fps)]
    if len(set(ids)) != len(ids):
        raise ValueError("the sweep lists the same cell (config, seed) more than once")
    found = [None if force else store.get(cid) for cid in ids]
    corrupt = [cid for cid, rec in zip(ids, found) if rec is None and cid in store.corrupt]
    if corrupt:
        more = f" and {len(corrupt) - 5} more" if len(corrupt) > 5 else ""
        warnings.warn(
            f"{kind}: recomputing {len(corrupt)} cells whose stored record is corrupt (unreadable, "
            f"incomplete, or not hashing to its cell id; corrupt result record ids: "
            f"{', '.join(corrupt[:5])}{more})",
            CorruptRecord,
            stacklevel=2,
        )
    status = [store.status(rec, code_fp) for rec in found]
    kept: dict[int, dict] = {}  # cell index -> accepted stale record
    if reuse == "accept" and not force:
        index = store.by_key() if "missing" in status else {}
        for i, ((cfg, seed), st) in enumerate(zip(cells, status)):
            if st == "stale":
                kept[i] = {**found[i], "stale": "code"}
            elif st == "missing" and config_key(cfg, seed) in index:
                rec = index[config_key(cfg, seed)]
                kept[i] = {**rec, "stale": "data" if store.status(rec, code_fp) == "fresh" else "code,data"}
    n_stale = status.count("stale")
    if kept:
        warnings.warn(
            f"{kind}: keeping {len(kept)} stored records computed by other code or on other data "
            f"(reuse='accept'); their rows are marked in the 'stale' column",
            StaleRecord,
            stacklevel=2,
        )
    elif n_stale:
        warnings.warn(
            f"{kind}: {n_stale} stored records were computed by other code, library versions or numeric mode "
            f"(x64, matmul precision, device kind; this code: "
            f"{code_fp}); recomputing them (reuse='accept' keeps them, marked)",
            StaleRecord,
            stacklevel=2,
        )
    pending = [
        (cell, i) for i, (cell, st) in enumerate(zip(cells, status)) if st != "fresh" and i not in kept
    ]
    cell_index = {id(cell): i for cell, i in pending}
    chunks = plan([cell for cell, _ in pending], batch_key, max_batch, order)
    if dry_run:
        n_stale = sum(status[i] == "stale" for _, i in pending)
        n_corrupt = sum(ids[i] in set(corrupt) for _, i in pending)
        seconds, source = estimate_time(kind, [cell[0] for cell, _ in pending], store)
        raise DryRun(
            kind,
            {
                "total": len(cells),
                "fresh": status.count("fresh"),
                "kept": len(kept),
                "compute": len(pending),
                "missing": len(pending) - n_stale - n_corrupt,
                "stale": n_stale,
                "corrupt": n_corrupt,
                "chunks": len(chunks),
                "backend": backend,
            },
            seconds=seconds,
            estimate=source,
        )
    describe = describe or (lambda cfg: repr(batch_key(cfg)))
    tty = sys.stderr.isatty()
    verbose = progress is not False and tty
    bar = tqdm(total=len(pending), desc=f"{kind}: cells", unit="cell", disable=None if progress else True)
    plain = (
        _PlainProgress(kind, len(pending), len(cells) - len(pending), progress_every())
        if progress is not False and not tty and pending
        else None
    )
    done: dict[int, dict] = {}

    def commit(chunk, metrics, elapsed):
        for key in {getattr(cell[0], "data", None) for cell in chunk}:
            _check_data_unchanged(key, stamps[key])  # never file numbers of other data under this id
        for cell, m in zip(chunk, metrics):
            i = cell_index[id(cell)]
            done[i] = store.put(
                ids[i],
                cell[0],
                cell[1],
                m,
                kind=kind,
                elapsed_s=elapsed / len(chunk),
                data_fp=data_fps[i],
                code_fp=code_fp,
            )
        bar.update(len(chunk))
        if plain is not None:
            plain.update(len(chunk))
        if verbose:
            tqdm.write(f"  done {len(chunk)} cells ({describe(chunk[0][0])}) in {elapsed:.1f}s")

    try:
        if backend == "inprocess":
            for chunk in chunks:
                t0 = time.perf_counter()
                commit(chunk, run_batch(chunk), time.perf_counter() - t0)
        elif backend == "processes":
            _run_processes(chunks, run_batch, commit, workers)
        else:
            _run_ray(chunks, run_batch, commit, workers, ray_address)
    finally:
        bar.close()
        if plain is not None:
            plain.close()
    return [done.get(i) or kept.get(i) or found[i] for i in range(len(cells))]


# ------------------------------------------------------------------------------------------- dry runs
BENCH_ENV = "NTK_ADV_BENCH"
BENCH_KINDS = ("perturbation_learning",)  # the bench's width sweep times these cells (protocol cells)


def bench_file() -> Path:
    """Where a dry run looks for the bench's result: ``NTK_ADV_BENCH`` (a bench.json or the folder holding
    it), else ``runs/bench/bench.json`` (``ntk-adv bench``'s default output) under the working directory."""
    raw = os.environ.get(BENCH_ENV, "").strip()
    path = Path(raw) if raw else Path("runs") / "bench" / "bench.json"
    return path / "bench.json" if path.is_dir() else path


def _bench_per_cell(kind: str) -> tuple[float, str] | None:
    """Seconds per cell measured by the bench's engine on its width sweep (cold: compile included, as in a
    fresh command), for the kinds of cells it times; None without a readable bench result."""
    if kind not in BENCH_KINDS:
        return None
    path = bench_file()
    try:
        sweep = json.loads(path.read_text())["width_sweep"]
        per = float(sweep["engine_cold_s"]) / int(sweep["cells"])
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    if not per > 0 or per == float("inf"):
        return None
    return per, (
        f"the bench: {path}: {per:.3g} s/cell on its width sweep ({sweep['cells']} cells, "
        f"N={sweep.get('n_train')}, d={sweep.get('d')}, widths {sweep.get('widths')}, compile included)"
    )


def _part(config: Any) -> Any:
    """What tells cells of one kind apart in cost: a :class:`Unit`'s part (its stored config's ``part``)."""
    return config.get("part") if isinstance(config, dict) else getattr(config, "part", None)


def estimate_time(kind: str, configs: Sequence[Any], store: ResultStore) -> tuple[float | None, str]:
    """(seconds, where the number comes from) for computing cells of ``configs`` of ``kind``: the bench's
    per-cell cost where it times this kind of cell (:func:`bench_file`), else the mean recorded time
    (``elapsed_s``) of the store's records of the same kind and part; ``(None, "no estimate (no timing
    recorded)")`` without either. Cells of a part with no recorded time are left out and the text says so
    ("at least")."""
    if not configs:
        return 0.0, "nothing to compute"
    bench = _bench_per_cell(kind)
    if bench is not None:
        return bench[0] * len(configs), bench[1]
    times: dict[Any, list[float]] = {}
    for rec in store.records():  # the readable ones (the sweep itself reported corrupt records)
        elapsed = rec.get("elapsed_s")
        if rec.get("kind") == kind and isinstance(elapsed, (int, float)) and elapsed >= 0:
            times.setdefault(_part(rec.get("config")), []).append(float(elapsed))
    means = {part: sum(ts) / len(ts) for part, ts in times.items()}
    parts = [_part(cfg) for cfg in configs]
    known = [means[p] for p in parts if p in means]
    if not known:
        return None, "no estimate (no timing recorded)"
    n = sum(len(times[p]) for p in set(parts) if p in means)
    text = f"the store's timings: mean recorded time of {n} stored {kind} cells of the same part"
    if len(known) < len(parts):
        text += f"; at least: {len(parts) - len(known)} cells of parts with no timing recorded not counted"
    return sum(known), text


class Planner:
    """Plans every sweep of a command that runs several (``--dry-run``): each sweep runs inside
    ``with planner.sweep(label):``; under a dry run the sweep raises :class:`DryRun` before any work, the
    planner keeps it and the command goes on to its next sweep; :meth:`finish`, after the last sweep and
    before any use of their results, raises one :class:`DryRun` with every plan (nothing computed) - or does
    nothing when the sweeps ran. A nested command's multi-sweep plan is flattened into this one. A sweep
    whose cells are chosen from an earlier sweep's results is recorded with :meth:`depends` (when
    :attr:`planning`, i.e. the earlier sweep only planned). One planner per command call: no global state::

        planner = engine.Planner(COMMAND)
        for part in parts:
            with planner.sweep(part):
                results[part] = sub.main(...)
        planner.finish()
    """

    def __init__(self, kind: str):
        self.kind = kind
        self.plans: list[DryRun] = []

    @contextlib.contextmanager
    def sweep(self, label: str = ""):
        try:
            yield
        except DryRun as plan:
            self.plans.append(plan.labelled(label))

    @property
    def planning(self) -> bool:
        """True once a sweep only planned (a dry run): its results do not exist."""
        return bool(self.plans)

    def depends(self, kind: str, label: str, on: str) -> None:
        """Record a sweep ``label`` of ``kind`` whose cells depend on ``on`` (an earlier sweep's results)."""
        self.plans.append(DryRun(kind, {}, depends=on, label=label))

    def finish(self) -> None:
        """Raise the command's plan (one :class:`DryRun`) if its sweeps planned; else return."""
        if self.plans:
            raise DryRun.of(self.kind, self.plans)


def _data_stamp(spec: Any) -> tuple:
    """(path, size, mtime, inode) of every file a file-based data spec may read; () for other data."""
    if not isinstance(spec, data_mod.DataSpec):
        return ()
    # files only: a directory's mtime moves when anything (an output, a store) is written inside it
    return tuple(e for e in data_mod._stamp(spec) if not isinstance(e, tuple) or not os.path.isdir(e[0]))


def _check_data_unchanged(spec: Any, stamp: tuple) -> None:
    """The data files of ``spec`` still have the stamp they had when the sweep fingerprinted them; else a
    one-line ValueError naming the changed path (the cells' ids name the data first read, so results computed
    on replaced files must not be filed under them)."""
    now = _data_stamp(spec)
    if now == stamp:
        return
    changed = sorted({e[0] for e in set(now) ^ set(stamp) if isinstance(e, tuple)}) or [spec.root]
    raise ValueError(
        f"--data-root {spec.root}: data file {changed[0]} changed during the run; its results would be "
        f"filed under the old data's cell ids - refusing (re-run once the data is stable)"
    )


def caller_sources(fn: Callable) -> list[str]:
    """Source files of the code outside ntk_adv that ``fn`` runs, for the code fingerprint of its records: for
    every function in ``fn`` (through ``functools.partial`` layers and their callable arguments) defined
    outside this package, all ``.py`` files of its top-level package (the whole application: its modules call
    each other), or its own file for a module outside any package. An edit there makes stored cells stale."""
    library = Path(__file__).resolve().parent
    todo, files = [fn], set()
    while todo:
        f = todo.pop()
        if isinstance(f, functools.partial):
            todo += [f.func, *(a for a in (*f.args, *f.keywords.values()) if callable(a))]
            continue
        module = sys.modules.get(getattr(f, "__module__", None) or "")
        path = getattr(module, "__file__", None)
        if not path or library in Path(path).resolve().parents:
            continue
        top = sys.modules.get(module.__name__.split(".")[0])
        top_file = getattr(top, "__file__", None)
        if top_file and Path(top_file).name == "__init__.py":
            files |= {str(p) for p in Path(top_file).resolve().parent.rglob("*.py")}
        else:
            files.add(str(Path(path).resolve()))
    return sorted(files)


def run_rows(
    cells: Grid | Sequence[Cell],
    store: ResultStore | str | os.PathLike,
    *,
    run: Callable[[Any, Sequence[int]], list[dict]],
    kind: str,
    seed_column: str | None = "seed",
    **options,
) -> list[dict]:
    """The engine for experiments whose cell result is a table: ``run(config, seeds) -> rows`` (flat dicts).

    With ``seed_column`` (default ``"seed"``) every row names the cell it belongs to in that column, a value
    of ``seeds``; cells with equal configs form one group and their seeds run together, in one call, so a
    vectorized ``run`` batches them. With ``seed_column=None`` a cell is a unit that cannot be split by seed
    (its result couples several nets: transfer between seeds, pairwise comparisons): every cell runs alone
    and all rows of its call are its own. Every cell's rows are stored as its ``rows`` metric, so a killed run
    resumes per cell and ``force``/``reuse``/backends work as in :func:`run_sweep` (``options``). ``run`` must
    be a module-level function for the processes and ray backends. Returns the rows of all cells, in the
    order of ``cells``; rows of stale records kept with ``reuse="accept"`` get a ``stale`` column (why:
    ``code``, ``data``)."""
    max_batch = options.pop("max_batch", 64)
    return [
        {**row, "stale": rec["stale"]} if rec.get("stale") else row  # kept with reuse="accept": marked
        for rec in run_sweep(
            cells,
            store,
            run_batch=functools.partial(_rows_batch, run, seed_column),
            batch_key=lambda cfg: config_key(cfg, 0),
            max_batch=max_batch if seed_column else 1,  # a coupled unit runs alone
            describe=lambda cfg: type(cfg).__name__,
            kind=kind,
            **options,
        )
        for row in rec["metrics"]["rows"]
    ]


def _rows_batch(run, seed_column: str | None, chunk: Sequence[Cell]) -> list[dict]:
    cfg, seeds = chunk[0][0], [int(s) for _, s in chunk]
    if seed_column is None:
        return [{"rows": list(run(cfg, seeds))}]  # one cell per chunk
    by_seed: dict[int, list[dict]] = {s: [] for s in seeds}
    for row in run(cfg, seeds):
        seed = row.get(seed_column)
        if seed not in by_seed:
            name = getattr(run, "__name__", "run")
            raise ValueError(f"{name}: a row's {seed_column} {seed!r} is not one of the cells' seeds {seeds}")
        by_seed[seed].append(row)
    return [{"rows": by_seed[s]} for s in seeds]


def _timed(run_batch, chunk):
    t0 = time.perf_counter()
    return run_batch(chunk), time.perf_counter() - t0


WATCHDOG_PERIOD_S = 0.5


def _worker_init(parent_pid: int) -> None:
    """In each pool worker: ignore Ctrl-C (the parent handles it and stops the workers) and exit as soon as
    the parent is gone (kill -9 leaves no orphans: the worker's parent pid changes when it is reparented)."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(WATCHDOG_PERIOD_S)
        os._exit(1)

    threading.Thread(target=watch, name="ntk-adv-parent-watchdog", daemon=True).start()


def _run_processes(chunks, run_batch, commit, workers):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # fork is unsafe with JAX's threads
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
    )
    try:
        futures = {pool.submit(_timed, run_batch, chunk): chunk for chunk in chunks}
        for fut in as_completed(futures):
            try:
                metrics, elapsed = fut.result()
            except BrokenProcessPool:
                raise BackendFailure(
                    "a worker process of --backend processes died (killed, or out of memory); finished cells "
                    "are kept in the store, re-run the same command to resume"
                ) from None
            commit(futures[fut], metrics, elapsed)
    except BaseException:
        # Interrupted or failed: stop the workers without waiting for the groups in flight (finished ones are
        # committed already). The futures are not cancelled by hand: when its workers die the pool marks every
        # pending future broken itself, and a future cancelled first races that (CPython 3.11's pool manager
        # thread then dies with InvalidStateError and prints a traceback after the one-line message).
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)


def ray_resources() -> dict:
    """What each Ray task requests: one CPU, and one GPU when jax in this process sees a GPU (so a cluster
    schedules at most one chunk per GPU and never two jax processes on one device)."""
    return {"num_cpus": 1, "num_gpus": 1 if jax.default_backend() == "gpu" else 0}


def _run_ray(chunks, run_batch, commit, workers, address):
    try:
        import ray
    except ImportError as err:  # pragma: no cover - ray is a declared optional dependency
        raise ValueError("backend 'ray' needs the ray package: uv sync --extra ray") from err
    started = not ray.is_initialized()
    if started:
        if address:
            probe_address(address)  # Ray itself retries an unreachable address for minutes
            # An existing cluster owns its resources: num_cpus / num_gpus must not be given. Its workers
            # receive ntk_adv (and the package run_batch lives in, e.g. the experiments) through the job's
            # runtime_env; data is read from DataSpec.root, which must be a path every node sees (user arrays
            # travel with the cells).
            func = getattr(run_batch, "func", run_batch)
            tops = {"ntk_adv", (getattr(func, "__module__", None) or "ntk_adv").split(".")[0]}
            dirs = sorted(
                {
                    str(Path(sys.modules[t].__file__).resolve().parent)
                    for t in tops
                    if t in sys.modules and getattr(sys.modules[t], "__file__", None)
                }
            )
            ray.init(
                address=address,
                ignore_reinit_error=True,
                log_to_driver=False,
                runtime_env={"py_modules": dirs, "excludes": ["__pycache__"]},
            )
        else:
            ray.init(
                address="local",
                num_cpus=workers,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
            )
    try:
        remote = ray.remote(**ray_resources())(_timed)
        futures = {remote.remote(run_batch, chunk): chunk for chunk in chunks}
        waiting = list(futures)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                metrics, elapsed = ray.get(done[0])
                commit(futures[done[0]], metrics, elapsed)
        except BaseException:
            for ref in waiting:  # interrupted or failed: cancel the tasks still queued or running
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
