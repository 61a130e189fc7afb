"""Figures from long-format rows: files are written, infinite-width rows are drawn dashed, values are the
seed means of the rows (synthetic rows with known means), and the infinite-width convention round-trips
through CSV."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.contour import ContourSet

from ntk_adv import plots
from ntk_adv.results import read_csv, write_csv

WIDTHS = (16, 64, 256)
SEEDS = 5
INF_VALUE = {"agreement": 0.95, "g_acc_test": 0.9}


def synthetic_rows(rng, inf_width=math.inf):
    """Per metric: finite value = inf value - 0.5 / sqrt(width) + noise; per eps / steps_f: a known trend."""
    rows = []
    for metric, v_inf in INF_VALUE.items():
        for s in range(SEEDS):
            for w in WIDTHS:
                rows.append({"width": w, "seed": s, "eps": 1.0, "metric": metric,
                             "value": v_inf - 0.5 / np.sqrt(w) + 0.01 * rng.standard_normal()})
            rows.append({"width": inf_width, "seed": s, "eps": 1.0, "metric": metric,
                         "value": v_inf + 0.002 * rng.standard_normal()})
    for s in range(SEEDS):
        for w in (*WIDTHS, inf_width):
            scale = 1.0 if plots.is_infinite_width(w) else 1 - 1 / np.sqrt(w)
            for e in (0.0, 0.5, 2.0):
                rows.append({"width": w, "seed": s, "eps": e, "steps_f": 100, "metric": "agreement_vs_eps",
                             "value": 0.5 + 0.45 * scale * np.tanh(e) + 0.01 * rng.standard_normal()})
            for t in (1, 10, 100, 1000):
                rows.append({"width": w, "seed": s, "eps": 1.0, "steps_f": t, "metric": "cos_predicted",
                             "value": scale * t / (t + 10) + 0.01 * rng.standard_normal()})
    return rows


def dashed(ax):
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]


def inf_mean(rows, metric):
    return np.mean([r["value"] for r in rows if r["metric"] == metric and plots.is_infinite_width(r["width"])])


@pytest.fixture
def rows(rng):
    return synthetic_rows(rng)


def assert_written(paths, tmp_path, name):
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
    for p in paths:
        assert p.parent == tmp_path and p.stat().st_size > 0


@pytest.mark.parametrize("marker", [math.inf, None, "inf", "infinite"])
def test_infinite_width_markers(marker):
    assert plots.is_infinite_width(marker)
    assert not plots.is_infinite_width(1024) and not plots.is_infinite_width(16.0)


def test_figure_vs_width(rows, tmp_path):
    assert_written(plots.figure_vs_width(rows, out=tmp_path, name="vw", eps=1.0), tmp_path, "vw")
    fig, (ax,) = plots.new_figure()
    plots.draw_vs_width(ax, rows, ("agreement", "g_acc_test"), eps=1.0)
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for metric in INF_VALUE:
        curve = lines[metric]
        np.testing.assert_array_equal(curve.get_xdata(), WIDTHS)  # the infinite rows are not a point
        expected = [np.mean([r["value"] for r in rows if r["metric"] == metric and r["width"] == w]) for w in WIDTHS]
        np.testing.assert_allclose(curve.get_ydata(), expected)
        inf_line = lines[f"{metric} (infinite width)"]
        assert inf_line.get_linestyle() == "--" and inf_line.get_color() == curve.get_color()
        np.testing.assert_allclose(inf_line.get_ydata(), inf_mean(rows, metric))
    assert len(dashed(ax)) == 2
    plt.close(fig)


@pytest.mark.parametrize("marker", [None, "inf"])
def test_other_infinite_markers_give_the_same_figure(rng, marker):
    fig, (ax,) = plots.new_figure()
    plots.draw_vs_width(ax, synthetic_rows(rng, inf_width=marker), ("agreement",), eps=1.0)
    (line,) = dashed(ax)
    assert abs(line.get_ydata()[0] - INF_VALUE["agreement"]) < 0.01
    plt.close(fig)


def test_figures_from_a_csv_round_trip(rows, tmp_path):
    back = read_csv(write_csv(rows, tmp_path / "results.csv"))
    assert {r["width"] for r in back} == {*WIDTHS, math.inf}
    fig, (ax,) = plots.new_figure()
    plots.draw_vs_width(ax, back, ("agreement",), eps=1.0)
    (line,) = dashed(ax)
    np.testing.assert_allclose(line.get_ydata(), inf_mean(rows, "agreement"))
    plt.close(fig)


def test_figure_vs_eps(rows, tmp_path):
    assert_written(plots.figure_vs(rows, "eps", "agreement_vs_eps", out=tmp_path, steps_f=100), tmp_path,
                   "agreement_vs_eps_vs_eps")
    fig, (ax,) = plots.new_figure()
    plots.draw_vs(ax, rows, "eps", "agreement_vs_eps", steps_f=100)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == [f"m = {w}" for w in WIDTHS] + ["infinite width"]
    (inf_line,) = dashed(ax)
    assert inf_line.get_label() == "infinite width"
    np.testing.assert_array_equal(inf_line.get_xdata(), [0.0, 0.5, 2.0])
    sel = [r["value"] for r in rows if r["metric"] == "agreement_vs_eps" and r["eps"] == 2.0
           and plots.is_infinite_width(r["width"])]
    assert inf_line.get_ydata()[-1] == pytest.approx(np.mean(sel))
    assert ax.get_xscale() == "linear"
    plt.close(fig)
    fig, (ax,) = plots.new_figure()
    plots.draw_vs(ax, rows, "eps", "agreement_vs_eps", widths=(64,), steps_f=100)
    assert [ln.get_label() for ln in ax.get_lines()] == ["m = 64", "infinite width"]
    plt.close(fig)
    with pytest.raises(ValueError, match="no rows"):
        plots.draw_vs(ax, rows, "eps", "no_such_metric")


def test_figure_cosine_vs_steps_f(rows, tmp_path):
    assert_written(plots.figure_cosine_vs_steps_f(rows, out=tmp_path), tmp_path, "cosine_vs_steps_f")
    fig, (ax,) = plots.new_figure()
    plots.draw_cosine_vs_steps_f(ax, rows)
    assert ax.get_xscale() == "log" and ax.get_ylim() == (0.0, 1.02)
    (inf_line,) = dashed(ax)
    np.testing.assert_array_equal(inf_line.get_xdata(), [1, 10, 100, 1000])
    assert np.all(np.diff(inf_line.get_ydata()) > 0)  # the synthetic cosine rises with steps_f
    plt.close(fig)


def test_decision_map(tmp_path):
    """f = u, g = u - 0.5 (in plane coordinates): sign f != sign g exactly on 0 <= u < 0.5; hat_f / hat_g
    zero contours dashed / dotted."""
    n, extent = 41, (-1.0, 1.0, -1.0, 1.0)
    u = np.linspace(-1, 1, n)
    grid = {"f": np.tile(u, (n, 1)), "g": np.tile(u - 0.5, (n, 1)),
            "hat_f": np.tile(u + 0.1, (n, 1)), "hat_g": np.tile(u, (n, 1)).T}
    fig, (ax,) = plots.new_figure()
    pts, labels = np.array([[0.5, 0.2], [-0.5, 0.1]]), np.array([1.0, -1.0])
    plots.decision_map(ax, grid, "f", "g", extent, points=pts, labels=labels)
    (mesh,) = [c for c in ax.collections if hasattr(c, "get_array") and not isinstance(c, ContourSet)
               and c.get_array() is not None and np.ma.isMaskedArray(c.get_array())]
    shaded = ~np.ma.getmaskarray(mesh.get_array())
    assert shaded.sum() == n * np.sum((u >= 0) & (u < 0.5))
    contours = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert sorted(c.linestyles[0] for c in contours) == ["--", ":"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "sign f != sign g" in legend and "hat_f = 0" in legend and "hat_g = 0" in legend
    plt.close(fig)
    paths = plots.figure_decision_map(grid, "f", "g", 1.0, out=tmp_path, contours={"hat_f": "-."})
    assert_written(paths, tmp_path, "decision_map")
    with pytest.raises(KeyError, match="nope"):
        plots.decision_map(plots.new_figure()[1][0], grid, "f", "g", 1.0, {"nope": "--"})
