"""Paper-style figures from long-format result tables only (never from training code).

Conventions: log2 width axes, log10 axes for other sweeps whose positive values span a factor of 10 or more,
mean over seeds with a shaded 95% interval (the intervals of :mod:`ntk_adv.verdicts`: Student-t; for
proportions the bootstrap over seeds widened to Student-t, or the two-stage bootstrap over seeds and test
points when their number is given - always inside [0, 1]), the
theoretical value (or slope) as a dashed line; axis labels with symbol and unit from :data:`LABELS`; every
figure is saved as PNG and PDF in a venue style (:func:`style`, :data:`STYLES`: tueplots' NeurIPS, ICML and
ICLR bundles and a plain one; default NeurIPS) at the venue's column width (one panel) or text width (several
panels), with its font sizes, mathtext labels and TrueType (Type 42) fonts in the PDF.

Importing this module selects no backend: figures are :class:`matplotlib.figure.Figure` objects drawn without
pyplot's global state, and saving uses the file format's own renderer (Agg for PNG, the PDF backend for PDF).

Rows are dicts with ``metric``, ``value`` and config columns (``width``, ``seed``, ``eps``, ``steps_g``, ...).
**Infinite-width rows**: the canonical marker is ``width = math.inf`` (:data:`ntk_adv.arch.INF_WIDTH`; what
``store.ResultStore.rows`` writes; a CSV stores ``inf`` and ``results.read_csv`` reads it back as ``inf``).
:func:`is_infinite_width` also accepts ``None`` (a blank CSV cell, so a row
with no width column counts as infinite) and the strings ``"inf"``, ``"infinite"``, ``"infinity"``.
Infinite-width results are drawn dashed: a horizontal line against width, a dashed curve against other axes.
Every ``figure_*`` has a ``draw_*`` twin that draws on a given axis (for composition and tests) and
returns the saved paths [png, pdf].
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt  # only for colormaps and rc_context; no backend is selected at import
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ntk_adv.results import atomic_write, select, values
from ntk_adv.verdicts import mean_ci, seed_mean, seed_proportion

_INF_STRINGS = ("inf", "infinite", "infinity")

# ------------------------------------------------------------------------------------------- venue styles
# Base settings every style shares; a style adds its venue's fonts, font sizes and widths (tueplots bundles).
_BASE_RC = {
    "figure.dpi": 150,
    "savefig.dpi": 300,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 3,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,  # TrueType in PDFs (venues refuse Type 3)
    "ps.fonttype": 42,
    "text.usetex": False,  # mathtext: no LaTeX install needed
}
# Times (the venues' text font) where installed, else STIX (a Times clone shipped with matplotlib) or DejaVu:
# never a missing-font warning.
_SERIF_FALLBACK = ["STIXGeneral", "DejaVu Serif"]

STYLES: tuple[str, ...] = ("neurips", "icml", "iclr", "plain")
DEFAULT_STYLE = "neurips"


@functools.cache
def _venue(name: str) -> tuple[float, float, dict]:
    """(column width, text width, rcParams) of the style ``name``: tueplots' bundle of the newest year it
    knows (usetex=False, serif), widths from ``tueplots.figsizes``."""
    if name == "plain":  # the suite's own sans-serif look at two-column widths
        rc = {
            "font.family": "sans-serif",
            "font.size": 8,
            "axes.titlesize": 8,
            "axes.labelsize": 8,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "legend.fontsize": 7,
            "mathtext.fontset": "dejavusans",
        }
        return 3.25, 6.75, rc
    from tueplots import bundles, figsizes

    if name == "neurips":  # single column: one panel spans the text width
        bundle = bundles.neurips2024(usetex=False, family="serif")
        column = text = figsizes.neurips2024(nrows=1, ncols=1)["figure.figsize"][0]
    elif name == "iclr":
        bundle = bundles.iclr2024(usetex=False, family="serif")
        column = text = figsizes.iclr2024(nrows=1, ncols=1)["figure.figsize"][0]
    elif name == "icml":
        bundle = bundles.icml2024(usetex=False, family="serif", column="half")
        column = figsizes.icml2024_half(nrows=1, ncols=1)["figure.figsize"][0]
        text = figsizes.icml2024_full(nrows=1, ncols=1)["figure.figsize"][0]
    else:
        raise ValueError(f"unknown figure style {name!r}; expected one of {', '.join(STYLES)}")
    rc = {k: v for k, v in bundle.items() if not k.startswith(("figure.", "savefig."))}
    rc["font.serif"] = [*bundle.get("font.serif", []), *_SERIF_FALLBACK]
    rc["mathtext.fontset"] = "stix"  # Times-like math beside Times (or STIX) text
    return float(column), float(text), rc


_ACTIVE_STYLE: contextvars.ContextVar[str] = contextvars.ContextVar(
    "ntk_adv_plots_style", default=DEFAULT_STYLE
)


def style_rc(name: str | None = None) -> dict:
    """The rcParams of style ``name`` (default: the active one, see :func:`style`)."""
    return {**_BASE_RC, **_venue(name or active_style())[2]}


def active_style() -> str:
    """The name of the style in force: the innermost :func:`style` context, else :data:`DEFAULT_STYLE`."""
    return _ACTIVE_STYLE.get()


def column_width(name: str | None = None) -> float:
    """Inches: a one-panel figure's width in style ``name`` (default: the active style)."""
    return _venue(name or active_style())[0]


