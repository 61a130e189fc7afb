"""Performance benchmark: matmul peak, training throughput, sweep-engine speedups, infinite-width cost.

Sections (one run does all of them; ``--quick`` scales every size down for a smoke run):

0. **Matmul peak.** Jitted float32 ``a @ b`` for square shapes ``matmul_sizes``; GFLOP/s = 2 n^3 / t with the
   best of ``repeats`` timings (``block_until_ready``); the peak is the best over the shapes.
a. **Training throughput.** ``training.train`` (theory preset: plain full-batch GD, identity loss, first layer
   trained, readout frozen) on N x d Gaussian inputs for ``steps`` steps at each of ``train_widths``, and the
   ``vmap``-over-``vmap_seeds`` variant at ``vmap_widths``. FLOPs per step, counted analytically for one net::

       forward   u = x W^T: 2Ndm;  + b: Nm;  leaky ReLU max(u, gamma u): 2Nm;  out = h a: 2Nm;  loss: 2N
       backward  d out: N;  dh = d out a^T: Nm;  du = dh * sigma'(u): Nm;  dW = du^T x: 2Ndm;  db: Nm
       update    W, b -= lr * grad: 2dm + 2m
       total     4Ndm + 8Nm + 2dm + 2m + 3N   (the two matmuls, 4Ndm, are > 99% at d = 784)

   (the frozen readout's gradient is never used, so XLA drops it; it is not counted). Achieved GFLOP/s =
   steps * FLOPs / best time; ``peak_fraction`` = that / the measured matmul peak. Compile time is excluded
   (one warm-up call per shape). Matmul and training timings are interleaved round by round, so that a
   background load on the (shared) machine hits both alike, and the best of ``repeats`` rounds is reported.
   The same trainings by the activation-space solver (``pattern_gd.train``, the same GD iterates) are timed
   alongside: ``training.width_<m>.pattern_best_s`` and ``pattern_speedup`` (autodiff time / its time).
b. **Sweep engine vs a plain loop.** Two reference sweeps of the whole protocol (train f, perturb, train g,
   evaluate, finite-to-infinite comparisons; both trainings ``steps`` steps) on a ``sweep_dataset`` task with
   N = ``sweep_n``, d = ``d``: the *width sweep* (``sweep_widths`` x ``sweep_seeds`` seeds) and the
   *paper sweep* (``paper_widths`` x lr_f x lr_g in ``paper_lrs`` x eps in linspace(0, ``paper_eps_max``,
   ``paper_eps_count``), ``paper_seeds`` seed(s): 3 x 2 x 2 x 11 = 132 cells by default).
   *Engine*: ``perturbation.batch.run_sweep`` (the engine) into a temporary store (inprocess backend,
   ``force=True``): f trained once per (seed, lr_f), perturbations once per (seed, lr_f, eps), g per cell,
   each width group one jit; trainings by the solver ``auto`` picks (activation space from
   ``pattern_gd.AUTO_MIN_WIDTH`` = 32 on). *Loop* (the baseline of ``speedup``):
   ``jax.jit(protocol.finite_cell)`` with backpropagated GD (solver ``autodiff``, the reference
   implementation's algorithm), compiled once per width (eps, lr_f, lr_g, key traced - no recompiles per
   cell), called per cell with ``block_until_ready``; it retrains f for every cell. *Loop with the engine's
   solver* (``same_solver_loop``): the same per-cell loop with solver ``auto``; ``speedup_same_solver`` = its
   time / the engine's isolates what sharing and batching give, and ``solver_speedup_per_cell`` = loop / it
   what the solver gives. All paths use the same cached data arrays and the same per-cell keys, so they
   compute the same metrics up to float32 rounding (``max_abs_metric_diff`` reports the largest difference).
   Measurements are interleaved width by width (the order rotating between widths and rounds) and repeated
   ``sweep_repeats`` times. Compile time: every jit trace / lowering / backend compile is recorded through
   ``jax.monitoring`` (union of the time spans); ``*_cold_s`` is the wall time of the first round (compile
   included), ``*_compile_s`` the compile time inside it, and ``engine_s`` / ``loop_s`` - used for
   ``speedup`` - are compile-free: the best later round if ``sweep_repeats >= 2``, else cold minus the
   measured compile time (``warm_method`` says which). ``speedup_cold`` is the ratio with compile included.
   ``reuse_bound`` = (f + g trainings of the loop) / (f + g trainings of the engine), the speedup that reuse
   alone can give when training dominates (132 + 132) / (6 + 132) = 1.91 for the paper sweep.
   ``peak_bound`` = ``loop_s`` / ``engine_floor_s``, where ``engine_floor_s`` is the time the engine's
   trainings alone (``training_tflop.engine``, counted analytically *as backpropagated GD*) take at the
   measured matmul peak: no schedule of backpropagated trainings can beat it on this machine; the
   activation-space solver is how the engine goes past it. ``loop_peak_fraction`` is the loop's training FLOPs
   over its wall time as a fraction of the peak, ``engine_equivalent_peak_fraction`` the same with the
   engine's backprop-equivalent FLOPs (above 1 when the engine does less arithmetic than backpropagation
   would).
c. **Infinite-width agreement at N = 10^4.** ``protocol.infinite_cell`` (jitted; f_inf, one-step L2
   perturbations of f_inf, g_inf, every metric of ``evaluate``) on ``infinite_n`` Gaussian training points of
   dimension ``d`` and ``infinite_n_test`` held-out points, in a fresh subprocess: ``seconds`` is the first
   (cold, compile included) call, ``seconds_warm`` the best of ``infinite_repeats`` further calls;
   ``peak_rss_mb`` the subprocess's peak resident set (VmHWM; not ``ru_maxrss``, which a child inherits from
   its parent across exec) and ``peak_rss_delta_mb`` its growth over the level after imports and data loading.

d. **The papers' optimizer** (``paper_preset``). Researchers reproducing the published figures train with
   full-batch SGD, momentum 0.9 and reduce-on-plateau (``--preset paper``), not with plain GD. The same two
   sweeps under that preset: the engine (solver ``auto``, i.e. momentum + plateau in activation space from
   width 32) against a per-cell loop that backpropagates momentum + plateau (``jax.jit(finite_cell)`` with
   solver ``autodiff``, f retrained per cell) - ``paper_preset.{width_sweep,paper_sweep}`` with the keys of b
   (``paper_same_solver_loop`` adds the per-cell loop with the engine's solver). Section a times the paper
   preset's trainings too (``training.paper_preset.width_<m>``; FLOPs per step add 2dm + 2m for the momentum
   trace).

e. **Deep and convolutional kernels** (``kernels``): the exact infinite-width NTK of :mod:`ntk_adv.arch`
   next to neural-tangents' stax ``kernel_fn`` of the same architecture (jitted, float32, ``get='ntk'``),
   timed in the same run and interleaved round by round (best of ``repeats``; cold = first call with
   compile), when neural-tangents imports (the oracle environment); ``ratio`` = nt_s / ours_s (>= 1: ours at
   least as fast). Cases: ``fc`` (FC depth ``kernels_fc_depth``, ReLU, bias, ``kernels_fc_n`` x
   ``kernels_fc_n`` Gaussian inputs of dimension ``kernels_fc_d``), ``cnn_flatten`` (CNN depth 3, flatten
   readout, ``kernels_cnn_n`` x ``kernels_cnn_n`` images 32x32x3: same-position covariances) and
   ``cnn_pool`` (CNN depth 3, 2x2 average pooling after each block, ``kernels_pool_n`` x ``kernels_pool_n``
   images 8x8x3: pixel-pair covariances). ``mnist_blockwise``: the FC kernel (depth ``kernels_mnist_depth``)
   of ``kernels_mnist_points`` random inputs of dimension 784 with itself (the MNIST training split's size),
   computed by :func:`ntk_adv.arch.blockwise` in ``kernels_block``-row tiles into a preallocated float32
   array: wall time and the process's peak RSS.

Cold and warm: every section reports the first call (compile included: ``cold_s`` / ``*_cold_s``, with the
compile time inside it, ``compile_s``) and warm times (``best_s``, ``engine_s``, ``loop_s``,
``seconds_warm``).

Writes ``DIR/bench.json`` (nested keys: ``matmul_peak_gflops``, ``training.width_<m>.{gflops,peak_fraction}``,
``training.peak_fraction``, ``training.paper_preset.width_<m>.{gflops,peak_fraction,pattern_speedup}``,
``width_sweep.{engine_s,loop_s,speedup,speedup_same_solver,peak_bound}``,
``paper_sweep.{..., reuse_bound, peak_bound}``, ``paper_preset.{width_sweep,paper_sweep}.{engine_s,loop_s,
speedup,engine_cold_s,loop_cold_s}``, ``infinite_agreement.{seconds,peak_rss_mb}``, ``targets``, provenance,
machine load) and prints a table. Targets: training >= 0.8 of the matmul peak at every width >= 1000; width
sweep >= 1.3x; paper sweep >= 3x; under the paper preset width sweep >= 2x and paper sweep >= 4x; infinite
N = 10^4 < 30 s (cold).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import engine, models, pattern_gd
from ntk_adv.arch import INF_WIDTH
from ntk_adv.data import SYNTHETIC_DATASETS, DataSpec, SyntheticName, data_arrays
from ntk_adv.models import TwoLayerConfig
from ntk_adv.perturbation import batch, protocol
from ntk_adv.results import provenance, write_json
from ntk_adv.store import ResultStore
from ntk_adv.training import TrainConfig, train

from .reproduce import PanelName

COMMAND = "bench"
Section = Literal[  # the sections of this benchmark, in the order they run
    "matmul",
    "training",
    "width_sweep",
    "paper_sweep",
    "paper_preset",
    "infinite",
    "reproduction_panel",
    "kernels",
]
SECTIONS: tuple[str, ...] = get_args(Section)
PRESETS = ("theory", "paper")
TARGETS = {
    "training_peak_fraction": 0.8,  # of the matmul peak, at every width >= 1000
    "width_sweep_speedup": 1.3,
    "paper_sweep_speedup": 3.0,
    # the papers' optimizer (momentum + plateau), against its own loop
    "paper_preset_width_sweep_speedup": 2.0,
    "paper_preset_paper_sweep_speedup": 4.0,
    "infinite_seconds": 30.0,  # N = 10^4
    "kernels_ratio": 1.0,  # neural-tangents' time / ours: at least as fast
}
# The scaled-down variant (--quick): replaces every field that still has its default value.
QUICK = dict(
    matmul_sizes=(1024, 2048),
    repeats=2,
    train_widths=(100, 1000),
    train_n=1000,
    d=256,
    steps=50,
    sweep_n=500,
    sweep_n_test=250,
    sweep_widths=(16, 64, 256, 1024),
    sweep_seeds=3,
    paper_widths=(10, 100),
    paper_eps_count=5,
    sweep_repeats=2,
    infinite_n=2000,
    infinite_n_test=500,
    panel_seeds=2,
    panel_values=(0.0, 0.005, 0.01),
    kernels_fc_n=500,
    kernels_cnn_n=20,
    kernels_pool_n=10,
    kernels_mnist_points=10000,
)


@dataclass(frozen=True)
class Config:
    quick: bool = False  # scale every size still at its default down (QUICK): a smoke run
    sections: tuple[Section, ...] = SECTIONS  # which sections to run (0/a matmul, training; b-e as listed)
    # (0) + (a)
    matmul_sizes: tuple[int, ...] = (2048, 3072, 4096)  # (0) square matmul sizes n of the float32 peak
    repeats: int = 3  # best-of-k rounds for matmul, training and kernel timings, >= 1
    train_widths: tuple[int, ...] = (100, 1000, 4000)  # (a) hidden widths m of the timed trainings
    train_n: int = 2000  # (a) training points N of the timed trainings
    d: int = 784  # input dimension d of (a)'s Gaussian inputs, (b)'s sweep data and (c)
    steps: int = 100  # gradient-descent steps of every timed training (f and g alike)
    vmap_widths: tuple[int, ...] = (100,)  # (a) widths of the vmap-over-seeds training variant, >= 1
    vmap_seeds: int = 8  # (a) seeds trained together in the vmap variant, >= 1
    # (b)
    sweep_dataset: SyntheticName = "shifted_gauss"  # (b) synthetic data set of the reference sweeps
    sweep_n: int = 2000  # (b) training points N of the sweeps
    sweep_n_test: int = 1000  # (b) held-out test points of the sweeps
    sweep_widths: tuple[int, ...] = (
        16,
        32,
        64,
        128,
        256,
        512,
        1024,
        2048,
        4096,
    )  # (b) width sweep's widths m
    sweep_seeds: int = 5  # (b) seeds of the width sweep
    sweep_eps: float = 0.14  # (b) attack radius of the width sweep, L2 norm, >= 0
    sweep_lr: float = 0.01  # (b) learning rate lr_f = lr_g of the width sweep, > 0
    paper_widths: tuple[int, ...] = (10, 100, 1000)  # (b) widths m of the paper sweep
    paper_lrs: tuple[float, ...] = (0.01, 0.001)  # (b) learning rates of the paper sweep (lr_f x lr_g grid)
    paper_eps_max: float = 0.14  # (b) largest attack radius (L2) of the paper sweep's eps grid, >= 0
    paper_eps_count: int = 11  # (b) radii in the paper sweep's eps grid linspace(0, paper_eps_max)
    paper_seeds: int = 1  # (b) seeds of the paper sweep
    sweep_repeats: int = 1  # (b) rounds of each sweep measurement (>= 2: warm times from later rounds)
    same_solver_loop: bool = True  # also time the per-cell loop with the engine's solver (isolates reuse)
    paper_same_solver_loop: bool = False  # the same for the paper_preset section (adds a third loop's time)
    # (d) one published panel end to end (``ntk-adv reproduce``: paper preset, lr grid, all seeds, summary,
    # figure)
    panel: PanelName = "shifted_gauss_a_eps"  # the reproduce panel timed by reproduction_panel
    panel_seeds: int = 5  # seeds of the timed panel, >= 1
    panel_values: tuple[float, ...] = ()  # the panel's swept values; empty = the published ones
    panel_n_train: int | None = None  # shrink the panel's N (smoke tests); None = the published setting
    panel_n_test: int | None = None  # the panel's held-out test points; None = the published setting
    panel_d: int | None = None  # the panel's input dimension d; None = the published setting
    panel_width: int | None = None  # the panel's hidden width m where not swept; None = the published one
    panel_steps: int | None = None  # the panel's steps T_f = T_g where not swept; None = the published ones
    # (c)
    infinite_n: int = 10000  # (c) training points N of the infinite-width cell
    infinite_n_test: int = 1000  # (c) held-out test points of the infinite-width cell
    infinite_repeats: int = 1  # (c) warm calls after the cold one, >= 0
    # (e) deep and convolutional kernels, ours vs neural-tangents
    kernels_fc_n: int = 2000  # (e) points of the fc kernel case (an n x n kernel)
    kernels_fc_d: int = 3072  # (e) input dimension of the fc kernel case
    kernels_fc_depth: int = 5  # (e) weight layers of the fc kernel case, >= 2
    kernels_cnn_n: int = 100  # (e) 32x32x3 images of the cnn_flatten case
    kernels_pool_n: int = 30  # (e) 8x8x3 images of the cnn_pool case
    kernels_mnist_points: int = 60000  # (e) inputs (dimension 784) of the blockwise MNIST-size kernel
    kernels_mnist_depth: int = 3  # (e) weight layers of the blockwise fc kernel, >= 2
    kernels_block: int = 5000  # (e) rows per tile of the blockwise kernel
    kernels_mnist_memmap: bool = True  # the result array is a file-backed np.memmap (reclaimable pages)
    seed: int = 0  # base seed of every data draw and initialization

    def __post_init__(self):
        unknown = set(self.sections) - set(SECTIONS)
        if unknown or not self.sections:
            raise ValueError(
                f"sections must be a non-empty subset of {', '.join(SECTIONS)}; got {self.sections}"
            )
        positive = (
            "repeats",
            "train_n",
            "d",
            "steps",
            "vmap_seeds",
            "sweep_n",
            "sweep_n_test",
            "sweep_seeds",
            "paper_eps_count",
            "paper_seeds",
            "sweep_repeats",
            "infinite_n",
            "infinite_n_test",
            "kernels_fc_n",
            "kernels_fc_d",
            "kernels_cnn_n",
            "kernels_pool_n",
            "kernels_mnist_points",
            "kernels_block",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.infinite_repeats < 0:
            raise ValueError(f"infinite_repeats must be >= 0, got {self.infinite_repeats}")
        for name in ("matmul_sizes", "train_widths", "sweep_widths", "paper_widths", "paper_lrs"):
            vals = getattr(self, name)
            if not vals or min(vals) <= 0:
                raise ValueError(f"{name} must be a non-empty list of positive values, got {vals}")
        if any(w < 1 for w in self.vmap_widths):
            raise ValueError(f"vmap_widths must be >= 1, got {self.vmap_widths}")
        if not (math.isfinite(self.paper_eps_max) and self.paper_eps_max >= 0 and self.sweep_eps >= 0):
            raise ValueError("eps values must be finite and >= 0")
        for name in ("kernels_fc_depth", "kernels_mnist_depth"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        if self.sweep_dataset not in SYNTHETIC_DATASETS:
            raise ValueError(f"sweep_dataset must be gauss or shifted_gauss, got {self.sweep_dataset!r}")

    def resolved(self) -> Config:
        """With ``quick``: every field still at its default takes its :data:`QUICK` value."""
        if not self.quick:
            return self
        default = Config()
        return replace(self, **{k: v for k, v in QUICK.items() if getattr(self, k) == getattr(default, k)})

    def sweep_data(self) -> DataSpec:
        return DataSpec(
            self.sweep_dataset, n_train=self.sweep_n, n_test=self.sweep_n_test, d=self.d, seed=self.seed
        )

    def base(self, width: int, preset: str = "theory") -> protocol.ProtocolConfig:
        return protocol.ProtocolConfig(
            data=self.sweep_data(),
            arch=TwoLayerConfig(width),
            loss="identity",
            preset=preset,
            lr_f=self.sweep_lr,
            lr_g=self.sweep_lr,
            steps_f=self.steps,
            steps_g=self.steps,
            eps=self.sweep_eps,
        )

    def width_grid(self, preset: str = "theory") -> engine.Grid:
        return engine.Grid(
            self.base(self.sweep_widths[0], preset),
            axes=(("width", tuple(self.sweep_widths)),),
            seeds=self.sweep_seeds,
        )

    def paper_grid(self, preset: str = "theory") -> engine.Grid:
        eps = tuple(float(e) for e in np.linspace(0.0, self.paper_eps_max, self.paper_eps_count))
        lrs = tuple(float(v) for v in self.paper_lrs)
        return engine.Grid(
            self.base(self.paper_widths[0], preset),
            axes=(("width", tuple(self.paper_widths)), ("lr_f", lrs), ("lr_g", lrs), ("eps", eps)),
            seeds=self.paper_seeds,
        )


# ------------------------------------------------------------------------------------------- timing helpers
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class _CompileSpans:
    """Collects the time spans of JAX's trace / lowering / backend-compile events while active."""

    def __init__(self):
        self.spans: list[tuple[float, float]] | None = None

    def __call__(self, event, start_time, end_time, **_):
        if self.spans is not None and event in _COMPILE_EVENTS:
            self.spans.append((start_time, end_time))


