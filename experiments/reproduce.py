"""Reproduce one panel of Kumano, Kera, Yamasaki (NeurIPS 2024) with the official scripts' settings.

``ntk-adv reproduce --panel NAME --out DIR`` runs one published panel (one knob swept, the rest at its block's
defaults) through the perturbation-learning experiment and reports, per swept value, two readings of the same
runs side by side:

* the papers' convention: seed 0 only, the best agreement over the learning-rate grid, and which pair won;
* ours: mean agreement over ``--seeds`` seeds (default 5) at the lr pair with the best *mean*, with a 95%
  interval inside [0, 1] (two-stage bootstrap over seeds and test points);

and the lazy limit's predicted agreement (mean over seeds, at our lr pair). The claims are those of
:mod:`experiments.perturbation_learning` in the suite's verdict type; where the finite nets are far from their
lazy limit (the paper preset moves the weights a lot in some blocks), those claims are inconclusive and say so
with the measured weight movement. ``ntk-adv reproduce --list`` prints every panel and its settings.

Panels are ``<block>_<sweep>``: blocks shifted_gauss_a/b, gauss_a/b (synthetic), mnist_a/b (1 vs 2) and
fmnist_a/b (0 vs 9); sweeps eps, width, d and n_train (synthetic only), steps_f, steps_g, gamma. Every panel
uses the paper preset (full-batch SGD, momentum 0.9, reduce-on-plateau), the identity loss, leaky slope 0
(ReLU), a one-step L2 perturbation, random targets, and its block's lr grid. MNIST / Fashion-MNIST are read
from IDX files in ``--data-root`` (all training and test points of the pair, pixels in [0, 1] minus the
dataset mean).

Outputs in DIR: summary.json (``panel``, ``settings``, ``points``, ``claims``), results.csv (all cells),
reproduce_<panel>.png/.pdf, and the perturbation-learning sweep(s) in DIR/sweep (DIR/sweep_d<d> for a d panel,
where eps moves with d and so each d is its own sweep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib import ticker

from ntk_adv import engine, plots, verdicts
from ntk_adv.data import DataSpec, data_arrays
from ntk_adv.pattern_gd import Solver
from ntk_adv.perturbation import protocol
from ntk_adv.results import provenance, read_csv, write_csv, write_json

from . import perturbation_learning as pl

COMMAND = "reproduce"


def _run(start: float, stop: float, step: float) -> tuple[float, ...]:
    """start, start + step, ..., stop (inclusive), rounded so that 0.1 * 3 prints as 0.3."""
    n = int(round((stop - start) / step))
    return tuple(round(start + i * step, 10) for i in range(n + 1))


def _ints(*runs: tuple[float, ...]) -> tuple[int, ...]:
    return tuple(int(v) for r in runs for v in r)


# ---------------------------------------------------------------------------------------- published settings
# The values below are the official scripts' (s-kumano/perturbation-learning, bash/train.sh). Where they are
# more specific than a summary table: the MNIST (a) eps sweep starts at 0.028 (no 0 and 0.014), the Gauss (b)
# N sweep starts at 10, and the d sweeps use d = 10, 20, ... / 100, 200, ... with eps = c sqrt(d) truncated to
# two significant digits (as the scripts list it, e.g. d = 10 -> 0.0031).
WIDTHS_SYNTHETIC = _ints(_run(1, 10, 1), _run(20, 100, 10), _run(200, 1000, 100))
WIDTHS_IMAGES = _ints(_run(10, 100, 10), _run(200, 1000, 100))
N_SYNTHETIC = _ints((2, 4, 6, 8), _run(10, 100, 10), _run(200, 1000, 100), _run(2000, 10000, 1000))
STEPS_1_100 = _ints(_run(1, 10, 1), _run(20, 100, 10))
STEPS_10_100 = _ints(_run(10, 100, 10))
GAMMAS = (0.0, 0.25, 0.5, 0.75, 0.99)
LR_SYNTHETIC = (1.0, 0.1)
LR_IMAGES = (0.01, 0.001)
SWEEPS = ("eps", "width", "d", "n_train", "steps_f", "steps_g", "gamma")
SYNTHETIC_ONLY = ("d", "n_train")
# the perturbation-learning row column each sweep moves
COLUMN = {
    "eps": "eps",
    "width": "width",
    "d": "data.d",
    "n_train": "data.n_train",
    "steps_f": "steps_f",
    "steps_g": "steps_g",
    "gamma": "gamma",
}
INT_SWEEPS = ("width", "d", "n_train", "steps_f", "steps_g")


@dataclass(frozen=True)
class Block:
    """One row of the published settings: the data (``dataset``, classes, d, N, n_test; None = every point of
    the file split), width m, T_f = T_g = ``steps``, the L2 radius ``eps`` (= ``eps_per_sqrt_d`` sqrt(d) on
    the synthetic blocks), the scenario, the lr grid (lr_f and lr_g each over ``lr``), the seed the scripts
    used, the values of each sweep, and lr values a sweep fixes instead of searching the grid."""

    name: str
    dataset: str
    d: int
    m: int
    n_train: int | None
    n_test: int | None
    steps: int
    eps: float
    scenario: str
    paper_seed: int
    lr: tuple[float, ...]
    sweeps: dict = field(default_factory=dict)
    fixed_lr: dict = field(default_factory=dict)
    eps_per_sqrt_d: float | None = None
    classes: tuple[int, int] | None = None

    @property
    def synthetic(self) -> bool:
        return self.dataset in ("gauss", "shifted_gauss")


def _synthetic(
    name,
    dataset,
    *,
    d,
    n,
    eps,
    c,
    scenario,
    seed,
    eps_values,
    d_values,
    n_values=N_SYNTHETIC,
    steps_f_values=STEPS_1_100,
    lr_f_for_steps_f=0.1,
    lr_g_for_steps_g=None,
) -> Block:
    fixed = {"steps_f": {"lr_f": lr_f_for_steps_f}}
    if lr_g_for_steps_g is not None:
        fixed["steps_g"] = {"lr_g": lr_g_for_steps_g}
    return Block(
        name,
        dataset,
        d=d,
        m=100,
        n_train=n,
        n_test=1000,
        steps=1000,
        eps=eps,
        scenario=scenario,
        paper_seed=seed,
        lr=LR_SYNTHETIC,
        eps_per_sqrt_d=c,
        fixed_lr=fixed,
        sweeps={
            "eps": eps_values,
            "width": WIDTHS_SYNTHETIC,
            "d": d_values,
            "n_train": n_values,
            "steps_f": steps_f_values,
            "steps_g": STEPS_1_100,
            "gamma": GAMMAS,
        },
    )


def _images(name, dataset, classes, *, scenario, seed, eps_values, steps_g_values) -> Block:
    return Block(
        name,
        dataset,
        d=784,
        m=100,
        n_train=None,
        n_test=None,
        steps=100,
        eps=0.14,
        scenario=scenario,
        paper_seed=seed,
        lr=LR_IMAGES,
        classes=classes,
        sweeps={
            "eps": eps_values,
            "width": WIDTHS_IMAGES,
            "steps_f": STEPS_1_100,
            "steps_g": steps_g_values,
            "gamma": GAMMAS,
        },
    )


D_SHIFTED_B = _ints(_run(10, 100, 10), _run(200, 1000, 100), _run(2000, 5000, 1000))
D_GAUSS = _ints(_run(100, 1000, 100), _run(2000, 10000, 1000))
EPS_IMAGES = _run(0.0, 0.14, 0.014)

BLOCKS: dict[str, Block] = {
    b.name: b
    for b in (
        _synthetic(
            "shifted_gauss_a",
            "shifted_gauss",
            d=100,
            n=1000,
            eps=0.01,
            c=0.001,
            scenario="a",
            seed=0,
            eps_values=_run(0.0, 0.01, 0.001),
            d_values=_ints(_run(10, 100, 10)),
            steps_f_values=_ints(_run(1, 10, 1)),
        ),
        _synthetic(
            "shifted_gauss_b",
            "shifted_gauss",
            d=5000,
            n=10000,
            eps=0.7,
            c=0.01,
            scenario="b",
            seed=1,
            eps_values=_run(0.0, 0.7, 0.1),
            d_values=D_SHIFTED_B,
            steps_f_values=_ints(_run(1, 10, 1)),
            lr_f_for_steps_f=0.01,
            lr_g_for_steps_g=0.01,
        ),
        _synthetic(
            "gauss_a",
            "gauss",
            d=10000,
            n=10000,
            eps=0.1,
            c=0.001,
            scenario="a",
            seed=0,
            eps_values=_run(0.0, 0.1, 0.01),
            d_values=D_GAUSS,
        ),
        _synthetic(
            "gauss_b",
            "gauss",
            d=10000,
            n=10000,
            eps=10.0,
            c=0.1,
            scenario="b",
            seed=0,
            eps_values=_run(0.0, 10.0, 1.0),
            d_values=D_GAUSS,
            n_values=N_SYNTHETIC[4:],
            lr_g_for_steps_g=0.1,
        ),
        _images(
            "mnist_a",
            "mnist",
            (1, 2),
            scenario="a",
            seed=0,
            eps_values=EPS_IMAGES[2:],
            steps_g_values=STEPS_10_100,
        ),
        _images(
            "mnist_b",
            "mnist",
            (1, 2),
            scenario="b",
            seed=1,
            eps_values=EPS_IMAGES,
            steps_g_values=STEPS_1_100,
        ),
        _images(
            "fmnist_a",
            "fmnist",
            (0, 9),
            scenario="a",
            seed=0,
            eps_values=EPS_IMAGES,
            steps_g_values=STEPS_10_100,
        ),
        _images(
            "fmnist_b",
            "fmnist",
            (0, 9),
            scenario="b",
            seed=2,
            eps_values=EPS_IMAGES,
            steps_g_values=STEPS_10_100,
        ),
    )
}

PANELS: dict[str, tuple[str, str]] = {
    f"{b.name}_{s}": (b.name, s) for b in BLOCKS.values() for s in SWEEPS if s in b.sweeps
}
PanelName = Literal[  # the keys of PANELS (a test keeps them equal)
    "shifted_gauss_a_eps",
    "shifted_gauss_a_width",
    "shifted_gauss_a_d",
    "shifted_gauss_a_n_train",
    "shifted_gauss_a_steps_f",
    "shifted_gauss_a_steps_g",
    "shifted_gauss_a_gamma",
    "shifted_gauss_b_eps",
    "shifted_gauss_b_width",
    "shifted_gauss_b_d",
    "shifted_gauss_b_n_train",
    "shifted_gauss_b_steps_f",
    "shifted_gauss_b_steps_g",
    "shifted_gauss_b_gamma",
    "gauss_a_eps",
    "gauss_a_width",
    "gauss_a_d",
    "gauss_a_n_train",
    "gauss_a_steps_f",
    "gauss_a_steps_g",
    "gauss_a_gamma",
    "gauss_b_eps",
    "gauss_b_width",
    "gauss_b_d",
    "gauss_b_n_train",
    "gauss_b_steps_f",
    "gauss_b_steps_g",
    "gauss_b_gamma",
    "mnist_a_eps",
    "mnist_a_width",
    "mnist_a_steps_f",
    "mnist_a_steps_g",
    "mnist_a_gamma",
    "mnist_b_eps",
    "mnist_b_width",
    "mnist_b_steps_f",
    "mnist_b_steps_g",
    "mnist_b_gamma",
    "fmnist_a_eps",
    "fmnist_a_width",
    "fmnist_a_steps_f",
    "fmnist_a_steps_g",
    "fmnist_a_gamma",
    "fmnist_b_eps",
    "fmnist_b_width",
    "fmnist_b_steps_f",
    "fmnist_b_steps_g",
    "fmnist_b_gamma",
]


def eps_for_d(c: float, d: int) -> float:
    """c sqrt(d) truncated to two significant digits, as the scripts list the d sweeps' radii."""
    x = c * math.sqrt(d)
    if x <= 0:
        return 0.0
    scale = 10.0 ** (math.floor(math.log10(x)) - 1)
    return round(math.floor(x / scale + 1e-9) * scale, 12)


