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
                rows.append(
                    {
                        "width": w,
                        "seed": s,
                        "eps": 1.0,
                        "metric": metric,
                        "value": v_inf - 0.5 / np.sqrt(w) + 0.01 * rng.standard_normal(),
                    }
                )
            rows.append(
                {
                    "width": inf_width,
                    "seed": s,
                    "eps": 1.0,
                    "metric": metric,
                    "value": v_inf + 0.002 * rng.standard_normal(),
                }
            )
    for s in range(SEEDS):
        for w in (*WIDTHS, inf_width):
            scale = 1.0 if plots.is_infinite_width(w) else 1 - 1 / np.sqrt(w)
            for e in (0.0, 0.5, 2.0):
                rows.append(
                    {
                        "width": w,
                        "seed": s,
                        "eps": e,
                        "steps_f": 100,
                        "metric": "agreement_vs_eps",
                        "value": 0.5 + 0.45 * scale * np.tanh(e) + 0.01 * rng.standard_normal(),
                    }
                )
            for t in (1, 10, 100, 1000):
                rows.append(
                    {
                        "width": w,
                        "seed": s,
                        "eps": 1.0,
                        "steps_f": t,
                        "metric": "cos_predicted",
                        "value": scale * t / (t + 10) + 0.01 * rng.standard_normal(),
                    }
                )
    return rows


def dashed(ax):
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]