_SPANS = _CompileSpans()
_LISTENING: list[bool] = []  # [True] once _SPANS listens (registered by the first timed call, not at import)


def _listen() -> None:
    """Register :data:`_SPANS` with ``jax.monitoring`` once per process, when the first measurement starts
    (importing this module registers nothing; JAX offers no public way to unregister, and the listener
    records nothing while no :func:`timed` call is active)."""
    if not _LISTENING:
        jax.monitoring.register_event_time_span_listener(_SPANS)
        _LISTENING.append(True)


def _union_seconds(spans) -> float:
    """Total length of the union of intervals (nested traces of inner jits overlap their outer trace)."""
    total, end = 0.0, -math.inf
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


class Timing(NamedTuple):
    out: object
    wall: float  # seconds
    compile: float  # seconds of jit tracing / lowering / backend compilation inside ``wall``
    cpu: float  # process CPU seconds (all threads); cpu / wall near the core count = the cores were ours


def timed(fn, *args, **kwargs) -> Timing:
    """Run ``fn`` and block on its result."""
    _listen()
    previous, _SPANS.spans = _SPANS.spans, []
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        out = jax.block_until_ready(fn(*args, **kwargs))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        compile_s = _union_seconds(_SPANS.spans)
    finally:
        if previous is not None:
            previous.extend(_SPANS.spans)
        _SPANS.spans = previous
    return Timing(out, wall, compile_s, cpu)


