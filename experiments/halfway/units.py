"""The experiment's cells for :func:`ntk_adv.engine.run_rows` (stored per cell, resumable, on any backend):
two :class:`ntk_adv.engine.Unit` s, run whole (``seed_column=None``) by :func:`unit_rows`.

* ``reference``: the kernel predictor and 1-NN - flip points on the test pairs, outputs on the test points;
* ``nets``: every net of every width (each width's seeds trained together in one jitted vmap: per seed the
  flip points, test outputs, one-step adversarial test inputs and, for uncentred nets, the flip points of
  the net's own limit) and the transfer between every pair of models (every model's perturbations of the
  test points evaluated on every model: all nets and the kernel predictor). The unit owns its nets: each
  width is trained once, in the process that computes the transfer, whatever the backend (its rows count
  the trainings: ``part`` "trainings").

A unit's settings are the experiment's config without what only the verdicts read (:data:`JUDGEMENT`) and
the execution (:func:`ntk_adv.engine.reads_only`); the reference also ignores the nets' settings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import engine
from ntk_adv.metrics import flip_points, transfer_matrix, white_box_success

from .config import Config
from .nets import attack_fn, evaluate_width, kernel_limit, nearest_neighbour, setup, train_width

PARTS = ("reference", "nets")
JUDGEMENT = ("permutations", "halfway_tolerance")  # read by summarize only: not part of a cell
NETS_ONLY = ("widths", "seeds", "centered", "attack", "eps")  # settings the reference does not read


def units(cfg: Config) -> list[engine.Unit]:
    """The cells of ``cfg``: the reference and the nets (with the transfer)."""
    return [
        engine.unit("reference", cfg, ignores=JUDGEMENT + NETS_ONLY, data=cfg.data),
        engine.unit("nets", cfg, ignores=JUDGEMENT, data=cfg.data),
    ]


def unit_rows(unit: engine.Unit, seeds) -> list[dict]:
    """The rows of one cell (``seeds``: the engine's cell label, unused); every row names its ``part``.

    reference: one row per test pair (``pair``; flip point ``t_limit``/``t_1nn`` and ``found_*``) and per
    test point (``point``; outputs ``out_limit``/``out_1nn``). nets: per width (``width``) and seed the same
    for its net (``t``, ``found``, ``t_own_limit`` for uncentred nets, else None; ``out``); one row per
    ordered model pair (part ``transfer``: ``source``, ``target``, index into the models - nets by width
    then seed, the kernel predictor last) with the ``transfer`` rate and, for source = target, the white-box
    ``success`` rate; and one row per width trained (part ``trainings``, ``count`` 1)."""
    cfg = unit.config()
    ds, arrays, eps, _ = setup(cfg)
    if unit.part == "reference":
        return [{"part": "reference", "width": 0, **r} for r in _reference_rows(cfg, arrays)]
    if unit.part == "nets":
        return _nets_rows(cfg, ds, arrays, eps)
    raise ValueError(f"unknown part {unit.part!r}; expected one of {', '.join(PARTS)}")


def _reference_rows(cfg: Config, arrays: dict) -> list[dict]:
    xa, xb, xt = arrays["xa"], arrays["xb"], arrays["x_test"]
    flips = lambda f: jax.jit(lambda a, b: flip_points(f, a, b, grid=cfg.grid, bisection=cfg.bisection))(
        xa, xb
    )
    limit, nn1 = kernel_limit(cfg, arrays), nearest_neighbour(arrays["x"], arrays["y"])
    t_limit, found_limit = (np.asarray(v) for v in flips(limit))
    t_1nn, found_1nn = (np.asarray(v) for v in flips(nn1))
    out_limit, out_1nn = np.asarray(limit(xt)), np.asarray(nn1(xt))
    return [
        {
            "pair": i,
            "t_limit": float(t_limit[i]),
            "found_limit": bool(found_limit[i]),
            "t_1nn": float(t_1nn[i]),
            "found_1nn": bool(found_1nn[i]),
        }
        for i in range(cfg.n_pairs)
    ] + [
        {"point": j, "out_limit": float(a), "out_1nn": float(b)}
        for j, (a, b) in enumerate(zip(out_limit, out_1nn))
    ]


def _nets_rows(cfg: Config, ds, arrays: dict, eps: float) -> list[dict]:
    rows: list[dict] = []
    trained = {}
    for w in cfg.widths:
        params, res = train_width(cfg, int(w), arrays, eps)
        trained[w] = params, {k: np.asarray(v) for k, v in res.items()}
        rows.append({"part": "trainings", "width": int(w), "count": 1})
        rows += _width_rows(cfg, int(w), trained[w][1])
    return rows + [
        {"part": "transfer", "width": 0, **r} for r in _transfer_rows(cfg, ds, arrays, eps, trained)
    ]


def _width_rows(cfg: Config, width: int, res: dict) -> list[dict]:
    tag = {"part": "width", "width": width}
    own = res.get("t_own_limit")
    rows = []
    for s in range(cfg.seeds):
        rows += [
            {
                **tag,
                "seed": s,
                "pair": i,
                "t": float(res["t"][s, i]),
                "found": bool(res["found"][s, i]),
                "t_own_limit": None if own is None else float(own[s, i]),
            }
            for i in range(cfg.n_pairs)
        ]
        rows += [{**tag, "seed": s, "point": j, "out": float(v)} for j, v in enumerate(res["out_test"][s])]
    return rows


def _transfer_rows(cfg: Config, ds, arrays: dict, eps: float, trained: dict) -> list[dict]:
    x, xt, yt = arrays["x"], arrays["x_test"], arrays["y_test"]
    limit = kernel_limit(cfg, arrays)
    x_adv_limit = xt + jax.jit(lambda q: attack_fn(cfg, eps)(limit, q, yt))(xt)
    adv_all = jnp.concatenate(
        [jnp.asarray(trained[w][1]["x_adv"]).reshape(-1, x.shape[1]) for w in cfg.widths] + [x_adv_limit]
    )
    out_adv = np.concatenate(
        [np.asarray(evaluate_width(cfg, w, trained[w][0], adv_all)) for w in cfg.widths]
        + [np.asarray(limit(adv_all))[None, :]]
    )  # (models, sources * n_test)
    n_models = len(cfg.widths) * cfg.seeds + 1
    out_adv = out_adv.reshape(n_models, n_models, -1).transpose(1, 0, 2)  # (sources, models, n_test)
    out_clean = np.concatenate(
        [trained[w][1]["out_test"] for w in cfg.widths] + [np.asarray(limit(xt))[None, :]]
    )
    transfer = transfer_matrix(out_clean, out_adv, ds.y_test, -ds.y_test)
    success = white_box_success(out_clean, out_adv, ds.y_test)
    return [
        {
            "source": a,
            "target": b,
            "transfer": float(transfer[a, b]),
            "success": float(success[a]) if a == b else None,
        }
        for a in range(n_models)
        for b in range(n_models)
    ]


def _table(rows: list[dict], index: str, columns: tuple[str, ...], n: int, dtype) -> dict[str, np.ndarray]:
    """Columns of the rows that have ``index`` (0..n-1), as arrays ordered by it (None -> NaN)."""
    sub = sorted((r for r in rows if r.get(index) is not None), key=lambda r: r[index])
    if [r[index] for r in sub] != list(range(n)):
        raise ValueError(f"stored rows: expected {index} 0..{n - 1}, got {len(sub)} rows")
    return {
        c: np.asarray(
            [np.nan if r[c] is None else r[c] for r in sub], bool if c.startswith("found") else dtype
        )
        for c in columns
    }


def _width_arrays(rows: list[dict], cfg: Config, n_test: int, dtype) -> dict[str, np.ndarray]:
    """A width unit's rows back as train_width's per-seed arrays: t, found, t_own_limit (seeds, n_pairs),
    out_test (seeds, n_test)."""
    per_seed = [
        {
            **_table(
                [r for r in rows if r["seed"] == s], "pair", ("t", "found", "t_own_limit"), cfg.n_pairs, dtype
            ),
            **_table([r for r in rows if r["seed"] == s], "point", ("out",), n_test, dtype),
        }
        for s in range(cfg.seeds)
    ]
    res = {k: np.stack([p[k] for p in per_seed]) for k in ("t", "found", "t_own_limit", "out")}
    res["out_test"] = res.pop("out")
    return res
