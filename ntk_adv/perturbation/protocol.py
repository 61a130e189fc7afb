"""Perturbation learning (Ilyas et al. 2019; Kumano, Kera, Yamasaki 2024): train f on clean data, perturb
training (or noise) points toward target labels against f, train a fresh g only on the mislabeled adversarial
set, and measure how closely g agrees with f - at finite width and in the infinite-width limit, for any
:class:`~ntk_adv.arch.Architecture` (``cfg.arch``).

Stages (pure functions, reused by the sweep engine so that f is trained once per (data, arch, seed, lr_f)
and perturbations once per (f, attack, eps, targets)):

    train_f      -> params of f (finite)            | infinite_f  -> KernelPredictor f_inf (centred)
    adversarial_set(predict_f, ...) -> AdvSet       (same function at both widths: attacks differentiate any
                                                     predictor, the infinite one through the kernel)
    train_g      -> params of g (fresh init)        | infinite_g  -> KernelPredictor g_inf (centred)
    evaluate     -> dict of scalar metrics per seed

Widths: ``cfg.arch.width`` finite trains nets with the one optax loop (:func:`ntk_adv.training.train`, the
architecture's ``apply`` and ``trainable_mask``; the two-layer net's activation-space solver
:mod:`ntk_adv.pattern_gd` where it applies); ``cfg.arch.width == INF_WIDTH`` runs only the infinite-width
limit, with the architecture's NTK (``arch.kernel(x1, x2, "ntk")``) in the kernel predictors of
:mod:`ntk_adv.limits` (closed form for the identity loss, kernel gradient descent otherwise).

Inputs: data are (N, d) vectors throughout the protocol (attacks, norms, noise); an architecture that takes
images (:data:`IMAGE_ARCHS`, the CNN) sees them as (N, H, W, C) through :class:`ArchFns`, which reshapes at
the boundary from the data set's known image shape (:data:`IMAGE_SHAPES`: digits 8x8x1, mnist and fmnist
28x28x1, cifar10 32x32x3 stored channel-first). L2 and L-inf radii are the same on either shape.

Two-layer capabilities: the decomposition of the limit g = g_0 + B + S, the predicted agreement over g's
initial function, the predicted directions D_n and cosine, and the coefficients of what g learned on B and S
are closed forms of the two-layer net (:func:`decomposes`); for other architectures those metrics are absent
(the experiment then says "no prediction for <arch>").

Scenarios: ``a`` x_adv = eta (perturbation alone); ``b`` x_adv = x + eta; ``noise`` x_adv = noise + eta
(ICLR 2024), where noise is uniform or Gaussian with the data's root-mean-square coordinate scale.
Targets: ``random`` (uniform in {-1,+1}, independent of y), ``balanced`` (exactly floor(N/2) of each sign
plus, for odd N, one more +1, in random order: mean(y_adv) = 0, or 1/N) or ``deterministic`` (y_adv = -y).

Randomness (docs/architecture.md, "Seeds"): seed ``s`` is the key :func:`seed_key` = ``PRNGKey(s)``, in a
sweep cell and in :func:`run_seeds` alike; it is split into named streams (f init, targets, noise, g init,
attack) by :func:`stream`.

Results are long-format rows (:meth:`ntk_adv.store.ResultStore.rows`): one row per (cell, seed, metric) with
the config columns (the architecture's fields as ``width``, ``gamma``, ..., plus ``arch`` and ``depth``) and
``metric``, ``value``. **Infinite-width rows carry ``width = math.inf``** (:data:`ntk_adv.arch.INF_WIDTH`; a
CSV stores it as ``inf`` and :func:`ntk_adv.results.read_csv` reads it back as the float ``inf``).

Decision maps: :func:`class_mean_plane` picks the plane spanned by the two class means, :func:`decision_grid`
evaluates any predictors on an n x n grid in it (``plots.decision_map`` draws the result).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from typing import Any, ClassVar, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ntk_adv import attacks, kernels, limits, models, pattern_gd, validate
from ntk_adv.arch.base import INF_WIDTH, Architecture
from ntk_adv.attacks import AttackName
from ntk_adv.data import DataSpec
from ntk_adv.losses import Loss
from ntk_adv.metrics import accuracy, agreement, mean_abs_cosine, relative_gap
from ntk_adv.training import TrainConfig, centered, effective_time, train

Scenario = Literal["a", "b", "noise"]
Targets = Literal["random", "deterministic", "balanced"]
NoiseKind = Literal["uniform", "gaussian"]
Preset = Literal["theory", "paper"]
SCENARIOS: tuple[str, ...] = get_args(Scenario)
TARGET_MODES: tuple[str, ...] = get_args(Targets)
NOISE_KINDS: tuple[str, ...] = get_args(NoiseKind)
PRESETS: tuple[str, ...] = get_args(Preset)
STREAMS = {"f_init": 0, "targets": 1, "noise": 2, "g_init": 3, "attack": 4, "g0_draws": 5}
MC_DRAWS = 32  # GP draws of g_0 for the predicted agreement off the identity loss
# Data sets whose rows are images, and the image each row holds: (H, W, C) and the stored layout of the row
IMAGE_SHAPES: dict[str, tuple[tuple[int, int, int], str]] = {
    "digits": ((8, 8, 1), "hwc"),
    "mnist": ((28, 28, 1), "hwc"),
    "fmnist": ((28, 28, 1), "hwc"),
    "cifar10": ((32, 32, 3), "chw"),  # CIFAR-10 rows are stored channel-first
}
IMAGE_ARCHS = ("cnn",)  # architectures (by name) whose inputs are images (N, H, W, C)


def default_arch() -> models.TwoLayerConfig:
    """The protocol's default net: two layers, width 100, standard parametrization, ReLU (gamma 0), bias."""
    return models.TwoLayerConfig(100, parametrization="standard", gamma=0.0, bias=True)


def decomposes(arch: Architecture) -> bool:
    """Whether the two-layer analysis applies (its closed forms: g = g_0 + B + S, the predicted agreement
    and cosine, D_n, the coefficients on B and S): the two-layer net with its first layer trained."""
    return isinstance(arch, models.TwoLayerConfig) and not arch.train_readout and arch.init_scale == 1.0


