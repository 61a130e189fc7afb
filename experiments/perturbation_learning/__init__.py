"""Perturbation learning at finite and infinite width (Kumano, Kera, Yamasaki, NeurIPS 2024 / ICLR 2024).

Claim: a classifier g trained only on adversarial perturbations with (random or flipped) target labels agrees
with the clean classifier f on held-out data, and the agreement rises with eps, with g's training time, with d
and (scenario b) with N; as width grows the finite-width result converges to the infinite-width prediction.

The experiment runs on any architecture (``--arch two-layer|fc|cnn``; ``--depth`` for fc and cnn) and sweeps
any of width (``--widths`` with ``inf`` for the limit), depth, eps, lr_f, lr_g, steps_f (T_f), steps_g (T_g),
gamma and the data fields d, n_train through the sweep engine (f trained once per (width, seed, lr_f, T_f),
perturbations once per eps, cells batched with vmap, results cached in a resumable store). Axes with one
value are fixed.
Writes DIR/results.csv (long format), DIR/summary.json (per-width mean agreement and g accuracy with 95%
intervals, the infinite-width agreement under ``agreement_infinite``, and which learning rates were used) and
figures: agreement and g's accuracy vs width (infinite width dashed), vs eps, vs T_g, cosine vs T_f when those
axes vary, and a decision map in the class-mean plane with the limit classifiers' zero contours.

Modules: :mod:`.config` (the options, the grid, the architecture), :mod:`.claims` (verdicts and summary;
"no prediction for <arch>" where only the two-layer net has closed forms), :mod:`.figures`, :mod:`.run`
(:func:`main`).
"""

from __future__ import annotations

from .claims import *  # noqa: F403
from .claims import __all__ as _claims_all
from .config import AXES, HEADLINE, QUICK_CONFIG, REPORT_CONFIG, Config, make_arch
from .figures import *  # noqa: F403
from .figures import __all__ as _figures_all
from .run import main, report

COMMAND = "perturbation-learning"

__all__ = [
    "AXES",
    "COMMAND",
    "HEADLINE",
    "QUICK_CONFIG",
    "REPORT_CONFIG",
    "Config",
    "main",
    "make_arch",
    "report",
    *_claims_all,
    *_figures_all,
]
