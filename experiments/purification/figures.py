"""The purification figure: accuracies per model, the purity histogram of clean and adversarially trained
neurons, and the trajectory during adversarial training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ntk_adv import plots
from ntk_adv.verdicts import mean_ci

ACC_METRICS = ("clean_acc", "robust_acc_l2", "robust_acc_linf")
MODELS = ("clean", "adversarial", "lazy", "lazy_adv", "ntk_limit", "kernel_adv", "linear_adv", "oracle")

LABELS = {
    "clean": "clean (rich)",
    "adversarial": "adv. trained",
    "lazy": "lazy net",
    "lazy_adv": "lazy, adv.",
    "ntk_limit": "NTK limit",
    "kernel_adv": "kernel, adv.",
    "linear_adv": "linear, adv.",
    "oracle": "purified oracle",
}
METRIC_LABELS = {
    "clean_acc": "clean",
    "robust_acc_l2": r"robust $\ell_2$",
    "robust_acc_linf": r"robust $\ell_\infty$",
}


def plot(rows, neuron_rows, summary, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    with plots.style(plots.active_style()):
        return _plot(plt, rows, neuron_rows, summary, out)


@plots.styled
def _plot(plt, rows, neuron_rows, summary, out: Path) -> list[Path]:
    cfg = summary["config"]
    fig, (ax_acc, ax_hist, ax_traj) = plots.new_figure(3, 3.6, 5.6)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    # (a) accuracies per model, mean and 95% interval over seeds
    width = 0.26
    for j, metric in enumerate(ACC_METRICS):
        means, errs = [], []
        for model in MODELS:
            vals = [r["value"] for r in rows if r["model"] == model and r["metric"] == metric]
            ci = mean_ci(vals)
            means.append(ci.value)
            errs.append(ci.half_width)
        ys = np.arange(len(MODELS)) + (j - 1) * width
        ax_acc.barh(  # horizontal: the model names read level, never overprinting
            ys,
            means,
            width,
            xerr=errs,
            capsize=2,
            color=colors[j],
            label=METRIC_LABELS[metric],
            error_kw={"lw": 0.8},
        )
    ax_acc.set_yticks(np.arange(len(MODELS)), [LABELS[m] for m in MODELS])
    ax_acc.set_ylim(len(MODELS) - 0.5, -0.5)  # the first model on top
    ax_acc.set_xlim(0, 1.0)
    ax_acc.set_xticks(np.linspace(0, 1, 3))
    ax_acc.axvline(0.5, ls=":", color="0.5", lw=0.8)
    ax_acc.set_xlabel("test accuracy")
    ax_acc.set_title("(a) accuracy")
    plots.legend_below(ax_acc, ncol=1, handlelength=1.2)

    # (b) importance-weighted histogram of per-neuron purity, pooled over seeds
    bins = np.linspace(0, 1, 26)
    for j, model in enumerate(("clean", "adversarial")):
        pur = np.array([r["purity"] for r in neuron_rows if r["model"] == model])
        imp = np.array([r["importance"] for r in neuron_rows if r["model"] == model])
        ax_hist.hist(
            pur,
            bins=bins,
            weights=imp / imp.sum(),
            histtype="stepfilled",
            alpha=0.35,
            color=colors[3 + j],
            edgecolor=colors[3 + j],
            lw=1.0,
            label=LABELS[model],
        )
    ax_hist.axvline(
        summary["dense_direction_purity"],
        ls="--",
        color="k",
        lw=1.0,
        label=r"dense direction $Mw^*$ ($1/\sqrt{D}$)",
    )
    ax_hist.axvline(1.0, ls=":", color="k", lw=1.0, label="pure atom")
    ax_hist.set_xlabel(r"purity $\max_j |\langle M_j, w_i\rangle| / \|w_i\|$")
    ax_hist.set_ylabel(r"share of weight $|a_i|\,\|w_i\|$")
    ax_hist.set_title("(b) neuron purity")
    plots.legend_below(ax_hist, ncol=1)

    # (c) trajectory during adversarial training
    traj = [r for r in rows if r["model"] == "adversarial_trajectory"]
    norm = r"\ell_\infty" if cfg["adv_attack"] == "pgd_linf" else r"\ell_2"
    trained = "robust_acc_" + ("linf" if cfg["adv_attack"] == "pgd_linf" else "l2")
    for j, (metric, label) in enumerate(
        [
            ("purity", "purity"),
            ("dense_mass", "dense mass"),
            (trained, METRIC_LABELS[trained] + " acc."),
            ("clean_acc", "clean acc."),
        ]
    ):
        plots.plot_metric(
            ax_traj, traj, "step", metric, label=label, color=colors[(j + 3) % len(colors)], logx=None
        )
    oracle = summary["models"]["oracle"][trained]["mean"]
    plots.theory_line(ax_traj, oracle, label=f"oracle {METRIC_LABELS[trained]} acc.", color="0.3")
    ax_traj.set_ylim(0, 1.05)
    ax_traj.set_xlabel(rf"step (${norm}$, $\varepsilon = {cfg['adv_eps']:g}$)")
    ax_traj.set_ylabel("value (mean, 95% CI)")
    ax_traj.set_title("(c) adv. training")
    plots.legend_below(ax_traj, ncol=1)
    fig.suptitle(
        rf"sparse coding $d = {cfg['data']['d']}$, $D = {cfg['data']['n_atoms']}$, "
        rf"$k = {cfg['data']['sparsity']}$, $m = {cfg['net']['width']}$; "
        rf"$\varepsilon_2 = {cfg['eps_l2']:g}$, $\varepsilon_\infty = {cfg['eps_linf']:.3g}$; "
        f"{cfg['seeds']} seeds"
    )
    return plots.save(fig, out, "purification")