@dataclass(frozen=True)
class ProtocolConfig:
    """One cell of perturbation learning on the network ``arch`` (an :class:`~ntk_adv.arch.Architecture`,
    default :func:`default_arch`); ``arch.width == INF_WIDTH`` runs only the infinite-width limit.

    ``eps`` is the attack radius (L2 for one_step_l2/fgm/pgd_l2, L-inf for fgsm/pgd_linf, step for l0;
    unused by lbfgs, whose size is set by ``attack_c``); ``eps = 0`` gives zero perturbations for every attack
    but lbfgs. ``attack_steps``/``attack_step_size`` (default eps/4) for PGD, ``attack_k`` for L0,
    ``attack_c`` for L-BFGS; the attack parameters are validated at construction.
    Training: ``preset`` 'theory' (full-batch GD, t = lr * steps) or 'paper' (momentum 0.9 + plateau).
    ``centered``: finite nets are trained and evaluated as f(x; theta) - f(x; theta_0), which removes the O(1)
    random initial function (docs/theory.md); their infinite-width limit is then the centred predictor
    itself.

    The architecture's fields are reached through it (``cfg.arch.width``); :meth:`with_` and sweep axes
    (:data:`ARCH_AXES`) also take them by their short names (``width``, ``depth``, ``gamma``, ...)."""

    ARCH_AXES: ClassVar[str] = "arch"  # the field that sweep axes not found on the config are looked up in

    data: DataSpec = field(default_factory=DataSpec)
    arch: Architecture = field(default_factory=default_arch)
    loss: Loss = "identity"
    preset: Preset = "theory"
    lr_f: float = 0.01
    steps_f: int = 100
    lr_g: float = 0.01
    steps_g: int = 100
    scenario: Scenario = "a"
    noise: NoiseKind = "uniform"
    attack: AttackName = "one_step_l2"
    eps: float = 1.0
    attack_steps: int = 10
    attack_step_size: float | None = None
    attack_k: int = 10
    attack_c: float = 0.1
    targets: Targets = "random"
    centered: bool = False

    def __post_init__(self):
        if not isinstance(self.arch, Architecture):
            raise ValueError(
                f"arch must be an ntk_adv.arch.Architecture (e.g. TwoLayerConfig(100)), got "
                f"{type(self.arch).__name__}; infinite width is arch.width = ntk_adv.INF_WIDTH"
            )
        if self.arch.n_out != 1:
            raise ValueError(f"perturbation learning is binary: arch.n_out must be 1, got {self.arch.n_out}")
        validate.check_choices(self)  # scenario, targets, noise, preset, loss
        validate.one_of("attack", self.attack, attacks.ATTACKS)
        if not np.isfinite(self.eps) or self.eps < 0:
            raise ValueError(f"eps must be finite and >= 0, got {self.eps}")
        self.train_config("f")
        self.train_config("g")
        attack_fn(self, self.eps if self.eps > 0 else 1.0)  # validates the attack parameters (eps = 0 too)

    @property
    def infinite(self) -> bool:
        """Whether this cell is the infinite-width limit (``arch.width == INF_WIDTH``)."""
        return self.arch.infinite

    @property
    def width(self):
        """The architecture's width (an int, or :data:`INF_WIDTH`); read-only: set it with :meth:`with_`."""
        return self.arch.width

    def net(self) -> Architecture:
        """The finite architecture (refuses INF_WIDTH, naming it)."""
        self.arch._finite("a trained net")
        return self.arch

    def train_config(self, which: str) -> TrainConfig:
        lr, steps = (self.lr_f, self.steps_f) if which == "f" else (self.lr_g, self.steps_g)
        make = TrainConfig.theory if self.preset == "theory" else TrainConfig.paper
        return make(lr=lr, steps=steps, loss=self.loss, record_loss=False)

    def limit_time(self, which: str, lr=None):
        """tau of the lazy limit for f or g (:func:`ntk_adv.training.effective_time`): lr * steps under the
        theory preset, the heavy-ball effective time under the paper preset. ``lr`` may be traced."""
        return effective_time(self.train_config(which), lr)

    def limit_not_applicable(self) -> str:
        """Why the infinite-width objects are no prediction for the finite nets of this config ('' if they
        are): the paper preset's momentum has an exact effective time only for the identity loss."""
        if self.preset == "paper" and self.loss != "identity":
            return (
                f"paper preset with the {self.loss} loss: heavy-ball momentum has no exact effective time "
                f"off the identity loss, so the limit objects use t = lr * steps and are not the nets' limit"
            )
        return ""

    def kernel(self) -> kernels.KernelFn:
        """The infinite-width NTK of ``arch`` (its trained parameters, its parametrization) on flat inputs
        (N, d) x (M, d) -> (N, M): ``arch.with_width(INF_WIDTH).kernel(x1, x2, 'ntk')``."""
        return arch_fns(self.arch.with_width(INF_WIDTH), self.data.name).kernel

    def with_(self, **changes) -> ProtocolConfig:
        """``replace`` with ``changes``; names that are not fields of the config but of ``arch`` (``width``,
        ``depth``, ``gamma``, ``bias``, ...) change the architecture."""
        own = {f.name for f in fields(self)}
        arch_changes = {k: changes.pop(k) for k in list(changes) if k not in own}
        cfg = replace(self, **changes) if changes else self
        if arch_changes:
            arch_fields = {f.name for f in fields(cfg.arch)}
            unknown = sorted(set(arch_changes) - arch_fields)
            if unknown:
                raise ValueError(
                    f"unknown field {unknown[0]!r}: not a field of ProtocolConfig nor of "
                    f"{type(cfg.arch).__name__} ({', '.join(sorted(arch_fields))})"
                )
            cfg = replace(cfg, arch=replace(cfg.arch, **arch_changes))
        return cfg


@dataclass(frozen=True)
class ArchFns:
    """An architecture on the protocol's flat inputs x (N, d): ``apply(params, x) -> (N,)`` and
    ``kernel(x1, x2) -> (N1, N2)`` reshape x to ``(N, *input_shape)`` (an image (H, W, C) for
    :data:`IMAGE_ARCHS`, else (d,)) and call ``arch``. Frozen and hashable: its bound methods are stable jit
    keys."""

    arch: Architecture
    image: tuple[int, ...] | None = None  # (H, W, C), or None: the architecture takes the flat rows
    layout: str = "hwc"

    def inputs(self, x):
        """x (N, d) -> (N, *input_shape)."""
        if self.image is None:
            return x
        h, w, c = self.image
        if self.layout == "chw":
            return jnp.transpose(jnp.reshape(x, (x.shape[0], c, h, w)), (0, 2, 3, 1))
        return jnp.reshape(x, (x.shape[0], h, w, c))

    def input_shape(self, d: int) -> tuple[int, ...]:
        return (d,) if self.image is None else tuple(self.image)

    def apply(self, params, x):
        return self.arch.apply(params, self.inputs(x))

    def kernel(self, x1, x2):
        return self.arch.kernel(self.inputs(x1), self.inputs(x2), "ntk")

    def nngp(self, x1, x2):
        return self.arch.kernel(self.inputs(x1), self.inputs(x2), "nngp")

    def preactivations(self, params, x):
        return self.arch.preactivations(params, self.inputs(x))


@cache
def arch_fns(arch: Architecture, dataset: str) -> ArchFns:
    """The :class:`ArchFns` of ``arch`` on data set ``dataset`` (images for :data:`IMAGE_ARCHS`: a data set
    of :data:`IMAGE_SHAPES`, else a one-line ValueError naming both)."""
    if arch.name not in IMAGE_ARCHS:
        return ArchFns(arch)
    if dataset not in IMAGE_SHAPES:
        raise ValueError(
            f"--arch {arch.name} takes images, but dataset {dataset!r} has no image shape; use one of "
            f"{', '.join(IMAGE_SHAPES)}"
        )
    shape, layout = IMAGE_SHAPES[dataset]
    return ArchFns(arch, shape, layout)


