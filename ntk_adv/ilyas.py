"""Learning from adversarial perturbations with C classes, as Ilyas et al. (NeurIPS 2019) built it, for the
two-layer net (first layer trained, readout frozen) at finite width and in the kernel limit
(docs/theory.md, "Ten classes: the lazy limit of D_rand and D_det").

Protocol, per seed (the statistical unit: one f, one draw of targets, one initial g):

1. train f on the clean data (x (N, d), y (N,) in 0..C-1);
2. draw targets t (N,) (:func:`make_targets`): ``rand`` uniform over the C-1 classes other than y (Ilyas et
   al.'s D_rand), ``rand_any`` uniform over all C classes (t = y with probability 1/C), ``det`` t = (y + 1)
   mod C (D_det), ``balanced`` every class equally often as a target, t != y where possible;
3. attack f toward t with radius eps (an L2 radius for ``one_step_l2`` / ``pgd_l2``, L-inf for ``pgd_linf``)
   and relabel: scenario ``b`` trains on x + eta (Ilyas et al.), scenario ``a`` on the perturbation eta alone;
4. train a fresh g on (x_adv, t); report ``g_acc_test`` (accuracy of g on the clean test set), ``g_acc_adv``
   (g's accuracy on its own training set against t), ``agreement`` (argmax f == argmax g on test points) and
   ``f_target_rate`` (argmax f(x + eta) == t: how often the attack reached its target);
5. Wallace's control (Distill 2019): g_w trained on the clean x relabelled by argmax f (no perturbation):
   ``wallace_acc_test``, ``wallace_agreement``.

Predictions from the lazy limit (per seed, finite rows): the same-init limit of g - the kernel predictor
``g_0(z) + Theta(z, X_adv) coef`` with the finite g's own initial function g_0, trained on the finite f's
x_adv and t by the same loss, lr and steps - gives ``acc_predicted`` and ``agreement_predicted`` (against the
finite f); the same for Wallace's g_w (``wallace_acc_predicted``, ``wallace_agreement_predicted``).
Infinite-width rows (width inf): f and g are the centred (f_0 = 0) kernel limits.

Every function is pure: randomness only from the integer seeds (``jax.random.PRNGKey(seed)`` split into the
keys of f, g and the targets). Finite nets are vmapped over seeds; trainings are ``lax.scan``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import multiclass as mc
from ntk_adv.arch import ARCHITECTURES, ArchName, build
from ntk_adv.arch.base import INF_WIDTH, Architecture, ParametrizationChoice, check_width, is_infinite
from ntk_adv.data import DataSpec, data_arrays, load_spec_cached
from ntk_adv.models import centered_mask
from ntk_adv.perturbation.protocol import ArchFns, arch_fns

IlyasTargets = Literal["rand", "rand_any", "det", "balanced"]  # target rules of make_targets
IlyasScenario = Literal["a", "b"]  # a: g trains on eta alone; b: on x + eta (Ilyas et al.)
TARGETS: tuple[str, ...] = get_args(IlyasTargets)
SCENARIOS: tuple[str, ...] = get_args(IlyasScenario)
ARCHS: tuple[str, ...] = tuple(ARCHITECTURES)


@dataclass(frozen=True)
class NetSpec:
    """The network of f and g as the options of an :class:`~ntk_adv.arch.Architecture` with C outputs:
    ``arch`` two-layer (first layer trained, readout frozen: :class:`~ntk_adv.models.TwoLayerConfig`), fc or
    cnn (:mod:`ntk_adv.arch`: every layer trained, ``depth`` weight layers / conv blocks), in the standard or
    NTK parametrization; ``width`` :data:`~ntk_adv.arch.INF_WIDTH` is the infinite-width (kernel) limit. The
    C-output NTK of each is Theta x I_C (outputs independent at init), so the limits use the scalar Theta."""

    arch: ArchName = "two-layer"  # the network family of f and g (ntk_adv.arch)
    depth: int = 2  # weight layers of fc (2 = one hidden layer); conv blocks of cnn; two-layer: 2; >= 1
    width: int | float = 256  # hidden width m (fc) / channels (cnn), >= 1; INF_WIDTH: the kernel limit
    gamma: float = 0.0  # leaky-ReLU slope gamma of the activation, in [0, 1) (0: ReLU)
    # auto: fc and cnn take ntk (their standard-parametrization NTK of every layer grows with the width and
    # has no infinite-width limit)
    parametrization: ParametrizationChoice = "auto"  # standard | ntk | auto (two-layer: standard, else ntk)
    centered: bool = (
        True  # train and evaluate f(x) - f_0(x) (finite nets; f_0 = 0), whose limit is the centred one
    )

    def __post_init__(self):
        if self.width is None:
            object.__setattr__(self, "width", INF_WIDTH)
        check_width(self.width, "--widths")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown --arch {self.arch!r}; expected one of {', '.join(ARCHS)}")
        if self.arch == "two-layer" and self.depth != 2:
            raise ValueError(f"--arch two-layer has depth 2, got --depth {self.depth}; use --arch fc")
        if isinstance(self.depth, bool) or not isinstance(self.depth, (int, np.integer)) or self.depth < 1:
            raise ValueError(f"--depth must be an integer >= 1, got {self.depth!r}")
        if self.parametrization not in ("auto", "standard", "ntk"):
            raise ValueError(f"--parametrization must be auto, standard or ntk, got {self.parametrization!r}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"--gamma must be in [0, 1), got {self.gamma!r}")

    @property
    def infinite(self) -> bool:
        return is_infinite(self.width)

    def param(self) -> str:
        """The parametrization: ``parametrization``, or for ``auto`` standard (two-layer) / ntk (fc, cnn)."""
        if self.parametrization != "auto":
            return self.parametrization
        return "standard" if self.arch == "two-layer" else "ntk"

    def architecture(self, n_classes: int) -> Architecture:
        """The architecture with ``n_classes`` outputs at this spec's width (INF_WIDTH: kernel only)
        (:func:`ntk_adv.arch.build`; every layer of fc / cnn trained, the two-layer readout frozen)."""
        return build(
            self.arch,
            self.width,
            depth=self.depth,
            gamma=self.gamma,
            parametrization=self.param(),
            n_out=n_classes,
        )


@dataclass(frozen=True)
class TrainSpec:
    """Full-batch gradient descent of f and g (time tau = lr * steps) on a C-class loss."""

    loss: mc.MCLoss = "identity"  # C-class training loss of f and g (ntk_adv.multiclass)
    lr_f: float = 0.1  # learning rate of f's full-batch gradient descent, > 0
    steps_f: int = 100  # gradient-descent steps T_f of f, >= 1
    lr_g: float = 0.1  # learning rate of g (and of Wallace's g_w), > 0
    steps_g: int = 100  # gradient-descent steps T_g of g, >= 1

    def __post_init__(self):
        mc.check_loss(self.loss, what="--loss")
        for name in ("lr_f", "lr_g"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)!r}")
        for name in ("steps_f", "steps_g"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class AttackSpec:
    """The targeted attack on f: eps is an L2 radius (one_step_l2, pgd_l2) or an L-inf one (pgd_linf)."""

    attack: mc.MCAttack = "pgd_l2"  # targeted attack on f (eps: L2 radius, L-inf for pgd_linf)
    attack_loss: mc.AttackLoss = (
        "cross_entropy"  # targeted loss: cross_entropy (softmax prob of t) or identity (f_t)
    )
    attack_steps: int = 10  # PGD iterations, >= 1 (step size 2.5 eps / steps)

    def __post_init__(self):
        mc.check_loss(self.attack, mc.MC_ATTACKS, "--attack")
        mc.check_loss(self.attack_loss, mc.ATTACK_LOSSES, "--attack-loss")
        if self.attack_steps < 1:
            raise ValueError(f"--attack-steps must be >= 1, got {self.attack_steps!r}")


@dataclass(frozen=True)
class IlyasSetup:
    """One cell of the sweep (with a seed): data, net, training, attack, and the eps / target / scenario
    combinations run on one trained f."""

    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=None, classes="all"))
    net: NetSpec = field(default_factory=NetSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    attack: AttackSpec = field(default_factory=AttackSpec)
    eps: tuple[float, ...] = (0.5, 1.0, 2.0)  # attack radii (L2 norm; L-inf for pgd_linf)
    targets: tuple[IlyasTargets, ...] = ("rand", "det")  # target rules (see make_targets)
    scenarios: tuple[IlyasScenario, ...] = ("b",)  # a: train g on eta alone; b: on x + eta (Ilyas et al.)

    def __post_init__(self):
        if self.data.classes != "all":
            raise ValueError("the ilyas protocol needs C classes: DataSpec(classes='all') (--classes all)")
        for t in self.targets:
            if t not in TARGETS:
                raise ValueError(f"unknown --targets {t!r}; expected one of {', '.join(TARGETS)}")
        for s in self.scenarios:
            if s not in SCENARIOS:
                raise ValueError(f"unknown --scenarios {s!r}; expected a or b")
        if not self.eps or any(not (np.isfinite(e) and e > 0) for e in self.eps):
            raise ValueError(f"--eps must be finite and > 0, got {self.eps!r}")


def n_classes_of(spec: DataSpec) -> int:
    return int(load_spec_cached(spec).meta["n_classes"])


# ------------------------------------------------------------------------------------------- targets
def make_targets(kind: str, y, n_classes: int, key: jax.Array) -> np.ndarray:
    """Target classes t (N,) int32 for labels y (N,) (see the module docstring for the rules). ``balanced``:
    quotas N/C per class (the remainder to random classes), points in random order each take the class
    with the largest remaining quota other than its own (ties at random); only when y alone is left does a
    point get t = y. Host-side (numpy) for ``balanced``, seeded from ``key``."""
    y = np.asarray(y).astype(np.int64)
    n, c = y.shape[0], int(n_classes)
    if kind == "det":
        return ((y + 1) % c).astype(np.int32)
    if kind == "rand":
        shift = np.asarray(jax.random.randint(key, (n,), 1, c))
        return ((y + shift) % c).astype(np.int32)
    if kind == "rand_any":
        return np.asarray(jax.random.randint(key, (n,), 0, c)).astype(np.int32)
    if kind != "balanced":
        raise ValueError(f"unknown targets {kind!r}; expected one of {', '.join(TARGETS)}")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).astype(np.uint32))
    quota = np.full(c, n // c)
    quota[rng.permutation(c)[: n % c]] += 1
    t = np.empty(n, np.int64)
    for i in rng.permutation(n):  # host-side assignment of N labels, not a training loop
        q = quota.astype(float) + rng.random(c) * 0.5  # random tie-break among equal quotas
        q[quota == 0] = -np.inf
        if quota.sum() > quota[y[i]]:
            q[y[i]] = -np.inf
        t[i] = int(np.argmax(q))
        quota[t[i]] -= 1
    return t.astype(np.int32)


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(key of f's init, key of g's init, key of the targets) of one seed."""
    k_f, k_g, k_t = jax.random.split(jax.random.PRNGKey(int(seed)), 3)
    return k_f, k_g, k_t


