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

from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import jax
import numpy as np

from ntk_adv import limits, pattern_gd, plots, protocol, sweeps
from ntk_adv.data import DataSpec
from ntk_adv.metrics import mean_ci
from ntk_adv.results import claim, provenance, select, write_csv, write_json
from ntk_adv.store import ResultStore

COMMAND = "perturbation-learning"
# Config tuple fields that are sweep axes, and the ProtocolConfig / DataSpec field each one sets.
AXES = {"widths": "width", "eps": "eps", "lr_f": "lr_f", "lr_g": "lr_g", "steps_f": "steps_f",
        "steps_g": "steps_g", "gamma": "gamma", "d": "data.d", "n_train": "data.n_train"}
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
    eps: tuple[float, ...] = (1.0,)
    lr_f: tuple[float, ...] = (0.1,)
    lr_g: tuple[float, ...] = (0.1,)
    steps_f: tuple[int, ...] = (100,)
    steps_g: tuple[int, ...] = (100,)
    gamma: tuple[float, ...] = (0.0,)
    d: tuple[int, ...] = ()  # input dimension(s) of synthetic data (overrides data.d)
    n_train: tuple[int, ...] = ()  # training-set size(s) (overrides data.n_train)
    solver: str = "auto"  # trainings: auto | autodiff | pattern (ntk_adv.pattern_gd; the same GD iterates)
    backend: str = "inprocess"
    workers: int = 2
    force: bool = False
    accept_stale: bool = False  # keep stored cells computed by other code or on other data (rows marked 'stale')
    store: str = ""  # result store directory; default DIR/store
    decision_map: bool = True

    def __post_init__(self):
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if not self.widths and not self.infinite:
            raise ValueError("nothing to run: give --widths or keep --infinite")
        if any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be >= 1, got {self.widths}")
        for name in ("eps", "lr_f", "lr_g", "steps_f", "steps_g", "gamma"):
            if not getattr(self, name):
                raise ValueError(f"{name} needs at least one value")
        if self.backend not in sweeps.BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; expected one of {', '.join(sweeps.BACKENDS)}")
        base = self.base()  # validates scenario, attack, targets, loss, preset, eps, gamma ranges
        if self.widths:  # an unknown solver, or 'pattern' where it cannot apply, is refused here, by name
            pattern_gd.choose(base.net(), base.train_config("f"), base.data.n_train, self.solver)

    def base(self) -> protocol.ProtocolConfig:
        return protocol.ProtocolConfig(
            data=self.data, width=self.widths[0] if self.widths else None, gamma=self.gamma[0],
            parametrization=self.parametrization, loss=self.loss, preset=self.preset, lr_f=self.lr_f[0],
            steps_f=self.steps_f[0], lr_g=self.lr_g[0], steps_g=self.steps_g[0], scenario=self.scenario,
            attack=self.attack, eps=self.eps[0], targets=self.targets, centered=self.centered)

    def grid(self) -> sweeps.Grid:
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
        return sweeps.Grid(self.base(), axes=tuple(axes), seeds=self.seeds)

    def varying(self) -> list[str]:
        """Row columns of the axes that have more than one value (besides width)."""
        return [AXES[n] for n in AXES if n != "widths" and len(getattr(self, n)) > 1]


QUICK_CONFIG = Config(data=DataSpec("digits", n_train=60, n_test=60), widths=(16, 256), seeds=2, eps=(0.1, 1.0),
                      steps_f=(30,), steps_g=(30,), decision_map=False)
REPORT_CONFIG = Config(data=DataSpec("digits", n_train=200, n_test=None), widths=(16, 64, 256, 1024, 4096), seeds=5,
                       eps=(0.1, 0.3, 1.0))


def best_learning_rates(rows: list[dict], axes: list[str]) -> dict:
    """Per point of the non-lr axes (and width), the (lr_f, lr_g) with the highest mean agreement - the
    papers' reporting convention (best over the lr grid), made explicit."""
    best: dict = {}
    other = [a for a in axes if a not in ("lr_f", "lr_g")]
    for r in select(rows, metric="agreement"):
        point = (r["width"],) + tuple(r[a] for a in other)
        best.setdefault(point, {}).setdefault((r["lr_f"], r["lr_g"]), []).append(r["value"])
    return {point: max(lrs, key=lambda k: np.mean(lrs[k])) for point, lrs in best.items()}


def restrict_to_best_lr(rows: list[dict], axes: list[str]) -> list[dict]:
    if not any(a in axes for a in ("lr_f", "lr_g")):
        return rows
    best = best_learning_rates(rows, axes)
    other = [a for a in axes if a not in ("lr_f", "lr_g")]
    return [r for r in rows if best[(r["width"],) + tuple(r[a] for a in other)] == (r["lr_f"], r["lr_g"])]


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