@struct.dataclass
class AdvSet:
    """The adversarial training set: x_adv (N, d), y_adv (N,), the perturbations eta (N, d) and the points
    they were computed at (base: x_train, or noise) (N, d)."""

    x_adv: jax.Array
    y_adv: jax.Array
    eta: jax.Array
    base: jax.Array


def seed_key(seed) -> jax.Array:
    """The root key of seed ``seed``: ``jax.random.PRNGKey(seed)`` - the one rule, used by a sweep cell
    (:func:`ntk_adv.perturbation.batch.cell_key`) and by :func:`run_seeds` alike (docs/architecture.md,
    "Seeds"). Traceable and vmappable over seeds."""
    return jax.random.PRNGKey(seed)


def stream(key: jax.Array, name: str) -> jax.Array:
    """Independent key for a named randomness stream of a cell."""
    return jax.random.fold_in(key, STREAMS[name])


# ------------------------------------------------------------------------------------------- stages
def _fns(cfg: ProtocolConfig) -> ArchFns:
    return arch_fns(cfg.arch, cfg.data.name)


def _plain_apply(cfg: ProtocolConfig):
    """``apply_fn(params, x (N, d)) -> (N,)`` of the finite net (the two-layer net's cached
    :func:`ntk_adv.models.make_apply`, which carries its trainable mask; else :class:`ArchFns`)."""
    if isinstance(cfg.arch, models.TwoLayerConfig):
        return models.make_apply(cfg.net())
    return _fns(cfg).apply


def model_apply(cfg: ProtocolConfig):
    """``apply_fn(params, x)`` of the finite net (the centred wrapper when ``cfg.centered``)."""
    apply_fn = _plain_apply(cfg)
    return centered(apply_fn) if cfg.centered else apply_fn


def init_model(cfg: ProtocolConfig, d: int, key, dtype):
    """(params, trainable mask) of a freshly initialized net (``arch.init``, ``arch.trainable_mask``); for
    centred nets params = (theta, theta_0), both the same draw, theta_0 frozen
    (:func:`ntk_adv.models.centered_mask`)."""
    arch = cfg.net()
    p0 = arch.init(key, _fns(cfg).input_shape(d), dtype)
    mask = arch.trainable_mask(p0)
    if cfg.centered:
        return (p0, p0), models.centered_mask(mask)
    return p0, mask


def initial_function(cfg: ProtocolConfig, params):
    """The net's function at initialization: zero for centred nets."""
    if cfg.centered:
        return None
    return lambda q: _plain_apply(cfg)(params, q)


def train_net(cfg: ProtocolConfig, which: str, x, y, key, lr=None, solver: str = "auto"):
    """Train a freshly initialized net (``which`` = 'f' or 'g': init stream and training config) on (x, y).

    ``solver`` (:data:`pattern_gd.SOLVERS`): ``autodiff`` backpropagates every step (:func:`training.train`
    with ``arch.apply`` and ``arch.trainable_mask``); ``pattern`` runs the same optimizer in activation space
    (:mod:`ntk_adv.pattern_gd`; the two-layer net only, identity loss, frozen readout, either preset), equal
    up to float rounding; ``auto`` picks ``pattern`` where it applies and pays off. A centred net trains like
    the plain one (the identity loss's gradient does not see f_0; only the loss values that drive the paper
    preset's plateau schedule do)."""
    p0, mask = init_model(cfg, x.shape[1], stream(key, f"{which}_init"), x.dtype)
    tcfg = cfg.train_config(which)
    if choose_solver(cfg, tcfg, x.shape[0], solver) == "pattern":
        start = p0[0] if cfg.centered else p0
        trained = pattern_gd.train(
            cfg.net(),
            start,
            x,
            y,
            lr=tcfg.lr if lr is None else lr,
            steps=tcfg.steps,
            config=tcfg,
            centered=cfg.centered,
        )
        return (trained, p0[1]) if cfg.centered else trained
    return train(model_apply(cfg), p0, x, y, tcfg, lr=lr, mask=mask).params


def choose_solver(cfg: ProtocolConfig, tcfg: TrainConfig, n_train: int | None, solver: str = "auto") -> str:
    """:func:`ntk_adv.pattern_gd.choose` for the two-layer net; ``autodiff`` for every other architecture
    (``solver='pattern'`` there is a one-line ValueError naming the architecture)."""
    if isinstance(cfg.arch, models.TwoLayerConfig):
        return pattern_gd.choose(cfg.arch, tcfg, n_train, solver)
    validate.one_of("solver", solver, pattern_gd.SOLVERS)
    if solver == "pattern":
        raise ValueError(
            f"solver 'pattern' is the two-layer net's; --arch {cfg.arch.name} trains by autodiff"
        )
    return "autodiff"


def train_f(cfg: ProtocolConfig, x, y, key, lr_f=None, solver: str = "auto"):
    """Train the clean classifier f (finite width); returns its parameters (see :func:`train_net`)."""
    return train_net(cfg, "f", x, y, key, lr_f, solver)


def infinite_f(cfg: ProtocolConfig, x, y, lr_f=None, k_train=None) -> limits.KernelPredictor:
    """f_inf: the infinite-width predictor trained on clean data (centred: f_0 = 0). Identity loss: time
    ``cfg.limit_time('f')`` (either preset); other losses: kernel GD with the theory preset's steps."""
    lr = cfg.lr_f if lr_f is None else lr_f
    if cfg.loss == "identity":
        return limits.identity_predictor(cfg.kernel(), x, y, t=cfg.limit_time("f", lr))
    return limits.make_predictor(cfg.kernel(), x, y, loss=cfg.loss, lr=lr, steps=cfg.steps_f, k_train=k_train)


def make_targets(cfg: ProtocolConfig, y, key) -> jax.Array:
    if cfg.targets == "deterministic":
        return -y
    if cfg.targets == "balanced":
        alternating = jnp.where(jnp.arange(y.shape[0]) % 2 == 0, 1.0, -1.0).astype(y.dtype)
        return jax.random.permutation(stream(key, "targets"), alternating)
    return jnp.where(jax.random.bernoulli(stream(key, "targets"), 0.5, y.shape), 1.0, -1.0).astype(y.dtype)


def make_noise(cfg: ProtocolConfig, x, key) -> jax.Array:
    """Noise inputs (N, d), uniform or Gaussian, i.i.d. coordinates with mean 0 and the data's
    root-mean-square coordinate ``sqrt(mean(x**2))`` as standard deviation (so ``mean(noise**2) ~
    mean(x**2)``)."""
    scale = jnp.sqrt(jnp.mean(x**2))
    k = stream(key, "noise")
    if cfg.noise == "gaussian":
        return scale * jax.random.normal(k, x.shape, x.dtype)
    return scale * np.sqrt(3.0) * jax.random.uniform(k, x.shape, x.dtype, -1.0, 1.0)


