"""Perturbation learning at finite and infinite width (Kumano, Kera, Yamasaki, NeurIPS 2024 / ICLR 2024).

Claim: a classifier g trained only on adversarial perturbations with (random or flipped) target labels agrees
with the clean classifier f on held-out data, and the agreement rises with eps, with g's training time, with d
and (scenario b) with N; as width grows the finite-width result converges to the infinite-width prediction.

The experiment sweeps any of width, eps, lr_f, lr_g, steps_f (T_f), steps_g (T_g), gamma and the data fields
d, n_train through the sweep engine (f trained once per (width, seed, lr_f, T_f), perturbations once per eps,
cells batched with vmap, results cached in a resumable store). Axes with one value are fixed.
Writes DIR/results.csv (long format), DIR/summary.json (per-width mean agreement and g accuracy with 95%
intervals, the infinite-width agreement under ``agreement_infinite``, and which learning rates were used) and
figures: agreement and g's accuracy vs width (infinite width dashed), vs eps, vs T_g, cosine vs T_f when those
axes vary, and a decision map in the class-mean plane with the limit classifiers' zero contours.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import jax
import numpy as np

from ntk_adv import engine, limits, pattern_gd, plots, verdicts
from ntk_adv.data import DataSpec, data_arrays
from ntk_adv.metrics import fit_loglog_slope
from ntk_adv.perturbation import batch, protocol
from ntk_adv.results import provenance, select, write_csv, write_json
from ntk_adv.store import ResultStore

COMMAND = "perturbation-learning"
# Config tuple fields that are sweep axes, and the ProtocolConfig / DataSpec field each one sets.
AXES = {
    "widths": "width",
    "eps": "eps",
    "lr_f": "lr_f",
    "lr_g": "lr_g",
    "steps_f": "steps_f",
    "steps_g": "steps_g",
    "gamma": "gamma",
    "d": "data.d",
    "n_train": "data.n_train",
}
HEADLINE = ("agreement", "g_acc_test", "g_acc_train", "f_acc_test", "cos_predicted")


@dataclass(frozen=True)
class Config:
    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=200, n_test=None))
    scenario: str = "a"
    attack: str = "one_step_l2"
    targets: str = "random"
    loss: str = "identity"
    preset: str = "theory"
    parametrization: str = "standard"
    centered: bool = False
    widths: tuple[int, ...] = (10, 100, 1000)
    infinite: bool = True
    seeds: int = 5
    eps: tuple[float, ...] = (1.0,)  # attack radii: L2 norm (L-inf for fgsm, pgd_linf; the step for l0)
    lr_f: tuple[float, ...] = (0.1,)
    lr_g: tuple[float, ...] = (0.1,)
    steps_f: tuple[int, ...] = (100,)
    steps_g: tuple[int, ...] = (100,)
    gamma: tuple[float, ...] = (0.0,)
    d: tuple[int, ...] = ()  # input dimension(s) of synthetic data (overrides data.d)
    n_train: tuple[int, ...] = ()  # training-set size(s) (overrides data.n_train)
    solver: str = "auto"  # trainings: auto | autodiff | pattern (ntk_adv.pattern_gd; the same GD iterates)
    decision_map: bool = True
    # how the cells run and where they are kept (--backend, --workers, --store, --force, --accept-stale)
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if not self.widths and not self.infinite:
            raise ValueError("nothing to run: give --widths or keep --infinite")
        if any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be >= 1, got {self.widths}")
        # A sweep over N (or d) overrides data.n_train (data.d) in every cell; the whole-run steps (held-out
        # count, decision maps, first-order curve) read ``data``, so it carries the headline (largest) value
        # the user gave, never the default it replaced (whose errors would name a value never typed).
        over = {a: max(getattr(self, a)) for a in ("n_train", "d") if getattr(self, a)}
        if over:
            object.__setattr__(self, "data", replace(self.data, **over))
        for name in ("eps", "lr_f", "lr_g", "steps_f", "steps_g", "gamma"):
            if not getattr(self, name):
                raise ValueError(f"{name} needs at least one value")
        base = self.base()  # validates scenario, attack, targets, loss, preset, eps, gamma ranges
        if self.widths:  # an unknown solver, or 'pattern' where it cannot apply, is refused here, by name
            pattern_gd.choose(base.net(), base.train_config("f"), base.data.n_train, self.solver)

    def base(self) -> protocol.ProtocolConfig:
        return protocol.ProtocolConfig(
            data=self.data,
            width=self.widths[0] if self.widths else None,
            gamma=self.gamma[0],
            parametrization=self.parametrization,
            loss=self.loss,
            preset=self.preset,
            lr_f=self.lr_f[0],
            steps_f=self.steps_f[0],
            lr_g=self.lr_g[0],
            steps_g=self.steps_g[0],
            scenario=self.scenario,
            attack=self.attack,
            eps=self.eps[0],
            targets=self.targets,
            centered=self.centered,
        )

    def data_specs(self) -> list[DataSpec]:
        """Every data spec the cells read (one per N and d of the sweep)."""
        ns = self.n_train or (self.data.n_train,)
        ds = self.d or (self.data.d,)
        return [replace(self.data, n_train=n, d=d) for n in ns for d in ds]

    def grid(self) -> engine.Grid:
        widths = tuple(self.widths) + ((None,) if self.infinite else ())
        axes = [("width", widths)]
        for name, target in AXES.items():
            vals = getattr(self, name)
            if name != "widths" and len(vals) > (0 if name in ("d", "n_train") else 1):
                axes.append((target, tuple(vals)))
        for _, vals in axes:
            for v in vals:
                if isinstance(v, (int, float)) and v is not None and not np.isfinite(v):
                    raise ValueError(f"sweep values must be finite, got {vals}")
        return engine.Grid(self.base(), axes=tuple(axes), seeds=self.seeds)

    def varying(self) -> list[str]:
        """Row columns of the axes that have more than one value (besides width)."""
        return [AXES[n] for n in AXES if n != "widths" and len(getattr(self, n)) > 1]


QUICK_CONFIG = Config(
    data=DataSpec("digits", n_train=60, n_test=60),
    widths=(16, 256),
    seeds=2,
    eps=(0.1, 1.0),
    steps_f=(30,),
    steps_g=(30,),
    decision_map=False,
)
REPORT_CONFIG = Config(
    data=DataSpec("digits", n_train=200, n_test=None),
    widths=(16, 64, 256, 1024, 4096),
    seeds=5,
    eps=(0.1, 0.3, 1.0),
)


def best_learning_rates(rows: list[dict], axes: list[str], metric: str = "agreement") -> dict:
    """Per point of the non-lr axes (and width), the (lr_f, lr_g) with the highest mean ``metric`` - with
    ``agreement`` the papers' reporting convention (best over the lr grid), made explicit; the verdicts use
    ``agreement_predicted`` instead, so that no measured number chooses the data it is judged on."""
    best: dict = {}
    other = [a for a in axes if a not in ("lr_f", "lr_g")]
    for r in select(rows, metric=metric):
        point = (r["width"],) + tuple(r[a] for a in other)
        best.setdefault(point, {}).setdefault((r["lr_f"], r["lr_g"]), []).append(r["value"])
    return {point: max(lrs, key=lambda k: np.mean(lrs[k])) for point, lrs in best.items()}


def restrict_to_best_lr(rows: list[dict], axes: list[str], metric: str = "agreement") -> list[dict]:
    """Rows at the lr pair of :func:`best_learning_rates` per point (all rows when no lr axis is swept); a
    point without ``metric`` rows (e.g. no prediction for its loss) keeps its first lr pair."""
    if not any(a in axes for a in ("lr_f", "lr_g")):
        return rows
    best = best_learning_rates(rows, axes, metric)
    other = [a for a in axes if a not in ("lr_f", "lr_g")]
    first = (min(r["lr_f"] for r in rows), min(r["lr_g"] for r in rows))
    return [
        r
        for r in rows
        if best.get((r["width"],) + tuple(r[a] for a in other), first) == (r["lr_f"], r["lr_g"])
    ]


def width_label(w) -> str:
    return "inf" if plots.is_infinite_width(w) else str(int(w))


def headline_point(rows: list[dict], axes: list[str]) -> dict:
    """The point of the non-width axes that the per-width summary and figure report: the largest eps, T_g,
    d and N (where the theory predicts the strongest effect) and the first value of any other axis."""
    point = {}
    for a in axes:
        if a in ("lr_f", "lr_g"):
            continue
        vals = sorted({r[a] for r in rows})
        point[a] = vals[-1] if a in ("eps", "steps_g", "data.d", "data.n_train") else vals[0]
    return point


# Tolerances, stated before any data (docs/verdicts.md): what "equal" means for each prediction.
TOL_AGREEMENT = 0.05  # |measured - predicted| agreement of sign f and sign g, per seed, averaged over seeds
TOL_COSINE = 0.05  # |measured - predicted| mean |cos(eta_n, D_n)|
TOL_SLOPE = 0.2  # fitted log-log slope of the output gap to the same-init limit vs -1/2
TOL_EXACT = 0.005  # a quantity the theory fixes exactly (the centred limit's T_g-independence)
LAZY_GAP = 0.5  # relative output gap of g to its same-init limit above which the limit predicts nothing
LAZY_MOVE = 0.5  # relative first-layer movement below which training counts as lazy (for the m^(-1/2) rate)
TREND_AXES = {
    "eps": "eps (L2 radius)",
    "steps_g": "T_g",
    "steps_f": "T_f",
    "data.d": "d",
    "data.n_train": "N",
    "gamma": "gamma",
}


def n_test_points(cfg: Config) -> int:
    """The number of held-out points z every agreement is measured on."""
    return int(data_arrays(cfg.data)[2].shape[0])


def _per_seed(rows: list[dict], metric: str, **where) -> dict[int, float]:
    return {r["seed"]: r["value"] for r in select(rows, metric=metric, **where)}


def _paired(rows: list[dict], a: str, b: str, **where) -> list[float]:
    """Per-cell differences metric a - metric b over the rows matching ``where`` (one per seed and point)."""
    va = {r["cell_id"]: r["value"] for r in select(rows, metric=a, **where)}
    vb = {r["cell_id"]: r["value"] for r in select(rows, metric=b, **where)}
    return [va[k] - vb[k] for k in sorted(va) if k in vb]


def _not_lazy(cfg: Config, rows: list[dict], **where) -> str:
    """Why the lazy limit is no prediction at this point ('' when it is)."""
    base = cfg.base().limit_not_applicable()
    if base:
        return base
    gaps = [r["value"] for r in select(rows, metric="g_gap", **where)]
    moves = [r["value"] for r in select(rows, metric="g_weight_move", **where)]
    if gaps and np.mean(gaps) > LAZY_GAP:
        return (
            f"finite g is far from its lazy limit: relative output gap {np.mean(gaps):.2f} > {LAZY_GAP} "
            f"(relative first-layer movement {np.mean(moves):.3f})"
        )
    return ""


def _inconclusive(claim: verdicts.Claim, reason: str) -> verdicts.Claim:
    return replace(claim, verdict="inconclusive", reason=f"not applicable: {reason}")


REFERENCES = {
    "agreement_same_init": (
        "agreement_equals_limit",
        "the agreement of its lazy limit started from g's own initial function (same-init limit, per seed)",
        "docs/theory.md: The limit g, decomposed",
    ),
    "agreement_predicted": (
        "agreement_equals_prediction",
        "the lazy limit's prediction E_g0[agreement] over g's random initial function",
        "docs/theory.md: Agreement over the random initial function",
    ),
}


def agreement_claim(
    cfg: Config, rows: list[dict], width, label: str, reference: str = "agreement_same_init", **where
) -> dict | None:
    """'At this point, measured agreement = the reference' (:data:`REFERENCES`: the same-init limit, which the
    finite net converges to seed by seed, or the expectation over g's initial function), judged on the
    per-cell differences (pooled over the points matched by ``where`` when an axis is left free); the measured
    and reference agreements are reported beside it."""
    name, what, basis = REFERENCES[reference]
    diffs = _paired(rows, "agreement", reference, width=width, **where)
    if not diffs:
        return None
    n = n_test_points(cfg)
    est = verdicts.seed_mean(diffs, bounds=(-1.0, 1.0))
    c = verdicts.equals(
        f"{name}[{label}]",
        f"Agreement of sign f and sign g at {label} equals {what} (measured minus reference, per seed)",
        0.0,
        TOL_AGREEMENT,
        est,
        basis=basis,
    )
    why = _not_lazy(cfg, rows, width=width, **where)
    if why:
        c = _inconclusive(c, why)
    meas = verdicts.seed_proportion(
        [r["value"] for r in select(rows, metric="agreement", width=width, **where)], n
    )
    ref = float(np.mean([r["value"] for r in select(rows, metric=reference, width=width, **where)]))
    return {**c.to_dict(), "agreement": meas.text(), reference: round(ref, 4)}


def gap_rate_claim(rows: list[dict], net: str) -> dict | None:
    """'The output gap of the finite net (f or g) to its same-init limit ~ m^(-1/2)': a log-log fit over the
    widths where training was lazy (mean relative first-layer movement < :data:`LAZY_MOVE`, a rule fixed
    before the data: the rate is a lazy-regime law), judged against -1/2 +- :data:`TOL_SLOPE`."""
    gap = [r for r in select(rows, metric=f"{net}_gap") if not plots.is_infinite_width(r["width"])]
    widths = sorted({r["width"] for r in gap})
    if len(widths) < 2:
        return None
    move = {
        w: np.mean([r["value"] for r in select(rows, metric=f"{net}_weight_move", width=w)] or [0.0])
        for w in widths
    }
    lazy = [w for w in widths if move[w] < LAZY_MOVE]
    pts = [r for r in gap if r["width"] in lazy]
    claim = (
        f"Finite {net} converges to the limit with its own initial function: relative output gap ~ "
        f"m^(-1/2) (fit over the lazy widths {', '.join(f'{w:g}' for w in lazy) or 'none'})"
    )
    if len(lazy) < 2 or len(pts) < 3:
        est = verdicts.Estimate(0.0, -1.0, 1.0, len(pts), "none")
        c = verdicts.equals(f"{net}_gap_rate", claim, -0.5, TOL_SLOPE, est)
        c = _inconclusive(
            c,
            f"fewer than 2 lazy widths (relative weight movement < {LAZY_MOVE}: "
            f"{', '.join(f'm={w:g}: {move[w]:.2f}' for w in widths)})",
        )
        return {**c.to_dict(), "widths": lazy}
    fit = fit_loglog_slope([r["width"] for r in pts], [r["value"] for r in pts])
    c = verdicts.slope(
        f"{net}_gap_rate", claim, -0.5, TOL_SLOPE, fit, basis="docs/theory.md: Finite width vs limit"
    )
    return {**c.to_dict(), "widths": lazy, "weight_movement": {f"{w:g}": float(move[w]) for w in widths}}


def summarize(cfg: Config, rows: list[dict]) -> dict:
    axes = cfg.varying()
    point = headline_point(rows, axes)
    chosen = select(restrict_to_best_lr(rows, axes), **point)
    n = n_test_points(cfg)
    summary: dict = {
        "experiment": COMMAND,
        "config": asdict(cfg),
        **provenance(),
        "headline_point": point,
        "n_test": n,
        "limit_time": {"f": float(cfg.base().limit_time("f")), "g": float(cfg.base().limit_time("g"))},
        "lr_selection": "best mean agreement over the lr grid per point"
        if any(a in axes for a in ("lr_f", "lr_g"))
        else "fixed",
    }
    proportions = set(HEADLINE) | {
        "agreement_predicted",
        "agreement_same_init",
        "agreement_centred",
        "agreement_signal",
    }
    for metric in HEADLINE + (
        "agreement_predicted",
        "agreement_same_init",
        "agreement_centred",
        "agreement_signal",
        "mean_y_adv",
        "g0_abs",
        "bias_term_abs",
        "signal_term_abs",
        "g_gap",
        "g_weight_move",
    ):
        by_width = {}
        for w in sorted(
            {r["width"] for r in rows}, key=lambda w: np.inf if plots.is_infinite_width(w) else w
        ):
            vals = [r["value"] for r in select(chosen, metric=metric) if r["width"] == w]
            if not vals:
                continue
            est = (
                verdicts.seed_proportion(vals, n)
                if metric in proportions and metric != "cos_predicted"
                else verdicts.seed_mean(vals)
            )
            by_width[width_label(w)] = {"mean": est.value, "ci95": [est.low, est.high], "n": est.n}
        if by_width:
            summary[f"{metric}_by_width"] = by_width
            if "inf" in by_width:
                summary[f"{metric}_infinite"] = by_width["inf"]["mean"]
    summary["points"] = points(cfg, restrict_to_best_lr(rows, axes), axes)
    summary["claims"] = claims(cfg, rows, axes)
    summary["verdicts"] = verdicts.summarize(summary["claims"])
    if any(a in axes for a in ("lr_f", "lr_g")):
        summary["best_lr"] = {
            "/".join(map(str, k)): {"lr_f": v[0], "lr_g": v[1]}
            for k, v in best_learning_rates(rows, axes).items()
        }
    return summary


def points(cfg: Config, rows: list[dict], axes: list[str]) -> list[dict]:
    """One entry per (swept axis value, width): measured agreement (mean, 95% interval in [0, 1]) beside the
    predicted, same-init-limit and centred-limit agreements (means over seeds)."""
    n = n_test_points(cfg)
    trend = [a for a in axes if a not in ("lr_f", "lr_g")]
    axis = trend[0] if trend else "width"
    out = []
    for w in sorted({r["width"] for r in rows}, key=lambda w: np.inf if plots.is_infinite_width(w) else w):
        for v in sorted({r[axis] for r in rows}) if axis != "width" else [w]:
            where = {"width": w} if axis == "width" else {"width": w, axis: v}
            agr = _per_seed(rows, "agreement", **where)
            if not agr:
                continue
            est = verdicts.seed_proportion(list(agr.values()), n)
            entry = {
                "axis": axis,
                "value": v if axis != "width" else width_label(w),
                "width": width_label(w),
                "agreement_mean": est.value,
                "agreement_ci95": [est.low, est.high],
                "n_seeds": est.n,
            }
            for m in ("agreement_predicted", "agreement_same_init", "agreement_centred", "agreement_signal"):
                vals = list(_per_seed(rows, m, **where).values())
                if vals:
                    entry[m] = float(np.mean(vals))
            out.append(entry)
    return out


def claims(cfg: Config, rows: list[dict], axes: list[str]) -> list[dict]:
    """The verdict table (:mod:`ntk_adv.verdicts`): measured agreement equals the lazy limit's prediction at
    every finite width of the headline point and along each swept axis at the largest width; g converges to
    its same-init limit at rate m^(-1/2); the centred limit does not depend on T_g; and the bias-free limit
    sign(S) (the papers' hat_g) explains the agreement, which random targets at small eps refute."""
    out: list[dict] = []
    point = headline_point(rows, axes)
    best = restrict_to_best_lr(
        rows, axes, metric="agreement_predicted"
    )  # lr chosen by the theory, not the data
    chosen = select(best, **point)
    finite = sorted({r["width"] for r in chosen if not plots.is_infinite_width(r["width"])})
    where_txt = ", ".join(f"{TREND_AXES.get(a, a)}={v:g}" for a, v in point.items())
    for w in finite:
        c = agreement_claim(cfg, chosen, w, f"m={w:g}" + (f", {where_txt}" if where_txt else ""))
        if c:
            out.append(c)
    if finite:
        top = finite[-1]
        rest = {k: v for k, v in point.items() if k not in TREND_AXES}
        c = agreement_claim(
            cfg,
            select(best, **rest),
            top,
            f"m={top:g}, pooled over all swept points",
            reference="agreement_predicted",
        )
        if c:
            out.append(c)
        diffs = _paired(chosen, "agreement", "agreement_signal", width=top)
        if diffs:
            c = verdicts.equals(
                "bias_free_limit",
                f"sign(S), the limit g without its bias term (the papers' hat_g), predicts the agreement at "
                f"m={top:g} (measured minus sign(S)-agreement, per seed)",
                0.0,
                TOL_AGREEMENT,
                verdicts.seed_mean(diffs, bounds=(-1.0, 1.0)),
                basis="docs/theory.md: The limit g, decomposed",
            )
            yadv = [r["value"] for r in select(chosen, metric="mean_y_adv", width=top)]
            out.append({**c.to_dict(), "mean_abs_y_adv": float(np.mean(np.abs(yadv))) if yadv else None})
    for net in ("g", "f"):
        c = gap_rate_claim(chosen, net)
        if c:
            out.append(c)
    if "steps_g" in axes and cfg.loss == "identity":
        rest = {a: v for a, v in point.items() if a != "steps_g"}
        inf_rows = [
            r for r in select(best, metric="agreement", **rest) if plots.is_infinite_width(r["width"])
        ]
        ts = sorted({r["steps_g"] for r in inf_rows})
        if len(ts) >= 2:
            lo = {r["seed"]: r["value"] for r in inf_rows if r["steps_g"] == ts[0]}
            hi = {r["seed"]: r["value"] for r in inf_rows if r["steps_g"] == ts[-1]}
            diffs = [hi[s] - lo[s] for s in sorted(hi) if s in lo]
            c = verdicts.equals(
                "centred_limit_T_g",
                f"The centred limit's agreement does not depend on T_g "
                f"(identity loss: g_inf scales with tau); T_g={ts[-1]:g} minus T_g={ts[0]:g}",
                0.0,
                TOL_EXACT,
                verdicts.seed_mean(diffs, bounds=(-1.0, 1.0)),
                basis="docs/theory.md: Agreement over the random initial function",
            )
            out.append(c.to_dict())
    if finite:
        top = finite[-1]
        for axis in [a for a in TREND_AXES if a in axes]:
            rest = {a: v for a, v in point.items() if a != axis}
            sub = select(best, width=top, **rest)
            for v in sorted({r[axis] for r in sub}):
                label = f"m={top:g}, {TREND_AXES[axis]}={v:g}"
                if axis == "steps_f" and cfg.loss == "identity" and cfg.attack in ("one_step_l2", "fgm"):
                    diffs = _paired(sub, "cos_predicted", "cos_predicted_theory", **{axis: v})
                    if diffs:
                        c = verdicts.equals(
                            f"cosine_equals_prediction[{label}]",
                            f"mean |cos(eta_n, D_n)| at {label} equals the lazy prediction",
                            0.0,
                            TOL_COSINE,
                            verdicts.seed_mean(diffs, bounds=(-1.0, 1.0)),
                            basis="docs/theory.md: Cosine with the predicted direction",
                        )
                        out.append(c.to_dict())
                elif axis != "steps_f" and point.get(axis) != v:
                    c = agreement_claim(cfg, sub, top, label, **{axis: v})
                    if c:
                        out.append(c)
    return out


AXIS_LABELS = {
    "eps": "perturbation radius eps (L2 norm)",
    "steps_g": "g's training steps T_g",
    "data.d": "input dimension d",
    "data.n_train": "training-set size N",
    "gamma": "leaky slope gamma",
}
AGREEMENT_LABEL = "agreement of sign f and sign g"


def figures(cfg: Config, rows: list[dict], out: Path) -> list[Path]:
    """Measured points with 95% intervals (in [0, 1]) beside the theory's predicted lines: agreement vs width
    (predicted per width, centred limit dotted), vs each swept axis (predicted per width), the cosine of the
    perturbations with D_n vs T_f (predicted per width) and the output gap to the same-init limit vs width
    (fitted slope against -1/2)."""
    axes = cfg.varying()
    chosen = restrict_to_best_lr(rows, axes)
    n = n_test_points(cfg)
    paths = []
    title = (
        f"{cfg.data.name}, scenario ({cfg.scenario}), {cfg.attack}, {cfg.targets} targets, "
        f"{cfg.preset} preset"
    )
    where = headline_point(chosen, axes)
    if len({r["width"] for r in chosen}) > 1 and any(not plots.is_infinite_width(r["width"]) for r in chosen):
        eps_txt = f", eps={where['eps']:g}" if "eps" in where else f", eps={cfg.eps[0]:g}"
        paths += plots.figure_vs_width(
            chosen,
            ("agreement", "g_acc_test"),
            out=out,
            name="agreement_vs_width",
            title=title + eps_txt,
            n_points=n,
            labels={"agreement": AGREEMENT_LABEL, "g_acc_test": "g's held-out accuracy"},
            predictions={"agreement": "agreement_predicted"},
            infinite_label="centred limit, g_0 = 0",
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
                infinite_label="centred limit (infinite width, g_0 = 0)",
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
                    ax.plot(grid, curve, color="0.5", lw=0.9, label="centred limit, first order in eps")
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
    apply (other attacks or losses, the noise scenario, no bias)."""
    base = cfg.base()
    for axis, v in where.items():
        base = engine.set_field(base, axis, v)
    if (
        base.loss != "identity"
        or base.attack not in FIRST_ORDER_ATTACKS
        or base.scenario == "noise"
        or not base.bias
    ):
        return None
    x, y, z, _ = data_arrays(base.data)
    c = base.with_(width=None)
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
            label=f"{metric[0]}: slope {fit.slope:.2f} [{fit.low:.2f}, {fit.high:.2f}]",
        )
        xs = np.asarray(sorted({r["width"] for r in sub}), float)
        ax.plot(
            xs,
            np.exp(fit.intercept) * xs[0] ** fit.slope * (xs / xs[0]) ** -0.5,
            ls="--",
            lw=1.0,
            color=line.get_color(),
            label=f"{metric[0]}: predicted m^(-1/2)",
        )
    ax.set_xlabel("width m")
    ax.set_ylabel("||net - same-init limit|| / ||limit|| on z")
    ax.set_title(title)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return plots.save(fig, out, "gap_vs_width")


def decision_maps(cfg: Config, out: Path) -> list[Path]:
    """Decision maps for seed 0 at the headline eps (the largest), at the largest finite width and at infinite
    width, in the plane of the two class means: shaded where sign f != sign g; zero contours of f, g, the
    papers' limit classifiers hat_f, hat_g (without g's bias term), and of B + S, the centred limit g with its
    bias term (docs/theory.md, "The limit g, decomposed")."""
    base = cfg.base().with_(eps=max(cfg.eps))
    x, y = data_arrays(cfg.data)[:2]
    origin, basis = protocol.class_mean_plane(np.asarray(x), np.asarray(y))
    proj = np.asarray(x) @ basis.T
    extent = 1.3 * float(np.max(np.abs(proj)))
    paths = []
    settings = ([max(cfg.widths)] if cfg.widths else []) + ([None] if cfg.infinite else [])
    for width in settings:
        c = base.with_(width=width)
        f, g, adv, _, _ = batch.cell_predictors((c, 0), solver=cfg.solver)
        hat_f, hat_g = limits.limit_classifiers(x, y, adv.x_adv, gamma=c.gamma, bias=c.bias, base=adv.base)
        g_lim = protocol.infinite_g(c, adv)
        b_plus_s = lambda q, g_lim=g_lim, c=c: sum(protocol.g_parts(c, g_lim, q))  # noqa: E731
        grid = protocol.decision_grid(
            {"f": f, "g": g, "hat_f": hat_f, "hat_g": hat_g, "B + S": b_plus_s}, origin, basis, extent, 121
        )
        contours = {"f": "-", "g": (0, (5, 1)), "hat_f": "--", "hat_g": ":", "B + S": "-."}
        name = f"decision_map_{'inf' if width is None else f'm{width}'}"
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
            title=f"{cfg.data.name}: {'infinite width' if width is None else f'width {width}'}, "
            f"eps={c.eps:g} (L2), seed 0, mean(y_adv)={mean_yadv:+.3f}",
        )
    return paths


def main(
    cfg: Config = Config(), out: str | Path = "runs/perturbation-learning", *, progress: bool = True
) -> dict:
    """Run the sweep (resuming from the store), write results.csv, summary.json and figures; return
    summary."""
    out = Path(out)
    for (
        spec
    ) in cfg.data_specs():  # every data set loads (sizes in range) before any work, errors name the option
        protocol.need_held_out(data_arrays(spec)[2])
    out.mkdir(parents=True, exist_ok=True)
    grid = cfg.grid()
    options = cfg.run.sweep_options(out)
    store = ResultStore(options.pop("store"))
    records = batch.run_sweep(
        grid,
        store,
        run_batch=partial(batch.run_protocol_batch, solver=cfg.solver),
        progress=progress,
        **options,
    )
    rows = store.rows(records)
    write_csv(rows, out / "results.csv")
    summary = summarize(cfg, rows)
    summary["stale_cells"] = sum(
        1 for r in records if r.get("stale")
    )  # kept with --accept-stale, rows marked
    summary["figures"] = [str(p.name) for p in figures(cfg, rows, out)]
    if cfg.decision_map:
        summary["figures"] += [str(p.name) for p in decision_maps(cfg, out)]
    write_json(summary, out / "summary.json")
    if progress is not False:
        report(summary)
        print(
            f"{COMMAND}: wrote {out / 'results.csv'}, {out / 'summary.json'} and {len(summary['figures'])} "
            f"figure files in {out}"
        )
    return summary


def report(summary: dict) -> None:
    """Print per-width measured agreement next to the lazy limit's prediction, then the verdicts."""
    agr, acc = summary["agreement_by_width"], summary["g_acc_test_by_width"]
    pred = summary.get("agreement_predicted_by_width", {})
    point = ", ".join(f"{k}={v:g}" for k, v in summary["headline_point"].items()) or "the configured point"
    print(f"at {point} ({summary['n_test']} test points; intervals 95%, two-stage bootstrap):")
    print(f"{'width':>8}  {'agreement(f,g)':>22}  {'predicted':>9}  {'g accuracy (test)':>22}")
    for w in agr:
        a, g = agr[w], acc.get(w, {"mean": np.nan, "ci95": [np.nan, np.nan]})
        p = pred.get(w, {}).get("mean", np.nan)
        print(
            f"{w:>8}  {a['mean']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]  {p:>9.3f}  "
            f"{g['mean']:.3f} [{g['ci95'][0]:.3f}, {g['ci95'][1]:.3f}]"
        )
    if "agreement_infinite" in summary:
        print(f"centred limit (infinite width, g_0 = 0): agreement {summary['agreement_infinite']:.3f}")
    for c in summary["claims"]:
        print(
            f"  [{c['verdict']}] {c['claim']}: predicted {c['prediction']}, measured {c['measured']}"
            + (f" - {c['reason']}" if c.get("reason") else "")
        )
