"""Flip points between classes: do wide nets "meet halfway", and does boundary agreement predict transfer?

Claim operationalized (BenShmuel 2022, "Meet you halfway: explaining deep learning mysteries", arXiv
2206.04463): the paper explains (1) generalization - a trained net decides a new point by where it lies
*between* training samples of the two classes, like a nearest-neighbour rule that "meets halfway" - and (2)
the transfer of adversarial examples - different models trained on the same data place their decision
boundaries at nearly the same places between samples of different classes, so a perturbation that crosses one
model's boundary crosses the others'. We operationalize the paper's two claims through *flip points*: for a
pair (x_a, x_b) of test points of different classes, the flip point of a predictor f is the first t in [0, 1]
at which the predicted class of x(t) = (1 - t) x_a + t x_b differs from the class at x_a (a grid of ``grid``
steps locates the first sign change, ``bisection`` halvings refine it; pairs without a change count as "no
flip" and are left out of flip-point distances). In the lazy regime the account is made quantitative by the
infinite-width limit:

(i)   Two nets of the same width trained from independent initializations have flip points that approach each
      other as the width grows, like each net's distance to the infinite-width predictor (``ntk``: the kernel
      predictor of ``limits.make_predictor`` with the matching NTK): mean |t_1 - t_2| -> 0 with a log-log
      slope < 0 (fluctuation theory: -1/2; for independent fluctuations net-net ~ sqrt(2) x net-limit). Nets
      are *centred* by default (f(x; theta) - f(x; theta_0)), so the limit is deterministic; with
      ``centered=False`` the O(1) random initial function survives at every width and net-net distances stall
      at a floor, while each net still approaches its own limit f_0 + Theta coef.
(ii)  Across all pairs of models (nets of every width and seed, and the NTK limit), closer flip points go with
      higher transfer of one-step targeted perturbations (``attack``: fgm = one-step L2 or fgsm = L-inf sign,
      targets -y, radius ``eps`` x the median pair distance (fgm), divided by sqrt(d) for fgsm): the
      Spearman correlation between flip-point distance and symmetrized transfer rate is negative (prediction:
      sign < 0), judged with a one-sided Mantel permutation test over models (p < 0.05).
(iii) The net agrees more and more with the kernel predictor as the width grows (sign agreement on test points
      rises towards 1), and its agreement with the 1-nearest-neighbour rule (1-NN on the training set, score =
      distance to the nearest negative - distance to the nearest positive) converges to the kernel predictor's
      agreement with 1-NN. The paper's "halfway / nearest-neighbour" reading is reported next to it: the net's
      1-NN agreement at the largest width and the mean flip-point locations of the net, the limit and 1-NN.

Every claim is a :class:`ntk_adv.verdicts.Claim` judged per width, on what distinguishes the two readings:
agreement with 1-NN on the test points where 1-NN and the kernel predictor disagree (paper: > 0.5; lazy
theory: -> 0), the mean flip point t vs 0.5 (+- ``halfway_tolerance``), the transfer/boundary Spearman
correlation among the seeds of one width (Fisher-z interval; not pooled over widths, which confounds it),
agreement with the kernel predictor; plus the slope of (i) and the attack's own white-box success (a
precondition of the transfer claims).

Transfer rate A -> B: among test points that B classifies correctly and on which the perturbation crafted on A
succeeds against A, the fraction that B also classifies as the target.

Cells (:mod:`.units`, run by :func:`ntk_adv.engine.run_rows` and kept in the result store ``out``/store, so
a killed run resumes per cell on any backend): the kernel predictor and 1-NN (``reference``), and the nets of
every width with the transfer between every pair of models (``nets``: the transfer needs every net, so the
unit that owns them trains each width once and computes it, in whatever process runs it).

Modules: :mod:`.config` (Config), :mod:`.nets` (models, pairs, attack), :mod:`.units` (the cells),
:mod:`.claims` (verdicts), :mod:`.figures`.

Outputs in ``out``: results.csv (long format: width, seed, metric, value; net-net rows use ``seed`` = index of
a disjoint seed pair), pairs.csv (one row per model pair: flip distance, transfer both ways), summary.json
(``claims``: one verdict dict per claim), halfway.png / .pdf.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy import stats

from ntk_adv import engine
from ntk_adv.metrics import agreement, mantel
from ntk_adv.results import write_csv, write_json
from ntk_adv.training import TrainConfig

from . import claims, figures, nets, units
from .claims import report, summarize
from .config import HALFWAY_ATTACKS, QUICK_CONFIG, SEED_METRICS, Config
from .figures import plot
from .nets import (
    attack_fn,
    evaluate_width,
    kernel_limit,
    make_pairs,
    mean_abs_diff,
    nearest_neighbour,
    setup,
    train_width,
)
from .units import _table, _width_arrays, unit_rows

COMMAND = "halfway"

__all__ = [
    "COMMAND",
    "HALFWAY_ATTACKS",
    "QUICK_CONFIG",
    "SEED_METRICS",
    "Config",
    "TrainConfig",
    "attack_fn",
    "claims",
    "evaluate_width",
    "figures",
    "kernel_limit",
    "main",
    "make_pairs",
    "mean_abs_diff",
    "nearest_neighbour",
    "nets",
    "plot",
    "report",
    "setup",
    "summarize",
    "train_width",
    "unit_rows",
    "units",
]


def main(cfg: Config = Config(), out: str | Path = "runs/halfway", *, progress: bool = True) -> dict:
    """Run the experiment's cells (:func:`units`) through the sweep engine (stored per cell in the result
    store, so a killed run resumes per cell; any backend), write results.csv, pairs.csv, summary.json and the
    figure; return the summary."""
    t_start = time.perf_counter()
    out = Path(out)
    ds, arrays, eps, median_dist = setup(cfg)
    x, xt = arrays["x"], arrays["x_test"]
    dtype, n_test = np.asarray(x).dtype, int(xt.shape[0])
    stored = engine.run_rows(
        [(u, 0) for u in units.units(cfg)],
        kind=COMMAND,
        run=unit_rows,
        seed_column=None,
        progress=progress,
        **cfg.run.sweep_options(out),
    )
    part = lambda name, width=0: [r for r in stored if r["part"] == name and r["width"] == width]

    ref = {
        **_table(
            part("reference"), "pair", ("t_limit", "found_limit", "t_1nn", "found_1nn"), cfg.n_pairs, dtype
        ),
        **_table(part("reference"), "point", ("out_limit", "out_1nn"), n_test, dtype),
    }
    t_limit, t_1nn, out_limit, out_1nn = ref["t_limit"], ref["t_1nn"], ref["out_limit"], ref["out_1nn"]
    found_limit, found_1nn = ref["found_limit"], ref["found_1nn"]
    sign = lambda v: np.where(np.asarray(v) >= 0, 1.0, -1.0)
    differ = sign(out_limit) != sign(out_1nn)  # test points where 1-NN and the kernel predictor disagree
    rows: list[dict] = []
    per_width: dict[int, dict] = {}
    for width in cfg.widths:
        res = _width_arrays(part("width", int(width)), cfg, n_test, dtype)
        if cfg.centered:
            res["t_own_limit"] = np.broadcast_to(t_limit, res["t"].shape)
        per_width[width] = res
        for s in range(cfg.seeds):
            t = res["t"][s]
            vals = {
                "flip_net_limit": mean_abs_diff(t, res["t_own_limit"][s]),
                "flip_net_1nn": mean_abs_diff(t, t_1nn),
                "flip_net_kernel": mean_abs_diff(t, t_limit),
                "agree_net_limit": float(agreement(res["out_test"][s], out_limit)),
                "agree_net_1nn": float(agreement(res["out_test"][s], out_1nn)),
                "acc": float(np.mean(np.where(res["out_test"][s] >= 0, 1.0, -1.0) == ds.y_test)),
                "flip_t": float(np.nanmean(t)),
                "flip_rate": float(np.mean(res["found"][s])),
                "agree_1nn_where_kernel_differs": (
                    float(np.mean(sign(res["out_test"][s])[differ] == sign(out_1nn)[differ]))
                    if differ.any()
                    else np.nan
                ),
            }
            rows += [{"width": width, "seed": s, "metric": k, "value": v} for k, v in vals.items()]
        for j in range(cfg.seeds // 2):
            rows.append(
                {
                    "width": width,
                    "seed": j,
                    "metric": "flip_net_net",
                    "value": mean_abs_diff(res["t"][2 * j], res["t"][2 * j + 1]),
                }
            )

    # transfer between every pair of models: nets (width, seed) and the NTK limit
    names = [f"m{w}_s{s}" for w in cfg.widths for s in range(cfg.seeds)] + ["ntk"]
    widths_of = [w for w in cfg.widths for _ in range(cfg.seeds)] + [np.inf]
    n_models = len(names)
    t_all = np.concatenate([per_width[w]["t"] for w in cfg.widths] + [t_limit[None, :]])
    transfer = np.full((n_models, n_models), np.nan)
    success = np.full(n_models, np.nan)
    for r in part("transfer"):
        transfer[r["source"], r["target"]] = np.nan if r["transfer"] is None else r["transfer"]
        if r["source"] == r["target"]:
            success[r["source"]] = np.nan if r["success"] is None else r["success"]
    for i, (w, s) in enumerate((w, s) for w in cfg.widths for s in range(cfg.seeds)):
        rows.append({"width": w, "seed": s, "metric": "attack_success", "value": float(success[i])})
    dist = np.array([[mean_abs_diff(t_all[a], t_all[b]) for b in range(n_models)] for a in range(n_models)])
    sym = (transfer + transfer.T) / 2
    rho, p_mantel = mantel(dist, sym, cfg.permutations, cfg.seed)
    within = {}  # the same correlation among the seeds of one width (width cannot confound it)
    for w in cfg.widths:
        idx = [i for i, wi in enumerate(widths_of) if wi == w]
        iu = np.triu_indices(len(idx), 1)
        dd, ss = dist[np.ix_(idx, idx)][iu], sym[np.ix_(idx, idx)][iu]
        ok = np.isfinite(dd) & np.isfinite(ss)
        varies = ok.sum() > 2 and np.ptp(dd[ok]) > 0 and np.ptp(ss[ok]) > 0
        within[str(w)] = {
            "rho": float(stats.spearmanr(dd[ok], ss[ok]).statistic) if varies else np.nan,
            "pairs": int(ok.sum()),
        }
    pair_rows = [
        {
            "model_a": names[a],
            "model_b": names[b],
            "width_a": widths_of[a],
            "width_b": widths_of[b],
            "flip_distance": dist[a, b],
            "transfer_ab": transfer[a, b],
            "transfer_ba": transfer[b, a],
        }
        for a in range(n_models)
        for b in range(a + 1, n_models)
    ]
    write_csv(rows, out / "results.csv")
    write_csv(pair_rows, out / "pairs.csv")

    summary = summarize(
        cfg,
        rows,
        {
            "dataset": ds.name,
            "classes": ds.meta.get("classes"),
            "n_train": int(x.shape[0]),
            "d": int(x.shape[1]),
            "eps": eps,
            "median_pair_distance": median_dist,
            "rho": rho,
            "p_mantel": p_mantel,
            "rho_within_width": within,
            "limit_acc": float(np.mean(np.where(out_limit >= 0, 1.0, -1.0) == ds.y_test)),
            "nn1_acc": float(np.mean(np.where(out_1nn >= 0, 1.0, -1.0) == ds.y_test)),
            "limit_1nn_agreement": float(agreement(out_limit, out_1nn)),
            "limit_1nn_flip_distance": mean_abs_diff(t_limit, t_1nn),
            "flip_t_limit": float(np.nanmean(t_limit)),
            "flip_t_1nn": float(np.nanmean(t_1nn)),
            "flip_rate_limit": float(np.mean(found_limit)),
            "flip_rate_1nn": float(np.mean(found_1nn)),
            "mean_transfer": float(np.nanmean(transfer[~np.eye(n_models, dtype=bool)])),
            "limit_attack_success": float(success[-1]),
            "n_test": int(xt.shape[0]),
            "n_kernel_1nn_differ": int(differ.sum()),
        },
    )
    summary["timings_s"] = {"total": time.perf_counter() - t_start}
    write_json(summary, out / "summary.json")
    plot(rows, pair_rows, summary, out)
    if progress is not False:
        report(summary, out)
    return summary
