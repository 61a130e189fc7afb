"""Feature purification: adversarial training removes dense mixtures from the neurons (Allen-Zhu & Li, FOCS
2021).

On sparse-coding data (x = M z + noise, y = sign(<w*, z>); :mod:`.problem`), a two-layer ReLU net trained
clean in the feature-learning regime (small init, both layers trained) is accurate but not robust; adversarial
training from the clean weights - even with FGM - makes it robust to any attack of the same radius and
purifies its neurons; low-complexity models (an adversarially trained lazy/NTK net, an adversarially trained
NTK kernel predictor, adversarially trained logistic regression) stay far less robust. The purified oracle (2D
pure neurons) shows the task allows robustness at the radius used.

Modules: :mod:`.config` (Config, composed of ``data`` :class:`SparseCoding`, ``net``, ``train``),
:mod:`.problem` (data, oracle, neuron and accuracy metrics), :mod:`.stages` (training and evaluation of every
model, the library's loops), :mod:`.claims` (robustness, purification, low complexity), :mod:`.figures`.

Cells: one per seed (:func:`seed_rows`, run by :func:`ntk_adv.engine.run_rows`, kept in the result store
``out``/store, so a killed run resumes per seed on any backend).

Outputs in ``out``: results.csv (model, seed, metric, value; trajectory rows with ``step``), neurons.csv
(per-neuron purity and importance), summary.json (``claims``: one :class:`ntk_adv.verdicts.Claim` dict each),
purification.png/pdf.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from ntk_adv import engine, verdicts
from ntk_adv.results import provenance, write_csv, write_json

from .claims import all_claims
from .config import ADV_ATTACKS, DICTIONARIES, LOSS, QUICK_CONFIG, Config, SparseCoding
from .figures import ACC_METRICS, MODELS, plot
from .problem import make_problem, neuron_stats, oracle_net, oracle_params
from .stages import stage_evaluate, stage_kernels, stage_lazy, stage_train

COMMAND = "purification"

__all__ = [
    "ACC_METRICS",
    "ADV_ATTACKS",
    "COMMAND",
    "DICTIONARIES",
    "LOSS",
    "MODELS",
    "QUICK_CONFIG",
    "Config",
    "SparseCoding",
    "main",
    "make_problem",
    "neuron_stats",
    "oracle_net",
    "oracle_params",
]


def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


@functools.lru_cache(maxsize=16)
def _vmapped(stage, cfg: Config):
    """``stage`` jitted and vmapped over seeds, one per (stage, cell config): a resumed run in the same
    process reuses the compiled executables."""
    return jax.jit(jax.vmap(lambda *a: stage(cfg, *a)))


def run(cfg: Config, seeds=None, progress: bool = True) -> tuple[dict, dict, dict, dict]:
    """All stages for ``seeds`` (default: all), each a single jitted vmap over them; seed s keeps the key
    ``split(PRNGKey(cfg.seed), cfg.seeds)[s]`` and its own problem. Returns (metrics[model][metric] ->
    (seeds,), trajectory[metric] -> (seeds, checkpoints + 1), neurons[model][stat] -> (seeds, m),
    timings)."""
    from .problem import make_problems

    seeds = list(range(cfg.seeds)) if seeds is None else [int(s) for s in seeds]
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)[np.asarray(seeds)]
    timings: dict[str, float] = {}
    bar = tqdm(total=4, desc="purification: stages", disable=None if progress else True)

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        timings[name] = time.perf_counter() - t0
        bar.set_postfix_str(f"{name} {timings[name]:.0f}s")
        bar.update(1)
        return out

    prob = make_problems(cfg, seeds)
    vm = lambda f: _vmapped(f, cell_config(cfg))
    p0, p_clean, p_adv = timed("train (clean + adversarial)", vm(stage_train), keys, prob)
    traj, stats = timed("evaluate", vm(stage_evaluate), prob, p0, p_clean, p_adv)
    lazy = timed("lazy nets", vm(stage_lazy), keys, prob)
    refs = timed("kernels, linear, oracle", vm(stage_kernels), keys, prob)
    bar.close()
    traj, stats = _np(traj), _np(stats)  # (seeds, C + 1, ...): index 0 the clean net, -1 the final one
    metrics = {
        "clean": {k: v[:, 0] for k, v in traj.items()},
        "adversarial": {k: v[:, -1] for k, v in traj.items()},
        **_np(lazy),
        **_np(refs),
    }
    neurons = {
        "clean": {k: v[:, 0] for k, v in stats.items()},
        "adversarial": {k: v[:, -1] for k, v in stats.items()},
    }
    traj.pop("weight_move")  # measured from different references along the trajectory
    return metrics, traj, neurons, timings


NEURON_STATS = ("purity", "dense_mass", "importance")  # the per-neuron columns of neurons.csv
_JUDGEMENT = ("margin", "robust_margin", "gap_margin")  # read by the claims only: not part of a cell


def cell_config(cfg: Config) -> Config:
    """The config that identifies a seed's cell in the store: what the cell reads
    (:func:`ntk_adv.engine.reads_only`: ``cfg`` without the execution, the judgement-only margins at their
    defaults; the rows do not depend on them)."""
    return engine.reads_only(cfg, ignores=_JUDGEMENT)


def seed_rows(cfg: Config, seeds) -> list[dict]:
    """The rows of the cells ``seeds``, every row naming its ``seed``: ``table`` "results" (model, step: None,
    metric, value; the adversarial-training trajectory as model ``adversarial_trajectory`` with the step)
    and ``table`` "neurons" (model, neuron, purity, dense_mass, importance).

    The stages always run all ``cfg.seeds`` in one vmap (:func:`run`) and the rows of ``seeds`` are kept: a
    seed's numbers depend in the last bits on the vmap's batch size (XLA picks other kernels), which
    adversarial training amplifies to different robust accuracies, so a seed recomputed alone after a kill
    would not reproduce the run it completes. A fresh run asks for all seeds at once, so nothing is wasted
    there."""
    metrics, traj, neurons, _ = run(cfg, progress=False)
    chunk = cfg.adv_steps // cfg.checkpoints
    rows = []
    for s in (int(s) for s in seeds):
        rows += [
            {
                "table": "results",
                "model": model,
                "seed": s,
                "step": None,
                "metric": metric,
                "value": float(v[s]),
            }
            for model, res in metrics.items()
            for metric, v in res.items()
        ]
        rows += [
            {
                "table": "results",
                "model": "adversarial_trajectory",
                "seed": s,
                "step": i * chunk,
                "metric": metric,
                "value": float(v),
            }
            for metric, vals in traj.items()
            for i, v in enumerate(vals[s])
        ]
        rows += [
            {
                "table": "neurons",
                "model": model,
                "seed": s,
                "neuron": i,
                **{k: float(st[k][s, i]) for k in NEURON_STATS},
            }
            for model, st in neurons.items()
            for i in range(st["purity"].shape[1])
        ]
    return rows


def _arrays(rows: list[dict], seeds: int) -> tuple[dict, dict, dict]:
    """The stored rows back as (metrics[model][metric] -> (seeds,), trajectory[metric] -> (seeds, C + 1),
    neurons[model][stat] -> (seeds, m)), float32 as computed, keys in the order the unit wrote them."""
    by_seed = lambda sel: [[r for r in sel if r["seed"] == s] for s in range(seeds)]
    results = [r for r in rows if r["table"] == "results"]
    metrics: dict = {}
    for r in (r for r in results if r["step"] is None and r["seed"] == 0):
        metrics.setdefault(r["model"], {})[r["metric"]] = None
    traj = dict.fromkeys(r["metric"] for r in results if r["step"] is not None and r["seed"] == 0)
    value = {(r["model"], r["seed"], r["step"], r["metric"]): r["value"] for r in results}
    for model, res in metrics.items():
        for metric in res:
            res[metric] = np.asarray([value[model, s, None, metric] for s in range(seeds)], np.float32)
    steps = sorted({r["step"] for r in results if r["step"] is not None})
    for metric in traj:
        traj[metric] = np.asarray(
            [[value["adversarial_trajectory", s, t, metric] for t in steps] for s in range(seeds)], np.float32
        )
    neurons: dict = {}
    for s, sel in enumerate(by_seed([r for r in rows if r["table"] == "neurons"])):
        for r in sorted(sel, key=lambda r: r["neuron"]):
            st = neurons.setdefault(r["model"], {k: [[] for _ in range(seeds)] for k in NEURON_STATS})
            for k in NEURON_STATS:
                st[k][s].append(r[k])
    neurons = {m: {k: np.asarray(v, np.float32) for k, v in st.items()} for m, st in neurons.items()}
    return metrics, traj, neurons


PROPORTIONS = ("acc", "agreement")  # metric names holding proportions: their intervals stay in [0, 1]


def _interval(values, name: str) -> dict:
    """Mean over seeds with its 95% interval (:func:`ntk_adv.verdicts.seed_mean`: the wider of a bootstrap
    and a Student-t interval), kept in [0, 1] for proportions (accuracies, agreements)."""
    bounds = (0.0, 1.0) if any(p in name for p in PROPORTIONS) else (-np.inf, np.inf)
    est = verdicts.seed_mean(values, bounds=bounds)
    return {"mean": est.value, "ci95": [est.low, est.high]}


def main(cfg: Config = Config(), out: str | Path = "runs/purification", *, progress: bool = True) -> dict:
    """Run the seeds' cells through the sweep engine (stored per seed in the result store, so a killed run
    resumes per seed; seeds still to run go together in one vmap; any backend), write results.csv,
    neurons.csv, summary.json and the figure; return the summary (``summary['claims']``: list of
    :meth:`ntk_adv.verdicts.Claim.to_dict`)."""
    out = Path(out)
    t0 = time.perf_counter()
    stored = engine.run_rows(
        [(cell_config(cfg), s) for s in range(cfg.seeds)],
        kind=COMMAND,
        run=seed_rows,
        progress=progress,
        **cfg.run.sweep_options(out),
    )
    metrics, traj, neurons = _arrays(stored, cfg.seeds)

    rows = []
    for model, res in metrics.items():
        for metric, vals in res.items():
            rows += [
                {"model": model, "seed": s, "step": None, "metric": metric, "value": float(v)}
                for s, v in enumerate(vals)
            ]
    chunk = cfg.adv_steps // cfg.checkpoints
    for metric, vals in traj.items():
        for s in range(cfg.seeds):
            rows += [
                {
                    "model": "adversarial_trajectory",
                    "seed": s,
                    "step": i * chunk,
                    "metric": metric,
                    "value": float(v),
                }
                for i, v in enumerate(vals[s])
            ]
    write_csv(rows, out / "results.csv")
    neuron_rows = []
    for model, st in neurons.items():
        for s in range(cfg.seeds):
            neuron_rows += [
                {
                    "model": model,
                    "seed": s,
                    "neuron": i,
                    "purity": float(st["purity"][s, i]),
                    "dense_mass": float(st["dense_mass"][s, i]),
                    "importance": float(st["importance"][s, i]),
                }
                for i in range(st["purity"].shape[1])
            ]
    write_csv(neuron_rows, out / "neurons.csv")

    claims = all_claims(cfg, metrics)
    summary: dict = {
        "experiment": COMMAND,
        "config": asdict(cfg),
        **provenance(),
        "dense_direction_purity": 1.0 / np.sqrt(cfg.data.n_atoms),
        "models": {m: {k: _interval(v, k) for k, v in res.items()} for m, res in metrics.items()},
        "claims": [c.to_dict() for c in claims],
        "verdicts": {c.name: c.verdict for c in claims},
        "timings_s": {"total": time.perf_counter() - t0},
    }
    write_json(summary, out / "summary.json")
    plot(rows, neuron_rows, summary, out)
    if progress is not False:
        report(summary, out)
    return summary


def report(summary: dict, out: Path) -> None:
    print(f"{'model':<12} {'clean':>7} {'rob L2':>7} {'rob Linf':>8} {'purity':>7} {'dense':>7}")
    for m, res in summary["models"].items():
        cells = [res.get(k, {}).get("mean", np.nan) for k in (*ACC_METRICS, "purity", "dense_mass")]
        print(f"{m:<12} " + " ".join(f"{v:7.3f}" for v in cells))
    for c in summary["claims"]:
        print(
            f"[{c['verdict']:<12}] {c['name']}: {c['measured']} vs {c['prediction']}"
            + (f" - {c['reason']}" if c["reason"] else "")
        )
    print(f"Wrote {out}/ in {summary['timings_s']['total']:.0f}s")
