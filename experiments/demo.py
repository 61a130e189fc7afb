"""Quick-start demo: perturbation learning on the embedded digits (0 vs 1), finite widths vs infinite width.

A small width x eps sweep of the perturbation-learning experiment (scenario (a): g sees only the
perturbations, with random target labels) that runs offline in a few minutes on 2 CPU cores and writes the
figures: agreement(f, g) and g's held-out accuracy against width with the infinite-width value dashed,
agreement against eps, and decision maps in the class-mean plane. Same outputs as ``perturbation-learning``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import perturbation_learning

COMMAND = "demo"


@dataclass(frozen=True)
class Config(perturbation_learning.Config):
    widths: tuple[int, ...] = (16, 64, 256, 1024, 4096)
    eps: tuple[float, ...] = (0.1, 0.3, 1.0)
    seeds: int = 5


def main(cfg: Config = Config(), out: str | Path = "runs/demo", *, progress: bool = True) -> dict:
    return perturbation_learning.main(cfg, out, progress=progress)
