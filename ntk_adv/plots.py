"""Paper-style figures from long-format result tables only (never from training code).

Conventions: log2 width axes, mean over seeds with a shaded 95% Student-t interval, the theoretical value
(or slope) as a dashed line; every figure is saved as PNG and PDF.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ntk_adv.metrics import mean_ci
from ntk_adv.results import select, values

PAPER_RC = {
    "figure.figsize": (4.0, 3.0),
    "figure.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.4,
    "savefig.bbox": "tight",
}


def new_figure(ncols: int = 1, width: float = 4.0, height: float = 3.0):
    with plt.rc_context(PAPER_RC):
        fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


def save(fig, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.png`` and ``.pdf``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    with plt.rc_context(PAPER_RC):
        for p in paths:
            fig.savefig(p)
    plt.close(fig)
    return paths


def curve(rows: Iterable[dict], x: str, metric: str, *, geometric: bool = False, **where
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-x mean and 95% interval of ``metric`` over the rows (seeds) matching ``where``.

    ``geometric=True`` (used for log-scale y axes): mean and interval of log(value), exponentiated - the
    geometric mean with a multiplicative 95% interval, consistent with log-log slope fits."""
    sub = select(rows, metric=metric, **where)
    xs = values(sub, x)
    tf, inv = (np.log, np.exp) if geometric else (np.asarray, np.asarray)
    stats_ = [mean_ci(tf(np.asarray([r["value"] for r in sub if r[x] == xv], float))) for xv in xs]
    return (np.asarray(xs, float), inv(np.array([s.mean for s in stats_])), inv(np.array([s.low for s in stats_])),
            inv(np.array([s.high for s in stats_])))


def plot_metric(ax, rows, x: str, metric: str, *, label: str | None = None, color=None, logx: int | None = 2,
                logy: bool = False, **where):
    """Mean with shaded 95% interval of ``metric`` against ``x`` on ``ax``."""
    xs, mean, low, high = curve(rows, x, metric, geometric=logy, **where)
    if xs.size == 0:
        raise ValueError(f"no rows for metric {metric!r} with {where}")
    (line,) = ax.plot(xs, mean, marker="o", ms=3, label=label or metric, color=color)
    ax.fill_between(xs, low, high, alpha=0.25, color=line.get_color(), lw=0)
    if logx:
        ax.set_xscale("log", base=logx)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    return line


def theory_line(ax, value: float, *, label: str = "theory (infinite width)", color="k"):
    """Horizontal dashed line at a predicted value."""
    ax.axhline(value, ls="--", color=color, lw=1.0, label=label)


def theory_slope(ax, xs: Sequence[float], anchor_y: float, slope: float, *, label: str | None = None, color="k"):
    """Dashed power law y = anchor_y (x / x_0)^slope through the first point (log-log reference)."""
    xs = np.asarray(xs, float)
    ax.plot(xs, anchor_y * (xs / xs[0]) ** slope, ls="--", color=color, lw=1.0,
            label=label or f"theory slope {slope:g}")
