"""The sweep engine: a grid of cells -> batched, cached, resumable execution on a chosen backend.

* A :class:`Grid` is a frozen base config plus axes (field -> values, dotted names reach nested fields such as
  ``data.n_train``) and a number of seeds. Every cell (config, seed) has a stable id (:func:`store.cell_id`).
* Cells are grouped by a *batch key* (here: the config with the vmappable fields - eps, lr_f, lr_g - blanked
  and the seed dropped); each group runs as one task, compiled once; inside it every stage is batched with
  ``vmap`` or run item by item with ``lax.map``, whichever is faster for its width on CPU (``batching``).
* Inside a perturbation-learning group, work is shared (:func:`run_protocol_batch`): f is trained once per
  (seed, lr_f), perturbations are computed once per (seed, lr_f, eps), and only g is trained per cell;
  seed-independent infinite-width work (f_inf on z, predicted directions at the training inputs) runs once.
* Wide nets with the identity loss and a frozen readout train in activation space (:mod:`ntk_adv.pattern_gd`,
  both presets): the same iterates as backpropagation, at a fraction of the cost (``solver``).
* Finished cells are written to a :class:`store.ResultStore` as each group completes; a restarted sweep skips
  them (``force=True`` recomputes), so a killed sweep loses at most the group in flight and never duplicates.
* Backends: ``inprocess`` (default), ``processes`` (local worker processes, spawn start method), and ``ray``
  (a local Ray instance or a cluster via ``ray_address``; workers import ntk_adv, nothing else changes).
* Widths are grouped to limit recompilation. JAX's persistent compilation cache can be enabled with
  :func:`enable_compilation_cache` (or ``NTK_ADV_JAX_CACHE=DIR`` for the CLI); it is off by default because
  with jaxlib 0.5.3 an L-BFGS attack executable loaded from the cache returned all-zero perturbations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ntk_adv import pattern_gd, protocol
from ntk_adv.data import DataSpec, load_spec_cached
from ntk_adv.results import code_fingerprint
from ntk_adv.store import ResultStore, cell_id, config_key, data_fingerprint

BACKENDS = ("inprocess", "processes", "ray")
VMAPPED_FIELDS = ("eps", "lr_f", "lr_g")
BATCHING = ("auto", "vmap", "map")
# Batching rule for finite-width groups. XLA:CPU runs a vmapped matmul whose operands are all batched (g's
# distinct adversarial sets) as a batched dot that is slower than the same dots one after another, while a
# matmul with a shared operand (f's clean inputs) becomes one wide matmul - faster for narrow nets, slower for
# wide ones (layout transposes). Measured on 2 cores, N = 2000, d = 784 (benchmarks, not tests).
VMAP_SHARED_WIDTH = 256  # train the f's of a group with vmap when width <= this, else one after another
VMAP_DISTINCT_WIDTH = 32  # train / evaluate the g's with vmap when width <= this, else one after another


# ------------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class Grid:
    """``base`` config, ``axes`` as ((field, (values...)), ...), ``seeds`` per cell (seeds 0..seeds-1 offset
    by ``seed0``). Axis fields may be dotted (``data.n_train``) or a data field's bare name (``n_train``)."""

    base: Any
    axes: tuple[tuple[str, tuple], ...] = ()
    seeds: int = 1
    seed0: int = 0

    def __post_init__(self):
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

    def cells(self) -> list[tuple[Any, int]]:
        return [(cfg, self.seed0 + s) for cfg in self.configs() for s in range(self.seeds)]


def set_field(cfg: Any, name: str, value: Any) -> Any:
    """``replace`` for possibly nested fields (``data.n_train``; a bare data field name works too)."""
    fields = {f.name for f in dataclasses.fields(cfg)}
    head, _, rest = name.partition(".")
    if rest:
        if head not in fields:
            raise ValueError(f"unknown sweep axis {name!r}: {type(cfg).__name__} has no field {head!r}")
        return replace(cfg, **{head: set_field(getattr(cfg, head), rest, value)})
    if name in fields:
        return replace(cfg, **{name: value})
    if "data" in fields and name in {f.name for f in dataclasses.fields(DataSpec)}:
        return replace(cfg, data=replace(cfg.data, **{name: value}))
    raise ValueError(f"unknown sweep axis {name!r}; fields of {type(cfg).__name__}: {', '.join(sorted(fields))}")


# ------------------------------------------------------------------------------------------- protocol batches
def protocol_batch_key(cfg: protocol.ProtocolConfig) -> protocol.ProtocolConfig:
    """Cells with equal keys share shapes and static parameters and run as one vmapped group."""
    return replace(cfg, eps=0.0, lr_f=0.0, lr_g=0.0)


