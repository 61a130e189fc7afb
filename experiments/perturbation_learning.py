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
TOL_SIGNS = 0.05  # fraction of test points where finite g and its same-init limit take different signs
TOL_COEF = 0.25  # |c - 1| for the coefficients of what g learned on its limit's terms B and S
IDENTIFIABLE = 0.1  # a term's coefficient is judged only where its mean size is >= 0.1 x the other term's
SATURATED = (0.99, 0.52)  # two rates both >= 0.99 (ceiling) or both <= 0.52 (floor) cannot be told apart
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


def with_regime(rows: list[dict]) -> list[dict]:
    """``rows`` plus, per finite cell, the regime labels ``f_lazy`` and ``g_lazy`` (1 lazy, 0 not) from the
    measured first-layer movement and activation flips (:func:`protocol.is_lazy`, thresholds fixed in code:
    docs/theory.md, "Measuring the regime"). Never from the gap between a net and its limit."""
    by_cell: dict = {}
    for r in rows:
        if r["metric"] in {f"{n}_{m}" for n in "fg" for m in ("weight_move", "flip_train", "flip_test")}:
            by_cell.setdefault(r["cell_id"], {})[r["metric"]] = r
    out = [r for r in rows if r["metric"] not in ("f_lazy", "g_lazy")]
    for metrics in by_cell.values():
        for net in "fg":
            parts = [metrics.get(f"{net}_{m}") for m in ("weight_move", "flip_train", "flip_test")]
            if all(parts):
                lazy = protocol.is_lazy(*(p["value"] for p in parts))
                out.append({**parts[0], "metric": f"{net}_lazy", "value": float(lazy)})
    return out


def regime(rows: list[dict], net: str = "g", **where) -> tuple[bool | None, str]:
    """(every seed's net is lazy at this point, a one-line description with the measured numbers); ``None``
    when the point has no finite-width regime measurement."""
    lazy = [r["value"] for r in select(rows, metric=f"{net}_lazy", **where)]
    if not lazy:
        return None, ""
    mean = lambda m: float(np.mean([r["value"] for r in select(rows, metric=m, **where)]))  # noqa: E731
    text = (
        f"{net} lazy in {int(sum(lazy))} of {len(lazy)} seeds (first-layer movement "
        f"{mean(f'{net}_weight_move'):.3g}, activation flips train {mean(f'{net}_flip_train'):.3f} / test "
        f"{mean(f'{net}_flip_test'):.3f}; lazy means <= {protocol.LAZY_MOVE} / {protocol.LAZY_FLIP})"
    )
    return all(v >= 0.5 for v in lazy), text


def seed_clusters(rows: list[dict], a: str, b: str, n: int, **where) -> tuple[list, list]:
    """Per seed, the paired differences ``a - b`` of its cells matching ``where`` (cells of one seed share f,
    the targets and g_0: the seed is the statistical unit) and, per cell, the per-test-point standard
    deviation of the difference: measured from the cell's ``d2_<b>`` (the mean squared per-point difference,
    :func:`protocol.paired_second_moments`), never below the spread of 0 discordant points out of ``n``
    (:func:`verdicts.adjusted_proportion`); without ``d2_<b>`` the bound :func:`verdicts.paired_point_sd` at
    the adjusted proportions."""
    va = {r["cell_id"]: r for r in select(rows, metric=a, **where)}
    vb = {r["cell_id"]: r["value"] for r in select(rows, metric=b, **where)}
    d2 = {r["cell_id"]: r["value"] for r in select(rows, metric=f"d2_{b}", **where)}
    p0 = verdicts.adjusted_proportion(0.0, n)
    diffs: dict = {}
    sds: dict = {}
    for cid in sorted(va.keys() & vb.keys()):
        r = va[cid]
        d = r["value"] - vb[cid]
        if cid in d2:  # the measured per-point variance of the paired difference, floored (0 of n)
            sd = float(np.sqrt(max((d2[cid] - d * d) * n / max(n - 1, 1), p0 * (1 - p0))))
        else:
            adj = (verdicts.adjusted_proportion(v, n) for v in (r["value"], vb[cid]))
            sd = float(verdicts.paired_point_sd(*adj))
        diffs.setdefault(r["seed"], []).append(d)
        sds.setdefault(r["seed"], []).append(sd)
    seeds = sorted(diffs)
    return [diffs[s] for s in seeds], [sds[s] for s in seeds]


def _inconclusive(claim: verdicts.Claim, reason: str) -> verdicts.Claim:
    return replace(claim, verdict="inconclusive", reason=reason)


def not_applicable(cfg: Config, rows: list[dict], net: str = "g", **where) -> str:
    """Why the lazy limit is no prediction at this point ('' when it is): a config without an exact limit, or
    a measured regime that is not lazy (:func:`regime`)."""
    base = cfg.base().limit_not_applicable()
    if base:
        return f"not applicable: {base}"
    lazy, text = regime(rows, net, **where)
    if lazy is False:
        return f"not applicable: the measured regime is not lazy ({text})"
    return ""


