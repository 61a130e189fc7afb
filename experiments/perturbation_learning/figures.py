"""The experiment's figures: agreement against width and each swept axis with the theory's lines, the
cosine against T_f, the output gap against width, and decision maps in the class-mean plane."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from ntk_adv import engine, limits, plots
from ntk_adv.arch.base import INF_WIDTH, is_infinite
from ntk_adv.data import data_arrays
from ntk_adv.metrics import fit_loglog_slope
from ntk_adv.perturbation import batch, protocol
from ntk_adv.results import select

from .claims import headline_point, n_test_points, restrict_to_best_lr
from .config import Config

AXIS_LABELS = {
    "eps": r"perturbation radius $\varepsilon$ ($\ell_2$)",
    "steps_g": plots.axis_label("steps_g"),
    "data.d": plots.axis_label("data.d"),
    "data.n_train": plots.axis_label("data.n_train"),
    "gamma": plots.axis_label("gamma"),
}
AGREEMENT_LABEL = plots.axis_label("agreement")
CENTRED_LIMIT = r"centred limit ($m = \infty$, $g_0 = 0$)"


def short_title(cfg: Config) -> str:
    """Data, architecture, scenario and attack in a few words, no identifiers (``shifted_gauss`` ->
    ``shifted gauss``, ``one_step_l2`` -> ``one-step l2``)."""
    words = lambda s: str(s).replace("_", " ")
    attack = {"one_step_l2": r"one-step $\ell_2$", "fgm": "FGM", "fgsm": "FGSM"}.get(
        cfg.attack, words(cfg.attack)
    )
    return f"{words(cfg.data.name)}, {cfg.arch_label()}, scenario ({cfg.scenario}), {attack}"


@plots.styled
def figures(cfg: Config, rows: list[dict], out: Path) -> list[Path]:
    """Measured points with 95% intervals (in [0, 1]) beside the theory's predicted lines: agreement vs width
    (predicted per width, centred limit dotted), vs each swept axis (predicted per width), the cosine of the
    perturbations with D_n vs T_f (predicted per width) and the output gap to the same-init limit vs width
    (fitted slope against -1/2)."""
    axes = cfg.varying()
    chosen = restrict_to_best_lr(rows, axes)
    n = n_test_points(cfg)
    paths = []
    title = short_title(cfg)
    where = headline_point(chosen, axes)
    if len({r["width"] for r in chosen}) > 1 and any(not plots.is_infinite_width(r["width"]) for r in chosen):
        eps_txt = rf", $\varepsilon = {where.get('eps', cfg.eps[0]):g}$"
        paths += plots.figure_vs_width(
            chosen,
            ("agreement", "g_acc_test"),
            out=out,
            name="agreement_vs_width",
            title=title + eps_txt,
            n_points=n,
            labels={"agreement": AGREEMENT_LABEL, "g_acc_test": plots.axis_label("g_acc_test")},
            predictions={"agreement": "agreement_predicted"},
            infinite_label=r"centred limit, $g_0 = 0$",
            infinite_ls=":",
            **where,
        )
        gap_rows = [r for r in select(chosen, **where) if not plots.is_infinite_width(r["width"])]
        if len({r["width"] for r in gap_rows}) >= 2:
            paths += gap_figure(gap_rows, out, title + eps_txt)
    for axis, name in (
        ("eps", "agreement_vs_eps"),
        ("steps_g", "agreement_vs_T_g"),
        ("data.d", "agreement_vs_d"),
        ("data.n_train", "agreement_vs_N"),
        ("gamma", "agreement_vs_gamma"),
    ):
        if axis in axes:
            fixed = {a: v for a, v in where.items() if a != axis}
            fig, (ax,) = plots.new_figure(1, 4.2, 3.2)
            plots.draw_vs(
                ax,
                chosen,
                axis,
                "agreement",
                ylabel=AGREEMENT_LABEL,
                xlabel=AXIS_LABELS[axis],
                predicted="agreement_predicted",
                n_points=n,
                logx="auto",
                infinite_label=CENTRED_LIMIT,
                infinite_ls=":",
                **fixed,
            )
            if axis == "eps":
                vals = sorted({r["eps"] for r in chosen})
                lo = min([v for v in vals if v > 0], default=1e-3)
                grid = (
                    np.geomspace(lo, max(vals), 60)
                    if ax.get_xscale() == "log"
                    else np.linspace(0, max(vals), 60)
                )
                curve = first_order_curve(cfg, grid, **{a: v for a, v in fixed.items() if a != "width"})
                if curve is not None:
                    ax.plot(
                        grid, curve, color="0.5", lw=0.9, label=r"centred limit, first order in $\varepsilon$"
                    )
                    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
            ax.set_title(title)
            paths += plots.save(fig, out, name)
    if "steps_f" in axes:
        fixed = {a: v for a, v in where.items() if a != "steps_f"}
        paths += plots.figure_cosine_vs_steps_f(chosen, out=out, title=title, **fixed)
    return paths


FIRST_ORDER_ATTACKS = ("one_step_l2", "fgm", "fgsm")  # attack direction independent of eps and of the target


def first_order_curve(cfg: Config, eps_grid, **where) -> np.ndarray | None:
    """The centred limit's agreement against eps to first order (docs/theory.md, "First order in eps"):
    ``mean_z 1[sign(A(z) + eps L(z)) = sign f_inf(z)]`` for each eps of ``eps_grid``, averaged over the seeds'
    targets - one kernel computation for the whole curve, no training. ``None`` where the expansion does not
    apply (other attacks or losses, the noise scenario, no bias, an architecture other than the two-layer
    net)."""
    base = cfg.base()
    for axis, v in where.items():
        base = engine.set_field(base, axis, v)
    if (
        base.loss != "identity"
        or base.attack not in FIRST_ORDER_ATTACKS
        or base.scenario == "noise"
        or not protocol.decomposes(base.arch)
        or not base.arch.bias
    ):
        return None
    x, y, z, _ = data_arrays(base.data)
    c = base.with_(width=INF_WIDTH)
    f_inf = protocol.infinite_f(c, x, y)
    sign_f = np.where(np.asarray(f_inf(z)) >= 0, 1, -1)
    eps_grid = np.asarray(eps_grid, float)
    curves = []
    for seed in range(cfg.seeds):
        key = jax.random.PRNGKey(seed)
        adv = protocol.adversarial_set(c.with_(scenario="a"), f_inf, x, y, key, eps=1.0)
        u = np.asarray(adv.y_adv)[:, None] * np.asarray(adv.eta)  # y_adv eta = eps u: the unit direction
        base_pts = np.zeros_like(np.asarray(x)) if base.scenario == "a" else np.asarray(x)
        a_term, l_term = limits.first_order_in_eps(c.kernel(), base_pts, adv.y_adv, u, z)
        h = np.asarray(a_term)[None, :] + eps_grid[:, None] * np.asarray(l_term)[None, :]
        curves.append(np.mean(np.where(h >= 0, 1, -1) == sign_f[None, :], axis=1))
    return np.mean(curves, axis=0)


@plots.styled
def gap_figure(rows: list[dict], out: Path, title: str) -> list[Path]:
    """Relative output gap of finite f and g to their same-init limits vs width m (log-log), with the fitted
    slope and its 95% interval in the legend and the predicted m^(-1/2) as a dashed line."""
    fig, (ax,) = plots.new_figure(1, 4.2, 3.2)
    for i, metric in enumerate(("g_gap", "f_gap")):
        sub = select(rows, metric=metric)
        if len(sub) < 3:
            continue
        fit = fit_loglog_slope([r["width"] for r in sub], [r["value"] for r in sub])
        line = plots.plot_metric(
            ax,
            sub,
            "width",
            metric,
            color=f"C{i}",
            logx=2,
            logy=True,
            label=f"${metric[0]}$: slope {fit.slope:.2f} [{fit.low:.2f}, {fit.high:.2f}]",
        )
        xs = np.asarray(sorted({r["width"] for r in sub}), float)
        ax.plot(
            xs,
            np.exp(fit.intercept) * xs[0] ** fit.slope * (xs / xs[0]) ** -0.5,
            ls="--",
            lw=1.0,
            color=line.get_color(),
            label=f"${metric[0]}$: predicted $m^{{-1/2}}$",
        )
    ax.set_xlabel(plots.axis_label("width"))
    ax.set_ylabel(r"$\|\mathrm{net} - \mathrm{limit}\| / \|\mathrm{limit}\|$ on $z$")
    ax.set_title(title)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return plots.save(fig, out, "gap_vs_width")


def decision_maps(cfg: Config, out: Path) -> list[Path]:
    """Decision maps for seed 0 at the headline eps (the largest), at the largest finite width and at infinite
    width, in the plane of the two class means: shaded where sign f != sign g; zero contours of f, g and, for
    the two-layer net, the papers' limit classifiers hat_f, hat_g (without g's bias term) and B + S, the
    centred limit g with its bias term (docs/theory.md, "The limit g, decomposed")."""
    base = cfg.base().with_(eps=max(cfg.eps))
    x, y = data_arrays(cfg.data)[:2]
    origin, basis = protocol.class_mean_plane(np.asarray(x), np.asarray(y))
    proj = np.asarray(x) @ basis.T
    extent = 1.3 * float(np.max(np.abs(proj)))
    paths = []
    finite = cfg.finite_widths()
    settings = ([max(finite)] if finite else []) + ([INF_WIDTH] if INF_WIDTH in cfg.all_widths() else [])
    for width in settings:
        c = base.with_(width=width)
        f, g, adv, _, _ = batch.cell_predictors((c, 0), solver=cfg.solver)
        fns = {"f": f, "g": g}
        contours = {"f": "-", "g": (0, (5, 1))}
        if protocol.decomposes(c.arch):
            hat_f, hat_g = limits.limit_classifiers(
                x, y, adv.x_adv, gamma=c.arch.gamma, bias=c.arch.bias, base=adv.base
            )
            g_lim = protocol.infinite_g(c, adv)
            b_plus_s = lambda q, g_lim=g_lim, c=c: sum(protocol.g_parts(c, g_lim, q))  # noqa: E731
            fns.update({"hat_f": hat_f, "hat_g": hat_g, "B + S": b_plus_s})
            contours.update({"hat_f": "--", "hat_g": ":", "B + S": "-."})
        grid = protocol.decision_grid(fns, origin, basis, extent, 121)
        name = f"decision_map_{'inf' if is_infinite(width) else f'm{width}'}"
        mean_yadv = float(np.mean(np.asarray(adv.y_adv)))
        paths += plots.figure_decision_map(
            grid,
            "f",
            "g",
            extent,
            out=out,
            name=name,
            points=proj,
            labels=np.asarray(y),
            contours=contours,
            title=f"{cfg.data.name.replace('_', ' ')}: "
            + (r"$m = \infty$" if is_infinite(width) else f"$m = {width}$")
            + rf", $\varepsilon = {c.eps:g}$ ($\ell_2$), seed 0, "
            + rf"$\overline{{y_\mathrm{{adv}}}} = {mean_yadv:+.3f}$",
        )
    return paths


__all__ = [
    "AGREEMENT_LABEL",
    "AXIS_LABELS",
    "FIRST_ORDER_ATTACKS",
    "decision_maps",
    "figures",
    "first_order_curve",
    "gap_figure",
]
