"""Perturbation learning as a client of the sweep engine (:mod:`ntk_adv.engine`): the grouping key and the
batch function of a group of protocol cells.

* Cells are grouped by :func:`protocol_batch_key` (the config with the vmappable fields - eps, lr_f, lr_g -
  blanked; the seed is not part of the config); each group runs as one task, compiled once; inside it every
  stage is batched with ``vmap`` or run item by item with ``lax.map``, whichever is faster for its width on
  CPU (``batching``).
* Inside a group, work is shared (:func:`run_protocol_batch`): f is trained once per (seed, lr_f),
  perturbations are computed once per (seed, lr_f, eps), and only g is trained per cell; seed-independent
  infinite-width work (f_inf on z, predicted directions at the training inputs) runs once.
* Wide two-layer nets with the identity loss and a frozen readout train in activation space
  (:mod:`ntk_adv.pattern_gd`, both presets): the same iterates as backpropagation, at a fraction of the cost
  (``solver``); every other architecture trains by backpropagation (:func:`ntk_adv.training.train`).
* Seeds: a cell of seed ``s`` runs with :func:`cell_key` ``(s)`` = :func:`protocol.seed_key` ``(s)`` =
  ``PRNGKey(s)``, the same key as :func:`protocol.run_seeds` (docs/architecture.md, "Seeds").
* :func:`run_perturbation_sweep` is :func:`ntk_adv.engine.run_sweep` with these two functions and the cell
  order filled in (``run_sweep`` is kept here as its alias).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ntk_adv import engine, pattern_gd, validate
from ntk_adv.arch.base import is_infinite
from ntk_adv.data import data_arrays
from ntk_adv.perturbation import protocol
from ntk_adv.perturbation.protocol import ProtocolConfig

__all__ = [
    "BATCHING",
    "FiniteGroup",
    "InfiniteGroup",
    "KIND",
    "VMAP_DISTINCT_WIDTH",
    "VMAP_SHARED_WIDTH",
    "VMAPPED_FIELDS",
    "cell_key",
    "cell_order",
    "cell_predictors",
    "data_arrays",
    "describe",
    "protocol_batch_key",
    "run_perturbation_sweep",
    "run_protocol_batch",
    "run_sweep",
]

KIND = "perturbation_learning"  # the ``kind`` of the records
VMAPPED_FIELDS = ("eps", "lr_f", "lr_g")
Batching = Literal["auto", "vmap", "map"]
BATCHING: tuple[str, ...] = get_args(Batching)
# Batching rule for finite-width groups (the width is the architecture's, ``cfg.arch.width``). XLA:CPU runs a
# vmapped matmul whose operands are all batched (g's distinct adversarial sets) as a batched dot that is
# slower than the same dots one after another, while a matmul with a shared operand (f's clean inputs)
# becomes one wide matmul - faster for narrow nets, slower for wide ones (layout transposes). Measured on 2
# cores, N = 2000, d = 784 (benchmarks, not tests).
VMAP_SHARED_WIDTH = 256  # train the f's of a group with vmap when width <= this, else one after another
VMAP_DISTINCT_WIDTH = 32  # train / evaluate the g's with vmap when width <= this, else one after another


def protocol_batch_key(cfg: ProtocolConfig) -> ProtocolConfig:
    """Cells with equal keys share shapes and static parameters and run as one vmapped group."""
    return replace(cfg, eps=0.0, lr_f=0.0, lr_g=0.0)


def cell_order(cell: tuple[ProtocolConfig, int]) -> tuple:
    """Order of the cells inside a group: cells sharing (seed, lr_f, eps) adjacent (they share f and eta)."""
    cfg, seed = cell
    return seed, cfg.lr_f, cfg.eps, cfg.lr_g


def describe(cfg: ProtocolConfig) -> str:
    """A group's label in the sweep log: its architecture, width (``inf`` for the limit) and depth."""
    arch = cfg.arch
    return f"arch={arch.name} width={arch.width:g} depth={arch.depth}"


def cell_key(seed) -> jax.Array:
    """The root key of a cell of seed ``seed``: :func:`protocol.seed_key` (``PRNGKey(seed)``, the one seed
    rule; f's and g's initializations, targets and noise are its named streams, :func:`protocol.stream`);
    vmappable over seeds."""
    return protocol.seed_key(seed)


def cell_predictors(cell: tuple[ProtocolConfig, int], solver: str = "auto") -> protocol.Trained:
    """The trained f and g of one cell (config, seed) as :func:`run_protocol_batch` trains them (same data,
    same key, same stages; the batch runs them vmapped, so numbers agree up to float32 reduction order): for
    figures that need the functions themselves, e.g. decision maps. ``arch.width == INF_WIDTH``: the centred
    limits."""
    cfg, seed = cell
    x, y, _, _ = data_arrays(cfg.data)
    return protocol.train_pair(cfg, x, y, cell_key(int(seed)), solver=solver)


