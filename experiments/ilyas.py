"""Ten classes: learning from adversarial perturbations as Ilyas et al. (NeurIPS 2019) built it - D_rand and
D_det - with Wallace's (Distill 2019) relabelling control, for the two-layer net at finite width and in the
kernel limit (protocol: :mod:`ntk_adv.ilyas`; theory: docs/theory.md, "Ten classes: the lazy limit of D_rand
and D_det").

Sweeps the width (and the kernel limit) through the engine (one cell per width and seed, seeds vmapped,
resumable store); every cell runs all eps, targets and scenarios on its trained f. Writes OUT/results.csv
(long format: width, seed, eps, target, scenario, metric, value; targets ``rand`` / ``det`` / ...; Wallace's
rows have target ``wallace``), OUT/summary.json (per width and eps means with 95% intervals, the claims with
verdicts) and figures (PNG + PDF): g's clean test accuracy vs eps and vs width, D_rand / D_det / Wallace,
finite vs limit, the lazy-limit prediction dashed.

Claims (tolerances fixed here, before any data; the seed is the unit; judged at the largest finite width and
the largest eps, scenario b unless only a is run):

* agreement (argmax f == argmax g) equals its same-init kernel-limit prediction per seed within
  :data:`TOL_LIMIT` (paired difference);
* g's clean accuracy equals the limit's prediction within :data:`TOL_LIMIT` (paired);
* D_rand: g's clean accuracy is above chance 1/C by :data:`MARGIN_CHANCE` (finite and infinite width);
* D_det below D_rand (paired per seed): the lazy limit's zeroth-order term is a consistent relabelling for
  det and a diffuse one for rand;
* Wallace's control vs D_rand: judged in the direction the limit predicts only when the predicted gap exceeds
  :data:`MIN_PREDICTED_GAP`; otherwise reported with "no prediction".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from ntk_adv import engine, ilyas, plots, verdicts
from ntk_adv.data import ALL_CLASSES_DATASETS as ALL_CLASS_SETS
from ntk_adv.data import AllClassesDataset, DataSpec
from ntk_adv.results import provenance, select, write_csv, write_json
from ntk_adv.store import ResultStore

COMMAND = "ilyas"
TOL_LIMIT = 0.05  # |measured - same-init limit| tolerance for agreement and accuracy (a proportion)
MARGIN_CHANCE = 0.05  # D_rand must beat 1/C by this much
MIN_PREDICTED_GAP = 0.05  # Wallace vs D_rand: the limit must predict a gap at least this large to judge it
PAPER = (
    "Ilyas et al. 2019, Table 1: ResNet-50 on CIFAR-10 (32x32x3, 50k images), targeted PGD L2 eps=0.5 on "
    "[0,1] pixels: D_rand 63.3%, D_det 43.7% clean test accuracy; here a two-layer net on different data"
)


@dataclass(frozen=True)
class Config:
    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=None, classes="all"))
    net: ilyas.NetSpec = field(
        default_factory=ilyas.NetSpec
    )  # --arch, --depth, --gamma, ... (width: --widths)
    train: ilyas.TrainSpec = field(default_factory=ilyas.TrainSpec)
    attack: ilyas.AttackSpec = field(default_factory=ilyas.AttackSpec)
    widths: tuple[int, ...] = (64, 256, 1024)  # hidden widths m of the finite nets, >= 1
    depths: tuple[int, ...] = ()  # depths to sweep (fc: weight layers; cnn: conv blocks); empty: --depth
    infinite: bool = True  # also run the infinite-width kernel limit (centred)
    seeds: int = 4  # seeds per width (independent f, targets and g: the statistical unit), >= 1
    eps: tuple[float, ...] = (0.5, 1.0, 2.0)  # attack radii: L2 norm (L-inf for pgd_linf), pixels in [0,1]
    targets: tuple[ilyas.IlyasTargets, ...] = ("rand", "det")  # target rules: rand, rand_any, det, balanced
    scenarios: tuple[ilyas.IlyasScenario, ...] = ("b",)  # b: g trains on x + eta (Ilyas et al.); a: eta alone
    # files under --data-root or its subfolder of that name
    datasets: tuple[AllClassesDataset, ...] = ()  # several data sets, each into OUT/<name>/; empty: --dataset
    # set by the experiment: net.width from widths; all classes of an image set (no synthetic d, shift, pair)
    CLI_HIDE: ClassVar[tuple[str, ...]] = (
        "net.width",
        "data.classes",
        "data.d",
        "data.shift",
        "data.pos",
        "data.neg",
    )
    # how the cells run and where they are kept (--backend, --workers, --store, --force, --accept-stale)
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")
        if not self.widths and not self.infinite:
            raise ValueError("nothing to run: give --widths or keep --infinite")
        if any(w < 1 for w in self.widths):
            raise ValueError(f"--widths must be >= 1, got {self.widths}")
        for name in self.datasets:
            if name not in ALL_CLASS_SETS:
                raise ValueError(f"unknown --datasets {name!r}; expected some of {', '.join(ALL_CLASS_SETS)}")
            if name != "digits" and not self.data.root:
                raise ValueError(f"--datasets {name} is read from files: give --data-root DIR")
        if self.depths and self.net.arch == "two-layer":
            raise ValueError("--depths needs --arch fc or cnn (the two-layer net has depth 2)")
        if self.infinite and self.net.arch != "two-layer" and self.net.param() == "standard":
            raise ValueError(
                f"--arch {self.net.arch} --parametrization standard has no infinite-width kernel (with every "
                "layer trained its NTK grows with the width): use --parametrization ntk or --no-infinite"
            )
        for depth in self.depth_values():
            self.setup(depth=depth)

    def for_dataset(self, name: str) -> Config:
        """This config on data set ``name`` alone: its files under ``--data-root``/name when that folder
        exists, else ``--data-root`` itself."""
        root = self.data.root
        if root and (Path(root) / name).is_dir():
            root = str(Path(root) / name)
        return replace(
            self, datasets=(), data=replace(self.data, name=name, root=root if name != "digits" else None)
        )

    def depth_values(self) -> tuple[int, ...]:
        return tuple(self.depths) or (int(self.net.depth),)

    def setup(self, width=ilyas.INF_WIDTH, depth: int | None = None) -> ilyas.IlyasSetup:
        return ilyas.IlyasSetup(
            data=self.data,
            net=replace(self.net, width=width, depth=self.net.depth if depth is None else depth),
            train=self.train,
            attack=self.attack,
            eps=tuple(self.eps),
            targets=tuple(self.targets),
            scenarios=tuple(self.scenarios),
        )

    def grid(self) -> list[tuple]:
        widths = [*self.widths, *([ilyas.INF_WIDTH] if self.infinite else [])]
        return [
            (self.setup(w, depth), s)
            for depth in self.depth_values()
            for w in widths
            for s in range(self.seeds)
        ]


QUICK_CONFIG = Config(
    data=DataSpec("digits", n_train=150, n_test=100, classes="all"),
    train=ilyas.TrainSpec(steps_f=20, steps_g=20),
    attack=ilyas.AttackSpec(attack_steps=3),
    widths=(32, 128),
    seeds=2,
    eps=(1.0, 2.0),
)


# --------------------------------------------------------------------------------------------- claims
def _per_seed(rows: list[dict], metric: str, **where) -> dict[int, float]:
    return {int(r["seed"]): float(r["value"]) for r in select(rows, metric=metric, **where)}


def _paired(rows, a: str, b: str, n: int, where_a: dict, where_b: dict):
    """Per-seed differences a - b and their per-point sd bound; None when no seed has both."""
    pa, pb = _per_seed(rows, a, **where_a), _per_seed(rows, b, **where_b)
    seeds = sorted(set(pa) & set(pb))
    if not seeds:
        return None
    diffs = [pa[s] - pb[s] for s in seeds]
    sds = [float(verdicts.paired_point_sd(_adj(pa[s], n), _adj(pb[s], n))) for s in seeds]
    return verdicts.paired_difference(diffs, sds, n, bounds=(-1.0, 1.0)), pa, pb


def _adj(p: float, n: int) -> float:
    """(k + 1) / (n + 2): a proportion pulled off 0 and 1 so a per-point sd bound is never 0."""
    return (p * n + 1.0) / (n + 2.0)


def headline(cfg: Config, rows: list[dict]) -> dict:
    finite = sorted({r["width"] for r in rows if not plots.is_infinite_width(r["width"])})
    return {
        "width": finite[-1] if finite else None,
        "eps": float(max(cfg.eps)),
        "scenario": "b" if "b" in cfg.scenarios else cfg.scenarios[0],
    }


def _at_depth(rows: list[dict], cfg: Config, depth: int) -> list[dict]:
    return [r for r in rows if int(r.get("depth", cfg.net.depth)) == depth]


def claims(cfg: Config, rows: list[dict], n_test: int, n_classes: int) -> tuple[list[dict], list[dict]]:
    """(claims, reports) at every depth (names carry ``depth=L`` when several depths run): every judged
    claim as ``Claim.to_dict()``; reports are comparisons the theory makes no prediction for, among them g's
    clean accuracy across depths (the lazy theory predicts each depth's value through its own kernel, not a
    trend)."""
    depths = cfg.depth_values()
    out, reports = [], []
    for depth in depths:
        c, r = _claims_at(cfg, _at_depth(rows, cfg, depth), n_test, n_classes)
        if len(depths) > 1:
            for item in (*c, *r):
                item["name"] = item["name"][:-1] + f", depth={depth}]"
        out += c
        reports += r
    if len(depths) > 1:
        h = headline(cfg, rows)
        for width in ([h["width"]] if h["width"] is not None else []) + (
            [ilyas.INF_WIDTH] if cfg.infinite else []
        ):
            label = "inf" if plots.is_infinite_width(width) else str(int(width))
            for kind in cfg.targets:
                means = {}
                for depth in depths:
                    where = {"eps": h["eps"], "scenario": h["scenario"], "target": kind, "width": width}
                    vals = list(_per_seed(_at_depth(rows, cfg, depth), "g_acc_test", **where).values())
                    if vals:
                        means[depth] = verdicts.seed_proportion(vals, n_test).text()
                reports.append(
                    {
                        "name": f"acc_vs_depth[{kind}, m={label}]",
                        "claim": f"D_{kind}: g's clean test accuracy across depths "
                        f"{', '.join(map(str, depths))}",
                        "prediction": "no prediction",
                        "reason": "the lazy limit predicts each depth through its own kernel (the "
                        "acc_predicted rows), not an ordering across depths",
                        "measured": means,
                    }
                )
    return out, reports


def _claims_at(cfg: Config, rows: list[dict], n_test: int, n_classes: int) -> tuple[list[dict], list[dict]]:
    h = headline(cfg, rows)
    at = {"eps": h["eps"], "scenario": h["scenario"]}
    out, reports = [], []
    basis = "docs/theory.md: Ten classes: the lazy limit of D_rand and D_det"
    w = h["width"]
    if w is not None:
        for kind in cfg.targets:
            where = {**at, "target": kind, "width": w}
            for metric, pred in (("agreement", "agreement_predicted"), ("g_acc_test", "acc_predicted")):
                res = _paired(rows, metric, pred, n_test, where, where)
                if res is None:
                    continue
                out.append(
                    verdicts.equals(
                        f"{metric}_equals_limit[{kind}, m={int(w)}]",
                        f"[{kind}] {metric} of the finite nets equals the same-init kernel limit's "
                        f"prediction per seed (measured minus predicted; eps={h['eps']:g} L2, "
                        f"scenario {h['scenario']})",
                        0.0,
                        TOL_LIMIT,
                        res[0],
                        basis=basis,
                    ).to_dict()
                )
    chance = 1.0 / n_classes
    widths = ([w] if w is not None else []) + ([ilyas.INF_WIDTH] if cfg.infinite else [])
    for width in widths:
        label = "inf" if plots.is_infinite_width(width) else str(int(width))
        if "rand" in cfg.targets:
            vals = list(_per_seed(rows, "g_acc_test", **at, target="rand", width=width).values())
            if vals:
                out.append(
                    verdicts.above(
                        f"rand_above_chance[m={label}]",
                        f"D_rand: g's clean test accuracy exceeds chance 1/C = {chance:.3f} by "
                        f"{MARGIN_CHANCE} (eps={h['eps']:g} L2, scenario {h['scenario']})",
                        chance + MARGIN_CHANCE,
                        verdicts.seed_proportion(vals, n_test),
                        basis=basis,
                        paper=PAPER,
                    ).to_dict()
                )
        if "rand" in cfg.targets and "det" in cfg.targets:
            res = _paired(
                rows, "g_acc_test", "g_acc_test", n_test, {**at, "target": "det", "width": width},
                {**at, "target": "rand", "width": width},
            )  # fmt: skip
            if res is not None:
                out.append(
                    verdicts.below(
                        f"det_below_rand[m={label}]",
                        "D_det's g is less accurate on clean test points than D_rand's (det minus rand, "
                        f"paired per seed; eps={h['eps']:g} L2, scenario {h['scenario']})",
                        0.0,
                        res[0],
                        basis=basis,
                        paper=PAPER,
                    ).to_dict()
                )
    if w is not None and "rand" in cfg.targets:
        wr = {"target": "wallace", "width": w}
        rr = {**at, "target": "rand", "width": w}
        pred = _paired(rows, "wallace_acc_predicted", "acc_predicted", n_test, wr, rr)
        meas = _paired(rows, "wallace_acc_test", "g_acc_test", n_test, wr, rr)
        if pred is not None and meas is not None:
            gap = pred[0].value
            text = (
                f"Wallace's control (clean x relabelled by argmax f) minus D_rand, g's clean test accuracy "
                f"(paired per seed, m={int(w)}, eps={h['eps']:g} L2)"
            )
            if abs(gap) >= MIN_PREDICTED_GAP:
                judge = verdicts.above if gap > 0 else verdicts.below
                out.append(
                    judge(
                        f"wallace_vs_rand[m={int(w)}]",
                        f"{text}: the same-init limit predicts {gap:+.3f}, so the sign",
                        0.0,
                        meas[0],
                        basis=basis,
                    ).to_dict()
                    | {"predicted_gap": gap}
                )
            else:
                reports.append(
                    {
                        "name": f"wallace_vs_rand[m={int(w)}]",
                        "claim": text,
                        "prediction": "no prediction",
                        "reason": f"the limit's predicted gap {gap:+.3f} is below {MIN_PREDICTED_GAP}",
                        "measured": meas[0].text(),
                    }
                )
    return out, reports


# -------------------------------------------------------------------------------------------- summary
def by_width_eps(rows: list[dict], n_test: int) -> list[dict]:
    """Mean over seeds with the 95% interval of every metric at every (width, eps, target, scenario)."""
    groups: dict = {}
    for r in rows:
        key = (int(r.get("depth", 2)), str(r["width"]), r["eps"], r["target"], r["scenario"], r["metric"])
        groups.setdefault(key, []).append(float(r["value"]))
    out = []
    for (depth, w, eps, target, scenario, metric), vals in sorted(groups.items()):
        est = verdicts.seed_proportion(vals, n_test) if len(vals) >= 1 else None
        out.append(
            dict(depth=depth, width=w, eps=eps, target=target, scenario=scenario, metric=metric,
                 mean=est.value, ci95=[est.low, est.high], seeds=len(vals))
        )  # fmt: skip
    return out


def figures(cfg: Config, rows: list[dict], out: Path, n_test: int, n_classes: int) -> list[Path]:
    """vs eps and vs width at the first depth; vs depth when several depths ran."""
    depths = cfg.depth_values()
    paths = _figures_at(cfg, _at_depth(rows, cfg, depths[0]), out, n_test, n_classes)
    if len(depths) > 1:
        paths += _figure_vs_depth(cfg, rows, out, n_test, n_classes)
    return paths


TARGET_COLORS = {"rand": "C0", "det": "C3", "rand_any": "C2", "balanced": "C4"}


def _panel_widths(cfg: Config, h: dict) -> list:
    """The headline finite width (if any) and the limit (if run): one figure panel each."""
    return ([h["width"]] if h["width"] is not None else []) + ([ilyas.INF_WIDTH] if cfg.infinite else [])


def _d(kind: str) -> str:
    """The dataset name of a target kind as mathtext: ``rand`` -> ``$D_\\mathrm{rand}$``."""
    return rf"$D_\mathrm{{{kind}}}$"


def _legend(axes) -> None:
    """One legend right of the last panel with every panel's labelled lines (once each)."""
    seen: dict = {}
    for ax in np.atleast_1d(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    np.atleast_1d(axes)[-1].legend(
        list(seen.values()), list(seen), frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0)
    )