def data_arrays(spec: DataSpec):
    """(x, y, z, y_test) as JAX arrays, cached in-process (:func:`ntk_adv.data.load_spec_cached`: the cache
    notices files that changed on disk)."""
    return _jax_arrays(load_spec_cached(spec))


@lru_cache(maxsize=8)
def _jax_arrays(ds):
    return tuple(jnp.asarray(a) for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))


def _unique_index(items: Sequence) -> tuple[list, np.ndarray]:
    uniq: dict = {}
    idx = [uniq.setdefault(it, len(uniq)) for it in items]
    return list(uniq), np.asarray(idx, np.int32)


def run_protocol_batch(cells: Sequence[tuple[protocol.ProtocolConfig, int]], batching: str = "auto",
                       solver: str = "auto") -> list[dict[str, float]]:
    """Run cells that share a :func:`protocol_batch_key`; returns one metrics dict per cell, in order.

    Finite width: f is trained once per unique (seed, lr_f), perturbations once per unique (seed, lr_f, eps),
    g once per cell; the centred f_inf on z and (scenarios a, b) the predicted directions once per group.
    ``batching``: ``vmap`` batches each stage with vmap, ``map`` runs its items one after another inside the
    same jit (``lax.map``), ``auto`` picks per stage by width (:data:`VMAP_SHARED_WIDTH`,
    :data:`VMAP_DISTINCT_WIDTH`). All three give the same numbers up to float32 reduction order.
    ``solver`` trains f and g (:func:`protocol.train_net`: ``auto`` uses the activation-space solver of
    :mod:`ntk_adv.pattern_gd` where it applies; its stages then run with ``lax.map``, as its data-dependent
    inner loop does not batch well). Infinite width (``width=None``): one vmap over cells."""
    if batching not in BATCHING:
        raise ValueError(f"unknown batching {batching!r}; expected one of {', '.join(BATCHING)}")
    if solver not in pattern_gd.SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {', '.join(pattern_gd.SOLVERS)}")
    base = cells[0][0]
    keys = {protocol_batch_key(c) for c, _ in cells}
    if len(keys) != 1:
        raise ValueError("run_protocol_batch needs cells that share one batch key")
    x, y, z, y_test = data_arrays(base.data)
    dtype = x.dtype
    seeds = np.asarray([s for _, s in cells])
    eps = jnp.asarray([c.eps for c, _ in cells], dtype)
    lr_f = jnp.asarray([c.lr_f for c, _ in cells], dtype)
    lr_g = jnp.asarray([c.lr_g for c, _ in cells], dtype)
    cell_keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))

    static = protocol_batch_key(base)  # not the first cell: its eps / lr values would key (recompile) the jit
    if base.width is None:
        out = _infinite_batch(static, x, y, z, y_test, cell_keys, eps, lr_f, lr_g)
    else:
        f_items, f_idx = _unique_index([(int(s), float(c.lr_f)) for c, s in cells])
        a_items, a_idx = _unique_index([(int(s), float(c.lr_f), float(c.eps)) for c, s in cells])
        a_to_f = np.asarray([f_items.index((s, lf)) for s, lf, _ in a_items], np.int32)
        f_keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray([s for s, _ in f_items]))
        a_keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray([s for s, _, _ in a_items]))
        lim_lrs, lim_idx = _unique_index([float(c.lr_f) for c, _ in cells])  # f_inf depends on lr_f only
        if batching == "auto":
            solver_f = pattern_gd.choose(base.net(), base.train_config("f"), x.shape[0], solver)
            solver_g = pattern_gd.choose(base.net(), base.train_config("g"), x.shape[0], solver)
            vmap_f = base.width <= VMAP_SHARED_WIDTH and solver_f == "autodiff"
            vmap_g = base.width <= VMAP_DISTINCT_WIDTH and solver_g == "autodiff"
        else:
            vmap_f = vmap_g = batching == "vmap"
        out = _finite_batch(static, vmap_f, vmap_g, solver, x, y, z, y_test, f_keys, jnp.asarray([lf for _, lf in f_items], dtype),
                            a_keys, jnp.asarray(a_to_f), jnp.asarray([e for _, _, e in a_items], dtype),
                            jnp.asarray(lim_lrs, dtype), cell_keys, jnp.asarray(f_idx), jnp.asarray(a_idx),
                            jnp.asarray(lim_idx), lr_f, lr_g)
    out = {k: np.asarray(v) for k, v in out.items()}
    return [{k: float(v[i]) for k, v in out.items()} for i in range(len(cells))]


@partial(jax.jit, static_argnums=(0,))
def _infinite_batch(cfg, x, y, z, y_test, keys, eps, lr_f, lr_g):
    return jax.vmap(lambda k, e, lf, lg: protocol.infinite_cell(cfg, x, y, z, y_test, k, e, lf, lg))(
        keys, eps, lr_f, lr_g)