def _inputs(scenario: str, x: jax.Array, eta: jax.Array) -> jax.Array:
    return eta if scenario == "a" else x + eta


# -------------------------------------------------------------------------------------------- finite
@dataclass(frozen=True)
class Net:
    """f or g of the protocol: an architecture on the protocol's rows x (N, d) (:class:`~ntk_adv.perturbation.
    protocol.ArchFns`: images (H, W, C) for a cnn, the rows otherwise; the attacks keep exact row norms), as
    a plain net or a centred pair (params, params_0) -> f - f_0. Hashable (a static argument of the jitted
    steps)."""

    fns: ArchFns
    d: int

    @property
    def arch(self) -> Architecture:
        return self.fns.arch

    def apply(self, params, x):
        """Outputs (N, C); a centred net's params are the pair (params, params_0): f - f_0."""
        if isinstance(params, tuple):
            return self.fns.apply(params[0], x) - self.fns.apply(params[1], x)
        return self.fns.apply(params, x)

    def kernel(self, x1, x2):
        """The scalar NTK Theta (N1, N2) of the trained layers (the C-output NTK is Theta x I_C)."""
        return self.fns.kernel(x1, x2)

    def init(self, centered: bool, key):
        p = self.arch.init(key, self.fns.input_shape(self.d))
        return (p, p) if centered else p

    def mask(self, params):
        if isinstance(params, tuple):
            return centered_mask(self.arch.trainable_mask(params[0]))
        return self.arch.trainable_mask(params)