def text_width(name: str | None = None) -> float:
    """Inches: a several-panel figure's width (the venue's text width) in style ``name``."""
    return _venue(name or active_style())[1]


@contextlib.contextmanager
def style(name: str = DEFAULT_STYLE):
    """Draw and save figures in the venue style ``name`` (one of :data:`STYLES`) inside the block::

        with plots.style("icml"):
            experiments.halfway.main(cfg, out)

    ``neurips`` (default) and ``iclr``: serif (Times, else STIX) 9 pt labels, 7 pt ticks, every figure 5.5 in
    wide (single-column venues); ``icml``: 8/6 pt, 3.25 in for one panel, 6.75 in for several; ``plain``:
    DejaVu Sans 8/7 pt at 3.25 / 6.75 in. Fonts, sizes and widths are tueplots' bundles (usetex=False,
    mathtext). Pure: a :func:`matplotlib.rc_context` and a context variable, both restored on exit."""
    if name not in STYLES:
        raise ValueError(f"unknown figure style {name!r}; expected one of {', '.join(STYLES)}")
    token = _ACTIVE_STYLE.set(name)
    try:
        with plt.rc_context(style_rc(name)):
            yield name
    finally:
        _ACTIVE_STYLE.reset(token)


COLUMN_WIDTH = 5.5  # inches: one panel in the default style (NeurIPS: single column, text width 5.5 in)
TEXT_WIDTH = 5.5  # inches: several panels in the default style; other styles: column_width(), text_width()
PAPER_RC = {**_BASE_RC}  # the shared base; the active style's full rcParams: style_rc()


# Axis labels: column or metric name -> label with symbol and unit (norm). Unknown names are never printed
# raw: see :func:`axis_label`.
LABELS: dict[str, str] = {
    "width": r"width $m$",
    "eps": r"$\varepsilon$ ($\ell_2$)",
    "eps_linf": r"$\varepsilon$ ($\ell_\infty$)",
    "steps_f": r"steps of $f$, $T_f$",
    "steps_g": r"steps of $g$, $T_g$",
    "T_f": r"steps of $f$, $T_f$",
    "T_g": r"steps of $g$, $T_g$",
    "lr_f": r"learning rate of $f$",
    "lr_g": r"learning rate of $g$",
    "lr": "learning rate",
    "d": r"input dimension $d$",
    "data.d": r"input dimension $d$",
    "n_train": r"training points $N$",
    "data.n_train": r"training points $N$",
    "gamma": r"leaky-ReLU slope $\gamma$",
    "multiple": "noise norm / adversarial distance",
    "agreement": r"agreement of $\mathrm{sign}\,f$, $\mathrm{sign}\,g$",
    "agreement_predicted": r"agreement (predicted)",
    "g_acc_test": r"test accuracy of $g$",
    "g_acc_train": r"train accuracy of $g$",
    "f_acc_test": r"test accuracy of $f$",
    "cos_predicted": r"mean $|\cos(\eta_n, D_n)|$",
    "value": "measured value",
}
PROPORTION_PREFIXES = ("agreement", "agree_", "acc", "flip_")  # metrics that are fractions of points
PROPORTION_PARTS = ("_acc", "accuracy", "error")


def axis_label(name: str) -> str:
    """The label of a column or metric: :data:`LABELS`, else the name's last dotted part with spaces."""
    if name in LABELS:
        return LABELS[name]
    leaf = name.rsplit(".", 1)[-1]
    return LABELS.get(leaf, leaf.replace("_", " "))


def is_proportion(metric: str) -> bool:
    """A metric that is a fraction in [0, 1] (agreement, accuracy, error rate, flip rate)."""
    return metric.startswith(PROPORTION_PREFIXES) or any(p in metric for p in PROPORTION_PARTS)


