"""The experiment's verdicts and summary: per-point agreement against the lazy limit's references, the
convergence rate of finite nets to their same-init limits, the two-layer decomposition's coefficient claims
(:func:`claims`, :func:`summarize`). Where the architecture has no closed-form prediction (not the two-layer
net: :func:`ntk_adv.perturbation.protocol.decomposes`) the prediction claims are inconclusive with the reason
"no prediction for <arch>"; with a ``depth`` axis every claim is made per depth."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from ntk_adv import plots, verdicts
from ntk_adv.data import data_arrays
from ntk_adv.metrics import fit_loglog_slope
from ntk_adv.perturbation import protocol
from ntk_adv.results import provenance, select

from .config import COMMAND, HEADLINE, Config


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
    if "depth" in axes:  # the headline metrics per depth (the tables above are at the first depth)
        best = restrict_to_best_lr(rows, axes)
        rest = {k: v for k, v in point.items() if k != "depth"}
        summary["agreement_by_depth"] = {
            str(depth): {
                width_label(w): verdicts.seed_proportion(
                    [
                        r["value"]
                        for r in select(best, metric="agreement", depth=depth, **rest)
                        if r["width"] == w
                    ],
                    n,
                ).value
                for w in sorted({r["width"] for r in rows})
                if any(r["width"] == w for r in select(best, metric="agreement", depth=depth, **rest))
            }
            for depth in sorted({r["depth"] for r in rows})
        }
    summary["arch"] = cfg.arch_label()
    summary["prediction"] = (
        "two-layer closed forms" if cfg.decomposes() else f"no prediction for {cfg.arch_label()}"
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
    """The verdict table (:func:`claims_at`); with a ``depth`` axis, the table of every depth, each claim's
    name suffixed ``[depth=k]`` and its ``depth`` recorded."""
    if "depth" not in axes:
        return claims_at(cfg, rows, axes)
    rest = [a for a in axes if a != "depth"]
    out = []
    for depth in sorted({r["depth"] for r in rows if "depth" in r}):
        for c in claims_at(cfg, select(rows, depth=depth), rest, depth=depth):
            out.append(
                {
                    **c,
                    "name": f"{c['name']}[depth={depth}]",
                    "claim": f"(depth {depth}) {c['claim']}",
                    "depth": depth,
                }
            )
    return out


def no_prediction(cfg: Config, depth: int | None = None) -> dict:
    """The prediction claim of an architecture without the two-layer closed forms: inconclusive, saying so
    (at ``depth`` when the claims are made per depth)."""
    arch = cfg.arch_label() if depth is None else f"{cfg.arch} (depth {depth})"
    est = verdicts.Estimate(0.0, -1.0, 1.0, 0, "none")
    c = verdicts.equals(
        "agreement_equals_prediction",
        "Agreement of sign f and sign g equals the lazy limit's closed-form prediction",
        0.0,
        TOL_AGREEMENT,
        est,
    )
    return _inconclusive(
        c,
        f"no prediction for {arch}: the decomposition g = g_0 + B + S, the predicted agreement "
        "over g's initial function and the predicted cosine are closed forms of the two-layer net; the "
        "claims against the same-init limit still apply",
    ).to_dict()


def claims_at(cfg: Config, rows: list[dict], axes: list[str], depth: int | None = None) -> list[dict]:
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
    if not cfg.decomposes():
        out.append(no_prediction(cfg, depth))
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


__all__ = [
    "IDENTIFIABLE",
    "REFERENCES",
    "SATURATED",
    "TOL_AGREEMENT",
    "TOL_COEF",
    "TOL_COSINE",
    "TOL_SIGNS",
    "TOL_SLOPE",
    "TREND_AXES",
    "_inconclusive",
    "_paired_cosine",
    "_per_seed",
    "agreement_claim",
    "best_learning_rates",
    "claims",
    "claims_at",
    "coefficient_claims",
    "gap_rate_claim",
    "gate",
    "headline_point",
    "judged_rows",
    "limit_signs_claim",
    "n_test_points",
    "no_prediction",
    "not_applicable",
    "points",
    "regime",
    "restrict_to_best_lr",
    "saturated",
    "seed_clusters",
    "summarize",
    "width_label",
    "with_regime",
]
