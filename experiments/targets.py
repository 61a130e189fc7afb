"""Random vs balanced target labels in perturbation learning: why single-seed results are erratic in N and
seed.

Theory (docs/theory.md, "The limit g, decomposed"): in scenario (a) at small eps the lazy limit of g is, to
first order, ``g_0 + tau [mean(y_adv) Phi_0(z) + eps L(z)]``. With random targets ``|mean(y_adv)| ~ N^(-1/2)``
is a per-seed accident, and whenever ``tau |mean(y_adv)| Phi_0`` outweighs the signal ``tau eps L`` g is a
constant classifier and agrees with f on about half the points - whatever width. Balanced targets (exactly
half +1) remove that term, and the agreement no longer depends on the draw of the targets.

The experiment runs four perturbation-learning sweeps (random and balanced targets; against N at a small eps,
and against eps at one N) and judges, in the suite's verdict type:

* at every point, measured agreement equals the lazy limit's prediction (for each kind of targets);
* the seed-to-seed spread of the agreement: predicted by the theory (from the per-seed predictions, before the
  nets g are trained) and measured - balanced targets shrink it;
* balanced targets raise the mean agreement over random ones at the small eps (a one-sided claim).

Writes OUT/{random,balanced}_{n_train,eps}/ (each a perturbation-learning run), OUT/summary.json and the
figure OUT/targets.png/.pdf: agreement vs N and vs eps, random and balanced, measured (mean, 95% interval) and
predicted (dashed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ntk_adv import engine, plots, verdicts
from ntk_adv.data import DataSpec
from ntk_adv.results import provenance, read_csv, select, write_json

from . import perturbation_learning as pl

COMMAND = "targets"
KINDS = ("random", "balanced")


@dataclass(frozen=True)
class Config:
    data: DataSpec = field(
        default_factory=lambda: DataSpec("shifted_gauss", n_train=1000, n_test=1000, d=100)
    )
    width: int = 512  # hidden width m of f and g, >= 1
    seeds: int = 8  # number of seeds (initializations and target draws) per cell, >= 2
    n_train: tuple[int, ...] = (100, 200, 400, 1000)  # training-set sizes N of the N sweep (at eps_small)
    eps: tuple[float, ...] = (0.001, 0.002, 0.004, 0.01, 0.02)  # L2 radii of the eps sweep (at data.n_train)
    eps_small: float = 0.004  # attack radius of the N sweep, L2 norm, > 0
    lr: float = 1.0  # learning rate lr_f = lr_g of plain full-batch GD (theory preset), > 0
    steps: int = 1000  # gradient-descent steps T_f = T_g, >= 1
    # how the perturbation-learning sweeps run (--backend, --workers, --store, --force, --accept-stale)
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        if self.seeds < 2:
            raise ValueError(
                f"--seeds must be >= 2 (the claims compare spreads over seeds), got {self.seeds}"
            )
        if len(self.n_train) < 2 or len(self.eps) < 2:
            raise ValueError("--n-train and --eps each need at least 2 values")
        if self.eps_small <= 0 or any(e < 0 for e in self.eps):
            raise ValueError(f"--eps-small must be > 0 and --eps >= 0, got {self.eps_small}, {self.eps}")
        for kind in KINDS:
            for cfg in self.sweeps(kind).values():
                cfg.base()

    def sweeps(self, kind: str) -> dict[str, pl.Config]:
        common = dict(
            data=self.data,
            widths=(self.width,),
            infinite=False,
            seeds=self.seeds,
            scenario="a",
            targets=kind,
            lr_f=(self.lr,),
            lr_g=(self.lr,),
            steps_f=(self.steps,),
            steps_g=(self.steps,),
            run=self.run,
            decision_map=False,
        )
        return {
            "n_train": pl.Config(**common, eps=(self.eps_small,), n_train=self.n_train),
            "eps": pl.Config(**common, eps=self.eps),
        }


QUICK_CONFIG = Config(
    data=DataSpec("shifted_gauss", n_train=200, n_test=200, d=100),
    width=128,
    seeds=4,
    n_train=(100, 200),
    eps=(0.004, 0.02),
    eps_small=0.004,
    steps=1000,
)


def _spread(rows: list[dict], metric: str) -> float:
    """Mean over the swept points of the standard deviation over seeds."""
    pts = {}
    for r in select(rows, metric=metric):
        pts.setdefault((r.get("eps"), r.get("data.n_train")), []).append(r["value"])
    return float(np.mean([np.std(v, ddof=1) for v in pts.values() if len(v) > 1]))


def claims(cfg: Config, runs: dict) -> list[dict]:
    out = []
    for kind in KINDS:
        for axis, (summary, _) in runs[kind].items():
            for c in summary["claims"]:  # every sub-panel claim, refuted ones included
                out.append(
                    {**c, "name": f"{kind}/{axis}/{c['name']}", "claim": f"[{kind} targets] {c['claim']}"}
                )
    # the seed-to-seed spread, measured; the theory's direction holds where tau |mean(y_adv)| Phi_0 outweighs
    # g_0
    rows = {k: runs[k]["n_train"][1] for k in KINDS}
    sizes = {
        m: float(np.mean([r["value"] for r in select(rows["random"], metric=m)]))
        for m in ("g0_abs", "bias_term_abs", "signal_term_abs")
    }
    seeds = sorted({r["seed"] for r in rows["random"]})
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(2000):  # bootstrap over seeds (with their multiplicity) of the measured spread ratio
        pick = rng.choice(seeds, size=len(seeds), replace=True)
        if len(set(pick.tolist())) < 2:
            continue
        sub = {
            k: [{**r, "seed": (r["seed"], i)} for i, s in enumerate(pick) for r in rows[k] if r["seed"] == s]
            for k in KINDS
        }
        ratios.append(_spread(sub["balanced"], "agreement") / max(_spread(sub["random"], "agreement"), 1e-12))
    meas = _spread(rows["balanced"], "agreement") / max(_spread(rows["random"], "agreement"), 1e-12)
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    est = verdicts.Estimate(meas, float(min(lo, meas)), float(max(hi, meas)), len(seeds), "bootstrap")
    out.append(
        verdicts.below(
            "spread_ratio",
            f"Balanced targets shrink the seed-to-seed spread of agreement (N sweep at eps="
            f"{cfg.eps_small:g}, L2): spread(balanced) / spread(random) < 1 (std over seeds, mean over N)",
            1.0,
            est,
            basis="docs/theory.md: The limit g, decomposed",
        ).to_dict()
        | {"random_targets_mean_abs": sizes}
    )
    bal: dict = {}
    rnd: dict = {}
    for n in cfg.n_train:  # per seed, its cells over N (the seed is the unit)
        a = {
            r["seed"]: r["value"] for r in select(rows["balanced"], metric="agreement", **{"data.n_train": n})
        }
        b = {r["seed"]: r["value"] for r in select(rows["random"], metric="agreement", **{"data.n_train": n})}
        for s in sorted(a.keys() & b.keys()):
            bal.setdefault(s, []).append(a[s])
            rnd.setdefault(s, []).append(b[s])
    seeds = sorted(bal)
    n_points = pl.n_test_points(cfg.sweeps("random")["n_train"])
    out.append(
        verdicts.above(
            "balanced_raises_agreement",
            f"Balanced targets raise the agreement over random targets at eps="
            f"{cfg.eps_small:g} (L2), pooled over N (balanced minus random; the seed is the unit)",
            0.0,
            verdicts.proportion_difference([bal[s] for s in seeds], [rnd[s] for s in seeds], n_points),
            basis="docs/theory.md: The limit g, decomposed",
        ).to_dict()
    )
    return out


@plots.styled
def figure(cfg: Config, runs: dict, out: Path, n_points: int) -> list[Path]:
    fig, axes = plots.new_figure(2, 3.4, 4.2)
    for ax, (axis, col, label) in zip(
        axes,
        (
            ("n_train", "data.n_train", plots.axis_label("data.n_train")),
            ("eps", "eps", plots.axis_label("eps")),
        ),
    ):
        for i, kind in enumerate(KINDS):
            rows = runs[kind][axis][1]
            plots.plot_metric(
                ax,
                rows,
                col,
                "agreement",
                label=f"{kind} targets: measured",
                color=f"C{i}",
                logx=10,
                n_points=n_points,
            )
            plots.plot_prediction(
                ax, rows, col, "agreement_predicted", color=f"C{i}", label=f"{kind} targets: predicted"
            )
        ax.set_xlabel(label)
        ax.set_ylim(0.4, 1.02)
    axes[0].set_ylabel(plots.axis_label("agreement"))
    axes[0].set_title(rf"$\varepsilon = {cfg.eps_small:g}$, $m = {cfg.width}$")
    axes[1].set_title(f"$N = {cfg.data.n_train}$, $m = {cfg.width}$")
    axes[1].legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return plots.save(fig, out, "targets")


def main(cfg: Config = Config(), out: str | Path = "runs/targets", *, progress: bool = True) -> dict:
    out = Path(out)
    runs: dict = {}
    planner = engine.Planner(COMMAND)  # --dry-run: plan every sweep, compute nothing
    for kind in KINDS:
        runs[kind] = {}
        for axis, pcfg in cfg.sweeps(kind).items():
            if progress:
                print(f"targets: {kind} targets, sweep over {axis} -> {out / f'{kind}_{axis}'}")
            with planner.sweep(f"{kind}_{axis}"):
                summary = pl.main(pcfg, out / f"{kind}_{axis}", progress=False)
                runs[kind][axis] = (summary, read_csv(out / f"{kind}_{axis}" / "results.csv"))
    planner.finish()
    n_points = pl.n_test_points(cfg.sweeps("random")["eps"])
    summary = {"experiment": COMMAND, **provenance(), "config": asdict(cfg), "claims": claims(cfg, runs)}
    summary["verdicts"] = verdicts.summarize(summary["claims"])
    summary["figures"] = [p.name for p in figure(cfg, runs, out, n_points)]
    write_json(summary, out / "summary.json")
    if progress:
        for c in summary["claims"]:
            print(
                f"  [{c['verdict']}] {c['claim']}: {c['measured']}"
                + (f" - {c['reason']}" if c["reason"] else "")
            )
        print(f"targets: wrote {out / 'summary.json'} and {', '.join(summary['figures'])}")
    return summary