def run_perturbation_sweep(cells, store, **kw) -> list[dict]:
    """:func:`ntk_adv.engine.run_sweep` of protocol cells: ``run_batch`` (default :func:`run_protocol_batch`),
    ``batch_key`` :func:`protocol_batch_key`, ``order`` :func:`cell_order`, ``kind`` :data:`KIND`; every
    other keyword is the engine's."""
    kw.setdefault("run_batch", run_protocol_batch)
    kw.setdefault("kind", KIND)
    return engine.run_sweep(
        cells, store, batch_key=protocol_batch_key, order=cell_order, describe=describe, **kw
    )


run_sweep = run_perturbation_sweep  # the name this module has always exported


# ------------------------------------------------------------------------------------------- group arguments
@struct.dataclass
class InfiniteGroup:
    """One infinite-width group: ``cfg`` (static: its batch key), the data ``x`` (N, d), ``y`` (N,), ``z``
    (M, d), ``y_test`` (M,) and per cell (C cells) the seed ``keys`` (C, 2) and ``eps``, ``lr_f``, ``lr_g``
    (C,)."""

    cfg: ProtocolConfig = struct.field(pytree_node=False)
    x: jax.Array
    y: jax.Array
    z: jax.Array
    y_test: jax.Array
    keys: jax.Array
    eps: jax.Array
    lr_f: jax.Array
    lr_g: jax.Array


@struct.dataclass
class FiniteGroup:
    """One finite-width group (C cells), with the shared work indexed:

    * static: ``cfg`` (the batch key), ``vmap_f`` / ``vmap_g`` (vmap or ``lax.map`` for the f / g stages),
      ``solver`` (:data:`ntk_adv.pattern_gd.SOLVERS`);
    * data: ``x`` (N, d), ``y`` (N,), ``z`` (M, d), ``y_test`` (M,);
    * F unique (seed, lr_f): ``f_keys`` (F, 2), ``f_lr`` (F,);
    * A unique (seed, lr_f, eps): ``a_keys`` (A, 2), ``a_to_f`` (A,) index of its f, ``a_eps`` (A,);
    * L unique lr_f of the limit f: ``lim_lrs`` (L,);
    * per cell: ``cell_keys`` (C, 2), ``f_idx``, ``a_idx``, ``lim_idx`` (C,) indices into the above,
      ``lr_f``, ``lr_g`` (C,)."""

    cfg: ProtocolConfig = struct.field(pytree_node=False)
    vmap_f: bool = struct.field(pytree_node=False)
    vmap_g: bool = struct.field(pytree_node=False)
    solver: str = struct.field(pytree_node=False)
    x: jax.Array
    y: jax.Array
    z: jax.Array
    y_test: jax.Array
    f_keys: jax.Array
    f_lr: jax.Array
    a_keys: jax.Array
    a_to_f: jax.Array
    a_eps: jax.Array
    lim_lrs: jax.Array
    cell_keys: jax.Array
    f_idx: jax.Array
    a_idx: jax.Array
    lim_idx: jax.Array
    lr_f: jax.Array
    lr_g: jax.Array


def _unique_index(items: Sequence) -> tuple[list, np.ndarray]:
    uniq: dict = {}
    idx = [uniq.setdefault(it, len(uniq)) for it in items]
    return list(uniq), np.asarray(idx, np.int32)


def run_protocol_batch(
    cells: Sequence[tuple[ProtocolConfig, int]], batching: Batching = "auto", solver: str = "auto"
) -> list[dict[str, float]]:
    """Run cells that share a :func:`protocol_batch_key`; returns one metrics dict per cell, in order.

    Finite width: f is trained once per unique (seed, lr_f), perturbations once per unique (seed, lr_f, eps),
    g once per cell; the centred f_inf on z and (scenarios a, b) the predicted directions once per group.
    ``batching``: ``vmap`` batches each stage with vmap, ``map`` runs its items one after another inside the
    same jit (``lax.map``), ``auto`` picks per stage by width (:data:`VMAP_SHARED_WIDTH`,
    :data:`VMAP_DISTINCT_WIDTH`). All three give the same numbers up to float32 reduction order.
    ``solver`` trains f and g (:func:`protocol.train_net`: ``auto`` uses the activation-space solver of
    :mod:`ntk_adv.pattern_gd` where it applies; its stages then run with ``lax.map``, as its data-dependent
    inner loop does not batch well). Infinite width (``arch.width == INF_WIDTH``): one vmap over cells."""
    validate.one_of("batching", batching, BATCHING)
    validate.one_of("solver", solver, pattern_gd.SOLVERS)
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
    cell_keys = jax.vmap(cell_key)(jnp.asarray(seeds))

    static = protocol_batch_key(base)  # not the first cell: its eps / lr values would key (recompile) the jit
    if is_infinite(base.arch.width):
        out = _infinite_batch(InfiniteGroup(static, x, y, z, y_test, cell_keys, eps, lr_f, lr_g))
    else:
        f_items, f_idx = _unique_index([(int(s), float(c.lr_f)) for c, s in cells])
        a_items, a_idx = _unique_index([(int(s), float(c.lr_f), float(c.eps)) for c, s in cells])
        a_to_f = np.asarray([f_items.index((s, lf)) for s, lf, _ in a_items], np.int32)
        f_keys = jax.vmap(cell_key)(jnp.asarray([s for s, _ in f_items]))
        a_keys = jax.vmap(cell_key)(jnp.asarray([s for s, _, _ in a_items]))
        lim_lrs, lim_idx = _unique_index([float(c.lr_f) for c, _ in cells])  # f_inf depends on lr_f only
        if batching == "auto":
            solver_f = protocol.choose_solver(base, base.train_config("f"), x.shape[0], solver)
            solver_g = protocol.choose_solver(base, base.train_config("g"), x.shape[0], solver)
            vmap_f = base.arch.width <= VMAP_SHARED_WIDTH and solver_f == "autodiff"
            vmap_g = base.arch.width <= VMAP_DISTINCT_WIDTH and solver_g == "autodiff"
        else:
            vmap_f = vmap_g = batching == "vmap"
        group = FiniteGroup(
            cfg=static,
            vmap_f=vmap_f,
            vmap_g=vmap_g,
            solver=solver,
            x=x,
            y=y,
            z=z,
            y_test=y_test,
            f_keys=f_keys,
            f_lr=jnp.asarray([lf for _, lf in f_items], dtype),
            a_keys=a_keys,
            a_to_f=jnp.asarray(a_to_f),
            a_eps=jnp.asarray([e for _, _, e in a_items], dtype),
            lim_lrs=jnp.asarray(lim_lrs, dtype),
            cell_keys=cell_keys,
            f_idx=jnp.asarray(f_idx),
            a_idx=jnp.asarray(a_idx),
            lim_idx=jnp.asarray(lim_idx),
            lr_f=lr_f,
            lr_g=lr_g,
        )
        out = _finite_batch(group)
    out = {k: np.asarray(v) for k, v in out.items()}
    return [{k: float(v[i]) for k, v in out.items()} for i in range(len(cells))]