def attack_fn(cfg: ProtocolConfig, eps):
    """The configured attack as ``attack(predict, x, targets) -> eta`` at radius ``eps`` (may be traced).

    A concrete ``eps == 0`` returns the zero perturbation (PGD's default step eps/4 and L0's step eps would
    otherwise be invalid); lbfgs ignores ``eps``."""
    name = cfg.attack
    if name != "lbfgs" and not isinstance(eps, jax.core.Tracer) and float(eps) == 0.0:
        return lambda predict, x, targets: jnp.zeros_like(x)
    params: dict = {"eps": eps, "loss": cfg.loss if cfg.loss != "mse" else "identity"}
    if name in ("pgd_l2", "pgd_linf"):
        step = cfg.attack_step_size if cfg.attack_step_size is not None else eps / 4
        params.update(steps=cfg.attack_steps, step_size=step)
    elif name == "l0":
        params = {"k": cfg.attack_k, "step": eps, "loss": params["loss"]}
    elif name == "lbfgs":
        params = {"c": cfg.attack_c, "steps": cfg.attack_steps, "loss": params["loss"]}
    attack = attacks.make_attack(name, **params)
    return lambda predict, x, targets: attack(predict, x, targets=targets)


def adversarial_set(cfg: ProtocolConfig, predict_f, x, y, key, eps=None) -> AdvSet:
    """Targets, base points, perturbations against ``predict_f`` and the adversarial training set."""
    eps = cfg.eps if eps is None else eps
    y_adv = make_targets(cfg, y, key)
    base = make_noise(cfg, x, key) if cfg.scenario == "noise" else x
    eta = attack_fn(cfg, eps)(predict_f, base, y_adv)
    x_adv = eta if cfg.scenario == "a" else base + eta
    return AdvSet(x_adv=x_adv, y_adv=y_adv, eta=eta, base=base)


def train_g(cfg: ProtocolConfig, adv: AdvSet, key, lr_g=None, solver: str = "auto"):
    """Train a fresh, independently initialized g on the adversarial set only (see :func:`train_net`)."""
    return train_net(cfg, "g", adv.x_adv, adv.y_adv, key, lr_g, solver)


def infinite_g(cfg: ProtocolConfig, adv: AdvSet, lr_g=None) -> limits.KernelPredictor:
    """g_inf: the infinite-width predictor trained on the adversarial set (centred); time as
    :func:`infinite_f`."""
    lr = cfg.lr_g if lr_g is None else lr_g
    if cfg.loss == "identity":
        return limits.identity_predictor(cfg.kernel(), adv.x_adv, adv.y_adv, t=cfg.limit_time("g", lr))
    return limits.make_predictor(cfg.kernel(), adv.x_adv, adv.y_adv, loss=cfg.loss, lr=lr, steps=cfg.steps_g)


class Trained(NamedTuple):
    """The trained pair of one cell: predictors ``f(q)``, ``g(q)`` ((M, d) -> (M,)), the adversarial set g was
    trained on, and the finite nets' parameters (None at infinite width, where f and g are the centred
    limits, :class:`ntk_adv.limits.KernelPredictor`)."""

    f: Callable
    g: Callable
    adv: AdvSet
    f_params: Any = None
    g_params: Any = None


def train_pair(
    cfg: ProtocolConfig,
    x,
    y,
    key,
    eps=None,
    lr_f=None,
    lr_g=None,
    solver: str = "auto",
    infinite: bool | None = None,
) -> Trained:
    """f trained on (x, y), its adversarial set and g trained on it, for one seed key (the stages of
    :func:`finite_cell` / :func:`infinite_cell`; traceable). ``infinite`` (default: ``cfg.infinite``)
    trains the centred infinite-width limits instead of finite nets; ``eps``, ``lr_f``, ``lr_g`` default to
    the config's."""
    if cfg.infinite if infinite is None else infinite:
        f_lim = infinite_f(cfg, x, y, lr_f)
        adv = adversarial_set(cfg, f_lim, x, y, key, eps)
        return Trained(f_lim, infinite_g(cfg, adv, lr_g), adv)
    apply_fn = model_apply(cfg)
    pf = train_f(cfg, x, y, key, lr_f, solver)
    adv = adversarial_set(cfg, lambda q: apply_fn(pf, q), x, y, key, eps)
    pg = train_g(cfg, adv, key, lr_g, solver)
    return Trained(lambda q: apply_fn(pf, q), lambda q: apply_fn(pg, q), adv, pf, pg)


def need_held_out(z) -> None:
    """The protocol's metrics are measured on held-out points z (M, d): M = 0 (data without a test split) is
    refused by name, not reported as an empty-array error from inside a metric."""
    if np.shape(z)[0] == 0:
        raise ValueError(
            "the data has no held-out test points (n_test = 0): perturbation learning measures agreement and "
            "test accuracy on them; give data with a test split"
        )


def evaluate(
    cfg: ProtocolConfig, predict_f, predict_g, adv: AdvSet, x, y, z, y_test, d_pred=None
) -> dict[str, jax.Array]:
    """Per-seed metrics: agreement of sign f and sign g on held-out z; g's natural accuracy on the clean
    training inputs and on held-out data; f's accuracies; mean |cos(eta_n, D_n)| with the predicted direction
    D_n at the perturbed points (``cos_predicted``, two-layer only: :func:`decomposes`); g's accuracy on its
    own (adversarial) training set.

    ``d_pred`` (N, d): the predicted directions at ``adv.base`` if already known
    (:func:`predicted_directions`; the sweep engine computes them once per group when the base points are the
    training inputs)."""
    need_held_out(z)
    f_test = predict_f(z)
    out = {
        "agreement": agreement(f_test, predict_g(z)),
        "g_acc_train": accuracy(predict_g(x), y),
        "g_acc_test": accuracy(predict_g(z), y_test),
        "f_acc_train": accuracy(predict_f(x), y),
        "f_acc_test": accuracy(f_test, y_test),
        "g_acc_adv": accuracy(predict_g(adv.x_adv), adv.y_adv),
    }
    if decomposes(cfg.arch):
        d_pred = predicted_directions(cfg, adv.base, x, y) if d_pred is None else d_pred
        out["cos_predicted"] = mean_abs_cosine(adv.eta, d_pred)
    return out


def predicted_directions(cfg: ProtocolConfig, base, x, y) -> jax.Array:
    """D_n at the base points (N, d) for the two-layer net's activation (:func:`kernels.predicted_direction`;
    a two-layer capability, :func:`decomposes`)."""
    return kernels.predicted_direction(base, x, y, gamma=cfg.arch.gamma, bias=cfg.arch.bias)