def new_figure(ncols: int = 1, width: float | None = None, height: float | None = None, *, nrows: int = 1):
    """A figure of ``nrows`` x ``ncols`` panels, scaled (aspect kept) to the active style's
    :func:`column_width` for one column of panels and :func:`text_width` for several; ``width``/``height``
    give a panel's aspect ratio (default 4:3). Constrained layout (titles, suptitle, colorbars and legends
    outside the axes get room). A plain :class:`~matplotlib.figure.Figure`: no pyplot window, no backend
    switch. Returns (fig, axes) (axes flat)."""
    width, height = width or 4.0, height or 3.0
    target = column_width() if ncols == 1 else text_width()
    scale = target / (width * ncols)
    with plt.rc_context(style_rc()):
        fig = Figure(figsize=(target, height * scale * nrows), layout="constrained")
        fig.get_layout_engine().set(w_pad=2 / 72, h_pad=2 / 72, wspace=0.04, hspace=0.04)
        axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes.ravel()


def styled(fn):
    """Decorator: run a figure function inside the active style's rcParams (artists take their fonts when
    created), so a figure drawn outside any :func:`style` block gets :data:`DEFAULT_STYLE`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style(active_style()):
            return fn(*args, **kwargs)

    return wrapper


def paper_fonts(fig) -> None:
    """The active style's fonts and sizes on every text of ``fig`` (artists created outside the style
    included): titles, axis labels, ticks, legends, colorbar labels, the suptitle."""
    rc = style_rc()
    family = rc.get("font.family", "sans-serif")
    title_size, label_size = rc["axes.titlesize"], rc["axes.labelsize"]
    tick_size, legend_size = rc["xtick.labelsize"], rc["legend.fontsize"]
    for text in fig.findobj(match=lambda a: hasattr(a, "set_fontfamily") and hasattr(a, "get_text")):
        text.set_fontfamily(family)
    if fig._suptitle is not None:
        fig._suptitle.set_fontsize(title_size)
    for ax in fig.axes:
        for title in (ax.title, ax._left_title, ax._right_title):
            title.set_fontsize(title_size)
        # a title wider than its axes would widen the saved (tight) figure past the column: wrap it
        width_pt = ax.get_position().width * fig.get_size_inches()[0] * 72
        chars = max(int(width_pt / (0.42 * title_size)), 20)  # ~0.42 em per character
        if len(ax.get_title()) > chars and "$" not in ax.get_title():  # (never split a formula)
            ax.set_title(textwrap.fill(" ".join(ax.get_title().split()), chars))
        ax.xaxis.label.set_fontsize(label_size)
        ax.yaxis.label.set_fontsize(label_size)
        ax.tick_params(which="both", labelsize=tick_size)
        for axis in (ax.xaxis, ax.yaxis):
            axis.get_offset_text().set_fontsize(tick_size)
        for text in ax.texts:
            text.set_fontsize(legend_size)
        legend = ax.get_legend()
        if legend is not None:
            for t in legend.get_texts():
                t.set_fontsize(legend_size)
        for label in (ax.xaxis.label, ax.yaxis.label):
            text = label.get_text()
            if text in LABELS or (text and "." in text and " " not in text):
                label.set_text(axis_label(text))  # raw field names become labels with symbol and unit
    for legend in fig.legends:
        for t in legend.get_texts():
            t.set_fontsize(legend_size)


def legend_below(ax, ncol: int = 2, *, handles=None, **kw):
    """The legend under the axes (outside the data, below the tick labels and the x label), ``ncol``
    columns; ``handles``: explicit legend handles (default: the labelled artists of ``ax``)."""
    if handles is not None:
        labels = [h.get_label() for h in handles]
    else:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    rc = style_rc()
    if max(len(t) for t in labels) > 28:  # long labels side by side would widen the figure past the column
        ncol = 1
    # clear the x tick labels and the x label: their heights in points, in units of the legend's font size
    clear_pt = (
        rc.get("xtick.major.size", plt.rcParams["xtick.major.size"])
        + plt.rcParams["xtick.major.pad"]
        + 1.3 * rc["xtick.labelsize"]
        + plt.rcParams["axes.labelpad"]
        + 1.6 * rc["axes.labelsize"]
    )
    return ax.legend(
        handles,
        labels,
        frameon=False,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        borderaxespad=clear_pt / rc["legend.fontsize"],
        ncol=min(ncol, len(handles)),
        **kw,
    )


def save(fig, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.png`` and ``.pdf`` in the active style (TrueType fonts, tight box);
    returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    paper_fonts(fig)
    with plt.rc_context(style_rc()):
        for p in paths:
            # a temporary file renamed into place: a planted symlink is replaced, never followed, and a
            # reader never sees half a figure
            atomic_write(p, lambda fh, p=p: fig.savefig(fh, format=p.suffix[1:]), binary=True)
    plt.close(fig)
    return paths


def curve(
    rows: Iterable[dict],
    x: str,
    metric: str,
    *,
    geometric: bool = False,
    n_points: int | None = None,
    **where,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-x mean and 95% interval of ``metric`` over the rows (seeds) matching ``where``.

    ``n_points``: the metric is a proportion over that many test points; the interval is then the two-stage
    bootstrap of :func:`ntk_adv.verdicts.seed_proportion` (inside [0, 1]). Other proportions
    (:func:`is_proportion`): :func:`ntk_adv.verdicts.seed_mean` (a bootstrap over seeds widened to Student-t),
    inside [0, 1] too. ``geometric=True`` (used for log-scale
    y axes): mean and interval of log(value), exponentiated - the geometric mean with a multiplicative 95%
    interval, consistent with log-log slope fits. Otherwise a Student-t interval over seeds."""
    sub = select(rows, metric=metric, **where)
    xs = values(sub, x)
    tf, inv = (np.log, np.exp) if geometric else (np.asarray, np.asarray)
    if n_points:
        interval = lambda v: seed_proportion(v, n_points)
    elif is_proportion(metric) and not geometric:
        interval = lambda v: seed_mean(v, bounds=(0.0, 1.0))
    else:
        interval = mean_ci
    est = [_band(interval, tf(np.asarray([r["value"] for r in sub if r[x] == xv], float))) for xv in xs]
    arr = np.array(est, float).reshape(-1, 3)
    return np.asarray(xs, float), inv(arr[:, 0]), inv(arr[:, 1]), inv(arr[:, 2])