def _over(fn: Callable, args: tuple, batched: bool):
    """``vmap(fn)(*args)`` if ``batched``, else the same results with ``lax.map`` (sequential, one compile)."""
    if batched:
        return jax.vmap(fn)(*args)
    return jax.lax.map(lambda a: fn(*a), args)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _finite_batch(cfg, vmap_f, vmap_g, solver, x, y, z, y_test, f_keys, f_lr, a_keys, a_to_f, a_eps, lim_lrs, cell_keys,
                  f_idx, a_idx, lim_idx, lr_f, lr_g):
    apply_fn = protocol.model_apply(cfg)
    take = lambda tree, i: jax.tree_util.tree_map(lambda leaf: leaf[i], tree)  # noqa: E731
    # seed-independent work, once per group: the centred f_inf on z (per lr_f) and, when the perturbations are
    # computed at the training inputs (scenarios a, b), the predicted directions D_n
    f_lim_z = jax.vmap(lambda lf: protocol.infinite_f(cfg, x, y, lf)(z))(lim_lrs)
    d_pred = protocol.predicted_directions(cfg, x, x, y) if cfg.scenario != "noise" else None
    grad_dirs = protocol.kernel_gradients(cfg, x, x, y) if cfg.scenario != "noise" else None

    f_params = _over(lambda k, lf: protocol.train_f(cfg, x, y, k, lf, solver), (f_keys, f_lr), vmap_f)

    def perturb(k, fi, e):
        pf = take(f_params, fi)
        return protocol.adversarial_set(cfg, lambda q: apply_fn(pf, q), x, y, k, e)

    advs = _over(perturb, (a_keys, a_to_f, a_eps), vmap_f)

    def finish(k, fi, ai, li, lf, lg):
        pf, adv = take(f_params, fi), take(advs, ai)
        pg = protocol.train_g(cfg, adv, k, lg, solver)
        out = protocol.evaluate(cfg, lambda q: apply_fn(pf, q), lambda q: apply_fn(pg, q), adv, x, y, z, y_test,
                                d_pred=d_pred)
        out.update(protocol._finite_to_infinite(cfg, apply_fn, pf, pg, adv, x, y, z, k, lf, lg,
                                                f_lim_z=f_lim_z[li], d_pred=d_pred, grad_dirs=grad_dirs))
        return out

    return _over(finish, (cell_keys, f_idx, a_idx, lim_idx, lr_f, lr_g), vmap_g)


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


def plan(cells: Sequence[tuple[Any, int]], batch_key: Callable = protocol_batch_key, max_batch: int = 64
         ) -> list[list[tuple[Any, int]]]:
    """Deterministic groups of cells: equal batch keys together (first-seen order), each sorted so that cells
    sharing (seed, lr_f, eps) are adjacent, then cut into chunks of at most ``max_batch`` cells."""
    groups: dict = {}
    for cell in cells:
        groups.setdefault(batch_key(cell[0]), []).append(cell)
    order = lambda c: (c[1], getattr(c[0], "lr_f", 0.0), getattr(c[0], "eps", 0.0), getattr(c[0], "lr_g", 0.0))  # noqa: E731
    chunks = []
    for group in groups.values():
        group = sorted(group, key=order)
        chunks += [group[i: i + max_batch] for i in range(0, len(group), max_batch)]
    return chunks


def _describe(cfg: Any) -> str:
    width = getattr(cfg, "width", "?")
    return f"width={'inf' if width is None else width}"


REUSE = ("verify", "accept")


class StaleRecord(UserWarning):
    """Stored records were computed by other code or on other data (recomputed, or kept with reuse='accept')."""