def _say(progress, msg):
    if progress:
        print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- (0) + (a)
def train_flops_per_step(n: int, d: int, m: int, preset: str = "theory") -> int:
    """Analytic FLOPs of one full-batch step of one net (see the module docstring); the paper preset adds the
    momentum trace (2 per trained parameter) and the plateau schedule (a few scalars, not counted)."""
    extra = 2 * d * m + 2 * m if preset == "paper" else 0
    return 4 * n * d * m + 8 * n * m + 2 * d * m + 2 * m + 3 * n + extra


def _train_config(preset: str, steps: int) -> TrainConfig:
    make = TrainConfig.theory if preset == "theory" else TrainConfig.paper
    return make(lr=0.01, steps=steps, loss="identity", record_loss=False)


def _training_case(
    cfg: Config, x, y, width: int, seeds: int | None, solver: str = "autodiff", preset: str = "theory"
):
    """A zero-argument function running ``steps`` steps of ``preset`` at ``width`` (``seeds`` nets vmapped, or
    one), by backpropagation (``solver='autodiff'``) or in activation space (``'pattern'``, one net)."""
    net = models.TwoLayerConfig(width)
    apply_fn, mask = models.make_apply(net), models.trainable_mask(net)
    tcfg = _train_config(preset, cfg.steps)
    key = jax.random.PRNGKey(cfg.seed + width)
    if seeds is None:
        p0 = models.init_params(net, x.shape[1], key=key, dtype=x.dtype)
        if solver == "pattern":
            return lambda: pattern_gd.train(net, p0, x, y, lr=0.01, steps=cfg.steps, config=tcfg)
        return lambda: train(apply_fn, p0, x, y, tcfg, mask=mask).params
    keys = jax.random.split(key, seeds)
    p0 = jax.vmap(lambda k: models.init_params(net, x.shape[1], key=k, dtype=x.dtype))(keys)
    run = jax.jit(jax.vmap(lambda p: train(apply_fn, p, x, y, tcfg, mask=mask).params))
    return lambda: run(p0)