def summarize(cfg: Config, rows: list[dict]) -> dict:
    axes = cfg.varying()
    point = headline_point(rows, axes)
    chosen = select(restrict_to_best_lr(rows, axes), **point)
    summary: dict = {"experiment": COMMAND, "config": asdict(cfg), **provenance(), "headline_point": point,
                     "lr_selection": "best mean agreement over the lr grid per point" if
                     any(a in axes for a in ("lr_f", "lr_g")) else "fixed"}
    for metric in HEADLINE:
        by_width = {}
        for w in sorted({r["width"] for r in rows}, key=lambda w: np.inf if plots.is_infinite_width(w) else w):
            vals = [r["value"] for r in select(chosen, metric=metric) if r["width"] == w]
            if not vals:
                continue
            ci = mean_ci(vals)
            # every headline metric is a fraction: the t-interval is clipped to [0, 1]
            by_width[width_label(w)] = {"mean": ci.mean, "ci95": [max(ci.low, 0.0), min(ci.high, 1.0)], "n": ci.n}
        summary[f"{metric}_by_width"] = by_width
        if "inf" in by_width:
            summary[f"{metric}_infinite"] = by_width["inf"]["mean"]
    summary["claims"] = claims(summary, rows, axes)
    if any(a in axes for a in ("lr_f", "lr_g")):
        summary["best_lr"] = {"/".join(map(str, k)): {"lr_f": v[0], "lr_g": v[1]}
                              for k, v in best_learning_rates(rows, axes).items()}
    return summary


def claims(summary: dict, rows: list[dict], axes: list[str]) -> list[dict]:
    """The verdict table: agreement above chance, finite -> infinite width, and the eps trend if swept."""
    out = []
    agr = summary["agreement_by_width"]
    finite = [w for w in agr if w != "inf"]
    if finite:
        top = agr[finite[-1]]
        out.append(claim(f"g trained only on mislabeled perturbations agrees with f (width {finite[-1]})",
                         "agreement > 0.5 (chance), 95% CI above 0.5",
                         f"{top['mean']:.3f} [{top['ci95'][0]:.3f}, {top['ci95'][1]:.3f}]", top["ci95"][0] > 0.5))
    if "inf" in agr:
        inf = agr["inf"]
        out.append(claim("Infinite-width limit (f_inf, perturbations of f_inf, g_inf)", "agreement > 0.5",
                         f"{inf['mean']:.3f} [{inf['ci95'][0]:.3f}, {inf['ci95'][1]:.3f}]", inf["ci95"][0] > 0.5))
        if len(finite) >= 2:
            gaps = [abs(agr[w]["mean"] - inf["mean"]) for w in finite]
            ok = gaps[-1] <= gaps[0] or gaps[-1] <= max(agr[finite[-1]]["ci95"][1] - agr[finite[-1]]["mean"], 0.01)
            out.append(claim("Finite-width agreement approaches the (centred) infinite-width value",
                             "|agreement(m) - agreement(inf)| shrinks with m - expected only when f_0, g_0 are "
                             "negligible (long training or centred nets; theory.md)",
                             f"gap {gaps[0]:.3f} at m={finite[0]} -> {gaps[-1]:.3f} at m={finite[-1]}", ok))
    point = summary["headline_point"]
    gap = [r for r in select(rows, metric="g_gap", **point)]
    widths = sorted({r["width"] for r in gap})
    if len(widths) >= 2:
        lo = np.mean([r["value"] for r in gap if r["width"] == widths[0]])
        hi = np.mean([r["value"] for r in gap if r["width"] == widths[-1]])
        out.append(claim("Finite g converges to the infinite-width g with the same initial function",
                         "relative output gap shrinks with width (~ m^(-1/2) in the lazy regime)",
                         f"{lo:.3f} at m={widths[0]:g} -> {hi:.3f} at m={widths[-1]:g}", hi < lo))
    trend_axes = {"eps": "eps", "steps_g": "T_g (steps_g)", "data.d": "d", "data.n_train": "N"}
    for axis in [a for a in trend_axes if a in axes]:
        rest = {a: v for a, v in point.items() if a != axis}
        sub = select(restrict_to_best_lr(rows, axes), metric="agreement", **rest)
        vals = sorted({r[axis] for r in sub})
        largest = max((r["width"] for r in sub if not plots.is_infinite_width(r["width"])), default=None)
        for label, pick in (("infinite width", plots.is_infinite_width), (f"width {largest}",
                                                                          lambda w, m=largest: w == m)):
            lo = [r["value"] for r in sub if r[axis] == vals[0] and pick(r["width"])]
            hi = [r["value"] for r in sub if r[axis] == vals[-1] and pick(r["width"])]
            if lo and hi:
                out.append(claim(f"Agreement rises with {trend_axes[axis]} ({label})",
                                 f"agreement at {axis}={vals[-1]:g} >= at {axis}={vals[0]:g}",
                                 f"{np.mean(lo):.3f} -> {np.mean(hi):.3f}", np.mean(hi) >= np.mean(lo)))
    return out


