"""Beyond two layers: the figure set ``figures/depth/`` from one command (``ntk-adv depth``).

Two experiments, each at depths 2, 3 and 5 of a fully-connected net (:class:`ntk_adv.arch.FC`, NTK
parametrization, every layer trained, leaky ReLU with slope 0, bias):

* ``OUT/convergence/`` - :mod:`experiments.convergence` with ``--arch fc --depths 2 3 5``: the empirical NTK
  at init and after training, and the trained net's outputs, approach the exact infinite-width kernel and
  kernel machine at rate m^(-1/2) at every depth (claims: fitted log-log slope within -1/2 +- 0.2, per depth).
* ``OUT/agreement/`` - :mod:`experiments.perturbation_learning` with ``--arch fc --depth 2 3 5`` and finite
  widths plus the limit (``inf``), the standard parametrization with the first layer trained (the two-layer
  net's setting, at depth 2 exactly it; in the NTK parametrization with every layer trained the kernel
  machine f itself sits at chance on these digits, 0.509), centred nets (f - f_0, whose limit is the centred
  kernel machine),
  scenario (a), random targets, eps = 1 (L2): the agreement of sign f and sign g per depth and width, and
  per cell the claims that g's signs equal its same-init kernel limit's and that g's gap to it shrinks at
  m^(-1/2). The two-layer closed forms (the decomposition g = g_0 + B + S and the predicted agreement) exist
  for depth 2 of the two-layer net only; for the fc nets the summary says "no prediction" there.
* ``OUT/agreement_balanced/`` - the same with balanced targets (exactly half of each sign, mean(y_adv) = 0),
  which removes the bias term B of the limit g: what is left is the perturbations' signal.
* ``OUT/agreement_vs_depth.png`` - agreement against depth, one line per width (the limit dashed) with 95%
  intervals over seeds; one panel per target rule.

``OUT/summary.json`` gathers both experiments' claims (names prefixed ``convergence.`` / ``agreement.``) and
their verdict counts. Each part is resumable through its own store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from ntk_adv import engine, plots, verdicts
from ntk_adv.arch import INF_WIDTH
from ntk_adv.data import DataSpec
from ntk_adv.models import TwoLayerConfig
from ntk_adv.results import provenance, read_csv, select, write_json

from . import convergence
from . import perturbation_learning as pl

COMMAND = "depth"
DEPTHS = (2, 3, 5)
DIGITS = DataSpec("digits", n_train=200, n_test=None)  # all 108 held-out digits


def _convergence() -> convergence.Config:
    return convergence.Config(
        arch="fc",
        depths=DEPTHS,
        trained="all",
        net=TwoLayerConfig(1, parametrization="ntk"),
        widths=(64, 128, 256, 512, 1024, 2048),
        seeds=6,
    )


def _agreement() -> pl.Config:
    return pl.Config(
        data=DIGITS,
        arch="fc",
        depth=DEPTHS,
        widths=(16, 64, 256, 1024, INF_WIDTH),
        seeds=5,
        eps=(1.0,),
        centered=True,
        parametrization="standard",
        trained="first",
        decision_map=False,
    )


@dataclass(frozen=True)
class Config:
    """The two parts (each a composed config of its own experiment) and how their cells run."""

    convergence: convergence.Config = field(default_factory=_convergence)
    agreement: pl.Config = field(default_factory=_agreement)
    agreement_balanced: pl.Config = field(default_factory=lambda: replace(_agreement(), targets="balanced"))
    # each part runs as ``run`` says (its own run is replaced): the parts' execution options are dead
    CLI_HIDE: ClassVar[tuple[str, ...]] = tuple(
        f"{part}.run.{f.name}"
        for part in ("convergence", "agreement", "agreement_balanced")
        for f in fields(engine.Execution)
        if f.metadata.get("cli", True)
    )
    # how the cells run and where they are kept (--backend, --workers, --force, --accept-stale); each part
    # keeps its store under OUT/<part>/store
    run: engine.Execution = field(default_factory=engine.Execution)


_QUICK_AGREEMENT = replace(
    _agreement(),
    depth=(2, 3),
    widths=(16, 256, INF_WIDTH),
    seeds=2,
    data=DataSpec("digits", n_train=60, n_test=60),
    steps_f=(30,),
    steps_g=(30,),
)
QUICK_CONFIG = Config(
    convergence=replace(
        _convergence(),
        depths=(2, 3),
        widths=(32, 256),
        seeds=2,
        data=DataSpec("digits", n_train=40, n_test=20),
        n_kernel=20,
    ),
    agreement=_QUICK_AGREEMENT,
    agreement_balanced=replace(_QUICK_AGREEMENT, targets="balanced"),
)


def main(cfg: Config = Config(), out: str | Path = "figures/depth", *, progress: bool = True) -> dict:
    """Run both parts into OUT/convergence and OUT/agreement, draw agreement vs depth, write
    OUT/summary.json; return it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def run(
        part: str,
    ) -> engine.Execution:  # each part's store in its own folder (OUT/<part>/store by default)
        return replace(cfg.run, store=str(Path(cfg.run.store) / part) if cfg.run.store else "")

    planner = engine.Planner(COMMAND)  # --dry-run: plan all three sweeps, compute nothing
    if progress:
        print(f"depth: convergence at depths {cfg.convergence.depths} -> {out / 'convergence'}")
    with planner.sweep("convergence"):
        conv = convergence.main(
            replace(cfg.convergence, run=run("convergence")), out / "convergence", progress=progress
        )
    if progress:
        print(f"depth: perturbation learning at depths {cfg.agreement.depth} -> {out / 'agreement'}")
    agr = {}
    for part in ("agreement", "agreement_balanced"):
        if progress:
            print(f"depth: perturbation learning ({part}) at depths {cfg.agreement.depth} -> {out / part}")
        with planner.sweep(part):
            agr[part] = pl.main(replace(getattr(cfg, part), run=run(part)), out / part, progress=progress)
    planner.finish()
    panels = {p: read_csv(out / p / "results.csv") for p in agr}
    figures = [
        p.name for p in agreement_vs_depth(panels, out, int(agr["agreement"].get("n_test", 0)) or None)
    ]
    claims = [{**c, "name": f"convergence.{c['name']}"} for c in conv["claims"]] + [
        {**c, "name": f"{part}.{c['name']}"} for part, s in agr.items() for c in s["claims"]
    ]
    summary = {
        "experiment": COMMAND,
        **provenance(),
        "config": asdict(cfg),
        "parts": {p: f"{p}/summary.json" for p in ("convergence", *agr)},
        "convergence_slopes_by_depth": {
            d: {k: f[k] for k in ("ntk_rel_error_slope", "ntk_rel_error_trained_slope", "function_gap_slope")}
            for d, f in conv["by_depth"].items()
        },
        "agreement_by_depth": {p: a.get("agreement_by_depth") for p, a in agr.items()},
        "prediction": agr["agreement"].get("prediction"),
        "claims": claims,
        "verdicts": verdicts.summarize(claims),
        "figures": figures,
    }
    write_json(summary, out / "summary.json")
    if progress:
        print(f"depth: {summary['verdicts']}; wrote {out}/summary.json and {', '.join(figures)}")
    return summary