def run_sweep(
    cells: Grid | Sequence[tuple[Any, int]],
    store: ResultStore | str | os.PathLike,
    *,
    run_batch: Callable[[Sequence[tuple[Any, int]]], list[dict]] = run_protocol_batch,
    batch_key: Callable = protocol_batch_key,
    kind: str = "perturbation_learning",
    backend: str = "inprocess",
    workers: int = 2,
    ray_address: str | None = None,
    force: bool = False,
    reuse: str = "verify",
    max_batch: int = 64,
    progress: bool | None = True,
) -> list[dict]:
    """Run every cell not already in ``store`` (all of them with ``force``); returns the records of all cells
    in the order given. ``run_batch`` must be a module-level function (it is shipped to workers).

    A cell's id covers its config, seed and the content of its data (:func:`ntk_adv.store.cell_id`); a stored
    record is reused only if the same code computed it (:func:`ntk_adv.results.code_fingerprint`: package
    source and library versions). ``reuse="verify"`` (default) recomputes stale records;
    ``reuse="accept"`` keeps them - and records of the same settings on other data - and marks them: their
    ``stale`` field (and rows' ``stale`` column) says ``code`` or ``data``. Either way a warning counts them."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if reuse not in REUSE:
        raise ValueError(f"unknown reuse {reuse!r}; expected one of {', '.join(REUSE)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cells = cells.cells() if isinstance(cells, Grid) else list(cells)
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    code_fp = code_fingerprint()
    by_data: dict = {}  # one fingerprint per distinct data spec (the loader's cache holds only a few)
    data_fps = [by_data[key] if (key := getattr(c, "data", None)) in by_data else
                by_data.setdefault(key, data_fingerprint(c)) for c, _ in cells]
    ids = [cell_id(c, s, fp) for (c, s), fp in zip(cells, data_fps)]
    if len(set(ids)) != len(ids):
        raise ValueError("the sweep lists the same cell (config, seed) more than once")
    found = [None if force else store.get(cid) for cid in ids]
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
        warnings.warn(f"{kind}: keeping {len(kept)} stored records computed by other code or on other data "
                      f"(reuse='accept'); their rows are marked in the 'stale' column", StaleRecord, stacklevel=2)
    elif n_stale:
        warnings.warn(f"{kind}: {n_stale} stored records were computed by other code or library versions (this code: "
                      f"{code_fp}); recomputing them (reuse='accept' keeps them, marked)", StaleRecord, stacklevel=2)
    pending = [(cell, i) for i, (cell, st) in enumerate(zip(cells, status)) if st != "fresh" and i not in kept]
    cell_index = {id(cell): i for cell, i in pending}
    chunks = plan([cell for cell, _ in pending], batch_key, max_batch)
    verbose = progress is not False and sys.stderr.isatty()
    bar = tqdm(total=len(pending), desc=f"{kind}: cells", unit="cell", disable=None if progress else True)
    done: dict[int, dict] = {}

    def commit(chunk, metrics, elapsed):
        for cell, m in zip(chunk, metrics):
            i = cell_index[id(cell)]
            done[i] = store.put(ids[i], cell[0], cell[1], m, kind=kind, elapsed_s=elapsed / len(chunk),
                                data_fp=data_fps[i], code_fp=code_fp)
        bar.update(len(chunk))
        if verbose:
            tqdm.write(f"  done {len(chunk)} cells ({_describe(chunk[0][0])}) in {elapsed:.1f}s")

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
    return [done.get(i) or kept.get(i) or found[i] for i in range(len(cells))]


def _timed(run_batch, chunk):
    t0 = time.perf_counter()
    return run_batch(chunk), time.perf_counter() - t0


WATCHDOG_PERIOD_S = 0.5


def _worker_init(parent_pid: int) -> None:
    """In each pool worker: ignore Ctrl-C (the parent handles it and stops the workers) and exit as soon as the
    parent is gone (kill -9 leaves no orphans: the worker's parent pid changes when it is reparented)."""
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

    ctx = multiprocessing.get_context("spawn")  # fork is unsafe with JAX's threads
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(os.getpid(),))
    futures = {}
    try:
        futures = {pool.submit(_timed, run_batch, chunk): chunk for chunk in chunks}
        for fut in as_completed(futures):
            metrics, elapsed = fut.result()
            commit(futures[fut], metrics, elapsed)
    except BaseException:
        # interrupted or failed: do not wait for the groups in flight (finished ones are committed already)
        for fut in futures:
            fut.cancel()
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_ray(chunks, run_batch, commit, workers, address):
    try:
        import ray
    except ImportError as err:  # pragma: no cover - ray is a declared optional dependency
        raise ValueError("backend 'ray' needs the ray package: uv sync --extra ray") from err
    address = address or os.environ.get("RAY_ADDRESS") or None
    started = not ray.is_initialized()
    if started:
        if address:
            # An existing cluster owns its resources: num_cpus / num_gpus must not be given. Its workers receive
            # ntk_adv (and the package run_batch lives in, e.g. the experiments) through the job's runtime_env;
            # data is read from DataSpec.root, which must be a path every node sees (user arrays travel with
            # the cells).
            func = getattr(run_batch, "func", run_batch)
            tops = {"ntk_adv", (getattr(func, "__module__", None) or "ntk_adv").split(".")[0]}
            dirs = sorted({str(Path(sys.modules[t].__file__).resolve().parent) for t in tops
                           if t in sys.modules and getattr(sys.modules[t], "__file__", None)})
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     runtime_env={"py_modules": dirs, "excludes": ["__pycache__"]})
        else:
            # address="local": a fresh instance even when another cluster runs on this machine (ray.init() would
            # otherwise join it and refuse num_cpus)
            ray.init(address="local", num_cpus=workers, include_dashboard=False, ignore_reinit_error=True,
                     log_to_driver=False)
    try:
        remote = ray.remote(_timed)
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
