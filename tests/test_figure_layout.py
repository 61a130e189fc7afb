"""Every figure function renders without overlapping text and without a legend over the data, in every venue
style (:data:`ntk_adv.plots.STYLES`).

The inputs are the committed results under ``figures/`` (results.csv, pairs.csv, neurons.csv, summary.json:
real outputs, read in well under a second) or tiny synthetic grids; nothing is trained (the eps sweep's
first-order curve computes one kernel). ``plots.save`` is replaced by a capture that applies the style's fonts
(what ``save`` does) and keeps the figure, so no file is written.

Covered: the reviewer's five figures (issue 24: halfway, purification, intriguing_transfer,
n_train/agreement_vs_N, the decision maps) in every style; every figure of halfway, purification, intriguing,
linearity, convergence, depth, reproduce, ilyas, targets and the perturbation-learning sweeps (width, eps,
steps_f, steps_g, d, n_train: agreement, gap and cosine figures) in the default style.

The extents are matplotlib's own: after ``fig.canvas.draw()``, ``get_window_extent(renderer)`` of every
visible, non-empty text (suptitle, titles, axis labels, drawn tick labels, offset texts, annotations, legend
texts, colorbar labels); two boxes may touch by at most 1 px. A legend's box must not hold a data marker, a
bar, a scatter point or a contour vertex of its axes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.contour import ContourSet
from matplotlib.patches import Rectangle

from ntk_adv import plots
from ntk_adv.results import read_csv

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
TOL = 1.0  # pixels two boxes may share


# ------------------------------------------------------------------------------------------- extents
def _ticks_drawn(axis):
    """The ticks matplotlib draws (inside the view interval), not every tick the locator made."""
    return axis._update_ticks()


def text_boxes(fig, renderer) -> list[tuple[str, str, object]]:
    """(kind, text, window extent) of every visible non-empty text of ``fig``."""
    out = []

    def add(kind, t):
        if t is None or not t.get_visible() or not t.get_text().strip():
            return
        bb = t.get_window_extent(renderer)
        if bb.width > 0 and bb.height > 0:
            out.append((kind, t.get_text(), bb))

    add("suptitle", fig._suptitle)
    for t in fig.texts:
        if t is not fig._suptitle:
            add("figure text", t)
    legends = list(fig.legends)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for t in (ax.title, ax._left_title, ax._right_title):
            add("title", t)
        for axis in (ax.xaxis, ax.yaxis):
            add("axis label", axis.label)
            add("offset text", axis.get_offset_text())
            for tick in _ticks_drawn(axis):
                if tick.get_visible():
                    add("tick label", tick.label1)
                    add("tick label", tick.label2)
        for t in ax.texts:
            add("text", t)
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    for leg in legends:
        if leg.get_visible():
            add("legend title", leg.get_title())
            for t in leg.get_texts():
                add("legend text", t)
    return out


def _overlap(a, b, tol: float = TOL) -> bool:
    return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def _inside(points: np.ndarray, bb, tol: float = TOL) -> bool:
    if points.size == 0:
        return False
    p = points[np.all(np.isfinite(points), axis=1)]
    return bool(
        np.any(
            (p[:, 0] > bb.x0 + tol)
            & (p[:, 0] < bb.x1 - tol)
            & (p[:, 1] > bb.y0 + tol)
            & (p[:, 1] < bb.y1 - tol)
        )
    )


def text_overlaps(fig) -> list[str]:
    renderer = fig.canvas.get_renderer()
    boxes = text_boxes(fig, renderer)
    bad = []
    for i, (k1, t1, b1) in enumerate(boxes):
        for k2, t2, b2 in boxes[i + 1 :]:
            if _overlap(b1, b2):
                bad.append(f"{k1} {t1!r} overlaps {k2} {t2!r}")
    return bad


def legends_over_data(fig) -> list[str]:
    """A legend box holding its axes' data: line vertices (in data coordinates), bars, scatter points,
    contour vertices - only the points inside the axes (drawn), as displayed."""
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is None or not leg.get_visible():
            continue
        lb = leg.get_window_extent(renderer)
        ab = ax.get_window_extent(renderer)

        def shown(pts, ab=ab):
            pts = np.asarray(pts, float).reshape(-1, 2)
            keep = (pts[:, 0] >= ab.x0) & (pts[:, 0] <= ab.x1) & (pts[:, 1] >= ab.y0) & (pts[:, 1] <= ab.y1)
            return pts[keep]

        for line in ax.lines:
            if line.get_visible() and line.get_transform() is ax.transData and len(line.get_xydata()):
                if _inside(shown(ax.transData.transform(line.get_xydata())), lb):
                    bad.append(f"legend of {ax.get_title()!r} over line {line.get_label()!r}")
        for patch in ax.patches:
            if isinstance(patch, Rectangle) and patch.get_visible() and patch.get_height() != 0:
                if _overlap(patch.get_window_extent(renderer), lb):
                    bad.append(f"legend of {ax.get_title()!r} over a bar")
                    break
        for coll in ax.collections:
            if not coll.get_visible():
                continue
            if isinstance(coll, ContourSet):
                pts = [
                    coll.get_transform().transform(p.vertices) for p in coll.get_paths() if len(p.vertices)
                ]
                if pts and _inside(shown(np.concatenate(pts)), lb):
                    bad.append(f"legend of {ax.get_title()!r} over a contour")
            elif isinstance(coll, PathCollection) and len(coll.get_offsets()):
                pts = coll.get_offset_transform().transform(coll.get_offsets())
                if _inside(shown(pts), lb):
                    bad.append(f"legend of {ax.get_title()!r} over scatter points")
    return bad


# ------------------------------------------------------------------------------------------- rendering
@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Replace ``plots.save``: apply the style's fonts (as ``save`` does), keep (name, figure); no files."""
    figs = []

    def fake_save(fig, out, name):
        plots.paper_fonts(fig)
        figs.append((name, fig))
        return [Path(out) / f"{name}.png", Path(out) / f"{name}.pdf"]

    monkeypatch.setattr(plots, "save", fake_save)
    return figs