def values_text(values) -> str:
    """Compact list: arithmetic runs of >= 3 values as 'a..b step s'."""
    vals = [float(v) for v in values]
    parts, i = [], 0
    while i < len(vals):
        j = i + 1
        if j < len(vals):
            step = vals[j] - vals[i]
            while j + 1 < len(vals) and math.isclose(
                vals[j + 1] - vals[j], step, rel_tol=1e-6, abs_tol=1e-12
            ):
                j += 1
        if j - i >= 2:
            parts.append(f"{vals[i]:g}..{vals[j]:g} step {vals[i + 1] - vals[i]:g}")
            i = j + 1
        else:
            parts.append(f"{vals[i]:g}")
            i += 1
    return ", ".join(parts)


# Published agreements (one seed, best over the lr grid, read from the papers' plotted curves, +-0.02), per
# swept value, for the panels whose curves list one value per point. Shown in a `paper` column beside ours;
# never used to choose a seed, a learning rate or a setting. The shifted-Gauss blocks are deliberately
# absent.
PAPER_VALUES: dict[str, dict[str, float]] = {
    "gauss_a_eps": dict(
        zip(["0", "0.01", "0.02", "0.03", "0.04", "0.05"], [0.55, 0.78, 0.90, 0.94, 0.95, 0.96])
    )
    | {f"{e:g}": 0.98 for e in (0.06, 0.07, 0.08, 0.09, 0.1)},
    "gauss_a_gamma": dict(zip(["0", "0.25", "0.5", "0.75", "0.99"], [0.98, 0.99, 0.98, 0.97, 0.94])),
    "gauss_b_eps": {
        f"{e:g}": v
        for e, v in zip(range(11), [0.50, 0.71, 0.82, 0.87, 0.90, 0.92, 0.93, 0.94, 0.95, 0.95, 0.96])
    },
    "mnist_a_eps": {
        f"{round(0.014 * i, 3):g}": v
        for i, v in zip(range(2, 11), [0.43, 0.60, 0.85, 0.90, 0.92, 0.93, 0.94, 0.94, 0.94])
    },
    "mnist_b_eps": {
        f"{round(0.014 * i, 3):g}": v
        for i, v in zip(range(11), [0.57, 0.59, 0.67, 0.76, 0.84, 0.89, 0.93, 0.95, 0.96, 0.96, 0.97])
    },
    "fmnist_a_eps": {
        f"{round(0.014 * i, 3):g}": v
        for i, v in zip(range(11), [0.49, 0.52, 0.72, 0.84, 0.90, 0.93, 0.95, 0.96, 0.965, 0.97, 0.98])
    },
}