def make_net(setup: IlyasSetup, n_classes: int, d: int) -> Net:
    """:class:`Net` of ``setup`` with C outputs on rows of dimension d."""
    return Net(arch_fns(setup.net.architecture(n_classes), setup.data.name), int(d))


def _train(net: Net, train: TrainSpec, which: str, params, x, y):
    lr, steps = (train.lr_f, train.steps_f) if which == "f" else (train.lr_g, train.steps_g)
    return mc.train_net(net.apply, params, x, y, loss=train.loss, lr=lr, steps=steps, mask=net.mask(params))


def _g0(net: Net, params0):
    """The initial function of g as a closure (M, d) -> (M, C): zero for a centred net."""
    if isinstance(params0, tuple):
        return lambda z: jnp.zeros((z.shape[0], net.arch.n_out), z.dtype)
    return partial(net.apply, params0)


def _limit_g(kernel, train: TrainSpec, g0_fn, x_tr, y_tr, z):
    """Same-init limit of g (or Wallace's g_w) on z (M, d): g_0(z) + Theta(z, X) coef, (M, C)."""
    f0_train = g0_fn(x_tr)
    coef = mc.kernel_coefficients(
        train.loss, kernel(x_tr, x_tr), y_tr, f0_train, lr=train.lr_g, steps=train.steps_g
    )
    return g0_fn(z) + kernel(z, x_tr) @ coef