def inf_mean(rows, metric):
    return np.mean(
        [r["value"] for r in rows if r["metric"] == metric and plots.is_infinite_width(r["width"])]
    )


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
        metric_label = plots.axis_label(metric)
        curve = lines[metric_label]
        np.testing.assert_array_equal(curve.get_xdata(), WIDTHS)  # the infinite rows are not a point
        expected = [
            np.mean([r["value"] for r in rows if r["metric"] == metric and r["width"] == w]) for w in WIDTHS
        ]
        np.testing.assert_allclose(curve.get_ydata(), expected)
        inf_line = lines[f"{metric_label} (infinite width)"]
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
    assert_written(
        plots.figure_vs(rows, "eps", "agreement_vs_eps", out=tmp_path, steps_f=100),
        tmp_path,
        "agreement_vs_eps_vs_eps",
    )
    fig, (ax,) = plots.new_figure()
    plots.draw_vs(ax, rows, "eps", "agreement_vs_eps", steps_f=100)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == [f"m = {w}" for w in WIDTHS] + ["infinite width"]
    (inf_line,) = dashed(ax)
    assert inf_line.get_label() == "infinite width"
    np.testing.assert_array_equal(inf_line.get_xdata(), [0.0, 0.5, 2.0])
    sel = [
        r["value"]
        for r in rows
        if r["metric"] == "agreement_vs_eps" and r["eps"] == 2.0 and plots.is_infinite_width(r["width"])
    ]
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
    grid = {
        "f": np.tile(u, (n, 1)),
        "g": np.tile(u - 0.5, (n, 1)),
        "hat_f": np.tile(u + 0.1, (n, 1)),
        "hat_g": np.tile(u, (n, 1)).T,
    }
    fig, (ax,) = plots.new_figure()
    pts, labels = np.array([[0.5, 0.2], [-0.5, 0.1]]), np.array([1.0, -1.0])
    plots.decision_map(ax, grid, "f", "g", extent, points=pts, labels=labels)
    (mesh,) = [
        c
        for c in ax.collections
        if hasattr(c, "get_array")
        and not isinstance(c, ContourSet)
        and c.get_array() is not None
        and np.ma.isMaskedArray(c.get_array())
    ]
    shaded = ~np.ma.getmaskarray(mesh.get_array())
    assert shaded.sum() == n * np.sum((u >= 0) & (u < 0.5))
    contours = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert sorted(c.linestyles[0] for c in contours) == ["--", ":"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert r"$\mathrm{sign}\,f \neq \mathrm{sign}\,g$" in legend
    assert r"$\hat f = 0$" in legend and r"$\hat g = 0$" in legend
    plt.close(fig)
    paths = plots.figure_decision_map(grid, "f", "g", 1.0, out=tmp_path, contours={"hat_f": "-."})
    assert_written(paths, tmp_path, "decision_map")
    with pytest.raises(KeyError, match="nope"):
        plots.decision_map(plots.new_figure()[1][0], grid, "f", "g", 1.0, {"nope": "--"})


def test_saved_pdf_has_no_type3_font_and_paper_width(rows, tmp_path):
    png, pdf = plots.figure_vs_width(rows, out=tmp_path, name="vw", eps=1.0)
    raw = pdf.read_bytes()
    assert b"/Subtype /Type3" not in raw and b"/Type3" not in raw
    assert b"/CIDFontType2" in raw or b"/TrueType" in raw  # pdf.fonttype 42
    fig, axes = plots.new_figure(1, 4.2, 3.2)
    assert fig.get_size_inches()[0] == pytest.approx(plots.COLUMN_WIDTH)
    fig, axes = plots.new_figure(3, 3.6, 2.9)
    assert fig.get_size_inches()[0] == pytest.approx(plots.TEXT_WIDTH) and len(axes) == 3


def test_type3_check_would_catch_type3(tmp_path):
    """The byte check above is meaningful: a figure saved with pdf.fonttype 3 is caught by it."""
    import matplotlib

    fig, (ax,) = plots.new_figure()
    ax.set_xlabel("width m")
    with matplotlib.rc_context({"pdf.fonttype": 3}):
        fig.savefig(tmp_path / "t3.pdf")
    assert b"/Type3" in (tmp_path / "t3.pdf").read_bytes()


def test_labels_never_raw_field_names(rows):
    fig, (ax,) = plots.new_figure()
    plots.draw_vs(
        ax,
        [{**r, "data.d": r["steps_f"]} for r in rows if r["metric"] == "cos_predicted"],
        "data.d",
        "cos_predicted",
        eps=1.0,
    )
    assert ax.get_xlabel() == r"input dimension $d$" and ax.get_ylabel() == r"mean $|\cos(\eta_n, D_n)|$"
    assert plots.axis_label("eps") == r"$\varepsilon$ ($\ell_2$)"
    assert plots.axis_label("steps_g") == r"steps of $g$, $T_g$"
    assert plots.axis_label("agreement") == r"agreement of $\mathrm{sign}\,f$, $\mathrm{sign}\,g$"
    assert plots.axis_label("data.n_train") == r"training points $N$"
    ax2 = plots.new_figure()[1][0]
    ax2.set_xlabel("data.n_train")
    plots.paper_fonts(ax2.figure)
    assert ax2.get_xlabel() == r"training points $N$"
    legend = ax.get_legend()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    assert legend is not None and legend.get_window_extent(renderer).y1 < ax.get_window_extent().y0


def test_factor_spaced_axes_are_logarithmic(rows):
    fig, (ax,) = plots.new_figure()
    plots.draw_vs(ax, rows, "steps_f", "cos_predicted", eps=1.0)  # 1 .. 1000: log
    assert ax.get_xscale() == "log"
    fig, (ax,) = plots.new_figure()
    plots.draw_vs(ax, rows, "eps", "agreement_vs_eps", steps_f=100)  # includes 0: linear
    assert ax.get_xscale() == "linear"


def test_proportion_intervals_stay_in_unit_interval():
    rows = [
        {"width": 16, "seed": s, "metric": "agreement", "value": v}
        for s, v in enumerate((1.0, 1.0, 0.5, 1.0, 1.0))
    ]
    _, mean, low, high = plots.curve(rows, "width", "agreement")
    assert 0.0 <= low[0] <= mean[0] <= high[0] <= 1.0
    _, _, low_t, high_t = plots.curve([{**r, "metric": "loss_like"} for r in rows], "width", "loss_like")
    assert high_t[0] > 1.0  # a Student-t interval over 5 seeds would leave [0, 1]


def test_import_selects_no_backend():
    import subprocess
    import sys

    code = "import matplotlib, ntk_adv.plots as p; print(matplotlib.rcParams._get_backend_or_none())"
    env = {k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip() == "None"


def test_curve_bands_are_the_verdicts_intervals():
    """One interval type: a figure's band is the interval the verdicts judge with (seed_mean for a proportion,
    bounded to [0, 1]; mean_ci otherwise; seed_proportion with n_points), never a second bootstrap."""
    from ntk_adv import verdicts

    vals = (0.9, 0.7, 1.0, 0.8, 0.95)
    rows = [{"width": 16, "seed": s, "metric": "agreement", "value": v} for s, v in enumerate(vals)]
    _, mean, low, high = plots.curve(rows, "width", "agreement")
    est = verdicts.seed_mean(vals, bounds=(0.0, 1.0))
    assert (mean[0], low[0], high[0]) == (est.value, est.low, est.high)
    t = verdicts.mean_ci(vals)
    assert est.low <= t.low and est.high >= min(t.high, 1.0)  # widened to Student-t where that is wider
    _, mean, low, high = plots.curve([{**r, "metric": "loss_like"} for r in rows], "width", "loss_like")
    assert (mean[0], low[0], high[0]) == (t.value, t.low, t.high)
    _, mean, low, high = plots.curve(rows, "width", "agreement", n_points=50)
    sp = verdicts.seed_proportion(vals, 50)
    assert (mean[0], low[0], high[0]) == (sp.value, sp.low, sp.high)