@plots.styled
def _figure_vs_depth(cfg: Config, rows: list[dict], out: Path, n_test: int, n_classes: int) -> list[Path]:
    h = headline(cfg, rows)
    colors = TARGET_COLORS
    widths = _panel_widths(cfg, h)
    fig, axes = plots.new_figure(len(widths), 3.3, 2.8)
    axes = np.atleast_1d(axes)
    for ax, width in zip(axes, widths):
        inf = plots.is_infinite_width(width)
        for kind in cfg.targets:
            sub = select(rows, target=kind, scenario=h["scenario"], eps=h["eps"], width=width)
            plots.plot_metric(ax, sub, "depth", "g_acc_test", label=_d(kind), color=colors.get(kind),
                              logx=None, n_points=n_test)  # fmt: skip
            if not inf:
                plots.plot_prediction(ax, sub, "depth", "acc_predicted", color=colors.get(kind),
                                      label=_d(kind) + ": same-init limit")  # fmt: skip
        ax.axhline(1.0 / n_classes, color="0.5", ls=":", lw=1.0, label=r"chance $1/C$")
        ax.set_xlabel("conv blocks" if cfg.net.arch == "cnn" else "weight layers")
        ax.set_ylim(0.0, 1.0)
        ax.set_title(r"$m = \infty$" if inf else f"$m = {int(width)}$")
    axes[0].set_ylabel(r"clean test accuracy of $g$")
    fig.suptitle(rf"{cfg.net.arch} depth, $\varepsilon = {h['eps']:g}$ ($\ell_2$)")
    _legend(axes)
    return plots.save(fig, out, "ilyas_vs_depth")