def _problems(name: str, fig) -> list[str]:
    FigureCanvasAgg(fig)  # a plain Figure has no canvas of its own
    fig.canvas.draw()
    return [f"{name}: {p}" for p in text_overlaps(fig) + legends_over_data(fig)]


def _rows(*parts) -> list[dict]:
    return read_csv(FIGURES.joinpath(*parts))


def _summary(*parts) -> dict:
    return json.loads(FIGURES.joinpath(*parts).read_text())


def _halfway(out):
    from experiments.halfway import plot

    d = ("report", "halfway")
    plot(_rows(*d, "results.csv"), _rows(*d, "pairs.csv"), _summary(*d, "summary.json"), out)


def _purification(out):
    from experiments.purification import plot

    d = ("report", "purification")
    plot(_rows(*d, "results.csv"), _rows(*d, "neurons.csv"), _summary(*d, "summary.json"), out)


def _intriguing(out):
    from experiments.intriguing import plot

    plot(_rows("report", "intriguing", "results.csv"), _summary("report", "intriguing", "summary.json"), out)


def pl_config(summary: dict):
    """The perturbation-learning Config of a committed summary (fields it no longer has are dropped)."""
    from experiments.perturbation_learning.config import Config
    from ntk_adv.data import DataSpec

    raw = dict(summary["config"])
    names = {f.name for f in dataclasses.fields(Config)}
    data_names = {f.name for f in dataclasses.fields(DataSpec)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in names and k != "data"}
    kw.pop("run", None)
    data = DataSpec(**{k: v for k, v in raw["data"].items() if k in data_names})
    return Config(data=data, **kw)


def _n_train(out):
    from experiments.perturbation_learning.figures import figures

    summary = _summary("n_train", "summary.json")
    figures(pl_config(summary), _rows("n_train", "results.csv"), out)


def _decision_map(out):
    """A map whose contours and points fill the whole square (a legend inside the axes cannot avoid them)."""
    n = 41
    u = np.linspace(-1, 1, n)
    uu, vv = np.meshgrid(u, u)
    grid = {
        "f": uu + 0.1,
        "g": uu - 0.3 * vv,
        "hat_f": uu + 0.5 * vv - 0.2,
        "hat_g": vv - 0.6 * uu,
        "B + S": uu + vv,
    }
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.95, 0.95, (60, 2))
    plots.figure_decision_map(
        grid,
        "f",
        "g",
        1.0,
        out=out,
        name="decision_map",
        points=pts,
        labels=np.sign(pts[:, 0]),
        contours={"f": "-", "g": (0, (5, 1)), "hat_f": "--", "hat_g": ":", "B + S": "-."},
        title="width 4096, $\\varepsilon = 1$",
    )


# The reviewer's five figures (issue 24, item 3): each must be clean in every style.
NAMED = {
    "halfway": (_halfway, {"halfway"}),
    "purification": (_purification, {"purification"}),
    "intriguing": (_intriguing, {"intriguing_transfer"}),
    "n_train": (_n_train, {"agreement_vs_N"}),
    "decision_map": (_decision_map, {"decision_map"}),
}


def _linearity(out):
    from experiments.linearity import plot

    plot(_rows("report", "linearity", "results.csv"), _summary("report", "linearity", "summary.json"), out)


def _convergence(out):
    from experiments.convergence import plot

    plot(_rows("depth", "convergence", "results.csv"), _summary("depth", "convergence", "summary.json"), out)