def gate(claim: verdicts.Claim, cfg: Config, rows: list[dict], net: str = "g", **where) -> verdicts.Claim:
    """``claim``, or the same claim made inconclusive with the reason of :func:`not_applicable` where the lazy
    limit is no prediction at this point (the one regime gate of every lazy-limit claim)."""
    why = not_applicable(cfg, rows, net, **where)
    return _inconclusive(claim, why) if why else claim


def saturated(measured: float, reference: float) -> str:
    """A reason when two agreement rates sit together at a ceiling or a floor ('' otherwise)."""
    hi, lo = SATURATED
    if measured >= hi and reference >= hi:
        return f"both rates are at the ceiling ({measured:.3f} and {reference:.3f} >= {hi})"
    if measured <= lo and reference <= lo:
        return f"both rates are at the chance floor ({measured:.3f} and {reference:.3f} <= {lo})"
    return ""


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
    finite net converges to seed by seed, or the expectation over g's initial function), judged on the paired
    per-cell differences, the seed as the unit (:func:`seed_clusters`, :func:`verdicts.paired_difference`).
    Refuted when the interval of the difference lies outside +-:data:`TOL_AGREEMENT`; not applicable where the
    measured regime is not lazy; never confirmed when both rates are saturated (:func:`saturated`)."""
    name, what, basis = REFERENCES[reference]
    n = n_test_points(cfg)
    diffs, sds = seed_clusters(rows, "agreement", reference, n, width=width, **where)
    if not diffs:
        return None
    est = verdicts.paired_difference(diffs, sds, n, bounds=(-1.0, 1.0))
    c = verdicts.equals(
        f"{name}[{label}]",
        f"Agreement of sign f and sign g at {label} equals {what} (measured minus reference, seed as unit)",
        0.0,
        TOL_AGREEMENT,
        est,
        basis=basis,
    )
    meas = verdicts.seed_proportion(
        [r["value"] for r in select(rows, metric="agreement", width=width, **where)], n
    )
    ref = float(np.mean([r["value"] for r in select(rows, metric=reference, width=width, **where)]))
    c = gate(c, cfg, rows, width=width, **where)
    if c.verdict == "confirmed" and saturated(meas.value, ref):  # never confirm on two saturated rates
        c = _inconclusive(
            c,
            f"{saturated(meas.value, ref)}: the difference of the two rates cannot tell g from its limit; "
            "the sign-agreement claim of g with its limit judges the two functions directly",
        )
    return {**c.to_dict(), "agreement": meas.text(), reference: round(ref, 4)}


def limit_signs_claim(cfg: Config, rows: list[dict], width, label: str, **where) -> dict | None:
    """'Finite g takes the signs of its same-init lazy limit': the per-seed fraction of test points where the
    signs differ, 1 - agreement(g, same-init limit), equals 0 within :data:`TOL_SIGNS` - the two functions
    compared directly, not two agreement rates with f. Seed as unit, test points within seeds."""
    by_seed: dict = {}
    for r in select(rows, metric="agreement_g_same_init", width=width, **where):
        by_seed.setdefault(r["seed"], []).append(1.0 - r["value"])
    if not by_seed:
        return None
    est = verdicts.paired_proportion([by_seed[s] for s in sorted(by_seed)], n_test_points(cfg))
    c = verdicts.equals(
        f"g_signs_equal_limit[{label}]",
        f"Finite g at {label} takes the signs of its same-init lazy limit on the test points (fraction of "
        f"sign mismatches, seed as unit)",
        0.0,
        TOL_SIGNS,
        est,
        basis="docs/theory.md: Finite width vs limit",
    )
    c = gate(c, cfg, rows, width=width, **where)
    gaps = [r["value"] for r in select(rows, metric="g_gap", width=width, **where)]
    return {**c.to_dict(), "g_gap_mean": float(np.mean(gaps)) if gaps else None}


def gap_rate_claim(rows: list[dict], net: str) -> dict | None:
    """'The output gap of the finite net (f or g) to its same-init limit ~ m^(-1/2)': a log-log fit over the
    widths whose measured regime is lazy for every seed (:func:`regime`; the rate is a lazy-regime law),
    judged against -1/2 +- :data:`TOL_SLOPE`."""
    gap = [r for r in select(rows, metric=f"{net}_gap") if not plots.is_infinite_width(r["width"])]
    widths = sorted({r["width"] for r in gap})
    if len(widths) < 2:
        return None
    lazy = [w for w in widths if regime(rows, net, width=w)[0]]
    move = {
        w: np.mean([r["value"] for r in select(rows, metric=f"{net}_weight_move", width=w)] or [0.0])
        for w in widths
    }
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
            f"not applicable: fewer than 2 widths where every seed's {net} is lazy (first-layer movement: "
            f"{', '.join(f'm={w:g}: {move[w]:.2f}' for w in widths)})",
        )
        return {**c.to_dict(), "widths": lazy}
    fit = fit_loglog_slope([r["width"] for r in pts], [r["value"] for r in pts])
    c = verdicts.slope(
        f"{net}_gap_rate", claim, -0.5, TOL_SLOPE, fit, basis="docs/theory.md: Finite width vs limit"
    )
    return {**c.to_dict(), "widths": lazy, "weight_movement": {f"{w:g}": float(move[w]) for w in widths}}


def coefficient_claims(cfg: Config, rows: list[dict], width, label: str, **where) -> list[dict]:
    """What finite g learned, ``g - g_0``, regressed on its lazy limit's two terms (bias B, signal S) per seed
    (:func:`protocol.learned_coefficients`): the lazy limit predicts both coefficients equal to 1
    (+-:data:`TOL_COEF`); and, under random targets in scenario (a), the saturated-bias mechanism predicts
    c_B < c_S, judged on the paired per-seed difference c_S - c_B > 0 with the regime reported beside it
    (docs/theory.md, "Beyond the lazy limit: bias saturation")."""
    out = []
    vals = {m: _per_seed(rows, m, width=width, **where) for m in ("g_coef_bias", "g_coef_signal")}
    seeds = sorted(s for s in vals["g_coef_bias"] if s in vals["g_coef_signal"])
    seeds = [
        s for s in seeds if np.isfinite(vals["g_coef_bias"][s]) and np.isfinite(vals["g_coef_signal"][s])
    ]
    if len(seeds) < 2:
        return out
    lazy, text = regime(rows, "g", width=width, **where)
    kink = [r["value"] for r in select(rows, metric="g_kink_frac", width=width, **where)]
    kink0 = [r["value"] for r in select(rows, metric="g_kink_frac_init", width=width, **where)]
    extra = {
        "regime": text,
        "g_kink_frac": float(np.mean(kink)) if kink else None,
        "g_kink_frac_init": float(np.mean(kink0)) if kink0 else None,
    }
    size = {
        m: float(np.mean([r["value"] for r in select(rows, metric=m, width=width, **where)] or [0.0]))
        for m in ("bias_term_abs", "signal_term_abs")
    }
    for metric, term, own, other in (
        ("g_coef_bias", "bias term B", "bias_term_abs", "signal_term_abs"),
        ("g_coef_signal", "signal term S", "signal_term_abs", "bias_term_abs"),
    ):
        if size[own] < IDENTIFIABLE * size[other]:  # a term this small is not identified by the regression
            extra[f"{metric}_not_identifiable"] = (
                f"mean |{term[-1]}| {size[own]:.3g} < {IDENTIFIABLE} x the other term's {size[other]:.3g}"
            )
            continue
        est = verdicts.seed_mean([vals[metric][s] for s in seeds])
        c = verdicts.equals(
            f"{metric}_equals_1[{label}]",
            f"What finite g learned at {label} follows its lazy limit's {term} (coefficient 1)",
            1.0,
            TOL_COEF,
            est,
            basis="docs/theory.md: The limit g, decomposed",
        )
        c = gate(c, cfg, rows, width=width, **where)
        out.append({**c.to_dict(), **extra})
    identified = not any(k.endswith("_not_identifiable") for k in extra)
    if cfg.targets == "random" and cfg.scenario == "a" and lazy is False and identified:
        diff = [vals["g_coef_signal"][s] - vals["g_coef_bias"][s] for s in seeds]
        c = verdicts.above(
            f"bias_saturates[{label}]",
            f"Outside the lazy regime under random targets (scenario a) at {label}, g's bias term is "
            f"suppressed relative to its signal term: c_S - c_B > 0 (per seed)",
            0.0,
            verdicts.seed_mean(diff),
            basis="docs/theory.md: Beyond the lazy limit: bias saturation",
        )
        out.append({**c.to_dict(), **extra})
    return out


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
        "g_flip_train",
        "g_flip_test",
        "g_kink_frac",
        "g_coef_bias",
        "g_coef_signal",
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
    summary["regime_rule"] = (
        f"lazy: first-layer movement <= {protocol.LAZY_MOVE} of its initial norm and activation flips <= "
        f"{protocol.LAZY_FLIP} on the training inputs and on the test points, for every seed (fixed before "
        "the data; docs/theory.md, Measuring the regime)"
    )
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
            lazy, text = regime(rows, "g", **where)
            entry["regime"] = None if lazy is None else ("lazy" if lazy else "not lazy")
            if text:
                entry["regime_measured"] = text
            entry["judged"] = not (axis == "eps" and v == 0)
            out.append(entry)
    return out


def judged_rows(rows: list[dict]) -> list[dict]:
    """The rows claims are judged on: eps = 0 cells (g trained on all-zero inputs in scenario a, on clean
    inputs with wrong labels in b) are reported in results.csv and the figures but never judged."""
    return [r for r in rows if r.get("eps") is None or r["eps"] > 0]


def claims(cfg: Config, rows: list[dict], axes: list[str]) -> list[dict]:
    """The verdict table (:mod:`ntk_adv.verdicts`), every claim refutable and judged with the seed as the
    unit: measured agreement equals the lazy limit's (same-init) agreement at every finite width of the
    headline point, finite g takes its limit's signs (the two functions compared directly), and along each
    swept axis at the largest width; agreement equals the expectation over g_0 pooled over the swept points;
    g and f converge to their same-init limits at rate m^(-1/2) over the lazy widths; the bias-free limit
    sign(S) (the papers' hat_g) explains the agreement; what g learned follows B and S with coefficient 1,
    and outside the lazy regime under random targets the bias term saturates. Claims at points whose measured
    regime is not lazy are inconclusive with the regime's numbers; eps = 0 cells are not judged."""
    out: list[dict] = []
    rows = judged_rows(rows)
    if not rows:
        return out
    point = headline_point(rows, axes)
    best = restrict_to_best_lr(
        rows, axes, metric="agreement_predicted"
    )  # lr chosen by the theory, not the data
    chosen = select(best, **point)
    finite = sorted({r["width"] for r in chosen if not plots.is_infinite_width(r["width"])})
    where_txt = ", ".join(f"{TREND_AXES.get(a, a)}={v:g}" for a, v in point.items())
    for w in finite:
        label = f"m={w:g}" + (f", {where_txt}" if where_txt else "")
        for make in (agreement_claim, limit_signs_claim):
            c = make(cfg, chosen, w, label)
            if c:
                out.append(c)
    if finite:
        top = finite[-1]
        label = f"m={top:g}" + (f", {where_txt}" if where_txt else "")
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
        diffs, sds = seed_clusters(chosen, "agreement", "agreement_signal", n_test_points(cfg), width=top)
        if diffs:
            c = verdicts.equals(
                "bias_free_limit",
                f"sign(S), the limit g without its bias term (the papers' hat_g), predicts the agreement at "
                f"m={top:g} (measured minus sign(S)-agreement, seed as unit)",
                0.0,
                TOL_AGREEMENT,
                verdicts.paired_difference(diffs, sds, n_test_points(cfg), bounds=(-1.0, 1.0)),
                basis="docs/theory.md: The limit g, decomposed",
            )
            c = gate(c, cfg, chosen, width=top)
            yadv = [r["value"] for r in select(chosen, metric="mean_y_adv", width=top)]
            out.append({**c.to_dict(), "mean_abs_y_adv": float(np.mean(np.abs(yadv))) if yadv else None})
        out += coefficient_claims(cfg, chosen, top, label)
    for net in ("g", "f"):
        c = gap_rate_claim(chosen, net)
        if c:
            out.append(c)
    if finite:
        top = finite[-1]
        for axis in [a for a in TREND_AXES if a in axes]:
            rest = {a: v for a, v in point.items() if a != axis}
            sub = select(best, width=top, **rest)
            for v in sorted({r[axis] for r in sub}):
                label = f"m={top:g}, {TREND_AXES[axis]}={v:g}"
                if axis == "steps_f" and cfg.loss == "identity" and cfg.attack in ("one_step_l2", "fgm"):
                    diffs = _paired_cosine(sub, **{axis: v})
                    if diffs:
                        c = verdicts.equals(
                            f"cosine_equals_prediction[{label}]",
                            f"mean |cos(eta_n, D_n)| at {label} equals the lazy prediction (per seed)",
                            0.0,
                            TOL_COSINE,
                            verdicts.seed_mean(diffs, bounds=(-1.0, 1.0)),
                            basis="docs/theory.md: Cosine with the predicted direction",
                        )
                        c = gate(c, cfg, sub, "f", **{axis: v})
                        out.append(c.to_dict())
                elif axis != "steps_f" and point.get(axis) != v:
                    c = agreement_claim(cfg, sub, top, label, **{axis: v})
                    if c:
                        out.append(c)
    return out


def _paired_cosine(rows: list[dict], **where) -> list[float]:
    """Per seed, measured minus predicted mean |cos(eta_n, D_n)| (one cell per seed at a point)."""
    meas = _per_seed(rows, "cos_predicted", **where)
    pred = _per_seed(rows, "cos_predicted_theory", **where)
    return [meas[s] - pred[s] for s in sorted(meas) if s in pred]


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
    rows = with_regime(store.rows(records))
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
