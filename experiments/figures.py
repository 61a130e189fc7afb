"""Regenerate the perturbation-learning figure set (one command): agreement and g's accuracy vs width,
agreement vs eps, vs g's training time T_g, vs input dimension d and training-set size N (scenario b), the
cosine of the perturbations with the predicted direction D_n vs f's training time T_f, decision maps, and the
random-vs-balanced targets comparison (``experiments.targets``). Every panel draws the theory's predicted
lines beside the measurements and judges them (``summary.json``: claims in the verdict type of
``ntk_adv.verdicts``).

Each panel is a perturbation-learning sweep written to ``OUT/<panel>/`` (results.csv, summary.json, PNG + PDF,
a resumable store); ``--panels`` picks a subset. Default ``OUT`` is the repository's ``figures/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from ntk_adv import engine
from ntk_adv.data import DataSpec
from ntk_adv.results import provenance, write_json

from . import perturbation_learning as pl
from . import targets

COMMAND = "figures"
DIGITS = DataSpec("digits", n_train=200, n_test=None)  # all 108 held-out digits
GAUSS = DataSpec("shifted_gauss", n_train=200, n_test=200, d=100)

PANELS: dict[str, pl.Config] = {
    "width": pl.Config(data=DIGITS, widths=(16, 64, 256, 1024, 4096), seeds=5, eps=(1.0,)),
    "eps": pl.Config(
        data=DIGITS,
        widths=(16, 256, 4096),
        seeds=5,
        eps=(0.03, 0.1, 0.3, 1.0, 3.0),
        lr_f=(0.1,),
        lr_g=(0.01,),
        decision_map=False,
    ),
    "steps_g": pl.Config(
        data=DIGITS,
        widths=(16, 256, 4096),
        seeds=5,
        eps=(0.3,),
        lr_g=(0.01,),
        steps_g=(10, 30, 100, 300),
        decision_map=False,
    ),
    "steps_f": pl.Config(
        data=DIGITS,
        widths=(256, 4096),
        seeds=5,
        eps=(1.0,),
        lr_f=(0.01,),
        steps_f=(1, 10, 100, 1000),
        decision_map=False,
    ),
    "d": pl.Config(
        data=GAUSS,
        scenario="b",
        widths=(64, 1024),
        seeds=5,
        eps=(1.0,),
        lr_g=(0.01,),
        d=(10, 30, 100, 300, 1000),
        decision_map=False,
    ),
    "n_train": pl.Config(
        data=GAUSS,
        scenario="b",
        widths=(64, 1024),
        seeds=5,
        eps=(1.0,),
        lr_g=(0.01,),
        n_train=(25, 50, 100, 200, 400),
        decision_map=False,
    ),
}


EXTRA_PANELS = ("targets",)  # panels that are whole experiments of their own
# the keys of PANELS, then EXTRA_PANELS (a test keeps them equal)
FigurePanel = Literal["width", "eps", "steps_g", "steps_f", "d", "n_train", "targets"]


@dataclass(frozen=True)
class Config:
    panels: tuple[FigurePanel, ...] = tuple(PANELS) + EXTRA_PANELS  # which figure panels to (re)draw
    quick: bool = False  # 2 seeds, one width, at most 3 values per axis: a smoke test of the figure set
    # how every panel's sweep runs (--backend, --workers, --store, --force, --accept-stale)
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        unknown = [p for p in self.panels if p not in PANELS and p not in EXTRA_PANELS]
        if unknown:
            raise ValueError(
                f"unknown panel(s) {', '.join(unknown)}; expected some of "
                f"{', '.join(tuple(PANELS) + EXTRA_PANELS)}"
            )


def panel_config(name: str, quick: bool, run: engine.Execution | None = None) -> pl.Config:
    """The perturbation-learning config of panel ``name`` (shrunk when ``quick``), run as ``run`` says."""
    cfg = PANELS[name] if run is None else replace(PANELS[name], run=run)
    if quick:
        cfg = replace(
            cfg,
            seeds=2,
            widths=cfg.widths[:1],
            data=replace(cfg.data, n_train=60, n_test=60),
            n_train=cfg.n_train[:2],
            d=cfg.d[:2],
            eps=cfg.eps[:3],
            steps_f=cfg.steps_f[:3],
            steps_g=cfg.steps_g[:3],
            decision_map=False,
        )
    return cfg


def main(cfg: Config = Config(), out: str | Path = "figures", *, progress: bool = True) -> dict:
    out = Path(out)
    done = {}
    planner = engine.Planner(COMMAND)  # --dry-run: plan every panel's sweeps, compute nothing
    for name in tqdm(cfg.panels, desc="figures: panels", disable=None if progress else True):
        with planner.sweep(name):
            if name == "targets":
                tcfg = replace(targets.QUICK_CONFIG if cfg.quick else targets.Config(), run=cfg.run)
                summary = targets.main(tcfg, out / name, progress=False)
            else:
                summary = pl.main(panel_config(name, cfg.quick, cfg.run), out / name, progress=False)
            done[name] = {"figures": summary["figures"], "claims": summary["claims"]}
    planner.finish()
    summary = {
        "experiment": COMMAND,
        **provenance(),
        "panels": done,
        "claims": [{**c, "panel": name} for name, p in done.items() for c in p["claims"]],
    }
    write_json(summary, out / "summary.json")
    if progress is not False:
        for name, p in done.items():
            print(f"{name:>8}: {', '.join(p['figures'])}")
        print(f"figures: wrote {out}/<panel>/ and {out / 'summary.json'}")
    return summary