# ------------------------------------------------------------------------------------------- cells
def finite_cell(
    cfg: ProtocolConfig, x, y, z, y_test, key, eps=None, lr_f=None, lr_g=None, solver: str = "auto"
) -> dict:
    """The whole protocol at finite width for one seed key; traceable (vmap over key, eps, lr_f, lr_g);
    ``solver`` trains f and g (:func:`train_net`).

    Besides :func:`evaluate`'s metrics: ``f_gap``/``g_gap``, the relative distance of the trained finite f/g
    on z to the infinite-width predictor started from the same initial function, and ``agreement_f_inf`` /
    ``agreement_g_inf``, the sign agreement of finite f/g with the centred infinite-width f_inf/g_inf."""
    t = train_pair(cfg, x, y, key, eps, lr_f, lr_g, solver, infinite=False)
    out = evaluate(cfg, t.f, t.g, t.adv, x, y, z, y_test)
    out.update(
        finite_to_infinite(cfg, model_apply(cfg), t.f_params, t.g_params, t.adv, x, y, z, key, lr_f, lr_g)
    )
    return out


def finite_to_infinite(
    cfg, apply_fn, pf, pg, adv, x, y, z, key, lr_f, lr_g, f_lim_z=None, d_pred=None, grad_dirs=None
) -> dict:
    """Finite nets against their limits, for any architecture: gaps to the same-init limits (``f_gap``,
    ``g_gap``), agreement with the centred limits, g's agreement with f through its same-init limit
    (``agreement_same_init``) and with the centred limit (``agreement_centred``), the relative first-layer
    movement of f and g (``f_weight_move``, ``g_weight_move``: how lazy the training was), activation flips
    and g's kink fraction (:func:`activation_flips`, :func:`kink_fraction`, through ``arch.first_layer`` and
    ``arch.preactivations``).

    Two-layer capabilities (:func:`decomposes`; absent for other architectures): the decomposition of g's
    limit (:func:`decomposition`), the predicted agreement, the coefficients of what g learned on B and S
    (:func:`learned_coefficients`) and the predicted cosine of the perturbations with D_n
    (``cos_predicted_theory``, :func:`predicted_cosine`). ``f_lim_z`` (the centred f_inf on z), ``d_pred``
    (D_n at the base points) and ``grad_dirs`` (:func:`kernel_gradients` at the base points) may be passed in
    when already known (they do not depend on the seed in scenarios a and b)."""
    need_held_out(z)
    two_layer = decomposes(cfg.arch)
    f0 = init_model(cfg, x.shape[1], stream(key, "f_init"), x.dtype)[0]
    g0 = init_model(cfg, x.shape[1], stream(key, "g_init"), x.dtype)[0]
    f_lim = infinite_f(cfg, x, y, lr_f)
    g_lim = infinite_g(cfg, adv, lr_g)
    f_lim_z = f_lim(z) if f_lim_z is None else f_lim_z
    if two_layer:
        b_part, s_part = g_parts(cfg, g_lim, z)
        g_lim_z = b_part + s_part
    else:
        g_lim_z = g_lim(z)
    f_z, g_z = apply_fn(pf, z), apply_fn(pg, z)
    g0_fn = initial_function(cfg, g0)
    g0_z = jnp.zeros_like(g_z) if g0_fn is None else g0_fn(z)

    def same_init_limit(pred, pred_z, x_set, y_set, init, lr, which):
        """The limit started from the net's own f_0 on z; for the identity loss the kernel part is unchanged,
        so the kernel is not evaluated twice."""
        f0_fn = initial_function(cfg, init)
        if f0_fn is None:
            return pred_z
        if cfg.loss == "identity":
            return pred_z + f0_fn(z)
        return replace_f0(cfg, pred, x_set, y_set, f0_fn, lr, which=which)(z)

    g_same = same_init_limit(g_lim, g_lim_z, adv.x_adv, adv.y_adv, g0, lr_g, "g")
    out = {
        "f_gap": relative_gap(f_z, same_init_limit(f_lim, f_lim_z, x, y, f0, lr_f, "f")),
        "g_gap": relative_gap(g_z, g_same),
        "agreement_f_inf": agreement(f_z, f_lim_z),
        "agreement_g_inf": agreement(g_z, g_lim_z),
        "agreement_g_same_init": agreement(g_z, g_same),
    }
    refs = {"agreement_same_init": _agree_points(f_z, g_same)}
    if two_layer:
        out.update(decomposition(cfg, f_z, b_part, s_part, adv.y_adv, z, g0_z=g0_z, g_same_z=g_same))
        refs["agreement_signal"] = _agree_points(f_z, s_part)
        predicted = predicted_agreement_per_point(cfg, f_z, g_lim_z, z)
        if predicted is None and not cfg.centered:
            predicted = predicted_agreement_mc(cfg, f_z, adv, z, stream(key, "g0_draws"), lr_g)
            out["agreement_predicted"] = jnp.mean(predicted)
        if predicted is not None:
            refs["agreement_predicted"] = predicted
    else:
        out.update(
            {
                "mean_y_adv": jnp.mean(adv.y_adv),
                "agreement_centred": agreement(f_z, g_lim_z),
                "g0_abs": jnp.mean(jnp.abs(g0_z)),
                "agreement_same_init": agreement(f_z, g_same),
            }
        )
    out.update(paired_second_moments(_agree_points(f_z, g_z), refs))
    out["f_weight_move"] = weight_movement(cfg, pf, f0)
    out["g_weight_move"] = weight_movement(cfg, pg, g0)
    out.update(activation_flips(cfg, "f", pf, f0, x, z))
    out.update(activation_flips(cfg, "g", pg, g0, adv.x_adv, z))
    out["g_kink_frac"] = kink_fraction(cfg, pg, adv.x_adv)
    out["g_kink_frac_init"] = kink_fraction(cfg, g0, adv.x_adv)
    if two_layer:
        out.update(learned_coefficients(g_z - g0_z, b_part, s_part))
        d_pred = predicted_directions(cfg, adv.base, x, y) if d_pred is None else d_pred
        grad_dirs = kernel_gradients(cfg, adv.base, x, y) if grad_dirs is None else grad_dirs
        out["cos_predicted_theory"] = predicted_cosine(cfg, grad_dirs, d_pred, cfg.limit_time("f", lr_f))
    return out


def _own(cfg: ProtocolConfig, params):
    """The net's own parameters (theta of a centred pair (theta, theta_0))."""
    return params[0] if cfg.centered else params


def weight_movement(cfg: ProtocolConfig, params, init) -> jax.Array:
    """||W_T - W_0|| / ||W_0|| over the first layer's parameters (``arch.first_layer``: (w, b) of the
    two-layer net; Frobenius over every array it returns): ~ m^(-1/2) in the lazy regime."""
    trained = jax.tree_util.tree_leaves(cfg.arch.first_layer(_own(cfg, params)))
    start = jax.tree_util.tree_leaves(cfg.arch.first_layer(_own(cfg, init)))
    num = sum(jnp.sum((a - b) ** 2) for a, b in zip(trained, start))
    den = sum(jnp.sum(b**2) for b in start)
    return jnp.sqrt(num / den)


