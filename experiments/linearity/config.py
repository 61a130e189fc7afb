"""Configuration of the linearity experiment (Goodfellow, Shlens, Szegedy 2015): composed of the library's
config types - ``net`` (:class:`ntk_adv.models.TwoLayerConfig`), ``train``
(:class:`ntk_adv.training.TrainConfig`), ``data`` (:class:`ntk_adv.data.DataSpec`) - plus the experiment's own
axes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ntk_adv import engine
from ntk_adv.data import SYNTHETIC_DATASETS, DataSpec, SyntheticName
from ntk_adv.losses import MARGIN_LOSSES
from ntk_adv.models import TwoLayerConfig
from ntk_adv.training import TrainConfig

PARTS = "abcd"
SYNTHETIC = SYNTHETIC_DATASETS
PAPER_EPS = 0.25  # Goodfellow et al. (2015): MNIST pixels in [0, 1], L-inf eps 0.25


@dataclass(frozen=True)
class Config:
    """Parts: (a) dimension, (b) rays, (c) FGSM error (grid over eps, the paper's eps, RBF, transfer),
    (d) adversarial training. ``net.width`` is the width of the nets of (c)'s paper-eps comparison and (d);
    (b)/(c)'s eps grid sweeps ``widths``. ``train`` is plain full-batch GD (the theory preset) for every
    finite net and the limit; the FGSM-trained nets of (d) use the same lr and steps. Part (a) trains with the
    identity loss (its gradient is linear in time) and the standard parametrization, step ``dim_lr`` for
    ``dim_steps``.

    eps norms: every eps is an L-inf radius in input units (digits and MNIST pixels are scaled to [0, 1]
    before a scalar mean is subtracted, so ``paper_eps`` = 0.25 is the paper's 0.25 on MNIST's [0, 1] pixels).
    With ``data.root`` set and ``data.name`` not 'mnist', part (c)'s paper-eps comparison is repeated on real
    MNIST (1 vs 2, ``mnist_n_train`` / ``mnist_n_test`` points) from that directory; it is never required."""

    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=None, n_test=None))
    net: TwoLayerConfig = field(default_factory=lambda: TwoLayerConfig(512))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(loss="logistic", lr=0.5, steps=200, record_loss=False)
    )
    parts: str = PARTS  # which parts to run, any subset of "abcd" (a string, e.g. ac)
    seeds: int = 4  # number of seeds (independent initializations) per cell, >= 1
    seed: int = 0  # base seed of the initializations, synthetic draws and rays
    # (a) dimension sweep on synthetic data
    dims: tuple[int, ...] = (
        16,
        64,
        256,
        1024,
    )  # (a) input dimensions d of the synthetic data (>= 3 distinct)
    synthetic: SyntheticName = "gauss"  # (a) synthetic data set of the dimension sweep
    n_synthetic: int = 200  # (a) training points N of each synthetic data set, >= 1
    n_points: int = 100  # (a) test points perturbed per dimension, >= 1
    dim_width: int = 512  # (a) hidden width m of the nets of the dimension sweep, >= 1
    dim_eps: float = 0.01  # (a) L-inf size of the FGSM and random-sign perturbations, > 0
    dim_lr: float = 0.01  # (a) learning rate of the identity-loss gradient descent, > 0
    dim_steps: int = 100  # (a) gradient-descent steps, >= 1
    # (b), (c): widths, eps grid, rays
    widths: tuple[int, ...] = (16, 64, 256, 1024, 4096)  # (b), (c) hidden widths m of the finite nets
    eps: tuple[float, ...] = (  # FGSM radii of (c) and (d): L-inf norm in input units, including 0
        0.0,
        0.05,
        0.1,
        0.15,
        0.2,
        0.25,
        0.3,
        0.35,
        0.4,
    )
    ray_t: float = 1.0  # (b) rays x + t s run over t in [-ray_t, ray_t] (s: the FGSM sign direction), > 0
    ray_points: int = 801  # (b) grid points per ray, >= 5
    n_rays: int = 32  # (b) test points whose rays are followed, >= 1
    # (c) the paper's eps, the RBF model, MNIST
    paper_eps: float = PAPER_EPS  # (c) the paper's FGSM radius, L-inf norm in input units, > 0
    rbf_scale: float = 0.5  # (c) RBF bandwidth as a fraction of the median train pairwise L2 distance, > 0
    mnist_n_train: int = 1000  # (c) MNIST (1 vs 2) training points of the real-MNIST repeat (--data-root)
    mnist_n_test: int = 500  # (c) MNIST test points of the real-MNIST repeat, >= 1
    # (d) adversarial training
    adv_eps: float = PAPER_EPS  # (d) L-inf radius of the training perturbations (FGSM and noise), > 0
    adv_alpha: float = 0.5  # (d) weight of the clean loss in alpha clean + (1 - alpha) perturbed, in [0, 1)
    adv_margin: float = 0.2  # (d) FGSM-error drop adversarial training must exceed (and noise must not)
    # set by the experiment: a scalar, first-layer-trained net at init scale 1; plain GD, no loss curve
    CLI_HIDE: ClassVar[tuple[str, ...]] = (
        "net.n_out",
        "net.train_readout",
        "net.init_scale",
        *(f"train.{f}" for f in TrainConfig.PLAIN_GD_FIXED),
    )
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        if not self.parts or set(self.parts) - set(PARTS):
            raise ValueError(f"parts must be a non-empty subset of 'abcd', got {self.parts!r}")
        for name in ("dims", "widths"):
            v = getattr(self, name)
            if len(v) < 3 or min(v) < 1 or len(set(v)) != len(v):
                raise ValueError(f"{name} must hold >= 3 distinct integers >= 1 (for a slope fit), got {v}")
        if self.synthetic not in SYNTHETIC:
            raise ValueError(f"synthetic must be one of {', '.join(SYNTHETIC)}, got {self.synthetic!r}")
        for name in (
            "seeds",
            "n_synthetic",
            "n_points",
            "dim_width",
            "n_rays",
            "dim_steps",
            "mnist_n_train",
            "mnist_n_test",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ray_points < 5:
            raise ValueError(f"ray_points must be >= 5, got {self.ray_points}")
        for name in ("dim_eps", "ray_t", "adv_eps", "paper_eps", "rbf_scale", "dim_lr"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v}")
        if len(self.eps) < 2 or any(not np.isfinite(e) or e < 0 for e in self.eps):
            raise ValueError(f"eps must hold >= 2 finite values >= 0, got {self.eps}")
        if min(self.eps) != 0 or len(set(self.eps)) != len(self.eps):
            raise ValueError(f"eps must hold distinct values and include 0 (the clean error), got {self.eps}")
        if not 0.0 <= self.adv_alpha < 1.0:
            raise ValueError(
                f"adv_alpha must be in [0, 1) (1 would train on clean points only), got {self.adv_alpha}"
            )
        if not (np.isfinite(self.adv_margin) and 0 <= self.adv_margin < 1):
            raise ValueError(f"adv_margin must be in [0, 1), got {self.adv_margin}")
        if self.train.loss not in MARGIN_LOSSES:
            raise ValueError(
                f"loss must be a margin loss ({', '.join(MARGIN_LOSSES)}), got {self.train.loss!r}"
            )
        if self.train.optimizer != "gd" or self.train.plateau:
            raise ValueError(
                "optimizer must be 'gd' without plateau (the theory preset: the limit is the "
                f"kernel flow of plain GD), got {self.train.optimizer!r}, plateau={self.train.plateau}"
            )
        if self.train.steps < 1 or self.train.lr <= 0:
            raise ValueError(
                f"steps must be >= 1 and lr > 0, got steps={self.train.steps}, lr={self.train.lr}"
            )
        if self.net.n_out != 1 or self.net.train_readout or self.net.init_scale != 1.0:
            raise ValueError(
                "net must have n_out 1, a frozen readout and init_scale 1 (the lazy/NTK setting "
                "whose limit is the kernel predictor)"
            )

    # ------------------------------------------------------------------ derived configs
    def dim_train(self) -> TrainConfig:
        return TrainConfig(loss="identity", lr=self.dim_lr, steps=self.dim_steps, record_loss=False)

    def mnist(self) -> DataSpec | None:
        """Real MNIST for the paper-eps comparison, when a data root is given (else None)."""
        if self.data.root is None or self.data.name == "mnist":
            return None
        return DataSpec(
            "mnist",
            n_train=self.mnist_n_train,
            n_test=self.mnist_n_test,
            root=self.data.root,
            seed=self.data.seed,
        )


# Smoke-test scale (``ntk-adv report --quick``): well under a minute on two cores; numbers indicative.
QUICK_CONFIG = Config(
    dims=(16, 64, 256),
    dim_width=256,
    n_synthetic=100,
    n_points=50,
    widths=(16, 128, 1024),
    seeds=3,
    data=DataSpec("digits", n_train=120, n_test=100),
    train=TrainConfig(loss="logistic", lr=0.5, steps=100, record_loss=False),
    ray_points=201,
    n_rays=8,
    eps=(0.0, 0.1, 0.2, 0.25, 0.3, 0.4),
    net=TwoLayerConfig(128),
)
