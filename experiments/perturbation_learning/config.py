"""The experiment's configuration: :class:`Config` (the CLI options), the sweep grid it spans and the
architecture it builds (``--arch two-layer|fc|cnn``, ``--depth``, ``--widths`` with ``inf``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

import numpy as np

from ntk_adv import engine
from ntk_adv.arch import ArchName, build
from ntk_adv.arch.base import INF_WIDTH, Architecture, ParametrizationChoice, is_infinite
from ntk_adv.attacks import AttackName
from ntk_adv.data import DataSpec
from ntk_adv.losses import Loss
from ntk_adv.pattern_gd import Solver
from ntk_adv.perturbation import protocol

COMMAND = "perturbation-learning"
# Config tuple fields that are sweep axes, and the ProtocolConfig field each one sets (``width``, ``depth``
# and ``gamma`` are the architecture's: the engine routes them to ``ProtocolConfig.arch``).
AXES = {
    "widths": "width",
    "depth": "depth",
    "eps": "eps",
    "lr_f": "lr_f",
    "lr_g": "lr_g",
    "steps_f": "steps_f",
    "steps_g": "steps_g",
    "gamma": "gamma",
    "d": "data.d",
    "n_train": "data.n_train",
}
# --trained: auto (the architecture's default) or one of ntk_adv.arch._deep.Trained
Trained = Literal["auto", "all", "first"]
HEADLINE = ("agreement", "g_acc_test", "g_acc_train", "f_acc_test", "cos_predicted")


def make_arch(
    name: str, width, *, depth: int | None, gamma: float, parametrization: str, trained: str = "auto"
) -> Architecture:
    """The architecture ``--arch name`` at ``width`` (an int or INF_WIDTH): ``depth`` (None: the
    architecture's default), leaky slope ``gamma``, ``parametrization``, ``trained`` (fc / cnn: 'all' or
    'first' layer; 'auto': the architecture's default, every layer); every other field at the
    architecture's default (:func:`ntk_adv.arch.build`)."""
    extra = {} if trained == "auto" else {"trained": trained}
    if extra and name == "two-layer":
        raise ValueError("--trained: the two-layer net trains its first layer (its readout stays frozen)")
    try:
        return build(name, width, depth=depth, gamma=gamma, parametrization=parametrization, **extra)
    except ValueError as err:
        if "has no field 'gamma'" in str(err):
            raise ValueError(f"--gamma: --arch {name} has no leaky slope field") from None
        raise


def _as_width(w):
    """A ``--widths`` value as the architecture's width: an int, or INF_WIDTH for ``inf``."""
    if isinstance(w, (float, np.floating)) and math.isinf(w) and w > 0:
        return INF_WIDTH
    if isinstance(w, bool) or not float(w).is_integer() or w < 1:
        raise ValueError(f"widths must be integers >= 1 or inf (ntk_adv.INF_WIDTH), got {w!r}")
    if w > 2**31 - 1:
        raise ValueError(f"--widths {w:.0f} is out of range: integer options take at most {2**31 - 1}")
    return int(w)


@dataclass(frozen=True)
class Config:
    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=200, n_test=None))
    arch: ArchName = "two-layer"  # network of f and g: two-layer, fc (deep fully connected) or cnn (images)
    depth: tuple[int, ...] = ()  # depth(s) of fc / cnn (a sweep axis; none: the architecture's default)
    scenario: protocol.Scenario = "a"  # g's inputs: a: eta alone; b: x + eta; noise: noise + eta
    attack: AttackName = "one_step_l2"  # how f's adversarial perturbations are made (ntk_adv.attacks)
    targets: protocol.Targets = "random"  # attack targets = g's labels: random +-1, -y, or balanced signs
    loss: Loss = "identity"  # training loss of f and g (ntk_adv.losses)
    preset: protocol.Preset = "theory"  # theory: plain full-batch GD; paper: momentum 0.9 + reduce-on-plateau
    # auto: fc and cnn take ntk (their standard-parametrization NTK of every layer grows with the width and
    # has no infinite-width limit)
    parametrization: ParametrizationChoice = "auto"  # standard | ntk | auto (two-layer: standard, else ntk)
    trained: Trained = "auto"  # fc / cnn: which layers train: all, first (as the two-layer net) or auto (all)
    centered: bool = False  # train and evaluate f(x) - f_0(x): centred networks (f_0 = 0 at init)
    widths: tuple[float, ...] = (10, 100, 1000)  # hidden widths m, >= 1; inf runs the infinite-width limit
    infinite: bool = True  # also run the infinite-width (NTK, kernel) limit
    seeds: int = 5  # number of seeds (independent initializations of f and g, target draws), >= 1
    eps: tuple[float, ...] = (1.0,)  # attack radii: L2 norm (L-inf for fgsm, pgd_linf; the step for l0)
    lr_f: tuple[float, ...] = (0.1,)  # learning rate(s) of f's full-batch gradient descent, > 0
    lr_g: tuple[float, ...] = (0.1,)  # learning rate(s) of g's full-batch gradient descent, > 0
    steps_f: tuple[int, ...] = (100,)  # gradient-descent steps T_f of f
    steps_g: tuple[int, ...] = (100,)  # gradient-descent steps T_g of g
    gamma: tuple[float, ...] = (0.0,)  # leaky-ReLU slope(s) gamma of the activation, in [0, 1) (0: ReLU)
    d: tuple[int, ...] = ()  # input dimension(s) d of synthetic data, a sweep axis (none: 100)
    n_train: tuple[int, ...] = ()  # training-set size(s) N, a sweep axis (none: 200)
    solver: Solver = "auto"  # trainings: auto | autodiff | pattern (ntk_adv.pattern_gd; the same GD iterates)
    decision_map: bool = True  # also draw decision maps in the class-mean plane
    # the top-level d / n_train axes set data.d / data.n_train (dead options beside them)
    CLI_HIDE: ClassVar[tuple[str, ...]] = ("data.d", "data.n_train")
    # how the cells run and where they are kept (--backend, --workers, --store, --force, --accept-stale)
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        widths = tuple(_as_width(w) for w in self.widths)
        if self.infinite is False and any(is_infinite(w) for w in widths):
            raise ValueError("--widths inf and --no-infinite contradict each other")
        object.__setattr__(self, "widths", widths)
        if not self.finite_widths() and not self.infinite and INF_WIDTH not in widths:
            raise ValueError("nothing to run: give --widths or keep --infinite")
        if any(isinstance(v, bool) or v < 1 for v in self.depth):
            raise ValueError(f"--depth values must be integers >= 1, got {self.depth}")
        # A sweep over N (or d) overrides data.n_train (data.d) in every cell; the whole-run steps (held-out
        # count, decision maps, first-order curve) read ``data``, so it carries the headline (largest) value
        # the user gave, never the default it replaced (whose errors would name a value never typed).
        over = {a: max(getattr(self, a)) for a in ("n_train", "d") if getattr(self, a)}
        if over:
            object.__setattr__(self, "data", replace(self.data, **over))
        for name in ("eps", "lr_f", "lr_g", "steps_f", "steps_g", "gamma"):
            if not getattr(self, name):
                raise ValueError(f"{name} needs at least one value")
        base = self.base()  # validates scenario, attack, targets, loss, preset, eps, gamma ranges, arch
        for depth in self.depth[1:]:
            self.arch_at(self.all_widths()[0], depth)
        if self.finite_widths():  # an unknown solver, or 'pattern' where it cannot apply, is refused here
            protocol.choose_solver(base, base.train_config("f"), base.data.n_train, self.solver)

    def finite_widths(self) -> tuple[int, ...]:
        return tuple(w for w in self.widths if not is_infinite(w))

    def all_widths(self) -> tuple:
        """The finite widths, then INF_WIDTH when the limit runs (``inf`` in ``--widths``, or
        ``--infinite``)."""
        inf = self.infinite or any(is_infinite(w) for w in self.widths)
        return self.finite_widths() + ((INF_WIDTH,) if inf else ())

    def arch_at(self, width, depth: int | None = None) -> Architecture:
        """The architecture of this run at ``width`` (and ``depth``; default the first ``--depth``)."""
        depth = depth if depth is not None else (self.depth[0] if self.depth else None)
        return make_arch(
            self.arch,
            width,
            depth=depth,
            gamma=self.gamma[0],
            parametrization=self.param(),
            trained=self.trained,
        )

    def param(self) -> str:
        """The parametrization: ``parametrization``, or for ``auto`` standard (two-layer) / ntk (fc, cnn)."""
        if self.parametrization != "auto":
            return self.parametrization
        return "standard" if self.arch == "two-layer" else "ntk"

    def base(self) -> protocol.ProtocolConfig:
        return protocol.ProtocolConfig(
            data=self.data,
            arch=self.arch_at(self.all_widths()[0]),
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
        axes = [("width", self.all_widths())]
        for name, target in AXES.items():
            vals = getattr(self, name)
            if name != "widths" and len(vals) > (0 if name in ("d", "n_train") else 1):
                axes.append((target, tuple(vals)))
        for name, vals in axes:
            for v in vals:
                if name != "width" and isinstance(v, (int, float)) and not np.isfinite(v):
                    raise ValueError(f"sweep values must be finite, got {vals}")
        return engine.Grid(self.base(), axes=tuple(axes), seeds=self.seeds)

    def varying(self) -> list[str]:
        """Row columns of the axes that have more than one value (besides width)."""
        return [AXES[n] for n in AXES if n != "widths" and len(getattr(self, n)) > 1]

    def decomposes(self) -> bool:
        """Whether the two-layer analysis applies (:func:`ntk_adv.perturbation.protocol.decomposes`)."""
        return protocol.decomposes(self.base().arch)

    def arch_label(self) -> str:
        """The architecture as the claims name it: ``two-layer``, ``fc (depth 3)``, ..."""
        if self.arch == "two-layer":
            return "two-layer"
        depths = self.depth or (self.base().arch.depth,)
        return f"{self.arch} (depth {', '.join(map(str, depths))})"


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