@partial(jax.jit, static_argnums=(0, 1, 2))
def _finite_f(net, train, centered, k_f, k_g, x, y, x_test):
    """Per seed (vmapped over k_f, k_g): train f on (x, y); Wallace's g_w (from g's initial parameters) on x
    relabelled by argmax f, and g_w's same-init limit. Returns (params_f, dict of (S, ...) arrays)."""

    def one(kf, kg):
        pf = _train(net, train, "f", net.init(centered, kf), x, y)
        pg0 = net.init(centered, kg)
        f_train = net.apply(pf, x)
        y_w = jnp.argmax(f_train, axis=1)
        pw = _train(net, train, "g", pg0, x, y_w)
        return pf, {
            "f_test": net.apply(pf, x_test),
            "f_acc_train": mc.accuracy(f_train, y),
            "w_test": net.apply(pw, x_test),
            "w_limit": _limit_g(net.kernel, train, _g0(net, pg0), x, y_w, x_test),
        }

    return jax.vmap(one)(k_f, k_g)


@partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _finite_combo(net, train, attack, scenario, centered, params_f, k_g, t, eps, x):
    """Per seed (vmapped over params_f, k_g, t): attack f toward t, train g on the relabelled set and build
    g's same-init limit. Returns eta-derived arrays: (x_adv, params_g, f(x + eta))."""

    def one(pf, kg, ts):
        f = partial(net.apply, pf)
        eta = mc.attack(attack.attack, f, x, ts, eps=eps, steps=attack.attack_steps, loss=attack.attack_loss)
        x_adv = _inputs(scenario, x, eta)
        pg = _train(net, train, "g", net.init(centered, kg), x_adv, ts)
        return x_adv, pg, f(x + eta)

    return jax.vmap(one)(params_f, k_g, t)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _finite_eval(net, train, centered, params_g, k_g, x_adv, t, x_test):
    """Per seed (vmapped): g on test and on its training set, and g's same-init limit on test."""

    def one(pg, kg, xa, ts):
        g0 = _g0(net, net.init(centered, kg))
        return net.apply(pg, x_test), net.apply(pg, xa), _limit_g(net.kernel, train, g0, xa, ts, x_test)

    return jax.vmap(one)(params_g, k_g, x_adv, t)