def _band(interval, vals: np.ndarray) -> tuple[float, float, float]:
    """(value, low, high) of ``interval(vals)`` (a :mod:`ntk_adv.verdicts` interval); a proportion with a NaN
    seed (a metric undefined for that seed) leaves a gap in the curve, as its mean would."""
    if not np.all(np.isfinite(vals)) and interval is not mean_ci:
        return (np.nan, np.nan, np.nan)
    e = interval(vals)
    return (e.value, e.low, e.high)


def plot_metric(
    ax,
    rows,
    x: str,
    metric: str,
    *,
    label: str | None = None,
    color=None,
    logx: int | str | None = 2,
    logy: bool = False,
    n_points: int | None = None,
    **where,
):
    """Mean with shaded 95% interval of ``metric`` against ``x`` on ``ax`` (``n_points``: see :func:`curve`);
    ``logx``: a log base, None (linear) or "auto" (log10 for positive values spanning a factor >= 10). The x
    label comes from :func:`axis_label`."""
    rows = list(rows)
    xs, mean, low, high = curve(rows, x, metric, geometric=logy, n_points=n_points, **where)
    if xs.size == 0:
        raise ValueError(f"no rows for metric {metric!r} with {where}")
    (line,) = ax.plot(xs, mean, marker="o", ms=3, label=label or axis_label(metric), color=color)
    ax.fill_between(xs, low, high, alpha=0.25, color=line.get_color(), lw=0)
    if n_points:  # the seeds themselves: a wide marginal interval with every seed in one place reads honestly
        seeds = select(rows, metric=metric, **where)
        sx = [float(r[x]) for r in seeds if r.get(x) is not None and float(r[x]) in set(xs.tolist())]
        sy = [r["value"] for r in seeds if r.get(x) is not None and float(r[x]) in set(xs.tolist())]
        ax.plot(sx, sy, ls="none", marker=".", ms=2.0, alpha=0.5, color=line.get_color(), zorder=2)
    regime = (
        "f_lazy" if metric.startswith(("f_", "cos_")) else REGIME_METRIC
    )  # whose laziness the metric needs
    mark_regime(ax, rows, x, xs, mean, line.get_color(), regime=regime, **where)
    logx = _auto_logx([{x: v} for v in xs], x, logx)
    if logx:
        ax.set_xscale("log", base=logx)
        if logx == 10:
            sweep_ticks(ax, xs)
    if logy:
        ax.set_yscale("log")
        log_ticks(ax, "y")
    ax.set_xlabel(axis_label(x))
    return line


