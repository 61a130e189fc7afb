"""The experiment's units of work, run by :func:`ntk_adv.engine.run_rows` (stored per cell, resumable, on any
backend). A cell is (:class:`ntk_adv.engine.Unit`, seed), built by :func:`unit`; :func:`run_unit` is the one
module-level function that runs it.

Per-seed cells (``seed_column="seed"``; a unit's rows name their seed):

* ``nets`` (one per width of the plan): the width's nets - every (decay, seed) on the full training set and,
  at ``transfer_width``, the two disjoint halves (half A carries seed 0, half B seed 1) - trained, attacked
  (minimal L-BFGS, parts a, b, c) and probed (parts d, e);
* ``advtrain`` (part f) and ``mnist`` (Table 1, only with ``--data-root``).

Coupled units (``seed_column=None``; one cell, run whole): ``limit`` (the infinite-width predictor at every
decay and on the halves, attacked), ``lipschitz`` (the width-independent lazy-limit pieces of part e) and,
after those, ``transfer`` (one unit per target group - a width or the limit - evaluated on every source's
perturbations, which the unit's config carries).

Numbers do not depend on which cells run together: a unit always computes its whole group in one batch
(all seeds, every decay; vmapped batches of other sizes round differently, and L-BFGS amplifies that), and
keeps the rows of the seeds asked for. A resumed cell thus recomputes its group; a transfer unit retrains
its targets the same way (training is cheap next to the attacks). PRNG keys are those of the unit-less
code: net (decay, train_set, seed) of width m from fold_in(fold_in(key(seed), m), 1000 [half] + seed)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import engine
from ntk_adv.data import DataSpec, load_spec

from . import advtrain, common, distortion, probes, table1, transfer
from .config import Config

PER_SEED = ("nets", "advtrain", "mnist")  # kinds whose rows name their seed; the others run whole


JUDGEMENT = ("noise_tolerance", "transfer_floor", "purity_tolerance")  # read by the claims only


def unit(
    cfg: Config, kind: str, width: int | None = None, spec: DataSpec | None = None, **labels
) -> engine.Unit:
    """The unit ``kind`` (see the module docstring) of ``cfg``: an :class:`ntk_adv.engine.Unit` whose settings
    are ``cfg`` without what no row depends on (the data root - the store fingerprints the data's content -,
    the execution and the claims' tolerances and floor, :data:`JUDGEMENT`), the data it reads (``spec``,
    default the experiment's; mnist: the MNIST pair) and its labels: the ``width`` of a nets / transfer unit
    (None: the limit) and, for a transfer unit, its ``sources`` (name, eta (M, d), attacked mask (M,); arrays
    encoded)."""
    return engine.unit(
        kind, cfg, ignores=JUDGEMENT, data=cfg.data if spec is None else spec, width=width, **labels
    )


def config_of(u: engine.Unit) -> Config:
    """The experiment config a unit runs: its settings on its data (mnist: on the experiment's data; the MNIST
    spec is the unit's ``data``)."""
    return u.settings if u.part == "mnist" else u.config()


def attacked_widths(cfg: Config) -> set[int]:
    parts = set(cfg.parts)
    out: set[int] = set()
    if parts & {"a", "b", "c"}:
        out |= set(cfg.widths)
    if "a" in parts:
        out.add(cfg.decay_width)
    if "c" in parts:
        out.add(cfg.transfer_width)
    return out


def plan(cfg: Config) -> dict[int, list[tuple[float, str, int]]]:
    """Width -> its runs (decay, train_set, seed), sorted by (train_set, decay, seed)."""
    parts = set(cfg.parts)
    runs: dict[int, list[tuple[float, str, int]]] = {}
    if parts & {"a", "b", "c"}:
        for w in cfg.widths:
            runs.setdefault(w, []).extend((0.0, "full", s) for s in range(cfg.seeds))
    if "a" in parts:
        runs.setdefault(cfg.decay_width, []).extend(
            (lam, "full", s) for lam in cfg.decays for s in range(cfg.seeds)
        )
    if "c" in parts:
        runs.setdefault(cfg.transfer_width, []).extend([(0.0, "A", 0), (0.0, "B", 1)])
    if parts & {"d", "e"}:
        for w in cfg.probe_widths:
            runs.setdefault(w, []).extend((0.0, "full", s) for s in range(cfg.seeds))
    return {w: sorted(set(r), key=lambda t: (t[1], t[0], t[2])) for w, r in runs.items()}


def cells(cfg: Config) -> tuple[list[tuple[engine.Unit, int]], list[tuple[engine.Unit, int]]]:
    """The first-stage cells: per-seed (nets per width ascending, advtrain, mnist) and coupled (limit,
    lipschitz). The transfer cells need their results: :func:`transfer_cells`."""
    parts = set(cfg.parts)
    seeds = range(cfg.seeds)
    per_seed = [(unit(cfg, "nets", w), s) for w in sorted(plan(cfg)) for s in seeds]
    if "f" in parts:
        per_seed += [(unit(cfg, "advtrain"), s) for s in seeds]
    if cfg.data.root is not None:
        per_seed += [(unit(cfg, "mnist", spec=table1.mnist_spec(cfg)), s) for s in seeds]
    coupled = []
    if parts & {"a", "b", "c"}:
        coupled.append((unit(cfg, "limit"), 0))
    if "e" in parts:
        coupled.append((unit(cfg, "lipschitz"), 0))
    return per_seed, coupled


def transfer_cells(cfg: Config, sources) -> list[tuple[engine.Unit, int]]:
    """One coupled cell per transfer target group (attacked widths ascending, then the limit), each carrying
    every source (:func:`transfer.sources`)."""
    widths = sorted(attacked_widths(cfg)) + [None]
    return [(unit(cfg, "transfer", w, sources=tuple(sources)), 0) for w in widths]


# ------------------------------------------------------------------------------------------------ running
@dataclass(frozen=True)
class Inputs:
    """The arrays every unit reads: training x (N, d), y (N,); test z (P, d), yz (P,); the attacked test
    points z_att (M, d), y_att (M,); the pixel box; the root key; the index sets of the two halves."""

    x: jax.Array
    y: jax.Array
    z: jax.Array
    yz: jax.Array
    z_att: jax.Array
    y_att: jax.Array
    box: tuple[float, float] | None
    root: jax.Array
    halves: dict


def inputs(cfg: Config) -> Inputs:
    ds = load_spec(cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    z, yz = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    n_att = min(cfg.n_attack, z.shape[0])
    root = jax.random.PRNGKey(cfg.seed)
    n = x.shape[0]
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(root, 7), n))
    halves = {"A": np.sort(perm[: n // 2]), "B": np.sort(perm[n // 2 :])}
    return Inputs(x, y, z, yz, z[:n_att], yz[:n_att], common.pixel_box(ds), root, halves)


def net_group(cfg: Config, width: int, inp: Inputs) -> dict:
    """The trained nets of one width: ``params`` (pairs (params, params0)) stacked over ``runs`` - the
    full-set runs (one vmapped batch, sorted by decay, seed), then the halves (each trained alone on its
    half)."""
    runs = plan(cfg)[width]
    keys = [
        jax.random.fold_in(jax.random.fold_in(inp.root, width), 1000 * (r[1] != "full") + r[2]) for r in runs
    ]
    full = [i for i, r in enumerate(runs) if r[1] == "full"]
    stacks = []
    if full:
        decays = jnp.asarray([runs[i][0] for i in full], inp.x.dtype)
        stacks.append(common.train_cell(cfg, width, inp.x, inp.y, decays, jnp.stack([keys[i] for i in full])))
    for i, r in enumerate(runs):  # disjoint halves: train on the half itself
        if r[1] != "full":
            idx = inp.halves[r[1]]
            stacks.append(
                common.train_cell(
                    cfg, width, inp.x[idx], inp.y[idx], jnp.zeros(1, inp.x.dtype), keys[i][None]
                )
            )
    order = full + [i for i, r in enumerate(runs) if r[1] != "full"]
    pairs = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *stacks)
    return {"width": width, "params": pairs, "runs": [runs[i] for i in order]}


def limit_group(cfg: Config, inp: Inputs) -> dict:
    """The infinite-width predictors: every decay on the full set (decay 0 only without part a), then the two
    halves (part c; 0/1 sample weights); ``params`` = (x_train stacked (R, N, d), coef (R, N))."""
    parts = set(cfg.parts)
    runs = [(lam, "full", 0) for lam in (cfg.decays if "a" in parts else (0.0,))]
    if "c" in parts:
        runs += [(0.0, "A", 0), (0.0, "B", 0)]
    n = inp.x.shape[0]
    weights = {
        "full": np.ones(n),
        "A": np.isin(np.arange(n), inp.halves["A"]) * 1.0,
        "B": np.isin(np.arange(n), inp.halves["B"]) * 1.0,
    }
    coef = common.limit_cell(
        cfg,
        inp.x,
        inp.y,
        jnp.asarray([r[0] for r in runs], inp.x.dtype),
        jnp.asarray(np.stack([weights[r[1]] for r in runs]), inp.x.dtype),
    )
    return {
        "width": None,
        "params": (jnp.broadcast_to(inp.x, (len(runs),) + inp.x.shape), coef),
        "runs": runs,
    }


def _attacked(cfg: Config, group: dict, inp: Inputs) -> list[dict]:
    """Attack a group; rows of parts a, b (and its ``run`` rows), with the clean test errors of part a for
    the decay-width nets and the limit."""
    parts = set(cfg.parts)
    group["eta"], group["success"] = common.attack_cell(
        cfg, group["width"], inp.box, group["params"], inp.z_att, inp.y_att
    )
    rows = distortion.attack_rows(cfg, group, inp.z_att, inp.y_att, parts, inp.root)
    if "a" in parts and group["width"] in (cfg.decay_width, None):
        rows += distortion.clean_error_by_decay(cfg, group, inp.z, inp.yz)
    return rows


def _nets(cfg: Config, width: int) -> list[dict]:
    inp = inputs(cfg)
    group = net_group(cfg, width, inp)
    rows = _attacked(cfg, group, inp) if width in attacked_widths(cfg) else []
    if set(cfg.parts) & {"d", "e"} and width in cfg.probe_widths:
        runs = group["runs"]
        idx = [i for i, r in enumerate(runs) if r[0] == 0.0 and r[1] == "full"]
        keys = jax.random.split(jax.random.fold_in(inp.root, 99 + width), len(idx))
        res = probes.probe_cell(cfg, width, common.take(group["params"], idx), inp.z, inp.yz, keys)
        rows += probes.result_rows(
            width, [runs[i][2] for i in idx], {k: np.asarray(v) for k, v in res.items()}
        )
    return rows


def _transfer(cfg: Config, width: int | None, sources) -> list[dict]:
    inp = inputs(cfg)
    group = limit_group(cfg, inp) if width is None else net_group(cfg, width, inp)
    return transfer.target_rows(cfg, group, sources, inp.z_att, np.asarray(inp.y_att), inp.box)


def run_unit(u: engine.Unit, seeds) -> list[dict]:
    """The rows of one unit (every value a JSON scalar; arrays encoded by :func:`common.encode`); for a
    per-seed kind only the rows of ``seeds``."""
    cfg, kind, width = config_of(u), u.part, u.get("width")
    if kind == "nets":
        rows = _nets(cfg, width)
    elif kind == "limit":
        inp = inputs(cfg)
        rows = _attacked(cfg, limit_group(cfg, inp), inp)
    elif kind == "transfer":
        rows = _transfer(cfg, width, u["sources"])
    elif kind == "lipschitz":
        inp = inputs(cfg)
        delta_w2, grad_norms = probes.limit_lipschitz(cfg, inp.x, inp.y, inp.z)
        rows = [{"part": "lipschitz", "delta_w2": float(delta_w2), "grad_norms": common.encode(grad_norms)}]
    elif kind == "advtrain":
        inp = inputs(cfg)
        rows = advtrain.run(cfg, inp.x, inp.y, inp.z, inp.yz, inp.root)
    elif kind == "mnist":
        rows, meta = table1.run(cfg, u.data)
        rows.append({"part": "mnist_meta", "seed": 0, "meta": json.dumps(meta, sort_keys=True)})
    else:
        raise ValueError(f"unknown unit kind {kind!r}")
    if kind in PER_SEED:
        keep = {int(s) for s in seeds}
        rows = [r for r in rows if r["seed"] in keep]
    return rows