def _row(width, seed, eps, target, scenario, metric, value) -> dict:
    """One long-format row of the protocol's results."""
    return dict(
        width=width,
        seed=int(seed),
        eps=float(eps),
        target=target,
        scenario=scenario,
        metric=metric,
        value=float(value),
    )


def _np(a) -> np.ndarray:
    return np.asarray(a)


def _acc(out, y) -> float:
    return float(np.mean(np.argmax(_np(out), axis=1) == np.asarray(y).astype(np.int64)))


def _agree(a, b) -> float:
    return float(np.mean(np.argmax(_np(a), axis=1) == np.argmax(_np(b), axis=1)))


def run_finite(setup: IlyasSetup, seeds) -> list[dict]:
    """The protocol at finite width ``setup.net.width`` for all ``seeds`` (vmapped): long-format rows
    ``{width, seed, eps, target, scenario, metric, value}``. Rows of f and Wallace's control carry
    ``target = "none"`` / ``"wallace"``, ``scenario = "clean"`` and ``eps = 0``."""
    x, y, x_test, y_test = data_arrays(setup.data)
    c = n_classes_of(setup.data)
    net = make_net(setup, c, x.shape[1])
    keys = [seed_keys(s) for s in seeds]
    k_f = jnp.stack([k[0] for k in keys])
    k_g = jnp.stack([k[1] for k in keys])
    params_f, fout = _finite_f(net, setup.train, setup.net.centered, k_f, k_g, x, y, x_test)
    rows: list[dict] = []
    width = float(setup.net.width)

    def row(*cells):
        rows.append(_row(width, *cells))

    f_test = _np(fout["f_test"])
    for i, s in enumerate(seeds):
        row(s, 0.0, "none", "clean", "f_acc_test", _acc(f_test[i], y_test))
        row(s, 0.0, "none", "clean", "f_acc_train", float(fout["f_acc_train"][i]))
        w, wl = _np(fout["w_test"][i]), _np(fout["w_limit"][i])
        row(s, 0.0, "wallace", "clean", "wallace_acc_test", _acc(w, y_test))
        row(s, 0.0, "wallace", "clean", "wallace_agreement", _agree(w, f_test[i]))
        row(s, 0.0, "wallace", "clean", "wallace_acc_predicted", _acc(wl, y_test))
        row(s, 0.0, "wallace", "clean", "wallace_agreement_predicted", _agree(wl, f_test[i]))
    for kind in setup.targets:
        t = jnp.asarray(np.stack([make_targets(kind, y, c, k[2]) for k in keys]))
        for scenario in setup.scenarios:
            for eps in setup.eps:
                x_adv, params_g, f_adv = _finite_combo(
                    net,
                    setup.train,
                    setup.attack,
                    scenario,
                    setup.net.centered,
                    params_f,
                    k_g,
                    t,
                    jnp.asarray(eps, x.dtype),
                    x,
                )
                g_test, g_adv, g_lim = _finite_eval(
                    net, setup.train, setup.net.centered, params_g, k_g, x_adv, t, x_test
                )
                for i, s in enumerate(seeds):
                    _combo_rows(
                        row,
                        s,
                        eps,
                        kind,
                        scenario,
                        y_test,
                        t[i],
                        f_test[i],
                        f_adv[i],
                        g_test[i],
                        g_adv[i],
                        g_lim[i],
                    )
    return rows