@plots.styled
def agreement_vs_depth(panels: dict[str, list[dict]], out: Path, n_test: int | None) -> list[Path]:
    """Agreement of sign f and sign g against depth, one panel per target rule, one line per width (the
    limit dashed, black), 95% intervals over seeds (at the run's single eps, lr and steps)."""
    fig, axes = plots.new_figure(len(panels), 3.6, 3.0)
    for ax, (part, rows) in zip(np.atleast_1d(axes), panels.items()):
        rows = [dict(r, depth=int(float(r["depth"]))) for r in rows if r.get("depth") not in (None, "")]
        widths = sorted(
            {float(r["width"]) for r in rows}, key=lambda w: np.inf if plots.is_infinite_width(w) else w
        )
        for i, w in enumerate(widths):
            inf = plots.is_infinite_width(w)
            sub = [r for r in rows if float(r["width"]) == w]
            line = plots.plot_metric(ax, select(sub, metric="agreement"), "depth", "agreement",
                                     label="kernel limit (m = inf)" if inf else f"m = {int(w)}",
                                     color="k" if inf else f"C{i}", logx=None, n_points=n_test)  # fmt: skip
            if inf:
                line.set_linestyle("--")
        ax.axhline(0.5, color="0.5", ls=":", lw=1.0, label="chance")
        ax.set_xticks(sorted({r["depth"] for r in rows}))
        ax.set_xlabel("depth L (weight layers of the fc net)")
        ax.set_ylabel("agreement of sign f and sign g")
        ax.set_ylim(0.0, 1.02)
        rule = "balanced targets" if part.endswith("balanced") else "random targets"
        eps = ", ".join(f"{e:g}" for e in sorted({float(r["eps"]) for r in rows if "eps" in r}))
        ax.set_title(rule)
    np.atleast_1d(axes)[-1].legend(
        frameon=False,
        fontsize=7,
        title=f"fc, standard param., first layer trained,\ncentred nets, scenario a, eps = {eps or '?'} (L2)",
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
    )
    return plots.save(fig, out, "agreement_vs_depth")
