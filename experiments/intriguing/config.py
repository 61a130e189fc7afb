"""Configuration of the Szegedy et al. (2014) experiment: a frozen dataclass composed of the library's configs
(``net``: :class:`ntk_adv.models.TwoLayerConfig`, whose ``width`` is a template overridden by ``widths``;
``train``: :class:`ntk_adv.training.TrainConfig`; ``data``: :class:`ntk_adv.data.DataSpec`), the sweep axes
and the attack settings. Validation rejects every setting that would make a summary meaningless or divide by
zero, with a one-line ValueError naming the option."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ntk_adv import engine, models
from ntk_adv.data import DataSpec
from ntk_adv.losses import MARGIN_LOSSES
from ntk_adv.training import TrainConfig

# a distortions + weight decay, b noise, c transfer, d units, e Lipschitz, f adversarial training
PARTS = "abcdef"


@dataclass(frozen=True)
class Config:
    """Parts: (a) minimal L-BFGS distortions vs width and weight decay, (b) Gaussian noise vs adversarial,
    (c) transfer, (d) hidden units vs random directions, (e) the operator-norm Lipschitz bound, (f)
      adversarial
    training and clean generalization. With ``data.root`` set (``--data-root``) the Table-1 comparison on real
    MNIST (1 vs 2, ``mnist_n_train`` points, width ``mnist_width``) runs as well; MNIST is never required.

    Distortions are RMS per pixel, ||eta||_2 / sqrt(d) (Szegedy et al.'s measure); eps values likewise."""

    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=None, n_test=None))
    net: models.TwoLayerConfig = field(default_factory=lambda: models.TwoLayerConfig(1))  # width: from widths
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig.theory(lr=0.5, steps=200, loss="logistic", record_loss=False)
    )
    widths: tuple[int, ...] = (
        16,
        64,
        256,
        1024,
    )  # hidden widths m of (a) distortion, (b) noise, (c) transfer
    seeds: int = 3  # number of seeds (independent initializations) per width, >= 2
    decays: tuple[float, ...] = (0.0, 0.1, 0.5, 1.0, 2.0)  # (a) anchored weight decay lambda; lr x max <= 1
    decay_width: int = 256  # (a) width m of the nets trained with weight decay, >= 1
    n_attack: int = 50  # test points attacked (minimal distortions measured on them), >= 1
    c_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # L-BFGS penalty weights c tried per point, > 0
    refine_steps: int = 5  # bisection steps in log c refining the smallest successful c, >= 0
    lbfgs_steps: int = 50  # L-BFGS iterations of each box-constrained attack solve, >= 1
    noise_multiples: tuple[float, ...] = (
        1.0,
        2.0,
        5.0,
    )  # (b) Gaussian noise L2 norm / mean minimal distortion
    noise_draws: int = 20  # (b) Gaussian noise draws per attacked point and multiple, >= 1
    noise_tolerance: float = 0.15  # noise may raise the error by at most this much over the clean error
    amplify: float = 1.1  # the amplified variant x + amplify * eta
    transfer_floor: float = 0.5  # predicted floor of the transfer error of amplified examples (a coin flip)
    transfer_width: int = 1024  # width of the nets trained on the two disjoint halves
    probe_widths: tuple[int, ...] = (16, 64, 256, 1024, 4096)  # hidden widths m of (d) purity, (e) Lipschitz
    top_k: int = 10  # (d) test points of largest activation whose label purity is measured, >= 1
    n_directions: int = 256  # (d) hidden units and random activation-space directions compared, >= 1
    purity_tolerance: float = 0.02  # (d) units' purity within this of random directions' (a proportion)
    adv_width: int = 256  # (f) width m of the adversarially trained nets, >= 1
    adv_eps: float = 0.05  # (f) adversarial-training FGM radius: L2 norm / sqrt(d) (RMS per pixel), > 0
    mnist_width: int = 256  # width m of the nets of the MNIST Table-1 comparison (with --data-root), >= 1
    mnist_n_train: int = 500  # MNIST (1 vs 2) training points of the Table-1 comparison, >= 1
    parts: str = PARTS  # which parts to run, any subset of "abcdef" (a string, e.g. abf)
    seed: int = 0  # base seed of initializations, noise and probe directions
    # set by the experiment: net.width from widths and the other width fields; a scalar first-layer net
    CLI_HIDE: ClassVar[tuple[str, ...]] = ("net.width", "net.n_out", "net.train_readout")
    run: engine.Execution = field(default_factory=engine.Execution)  # where cells run and are stored

    def __post_init__(self):
        if not self.parts or set(self.parts) - set(PARTS):
            raise ValueError(f"--parts must be a non-empty subset of {PARTS!r}, got {self.parts!r}")
        for name in ("widths", "probe_widths"):
            v = getattr(self, name)
            if len(v) < 3 or min(v) < 1 or len(set(v)) != len(v):
                raise ValueError(f"{name} must hold >= 3 distinct integers >= 1 (for a slope fit), got {v}")
        for name in (
            "seeds",
            "n_attack",
            "noise_draws",
            "top_k",
            "n_directions",
            "decay_width",
            "transfer_width",
            "lbfgs_steps",
            "adv_width",
            "mnist_width",
            "mnist_n_train",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seeds < 2 and set(self.parts) & set("acdef"):
            raise ValueError(
                "--seeds must be >= 2: transfer (c) and every interval over seeds need two seeds"
            )
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {self.refine_steps}")
        if not self.decays or 0.0 not in self.decays or any(not np.isfinite(v) or v < 0 for v in self.decays):
            raise ValueError(f"decays must be finite values >= 0 and include 0.0, got {self.decays}")
        if len(set(self.decays)) != len(self.decays):
            raise ValueError(f"decays must be distinct, got {self.decays}")
        if "a" in self.parts and len(self.decays) < 2:
            raise ValueError("--decays needs a value > 0 besides 0.0 for the weight-decay claim")
        if self.train.lr * max(self.decays) > 1.0:  # (1 - lr decay) <= 0 flips or blows up theta - theta_0
            raise ValueError(
                f"--decays: lr x decay must be <= 1 (shrink factor 1 - lr decay >= 0), got lr "
                f"{self.train.lr:g} x {max(self.decays):g}"
            )
        if max(self.decays) > 0 and (self.train.optimizer != "gd" or self.train.plateau):
            raise ValueError(
                "--decays > 0 needs --optimizer gd without --plateau (decay is applied per GD step)"
            )
        if self.train.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.train.steps}")
        if self.train.loss not in MARGIN_LOSSES:
            raise ValueError(
                f"loss must be a margin loss ({', '.join(MARGIN_LOSSES)}), got {self.train.loss!r}"
            )
        if not self.c_grid or any(not np.isfinite(c) or c <= 0 for c in self.c_grid):
            raise ValueError(f"c_grid must be a non-empty list of positive numbers, got {self.c_grid}")
        if not self.noise_multiples or any(not np.isfinite(k) or k <= 0 for k in self.noise_multiples):
            raise ValueError(f"noise_multiples must be positive numbers, got {self.noise_multiples}")
        for name in ("amplify", "adv_eps"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)}")
        for name in ("noise_tolerance", "purity_tolerance"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {getattr(self, name)}")
        if not 0 <= self.transfer_floor <= 1:
            raise ValueError(f"transfer_floor must lie in [0, 1], got {self.transfer_floor}")
        if self.net.train_readout or self.net.n_out != 1:
            raise ValueError(
                "the experiment trains the first layer of a scalar net (net.train_readout False, n_out 1)"
            )
        if self.data.name in ("gauss",):
            raise ValueError("dataset 'gauss' has random labels; use a dataset with learnable labels")


# A smoke-test scale (``ntk-adv report --quick``; numbers indicative only).
QUICK_CONFIG = Config(
    widths=(16, 64, 256),
    seeds=2,
    data=DataSpec("digits", n_train=120, n_test=None),
    train=TrainConfig.theory(lr=0.5, steps=100, loss="logistic", record_loss=False),
    decays=(0.0, 2.0),
    decay_width=64,
    transfer_width=64,
    probe_widths=(64, 256, 1024),
    n_attack=16,
    lbfgs_steps=25,
    refine_steps=3,
    c_grid=(0.01, 0.1, 1.0),
    adv_width=64,
    mnist_width=64,
    mnist_n_train=200,
)