@plots.styled
def _figures_at(cfg: Config, rows: list[dict], out: Path, n_test: int, n_classes: int) -> list[Path]:
    h = headline(cfg, rows)
    scen = h["scenario"]
    paths: list[Path] = []
    chance = 1.0 / n_classes
    colors = TARGET_COLORS
    widths = _panel_widths(cfg, h)
    fig, axes = plots.new_figure(len(widths), 3.3, 2.8)
    axes = np.atleast_1d(axes)
    for ax, width in zip(axes, widths):
        inf = plots.is_infinite_width(width)
        for kind in cfg.targets:
            sub = select(rows, target=kind, scenario=scen, width=width)
            plots.plot_metric(ax, sub, "eps", "g_acc_test", label=_d(kind), color=colors.get(kind),
                              logx=None, n_points=n_test)  # fmt: skip
            if not inf:
                plots.plot_prediction(ax, sub, "eps", "acc_predicted", color=colors.get(kind),
                                      label=_d(kind) + ": same-init limit")  # fmt: skip
        wal = [r["value"] for r in select(rows, metric="wallace_acc_test", width=width)]
        if wal:
            ax.axhline(float(np.mean(wal)), color="k", ls="-.", lw=1.0, label="Wallace control")
        ax.axhline(chance, color="0.5", ls=":", lw=1.0, label=r"chance $1/C$")
        ax.set_xlabel(r"$\varepsilon$ ($\ell_2$)")
        ax.set_ylim(0.0, 1.0)
        ax.set_title(r"$m = \infty$ (centred)" if inf else f"$m = {int(width)}$")
    axes[0].set_ylabel(r"clean test accuracy of $g$")
    fig.suptitle(f"scenario ({scen}), pixels in [0, 1]")
    _legend(axes)
    paths += plots.save(fig, out, "ilyas_vs_eps")
    finite = [r for r in rows if not plots.is_infinite_width(r["width"])]
    if len({r["width"] for r in finite}) > 1:
        fig, axes = plots.new_figure(2, 3.3, 2.8)
        for ax, metric, ylabel in (
            (axes[0], "g_acc_test", r"clean test accuracy of $g$"),
            (axes[1], "agreement", r"agreement of $\arg\max f$, $\arg\max g$"),
        ):
            for kind in cfg.targets:
                sub = select(finite, target=kind, scenario=scen, eps=h["eps"])
                plots.plot_metric(ax, sub, "width", metric, label=_d(kind), color=colors.get(kind),
                                  n_points=n_test)  # fmt: skip
                pred = "acc_predicted" if metric == "g_acc_test" else "agreement_predicted"
                plots.plot_prediction(ax, sub, "width", pred, color=colors.get(kind),
                                      label=_d(kind) + ": same-init limit")  # fmt: skip
                lim = [r["value"] for r in select(rows, metric=metric, target=kind, scenario=scen,
                                                  eps=h["eps"], width=ilyas.INF_WIDTH)]  # fmt: skip
                if lim:
                    ax.axhline(float(np.mean(lim)), color=colors.get(kind), ls=":", lw=1.0,
                               label=_d(kind) + r": centred limit ($m = \infty$)")  # fmt: skip
            wmetric = "wallace_acc_test" if metric == "g_acc_test" else "wallace_agreement"
            plots.plot_metric(ax, select(finite, target="wallace"), "width", wmetric, label="Wallace control",
                              color="k", n_points=n_test)  # fmt: skip
            ax.set_xlabel(plots.axis_label("width"))
            ax.set_ylabel(ylabel)
            ax.set_ylim(0.0, 1.0)
            ax.set_title(rf"$\varepsilon = {h['eps']:g}$ ($\ell_2$), scenario ({scen})")
        _legend(axes)
        paths += plots.save(fig, out, "ilyas_vs_width")
    return paths