@jax.jit
def _infinite_batch(g: InfiniteGroup) -> dict[str, jax.Array]:
    """Metrics (C,) of every cell of an infinite-width group: one vmap of :func:`protocol.infinite_cell`."""
    return jax.vmap(
        lambda k, e, lf, lg: protocol.infinite_cell(g.cfg, g.x, g.y, g.z, g.y_test, k, e, lf, lg)
    )(g.keys, g.eps, g.lr_f, g.lr_g)


def _over(fn: Callable, args: tuple, batched: bool):
    """``vmap(fn)(*args)`` if ``batched``, else the same results with ``lax.map`` (sequential, one
    compile)."""
    if batched:
        return jax.vmap(fn)(*args)
    return jax.lax.map(lambda a: fn(*a), args)


@jax.jit
def _finite_batch(g: FiniteGroup) -> dict[str, jax.Array]:
    """Metrics (C,) of every cell of a finite-width group, the shared work done once (see
    :class:`FiniteGroup`)."""
    cfg, x, y, z, y_test = g.cfg, g.x, g.y, g.z, g.y_test
    apply_fn = protocol.model_apply(cfg)
    take = lambda tree, i: jax.tree_util.tree_map(lambda leaf: leaf[i], tree)  # noqa: E731
    # seed-independent work, once per group: the centred f_inf on z (per lr_f) and, when the perturbations are
    # computed at the training inputs (scenarios a, b), the predicted directions D_n
    f_lim_z = jax.vmap(lambda lf: protocol.infinite_f(cfg, x, y, lf)(z))(g.lim_lrs)
    shared = cfg.scenario != "noise" and protocol.decomposes(cfg.arch)  # two-layer: D_n, G_n once per group
    d_pred = protocol.predicted_directions(cfg, x, x, y) if shared else None
    grad_dirs = protocol.kernel_gradients(cfg, x, x, y) if shared else None

    f_params = _over(lambda k, lf: protocol.train_f(cfg, x, y, k, lf, g.solver), (g.f_keys, g.f_lr), g.vmap_f)

    def perturb(k, fi, e):
        pf = take(f_params, fi)
        return protocol.adversarial_set(cfg, lambda q: apply_fn(pf, q), x, y, k, e)

    advs = _over(perturb, (g.a_keys, g.a_to_f, g.a_eps), g.vmap_f)

    def finish(k, fi, ai, li, lf, lg):
        pf, adv = take(f_params, fi), take(advs, ai)
        pg = protocol.train_g(cfg, adv, k, lg, g.solver)
        out = protocol.evaluate(
            cfg, lambda q: apply_fn(pf, q), lambda q: apply_fn(pg, q), adv, x, y, z, y_test, d_pred=d_pred
        )
        out.update(
            protocol.finite_to_infinite(
                cfg,
                apply_fn,
                pf,
                pg,
                adv,
                x,
                y,
                z,
                k,
                lf,
                lg,
                f_lim_z=f_lim_z[li],
                d_pred=d_pred,
                grad_dirs=grad_dirs,
            )
        )
        return out

    return _over(finish, (g.cell_keys, g.f_idx, g.a_idx, g.lim_idx, g.lr_f, g.lr_g), g.vmap_g)