def figures(cfg: Config, rows: list[dict], out: Path) -> list[Path]:
    axes = cfg.varying()
    chosen = restrict_to_best_lr(rows, axes)
    fixed = {a: chosen[0][a] for a in axes} if chosen else {}
    paths = []
    title = f"{cfg.data.name}, scenario ({cfg.scenario}), {cfg.attack}"
    if len({r["width"] for r in chosen}) > 1 and any(not plots.is_infinite_width(r["width"]) for r in chosen):
        where = headline_point(chosen, axes)
        paths += plots.figure_vs_width(chosen, ("agreement", "g_acc_test"), out=out, name="agreement_vs_width",
                                       title=title, labels={"agreement": "agreement(f, g)",
                                                            "g_acc_test": "g accuracy (held-out)"}, **where)
    for axis, metric, name in (("eps", "agreement", "agreement_vs_eps"), ("steps_g", "agreement",
                               "agreement_vs_T_g"), ("data.d", "agreement", "agreement_vs_d"),
                               ("data.n_train", "agreement", "agreement_vs_N"), ("gamma", "agreement",
                               "agreement_vs_gamma")):
        if axis in axes:
            where = {a: fixed[a] for a in axes if a not in (axis, "lr_f", "lr_g")}
            paths += plots.figure_vs(chosen, axis, metric, out=out, name=name, title=title,
                                     ylabel="agreement(f, g)", **where)
    if "steps_f" in axes:
        where = {a: fixed[a] for a in axes if a not in ("steps_f", "lr_f", "lr_g")}
        paths += plots.figure_cosine_vs_steps_f(chosen, out=out, title=title, **where)
    return paths


def decision_maps(cfg: Config, out: Path) -> list[Path]:
    """Decision maps for seed 0 at the largest finite width and at infinite width: where sign f != sign g in
    the plane of the two class means, with the zero contours of the limit classifiers hat_f and hat_g."""
    base = cfg.base()
    x, y, z, y_test = sweeps.data_arrays(cfg.data)
    key = jax.random.PRNGKey(0)
    origin, basis = protocol.class_mean_plane(np.asarray(x), np.asarray(y))
    proj = np.asarray(x) @ basis.T
    extent = 1.3 * float(np.max(np.abs(proj)))
    paths = []
    settings = ([max(cfg.widths)] if cfg.widths else []) + ([None] if cfg.infinite else [])
    for width in settings:
        c = base.with_(width=width)
        if width is None:
            f = protocol.infinite_f(c, x, y)
            adv = protocol.adversarial_set(c, f, x, y, key)
            g = protocol.infinite_g(c, adv)
        else:
            apply_fn = protocol.model_apply(c)
            pf = protocol.train_f(c, x, y, key)
            f = lambda q, pf=pf, apply_fn=apply_fn: apply_fn(pf, q)  # noqa: E731
            adv = protocol.adversarial_set(c, f, x, y, key)
            pg = protocol.train_g(c, adv, key)
            g = lambda q, pg=pg, apply_fn=apply_fn: apply_fn(pg, q)  # noqa: E731
        hat_f, hat_g = limits.limit_classifiers(x, y, adv.x_adv, gamma=c.gamma, bias=c.bias, base=adv.base)
        grid = protocol.decision_grid({"f": f, "g": g, "hat_f": hat_f, "hat_g": hat_g}, origin, basis, extent, 121)
        name = f"decision_map_{'inf' if width is None else f'm{width}'}"
        paths += plots.figure_decision_map(grid, "f", "g", extent, out=out, name=name, points=proj,
                                           labels=np.asarray(y), title=f"{cfg.data.name}: "
                                           f"{'infinite width' if width is None else f'width {width}'}")
    return paths


def main(cfg: Config = Config(), out: str | Path = "runs/perturbation-learning", *, progress: bool = True) -> dict:
    """Run the sweep (resuming from the store), write results.csv, summary.json and figures; return summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = cfg.grid()
    store = ResultStore(cfg.store or out / "store")
    records = sweeps.run_sweep(grid, store, run_batch=partial(sweeps.run_protocol_batch, solver=cfg.solver),
                               backend=cfg.backend, workers=cfg.workers, force=cfg.force, progress=progress,
                               reuse="accept" if cfg.accept_stale else "verify")
    rows = store.rows(records)
    write_csv(rows, out / "results.csv")
    summary = summarize(cfg, rows)
    summary["stale_cells"] = sum(1 for r in records if r.get("stale"))  # kept with --accept-stale, rows marked
    summary["figures"] = [str(p.name) for p in figures(cfg, rows, out)]
    if cfg.decision_map:
        summary["figures"] += [str(p.name) for p in decision_maps(cfg, out)]
    write_json(summary, out / "summary.json")
    if progress is not False:
        report(summary)
    return summary


def report(summary: dict) -> None:
    """Print per-width agreement next to the infinite-width prediction."""
    agr, acc = summary["agreement_by_width"], summary["g_acc_test_by_width"]
    print(f"{'width':>8}  {'agreement(f,g)':>22}  {'g accuracy (test)':>22}")
    for w in agr:
        a, g = agr[w], acc.get(w, {"mean": np.nan, "ci95": [np.nan, np.nan]})
        print(f"{w:>8}  {a['mean']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]  "
              f"{g['mean']:.3f} [{g['ci95'][0]:.3f}, {g['ci95'][1]:.3f}]")
    if "agreement_infinite" in summary:
        print(f"infinite-width prediction: agreement {summary['agreement_infinite']:.3f}")
