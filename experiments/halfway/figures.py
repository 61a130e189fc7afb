"""The experiment's figure: flip-point distances against width, transfer against boundary agreement, and
agreement with the kernel predictor and 1-NN (halfway.png / .pdf)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ntk_adv import plots


def plot(rows, pair_rows, summary, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    with plt.rc_context(plots.PAPER_RC):
        return _plot(plt, rows, pair_rows, summary, out)


def _plot(plt, rows, pair_rows, summary, out: Path) -> list[Path]:
    fig, (ax_flip, ax_tr, ax_ag) = plots.new_figure(3, 3.6, 2.9)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    widths = sorted({r["width"] for r in rows})

    # (a) flip-point distances against width
    plots.plot_metric(
        ax_flip, rows, "width", "flip_net_net", label="net vs net (same width)", color=colors[0], logy=True
    )
    plots.plot_metric(
        ax_flip,
        rows,
        "width",
        "flip_net_limit",
        label="net vs its infinite-width limit",
        color=colors[1],
        logy=True,
    )
    anchor = summary["flip_net_net_by_width"][str(widths[0])]["mean"]
    if np.isfinite(anchor) and anchor > 0:
        plots.theory_slope(ax_flip, widths, anchor, -0.5, label="slope -1/2")
    ax_flip.set_xlabel("width m")
    ax_flip.set_ylabel(r"mean $|t_1 - t_2|$ of flip points")
    ax_flip.set_title("(a) flip points converge with width")
    ax_flip.legend(frameon=False)

    # (b) transfer rate against flip-point distance, one point per model pair
    d = np.array([r["flip_distance"] for r in pair_rows], float)
    tr = np.array([(r["transfer_ab"] + r["transfer_ba"]) / 2 for r in pair_rows], float)
    wmin = np.array([min(r["width_a"], r["width_b"]) for r in pair_rows], float)
    lim = np.array([np.isinf(r["width_a"]) or np.isinf(r["width_b"]) for r in pair_rows])
    sc = ax_tr.scatter(d[~lim], tr[~lim], c=np.log2(wmin[~lim]), s=6, cmap="viridis", lw=0, alpha=0.7)
    ax_tr.scatter(d[lim], tr[lim], marker="x", s=14, color="k", lw=0.8, label="net vs NTK limit")
    cb = fig.colorbar(sc, ax=ax_tr, pad=0.02)
    cb.set_label(r"$\log_2$ smaller width of the pair", fontsize=7)
    cb.ax.tick_params(labelsize=7)
    ax_tr.set_xscale("log")
    ax_tr.set_xlabel("flip-point distance between the two models")
    ax_tr.set_ylabel(f"transfer rate ({summary['config']['attack']}, symmetrized)")
    ax_tr.set_title("(b) boundary agreement predicts transfer")
    ax_tr.text(
        0.04,
        0.5,
        f"Spearman $\\rho$ = {summary['rho']:+.2f}\nMantel p = {summary['p_mantel']:.2g}",
        transform=ax_tr.transAxes,
        ha="left",
        va="center",
        fontsize=7,
    )
    ax_tr.legend(frameon=False, loc="lower left")

    # (c) agreement with the kernel predictor and with 1-NN
    plots.plot_metric(ax_ag, rows, "width", "agree_net_limit", label="net vs NTK limit", color=colors[1])
    plots.plot_metric(ax_ag, rows, "width", "agree_net_1nn", label="net vs 1-NN", color=colors[2])
    plots.theory_line(ax_ag, summary["limit_1nn_agreement"], label="NTK limit vs 1-NN", color=colors[2])
    plots.theory_line(ax_ag, 1.0, label="", color=colors[1])
    ax_ag.set_ylim(top=1.005)
    ax_ag.set_xlabel("width m")
    ax_ag.set_ylabel("sign agreement on test points")
    ax_ag.set_title("(c) agreement with kernel and 1-NN")
    ax_ag.legend(frameon=False, loc="center right")
    cfg = summary["config"]
    classes = summary.get("classes")
    data = summary["dataset"] + (f" {classes['pos']} vs {classes['neg']}" if classes else "")
    fig.suptitle(
        f"Meet you halfway: {data} (d={summary['d']}, N={summary['n_train']}), "
        f"{cfg['train']['loss']} loss, "
        f"{'centred ' if cfg['centered'] else ''}{cfg['net']['parametrization']} param., "
        f"{cfg['seeds']} seeds",
        fontsize=9,
    )
    fig.tight_layout()
    return plots.save(fig, out, "halfway")