def activation_flips(cfg: ProtocolConfig, which: str, params, init, x_train, z) -> dict[str, jax.Array]:
    """Fraction of (unit, input) pairs whose ReLU side (sign of the first hidden layer's pre-activation,
    ``arch.preactivations``) differs between the trained and the initial net, on the net's own training
    inputs (``{which}_flip_train``; g's are the adversarial inputs) and on the held-out z
    (``{which}_flip_test``). The NTK of a two-layer net changes in proportion to this fraction, so it
    measures laziness without looking at the output gap being judged (docs/theory.md, "Measuring the
    regime")."""
    fns = _fns(cfg)
    trained, start = _own(cfg, params), _own(cfg, init)

    def flips(q):
        return jnp.mean((fns.preactivations(trained, q) > 0) != (fns.preactivations(start, q) > 0))

    return {f"{which}_flip_train": flips(x_train), f"{which}_flip_test": flips(z)}


def kink_fraction(cfg: ProtocolConfig, params, x_train) -> jax.Array:
    """Fraction of the net's first-layer units that sit at their kink on its training inputs: active on some
    and inactive on others. In scenario (a) every input lies within eps of the origin, so a unit is at its
    kink only when its bias was driven to within ~eps of 0 (docs/theory.md, "Beyond the lazy limit: bias
    saturation")."""
    pre = _fns(cfg).preactivations(_own(cfg, params), x_train)
    on = jnp.reshape(pre > 0, (pre.shape[0], -1))  # (N, units)
    frac_on = jnp.mean(on, axis=0)
    return jnp.mean((frac_on > 0) & (frac_on < 1))


def learned_coefficients(learned_z, b_part, s_part) -> dict[str, jax.Array]:
    """Least-squares coefficients (no intercept) of what finite g learned on z, ``g(z) - g_0(z)`` (M,), on
    the two terms of its lazy limit, the bias term ``B(z)`` and the signal term ``S(z)``:
    ``learned ~ c_B B + c_S S``. The lazy limit predicts ``c_B = c_S = 1``; ``g_coef_r2`` is the fit's R^2.
    A degenerate design (B = 0 without bias) gives NaN for c_B."""
    design = jnp.stack([b_part, s_part], axis=1)
    gram = design.T @ design
    rhs = design.T @ learned_z
    det = gram[0, 0] * gram[1, 1] - gram[0, 1] ** 2
    ok = det > 1e-12 * (gram[0, 0] * gram[1, 1] + 1e-30)
    safe = jnp.where(ok, det, 1.0)
    c_b = (gram[1, 1] * rhs[0] - gram[0, 1] * rhs[1]) / safe
    c_s = (gram[0, 0] * rhs[1] - gram[0, 1] * rhs[0]) / safe
    resid = learned_z - design @ jnp.stack([c_b, c_s])
    tss = jnp.sum(learned_z**2)
    r2 = 1.0 - jnp.sum(resid**2) / jnp.where(tss > 0, tss, 1.0)
    nan = jnp.nan
    return {
        "g_coef_bias": jnp.where(ok, c_b, nan),
        "g_coef_signal": jnp.where(ok, c_s, nan),
        "g_coef_r2": jnp.where(ok, r2, nan),
    }


# Regime thresholds, fixed before any data (docs/theory.md, "Measuring the regime"): a trained net counts as
# lazy when its first layer moved by at most LAZY_MOVE of its initial norm and at most LAZY_FLIP of its
# (unit, input) activation patterns changed side, on its training inputs and on the test points.
LAZY_MOVE = 0.1
LAZY_FLIP = 0.05


def is_lazy(weight_move, flip_train, flip_test) -> bool:
    """The regime label of one trained net from its measured movement and activation flips (never from the
    gap between the net and its limit, which the claims judge)."""
    return bool(weight_move <= LAZY_MOVE and flip_train <= LAZY_FLIP and flip_test <= LAZY_FLIP)


def kernel_gradients(cfg: ProtocolConfig, base, x, y) -> jax.Array:
    """G_n = (1/N) grad_z sum_k y_k Theta(x_k, z) at z = base_n, shape (N, d): the input gradient of the
    limit f's kernel part per unit training time (docs/theory.md, "Cosine with the predicted direction")."""
    kernel = cfg.kernel()
    y = jnp.asarray(y, x.dtype)
    return jax.grad(lambda b: jnp.sum(y @ kernel(x, b)))(base) / x.shape[0]


def predicted_cosine(cfg: ProtocolConfig, grad_dirs, d_pred, tau) -> jax.Array:
    """Predicted mean_n |cos(eta_n, D_n)| of a net trained for time ``tau``: the input gradient is
    grad f_0 + tau G_n with grad f_0 an isotropic random vector of mean square v0 = (1 + gamma^2)/2 (0 for
    centred nets), so its component along the unit D_n is N(0, v0/d) and

        E|cos| ~ E|mu_n + sqrt(v0/d) Z| / sqrt(||tau G_n||^2 + v0),   mu_n = <tau G_n, D_n>,

    with the folded-normal mean E|mu + s Z| = s sqrt(2/pi) exp(-mu^2 / 2 s^2) + mu (1 - 2 Phi_N(-mu/s))."""
    g = tau * grad_dirs
    v0 = 0.0 if cfg.centered else (1.0 + cfg.arch.gamma**2) / 2
    mu = jnp.abs(jnp.sum(g * d_pred, axis=1))
    if v0 > 0:
        sd = np.sqrt(v0 / grad_dirs.shape[1])
        num = sd * np.sqrt(2 / np.pi) * jnp.exp(-(mu**2) / (2 * sd**2)) + mu * (
            1 - 2 * jax.scipy.stats.norm.cdf(-mu / sd)
        )
    else:
        num = mu
    denom = jnp.sqrt(jnp.sum(g * g, axis=1) + v0)
    return jnp.mean(num / jnp.where(denom > 0, denom, 1.0))


def g_parts(cfg: ProtocolConfig, g_lim: limits.KernelPredictor, z) -> tuple[jax.Array, jax.Array]:
    """(B(z), S(z)): the bias and input parts of the centred limit g's kernel term
    (:func:`limits.kernel_parts`)."""
    return limits.kernel_parts(
        g_lim.x_train,
        g_lim.coef,
        z,
        gamma=cfg.arch.gamma,
        bias=cfg.arch.bias,
        parametrization=cfg.arch.parametrization,
    )