def bench_throughput(cfg: Config, progress: bool) -> tuple[float, dict, dict]:
    """Sections 0 and a, interleaved round by round; returns (peak GFLOP/s, matmul dict, training dict)."""
    do_matmul, do_train = "matmul" in cfg.sections, "training" in cfg.sections
    key = jax.random.PRNGKey(cfg.seed)
    matmul = jax.jit(lambda a, b: a @ b)
    mats = {}
    # the peak is the denominator of every training fraction and of the sweeps' peak bounds
    first_mm = {}
    if do_matmul or do_train or {"width_sweep", "paper_sweep", "paper_preset"} & set(cfg.sections):
        for n in cfg.matmul_sizes:
            ka, kb = jax.random.split(jax.random.fold_in(key, n))
            mats[n] = (jax.random.normal(ka, (n, n), jnp.float32), jax.random.normal(kb, (n, n), jnp.float32))
            first_mm[n] = timed(matmul, *mats[n])  # compile
    cases, first = {}, {}
    if do_train:
        kx, ky = jax.random.split(jax.random.fold_in(key, 1))
        x = jax.random.normal(kx, (cfg.train_n, cfg.d), jnp.float32)
        y = jax.random.rademacher(ky, (cfg.train_n,), dtype=jnp.float32)
        for preset in PRESETS:
            for m in cfg.train_widths:
                cases[(m, None, "autodiff", preset)] = _training_case(cfg, x, y, m, None, preset=preset)
                cases[(m, None, "pattern", preset)] = _training_case(cfg, x, y, m, None, "pattern", preset)
        for m in cfg.vmap_widths:
            cases[(m, cfg.vmap_seeds, "autodiff", "theory")] = _training_case(cfg, x, y, m, cfg.vmap_seeds)
        for case, fn in cases.items():
            first[case] = timed(fn)
            _say(
                progress,
                f"  training width {case[0]}{'' if case[1] is None else f' x{case[1]} seeds'} "
                f"({case[2]}, {case[3]} preset): first call {first[case].wall:.1f}s "
                f"({first[case].compile:.1f}s compile)",
            )
    mm_times = {n: [] for n in mats}
    tr_times = {c: [] for c in cases}
    tr_cpu = {c: [] for c in cases}
    for r in range(cfg.repeats):
        for n, (a, b) in mats.items():
            mm_times[n].append(timed(matmul, a, b).wall)
        for case, fn in cases.items():
            tm = timed(fn)
            tr_times[case].append(tm.wall)
            tr_cpu[case].append(tm.cpu)
        _say(progress, f"  throughput round {r + 1}/{cfg.repeats} done")

    mm = {
        f"n_{n}": {
            "gflops": 2 * n**3 / min(t) / 1e9,
            "best_s": min(t),
            "times_s": t,
            "cold_s": first_mm[n].wall,
            "compile_s": first_mm[n].compile,
        }
        for n, t in mm_times.items()
    }
    peak = max(v["gflops"] for v in mm.values()) if mm else math.nan
    training: dict = {
        "n": cfg.train_n,
        "d": cfg.d,
        "steps": cfg.steps,
        "loss": "identity",
        "preset": "theory",
        "flops_per_step": "4Ndm + 8Nm + 2dm + 2m + 3N (per net, backpropagated; the paper preset "
        "adds 2dm + 2m for the momentum trace)",
        "pattern": "pattern_gd.train, the same optimizer in activation space; pattern_speedup = "
        "autodiff best_s / pattern best_s",
        "cold": "cold_s: first call (compile included, compile_s of it); best_s: warm",
    }
    vmapped: dict = {}
    paper: dict = {"preset": "paper", "optimizer": "SGD, momentum 0.9, reduce-on-plateau (optax)"}
    for (m, seeds, solver, preset), t in tr_times.items():
        if solver == "pattern":
            continue
        nets = 1 if seeds is None else seeds
        flops = cfg.steps * nets * train_flops_per_step(cfg.train_n, cfg.d, m, preset)
        best = int(np.argmin(t))
        case = (m, seeds, solver, preset)
        entry = {
            "gflops": flops / t[best] / 1e9,
            "peak_fraction": flops / t[best] / 1e9 / peak,
            "best_s": t[best],
            "times_s": t,
            "flops": flops,
            "nets": nets,
            "cpu_utilization": tr_cpu[case][best] / t[best],
            "cold_s": first[case].wall,
            "compile_s": first[case].compile,
        }
        if seeds is None:
            pcase = (m, None, "pattern", preset)
            pattern_t = tr_times[pcase]
            entry.update(
                pattern_best_s=min(pattern_t),
                pattern_times_s=pattern_t,
                pattern_speedup=t[best] / min(pattern_t),
                pattern_cold_s=first[pcase].wall,
                pattern_compile_s=first[pcase].compile,
                pattern_equivalent_peak_fraction=flops / min(pattern_t) / 1e9 / peak,
            )
            (training if preset == "theory" else paper)[f"width_{m}"] = entry
        else:
            vmapped[f"width_{m}_seeds_{seeds}"] = entry
    if do_train:
        training["vmapped"] = vmapped
        big = [m for m in cfg.train_widths if m >= 1000]
        top = max(big) if big else max(cfg.train_widths)
        for part in (training, paper):
            part["peak_fraction"] = part[f"width_{top}"]["peak_fraction"]
            part["peak_fraction_width"] = top
            part["min_peak_fraction_width_ge_1000"] = (
                min(part[f"width_{m}"]["peak_fraction"] for m in big) if big else None
            )
        training["paper_preset"] = paper
    return peak, {"sizes": mm, "peak_gflops": peak}, training