def _combo_rows(row, s, eps, kind, scenario, y_test, t, f_test, f_adv, g_test, g_adv, g_lim) -> None:
    row(s, eps, kind, scenario, "g_acc_test", _acc(g_test, y_test))
    row(s, eps, kind, scenario, "g_acc_adv", _acc(g_adv, t))
    row(s, eps, kind, scenario, "agreement", _agree(g_test, f_test))
    row(s, eps, kind, scenario, "f_target_rate", _acc(f_adv, t))
    row(s, eps, kind, scenario, "acc_predicted", _acc(g_lim, y_test))
    row(s, eps, kind, scenario, "agreement_predicted", _agree(g_lim, f_test))


# ------------------------------------------------------------------------------------------ infinite
def run_infinite(setup: IlyasSetup, seeds) -> list[dict]:
    """The protocol in the kernel limit (centred: f_0 = g_0 = 0): f and g are
    :func:`ntk_adv.multiclass.make_predictor` kernel machines; the attack differentiates f's predictor. The
    seed enters through the targets only (``rand``, ``rand_any``, ``balanced``). Same rows as
    :func:`run_finite` with ``width = inf`` (the predictions equal the measurements here and are not
    written)."""
    x, y, x_test, y_test = data_arrays(setup.data)
    c = n_classes_of(setup.data)
    kernel = make_net(setup, c, x.shape[1]).kernel
    tr = setup.train
    f = mc.make_predictor(kernel, x, y, n_classes=c, loss=tr.loss, lr=tr.lr_f, steps=tr.steps_f)
    f_train, f_test = _np(f(x)), _np(f(x_test))
    y_w = np.argmax(f_train, axis=1)
    g_w = mc.make_predictor(kernel, x, y_w, n_classes=c, loss=tr.loss, lr=tr.lr_g, steps=tr.steps_g)
    w_test = _np(g_w(x_test))
    rows: list[dict] = []

    def row(*cells):
        rows.append(_row(INF_WIDTH, *cells))

    att = setup.attack
    attack = jax.jit(
        lambda ts, eps: mc.attack(att.attack, f, x, ts, eps=eps, steps=att.attack_steps, loss=att.attack_loss)
    )
    for s in seeds:
        row(s, 0.0, "none", "clean", "f_acc_test", _acc(f_test, y_test))
        row(s, 0.0, "none", "clean", "f_acc_train", _acc(f_train, y))
        row(s, 0.0, "wallace", "clean", "wallace_acc_test", _acc(w_test, y_test))
        row(s, 0.0, "wallace", "clean", "wallace_agreement", _agree(w_test, f_test))
        k_t = seed_keys(s)[2]
        for kind in setup.targets:
            t = jnp.asarray(make_targets(kind, y, c, k_t))
            for eps in setup.eps:
                eta = attack(t, jnp.asarray(eps, x.dtype))
                for scenario in setup.scenarios:
                    x_adv = _inputs(scenario, x, eta)
                    g = mc.make_predictor(
                        kernel, x_adv, t, n_classes=c, loss=tr.loss, lr=tr.lr_g, steps=tr.steps_g
                    )
                    g_test = _np(g(x_test))
                    row(s, eps, kind, scenario, "g_acc_test", _acc(g_test, y_test))
                    row(s, eps, kind, scenario, "g_acc_adv", _acc(_np(g(x_adv)), t))
                    row(s, eps, kind, scenario, "agreement", _agree(g_test, f_test))
                    row(s, eps, kind, scenario, "f_target_rate", _acc(_np(f(x + eta)), t))
    return rows


def run_cell(setup: IlyasSetup, seeds) -> list[dict]:
    """:func:`run_finite` or :func:`run_infinite` by ``setup.net.width`` (the ``run`` of
    :func:`ntk_adv.engine.run_rows`); every row also carries the ``arch`` and ``depth`` columns."""
    rows = run_infinite(setup, seeds) if setup.net.infinite else run_finite(setup, seeds)
    return [{**r, "arch": setup.net.arch, "depth": int(setup.net.depth)} for r in rows]