def decomposition(cfg: ProtocolConfig, f_z, b_part, s_part, y_adv, z, *, g0_z=None, g_same_z=None) -> dict:
    """The limit g on z, ``g = g_0 + B + S`` (docs/theory.md), against f's signs ``f_z`` (M,):

    * ``g0_abs``, ``bias_term_abs``, ``signal_term_abs``: mean |g_0|, |B|, |S| over z; ``mean_y_adv``;
    * ``agreement_signal`` sign S vs sign f; ``agreement_centred`` sign(B + S) vs sign f (the centred limit);
    * finite nets (``g0_z`` given): ``agreement_same_init``, the limit with g's own initial function
      (``g_same_z``, default g_0 + B + S), and, for the identity loss, ``agreement_predicted``: the
      expectation of the agreement over g's random initialization, g_0(z) ~ N(0, Sigma(z, z)) (the NNGP
      variance at any width), ``mean_z Phi_N(sign f(z) (B + S)(z) / sqrt(Sigma(z, z)))`` - g_0 = 0 for centred
      nets."""
    h = b_part + s_part
    out = {
        "bias_term_abs": jnp.mean(jnp.abs(b_part)),
        "signal_term_abs": jnp.mean(jnp.abs(s_part)),
        "mean_y_adv": jnp.mean(y_adv),
        "agreement_signal": agreement(f_z, s_part),
        "agreement_centred": agreement(f_z, h),
    }
    if g0_z is None:
        return out
    out["g0_abs"] = jnp.mean(jnp.abs(g0_z))
    out["agreement_same_init"] = agreement(f_z, h + g0_z if g_same_z is None else g_same_z)
    predicted = predicted_agreement_per_point(cfg, f_z, h, z)
    if predicted is not None:
        out["agreement_predicted"] = jnp.mean(predicted)
    return out


def predicted_agreement_per_point(cfg: ProtocolConfig, f_z, h, z) -> jax.Array | None:
    """Per test point (M,), the lazy limit's probability over g's random initial function that sign g agrees
    with sign f: ``Phi_N(sign f(z) h(z) / sqrt(Sigma(z, z)))`` with ``h = B + S`` (an indicator for centred
    nets); ``None`` off the identity loss (no closed form)."""
    if cfg.loss != "identity":
        return None
    sign_f = jnp.where(f_z >= 0, 1.0, -1.0)
    if cfg.centered:
        return (sign_f * jnp.where(h >= 0, 1.0, -1.0) > 0).astype(f_z.dtype)
    sd = jnp.sqrt(kernels.nngp_diag(z, gamma=cfg.arch.gamma, bias=cfg.arch.bias))
    return jax.scipy.stats.norm.cdf(sign_f * h / sd)


def predicted_agreement_mc(cfg: ProtocolConfig, f_z, adv: AdvSet, z, key, lr_g=None, draws: int = MC_DRAWS):
    """Per test point (M,), the probability over g's random initial function that sign g agrees with sign f,
    by Monte Carlo for losses without a closed form (logistic, exponential, MSE): ``draws`` joint Gaussian
    draws of g_0 on (x_adv, z) with the NNGP covariance (the law of a random net's initial function at any
    width), each carried through the lazy limit's kernel gradient descent on the adversarial set from that
    g_0 (:func:`limits.flow_coefficients`; MSE: :func:`limits.mse_predictor` at the same lr and steps). The
    Monte Carlo error of the mean over z is at most ``0.5 / sqrt(draws)`` (docs/theory.md, "Agreement over
    the random initial function")."""
    x_adv, y_adv = adv.x_adv, adv.y_adv
    n = x_adv.shape[0]
    pts = jnp.concatenate([x_adv, z], axis=0)
    cov = kernels.nngp(pts, pts, gamma=cfg.arch.gamma, bias=cfg.arch.bias)
    lam, vec = jnp.linalg.eigh(0.5 * (cov + cov.T))
    root = vec * jnp.sqrt(jnp.clip(lam, 0.0, None))[None, :]
    samples = root @ jax.random.normal(key, (pts.shape[0], draws), pts.dtype)  # (N + M, draws)
    kernel = cfg.kernel()
    k_train = kernels.kernel_matrix(kernel, x_adv)
    k_z = kernel(z, x_adv)
    lr = cfg.lr_g if lr_g is None else lr_g
    sign_f = jnp.where(f_z >= 0, 1.0, -1.0)

    def one(sample):
        f0_train, f0_z = sample[:n], sample[n:]
        if cfg.loss == "mse":
            pred = limits.mse_predictor(
                kernel, x_adv, y_adv, f0=lambda _q: f0_train, k_train=k_train, lr=lr, steps=cfg.steps_g
            )
            coef = pred.coef
        else:
            coef = limits.flow_coefficients(cfg.loss, k_train, y_adv, f0_train, lr=lr, steps=cfg.steps_g)
        g_z = f0_z + k_z @ coef
        return (jnp.where(g_z >= 0, 1.0, -1.0) == sign_f).astype(f_z.dtype)

    return jnp.mean(jax.vmap(one, in_axes=1)(samples), axis=0)


def paired_second_moments(g_agrees, refs: dict) -> dict[str, jax.Array]:
    """``d2_<name>``: the mean over test points of the squared per-point paired difference between g's
    agreement with f, ``g_agrees`` (M,) = ``1[sign g = sign f]``, and each reference's per-point agreement
    value in ``refs`` (name -> (M,) values in [0, 1]). With the mean difference d, ``d2 - d^2`` is the
    per-point variance of the paired difference, which the verdicts resample within a seed
    (docs/verdicts.md)."""
    return {f"d2_{name}": jnp.mean((g_agrees - ref) ** 2) for name, ref in refs.items()}


def _agree_points(f_z, other) -> jax.Array:
    """``1[sign f = sign other]`` per point (M,), in f's dtype (sign(0) = +1)."""
    return (jnp.where(f_z >= 0, 1.0, -1.0) == jnp.where(other >= 0, 1.0, -1.0)).astype(f_z.dtype)


def replace_f0(cfg, pred: limits.KernelPredictor, x, y, f0, lr=None, which="f") -> limits.KernelPredictor:
    """The infinite-width predictor on (x, y) started from the initial function ``f0`` (e.g. a finite
    net's)."""
    if f0 is None:
        return pred
    if cfg.loss == "identity":  # the flow does not depend on f: only f_0 changes
        return pred.replace(f0=f0)
    steps = cfg.steps_f if which == "f" else cfg.steps_g
    lr = (cfg.lr_f if which == "f" else cfg.lr_g) if lr is None else lr
    return limits.make_predictor(cfg.kernel(), x, y, loss=cfg.loss, lr=lr, steps=steps, f0=f0)


def infinite_cell(cfg: ProtocolConfig, x, y, z, y_test, key, eps=None, lr_f=None, lr_g=None) -> dict:
    """The whole protocol in the infinite-width limit (f_inf, perturbations of f_inf, g_inf) for one key."""
    t = train_pair(cfg, x, y, key, eps, lr_f, lr_g, infinite=True)
    out = evaluate(cfg, t.f, t.g, t.adv, x, y, z, y_test)
    if decomposes(cfg.arch):
        b_part, s_part = g_parts(cfg, t.g, z)
        out.update(decomposition(cfg, t.f(z), b_part, s_part, t.adv.y_adv, z))
    else:
        out["mean_y_adv"] = jnp.mean(t.adv.y_adv)
    return out