# ------------------------------------------------------------------------------------------- (b)
_RUNNERS: dict = {}
LOOPS = {"loop": "autodiff", "loop_same_solver": "auto"}  # path -> the solver its per-cell trainings use


def _loop_runner(cfg_key: protocol.ProtocolConfig, solver: str = "autodiff"):
    """jit(finite_cell) for one batch key (width) and solver: eps, lr_f, lr_g and the key are traced
    arguments. One jitted function per (key, solver) for the whole process, so a width shared by both sweeps
    compiles once."""
    if (cfg_key, solver) not in _RUNNERS:
        _RUNNERS[(cfg_key, solver)] = jax.jit(partial(protocol.finite_cell, cfg_key, solver=solver))
    return _RUNNERS[(cfg_key, solver)]


def run_loop(cells, arrays, runner) -> list[dict]:
    """The baseline: every cell separately (f retrained per cell), one compiled function for the group."""
    x, y, z, y_test = arrays
    out = []
    for c, s in cells:
        res = runner(
            x,
            y,
            z,
            y_test,
            jax.random.PRNGKey(s),
            jnp.asarray(c.eps, x.dtype),
            jnp.asarray(c.lr_f, x.dtype),
            jnp.asarray(c.lr_g, x.dtype),
        )
        res = jax.block_until_ready(res)
        out.append({k: float(v) for k, v in res.items()})
    return out


def training_flops(cells) -> dict[str, int]:
    """Analytic FLOPs of the trainings alone (f and g, ``steps_f`` / ``steps_g`` full-batch GD steps each, see
    :func:`train_flops_per_step`) for the engine (f once per (width group, seed, lr_f), g per cell) and for
    the loop (f and g per cell)."""
    f_units = {(batch.protocol_batch_key(c), s, c.lr_f): c for c, s in cells}

    def one(c, steps):
        return steps * train_flops_per_step(c.data.n_train, c.data.d, c.width, c.preset)

    g = sum(one(c, c.steps_g) for c, _ in cells)
    return {
        "engine": sum(one(c, c.steps_f) for c in f_units.values()) + g,
        "loop": sum(one(c, c.steps_f) for c, _ in cells) + g,
    }


def _count_trainings(cells) -> tuple[int, int]:
    """(f trainings, g trainings) of the engine: f per (width group, seed, lr_f), g per cell."""
    f_units = {(batch.protocol_batch_key(c), s, c.lr_f) for c, s in cells}
    return len(f_units), len(cells)


def reuse_bound(cells) -> float:
    """Speedup from reuse alone when training dominates: (f + g trainings of the loop, 2 per cell) / (f + g
    trainings of the engine); (132 + 132) / (6 + 132) = 1.91 for the reference paper sweep."""
    return 2 * len(cells) / sum(_count_trainings(cells))


def bench_sweep(
    cfg: Config,
    grid: engine.Grid,
    name: str,
    progress: bool,
    peak_gflops: float = math.nan,
    same_solver_loop: bool | None = None,
) -> dict:
    """Engine vs loop on ``grid``, interleaved per width group (batch key), ``cfg.sweep_repeats`` rounds.
    ``peak_gflops`` (the measured matmul peak) turns the analytic training FLOPs into ``peak_bound``. The
    trainings follow ``grid.base.preset`` in every path (the loop backpropagates that preset's optimizer)."""
    same_solver_loop = cfg.same_solver_loop if same_solver_loop is None else same_solver_loop
    cells = grid.cells()
    arrays = data_arrays(grid.base.data)  # loaded (and cached) outside every timing
    jax.block_until_ready(arrays)
    groups: dict = {}
    for cell in cells:
        groups.setdefault(batch.protocol_batch_key(cell[0]), []).append(cell)
    paths = ("engine", "loop") + (("loop_same_solver",) if same_solver_loop else ())
    times = {(path, gi): [] for path in paths for gi in range(len(groups))}
    cpus = {k: [] for k in times}
    compiles = dict.fromkeys(times, 0.0)
    max_diff = 0.0
    with tempfile.TemporaryDirectory(prefix="ntk-adv-bench-") as tmp:
        store = ResultStore(Path(tmp) / name)
        for r in range(cfg.sweep_repeats):
            for gi, (key, group) in enumerate(groups.items()):
                shift = (gi + r) % len(paths)  # rotate the order between widths and rounds
                results = {}
                for path in paths[shift:] + paths[:shift]:
                    if path == "engine":
                        recs, wall, comp, cpu = timed(
                            batch.run_sweep,
                            group,
                            store,
                            force=True,
                            progress=False,
                            backend="inprocess",
                            kind=f"bench_{name}",
                        )
                        results[path] = [rec["metrics"] for rec in recs]
                    else:
                        runner = _loop_runner(key, LOOPS[path])
                        results[path], wall, comp, cpu = timed(run_loop, group, arrays, runner)
                    times[(path, gi)].append(wall)
                    cpus[(path, gi)].append(cpu)
                    if r == 0:
                        compiles[(path, gi)] = comp
                for path in paths[1:]:
                    for a, b in zip(results["engine"], results[path]):
                        max_diff = max(
                            max_diff,
                            max((abs(a[k] - b[k]) for k in a if math.isfinite(a[k] - b[k])), default=0.0),
                        )
                _say(
                    progress,
                    f"  {name} round {r + 1}: width {key.width} ({len(group)} cells): "
                    + ", ".join(f"{path} {times[(path, gi)][-1]:.1f}s" for path in paths),
                )

    def total(path, warm):
        out = 0.0
        for gi in range(len(groups)):
            t = times[(path, gi)]
            if not warm:
                out += t[0]
            elif len(t) >= 2:
                out += min(t[1:])
            else:
                out += max(t[0] - compiles[(path, gi)], 0.0)
        return out

    f_engine, g_engine = _count_trainings(cells)
    n_groups = range(len(groups))
    res = {
        "cells": len(cells),
        "groups": len(groups),
        "widths": [k.width for k in groups],
        "n_train": grid.base.data.n_train,
        "d": grid.base.data.d,
        "n_test": grid.base.data.n_test,
        "dataset": grid.base.data.name,
        "steps": grid.base.steps_f,
        "preset": grid.base.preset,
        "solvers": {"engine": "auto", **{p: LOOPS[p] for p in paths[1:]}},
        "warm_method": "best_of_later_rounds" if cfg.sweep_repeats >= 2 else "cold_minus_measured_compile",
        "rounds": cfg.sweep_repeats,
        "trainings": {"engine_f": f_engine, "engine_g": g_engine, "loop_f": len(cells), "loop_g": len(cells)},
        "reuse_bound": reuse_bound(cells),
        "max_abs_metric_diff": max_diff,
        "by_width": {
            str(k.width): {
                "cells": len(groups[k]),
                **{
                    f"{path}_{what}": v
                    for path in paths
                    for what, v in (
                        ("s", [round(t, 4) for t in times[(path, gi)]]),
                        ("cpu_s", [round(t, 4) for t in cpus[(path, gi)]]),
                        ("compile_s", compiles[(path, gi)]),
                    )
                },
            }
            for gi, k in enumerate(groups)
        },
    }
    for path in paths:
        res.update(
            {
                f"{path}_s": total(path, True),
                f"{path}_cold_s": total(path, False),
                f"{path}_cold_cpu_s": sum(cpus[(path, gi)][0] for gi in n_groups),
                f"{path}_compile_s": sum(compiles[(path, gi)] for gi in n_groups),
            }
        )

    def ratio(num, den):  # nan (null in bench.json) if a compile-free time could not be resolved
        return num / den if min(num, den) > 0 else math.nan

    res["speedup"] = ratio(res["loop_s"], res["engine_s"])
    res["speedup_cold"] = ratio(res["loop_cold_s"], res["engine_cold_s"])
    if same_solver_loop:
        res["speedup_same_solver"] = ratio(res["loop_same_solver_s"], res["engine_s"])
        res["solver_speedup_per_cell"] = ratio(res["loop_s"], res["loop_same_solver_s"])
    flops = training_flops(cells)
    floor = flops["engine"] / (peak_gflops * 1e9)  # nan without a peak
    res["training_tflop"] = {k: v / 1e12 for k, v in flops.items()}
    res["engine_floor_s"] = floor
    res["peak_bound"] = ratio(res["loop_s"], floor)
    res["loop_peak_fraction"] = ratio(flops["loop"] / 1e9 / peak_gflops, res["loop_s"])
    res["engine_equivalent_peak_fraction"] = ratio(flops["engine"] / 1e9 / peak_gflops, res["engine_s"])
    return res


