"""Figures of the experiment, read from the long-format rows and the summary: intriguing_distortion (a),
intriguing_noise (b), intriguing_transfer (c), intriguing_probes (d, e) (.png and .pdf)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ntk_adv import plots
from ntk_adv.results import select


def plot(rows, summary, out: Path) -> list[Path]:
    parts = set(summary["config"]["parts"])
    paths = []
    if "a" in parts:
        paths += _distortion(rows, summary, out)
    if "b" in parts:
        paths += _noise(rows, summary, out)
    if "c" in parts:
        paths += _transfer(rows, summary, out)
    if parts & {"d", "e"}:
        paths += _probes(rows, summary, out, parts)
    return paths


@plots.styled
def _distortion(rows, summary, out: Path) -> list[Path]:
    cfg = summary["config"]
    fig, (ax1, ax2) = plots.new_figure(2, 3.8, 3.0)
    full0 = dict(part="a", model="net", decay=0.0, train_set="full")
    sub = [r for r in select(rows, metric="distortion", **full0) if r["width"] in cfg["widths"]]
    plots.plot_metric(ax1, sub, "width", "distortion", label="finite width (mean, 95% CI)")
    plots.theory_line(ax1, summary["distortion_limit"], label="infinite width")
    ax1.set_xlabel("width m")
    ax1.set_ylabel("mean minimal distortion (RMS per pixel)")
    ax1.set_title("(a) minimal L-BFGS distortion vs width")
    ax1.legend(frameon=False, loc="lower right")
    decays = sorted(cfg["decays"])
    where = dict(part="a", width=cfg["decay_width"], train_set="full")
    plots.plot_metric(
        ax2,
        select(rows, model="net", **where),
        "decay",
        "distortion",
        label=f"distortion, net m={cfg['decay_width']}",
        logx=None,
    )
    plots.plot_metric(
        ax2,
        select(rows, model="net", **where),
        "decay",
        "test_error",
        color="C3",
        label="clean test error",
        logx=None,
    )
    nonzero = [v for v in decays if v > 0]
    if nonzero:
        ax2.set_xscale("symlog", linthresh=min(nonzero))
    ax2.set_xlabel("weight decay lambda (anchored at init)")
    ax2.set_title("(a) distortion and clean error vs weight decay")
    ax2.legend(frameon=False)
    return plots.save(fig, out, "intriguing_distortion")


@plots.styled
def _noise(rows, summary, out: Path) -> list[Path]:
    cfg = summary["config"]
    fig, (ax,) = plots.new_figure(1, 4.2, 3.1)
    cmap = plots.plt.get_cmap("viridis")
    widths = sorted(cfg["widths"])
    for i, w in enumerate(widths):
        plots.plot_metric(
            ax,
            rows,
            "multiple",
            "noise_error",
            label=f"Gaussian noise, m={w}",
            logx=None,
            color=cmap(0.1 + 0.75 * i / max(len(widths) - 1, 1)),
            part="b",
            model="net",
            width=w,
        )
    line = plots.plot_metric(
        ax,
        rows,
        "multiple",
        "noise_error",
        label="Gaussian noise, infinite width",
        logx=None,
        color="k",
        part="b",
        model="limit",
    )
    line.set_linestyle("--")
    adv = [t["adversarial_error"] for t in summary["noise_vs_adversarial"].values()]
    ax.plot(
        [1.0], [np.mean(adv)], marker="*", ms=11, color="C3", ls="none", label="minimal L-BFGS perturbation"
    )
    ax.axhspan(0, cfg["noise_tolerance"], color="0.9", lw=0, label=f"tolerance {cfg['noise_tolerance']:g}")
    ax.set_xlabel("perturbation L2 norm / mean minimal adversarial norm")
    ax.set_ylabel("test error (attacked points)")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title("(b) adversarial vs Gaussian perturbations")
    ax.legend(frameon=False, loc="center right", fontsize=6.5)
    return plots.save(fig, out, "intriguing_noise")


def model_groups(names: list[str]) -> list[tuple[float, str]]:
    r"""(centre index, label) of each run of models of one width in ``names`` (``m=16 s0``, ``m=1024 half A``,
    ``limit half B``, ...): one tick per width (``16``, ..., ``$\infty$``), never one per model."""
    groups: list[list] = []
    for i, n in enumerate(names):
        key = n.split()[0]
        if groups and groups[-1][0] == key:
            groups[-1][2] = i
        else:
            groups.append([key, i, i])
    label = lambda key: r"$\infty$" if key == "limit" else key.removeprefix("m=")
    return [((lo + hi) / 2, label(key)) for key, lo, hi in groups]


@plots.styled
def _transfer(rows, summary, out: Path) -> list[Path]:
    cfg = summary["config"]
    sub = select(rows, part="c", metric="transfer")
    names = list(dict.fromkeys(r["source"] for r in sub))
    fig, axes = plots.new_figure(3, 3.6, 4.4)
    index = {n: i for i, n in enumerate(names)}
    groups = model_groups(names)
    bounds = [i - 0.5 for i in range(1, len(names)) if names[i].split()[0] != names[i - 1].split()[0]]
    amp = f"{cfg['amplify']:g}"
    for ax, variant in zip(axes[:2], ("eta", "amplified")):
        mat = np.full((len(names), len(names)), np.nan)
        for r in select(sub, variant=variant):
            if r["target"] in index:
                mat[index[r["source"]], index[r["target"]]] = r["value"]
        im = ax.imshow(mat, vmin=0, vmax=1, cmap="magma")
        for b in bounds:  # the width groups (seeds, halves) apart
            ax.axhline(b, color="w", lw=0.6)
            ax.axvline(b, color="w", lw=0.6)
        ax.set_xticks([c for c, _ in groups], [t for _, t in groups])
        ax.set_yticks([c for c, _ in groups], [t for _, t in groups])
        ax.tick_params(length=0)
        ax.set_xlabel(r"target width $m$")
        ax.set_ylabel(r"source width $m$")
        ax.set_title(r"(c) $x + \eta$" if variant == "eta" else rf"(c) $x + {amp}\,\eta$")
    cb = fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    cb.set_label("transfer error")
    ax = axes[2]
    for metric, label, color in (
        ("transfer_net_net", r"net $\to$ net (same $m$)", "C0"),
        ("transfer_net_limit", r"net $\to$ limit", "C1"),
    ):
        plots.plot_metric(
            ax, select(rows, part="c", variant="amplified"), "width", metric, label=label, color=color
        )
    ax.axhline(cfg["transfer_floor"], color="0.5", lw=0.8, ls=":", label="predicted floor")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel(plots.axis_label("width"))
    ax.set_ylabel(rf"transfer error of $x + {amp}\,\eta$")
    ax.set_title("(c) vs width")
    plots.legend_below(ax, ncol=1)
    return plots.save(fig, out, "intriguing_transfer")


@plots.styled
def _probes(rows, summary, out: Path, parts) -> list[Path]:
    cfg = summary["config"]
    panels = [p for p in ("d", "e") if p in parts]
    fig, axes = plots.new_figure(len(panels), 3.8, 4.2)
    for ax, part in zip(axes, panels):
        if part == "d":
            for metric, label, color in (
                ("purity_units", "hidden units (activation)", "C0"),
                ("purity_random", "random directions (activation)", "C1"),
            ):
                plots.plot_metric(ax, rows, "width", metric, label=label, color=color, part="d")
            line = plots.plot_metric(ax, rows, "width", "purity_chance", label="chance", color="k", part="d")
            line.set_linestyle("--")
            ax.set_ylim(0.45, 1.02)
            ax.set_xlabel("width m")
            ax.set_ylabel(f"top-{cfg['top_k']} label purity (test set)")
            ax.set_title("(d) hidden units vs random directions")
        else:
            lp = summary["lipschitz"]
            widths = sorted(cfg["probe_widths"])
            for state, metric, color in (
                ("init", "lipschitz_ratio_init", "C0"),
                ("trained", "lipschitz_ratio", "C1"),
            ):
                plots.plot_metric(
                    ax, rows, "width", metric, label=f"{state}: measured", logy=True, part="e", color=color
                )
                ax.plot(
                    widths,
                    [lp[state]["theory_by_width"][str(w)] for w in widths],
                    ls="--",
                    color=color,
                    lw=1.0,
                    label=f"{state}: theory",
                )
            ax.axhline(1.0, color="0.6", lw=0.6)
            ax.set_xlabel("width m")
            ax.set_ylabel(r"$\|W\|_2\,\|a\|_2$ / mean $\|\nabla_x f\|_2$")
            ax.set_title("(e) operator-norm Lipschitz bound / true")
        plots.legend_below(ax, ncol=1)
    return plots.save(fig, out, "intriguing_probes")
