"""Feature purification: adversarial training removes dense mixtures from the neurons (Allen-Zhu & Li).

Claim operationalized (Allen-Zhu & Li, "Feature purification: how adversarial training performs robust deep
learning", FOCS 2021): on sparse-coding data, clean training of a two-layer ReLU net in the feature-learning
regime reaches high clean accuracy, but every neuron carries a small *dense mixture* (a component spread over
many dictionary atoms, aligned across neurons) that makes the net non-robust; adversarial training started from
the clean weights *purifies* the neurons - it removes the dense mixtures, so each neuron concentrates on a few
atoms - and robust accuracy rises. Networks in the lazy / NTK regime, and their infinite-width kernel limit,
cannot purify (their features do not move) and stay non-robust at the same radius.

Data (one draw per seed): x = M z + xi with a dictionary M (d x D; ``orthogonal``: orthonormal columns,
D <= d; ``gaussian``: unit-norm random columns, near-orthonormal), z with exactly ``sparsity`` (odd) nonzero
entries of random sign, label y = sign(<w*, z>) with w* in {-1,+1}^D, noise xi ~ N(0, noise^2 I_d). The linear
classifier M w* (the densest possible feature) is accurate but has L2 robustness radius 1/sqrt(D) for half of
the points; an ideal *purified* net ``f*(x) = sum_j w*_j [relu(<M_j,x> - b) - relu(-<M_j,x> - b)]`` (the
``oracle``, 2D pure neurons, b = ``oracle_threshold``) is robust to ~(1-b)/sqrt(sparsity) in L2.

Models (both layers trained, leaky-ReLU slope 0, bias, logistic loss, full-batch gradient descent):

* ``clean``        feature-learning regime: standard parametrization, small initialization (``init_scale``),
                   the readout trained too (with a frozen readout of size init_scale the first layer could not
                   learn); ``steps`` of GD with step ``lr``.
* ``adversarial``  the clean net, then ``adv_steps`` of adversarial training: every step attacks the current
                   net on the training set (``adv_attack``: fgm / pgd_l2 / pgd_linf, untargeted, radius
                   ``adv_eps`` in that attack's norm) and takes a GD step on the loss at x + eta.
* ``lazy``         lazy / NTK regime: NTK parametrization, init_scale 1, width ``lazy_width``, readout trained.
* ``ntk_limit``    its infinite-width limit: ``limits.make_predictor`` with the matching kernel
                   (NTK parametrization, readout trained: Phi (x.z/d + 1) + Sigma), logistic-loss kernel flow for
                   the same time lazy_lr * lazy_steps, centred (f_0 = 0).
* ``oracle``       the ideal purified net above (not trained; a reference for the achievable robustness).

Neuron metrics (coefficients c_i = M^T w_i): ``purity`` = max_j |<M_j, w_i>| / (||M_j|| ||w_i||);
decomposition w_i = beta w'_i + v_i with beta w'_i the projection of w_i onto the span of its ``pure_atoms``
largest-|coefficient| atoms and v_i the rest; ``dense_mass`` = ||v_i||^2 / ||w_i||^2; ``pure_fraction`` =
share of neurons with ||beta w'_i|| > ||v_i||. All three are averaged over neurons weighted by the neuron's
importance |a_i| ||w_i|| (after small-init training most neurons stay tiny and random; they carry no output).
``weight_move`` = ||W_T - W_0||_F / ||W_0||_F (regime diagnostic: >> 1 rich, << 1 lazy).
Accuracies: clean test accuracy, robust test accuracy under untargeted PGD (identity margin loss, targets -y,
``eval_steps`` steps of size 2.5 eps / eval_steps) at L2 radius ``eps_l2`` and L-inf radius ``eps_linf``.

Predictions and verdicts (means over seeds, 95% Student-t intervals, paired over seeds for differences):

1. ``clean_non_robust``: clean net clean accuracy >= 0.9 and robust accuracy <= clean accuracy - ``margin``
   in both norms.
2. ``purification``: adversarial training raises purity and the pure fraction and lowers the dense mass
   (paired 95% interval of the change excludes 0 in the predicted direction).
3. ``robustness``: adversarial training raises robust accuracy in the trained norm (L2 by default; paired
   interval excludes 0); the other norm is reported.
4. ``ntk_non_robust``: the NTK limit's robust accuracy <= its clean accuracy - ``margin`` in both norms and
   below the adversarially trained net's robust accuracy in the trained norm.

Outputs in ``out``: results.csv (long format: model, seed, metric, value; plus trajectory rows with a ``step``
column), neurons.csv (per-neuron purity and importance, for the histogram), summary.json, purification.png/pdf.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ntk_adv import attacks, kernels, limits, models, plots, training
from ntk_adv.metrics import accuracy, mean_ci
from ntk_adv.results import provenance, verdict, with_reason, write_csv, write_json
from ntk_adv.training import TrainConfig, train

COMMAND = "purification"
MODELS = ("clean", "adversarial", "lazy", "ntk_limit", "oracle")
ACC_METRICS = ("clean_acc", "robust_acc_l2", "robust_acc_linf")
NEURON_METRICS = ("purity", "dense_mass", "pure_fraction", "weight_move")
ADV_ATTACKS = ("fgm", "pgd_l2", "pgd_linf")
DICTIONARIES = ("orthogonal", "gaussian")
LOSS = "logistic"


@dataclass(frozen=True)
class Config:
    seeds: int = 4
    # data: sparse coding x = M z + noise
    d: int = 32
    n_atoms: int = 32
    dictionary: str = "orthogonal"
    sparsity: int = 3
    noise: float = 0.01
    n_train: int = 1000
    n_test: int = 500
    # feature-learning regime (standard parametrization, small init, readout trained)
    width: int = 256
    init_scale: float = 0.01
    lr: float = 0.5
    steps: int = 1000
    # adversarial training from the clean weights
    adv_attack: str = "pgd_l2"
    adv_eps: float = 0.25
    adv_attack_steps: int = 3
    adv_lr: float = 0.5
    adv_steps: int = 2000
    checkpoints: int = 10
    # lazy / NTK regime (NTK parametrization, init_scale 1, readout trained)
    lazy_width: int = 1024
    lazy_lr: float = 4.0
    lazy_steps: int = 250
    # evaluation
    eps_l2: float = 0.2
    eps_linf: float = 0.05
    eval_steps: int = 20
    pure_atoms: int = 1
    oracle_threshold: float = 0.5
    margin: float = 0.2
    seed: int = 0

    def __post_init__(self):
        ints = {"seeds": 1, "d": 1, "n_atoms": 1, "sparsity": 1, "n_train": 2, "n_test": 1, "width": 1,
                "steps": 1, "adv_attack_steps": 1, "adv_steps": 1, "checkpoints": 1, "lazy_width": 1,
                "lazy_steps": 1, "eval_steps": 1, "pure_atoms": 1}
        for name, low in ints.items():
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.dictionary not in DICTIONARIES:
            raise ValueError(f"unknown dictionary {self.dictionary!r}; expected one of {', '.join(DICTIONARIES)}")
        if self.dictionary == "orthogonal" and self.n_atoms > self.d:
            raise ValueError(f"an orthogonal dictionary needs n_atoms <= d, got n_atoms={self.n_atoms} > d={self.d}"
                             " (use --dictionary gaussian for an overcomplete, near-orthonormal dictionary)")
        if self.sparsity > self.n_atoms:
            raise ValueError(f"sparsity must be <= n_atoms, got {self.sparsity} > {self.n_atoms}")
        if self.sparsity % 2 == 0:
            raise ValueError(f"sparsity must be odd so that the label sign(<w*, z>) is never 0, got {self.sparsity}")
        if self.pure_atoms > self.n_atoms:
            raise ValueError(f"pure_atoms must be <= n_atoms, got {self.pure_atoms} > {self.n_atoms}")
        if self.adv_attack not in ADV_ATTACKS:
            raise ValueError(f"unknown adversarial-training attack {self.adv_attack!r}; expected one of "
                             f"{', '.join(ADV_ATTACKS)}")
        if self.adv_steps % self.checkpoints:
            raise ValueError(f"adv_steps ({self.adv_steps}) must be a multiple of checkpoints ({self.checkpoints})")
        for name in ("noise", "adv_eps", "eps_l2", "eps_linf", "oracle_threshold"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
        for name in ("lr", "adv_lr", "lazy_lr"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v!r}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {self.margin!r}")
        self.rich_net()
        self.lazy_net()

    def rich_net(self) -> models.TwoLayerConfig:
        return models.TwoLayerConfig(self.width, gamma=0.0, bias=True, train_readout=True,
                                     parametrization="standard", init_scale=self.init_scale)

    def lazy_net(self) -> models.TwoLayerConfig:
        return models.TwoLayerConfig(self.lazy_width, gamma=0.0, bias=True, train_readout=True,
                                     parametrization="ntk", init_scale=1.0)

    def kernel(self) -> kernels.KernelFn:
        return kernels.two_layer_kernel("ntk", gamma=0.0, bias=True, parametrization="ntk", train_readout=True)

    def adv_norm(self) -> str:
        return "linf" if self.adv_attack == "pgd_linf" else "l2"


# ------------------------------------------------------------------------------------------------ data
def make_problem(cfg: Config, seed: int) -> dict[str, np.ndarray]:
    """One sparse-coding problem (numpy, float32): dictionary ``dic`` (d, D), ``w_star`` (D,), train/test
    inputs and labels. Deterministic in (cfg.seed, seed)."""
    rng = np.random.default_rng([cfg.seed, seed])
    d, big_d = cfg.d, cfg.n_atoms
    g = rng.standard_normal((d, big_d))
    if cfg.dictionary == "orthogonal":
        q, r = np.linalg.qr(g)
        dic = q * np.where(np.diagonal(r) >= 0, 1.0, -1.0)[None, :]
    else:
        dic = g / np.linalg.norm(g, axis=0, keepdims=True)
    w_star = rng.choice([-1.0, 1.0], big_d)

    def sample(n):
        support = np.argsort(rng.random((n, big_d)), axis=1)[:, : cfg.sparsity]
        z = np.zeros((n, big_d))
        np.put_along_axis(z, support, rng.choice([-1.0, 1.0], (n, cfg.sparsity)), axis=1)
        x = z @ dic.T + cfg.noise * rng.standard_normal((n, d))
        return x.astype(np.float32), np.sign(z @ w_star).astype(np.float32)

    x, y = sample(cfg.n_train)
    xt, yt = sample(cfg.n_test)
    return {"dic": dic.astype(np.float32), "w_star": w_star.astype(np.float32), "x": x, "y": y,
            "x_test": xt, "y_test": yt}


def make_problems(cfg: Config) -> dict[str, jax.Array]:
    """The problems of all seeds, stacked along a leading seed axis."""
    probs = [make_problem(cfg, s) for s in range(cfg.seeds)]
    return {k: jnp.asarray(np.stack([p[k] for p in probs])) for k in probs[0]}


def oracle_params(dic: jax.Array, w_star: jax.Array, threshold: float) -> models.TwoLayerParams:
    """The ideal purified net (standard parametrization, width 2D): neurons +-M_j, bias -threshold, readout
    +-w*_j, i.e. f(x) = sum_j w*_j [relu(<M_j,x> - b) - relu(-<M_j,x> - b)]."""
    w = jnp.concatenate([dic.T, -dic.T], axis=0)
    return models.TwoLayerParams(w=w, b=jnp.full((w.shape[0],), -threshold), a=jnp.concatenate([w_star, -w_star]))


def oracle_net(cfg: Config) -> models.TwoLayerConfig:
    return models.TwoLayerConfig(2 * cfg.n_atoms, gamma=0.0, bias=True, parametrization="standard")


# ------------------------------------------------------------------------------------------------ metrics
def neuron_stats(w: jax.Array, a: jax.Array, dic: jax.Array, pure_atoms: int) -> dict[str, jax.Array]:
    """Per-neuron purity, dense mass, pure indicator (||beta w'|| > ||v||) and importance |a_i| ||w_i||.

    ``w`` (m, d) first-layer weights, ``a`` (m,) readout, ``dic`` (d, D) the dictionary."""
    atom_norms = jnp.linalg.norm(dic, axis=0)
    w_norm = jnp.linalg.norm(w, axis=1)
    corr = (w @ dic) / jnp.broadcast_to(atom_norms[None, :], (w.shape[0], dic.shape[1]))  # <M_j, w>/||M_j||
    safe_w = jnp.where(w_norm > 0, w_norm, 1.0)
    purity = jnp.max(jnp.abs(corr), axis=1) / safe_w
    _, top = jax.lax.top_k(jnp.abs(corr), pure_atoms)  # (m, s)

    def project(wi, idx):  # projection of w_i onto the span of its top atoms (least squares)
        basis = dic[:, idx]  # (d, s)
        coef = jnp.linalg.solve(basis.T @ basis, basis.T @ wi)
        return basis @ coef

    pure_part = jax.vmap(project)(w, top)
    dense_part = w - pure_part
    pure_norm = jnp.linalg.norm(pure_part, axis=1)
    dense_norm = jnp.linalg.norm(dense_part, axis=1)
    return {"purity": purity, "dense_mass": (dense_norm / safe_w) ** 2,
            "pure": (pure_norm > dense_norm).astype(w.dtype), "importance": jnp.abs(a) * w_norm}


def summarize_neurons(stats: dict[str, jax.Array]) -> dict[str, jax.Array]:
    weight = stats["importance"] / jnp.sum(stats["importance"])
    return {"purity": jnp.sum(weight * stats["purity"]), "dense_mass": jnp.sum(weight * stats["dense_mass"]),
            "pure_fraction": jnp.sum(weight * stats["pure"])}


def robust_accuracy(predict, x, y, *, eps: float, norm: str, steps: int) -> jax.Array:
    """Accuracy under untargeted PGD (targeted toward -y), identity margin loss, step 2.5 eps / steps."""
    if eps == 0:
        return accuracy(predict(x), y)
    eta = attacks.pgd(predict, x, -y, eps=eps, step_size=2.5 * eps / steps, steps=steps, norm=norm)
    return accuracy(predict(x + eta), y)


def accuracies(cfg: Config, predict, x, y) -> dict[str, jax.Array]:
    return {"clean_acc": accuracy(predict(x), y),
            "robust_acc_l2": robust_accuracy(predict, x, y, eps=cfg.eps_l2, norm="l2", steps=cfg.eval_steps),
            "robust_acc_linf": robust_accuracy(predict, x, y, eps=cfg.eps_linf, norm="linf", steps=cfg.eval_steps)}


def net_metrics(cfg: Config, net: models.TwoLayerConfig, params, params0, prob) -> dict[str, jax.Array]:
    apply_fn = models.make_apply(net)
    out = accuracies(cfg, lambda q: apply_fn(params, q), prob["x_test"], prob["y_test"])
    out.update(summarize_neurons(neuron_stats(params.w, params.a, prob["dic"], cfg.pure_atoms)))
    out["weight_move"] = jnp.linalg.norm(params.w - params0.w) / jnp.linalg.norm(params0.w)
    return out


# ------------------------------------------------------------------------------------------------ training
def adversarial_attack(cfg: Config):
    """``attack(predict, x, y) -> eta``: the untargeted training attack (targets -y, identity margin loss)."""
    if cfg.adv_attack == "fgm":
        return lambda predict, x, y: attacks.fgm(predict, x, -y, eps=cfg.adv_eps)
    norm = cfg.adv_norm()
    step = 2.5 * cfg.adv_eps / cfg.adv_attack_steps
    return lambda predict, x, y: attacks.pgd(predict, x, -y, eps=cfg.adv_eps, step_size=step,
                                             steps=cfg.adv_attack_steps, norm=norm)


def adversarial_train(cfg: Config, net: models.TwoLayerConfig, params, x, y, steps: int):
    """``steps`` of adversarial training (:func:`ntk_adv.training.adversarial_train`, alpha = 0): attack the
    current net, then one gradient step at x + eta."""
    attack = adversarial_attack(cfg)
    return training.adversarial_train(models.make_apply(net), params, x, y,
                                      perturb=lambda f, x, y, k: attack(f, x, y), alpha=0.0, loss=LOSS,
                                      lr=cfg.adv_lr, steps=steps)


def seed_keys(cfg: Config) -> jax.Array:
    return jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)


def stage_train(cfg: Config, key, prob):
    """Clean feature-learning training, then adversarial training from the clean weights in ``checkpoints``
    chunks. Returns the initial and clean parameters and the parameters after each chunk (leading axis)."""
    net = cfg.rich_net()
    p0 = models.init_params(net, cfg.d, key=jax.random.fold_in(key, 1))
    tcfg = TrainConfig.theory(lr=cfg.lr, steps=cfg.steps, loss=LOSS, record_loss=False)
    p_clean = train(models.make_apply(net), p0, prob["x"], prob["y"], tcfg, mask=models.trainable_mask(net)).params
    chunk = cfg.adv_steps // cfg.checkpoints

    def body(p, _):
        p = adversarial_train(cfg, net, p, prob["x"], prob["y"], chunk)
        return p, p

    _, p_adv = jax.lax.scan(body, p_clean, None, length=cfg.checkpoints)
    return p0, p_clean, p_adv


def stage_evaluate(cfg: Config, prob, p0, p_clean, p_adv):
    """Metrics and per-neuron statistics of the clean net and of every adversarial-training checkpoint
    (one compiled evaluation for all of them). ``weight_move`` is measured from the initialization for the
    clean net and from the clean weights for the checkpoints. Returns ((C+1,) metrics, (C+1, m) stats)."""
    net = cfg.rich_net()
    stack = jax.tree_util.tree_map(lambda c, a: jnp.concatenate([c[None], a]), p_clean, p_adv)
    refs = jax.tree_util.tree_map(lambda i, c, a: jnp.concatenate([i[None], jnp.broadcast_to(c, a.shape)]),
                                  p0, p_clean, p_adv)

    def one(p, ref):
        return net_metrics(cfg, net, p, ref, prob), neuron_stats(p.w, p.a, prob["dic"], cfg.pure_atoms)

    return jax.vmap(one)(stack, refs)


def stage_references(cfg: Config, key, prob):
    """The lazy-regime net (NTK parametrization), its infinite-width kernel predictor and the purified oracle,
    with their metrics."""
    net = cfg.lazy_net()
    p0 = models.init_params(net, cfg.d, key=jax.random.fold_in(key, 2))
    tcfg = TrainConfig.theory(lr=cfg.lazy_lr, steps=cfg.lazy_steps, loss=LOSS, record_loss=False)
    apply_fn = models.make_apply(net)
    p1 = train(apply_fn, p0, prob["x"], prob["y"], tcfg, mask=models.trainable_mask(net)).params
    lazy = net_metrics(cfg, net, p1, p0, prob)
    limit = limits.make_predictor(cfg.kernel(), prob["x"], prob["y"], loss=LOSS, lr=cfg.lazy_lr,
                                  steps=cfg.lazy_steps)
    lazy["agreement_with_limit"] = jnp.mean(jnp.sign(apply_fn(p1, prob["x_test"])) == jnp.sign(limit(prob["x_test"])))
    oracle = oracle_params(prob["dic"], prob["w_star"], cfg.oracle_threshold)
    oracle_fn = models.make_apply(oracle_net(cfg))
    m_oracle = accuracies(cfg, lambda q: oracle_fn(oracle, q), prob["x_test"], prob["y_test"])
    m_oracle.update(summarize_neurons(neuron_stats(oracle.w, oracle.a, prob["dic"], cfg.pure_atoms)))
    return {"lazy": lazy, "ntk_limit": accuracies(cfg, limit, prob["x_test"], prob["y_test"]), "oracle": m_oracle}


# ------------------------------------------------------------------------------------------------ main
def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def run(cfg: Config, progress: bool = True) -> tuple[dict, dict, dict, dict]:
    """All stages, each a single jitted vmap over seeds. Returns (metrics[model][metric] -> (seeds,),
    trajectory[metric] -> (seeds, checkpoints + 1), neurons[model][stat] -> (seeds, m), timings)."""
    keys = seed_keys(cfg)
    timings: dict[str, float] = {}
    bar = tqdm(total=3, desc="purification: stages", disable=None if progress else True)

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        timings[name] = time.perf_counter() - t0
        bar.set_postfix_str(f"{name} {timings[name]:.0f}s")
        bar.update(1)
        return out

    prob = make_problems(cfg)
    p0, p_clean, p_adv = timed("train (clean + adversarial)", jax.jit(jax.vmap(lambda k, pr: stage_train(cfg, k, pr))),
                               keys, prob)
    traj, stats = timed("evaluate", jax.jit(jax.vmap(lambda *a: stage_evaluate(cfg, *a))), prob, p0, p_clean, p_adv)
    refs = timed("lazy + NTK limit + oracle", jax.jit(jax.vmap(lambda k, pr: stage_references(cfg, k, pr))),
                 keys, prob)
    bar.close()
    traj, stats = _np(traj), _np(stats)  # (seeds, C + 1, ...): index 0 the clean net, -1 the final one
    metrics = {"clean": {k: v[:, 0] for k, v in traj.items()},
               "adversarial": {k: v[:, -1] for k, v in traj.items()}, **_np(refs)}
    neurons = {"clean": {k: v[:, 0] for k, v in stats.items()},
               "adversarial": {k: v[:, -1] for k, v in stats.items()}}
    traj.pop("weight_move")  # measured from different references along the trajectory
    return metrics, traj, neurons, timings


def _interval(values) -> dict:
    ci = mean_ci(values)
    return {"mean": ci.mean, "ci95": [ci.low, ci.high]}


def predictions(cfg: Config, metrics: dict) -> dict:
    """The four predictions with measured values and verdicts (see the module docstring)."""
    c, a, k = metrics["clean"], metrics["adversarial"], metrics["ntk_limit"]
    mean = lambda v: float(np.mean(v))
    trained = "robust_acc_" + cfg.adv_norm()
    other = "robust_acc_" + ("l2" if cfg.adv_norm() == "linf" else "linf")

    def diff(metric):
        return _interval(a[metric] - c[metric])

    out = {}
    out["clean_non_robust"] = {
        "prediction": f"clean training: clean accuracy >= 0.9 and robust accuracy <= clean - {cfg.margin} (L2, L-inf)",
        "clean_acc": _interval(c["clean_acc"]), "robust_acc_l2": _interval(c["robust_acc_l2"]),
        "robust_acc_linf": _interval(c["robust_acc_linf"]),
        "verdict": verdict(mean(c["clean_acc"]) >= 0.9
                            and mean(c["robust_acc_l2"]) <= mean(c["clean_acc"]) - cfg.margin
                            and mean(c["robust_acc_linf"]) <= mean(c["clean_acc"]) - cfg.margin)}
    d_pur, d_dense, d_frac = diff("purity"), diff("dense_mass"), diff("pure_fraction")
    out["purification"] = {
        "prediction": "adversarial training raises purity and the pure fraction, lowers the dense mass "
                      "(paired 95% interval excludes 0)",
        "purity_before": _interval(c["purity"]), "purity_after": _interval(a["purity"]),
        "dense_mass_before": _interval(c["dense_mass"]), "dense_mass_after": _interval(a["dense_mass"]),
        "pure_fraction_before": _interval(c["pure_fraction"]), "pure_fraction_after": _interval(a["pure_fraction"]),
        "purity_change": d_pur, "dense_mass_change": d_dense, "pure_fraction_change": d_frac,
        "verdict": verdict(d_pur["ci95"][0] > 0 and d_dense["ci95"][1] < 0 and d_frac["ci95"][0] > 0)}
    d_rob, d_other = diff(trained), diff(other)
    out["robustness"] = {
        "prediction": f"adversarial training raises {trained} (paired 95% interval excludes 0)",
        f"{trained}_before": _interval(c[trained]), f"{trained}_after": _interval(a[trained]),
        f"{trained}_change": d_rob, f"{other}_change": d_other,
        "clean_acc_after": _interval(a["clean_acc"]),
        "verdict": verdict(d_rob["ci95"][0] > 0)}
    out["ntk_non_robust"] = {
        "prediction": f"NTK limit: robust accuracy <= clean - {cfg.margin} (L2, L-inf) and below the adversarially "
                      f"trained net's {trained}",
        "clean_acc": _interval(k["clean_acc"]), "robust_acc_l2": _interval(k["robust_acc_l2"]),
        "robust_acc_linf": _interval(k["robust_acc_linf"]),
        "verdict": verdict(mean(k["robust_acc_l2"]) <= mean(k["clean_acc"]) - cfg.margin
                            and mean(k["robust_acc_linf"]) <= mean(k["clean_acc"]) - cfg.margin
                            and mean(k[trained]) < mean(a[trained]))}
    return out


def main(cfg: Config = Config(), out: str | Path = "runs/purification", *, progress: bool = True) -> dict:
    """Run the experiment, write results.csv, neurons.csv, summary.json and the figure; return the summary."""
    out = Path(out)
    t0 = time.perf_counter()
    metrics, traj, neurons, timings = run(cfg, progress)

    rows = []
    for model, res in metrics.items():
        for metric, vals in res.items():
            rows += [{"model": model, "seed": s, "step": None, "metric": metric, "value": float(v)}
                     for s, v in enumerate(vals)]
    chunk = cfg.adv_steps // cfg.checkpoints
    for metric, vals in traj.items():
        for s in range(cfg.seeds):
            rows += [{"model": "adversarial_trajectory", "seed": s, "step": i * chunk, "metric": metric,
                      "value": float(v)} for i, v in enumerate(vals[s])]
    write_csv(rows, out / "results.csv")
    neuron_rows = []
    for model, st in neurons.items():
        for s in range(cfg.seeds):
            neuron_rows += [{"model": model, "seed": s, "neuron": i, "purity": float(st["purity"][s, i]),
                             "dense_mass": float(st["dense_mass"][s, i]), "importance": float(st["importance"][s, i])}
                            for i in range(st["purity"].shape[1])]
    write_csv(neuron_rows, out / "neurons.csv")

    summary: dict = {"experiment": COMMAND, "config": asdict(cfg), **provenance(),
                     "dense_direction_purity": 1.0 / np.sqrt(cfg.n_atoms),
                     "models": {m: {k: _interval(v) for k, v in res.items()} for m, res in metrics.items()},
                     "predictions": {k: with_reason(v) for k, v in predictions(cfg, metrics).items()},
                     "timings_s": {**timings, "total": time.perf_counter() - t0}}
    summary["verdicts"] = {name: p["verdict"] for name, p in summary["predictions"].items()}
    write_json(summary, out / "summary.json")
    plot(rows, neuron_rows, summary, out)
    if progress is not False:
        report(summary, out)
    return summary


def report(summary: dict, out: Path) -> None:
    models_ = summary["models"]
    print(f"{'model':<12} {'clean':>7} {'rob L2':>7} {'rob Linf':>8} {'purity':>7} {'dense':>7}")
    for m, res in models_.items():
        cells = [res.get(k, {}).get("mean", np.nan) for k in (*ACC_METRICS, "purity", "dense_mass")]
        print(f"{m:<12} " + " ".join(f"{v:7.3f}" for v in cells))
    for name, p in summary["predictions"].items():
        print(f"[{p['verdict']}] {name}: {p['prediction']}")
    print(f"Wrote {out}/ in {summary['timings_s']['total']:.0f}s")


# ------------------------------------------------------------------------------------------------ figure
LABELS = {"clean": "clean (rich)", "adversarial": "adv. trained", "lazy": "lazy net", "ntk_limit": "NTK limit",
          "oracle": "purified oracle"}
METRIC_LABELS = {"clean_acc": "clean", "robust_acc_l2": r"robust $\ell_2$", "robust_acc_linf": r"robust $\ell_\infty$"}


def plot(rows, neuron_rows, summary, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    with plt.rc_context(plots.PAPER_RC):
        return _plot(plt, rows, neuron_rows, summary, out)


def _plot(plt, rows, neuron_rows, summary, out: Path) -> list[Path]:
    cfg = summary["config"]
    fig, (ax_acc, ax_hist, ax_traj) = plots.new_figure(3, 3.6, 2.9)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    # (a) accuracies per model, mean and 95% interval over seeds
    width = 0.26
    for j, metric in enumerate(ACC_METRICS):
        means, errs = [], []
        for model in MODELS:
            vals = [r["value"] for r in rows if r["model"] == model and r["metric"] == metric]
            ci = mean_ci(vals)
            means.append(ci.mean)
            errs.append(ci.half_width)
        xs = np.arange(len(MODELS)) + (j - 1) * width
        ax_acc.bar(xs, means, width, yerr=errs, capsize=2, color=colors[j], label=METRIC_LABELS[metric],
                   error_kw={"lw": 0.8})
    ax_acc.set_xticks(np.arange(len(MODELS)), [LABELS[m] for m in MODELS], rotation=30, ha="right")
    ax_acc.set_ylim(0, 1.22)
    ax_acc.set_yticks(np.linspace(0, 1, 6))
    ax_acc.axhline(0.5, ls=":", color="0.5", lw=0.8)
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title(rf"(a) accuracy; $\epsilon_2$={cfg['eps_l2']:g}, $\epsilon_\infty$={cfg['eps_linf']:g}")
    ax_acc.legend(frameon=False, loc="upper center", ncol=3, fontsize=7, handlelength=1.2, columnspacing=1.0)

    # (b) importance-weighted histogram of per-neuron purity, pooled over seeds
    bins = np.linspace(0, 1, 26)
    for j, model in enumerate(("clean", "adversarial")):
        pur = np.array([r["purity"] for r in neuron_rows if r["model"] == model])
        imp = np.array([r["importance"] for r in neuron_rows if r["model"] == model])
        ax_hist.hist(pur, bins=bins, weights=imp / imp.sum(), histtype="stepfilled", alpha=0.35,
                     color=colors[3 + j], edgecolor=colors[3 + j], lw=1.0, label=LABELS[model])
    ax_hist.axvline(summary["dense_direction_purity"], ls="--", color="k", lw=1.0,
                    label=r"dense direction $Mw^*$ ($1/\sqrt{D}$)")
    ax_hist.axvline(1.0, ls=":", color="k", lw=1.0, label="pure atom")
    ax_hist.set_xlabel(r"neuron purity $\max_j |\langle M_j, w_i\rangle| / \|w_i\|$")
    ax_hist.set_ylabel("share of output weight")
    ax_hist.set_title(r"(b) neuron purity, weighted by $|a_i|\,\|w_i\|$")
    ax_hist.legend(frameon=False, fontsize=6)

    # (c) trajectory during adversarial training
    traj = [r for r in rows if r["model"] == "adversarial_trajectory"]
    trained = "robust_acc_" + ("linf" if cfg["adv_attack"] == "pgd_linf" else "l2")
    for j, (metric, label) in enumerate([("purity", "purity"), ("dense_mass", "dense mass"),
                                         (trained, METRIC_LABELS[trained] + " acc."),
                                         ("clean_acc", "clean acc.")]):
        plots.plot_metric(ax_traj, traj, "step", metric, label=label, color=colors[(j + 3) % len(colors)], logx=None)
    oracle = summary["models"]["oracle"][trained]["mean"]
    plots.theory_line(ax_traj, oracle, label=f"oracle {METRIC_LABELS[trained]} acc.", color="0.3")
    ax_traj.set_ylim(0, 1.05)
    ax_traj.set_xlabel(f"adversarial training step ({cfg['adv_attack']}, eps={cfg['adv_eps']:g})")
    ax_traj.set_ylabel("value (mean, 95% CI)")
    ax_traj.set_title("(c) purification during adversarial training")
    ax_traj.legend(frameon=False, fontsize=6, loc="lower right", ncol=2)
    fig.suptitle(f"Feature purification: sparse coding d={cfg['d']}, D={cfg['n_atoms']}, k={cfg['sparsity']}, "
                 f"width {cfg['width']}, {cfg['seeds']} seeds", fontsize=9)
    fig.tight_layout()
    return plots.save(fig, out, "purification")
