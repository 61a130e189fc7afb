"""The experiment's figure: flip-point distances against width, transfer against boundary agreement, and
agreement with the kernel predictor and 1-NN (halfway.png / .pdf)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ntk_adv import plots


def plot(rows, pair_rows, summary, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    with plots.style(plots.active_style()):
        return _plot(plt, rows, pair_rows, summary, out)


@plots.styled
def _plot(plt, rows, pair_rows, summary, out: Path) -> list[Path]:
    fig, (ax_flip, ax_tr, ax_ag) = plots.new_figure(3, 3.6, 4.9)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    widths = sorted({r["width"] for r in rows})

    # (a) flip-point distances against width
    plots.plot_metric(ax_flip, rows, "width", "flip_net_net", label="net vs net", color=colors[0], logy=True)
    plots.plot_metric(
        ax_flip, rows, "width", "flip_net_limit", label="net vs limit", color=colors[1], logy=True
    )
    anchor = summary["flip_net_net_by_width"][str(widths[0])]["mean"]
    if np.isfinite(anchor) and anchor > 0:
        plots.theory_slope(ax_flip, widths, anchor, -0.5, label=r"slope $-1/2$")
    ax_flip.set_xlabel(plots.axis_label("width"))
    ax_flip.set_ylabel(r"flip-point gap $|t_1 - t_2|$")
    ax_flip.set_title("(a) flip points")
    plots.legend_below(ax_flip, ncol=1)

    # (b) transfer rate against flip-point distance, one point per model pair
    d = np.array([r["flip_distance"] for r in pair_rows], float)
    tr = np.array([(r["transfer_ab"] + r["transfer_ba"]) / 2 for r in pair_rows], float)
    wmin = np.array([min(r["width_a"], r["width_b"]) for r in pair_rows], float)
    lim = np.array([np.isinf(r["width_a"]) or np.isinf(r["width_b"]) for r in pair_rows])
    sc = ax_tr.scatter(d[~lim], tr[~lim], c=np.log2(wmin[~lim]), s=5, cmap="viridis", lw=0, alpha=0.7)
    ax_tr.scatter(d[lim], tr[lim], marker="x", s=12, color="k", lw=0.7, label="net vs limit")
    cb = fig.colorbar(sc, ax=ax_tr, pad=0.02, aspect=30)
    cb.set_label(r"$\log_2 \min(m_a, m_b)$")
    ax_tr.set_xscale("log")
    ax_tr.set_xlabel("flip-point distance")
    ax_tr.set_ylabel(f"transfer rate ({summary['config']['attack'].upper()})")
    ax_tr.set_title("(b) transfer")
    ax_tr.plot([], [], ls="none", label=rf"Spearman $\rho = {summary['rho']:+.2f}$")
    ax_tr.plot([], [], ls="none", label=f"Mantel $p = {summary['p_mantel']:.2g}$")
    plots.legend_below(ax_tr, ncol=1)

    # (c) agreement with the kernel predictor and with 1-NN
    plots.plot_metric(ax_ag, rows, "width", "agree_net_limit", label="net vs limit", color=colors[1])
    plots.plot_metric(ax_ag, rows, "width", "agree_net_1nn", label="net vs 1-NN", color=colors[2])
    plots.theory_line(ax_ag, summary["limit_1nn_agreement"], label="limit vs 1-NN", color=colors[2])
    plots.theory_line(ax_ag, 1.0, label="", color=colors[1])
    ax_ag.set_ylim(top=1.005)
    ax_ag.set_xlabel(plots.axis_label("width"))
    ax_ag.set_ylabel("sign agreement (test)")
    ax_ag.set_title("(c) agreement")
    plots.legend_below(ax_ag, ncol=1)
    classes = summary.get("classes")
    data = summary["dataset"] + (f" {classes['pos']} vs {classes['neg']}" if classes else "")
    fig.suptitle(
        f"{data}, $d = {summary['d']}$, $N = {summary['n_train']}$, {summary['config']['seeds']} seeds"
    )
    return plots.save(fig, out, "halfway")