# ---------------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class Config:
    panel: Literal["", PanelName] = ""  # the published panel to reproduce, e.g. shifted_gauss_a_eps (--list)
    list: bool = False  # print every panel with its settings and exit
    panels: tuple[
        Literal["all", PanelName], ...
    ] = ()  # several panels (or all) and the table OUT/table.{csv,md}
    seeds: int = 20  # seeds per cell, >= 1 (random targets make agreement bimodal: intervals need many)
    data_root: str = ""  # directory of the MNIST / Fashion-MNIST IDX files, or of mnist/ and fmnist/ folders
    # Overrides for smoke tests; the published settings are the defaults (None / empty = published).
    values: tuple[float, ...] = ()  # the panel's swept values (eps: L2 radii); empty: the published ones
    n_train: int | None = None  # training points N where not swept, >= 1 (none: published)
    n_test: int | None = None  # held-out test points, >= 1 (none: published)
    d: int | None = None  # input dimension d of synthetic panels where not swept, >= 1 (none: published)
    width: int | None = None  # hidden width m of the non-width panels, >= 1 (none: published)
    steps: int | None = None  # gradient-descent steps T_f = T_g where not swept, >= 1 (none: published)
    # how the sweep runs (as in perturbation-learning)
    solver: Solver = "auto"  # trainings: auto | autodiff | pattern (ntk_adv.pattern_gd; the same GD iterates)
    # where the cells run and where they are kept (--backend, --workers, --store, --force, --accept-stale)
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.panel and self.panel not in PANELS:
            raise ValueError(f"unknown panel {self.panel!r}; valid panels: {', '.join(PANELS)}")
        if self.panels:
            if self.panel:
                raise ValueError("give --panel NAME or --panels NAME ..., not both")
            bad = [p for p in self.panels if p not in PANELS and p != "all"]
            if bad or ("all" in self.panels and len(self.panels) > 1):
                raise ValueError(
                    f"--panels: unknown panel(s) {bad or self.panels}; valid: all, {', '.join(PANELS)}"
                )
            for p in PANELS if self.panels == ("all",) else self.panels:
                replace(self, panel=p, panels=())  # validates each panel's settings now, not after a long run
            return
        if not self.panel:
            return
        block, sweep = self.block(), self.sweep()
        if not block.synthetic and not self.data_root:
            raise ValueError(
                f"panel {self.panel} reads {block.dataset} from IDX files: pass --data-root DIR "
                f"(the directory holding t10k-images-idx3-ubyte[.gz] etc.)"
            )
        if not block.synthetic and self.d is not None:
            raise ValueError(f"panel {self.panel}: d is fixed by the images (784); do not override it")
        if sweep in ("d", "width", "n_train") and getattr(self, sweep) is not None:
            raise ValueError(
                f"panel {self.panel} sweeps {sweep}: give its values with --values, "
                f"not --{sweep.replace('_', '-')}"
            )
        if sweep in INT_SWEEPS and any(float(v) != int(v) or v < 1 for v in self.values):
            raise ValueError(
                f"panel {self.panel} sweeps {sweep}: values must be positive integers, got {self.values}"
            )
        for name in ("n_train", "n_test", "d", "width", "steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.sweep_configs()  # validates every perturbation-learning config now, not after a long run

    def block(self) -> Block:
        return BLOCKS[PANELS[self.panel][0]]

    def dataset_root(self) -> str | None:
        """The IDX folder of this panel's data set: ``--data-root`` itself, or its subfolder named after the
        data set (``mnist/``, ``fmnist/``) when there is one, so one root serves a table of both."""
        if not self.data_root:
            return None
        sub = Path(self.data_root) / self.block().dataset
        return str(sub) if sub.is_dir() else self.data_root

    def sweep(self) -> str:
        return PANELS[self.panel][1]

    def overridden(self) -> list[str]:
        return [
            n
            for n in ("values", "n_train", "n_test", "d", "width", "steps")
            if getattr(self, n) not in (None, ())
        ]

    def settings(self) -> dict:
        """The panel's settings after any overrides (the published ones when none are given)."""
        return panel_settings(self.panel, **{n: getattr(self, n) for n in self.overridden()})

    def sweep_configs(self) -> list[tuple[str, pl.Config]]:
        """(subdirectory, perturbation-learning config) per sweep: one, or one per d on a d panel."""
        s, block = self.settings(), self.block()
        data = DataSpec(
            block.dataset,
            n_train=s["n_train"],
            n_test=s["n_test"],
            d=s["d"],
            pos=block.classes[0] if block.classes else None,
            neg=block.classes[1] if block.classes else None,
            root=self.dataset_root(),
        )
        axis, values = s["sweep"], tuple(s["values"])
        common = dict(
            data=data,
            scenario=s["scenario"],
            attack=s["attack"],
            targets=s["targets"],
            loss=s["loss"],
            preset=s["preset"],
            parametrization="standard",
            infinite=False,
            seeds=self.seeds,
            widths=values if axis == "width" else (s["m"],),
            eps=(s["eps"],),
            lr_f=tuple(s["lr_f"]),
            lr_g=tuple(s["lr_g"]),
            steps_f=(s["steps_f"],),
            steps_g=(s["steps_g"],),
            gamma=(s["gamma"],),
            solver=self.solver,
            run=self.run,
            decision_map=False,
        )
        if axis == "d":
            return [
                (f"sweep_d{d}", pl.Config(**{**common, "data": replace(data, d=int(d)), "eps": (eps,)}))
                for d, eps in zip(values, s["eps_by_d"], strict=True)
            ]
        if axis in ("eps", "gamma"):
            common[axis] = values
        elif axis in ("steps_f", "steps_g", "n_train"):
            common[axis] = tuple(int(v) for v in values)
        return [("sweep", pl.Config(**common))]


def panel_settings(
    panel: str, *, values=(), n_train=None, n_test=None, d=None, width=None, steps=None
) -> dict:
    """The settings of ``panel`` as a flat dict (published values; keyword overrides shrink the panel)."""
    if panel not in PANELS:
        raise ValueError(f"unknown panel {panel!r}; valid panels: {', '.join(PANELS)}")
    block_name, sweep = PANELS[panel]
    b = BLOCKS[block_name]
    vals = tuple(values) if values else b.sweeps[sweep]
    if sweep in INT_SWEEPS:
        vals = tuple(int(v) for v in vals)
    lr_f, lr_g = b.fixed_lr.get(sweep, {}).get("lr_f"), b.fixed_lr.get(sweep, {}).get("lr_g")
    s = {
        "panel": panel,
        "block": block_name,
        "sweep": sweep,
        "values": list(vals),
        "dataset": b.dataset,
        "classes": {"pos": b.classes[0], "neg": b.classes[1]} if b.classes else None,
        "d": int(d or b.d),
        "m": int(width or b.m),
        "n_train": n_train or b.n_train,
        "n_test": n_test or b.n_test,
        "steps_f": int(steps or b.steps),
        "steps_g": int(steps or b.steps),
        "eps": b.eps,
        "eps_norm": "L2",
        "scenario": b.scenario,
        "lr_f": [lr_f] if lr_f else list(b.lr),
        "lr_g": [lr_g] if lr_g else list(b.lr),
        "preset": "paper",
        "loss": "identity",
        "gamma": 0.0,
        "targets": "random",
        "attack": "one_step_l2",
        "paper_seed": b.paper_seed,
        "published": not any(v not in (None, ()) for v in (values, n_train, n_test, d, width, steps)),
    }
    if b.eps_per_sqrt_d is not None:
        s["eps_per_sqrt_d"] = b.eps_per_sqrt_d
    if sweep == "d":
        s["eps_by_d"] = [eps_for_d(b.eps_per_sqrt_d, v) for v in vals]
    return s


def settings_line(panel: str) -> str:
    s = panel_settings(panel)
    n = "all" if s["n_train"] is None else s["n_train"]
    n_test = "all" if s["n_test"] is None else s["n_test"]
    data = s["dataset"] + (f" {s['classes']['pos']} vs {s['classes']['neg']}" if s["classes"] else "")
    per_sqrt_d = f", = {s['eps_per_sqrt_d']:g} sqrt(d)" if "eps_per_sqrt_d" in s else ""
    eps = f"eps={s['eps']:g} (L2{per_sqrt_d})"
    sweep = s["sweep"] + (" (eps = c sqrt(d) moves with d)" if s["sweep"] == "d" else "")
    return (
        f"{panel:<24} {data}, scenario ({s['scenario']}), d={s['d']} m={s['m']} N={n} n_test={n_test} "
        f"T_f=T_g={s['steps_f']} {eps} lr_f {{{', '.join(f'{v:g}' for v in s['lr_f'])}}} "
        f"lr_g {{{', '.join(f'{v:g}' for v in s['lr_g'])}}} paper-preset identity gamma=0 random targets "
        f"paper-seed {s['paper_seed']} | {sweep}: {values_text(s['values'])}"
    )


# ---------------------------------------------------------------------------------------------------- points
def _axis_values(rows: list[dict], column: str) -> list:
    return sorted({r[column] for r in rows if r["metric"] == "agreement"})


def panel_points(rows: list[dict], axis: str, n_test: int, width: int | None, panel: str = "") -> list[dict]:
    """Per swept value: ours (mean and 95% interval over seeds at the lr pair with the best mean *predicted*
    agreement - no measured number chooses the data it is judged on), the papers' convention (seed 0, max of
    the measured agreement over the lr grid, and which pair), the predicted agreement (mean over seeds at our
    pair), the measured regime (:func:`experiments.perturbation_learning.regime`), the published value where
    one is recorded (:data:`PAPER_VALUES`) and the verdict of ours against the prediction (paired per seed,
    :func:`point_verdict`). ``width``: the panel's m (ignored on the width sweep)."""
    column = COLUMN[axis]
    published = PAPER_VALUES.get(panel, {})
    out = []
    for v in _axis_values(rows, column):
        at = [r for r in rows if r[column] == v and (axis == "width" or r["width"] == width)]
        agr: dict = {}
        pred: dict = {}
        for r in at:
            if r["metric"] == "agreement":
                agr.setdefault((r["lr_f"], r["lr_g"]), {})[r["seed"]] = r["value"]
            elif r["metric"] == "agreement_predicted":
                pred.setdefault((r["lr_f"], r["lr_g"]), {})[r["seed"]] = r["value"]
        if not agr:
            continue
        pairs = sorted(agr)
        with_pred = [k for k in pairs if pred.get(k)]
        ours = max(with_pred, key=lambda k: np.mean(list(pred[k].values()))) if with_pred else pairs[0]
        est = verdicts.seed_proportion(list(agr[ours].values()), n_test)
        seed0 = {k: s[0] for k, s in agr.items() if 0 in s}
        best0 = max(seed0, key=seed0.get) if seed0 else None
        ours_rows = [r for r in at if (r["lr_f"], r["lr_g"]) == ours]
        lazy, regime_text = pl.regime(ours_rows, "g")
        value = int(v) if axis in INT_SWEEPS else float(v)
        entry = {
            "axis": axis,
            "value": value,
            "agreement_mean": est.value,
            "agreement_ci95": [est.low, est.high],
            "n_seeds": est.n,
            "agreement_seed0_best_lr": float(seed0[best0]) if best0 else None,
            "agreement_predicted": float(np.mean(list(pred[ours].values()))) if pred.get(ours) else None,
            "lr_seed0_best": {"lr_f": best0[0], "lr_g": best0[1]} if best0 else None,
            "lr_ours": {"lr_f": ours[0], "lr_g": ours[1]},
            "regime": None if lazy is None else ("lazy" if lazy else "not lazy"),
            "regime_measured": regime_text,
            "paper": published.get(_paper_key(value)),
        }
        entry.update(point_verdict(ours_rows, axis, value, n_test, lazy, regime_text))
        out.append(entry)
    return out


def _paper_key(value) -> str:
    return f"{float(value):g}"


def point_verdict(rows: list[dict], axis: str, value, n_test: int, lazy, regime_text: str) -> dict:
    """Ours against the prediction at one point: the per-seed paired difference agreement minus
    agreement_predicted (the prediction is conditional on the seed's targets and perturbations, so the
    seed-to-seed bimodality of random targets cancels), seed as unit, within +-pl.TOL_AGREEMENT. eps = 0 is
    reported, not judged; a point whose measured regime is not lazy has no lazy prediction to judge."""
    if axis == "eps" and float(value) == 0.0:
        return {"judged": False, "note": "eps = 0: g is trained on no perturbation (reported, not judged)"}
    diffs, sds = pl.seed_clusters(rows, "agreement", "agreement_predicted", n_test)
    if not diffs:
        return {"judged": False, "note": "no prediction for this loss or preset"}
    est = verdicts.paired_difference(diffs, sds, n_test, bounds=(-1.0, 1.0))
    c = verdicts.equals("point", "ours = predicted", 0.0, pl.TOL_AGREEMENT, est)
    verdict, reason = c.verdict, c.reason
    if lazy is False:
        verdict, reason = "inconclusive", f"not applicable: the measured regime is not lazy ({regime_text})"
    return {"judged": True, "difference": est.text(), "verdict": verdict, "reason": reason}


AXIS_LABELS = {
    "eps": "perturbation radius eps (L2 norm)",
    "width": "width m",
    "d": "input dimension d",
    "n_train": "training-set size N",
    "steps_f": "f's training steps T_f",
    "steps_g": "g's training steps T_g",
    "gamma": "leaky slope gamma",
}


def use_log_axis(values) -> bool:
    """Log x for factor-spaced sweeps (positive, spanning >= 10x, unevenly spaced); linear otherwise."""
    v = np.asarray(sorted(values), float)
    if v.size < 3 or v[0] <= 0 or v[-1] / v[0] < 10:
        return False
    steps = np.diff(v)
    return not np.allclose(steps, steps[0], rtol=1e-6)


@plots.styled
def figure(panel: str, settings: dict, points: list[dict], out: Path) -> list[Path]:
    """Agreement vs the swept value: ours (mean over seeds, 95% band), the papers' convention (seed 0, best
    lr; markers) and the lazy limit's prediction (dashed)."""
    fig, (ax,) = plots.new_figure(1, 4.6, 3.2)
    xs = np.asarray([p["value"] for p in points], float)
    mean = np.asarray([p["agreement_mean"] for p in points], float)
    lo = np.asarray([p["agreement_ci95"][0] for p in points], float)
    hi = np.asarray([p["agreement_ci95"][1] for p in points], float)
    ax.plot(
        xs, mean, "-o", ms=3, color="C0", label=f"ours: mean of {settings['seeds']} seeds, best predicted lr"
    )
    ax.fill_between(xs, lo, hi, color="C0", alpha=0.25, lw=0, label="ours: 95% interval (seed as unit)")
    hollow = [i for i, p in enumerate(points) if p.get("regime") == "not lazy"]
    if hollow:
        ax.plot(
            xs[hollow],
            mean[hollow],
            ls="none",
            marker="o",
            ms=3.6,
            mfc="white",
            mec="C0",
            mew=0.9,
            zorder=3,
            label=plots.NOT_LAZY_LABEL,
        )
    paper = [(x, p["paper"]) for x, p in zip(xs, points, strict=True) if p.get("paper") is not None]
    if paper:
        ax.plot(*zip(*paper, strict=True), "x", ms=4, color="C2", label="published (read from the figure)")
    s0 = [
        (x, p["agreement_seed0_best_lr"])
        for x, p in zip(xs, points, strict=True)
        if p["agreement_seed0_best_lr"] is not None
    ]
    if s0:
        ax.plot(
            *zip(*s0, strict=True),
            "s",
            ls="none",
            ms=4,
            mfc="none",
            color="C3",
            label="papers' convention: seed 0, best lr",
        )
    pr = [
        (x, p["agreement_predicted"])
        for x, p in zip(xs, points, strict=True)
        if p["agreement_predicted"] is not None
    ]
    if pr:
        ax.plot(*zip(*pr, strict=True), "--", color="k", lw=1.0, label="predicted (lazy limit, E over g_0)")
    if use_log_axis(xs):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    xlabel = AXIS_LABELS[settings["sweep"]]
    if settings["sweep"] == "d":
        xlabel += f" (eps = {settings['eps_per_sqrt_d']:g} sqrt(d), L2 norm)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("agreement of sign f and sign g")
    ax.set_ylim(-0.02, 1.02)
    fixed = f"d={settings['d']}, " if settings["sweep"] != "d" else ""
    fixed += f"N={settings['n_train']}, " if settings["sweep"] != "n_train" else ""
    fixed += f"m={settings['m']}, " if settings["sweep"] != "width" else ""
    eps = f"eps={settings['eps']:g} (L2), " if settings["sweep"] not in ("eps", "d") else ""
    ax.set_title(
        f"{panel}: {settings['dataset']}, scenario ({settings['scenario']}), {fixed}{eps}"
        f"T={settings['steps_f']}, paper preset",
        fontsize=8,
    )
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return plots.save(fig, out, f"reproduce_{panel}")


# ------------------------------------------------------------------------------------------------------ main
def list_panels() -> list[str]:
    lines = [settings_line(p) for p in PANELS]
    for line in lines:
        print(line)
    return lines


def _relabel(claim: dict, label: str) -> dict:
    """A sub-sweep's claim with the sweep's point (d and its eps) added to its name and text."""
    name = claim["name"]
    name = name[:-1] + f", {label}]" if name.endswith("]") else f"{name}[{label}]"
    return {**claim, "name": name, "claim": f"{claim['claim']} ({label})"}


REGIME_RULE = (
    f"lazy when g's first-layer movement <= {protocol.LAZY_MOVE} of its initial norm and <= "
    f"{protocol.LAZY_FLIP} of its activation patterns flip (training and test points), for every seed"
)
TABLE_COLUMNS = (
    "panel",
    "axis",
    "value",
    "paper",
    "papers_convention",
    "ours",
    "n_seeds",
    "predicted",
    "regime",
    "verdict",
    "reason",
)


def main(cfg: Config = Config(), out: str | Path = "runs/reproduce", *, progress: bool = True) -> dict:
    """Run the panel, or every panel of ``--panels`` into OUT/<panel>/ with the reproduction table
    OUT/table.csv and OUT/table.md (or list the panels); write summary.json, results.csv and the figure;
    return the summary."""
    if cfg.list:
        return {"panels": list_panels()}
    if cfg.panels:
        return run_table(cfg, Path(out), progress=progress)
    if not cfg.panel:
        raise ValueError("give --panel NAME or --panels NAME ... (see --list for the names and settings)")
    return run_panel(cfg, Path(out), progress=progress)


def table_rows(result: dict) -> list[dict]:
    """The reproduction table's rows of one panel: per point the published value, the papers' convention,
    ours (mean [95%] over seeds), the prediction, the measured regime and the verdict."""
    out = []
    for p in result["points"]:
        s0 = p["agreement_seed0_best_lr"]
        out.append(
            {
                "panel": result["panel"],
                "axis": p["axis"],
                "value": p["value"],
                "paper": "" if p.get("paper") is None else f"{p['paper']:.2f}",
                "papers_convention": "" if s0 is None else f"{s0:.3f}",
                "ours": verdicts.Estimate(p["agreement_mean"], *p["agreement_ci95"], 0, "").text(),
                "n_seeds": p["n_seeds"],
                "predicted": "" if p["agreement_predicted"] is None else f"{p['agreement_predicted']:.3f}",
                "regime": p.get("regime") or "",
                "verdict": p["verdict"] if p["judged"] else "not judged",
                "reason": p.get("reason", "") if p["judged"] else p["note"],
            }
        )
    return out


def run_table(cfg: Config, out: Path, *, progress: bool = True) -> dict:
    """Every panel of ``cfg.panels`` (resumably, each through the store) and the reproduction table."""
    panels = list(PANELS) if cfg.panels == ("all",) else list(cfg.panels)
    results, rows = {}, []
    planner = engine.Planner(COMMAND)  # --dry-run: plan every panel's sweeps, compute nothing
    for i, panel in enumerate(panels):
        if progress:
            print(f"reproduce: panel {i + 1}/{len(panels)} {panel} -> {out / panel}")
        with planner.sweep(panel):
            results[panel] = run_panel(replace(cfg, panel=panel, panels=()), out / panel, progress=progress)
            rows += table_rows(results[panel])
    planner.finish()
    write_csv(rows, out / "table.csv")
    lines = [
        "# Reproduction table: Kumano, Kera, Yamasaki (NeurIPS 2024) panels",
        "",
        "Agreement of sign f and sign g on the test points. paper: read from the published figure (one seed, "
        "best lr); papers' convention: our seed 0, best measured lr; ours: mean [95% interval] over seeds at "
        "the lr pair with the best predicted agreement; predicted: the lazy limit (same init, expectation "
        f"over g_0); regime: {REGIME_RULE}; verdict: ours minus predicted, paired per seed, within "
        f"+-{pl.TOL_AGREEMENT:g}.",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in TABLE_COLUMNS) + " |" for r in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    counts = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1  # a count per verdict word, not a claim
    summary = {
        "experiment": COMMAND,
        **provenance(),
        "panels": panels,
        "point_verdicts": counts,
        "claims": [c for p in panels for c in results[p]["claims"]],
    }
    summary["verdicts"] = verdicts.summarize(summary["claims"])
    write_json(summary, out / "summary.json")
    if progress:
        print(f"reproduce: wrote {out / 'table.csv'}, {out / 'table.md'} and {out / 'summary.json'}")
    return summary


def run_panel(cfg: Config, out: Path, *, progress: bool = True) -> dict:
    """One panel: its sweep(s) through perturbation-learning, the points, the figure and summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    settings = {**cfg.settings(), "seeds": cfg.seeds}
    rows: list[dict] = []
    claims: list[dict] = []
    sweeps = []
    n_test = None
    planner = engine.Planner(COMMAND)  # --dry-run: plan each of the panel's sweeps, compute nothing
    configs = list(cfg.sweep_configs())
    for sub, pcfg in configs:
        with planner.sweep(sub if len(configs) > 1 else ""):
            summary = pl.main(pcfg, out / sub, progress=progress)
        if planner.planning:
            continue
        sub_rows = read_csv(out / sub / "results.csv")
        rows += sub_rows
        n_test = pl.n_test_points(pcfg) if n_test is None else n_test
        if settings["sweep"] == "d":
            label = f"d={pcfg.data.d}, eps={pcfg.eps[0]:g}"
            claims += [_relabel(c, label) for c in summary["claims"]]
        else:
            claims += summary["claims"]
        sweeps.append(sub)
    planner.finish()
    settings["n_test"] = n_test
    if settings["n_train"] is None:
        settings["n_train"] = int(data_arrays(pcfg.data)[0].shape[0])  # every point of the split
    write_csv(rows, out / "results.csv")
    width = None if settings["sweep"] == "width" else settings["m"]
    points = panel_points(rows, settings["sweep"], n_test, width, cfg.panel)
    result = {
        "experiment": COMMAND,
        "panel": cfg.panel,
        "settings": settings,
        **provenance(),
        "convention": {
            "ours": f"mean over {cfg.seeds} seeds at the lr pair with the best mean predicted agreement; "
            f"95% interval over seeds (the seed is the unit) and the {n_test} test points",
            "papers": "seed 0 only, max over the lr grid (and which pair won)",
            "predicted": "mean over seeds of the lazy limit's agreement (same initial function, "
            "expectation over g's init) at our lr pair",
            "claims": "perturbation-learning's verdicts, at the lr pair with the best predicted "
            "agreement (no measured number chooses the data it is judged on)",
            "regime": "measured per seed before judging: " + REGIME_RULE,
            "point_verdict": "ours minus predicted, paired per seed, within +-"
            + f"{pl.TOL_AGREEMENT:g}; eps = 0 "
            "is reported, not judged; points whose regime is not lazy have no lazy prediction to judge",
            "paper": "published value read from the papers' figure (one seed, best lr), where recorded",
        },
        "points": points,
        "claims": claims,
        "verdicts": verdicts.summarize(claims),
        "sweeps": sweeps,
    }
    result["figures"] = [p.name for p in figure(cfg.panel, settings, points, out)]
    write_json(result, out / "summary.json")
    if progress is not False:
        report(result)
    return result


def report(result: dict) -> None:
    """Per swept value: ours, the papers' convention and the prediction; then the verdict counts."""
    s = result["settings"]
    print(f"{result['panel']} ({s['n_test']} test points, {s['seeds']} seeds):")
    print(f"{s['sweep']:>10}  {'ours mean [95%]':>22}  {'seed 0 best (lr_f, lr_g)':>28}  {'predicted':>9}")
    for p in result["points"]:
        s0 = p["agreement_seed0_best_lr"]
        lr0 = p["lr_seed0_best"]
        s0_txt = f"{s0:.3f} ({lr0['lr_f']:g}, {lr0['lr_g']:g})" if s0 is not None else "-"
        pred = p["agreement_predicted"]
        print(
            f"{p['value']:>10g}  {p['agreement_mean']:.3f} [{p['agreement_ci95'][0]:.3f}, "
            f"{p['agreement_ci95'][1]:.3f}]  {s0_txt:>28}  {'-' if pred is None else f'{pred:.3f}':>9}"
        )
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in result["verdicts"].items()))
