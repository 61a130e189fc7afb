"""Figures of the linearity experiment: linearity_dimension (a), linearity_ray (b), linearity_fgsm (c, d)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ntk_adv import plots
from ntk_adv.results import select

from .adversarial import ADV_MODES
from .common import geomean as _geomean
from .common import values as _values
from .dimension import DIM_MODELS


def plot(rows, summary, out: Path) -> list[Path]:
    parts = set(summary["config"]["parts"])
    paths = []
    if "a" in parts:
        paths += _plot_dimension(rows, summary, out)
    if "b" in parts:
        paths += _plot_rays(rows, summary, out)
    if parts & {"c", "d"}:
        paths += _plot_fgsm(rows, summary, out, parts)
    return paths


@plots.styled
def _plot_dimension(rows, summary, out: Path) -> list[Path]:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    cfg = summary["config"]
    fig, (ax1, ax2) = plots.new_figure(2, 3.9, 4.6)
    colors = {"linear": "C0", "net": "C1", "limit": "C2"}
    labels = {"linear": "linear model", "net": f"net $m = {cfg['dim_width']}$", "limit": r"$m = \infty$"}
    for model in DIM_MODELS:
        plots.plot_metric(
            ax1, rows, "d", "fgsm_change", color=colors[model], logy=True, part="a", model=model
        )
        line = plots.plot_metric(
            ax1, rows, "d", "random_change", color=colors[model], logy=True, part="a", model=model
        )
        line.set_linestyle(":")
        line.set_marker("s")
        plots.plot_metric(
            ax2,
            rows,
            "d",
            "fgsm_random_ratio",
            label=labels[model],
            color=colors[model],
            logy=True,
            part="a",
            model=model,
        )
    dims = sorted({r["d"] for r in select(rows, part="a")})
    plots.theory_slope(
        ax1, dims, 1.5 * _geomean(_values(rows, part="a", d=dims[0], metric="fgsm_change")), 1.0
    )
    plots.theory_slope(
        ax1,
        dims,
        _geomean(_values(rows, part="a", d=dims[0], metric="random_change")) / 1.5,
        0.5,
        color="0.5",
    )
    handles = [Line2D([], [], color=colors[m], label=labels[m]) for m in DIM_MODELS] + [
        Line2D([], [], color="0.3", marker="o", ms=3, label="FGSM step"),
        Line2D([], [], color="0.3", ls=":", marker="s", ms=3, label="random signs"),
        Line2D([], [], color="k", ls="--", lw=1.0, label="theory: slope 1"),
        Line2D([], [], color="0.5", ls="--", lw=1.0, label="theory: slope 1/2"),
    ]
    plots.legend_below(ax1, ncol=2, handles=handles)
    ax1.set_xlabel(plots.axis_label("d"))
    ax1.set_ylabel(rf"mean $|\Delta f|$ ($\ell_\infty$ step {cfg['dim_eps']:g})")
    ax1.set_title(f"(a) logit change ({cfg['synthetic']})")
    ax2.plot(dims, np.sqrt(dims), ls="--", color="k", lw=1.0, label=r"theory: $\sqrt{d}$")
    ax2.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax2.yaxis.set_major_formatter(ScalarFormatter())
    ax2.yaxis.set_minor_formatter(NullFormatter())
    ax2.set_xlabel(plots.axis_label("d"))
    ax2.set_ylabel("FGSM / random-sign change")
    ax2.set_title("(a) ratio")
    plots.legend_below(ax2, ncol=1)
    return plots.save(fig, out, "linearity_dimension")


@plots.styled
def _plot_rays(rows, summary, out: Path) -> list[Path]:
    fig, (ax1, ax2, ax3) = plots.new_figure(3, 3.4, 4.4)
    widths = sorted({r["width"] for r in select(rows, part="b", model="net", metric="ray_kinks")})
    shown = sorted({widths[0], widths[len(widths) // 2], widths[-1]})
    for i, w in enumerate(shown):
        sub = select(rows, part="b", model="net", width=w, metric="ray_example")
        ax1.plot(
            [r["t"] for r in sub], [r["value"] for r in sub], color=f"C{i}", lw=1.0, label=f"net $m = {w}$"
        )
    sub = select(rows, part="b", model="net", width=shown[-1], metric="ray_example_limit")
    ax1.plot(
        [r["t"] for r in sub],
        [r["value"] for r in sub],
        color="k",
        ls="--",
        lw=1.0,
        label=rf"$m = \infty$ (ray of $m = {shown[-1]}$)",
    )
    ax1.axhline(0.0, color="0.75", lw=0.6)
    ax1.axvline(0.0, color="0.75", lw=0.6)
    ax1.set_xlabel(r"$t$ in $x + t\,\mathrm{sign}\,\nabla_x L$")
    ax1.set_ylabel(r"logit $f$ (centred)")
    ax1.set_title("(b) along an FGSM ray")
    plots.legend_below(ax1, ncol=1)
    plots.plot_metric(ax2, rows, "width", "ray_sup_gap", label="measured", logy=True, part="b", model="net")
    plots.theory_slope(
        ax2, widths, summary["ray_sup_gap_by_width"][str(widths[0])], -0.5, label=r"theory: slope $-1/2$"
    )
    ax2.set_xlabel(plots.axis_label("width"))
    ax2.set_ylabel(r"$\sup |f_m - f_\infty|$ / range of $f_\infty$")
    ax2.set_title(f"(b) gap, slope {summary['ray_sup_gap_slope']:+.2f}")
    plots.legend_below(ax2, ncol=1)
    plots.plot_metric(
        ax3, rows, "width", "ray_kinks", label=r"kinks in $[-T, T]$", logy=True, part="b", model="net"
    )
    plots.theory_slope(
        ax3, widths, summary["ray_kinks_by_width"][str(widths[0])], 1.0, label="theory: slope 1"
    )
    ax3.set_xlabel(plots.axis_label("width"))
    ax3.set_ylabel("kinks per ray")
    ax3.set_title(f"(b) kinks, slope {summary['ray_kinks_slope']:+.2f}")
    ax3.plot([], [], ls="none", label=f"linear between kinks to {summary['ray_pl_residual_max']:.0e}")
    plots.legend_below(ax3, ncol=1)
    return plots.save(fig, out, "linearity_ray")


@plots.styled
def _plot_fgsm(rows, summary, out: Path, parts) -> list[Path]:
    cfg = summary["config"]
    panels = [p for p in ("c", "d") if p in parts]
    fig, axes = plots.new_figure(len(panels), 3.8, 3.0)
    for ax, part in zip(axes, panels):
        if part == "c":
            widths = sorted(cfg["widths"])
            cmap = plots.plt.get_cmap("viridis")
            for i, w in enumerate(widths):
                plots.plot_metric(
                    ax,
                    rows,
                    "eps",
                    "fgsm_error",
                    label=f"net m={w}",
                    logx=None,
                    color=cmap(0.1 + 0.75 * i / max(len(widths) - 1, 1)),
                    part="c",
                    model="net",
                    width=w,
                )
            plots.plot_metric(
                ax,
                rows,
                "eps",
                "fgsm_error",
                label="logistic regression",
                color="C3",
                logx=None,
                part="c",
                model="linear",
            )
            plots.plot_metric(
                ax,
                rows,
                "eps",
                "fgsm_error",
                label="RBF machine",
                color="C1",
                logx=None,
                part="c",
                model="rbf",
            )
            line = plots.plot_metric(
                ax,
                rows,
                "eps",
                "fgsm_error",
                label="infinite width",
                color="k",
                logx=None,
                part="c",
                model="limit",
            )
            line.set_linestyle("--")
            line.set_marker("")
            ax.set_title(f"(c) FGSM error ({summary['dataset']})")
        else:
            names = {
                "clean": "clean training",
                "fgsm": f"adversarial training (alpha={cfg['adv_alpha']:g})",
                "noise": "random-sign noise training",
            }
            for i, mode in enumerate(ADV_MODES):
                plots.plot_metric(
                    ax,
                    rows,
                    "eps",
                    "fgsm_error",
                    label=names[mode],
                    color=f"C{i}",
                    logx=None,
                    part="d",
                    model=f"train_{mode}",
                )
            ax.axvline(
                cfg["adv_eps"], color="0.5", ls=":", lw=0.8, label=f"training eps = {cfg['adv_eps']:g}"
            )
            ax.set_title(f"(d) adversarial training, net m={cfg['net']['width']}")
        ax.set_xlabel("eps (L-inf)")
        ax.set_ylabel("FGSM test error")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(frameon=False, loc="upper left", fontsize=6)
    return plots.save(fig, out, "linearity_fgsm")