def run_seeds(
    cfg: ProtocolConfig,
    arrays,
    seeds: int,
    *,
    infinite: bool | None = None,
    base_seed: int = 0,
    eps=None,
    lr_f=None,
    lr_g=None,
) -> dict[str, np.ndarray]:
    """All seeds of one config in a single jitted vmap; returns metric -> (seeds,) numpy array.

    ``arrays`` = (x, y, z, y_test). Seed ``s`` (``base_seed .. base_seed + seeds - 1``) uses the key
    :func:`seed_key` ``(s) = PRNGKey(s)``, the key of the sweep cell of seed ``s``. ``infinite`` (default
    ``cfg.infinite``) runs the infinite-width limit.
    ``eps``, ``lr_f``, ``lr_g``: optional 1-D arrays of one common length E, zipped into E points of config
    space (a path: e.g. radii alone, or training times T_f = lr_f * steps_f at a fixed number of steps);
    all E points run in the same compiled vmap and every metric is then (seeds, E). Values not given are
    the config's."""
    x, y, z, y_test = arrays
    if infinite is None:
        infinite = cfg.infinite
    cell = infinite_cell if infinite else finite_cell
    keys = jax.vmap(seed_key)(jnp.arange(base_seed, base_seed + seeds))
    grid = {k: v for k, v in (("eps", eps), ("lr_f", lr_f), ("lr_g", lr_g)) if v is not None}
    if not grid:
        out = jax.jit(jax.vmap(lambda k: cell(cfg, x, y, z, y_test, k)))(keys)
        return {k: np.asarray(v) for k, v in out.items()}
    grid = {k: jnp.asarray(v, x.dtype) for k, v in grid.items()}
    lengths = {k: v.shape for k, v in grid.items()}
    if any(len(sh) != 1 for sh in lengths.values()) or len(set(lengths.values())) != 1:
        raise ValueError(f"eps / lr_f / lr_g must be 1-D arrays of one common length, got shapes {lengths}")
    inner = jax.vmap(lambda k, g: cell(cfg, x, y, z, y_test, k, **g), in_axes=(None, 0))
    out = jax.jit(jax.vmap(inner, in_axes=(0, None)))(keys, grid)
    return {k: np.asarray(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------- decision maps
def class_mean_plane(x, y) -> tuple[np.ndarray, np.ndarray]:
    """The plane through 0 spanned by the two class means: ``(origin (d,) = 0, basis (2, d))`` orthonormal.

    ``basis[0]`` is the unit vector from the -1 mean to the +1 mean (the discriminative axis), ``basis[1]``
    the normalized component of the sum of the means orthogonal to it. If the means are (numerically)
    collinear the span is a line; ``basis[1]`` is then the top principal direction of ``x`` orthogonal to
    ``basis[0]``. Raises ValueError if a class is missing or the class means coincide."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"need x (N, d) and y (N,), got shapes {x.shape} and {y.shape}")
    if x.shape[1] < 2:
        raise ValueError("a decision plane needs d >= 2")
    if not (np.any(y > 0) and np.any(y < 0)):
        raise ValueError("both classes (+1 and -1) must be present to define the class-mean plane")
    mu_p, mu_n = x[y > 0].mean(axis=0), x[y < 0].mean(axis=0)
    e1 = mu_p - mu_n
    if np.linalg.norm(e1) == 0:
        raise ValueError("the two class means coincide: no class-mean plane")
    e1 = e1 / np.linalg.norm(e1)
    r = mu_p + mu_n
    r = r - (r @ e1) * e1
    if np.linalg.norm(r) <= 1e-8 * max(np.linalg.norm(mu_p), np.linalg.norm(mu_n)):
        resid = x - np.outer(x @ e1, e1)
        r = np.linalg.svd(resid, full_matrices=False)[2][0]
        r = r - (r @ e1) * e1
    e2 = r / np.linalg.norm(r)
    dtype = np.result_type(np.asarray(x).dtype, np.float32)
    return np.zeros(x.shape[1], dtype), np.stack([e1, e2]).astype(dtype)


def grid_axes(extent, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates ``(u (n,), v (n,))`` along basis[0] and basis[1]: ``linspace`` including endpoints.

    ``extent`` is ``(u_min, u_max, v_min, v_max)`` (matplotlib's order) or a number r for ``(-r, r, -r,
    r)``."""
    if np.ndim(extent) == 0:
        extent = (-float(extent), float(extent), -float(extent), float(extent))
    if len(extent) != 4 or not (extent[0] < extent[1] and extent[2] < extent[3]):
        raise ValueError(
            f"extent must be (u_min, u_max, v_min, v_max) with min < max, or r > 0; got {extent}"
        )
    if int(n) < 2:
        raise ValueError(f"a grid needs n >= 2 points per side, got {n}")
    return np.linspace(extent[0], extent[1], int(n)), np.linspace(extent[2], extent[3], int(n))


def plane_points(origin, basis, extent, n: int) -> np.ndarray:
    """The n*n grid points in input space, (n*n, d), row-major: point ``i*n + j`` is
    ``origin + u_j basis[0] + v_i basis[1]``."""
    u, v = grid_axes(extent, n)
    uu, vv = np.meshgrid(u, v)  # (n, n), [i, j] = (u_j, v_i)
    origin, basis = np.asarray(origin), np.asarray(basis)
    return origin[None, :] + uu.reshape(-1, 1) * basis[0][None, :] + vv.reshape(-1, 1) * basis[1][None, :]


def project(points, origin, basis) -> np.ndarray:
    """Coordinates (P, 2) of points (P, d) in the plane: ``(points - origin) @ basis.T``."""
    return (np.asarray(points) - np.asarray(origin)[None, :]) @ np.asarray(basis).T


def decision_grid(
    predict_fns: Mapping[str, Callable], origin, basis, extent, n: int
) -> dict[str, np.ndarray]:
    """Values of each predictor (``(M, d) -> (M,)``) on the n x n grid of :func:`plane_points`.

    Returns name -> (n, n) with ``[i, j]`` at ``origin + u_j basis[0] + v_i basis[1]`` (rows follow
    basis[1], as ``ax.contour(u, v, values)`` expects; ``u, v = grid_axes(extent, n)``)."""
    basis = np.asarray(basis)
    if basis.ndim != 2 or basis.shape[0] != 2 or np.shape(origin) != (basis.shape[1],):
        raise ValueError(f"need origin (d,) and basis (2, d), got {np.shape(origin)} and {basis.shape}")
    pts = jnp.asarray(plane_points(origin, basis, extent, n).astype(basis.dtype))
    n = int(n)
    return {name: np.asarray(fn(pts)).reshape(n, n) for name, fn in predict_fns.items()}