def main(cfg: Config = Config(), out: str | Path = "runs/ilyas", *, progress: bool = True) -> dict:
    """Run the sweep (resuming from the store), write results.csv, summary.json and figures; return the
    summary. With ``--datasets``, each data set runs into OUT/<name>/ and OUT/summary.json lists them."""
    out = Path(out)
    if cfg.datasets:
        parts = {}
        planner = engine.Planner(COMMAND)  # --dry-run: plan every data set's sweep, compute nothing
        for name in cfg.datasets:
            if progress:
                print(f"ilyas: data set {name} -> {out / name}")
            with planner.sweep(name):
                s = main(cfg.for_dataset(name), out / name, progress=progress)
                parts[name] = {
                    "summary": f"{name}/summary.json",
                    "headline": s["headline"],
                    "verdicts": s["verdicts"],
                    "figures": [f"{name}/{f}" for f in s["figures"]],
                }
        planner.finish()
        top = {
            "experiment": COMMAND,
            **provenance(),
            "config": asdict(cfg),
            "datasets": parts,
            "paper": PAPER,
        }
        write_json(top, out / "summary.json")
        if progress:
            print(f"ilyas: wrote {out}/summary.json and one folder per data set")
        return top
    out.mkdir(parents=True, exist_ok=True)
    options = cfg.run.sweep_options(out)
    store = ResultStore(options.pop("store"))
    rows = engine.run_rows(cfg.grid(), store, run=ilyas.run_cell, kind=COMMAND, progress=progress, **options)
    write_csv(rows, out / "results.csv")
    ds_n_test = int(ilyas.load_spec_cached(cfg.data).n_test)
    n_classes = ilyas.n_classes_of(cfg.data)
    judged, reports = claims(cfg, rows, ds_n_test, n_classes)
    summary = {
        "experiment": COMMAND,
        **provenance(),
        "config": asdict(cfg),
        "n_test": ds_n_test,
        "n_classes": n_classes,
        "headline": headline(cfg, rows),
        "tolerances": {
            "limit": TOL_LIMIT,
            "margin_chance": MARGIN_CHANCE,
            "min_predicted_gap": MIN_PREDICTED_GAP,
        },
        "points": by_width_eps(rows, ds_n_test),
        "claims": judged,
        "reports": reports,
        "verdicts": verdicts.summarize(judged),
        "paper": PAPER,
    }
    summary["figures"] = [p.name for p in figures(cfg, rows, out, ds_n_test, n_classes)]
    write_json(summary, out / "summary.json")
    if progress:
        report(summary)
    return summary


def report(summary: dict) -> None:
    h = summary["headline"]
    print(
        f"ilyas: g's clean test accuracy at eps={h['eps']:g} (L2), scenario {h['scenario']} (95% intervals):"
    )
    for p in summary["points"]:
        if p["metric"] in ("g_acc_test", "acc_predicted", "wallace_acc_test", "f_acc_test") and p["eps"] in (
            h["eps"],
            0.0,
        ):
            lo, hi = p["ci95"]
            print(
                f"  m={p['width']:>6} {p['target']:>8} {p['metric']:<18} {p['mean']:.3f} [{lo:.3f}, {hi:.3f}]"
            )
    for c in summary["claims"]:
        print(
            f"  [{c['verdict']}] {c['name']}: {c['measured']}" + (f" - {c['reason']}" if c["reason"] else "")
        )
    for r in summary["reports"]:
        print(f"  [no prediction] {r['name']}: {r['measured']} - {r['reason']}")