def log_ticks(ax, axis: str = "y") -> None:
    """Readable ticks on a log axis: labels at 1, 2, 5 x 10^k (data within a decade) or 1, 3 x 10^k (within
    two) as plain numbers - matplotlib would label crowded minor ticks ``2 x 10^-1`` - else at the decades
    only; minor ticks never labelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = (ax.dataLim.y0, ax.dataLim.y1) if axis == "y" else (ax.dataLim.x0, ax.dataLim.x1)
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_minor_formatter(NullFormatter())
    if lo > 0 and np.isfinite(hi) and hi / lo < 100:
        subs = (1.0, 2.0, 5.0) if hi / lo < 10 else (1.0, 3.0)
        target.set_major_locator(LogLocator(base=10, subs=subs))
        target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


REGIME_METRIC = "g_lazy"  # per-cell regime label (1 lazy, 0 not) written by the perturbation experiments
NOT_LAZY_LABEL = "hollow: g not lazy (measured)"


def mark_regime(ax, rows, x: str, xs, ys, color, *, regime: str = REGIME_METRIC, **where) -> None:
    """Redraw the markers of the points whose measured regime is not lazy (any seed's ``regime`` label,
    ``g_lazy`` or ``f_lazy``, is 0) hollow, and add one legend entry per axes saying so. Rows without a
    regime label (infinite width, other experiments) are left as they are."""
    reg = select(rows, metric=regime, **where)
    if not reg:
        return
    hollow = [
        i
        for i, xv in enumerate(xs)
        if any(r["value"] < 0.5 for r in reg if r.get(x) is not None and float(r[x]) == float(xv))
    ]
    if not hollow:
        return
    ax.plot(
        np.asarray(xs)[hollow],
        np.asarray(ys)[hollow],
        ls="none",
        marker="o",
        ms=3.6,
        mfc="white",
        mec=color,
        mew=0.9,
        zorder=3,
    )
    if not getattr(ax, "_ntk_adv_regime_legend", False):
        label = NOT_LAZY_LABEL if regime == REGIME_METRIC else NOT_LAZY_LABEL.replace(" g ", " f ")
        ax.plot([], [], ls="none", marker="o", ms=3.6, mfc="white", mec="0.3", label=label)
        ax._ntk_adv_regime_legend = True


def plot_prediction(
    ax, rows, x: str, metric: str, *, label: str | None = None, color=None, ls: str = "--", **where
):
    """The theory's prediction: the mean over seeds of a predicted ``metric`` against ``x``, as a line without
    markers (computed from the limit objects, never fitted to the measurements)."""
    sub = select(rows, metric=metric, **where)
    xs = values(sub, x)
    if not xs:
        return None
    ys = [np.mean([r["value"] for r in sub if r[x] == xv]) for xv in xs]
    (line,) = ax.plot(np.asarray(xs, float), ys, ls=ls, lw=1.1, color=color, label=label)
    return line


def theory_line(ax, value: float, *, label: str = "theory (infinite width)", color="k"):
    """Horizontal dashed line at a predicted value."""
    ax.axhline(value, ls="--", color=color, lw=1.0, label=label)


def theory_slope(
    ax, xs: Sequence[float], anchor_y: float, slope: float, *, label: str | None = None, color="k"
):
    """Dashed power law y = anchor_y (x / x_0)^slope through the first point (log-log reference)."""
    xs = np.asarray(xs, float)
    ax.plot(
        xs,
        anchor_y * (xs / xs[0]) ** slope,
        ls="--",
        color=color,
        lw=1.0,
        label=label or f"theory slope {slope:g}",
    )


# ------------------------------------------------------------------------------------------- width convention
def is_infinite_width(width) -> bool:
    """True for an infinite-width row's ``width``: ``inf``, ``None`` or "inf"/"infinite"/"infinity"."""
    if width is None:
        return True
    if isinstance(width, str):
        return width.strip().lower() in _INF_STRINGS
    try:
        return bool(np.isinf(float(width)))
    except (TypeError, ValueError):
        return False