def _depth(out):
    from experiments.depth import agreement_vs_depth

    panels = {p: _rows("depth", p, "results.csv") for p in ("agreement", "agreement_balanced")}
    n_test = _summary("depth", "agreement", "summary.json").get("n_test")
    agreement_vs_depth(panels, out, int(n_test or 0) or None)


def _reproduce(out):
    from experiments.reproduce import figure

    for panel in ("shifted_gauss_a_eps", "shifted_gauss_a_gamma"):
        summary = _summary("reproduce", panel, "summary.json")
        figure(summary["panel"], summary["settings"], summary["points"], out)


def from_dict(cls, raw: dict):
    """A (nested) config dataclass from its JSON form; fields it no longer has are dropped, lists become
    tuples."""
    import typing

    hints = typing.get_type_hints(cls)
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw or f.name == "run":
            continue
        v, hint = raw[f.name], hints.get(f.name)
        if isinstance(v, dict) and dataclasses.is_dataclass(hint):
            v = from_dict(hint, v)
        elif isinstance(v, list):
            v = tuple(v)
        kw[f.name] = v
    return cls(**kw)


def _ilyas(out):
    from experiments import ilyas

    summary = _summary("report", "ilyas", "summary.json")
    cfg = from_dict(ilyas.Config, summary["config"])
    ilyas.figures(cfg, _rows("report", "ilyas", "results.csv"), out, summary["n_test"], summary["n_classes"])


def _targets(out):
    from experiments import perturbation_learning as pl
    from experiments import targets

    base = ("report", "targets")
    cfg = from_dict(targets.Config, _summary(*base, "summary.json")["config"])
    runs = {
        kind: {
            axis: (
                _summary(*base, f"{kind}_{axis}", "summary.json"),
                _rows(*base, f"{kind}_{axis}", "results.csv"),
            )
            for axis in ("n_train", "eps")
        }
        for kind in targets.KINDS
    }
    targets.figure(cfg, runs, out, pl.n_test_points(cfg.sweeps("random")["eps"]))


def _sweeps(out):
    """The perturbation-learning figures of the committed sweeps figures/width, eps, steps_f, steps_g, d."""
    from experiments.perturbation_learning.figures import figures

    for sweep in ("width", "eps", "steps_f", "steps_g", "d"):
        figures(pl_config(_summary(sweep, "summary.json")), _rows(sweep, "results.csv"), out / sweep)


# Every other figure function the committed results can feed, in the default style: all figures each draws.
OTHERS = {
    "halfway": _halfway,
    "purification": _purification,
    "intriguing": _intriguing,
    "n_train": _n_train,
    "linearity": _linearity,
    "convergence": _convergence,
    "depth": _depth,
    "reproduce": _reproduce,
    "ilyas": _ilyas,
    "targets": _targets,
    "sweeps": _sweeps,
}


@pytest.mark.parametrize("case", list(OTHERS))
def test_every_figure_has_no_overlaps(case, captured, tmp_path):
    with plots.style(plots.DEFAULT_STYLE):
        OTHERS[case](tmp_path)
        assert captured, f"{case} drew no figure"
        problems = [p for name, fig in captured for p in _problems(name, fig)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("style", plots.STYLES)
@pytest.mark.parametrize("case", list(NAMED))
def test_named_figures_have_no_overlaps(case, style, captured, tmp_path):
    draw, names = NAMED[case]
    with plots.style(style):
        draw(tmp_path)
        drawn = {name for name, _ in captured}
        assert names <= drawn, f"{case} drew {sorted(drawn)}, expected {sorted(names)}"
        problems = [p for name, fig in captured if name in names for p in _problems(name, fig)]
    assert not problems, "\n".join(problems)


def test_detector_catches_overlaps():
    """The checks are live: two texts at one place and a legend over a bar are both reported."""
    fig, (ax,) = plots.new_figure()
    ax.bar([0, 1], [1, 1], label="bars")
    ax.legend(loc="center")
    ax.text(0.5, 0.5, "one", transform=ax.transAxes)
    ax.text(0.5, 0.5, "two", transform=ax.transAxes)
    problems = _problems("t", fig)
    assert any("'one' overlaps text 'two'" in p for p in problems)
    assert any("over a bar" in p for p in problems)


def test_style_is_pure():
    """``plots.style`` leaves no rcParams or active style behind; an unknown name is refused."""
    import matplotlib

    before = dict(matplotlib.rcParams)
    with plots.style("icml"):
        assert plots.active_style() == "icml" and plots.column_width() == pytest.approx(3.25)
        assert plots.text_width() == pytest.approx(6.75)
        assert matplotlib.rcParams["font.family"] == ["serif"]
    assert dict(matplotlib.rcParams) == before and plots.active_style() == plots.DEFAULT_STYLE
    assert plots.column_width() == pytest.approx(5.5) == plots.text_width("neurips")
    with pytest.raises(ValueError, match="unknown figure style"):
        with plots.style("nips"):
            pass