# ------------------------------------------------------------------------------------------- (c)
_CHILD = textwrap.dedent(f"""
    import json, sys
    from {__name__} import infinite_child
    print("BENCH-RESULT " + json.dumps(infinite_child(**json.loads(sys.argv[1]))), flush=True)
""")


def _rss_mb() -> float:
    """Peak resident set of this process in MB: VmHWM of /proc/self/status (Linux). ``ru_maxrss`` is only the
    fallback: after fork + exec it starts at the *parent's* resident set (Linux carries the high-water mark
    over exec), so a child spawned by a big benchmark process would report the parent's memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (
        1024.0 if sys.platform != "darwin" else 2**20
    )


def infinite_child(n: int, n_test: int, d: int, repeats: int, seed: int) -> dict:
    """Runs in the subprocess: the jitted infinite-width protocol on gauss data (see the module docstring)."""
    t0 = time.perf_counter()
    cfg = protocol.ProtocolConfig(
        data=DataSpec("gauss", n_train=n, n_test=n_test, d=d, seed=seed),
        arch=TwoLayerConfig(INF_WIDTH),
        loss="identity",
        preset="theory",
        eps=0.14,
    )
    arrays = jax.block_until_ready(data_arrays(cfg.data))
    data_s = time.perf_counter() - t0
    base_rss = _rss_mb()
    run = jax.jit(protocol.infinite_cell, static_argnums=0)
    key = jax.random.PRNGKey(seed)
    out, cold, comp, _ = timed(run, cfg, *arrays, key)
    warm = [timed(run, cfg, *arrays, key).wall for _ in range(repeats)]
    return {
        "seconds": cold,
        "compile_s": comp,
        "seconds_warm": min(warm) if warm else math.nan,
        "times_warm_s": warm,
        "data_s": data_s,
        "baseline_rss_mb": base_rss,
        "peak_rss_mb": _rss_mb(),
        "peak_rss_delta_mb": _rss_mb() - base_rss,
        "agreement": float(out["agreement"]),
    }


def bench_infinite(cfg: Config, progress: bool) -> dict:
    """Section c in a fresh Python process (clean peak RSS)."""
    args = {
        "n": cfg.infinite_n,
        "n_test": cfg.infinite_n_test,
        "d": cfg.d,
        "repeats": cfg.infinite_repeats,
        "seed": cfg.seed,
    }
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True, env=env, cwd=root
    )
    total = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"infinite-width benchmark subprocess failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    res = json.loads(lines[-1].removeprefix("BENCH-RESULT "))
    res.update(
        n_train=cfg.infinite_n,
        n_test=cfg.infinite_n_test,
        d=cfg.d,
        subprocess_total_s=total,
        stages="protocol.infinite_cell: infinite_f, adversarial_set (one_step_l2), infinite_g, evaluate",
    )
    _say(
        progress,
        f"  infinite N={cfg.infinite_n}: {res['seconds']:.1f}s cold ({res['compile_s']:.1f}s compile), "
        f"peak RSS {res['peak_rss_mb']:.0f} MB",
    )
    return res


# ------------------------------------------------------------------------------------------- kernels
def _kernel_cases(cfg: Config) -> dict:
    """(architecture, x1 shape) of each timed case (x2 = x1: the kernel of a training set with itself)."""
    from ntk_adv.arch import CNN, FC, INF_WIDTH

    return {
        "fc": (FC(width=INF_WIDTH, depth=cfg.kernels_fc_depth), (cfg.kernels_fc_n, cfg.kernels_fc_d)),
        "cnn_flatten": (CNN(width=INF_WIDTH, depth=3, readout="flatten"), (cfg.kernels_cnn_n, 32, 32, 3)),
        "cnn_pool": (
            CNN(width=INF_WIDTH, depth=3, readout="flatten", pool=True),
            (cfg.kernels_pool_n, 8, 8, 3),
        ),
    }


def _stax_kernel(arch):
    """neural-tangents' jitted NTK function of ``arch`` (an FC or CNN at infinite width, NTK
    parametrization), or None where neural-tangents does not import."""
    from ntk_adv import kernels

    try:
        stax = kernels.neural_tangents().stax
    except kernels.OracleMissing:
        return None
    act = stax.Erf() if arch.activation == "erf" else stax.LeakyRelu(arch.gamma)
    hidden = dict(W_std=arch.w_std, b_std=arch.b_std if arch.bias else None)
    layers = []
    if arch.name == "fc":
        for _ in range(arch.depth - 1):
            layers += [stax.Dense(1, **hidden), act]
    else:
        for _ in range(arch.depth):
            layers += [stax.Conv(1, arch.filter_shape, padding="SAME", **hidden), act]
            if arch.pool:
                layers.append(stax.AvgPool((2, 2), strides=(2, 2)))
        layers.append(stax.Flatten() if arch.readout == "flatten" else stax.GlobalAvgPool())
    layers.append(stax.Dense(1, W_std=arch.w_std, b_std=None))
    kernel_fn = stax.serial(*layers)[2]
    return jax.jit(lambda x1, x2: kernel_fn(x1, x2, "ntk"))


def bench_kernels(cfg: Config, progress: bool) -> dict:
    """Section e (see the module docstring)."""
    from ntk_adv.arch import FC, INF_WIDTH, blockwise

    rng = np.random.default_rng(cfg.seed)
    res: dict = {}
    for name, (arch, shape) in _kernel_cases(cfg).items():
        x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        ours = jax.jit(lambda a, b, arch=arch: arch.kernel(a, b, "ntk"))
        theirs = _stax_kernel(arch)
        runners = {"ours": ours} if theirs is None else {"ours": ours, "nt": theirs}
        cold = {k: timed(fn, x, x) for k, fn in runners.items()}
        warm: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(cfg.repeats):  # interleaved, so that a background load hits both alike
            for k, fn in runners.items():
                warm[k].append(timed(fn, x, x).wall)
        entry = {
            "arch": arch.describe(),
            "x_shape": list(shape),
            "entries": shape[0] ** 2,
            "neural_tangents": theirs is not None,
        }
        for k in runners:
            entry[f"{k}_s"] = min(warm[k])
            entry[f"{k}_cold_s"] = cold[k].wall
        if theirs is not None:
            entry["ratio"] = entry["nt_s"] / entry["ours_s"]
            diff = np.asarray(cold["ours"].out, np.float64) - np.asarray(cold["nt"].out, np.float64)
            entry["max_rel_diff"] = float(np.max(np.abs(diff)) / np.max(np.abs(np.asarray(cold["nt"].out))))
        else:
            entry["ratio"] = None
        res[name] = entry
        ratio = "n/a (neural-tangents absent)" if entry["ratio"] is None else f"{entry['ratio']:.2f}x"
        _say(progress, f"  kernels {name} {shape}: ours {entry['ours_s']:.3f}s, nt/ours {ratio}")
    # the MNIST-train-sized kernel, blockwise into one preallocated float32 array
    arch = FC(width=INF_WIDTH, depth=cfg.kernels_mnist_depth)
    x = rng.standard_normal((cfg.kernels_mnist_points, 784)).astype(np.float32)
    base_rss = _rss_mb()
    shape = (cfg.kernels_mnist_points, cfg.kernels_mnist_points)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if (
            cfg.kernels_mnist_memmap
        ):  # on a shared machine: page cache the OS can write back, not anonymous RAM
            out = np.lib.format.open_memmap(Path(tmp) / "k.npy", mode="w+", dtype=np.float32, shape=shape)
        else:
            out = np.empty(shape, np.float32)
        blockwise(lambda a, b: arch.kernel(a, b, "ntk"), x, block=cfg.kernels_block, out=out)
        seconds = time.perf_counter() - t0
        finite = bool(np.isfinite(out[:: max(1, cfg.kernels_mnist_points // 97)]).all())
        symmetric = bool(np.array_equal(out[:5, -5:], out[-5:, :5].T))
        nbytes = out.nbytes
        del out
    res["mnist_blockwise"] = {
        "arch": arch.describe(),
        "n": cfg.kernels_mnist_points,
        "d": 784,
        "block": cfg.kernels_block,
        "seconds": seconds,
        "result_gb": nbytes / 1e9,
        "memmap": cfg.kernels_mnist_memmap,
        "finite": finite,
        "symmetric": symmetric,
        "baseline_rss_mb": base_rss,
        "peak_rss_mb": _rss_mb(),
    }
    _say(progress, f"  kernels mnist_blockwise {cfg.kernels_mnist_points} x 784: {seconds:.1f}s")
    return res


# ------------------------------------------------------------------------------------------- main
def _target(value, threshold, kind: str, what: str) -> dict:
    ok = (
        None
        if value is None or not math.isfinite(value)
        else (value >= threshold if kind == ">=" else value < threshold)
    )
    return {"target": f"{kind} {threshold}", "what": what, "value": value, "met": ok}


def bench_panel(cfg: Config, out: Path) -> dict:
    """One reproduction panel end to end, twice in one process: cold (compiles included, empty store) and warm
    (``force``: every cell recomputed with the compiled functions); the cells and which solver trained
    them."""
    import shutil

    from . import reproduce

    rcfg = reproduce.Config(
        panel=cfg.panel,
        seeds=cfg.panel_seeds,
        values=tuple(cfg.panel_values),
        n_train=cfg.panel_n_train,
        n_test=cfg.panel_n_test,
        d=cfg.panel_d,
        width=cfg.panel_width,
        steps=cfg.panel_steps,
    )
    shutil.rmtree(out, ignore_errors=True)
    times = []
    for force in (False, True):
        t0 = time.perf_counter()
        summary = reproduce.main(replace(rcfg, run=replace(rcfg.run, force=force)), out, progress=False)
        times.append(time.perf_counter() - t0)
    pcfg = summary.get("settings", {})
    return {
        "panel": cfg.panel,
        "seeds": cfg.panel_seeds,
        "points": len(summary.get("points", [])),
        "cold_s": times[0],
        "warm_s": times[1],
        "settings": pcfg,
        "solver": rcfg.solver,
    }


def main(cfg: Config = Config(), out: str | Path = "runs/bench", *, progress: bool = True) -> dict:
    """Run the selected sections, write ``out/bench.json``, print a table; returns the result dict."""
    cfg = cfg.resolved()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    res: dict = {
        "experiment": COMMAND,
        "config": asdict(cfg),
        **provenance(),
        "devices": str(jax.devices()),
        "cpu_count": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
    }
    peak = math.nan
    if {"matmul", "training", "width_sweep", "paper_sweep", "paper_preset"} & set(cfg.sections):
        _say(
            progress,
            "bench: matmul peak" + (" and training throughput" if "training" in cfg.sections else ""),
        )
        peak, mm, training = bench_throughput(cfg, progress)
        res["matmul_peak_gflops"], res["matmul"] = peak, mm
        if "training" in cfg.sections:
            res["training"] = training
    for section, grid_fn in (("width_sweep", cfg.width_grid), ("paper_sweep", cfg.paper_grid)):
        if section in cfg.sections:
            _say(progress, f"bench: {section}")
            res[section] = bench_sweep(cfg, grid_fn(), section, progress, peak)
    if "paper_preset" in cfg.sections:
        res["paper_preset"] = {}
        for section, grid_fn in (("width_sweep", cfg.width_grid), ("paper_sweep", cfg.paper_grid)):
            _say(progress, f"bench: paper_preset.{section} (momentum 0.9 + reduce-on-plateau)")
            res["paper_preset"][section] = bench_sweep(
                cfg, grid_fn("paper"), f"paper_preset_{section}", progress, peak, cfg.paper_same_solver_loop
            )
    if "infinite" in cfg.sections:
        _say(progress, f"bench: infinite-width agreement, N = {cfg.infinite_n}")
        res["infinite_agreement"] = bench_infinite(cfg, progress)
    if "reproduction_panel" in cfg.sections:
        _say(progress, f"bench: reproduction panel {cfg.panel} end to end ({cfg.panel_seeds} seeds)")
        res["reproduction_panel"] = bench_panel(cfg, out / "panel")
    if "kernels" in cfg.sections:
        _say(
            progress, "bench: deep and convolutional kernels (ours vs neural-tangents), MNIST-sized blockwise"
        )
        res["kernels"] = bench_kernels(cfg, progress)

    targets = {}
    if "training" in res:
        targets["training_peak_fraction"] = _target(
            res["training"]["min_peak_fraction_width_ge_1000"],
            TARGETS["training_peak_fraction"],
            ">=",
            "min over widths >= 1000 of training GFLOP/s / matmul peak",
        )
    for section in ("width_sweep", "paper_sweep"):
        if section in res:
            targets[f"{section}_speedup"] = _target(
                res[section]["speedup"],
                TARGETS[f"{section}_speedup"],
                ">=",
                f"{section}: loop_s / engine_s (compile excluded)",
            )
        if section in res.get("paper_preset", {}):
            targets[f"paper_preset_{section}_speedup"] = _target(
                res["paper_preset"][section]["speedup"],
                TARGETS[f"paper_preset_{section}_speedup"],
                ">=",
                f"paper_preset.{section}: loop_s / engine_s (compile excluded), both with momentum + plateau",
            )
    if "infinite_agreement" in res:
        targets["infinite_seconds"] = _target(
            res["infinite_agreement"]["seconds"],
            TARGETS["infinite_seconds"],
            "<",
            f"infinite_cell at N={cfg.infinite_n}, cold (compile included)",
        )
    for name, entry in res.get("kernels", {}).items():
        if entry.get("ratio") is not None:  # only where neural-tangents ran alongside
            targets[f"kernels_{name}_ratio"] = _target(
                entry["ratio"], TARGETS["kernels_ratio"], ">=", f"kernels.{name}: nt_s / ours_s (warm)"
            )
    res["targets"] = targets
    default = Config()
    res["reference_sizes"] = (
        replace(
            cfg,
            sections=SECTIONS,
            repeats=default.repeats,
            sweep_repeats=default.sweep_repeats,
            infinite_repeats=default.infinite_repeats,
        )
        == default
    )
    res["loadavg_end"] = list(os.getloadavg())
    res["total_s"] = time.perf_counter() - t_start
    write_json(res, out / "bench.json")
    print(table(res))
    return res


def table(res: dict) -> str:
    """A plain-text summary of a bench.json dict."""
    lines = [
        f"ntk-adv bench (jax {res['jax']}, git {res['git_rev'][:10]}, load {res['loadavg_start'][0]:.1f})"
    ]
    if "matmul_peak_gflops" in res:
        sizes = ", ".join(f"{k[2:]}: {v['gflops']:.0f}" for k, v in res["matmul"]["sizes"].items())
        lines.append(f"  matmul peak            {res['matmul_peak_gflops']:8.1f} GFLOP/s   ({sizes})")
    if "training" in res:
        tr = res["training"]
        for k, v in tr.items():
            if k.startswith("width_"):
                lines.append(
                    f"  training {k:<13} {v['gflops']:8.1f} GFLOP/s   {v['peak_fraction']:6.1%} of peak"
                    f"  ({v['best_s']:.3f}s / {tr['steps']} steps; activation-space solver "
                    f"{v['pattern_best_s']:.3f}s, {v['pattern_speedup']:.2f}x)"
                )
        for k, v in tr["paper_preset"].items():
            if k.startswith("width_"):
                lines.append(
                    f"  paper-preset {k:<9} {v['gflops']:8.1f} GFLOP/s   {v['peak_fraction']:6.1%} of peak"
                    f"  ({v['best_s']:.3f}s warm, {v['cold_s']:.1f}s cold; activation-space solver "
                    f"{v['pattern_best_s']:.3f}s, {v['pattern_speedup']:.2f}x, "
                    f"{v['pattern_equivalent_peak_fraction']:.0%} of peak backprop-equivalent)"
                )
        for k, v in tr["vmapped"].items():
            lines.append(
                f"  vmapped {k:<14} {v['gflops']:8.1f} GFLOP/s   {v['peak_fraction']:6.1%} of peak"
                f"  ({v['best_s']:.3f}s)"
            )
    sweeps_run = [(k, res[k]) for k in ("width_sweep", "paper_sweep") if k in res]
    sweeps_run += [(f"paper preset {k}", v) for k, v in res.get("paper_preset", {}).items()]
    if sweeps_run:
        lines.append("  sweeps: warm times (compile excluded), cold = first round with compile")
    for section, s in sweeps_run:
        lines.append(
            f"  {section:<12} {s['cells']:4d} cells: engine {s['engine_s']:7.1f}s (cold "
            f"{s['engine_cold_s']:.1f}s)  loop {s['loop_s']:7.1f}s (cold {s['loop_cold_s']:.1f}s)"
            f"  speedup {s['speedup']:5.2f}x (cold {s['speedup_cold']:.2f}x, reuse bound "
            f"{s['reuse_bound']:.2f}x; compile engine {s['engine_compile_s']:.1f}s, loop "
            f"{s['loop_compile_s']:.1f}s)"
        )
        if "speedup_same_solver" in s:
            lines.append(
                f"  {'':<12} per-cell loop with the engine's solver {s['loop_same_solver_s']:7.1f}s: "
                f"reuse + batching {s['speedup_same_solver']:.2f}x, solver "
                f"{s['solver_speedup_per_cell']:.2f}x"
            )
        lines.append(
            f"  {'':<12} backpropagated trainings {s['training_tflop']['engine']:.1f} TFLOP engine, "
            f"{s['training_tflop']['loop']:.1f} loop: backpropagating at the matmul peak the engine would "
            f"need >= {s['engine_floor_s']:.1f}s (speedup <= {s['peak_bound']:.2f}x); loop at "
            f"{s['loop_peak_fraction']:.0%} of peak, engine at {s['engine_equivalent_peak_fraction']:.0%} "
            f"(backprop-equivalent)"
        )
    if "infinite_agreement" in res:
        a = res["infinite_agreement"]
        lines.append(
            f"  infinite N={a['n_train']:<6}     {a['seconds']:7.1f}s cold ({a['compile_s']:.1f}s compile), "
            f"{a['seconds_warm']:.1f}s warm, peak RSS {a['peak_rss_mb']:.0f} MB "
            f"(+{a['peak_rss_delta_mb']:.0f} MB)"
        )
    if "reproduction_panel" in res:
        p = res["reproduction_panel"]
        lines.append(
            f"  panel {p['panel']:<17} {p['cold_s']:7.1f}s cold, {p['warm_s']:.1f}s warm "
            f"({p['points']} points x {p['seeds']} seeds, lr grid, solver {p['solver']})"
        )
    for name, k in res.get("kernels", {}).items():
        if "ratio" in k:
            nt = "neural-tangents absent" if k["ratio"] is None else f"nt {k['nt_s']:.3f}s, {k['ratio']:.2f}x"
            lines.append(f"  kernels {name:<14} ours {k['ours_s']:8.3f}s  ({nt}; {k['x_shape']})")
        else:
            lines.append(
                f"  kernels {name:<14} {k['seconds']:8.1f}s  ({k['n']} x {k['d']}, {k['result_gb']:.1f} GB "
                f"float32, peak RSS {k['peak_rss_mb']:.0f} MB)"
            )
    for name, t in res["targets"].items():
        val = "n/a" if t["value"] is None else f"{t['value']:.3g}"
        lines.append(
            f"  target {name:<24} {t['target']:<8} value {val:<8} "
            f"{'MET' if t['met'] else ('not met' if t['met'] is False else 'n/a')}"
        )
    return "\n".join(lines)