def split_width(rows: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """(finite-width rows, infinite-width rows) by :func:`is_infinite_width` of the ``width`` column."""
    finite, infinite = [], []
    for r in rows:
        (infinite if is_infinite_width(r.get("width")) else finite).append(r)
    return finite, infinite


def sweep_ticks(ax, xs, axis: str = "x", max_ticks: int = 7) -> None:
    """Clean ticks on a log axis of a factor sweep: the swept values themselves (every k-th when there are
    more than ``max_ticks``) as plain numbers, no minor tick labels (their ``3 x 10^1`` overprint)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    vals = sorted({float(v) for v in np.ravel(xs) if np.isfinite(v) and v > 0})
    if not vals:
        return
    step = int(np.ceil(len(vals) / max_ticks))
    ticks = vals[::step]
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _auto_logx(rows, x, logx):
    if logx != "auto":
        return logx
    xs = [float(r[x]) for r in rows if isinstance(r.get(x), (int, float)) and np.isfinite(float(r[x]))]
    return 10 if xs and min(xs) > 0 and max(xs) / min(xs) >= 10 else None


# ------------------------------------------------------------------------------------------- protocol figures
def draw_vs_width(
    ax,
    rows: Iterable[dict],
    metrics: Sequence[str] = ("agreement", "g_acc_test"),
    *,
    labels: Mapping[str, str] | None = None,
    predictions: Mapping[str, str] | None = None,
    n_points: int | None = None,
    ylabel: str | None = None,
    infinite_label: str = "infinite width",
    infinite_ls: str = "--",
    **where,
):
    """Each metric against width m (log2 axis, mean and 95% interval over seeds) in its own color, with its
    infinite-width mean as a horizontal line of the same color (``infinite_ls``, labelled "<metric>
    (<infinite_label>)") and a light band for its interval when the infinite rows vary over seeds.
    ``predictions`` maps a metric to the row metric holding its per-seed prediction (e.g. agreement ->
    agreement_predicted), drawn dashed in the same color across the finite widths. ``n_points``: proportions
    over that many test points (intervals in [0, 1]). ``where`` filters rows (e.g. ``eps=1.0``)."""
    finite, infinite = split_width(select(rows, **where))
    labels = dict(labels or {})
    predictions = dict(predictions or {})
    for i, metric in enumerate(metrics):
        label = labels.get(metric, axis_label(metric))
        line = plot_metric(ax, finite, "width", metric, label=label, color=f"C{i}", logx=2, n_points=n_points)
        if metric in predictions:
            plot_prediction(
                ax,
                finite,
                "width",
                predictions[metric],
                color=line.get_color(),
                label=f"{label}: predicted (lazy limit)",
            )
        inf_rows = [{**r, "width": 0} for r in infinite if r.get("metric") == metric]
        if inf_rows:
            _, (mean,), (low,), (high,) = curve(inf_rows, "width", metric, n_points=n_points)
            ax.axhline(
                mean, ls=infinite_ls, color=line.get_color(), lw=1.0, label=f"{label} ({infinite_label})"
            )
            if high > low:
                ax.axhspan(low, high, color=line.get_color(), alpha=0.08, lw=0)
    ax.set_xlabel(axis_label("width"))
    ax.set_ylabel(
        ylabel
        or (
            labels.get(metrics[0], axis_label(metrics[0])) if len(metrics) == 1 else "fraction of test points"
        )
    )
    legend_below(ax)
    return ax


@styled
def figure_vs_width(
    rows: Iterable[dict],
    metrics: Sequence[str] = ("agreement", "g_acc_test"),
    *,
    out: str | os.PathLike,
    name: str = "vs_width",
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
    predictions: Mapping[str, str] | None = None,
    n_points: int | None = None,
    ylabel: str | None = None,
    infinite_label: str = "infinite width",
    infinite_ls: str = "--",
    **where,
) -> list[Path]:
    """:func:`draw_vs_width` on a new figure, saved as ``out/name.png`` and ``.pdf``; returns both paths."""
    fig, (ax,) = new_figure(1, 4.2, 3.2)
    draw_vs_width(
        ax,
        list(rows),
        metrics,
        labels=labels,
        predictions=predictions,
        n_points=n_points,
        ylabel=ylabel,
        infinite_label=infinite_label,
        infinite_ls=infinite_ls,
        **where,
    )
    if title:
        ax.set_title(title)
    return save(fig, out, name)


def draw_vs(
    ax,
    rows: Iterable[dict],
    x: str,
    metric: str,
    *,
    widths: Sequence | None = None,
    logx: int | str | None = "auto",
    ylabel: str | None = None,
    xlabel: str | None = None,
    predicted: str | None = None,
    n_points: int | None = None,
    infinite_label: str = "infinite width",
    infinite_ls: str = "--",
    **where,
):
    """``metric`` against the column ``x`` (e.g. ``eps``, ``steps_g``, ``T_f``): one curve per finite width
    (mean and 95% interval over seeds, colors from light to dark with width) and the infinite-width curve
    dashed in black. ``widths`` restricts the finite widths; ``logx`` a log base, None (linear) or "auto"
    (log10 when all x > 0 and they span a decade). ``predicted``: the row metric holding the per-seed
    prediction of ``metric``, drawn dashed in each width's color (the infinite width's in black, dash-dot).
    ``n_points``: proportions over that many test points (intervals in [0, 1])."""
    all_rows = list(rows)
    rows = select(all_rows, metric=metric, **where)
    finite, infinite = split_width(rows)
    all_widths = values(finite, "width")
    widths = all_widths if widths is None else [w for w in all_widths if w in set(widths)]
    if not widths and not infinite:
        raise ValueError(f"no rows for metric {metric!r} with {where}")
    logx = _auto_logx(rows, x, logx)
    cmap = plt.get_cmap("viridis")
    for i, w in enumerate(widths):
        color = cmap(0.15 + 0.7 * i / max(len(widths) - 1, 1))
        plot_metric(
            ax, finite, x, metric, label=f"m = {w:g}", color=color, logx=logx, width=w, n_points=n_points
        )
        if predicted:
            plot_prediction(
                ax,
                select(all_rows, width=w, **where),
                x,
                predicted,
                color=color,
                label=f"m = {w:g}: predicted" if i == len(widths) - 1 else None,
            )
    if infinite:
        line = plot_metric(
            ax, infinite, x, metric, label=infinite_label, color="k", logx=logx, n_points=n_points
        )
        line.set_linestyle(infinite_ls)
    ax.set_xlabel(xlabel or axis_label(x))
    ax.set_ylabel(ylabel or axis_label(metric))
    legend_below(ax)
    return ax


@styled
def figure_vs(
    rows: Iterable[dict],
    x: str,
    metric: str,
    *,
    out: str | os.PathLike,
    name: str | None = None,
    widths: Sequence | None = None,
    logx: int | str | None = "auto",
    ylabel: str | None = None,
    xlabel: str | None = None,
    predicted: str | None = None,
    n_points: int | None = None,
    title: str | None = None,
    infinite_label: str = "infinite width",
    infinite_ls: str = "--",
    **where,
) -> list[Path]:
    """:func:`draw_vs` on a new figure, saved as ``out/name`` (default ``{metric}_vs_{x}``) PNG and PDF."""
    fig, (ax,) = new_figure(1, 4.2, 3.2)
    draw_vs(
        ax,
        list(rows),
        x,
        metric,
        widths=widths,
        logx=logx,
        ylabel=ylabel,
        xlabel=xlabel,
        predicted=predicted,
        n_points=n_points,
        infinite_label=infinite_label,
        infinite_ls=infinite_ls,
        **where,
    )
    if title:
        ax.set_title(title)
    return save(fig, out, name or f"{metric}_vs_{x}")


def draw_cosine_vs_steps_f(
    ax,
    rows: Iterable[dict],
    *,
    x: str = "steps_f",
    metric: str = "cos_predicted",
    logx: int | str | None = "auto",
    **where,
):
    """Mean |cos(eta_n, D_n)| (perturbation vs the predicted weighted sum of training points) against f's
    training length, per width and in the limit (dashed): the init gradient dominates early, D_n later."""
    draw_vs(
        ax,
        rows,
        x,
        metric,
        logx=logx,
        ylabel=axis_label("cos_predicted"),
        xlabel=axis_label("steps_f"),
        predicted="cos_predicted_theory"
        if any(r.get("metric") == "cos_predicted_theory" for r in rows)
        else None,
        **where,
    )
    ax.set_ylim(0.0, 1.02)
    return ax


@styled
def figure_cosine_vs_steps_f(
    rows: Iterable[dict],
    *,
    out: str | os.PathLike,
    name: str = "cosine_vs_steps_f",
    x: str = "steps_f",
    metric: str = "cos_predicted",
    logx: int | str | None = "auto",
    title: str | None = None,
    **where,
) -> list[Path]:
    """:func:`draw_cosine_vs_steps_f` on a new figure, saved as PNG and PDF; returns both paths."""
    fig, (ax,) = new_figure(1, 4.2, 3.2)
    draw_cosine_vs_steps_f(ax, list(rows), x=x, metric=metric, logx=logx, **where)
    if title:
        ax.set_title(title)
    return save(fig, out, name)


# ------------------------------------------------------------------------------------------- decision maps
DEFAULT_CONTOURS = {"hat_f": "--", "hat_g": ":"}


def decision_map(
    ax,
    grid_values: Mapping[str, np.ndarray],
    f_name: str,
    g_name: str,
    extent,
    contours: Mapping[str, str] | None = None,
    *,
    points=None,
    labels=None,
    shade_color: str = "tab:orange",
    legend: bool = True,
):
    """A decision map in a 2-D plane of input space (``protocol.decision_grid`` output).

    ``grid_values``: name -> (n, n) values, ``[i, j]`` at coordinates ``(u_j, v_i)`` with
    ``u = linspace(extent[0], extent[1], n)``, ``v = linspace(extent[2], extent[3], n)``; ``extent`` is
    ``(u_min, u_max, v_min, v_max)`` or r for ``(-r, r, -r, r)``. Shades the cells where sign f != sign g
    (zero counts as +1, as in ``metrics.agreement``), draws the zero level set of each ``contours`` entry
    (name -> linestyle; default hat_f dashed and hat_g dotted, those present in ``grid_values``), and
    optionally scatters projected training ``points`` (P, 2) colored by ``labels`` (P,) in {-1, +1}.
    Returns ``ax``."""
    if np.ndim(extent) == 0:
        extent = (-float(extent), float(extent), -float(extent), float(extent))
    f_vals, g_vals = np.asarray(grid_values[f_name]), np.asarray(grid_values[g_name])
    if f_vals.ndim != 2 or f_vals.shape[0] != f_vals.shape[1] or g_vals.shape != f_vals.shape:
        raise ValueError(
            f"grid values must be square (n, n) arrays of one shape; got {f_vals.shape}, {g_vals.shape}"
        )
    n = f_vals.shape[0]
    u, v = np.linspace(extent[0], extent[1], n), np.linspace(extent[2], extent[3], n)
    disagree = (f_vals >= 0) != (g_vals >= 0)
    ax.pcolormesh(
        u,
        v,
        np.ma.masked_where(~disagree, np.ones_like(f_vals)),
        shading="nearest",
        cmap=ListedColormap([shade_color]),
        vmin=0.0,
        vmax=1.0,
        alpha=0.35,
        lw=0,
    )
    handles = [
        Patch(
            color=shade_color,
            alpha=0.35,
            label=rf"$\mathrm{{sign}}\,{_math(f_name)} \neq \mathrm{{sign}}\,{_math(g_name)}$",
        )
    ]
    if contours is None:
        contours = {k: ls for k, ls in DEFAULT_CONTOURS.items() if k in grid_values}
    for i, (name, ls) in enumerate(contours.items()):
        if name not in grid_values:
            raise KeyError(f"no grid values named {name!r} to contour; have {', '.join(grid_values)}")
        vals = np.asarray(grid_values[name])
        color = ("k", "C0", "0.4", "0.4", "C3", "C2")[i % 6]
        if np.nanmin(vals) < 0 < np.nanmax(vals):
            ax.contour(u, v, vals, levels=[0.0], colors=[color], linestyles=[ls], linewidths=1.2)
        handles.append(Line2D([], [], color=color, ls=ls, label=f"${_math(name)} = 0$"))
    if points is not None:
        pts = np.asarray(points)
        lab = np.ones(len(pts)) if labels is None else np.asarray(labels)
        for sign, color, marker in ((1, "tab:red", "+"), (-1, "tab:blue", "_")):
            sel = lab * sign > 0
            ax.scatter(pts[sel, 0], pts[sel, 1], s=12, c=color, marker=marker, lw=0.8, label=f"y = {sign:+d}")
            handles.append(Line2D([], [], color=color, marker=marker, ls="", label=f"train $y = {sign:+d}$"))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xlabel(r"along $\mu_+ - \mu_-$")
    ax.set_ylabel("orthogonal, class-mean plane")
    if legend:  # beside the map, never over the contours
        ax.legend(
            handles=handles, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0
        )
    return ax


_MATH_NAMES = {"hat_f": r"\hat f", "hat_g": r"\hat g", "f": "f", "g": "g", "B + S": "B + S"}


def _math(name: str) -> str:
    """A predictor's name as mathtext (``hat_f`` -> ``\\hat f``); unknown names verbatim in roman."""
    return _MATH_NAMES.get(name, r"\mathrm{" + name.replace("_", r"\_").replace(" ", r"\ ") + "}")


@styled
def figure_decision_map(
    grid_values: Mapping[str, np.ndarray],
    f_name: str,
    g_name: str,
    extent,
    *,
    out: str | os.PathLike,
    name: str = "decision_map",
    contours: Mapping[str, str] | None = None,
    points=None,
    labels=None,
    title: str | None = None,
) -> list[Path]:
    """:func:`decision_map` on a new figure (the square map with its legend beside it), saved as PNG and PDF;
    returns both paths."""
    fig, (ax,) = new_figure(1, 5.2, 3.2)
    decision_map(ax, grid_values, f_name, g_name, extent, contours, points=points, labels=labels)
    if title:
        ax.set_title(title)
    return save(fig, out, name)
