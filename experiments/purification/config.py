"""Configuration of the feature-purification experiment (Allen-Zhu & Li): composed of the library's config
types - ``net`` (:class:`ntk_adv.models.TwoLayerConfig`, the rich net), ``train``
(:class:`ntk_adv.training.TrainConfig`, its clean training) - and ``data`` (:class:`SparseCoding`, the data
model of the paper), plus the experiment's own settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

import numpy as np

from ntk_adv import engine
from ntk_adv.models import TwoLayerConfig
from ntk_adv.training import TrainConfig

AdvAttack = Literal["fgm", "pgd_l2", "pgd_linf"]  # the ntk_adv.attacks names adversarial training uses
Dictionary = Literal["orthogonal", "gaussian"]  # the dictionaries of problem.make_problem
ADV_ATTACKS: tuple[str, ...] = get_args(AdvAttack)
DICTIONARIES: tuple[str, ...] = get_args(Dictionary)
LOSS = "logistic"


@dataclass(frozen=True)
class SparseCoding:
    """x = M z + xi: dictionary M (d x n_atoms; ``orthogonal`` orthonormal columns, n_atoms <= d; ``gaussian``
    unit-norm random columns), z with exactly ``sparsity`` (odd) nonzero entries of random sign, label
    y = sign(<w*, z>), w* in {-1, +1}^n_atoms, noise xi ~ N(0, noise^2 I_d); ``n_train`` / ``n_test``
    points."""

    d: int = 32  # input dimension d, >= 1
    n_atoms: int = 32  # dictionary atoms (columns of M), >= 1 (orthogonal: <= d)
    dictionary: Dictionary = "orthogonal"  # orthogonal: orthonormal columns; gaussian: unit-norm random ones
    sparsity: int = 3  # nonzero entries of each sparse code z (odd, <= n_atoms), random signs
    noise: float = 0.01  # standard deviation of the Gaussian noise xi per coordinate, >= 0
    n_train: int = 1000  # training points N, >= 2
    n_test: int = 500  # test points, >= 1

    def __post_init__(self):
        for name, low in {"d": 1, "n_atoms": 1, "sparsity": 1, "n_train": 2, "n_test": 1}.items():
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.dictionary not in DICTIONARIES:
            raise ValueError(
                f"unknown dictionary {self.dictionary!r}; expected one of {', '.join(DICTIONARIES)}"
            )
        if self.dictionary == "orthogonal" and self.n_atoms > self.d:
            raise ValueError(
                f"an orthogonal dictionary needs n_atoms <= d, got n_atoms={self.n_atoms} > d={self.d}"
                " (use --dictionary gaussian for an overcomplete, near-orthonormal dictionary)"
            )
        if self.sparsity > self.n_atoms:
            raise ValueError(f"sparsity must be <= n_atoms, got {self.sparsity} > {self.n_atoms}")
        if self.sparsity % 2 == 0:
            raise ValueError(
                f"sparsity must be odd so that the label sign(<w*, z>) is never 0, got {self.sparsity}"
            )
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be finite and >= 0, got {self.noise!r}")


@dataclass(frozen=True)
class Config:
    """Models: ``clean`` (``net``: standard parametrization, small init, readout trained; ``train``),
    ``adversarial`` (the clean net, then ``adv_steps`` of adversarial training with ``adv_attack`` at radius
    ``adv_eps`` in that attack's norm - FGM by default, the paper's 'even with FGM'), ``lazy`` / ``lazy_adv``
    (NTK parametrization, init scale 1, width ``lazy_width``, clean / FGM-adversarial training for
    ``lazy_steps`` at ``lazy_lr``), ``ntk_limit`` / ``kernel_adv`` (the lazy net's infinite-width kernel
    predictor, clean / refitted ``kernel_rounds`` times on FGM-perturbed training points), ``linear`` /
    ``linear_adv`` (logistic regression, clean / FGM-adversarial), ``oracle`` (the ideal purified net).

    eps norms: ``adv_eps`` and ``eps_l2`` are L2 radii, ``eps_linf`` an L-inf radius; the default
    eps_linf = eps_l2 / sqrt(d) is the largest L-inf ball inside the L2 ball (robustness in L2 implies it).
    Robust accuracy: untargeted PGD, ``eval_steps`` steps of size 2.5 eps / eval_steps."""

    data: SparseCoding = field(default_factory=SparseCoding)
    net: TwoLayerConfig = field(
        default_factory=lambda: TwoLayerConfig(256, train_readout=True, init_scale=0.01)
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(loss=LOSS, lr=0.5, steps=1000, record_loss=False)
    )
    seeds: int = 4  # number of seeds (data draws and initializations), >= 1
    seed: int = 0  # base seed of the data model and the initializations
    # adversarial training from the clean weights
    adv_attack: AdvAttack = "fgm"  # attack of adversarial training (fgm, pgd_l2: L2; pgd_linf: L-inf)
    adv_eps: float = 0.25  # training attack's radius in its norm (fgm, pgd_l2: L2; pgd_linf: L-inf), > 0
    adv_attack_steps: int = 3  # PGD iterations of the training attack (pgd_l2, pgd_linf), >= 1
    adv_lr: float = 0.5  # learning rate of adversarial training, > 0
    adv_steps: int = 2000  # gradient-descent steps of adversarial training (a multiple of checkpoints)
    checkpoints: int = 10  # evaluations along adversarial training (the trajectory), >= 1
    # lazy / NTK regime, kernel and linear references
    lazy_width: int = 1024  # hidden width m of the lazy (NTK-parametrized, init scale 1) nets, >= 1
    lazy_lr: float = 4.0  # learning rate of the lazy nets' gradient descent, > 0
    lazy_steps: int = 250  # gradient-descent steps of the lazy nets (clean and adversarial), >= 1
    kernel_rounds: int = 3  # refits of the kernel predictor on FGM-perturbed training points, >= 1
    # evaluation
    eps_l2: float = 0.25  # L2 radius of the robust accuracy (untargeted PGD), > 0
    eps_linf: float = 0.25 / np.sqrt(
        32
    )  # L-inf radius of the robust accuracy, > 0 (default: eps_l2 / sqrt(d))
    eval_steps: int = 20  # PGD iterations of the robust-accuracy attack (step 2.5 eps / eval_steps), >= 1
    pure_atoms: int = 1  # atoms a neuron's weight is projected on to measure its purity, 1..n_atoms
    oracle_threshold: float = (
        0.5  # bias threshold b of the ideal purified net's neurons relu(<M_j, x> - b), >= 0
    )
    margin: float = 0.2  # "not robust": robust accuracy more than this below clean accuracy
    robust_margin: float = 0.1  # "robust": robust accuracy within this of clean accuracy
    gap_margin: float = (
        0.1  # "well below": low-complexity models' robust accuracy below the rich net's by this
    )
    # set by the experiment: the rich net (standard parametrization, bias, readout trained, scalar output)
    # trained by plain GD on the logistic loss
    CLI_HIDE: ClassVar[tuple[str, ...]] = (
        "net.parametrization",
        "net.n_out",
        "net.bias",
        "net.train_readout",
        "train.loss",
        *(f"train.{f}" for f in TrainConfig.PLAIN_GD_FIXED),
    )
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        ints = {
            "seeds": 1,
            "adv_attack_steps": 1,
            "adv_steps": 1,
            "checkpoints": 1,
            "lazy_width": 1,
            "lazy_steps": 1,
            "eval_steps": 1,
            "pure_atoms": 1,
            "kernel_rounds": 1,
        }
        for name, low in ints.items():
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.pure_atoms > self.data.n_atoms:
            raise ValueError(f"pure_atoms must be <= n_atoms, got {self.pure_atoms} > {self.data.n_atoms}")
        if self.adv_attack not in ADV_ATTACKS:
            raise ValueError(
                f"unknown adversarial-training attack {self.adv_attack!r}; expected one of "
                f"{', '.join(ADV_ATTACKS)}"
            )
        if self.adv_steps % self.checkpoints:
            raise ValueError(
                f"adv_steps ({self.adv_steps}) must be a multiple of checkpoints ({self.checkpoints})"
            )
        for name in (
            "adv_eps",
            "eps_l2",
            "eps_linf",
        ):  # 0 would make robust = clean accuracy: nothing to judge
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v!r}")
        if not (np.isfinite(self.oracle_threshold) and self.oracle_threshold >= 0):
            raise ValueError(f"oracle_threshold must be finite and >= 0, got {self.oracle_threshold!r}")
        for name in ("adv_lr", "lazy_lr"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v!r}")
        for name in ("margin", "robust_margin", "gap_margin"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if (
            self.train.loss != LOSS
            or self.train.optimizer != "gd"
            or self.train.plateau
            or self.train.steps < 1
        ):
            raise ValueError(
                f"train must be plain GD ('gd', no plateau) on the {LOSS} loss with steps >= 1, got "
                f"{self.train.loss!r}, {self.train.optimizer!r}, steps={self.train.steps}"
            )
        if not (
            self.net.train_readout
            and self.net.bias
            and self.net.parametrization == "standard"
            and self.net.n_out == 1
        ):
            raise ValueError(
                "net must be the rich net: standard parametrization, bias, readout trained, n_out 1"
            )

    def lazy_net(self) -> TwoLayerConfig:
        return TwoLayerConfig(
            self.lazy_width,
            gamma=self.net.gamma,
            bias=True,
            train_readout=True,
            parametrization="ntk",
            init_scale=1.0,
        )

    def adv_norm(self) -> str:
        return "linf" if self.adv_attack == "pgd_linf" else "l2"


# Smoke-test scale (``ntk-adv report --quick``): well under a minute on two cores; numbers indicative.
QUICK_CONFIG = Config(
    data=SparseCoding(n_train=400, n_test=200),
    seeds=3,
    net=TwoLayerConfig(128, train_readout=True, init_scale=0.01),
    train=TrainConfig(loss=LOSS, lr=0.5, steps=500, record_loss=False),
    adv_steps=600,
    checkpoints=2,
    lazy_width=512,
    lazy_steps=200,
    kernel_rounds=2,
    eval_steps=10,
)

__all__ = ["ADV_ATTACKS", "DICTIONARIES", "LOSS", "QUICK_CONFIG", "Config", "SparseCoding"]
