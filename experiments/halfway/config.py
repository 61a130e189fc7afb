"""The experiment's settings: :class:`Config` (composed of the library's net, training and data configs) and
the smoke-test scale :data:`QUICK_CONFIG`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

import numpy as np

from ntk_adv import engine, models
from ntk_adv.data import DataSpec
from ntk_adv.losses import MARGIN_LOSSES
from ntk_adv.training import TrainConfig

HalfwayAttack = Literal["fgm", "fgsm"]  # the one-step attacks of ntk_adv.attacks this experiment uses
HALFWAY_ATTACKS: tuple[str, ...] = get_args(HalfwayAttack)
# per (width, seed) rows; ``flip_net_net`` has one row per (width, disjoint seed pair)
SEED_METRICS = (
    "flip_net_limit",
    "flip_net_1nn",
    "flip_net_kernel",
    "agree_net_limit",
    "agree_net_1nn",
    "acc",
    "flip_t",
    "flip_rate",
    "attack_success",
    "agree_1nn_where_kernel_differs",
)


@dataclass(frozen=True)
class Config:
    """Composed of the library's configs: ``net`` (:class:`ntk_adv.models.TwoLayerConfig`; its ``width`` is a
    template overridden by ``widths``), ``train`` (:class:`ntk_adv.training.TrainConfig`, plain gradient
    descent), ``data`` (:class:`ntk_adv.data.DataSpec`). ``eps``: attack radius as a fraction of the
    median test-pair L2 distance (fgm, L2) or that divided by sqrt(d) (fgsm, L-inf)."""

    widths: tuple[int, ...] = (16, 64, 256, 1024, 4096)  # hidden widths m of the finite nets, distinct, >= 1
    seeds: int = 8  # nets (independent initializations) per width, even and >= 4 (compared in disjoint pairs)
    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=250, n_test=None, pos=3, neg=8))
    net: models.TwoLayerConfig = field(default_factory=lambda: models.TwoLayerConfig(1))  # width: from widths
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig.theory(lr=0.2, steps=100, loss="logistic", record_loss=False)
    )
    centered: bool = True  # nets as f(x) - f_0(x) (f_0 = 0 at init), so their limit is deterministic
    n_pairs: int = (
        300  # random test pairs (x_a, x_b) of different classes whose flip points are located, >= 1
    )
    grid: int = 64  # grid steps on the segment from x_a to x_b that locate the first sign change, >= 1
    bisection: int = 20  # bisection halvings that refine each flip point, >= 0
    attack: HalfwayAttack = "fgm"  # one-step targeted attack (targets -y): fgm (L2) or fgsm (L-inf sign)
    eps: float = (
        0.3  # attack radius / median test-pair L2 distance, > 0 (fgm: L2; fgsm: L-inf, also / sqrt(d))
    )
    permutations: int = 2000  # permutations of the one-sided Mantel test (transfer vs flip distance), >= 1
    halfway_tolerance: float = 0.05  # |mean flip point t - 0.5| allowed by the "halfway" claim, in (0, 0.5)
    seed: int = 0  # seed of the test pairs, the initializations and the permutation test
    # set by the experiment: net.width from widths; a scalar output with its first layer trained; plain GD
    CLI_HIDE: ClassVar[tuple[str, ...]] = (
        "net.width",
        "net.n_out",
        "net.train_readout",
        *(f"train.{f}" for f in TrainConfig.PLAIN_GD_FIXED),
    )
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        if not self.widths or any(not isinstance(w, (int, np.integer)) or w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty list of integers >= 1, got {self.widths}")
        if len(set(self.widths)) != len(self.widths):
            raise ValueError(f"widths must be distinct, got {self.widths}")
        if not isinstance(self.seeds, (int, np.integer)) or self.seeds < 4 or self.seeds % 2:
            raise ValueError(
                f"seeds must be an even integer >= 4 (nets are compared in disjoint pairs; a "
                f"within-width correlation needs >= 6 pairs of nets), got {self.seeds!r}"
            )
        if self.train.loss not in MARGIN_LOSSES:
            raise ValueError(
                f"loss must be a margin loss ({', '.join(MARGIN_LOSSES)}), got {self.train.loss!r}"
            )
        if self.train.optimizer != "gd" or self.train.plateau or self.train.steps < 1:
            raise ValueError(
                "train.optimizer gd without train.plateau, and --steps >= 1: the kernel limit is plain "
                "gradient descent"
            )
        if self.net.train_readout or self.net.n_out != 1:
            raise ValueError(
                "the experiment trains the first layer of a scalar net (net.train_readout False, n_out 1)"
            )
        for name, low in (("n_pairs", 1), ("grid", 1), ("bisection", 0), ("permutations", 1)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.attack not in HALFWAY_ATTACKS:
            raise ValueError(f"unknown attack {self.attack!r}; expected one of {', '.join(HALFWAY_ATTACKS)}")
        if not (np.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be finite and > 0, got {self.eps!r}")
        if not 0 < self.halfway_tolerance < 0.5:
            raise ValueError(f"halfway_tolerance must lie in (0, 0.5), got {self.halfway_tolerance!r}")


# A smoke-test scale (``ntk-adv report --quick``; numbers indicative only).
QUICK_CONFIG = Config(
    widths=(16, 256, 2048),
    seeds=4,
    data=DataSpec("digits", n_train=120, n_test=None, pos=3, neg=8),
    n_pairs=80,
    grid=32,
    bisection=12,
    permutations=200,
)
