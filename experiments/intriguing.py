"""Intriguing properties of neural networks (Szegedy et al. 2014), at finite and infinite width.

Claims, measured on centred two-layer nets f(x; theta_t) - f(x; theta_0) of several widths (first layer trained
with full-batch gradient descent on the logistic loss, frozen readout) and on their infinite-width limit, the
kernel predictor f(z) = Theta(z, X) coef (docs/theory.md):

(a) Box-constrained L-BFGS (``attacks.minimal_lbfgs_distortion``, pixel box) finds a misclassifying perturbation
    for every test point; the mean minimal distortion (RMS per pixel, ||eta||_2 / sqrt(d)) of finite nets
    converges to the infinite-width value as the width grows (per-point relative gap ~ m^(-1/2)). Weight decay:
    an L2 penalty (lambda/2) ||theta - theta_0||^2 on the trained layer - anchored at the initialization, the
    form whose infinite-width limit is exact (kernel gradient flow with coef <- (1 - lr lambda) coef - ...).
    Szegedy et al. report that stronger weight decay raises the minimal distortion; measured here.
(b) Gaussian noise of norm 1x, 2x, 5x the mean minimal adversarial distortion leaves the error near the clean
    error, while the adversarial perturbation (1x) misclassifies every point.
(c) Transfer: the error of every model on every other model's minimal L-BFGS examples x + eta and on the
    amplified x + k eta (k = ``amplify``, clipped to the box), across widths, seeds, the limit and nets trained on
    two disjoint halves of the training set. Minimal examples sit on the decision boundary, so their transfer is
    near a coin flip; the smallest k - 1 at which 90% of them transfer measures how far apart two models'
    boundaries are. Prediction (lazy regime: all nets converge to one function): the transfer between two
    finite nets of the same width rises with the width toward the net-to-limit transfer, and the amplification
    needed shrinks (like m^(-1/2)).
(d) Units vs random directions: the top-k label purity of a hidden unit's pre-activation equals that of a
    random direction of the pre-activation space within the 95% interval (lazy regime: trained units stay
    Gaussian random projections); random directions of the activation space and the chance level are reported.
(e) The product-of-operator-norms Lipschitz bound ||W||_2 ||a||_2 (leaky ReLU is 1-Lipschitz) over the true mean
    input-gradient norm of the (uncentred) trained net grows with the width, approximately as
    (1 + sqrt(m/d)) / sqrt((1 + gamma^2)/2) (random-matrix norms; asymptotic slope 1/2).

Outputs in ``out``: results.csv (long format: part, model, width, seed, decay, train_set, source, target,
variant, metric, value), summary.json (each prediction with its measured value and a ``verdict`` in ``claims``),
figures intriguing_distortion, intriguing_noise, intriguing_transfer, intriguing_probes (.png and .pdf).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from ntk_adv import attacks, kernels, limits, models, plots
from ntk_adv.data import DataSpec, load_spec
from ntk_adv.losses import MARGIN_LOSSES, margin_loss_derivative, pointwise_loss
from ntk_adv.metrics import fit_loglog_slope, mean_ci
from ntk_adv.models import apply_in_chunks
from ntk_adv.results import claims_table, prediction, provenance, select, write_csv, write_json
from ntk_adv.training import centered

COMMAND = "intriguing"
ATTACK_LOSS = "logistic"  # Szegedy et al.'s cross-entropy, binary form
PARTS = "abcde"
LIPSCHITZ_METRICS = ("lipschitz_bound", "grad_norm", "lipschitz_ratio", "lipschitz_bound_init", "grad_norm_init",
                     "lipschitz_ratio_init")


@dataclass(frozen=True)
class Config:
    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=None, n_test=None))
    widths: tuple[int, ...] = (16, 64, 256, 1024)  # (a) distortion vs width, (b) noise, (c) transfer
    seeds: int = 3
    loss: str = "logistic"
    lr: float = 0.5
    steps: int = 200
    decays: tuple[float, ...] = (0.0, 0.001, 0.01, 0.1)  # (a) anchored weight decay lambda
    decay_width: int = 256
    n_attack: int = 50  # test points attacked
    c_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    refine_steps: int = 5
    lbfgs_steps: int = 50
    noise_multiples: tuple[float, ...] = (1.0, 2.0, 5.0)
    noise_draws: int = 20
    noise_tolerance: float = 0.15  # noise may raise the error by at most this much over the clean error
    amplify: float = 1.1  # the amplified variant x + amplify * eta (2x already transfers to every model here)
    transfer_width: int = 1024  # width of the nets trained on the two disjoint halves
    probe_widths: tuple[int, ...] = (16, 64, 256, 1024, 4096)  # (d) purity, (e) Lipschitz
    top_k: int = 10
    n_directions: int = 256
    purity_tolerance: float = 0.02
    gamma: float = 0.0
    parametrization: str = "standard"
    parts: str = PARTS  # which parts to run, any subset of "abcde"
    seed: int = 0

    def __post_init__(self):
        if not self.parts or set(self.parts) - set(PARTS):
            raise ValueError(f"parts must be a non-empty subset of {PARTS!r}, got {self.parts!r}")
        for name in ("widths", "probe_widths"):
            v = getattr(self, name)
            if len(v) < 3 or min(v) < 1 or len(set(v)) != len(v):
                raise ValueError(f"{name} must hold >= 3 distinct integers >= 1 (for a slope fit), got {v}")
        for name in ("seeds", "n_attack", "noise_draws", "top_k", "n_directions", "decay_width", "transfer_width",
                     "lbfgs_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seeds < 2 and "c" in self.parts:
            raise ValueError("transfer between seeds (part c) needs seeds >= 2")
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {self.refine_steps}")
        if not self.decays or 0.0 not in self.decays or any(not np.isfinite(v) or v < 0 for v in self.decays):
            raise ValueError(f"decays must be finite values >= 0 and include 0.0, got {self.decays}")
        if len(set(self.decays)) != len(self.decays):
            raise ValueError(f"decays must be distinct, got {self.decays}")
        if not self.c_grid or any(not np.isfinite(c) or c <= 0 for c in self.c_grid):
            raise ValueError(f"c_grid must be a non-empty list of positive numbers, got {self.c_grid}")
        if not self.noise_multiples or any(not np.isfinite(k) or k <= 0 for k in self.noise_multiples):
            raise ValueError(f"noise_multiples must be positive numbers, got {self.noise_multiples}")
        for name in ("amplify", "lr"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)}")
        for name in ("noise_tolerance", "purity_tolerance"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {getattr(self, name)}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.loss not in MARGIN_LOSSES:
            raise ValueError(f"loss must be a margin loss ({', '.join(MARGIN_LOSSES)}), got {self.loss!r}")
        models.TwoLayerConfig(self.decay_width, gamma=self.gamma, parametrization=self.parametrization)
        if self.data.name in ("gauss",):
            raise ValueError("dataset 'gauss' has random labels; use a dataset with learnable labels")

    def net(self, width: int) -> models.TwoLayerConfig:
        return models.TwoLayerConfig(width, gamma=self.gamma, parametrization=self.parametrization)

    def kernel(self) -> kernels.KernelFn:
        return kernels.two_layer_kernel(gamma=self.gamma, parametrization=self.parametrization)


# A smoke-test scale (``ntk-adv report --quick``; numbers indicative only).
QUICK_CONFIG = Config(widths=(16, 64, 256), seeds=2, data=DataSpec("digits", n_train=120, n_test=40), steps=100,
                      decays=(0.0, 0.01, 0.1), decay_width=64, transfer_width=64, probe_widths=(64, 256, 1024),
                      n_attack=20, lbfgs_steps=30, refine_steps=3, c_grid=(0.01, 0.1, 1.0))


# ------------------------------------------------------------------------------------------------ training
def anchored_train(apply_fn, params, params0, x, y, *, sample_weight, decay, loss: str, lr, steps: int,
                   mask=None):
    """Full-batch gradient descent on  sum_n w_n l(y_n f(x_n)) / sum_n w_n + (decay/2) ||theta - theta_0||^2.

    The L2 penalty (weight decay) is anchored at the initialization ``params0`` and applies to the trained
    leaves (``mask``); ``sample_weight`` (N,) selects a training subset (0/1) without changing shapes, so
    nets on the full set and on disjoint halves share one compiled program. ``decay``, ``lr`` may be traced.
    In the infinite-width limit this is :func:`anchored_limit_coefficients` exactly."""
    leaves0 = jax.tree_util.tree_leaves(params0)
    mask_leaves = [True] * len(leaves0) if mask is None else [bool(m) for m in jax.tree_util.tree_leaves(mask)]
    treedef = jax.tree_util.tree_structure(params)

    def objective(p):
        per = pointwise_loss(loss, apply_fn(p, x), y)
        fit = jnp.sum(sample_weight * per) / jnp.sum(sample_weight)
        reg = sum(jnp.sum((a - b) ** 2) for a, b, m in zip(jax.tree_util.tree_leaves(p), leaves0, mask_leaves)
                  if m)
        return fit + 0.5 * decay * reg

    def step(p, _):
        g = jax.tree_util.tree_leaves(jax.grad(objective)(p))
        leaves = [a - lr * gl if m else a for a, gl, m in zip(jax.tree_util.tree_leaves(p), g, mask_leaves)]
        return jax.tree_util.tree_unflatten(treedef, leaves), None

    params, _ = jax.lax.scan(step, params, None, length=steps)
    return params


def anchored_limit_coefficients(loss: str, k_train, y, *, sample_weight, decay, lr, steps: int):
    """Kernel gradient descent of the linearized (infinite-width) net trained by :func:`anchored_train`:
    coef <- (1 - lr decay) coef - lr / sum(w) * w * y * l'(y f),  f = Theta(X, X) coef  (centred, f_0 = 0).
    With decay 0 and all weights 1 this is ``limits.flow_coefficients``."""
    dl = margin_loss_derivative(loss)
    n_eff = jnp.sum(sample_weight)

    def step(coef, _):
        f = k_train @ coef
        return (1.0 - lr * decay) * coef - lr / n_eff * sample_weight * y * dl(y * f), None

    coef, _ = jax.lax.scan(step, jnp.zeros_like(y), None, length=steps)
    return coef


@partial(jax.jit, static_argnums=(0, 1))
def _train_cell(cfg: Config, width: int, x, y, decays, sample_weights, keys):
    """Runs (R,): decay (R,), sample weights (R, N), keys (R, 2) -> centred pairs (params, params0) stacked."""
    net = cfg.net(width)
    apply_c = centered(models.make_apply(net))
    mask = (models.trainable_mask(net), jax.tree_util.tree_map(lambda _: False, models.trainable_mask(net)))

    def one(decay, w, key):
        p0 = models.init_params(net, x.shape[1], key=key, dtype=x.dtype)
        return anchored_train(apply_c, (p0, p0), (p0, p0), x, y, sample_weight=w, decay=decay, loss=cfg.loss,
                              lr=cfg.lr, steps=cfg.steps, mask=mask)

    return jax.vmap(one)(decays, sample_weights, keys)


@partial(jax.jit, static_argnums=0)
def _limit_cell(cfg: Config, x, y, decays, sample_weights):
    k_train = kernels.kernel_matrix(cfg.kernel(), x)
    return jax.vmap(lambda lam, w: anchored_limit_coefficients(cfg.loss, k_train, y, sample_weight=w, decay=lam,
                                                               lr=cfg.lr, steps=cfg.steps))(decays, sample_weights)


# ------------------------------------------------------------------------------------------------ models
def _predictor(cfg: Config, width: int | None):
    """``predict(params, q (Q, d)) -> (Q,)``: a centred net of ``width`` (params = (params, params0)) or, for
    ``width=None``, the infinite-width predictor (params = (x_train, coef))."""
    if width is None:
        kernel = cfg.kernel()
        return lambda p, q: limits.KernelPredictor(x_train=p[0], coef=p[1], kernel=kernel)(q)
    apply_c = centered(models.make_apply(cfg.net(width)))
    return lambda p, q: apply_c(p, q)


@partial(jax.jit, static_argnums=(0, 1))
def _outputs(cfg: Config, width: int | None, params, pts):
    """Outputs (R, P) of the R stacked models of one kind on shared points pts (P, d) or on per-model points
    (R, P, d)."""
    predict = _predictor(cfg, width)
    if pts.ndim == 2:
        return jax.vmap(lambda p: apply_in_chunks(partial(predict, p), pts))(params)
    return jax.vmap(lambda p, q: apply_in_chunks(partial(predict, p), q))(params, pts)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _attack_cell(cfg: Config, width: int | None, box, params, z, y):
    """Minimal box-constrained L-BFGS perturbations toward -y for the R stacked models: eta (R, M, d), success
    (R, M)."""
    predict = _predictor(cfg, width)

    def one(p):
        return attacks.minimal_lbfgs_distortion(partial(predict, p), z, -y, c_grid=cfg.c_grid, clip=box,
                                                refine_steps=cfg.refine_steps, steps=cfg.lbfgs_steps,
                                                loss=ATTACK_LOSS)

    return jax.vmap(one)(params)


# ------------------------------------------------------------------------------------------------ probes
def top_k_purity(scores, labels, k: int):
    """Label purity of the top-k rows of every column of ``scores`` (M, R): the fraction of the k highest-scoring
    points that share their majority label, shape (R,). Labels in {-1, +1}."""
    _, idx = jax.lax.top_k(scores.T, k)
    frac = jnp.mean((labels[idx] > 0).astype(scores.dtype), axis=1)
    return jnp.maximum(frac, 1.0 - frac)


def _lipschitz(p, net: models.TwoLayerConfig, z):
    """Product-of-operator-norms bound ||W||_2 ||a||_2 of the net at params p (in effective, standard-
    parametrization units) and the true mean input-gradient norm over z."""
    d, m = z.shape[1], net.width
    w_eff = p.w / np.sqrt(d) if net.parametrization == "ntk" else p.w
    a_eff = p.a / np.sqrt(m) if net.parametrization == "ntk" else p.a
    grads = jax.grad(lambda q: jnp.sum(models.apply(p, q, net)))(z)
    bound = jnp.linalg.norm(w_eff, 2) * jnp.linalg.norm(a_eff)
    return bound, jnp.mean(jnp.linalg.norm(grads, axis=1))


@partial(jax.jit, static_argnums=(0, 1))
def _probe_cell(cfg: Config, width: int, pairs, z, yz, keys):
    """(d) purity of units and random directions, (e) Lipschitz bound vs true gradient norm of the trained and
    of the initial net, per run."""
    net = cfg.net(width)
    k = min(cfg.top_k, z.shape[0])

    def one(pair, key):
        p = pair[0]  # the trained network (pair[1] is its initialization)
        k_units, k_dir, k_chance = jax.random.split(key, 3)
        u = models.hidden(p, z, net)  # (M, m) pre-activations
        units = jax.random.permutation(k_units, width)[: min(width, cfg.n_directions)]
        v = jax.random.normal(k_dir, (width, cfg.n_directions), z.dtype)
        chance = jax.random.normal(k_chance, (z.shape[0], cfg.n_directions), z.dtype)
        bound, grad_norm = _lipschitz(p, net, z)
        bound0, grad_norm0 = _lipschitz(pair[1], net, z)
        return {
            "purity_units": top_k_purity(u[:, units], yz, k),
            "purity_random_pre": top_k_purity(u @ v, yz, k),
            "purity_random_act": top_k_purity(models.leaky_relu(u, cfg.gamma) @ v, yz, k),
            "purity_chance": top_k_purity(chance, yz, k),
            "lipschitz_bound": bound,
            "grad_norm": grad_norm,
            "lipschitz_ratio": bound / grad_norm,
            "lipschitz_bound_init": bound0,
            "grad_norm_init": grad_norm0,
            "lipschitz_ratio_init": bound0 / grad_norm0,
        }

    return jax.vmap(one)(pairs, keys)


@partial(jax.jit, static_argnums=0)
def _limit_lipschitz(cfg: Config, x, y, z):
    """Width-independent pieces of the lazy-regime Lipschitz prediction, from the infinite-width limit:
    ||Delta W||_2^2 = lambda_max(X^T C Phi(X, X) C X) (C = diag(coef); divided by d^2 in the NTK
    parametrization) and the gradient norms ||grad_z Delta f_inf(z)|| (M,)."""
    kernel = cfg.kernel()
    coef = anchored_limit_coefficients(cfg.loss, kernels.kernel_matrix(kernel, x), y,
                                       sample_weight=jnp.ones_like(y), decay=0.0, lr=cfg.lr, steps=cfg.steps)
    phi = kernels.phi(x, x, gamma=cfg.gamma)
    cx = coef[:, None] * x
    gram = cx.T @ phi @ cx
    if cfg.parametrization == "ntk":
        gram = gram / x.shape[1] ** 2
    limit = limits.KernelPredictor(x_train=x, coef=coef, kernel=kernel)
    grads = jax.grad(lambda q: jnp.sum(limit(q)))(z)
    return jnp.linalg.eigvalsh(gram)[-1], jnp.linalg.norm(grads, axis=1)


def lipschitz_ratio_theory(width, d: int, gamma: float, delta_w2: float = 0.0, limit_grad_norms=None
                           ) -> np.ndarray:
    """Random-matrix prediction of ||W||_2 ||a||_2 / mean ||grad_x f||.

    At initialization (defaults): ||W||_2 ~ 1 + sqrt(m/d) for w ~ N(0, I/d), ||a|| ~ 1 and
    ||grad f||^2 ~ (1 + gamma^2)/2 (half of the units active). After lazy training W = W_0 + Delta W with a
    width-independent Delta W of spectral norm^2 ``delta_w2``, nearly orthogonal to W_0's top directions, and
    grad f = grad f_0 + grad Delta f_inf: ratio ~ sqrt((1 + sqrt(m/d))^2 + delta_w2) /
    mean_z sqrt((1 + gamma^2)/2 + ||grad Delta f_inf(z)||^2)."""
    op = np.sqrt((1.0 + np.sqrt(np.asarray(width, float) / d)) ** 2 + delta_w2)
    g = np.zeros(1) if limit_grad_norms is None else np.asarray(limit_grad_norms, float)
    return op / np.mean(np.sqrt((1.0 + gamma**2) / 2.0 + g**2))


# ------------------------------------------------------------------------------------------------ main
def _box(ds):
    """Pixel box of image data ([0, 1] minus the subtracted mean), None for synthetic data."""
    mean = ds.meta.get("mean_subtracted")
    return None if mean is None else (float(-mean), float(1.0 - mean))


def main(cfg: Config = Config(), out: str | Path = "runs/intriguing", *, progress: bool = True) -> dict:
    """Run the requested parts, write results.csv, summary.json and the figures into ``out``; return the
    summary."""
    out = Path(out)
    ds = load_spec(cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    z, yz = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    n_att = min(cfg.n_attack, z.shape[0])
    z_att, y_att = z[:n_att], yz[:n_att]
    box = _box(ds)
    parts = set(cfg.parts)
    attack = bool(parts & {"a", "b", "c"})
    root = jax.random.PRNGKey(cfg.seed)
    n = x.shape[0]
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(root, 7), n))
    halves = {"A": np.isin(np.arange(n), perm[: n // 2]), "B": np.isin(np.arange(n), perm[n // 2:])}

    # --- which runs each width needs: (decay, train_set, seed)
    plan: dict[int, list[tuple[float, str, int]]] = {}
    attacked: set[int] = set()
    if attack:
        for w in cfg.widths:
            plan.setdefault(w, []).extend((0.0, "full", s) for s in range(cfg.seeds))
            attacked.add(w)
    if "a" in parts:
        plan.setdefault(cfg.decay_width, []).extend((lam, "full", s) for lam in cfg.decays for s in range(cfg.seeds))
        attacked.add(cfg.decay_width)
    if "c" in parts:
        plan.setdefault(cfg.transfer_width, []).extend([(0.0, "A", 0), (0.0, "B", 1)])
        attacked.add(cfg.transfer_width)
    if parts & {"d", "e"}:
        for w in cfg.probe_widths:
            plan.setdefault(w, []).extend((0.0, "full", s) for s in range(cfg.seeds))
    plan = {w: sorted(set(runs), key=lambda r: (r[1], r[0], r[2])) for w, runs in plan.items()}

    weights_of = {"full": np.ones(n, np.float32), "A": halves["A"].astype(np.float32),
                  "B": halves["B"].astype(np.float32)}
    bar = tqdm(total=len(plan) + (1 if attack else 0) + 1, desc="intriguing: cells",
               disable=None if progress else True)
    models_: list[dict] = []  # every trained model: kind, run metadata, params index, attack results
    probes: list[dict] = []
    for width in sorted(plan):
        runs = plan[width]
        keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(root, width), 1000 * (r[1] != "full") + r[2])
                          for r in runs])
        decays = jnp.asarray([r[0] for r in runs], x.dtype)
        sw = jnp.asarray(np.stack([weights_of[r[1]] for r in runs]), x.dtype)
        pairs = _train_cell(cfg, width, x, y, decays, sw, keys)
        group = {"width": width, "params": pairs, "runs": runs}
        if width in attacked:
            group["eta"], group["success"] = _attack_cell(cfg, width, box, pairs, z_att, y_att)
        models_.append(group)
        if parts & {"d", "e"} and width in cfg.probe_widths:
            idx = [i for i, r in enumerate(runs) if r[0] == 0.0 and r[1] == "full"]
            sub = jax.tree_util.tree_map(lambda a, idx=idx: a[np.asarray(idx)], pairs)
            res = _probe_cell(cfg, width, sub, z, yz, jax.random.split(jax.random.fold_in(root, 99 + width),
                                                                        len(idx)))
            probes.append({"width": width, "seeds": [runs[i][2] for i in idx],
                           **{k: np.asarray(v) for k, v in res.items()}})
        bar.update()

    if attack:  # the infinite-width limit: every decay on the full set, and the two halves
        runs = [(lam, "full", 0) for lam in (cfg.decays if "a" in parts else (0.0,))]
        if "c" in parts:
            runs += [(0.0, "A", 0), (0.0, "B", 0)]
        coef = _limit_cell(cfg, x, y, jnp.asarray([r[0] for r in runs], x.dtype),
                           jnp.asarray(np.stack([weights_of[r[1]] for r in runs]), x.dtype))
        params = (jnp.broadcast_to(x, (len(runs),) + x.shape), coef)
        eta, success = _attack_cell(cfg, None, box, params, z_att, y_att)
        models_.append({"width": None, "params": params, "runs": runs, "eta": eta, "success": success})
        bar.update()

    rows = []
    if attack:
        rows += _attack_rows(cfg, models_, z_att, y_att, parts, root, box)
    for pr in probes:
        for j, s in enumerate(pr["seeds"]):
            if "d" in parts:
                rows += [{"part": "d", "model": "net", "width": pr["width"], "seed": s, "metric": m,
                          "value": float(np.mean(pr[m][j]))}
                         for m in ("purity_units", "purity_random_pre", "purity_random_act", "purity_chance")]
            if "e" in parts:
                rows += [{"part": "e", "model": "net", "width": pr["width"], "seed": s, "metric": m,
                          "value": float(pr[m][j])} for m in LIPSCHITZ_METRICS]
    bar.update()
    bar.close()

    lazy = None
    if "e" in parts:
        delta_w2, grad_inf = _limit_lipschitz(cfg, x, y, z)
        lazy = {"delta_w2": float(delta_w2), "limit_grad_norms": np.asarray(grad_inf)}
    write_csv(rows, out / "results.csv")
    summary = summarize(cfg, rows, probes, ds, x.shape, lazy)
    write_json(summary, out / "summary.json")
    plot(rows, summary, out)
    if progress is not False:
        report(summary, out)
    return summary


def _name(width, run) -> str:
    lam, train_set, seed = run
    base = "limit" if width is None else f"m={width}"
    if train_set != "full":
        return f"{base} half {train_set}"
    return base if width is None else f"{base} s{seed}"


def _attack_rows(cfg: Config, groups, z_att, y_att, parts, root, box) -> list[dict]:
    """Parts (a), (b), (c) from the minimal L-BFGS perturbations of every attacked model."""
    d = z_att.shape[1]
    rows: list[dict] = []
    limit = next(g for g in groups if g["width"] is None)
    lim_idx = {r: i for i, r in enumerate(limit["runs"])}
    lim_norm = np.linalg.norm(np.asarray(limit["eta"]), axis=2)  # (R, M)
    noise_dirs = jax.random.normal(jax.random.fold_in(root, 5), (cfg.noise_draws,) + z_att.shape, z_att.dtype)
    noise_dirs = noise_dirs / jnp.linalg.norm(noise_dirs, axis=2, keepdims=True)
    yv = np.asarray(y_att)
    sources = []  # (name, width, run, eta, mask of attacked points)
    for g in groups:
        if "eta" not in g:
            continue
        width = g["width"]
        eta = np.asarray(g["eta"])
        success = np.asarray(g["success"])
        clean = np.asarray(_outputs(cfg, width, g["params"], z_att))
        correct = np.where(clean >= 0, 1.0, -1.0) == yv[None, :]  # (R, M)
        norms = np.linalg.norm(eta, axis=2)  # (R, M)
        mean_norm = np.asarray([np.mean(nr[c]) if c.any() else 0.0 for nr, c in zip(norms, correct)])
        if "b" in parts:  # Gaussian noise of norm k * (mean minimal adversarial L2 distortion), every run at once
            scale = jnp.asarray(np.asarray(cfg.noise_multiples)[None, :] * mean_norm[:, None], z_att.dtype)
            pts = z_att[None, None, None] + scale[:, :, None, None, None] * noise_dirs[None, None]
            outs = np.asarray(_outputs(cfg, width, g["params"], pts.reshape(len(g["runs"]), -1, d)))
            noise_err = np.mean(np.where(outs >= 0, 1.0, -1.0).reshape(len(g["runs"]), len(cfg.noise_multiples),
                                                                       -1) != np.tile(yv, cfg.noise_draws), axis=2)
        for i, run in enumerate(g["runs"]):
            lam, train_set, seed = run
            meta = {"model": "limit" if width is None else "net", "width": width, "seed": seed, "decay": lam,
                    "train_set": train_set}
            if train_set == "full":
                dist = norms[i][correct[i]] / np.sqrt(d)
                vals = {"success_rate": float(np.mean(success[i])), "clean_error": float(1 - np.mean(correct[i])),
                        "distortion": float(np.mean(dist)) if dist.size else np.nan}
                ref = lim_idx.get((lam, "full", 0))
                if width is not None and ref is not None:
                    both = correct[i] & (lim_norm[ref] > 0)
                    gap = np.abs(norms[i][both] - lim_norm[ref][both]) / lim_norm[ref][both]
                    vals["distortion_gap"] = float(np.mean(gap)) if gap.size else np.nan
                if "a" in parts:
                    rows += [{"part": "a", **meta, "metric": k, "value": v} for k, v in vals.items()]
                if "b" in parts and lam == 0.0:
                    rows.append({"part": "b", **meta, "multiple": 0.0, "metric": "noise_error",
                                 "value": vals["clean_error"]})
                    rows.append({"part": "b", **meta, "multiple": 1.0, "metric": "adversarial_error",
                                 "value": float(np.mean(success[i]))})
                    rows += [{"part": "b", **meta, "multiple": float(k), "metric": "noise_error",
                              "value": float(noise_err[i, j])} for j, k in enumerate(cfg.noise_multiples)]
            if "c" in parts and lam == 0.0:
                sources.append((_name(width, run), width, run, eta[i], correct[i] & (norms[i] > 0)))
    if "c" in parts:
        rows += _transfer_rows(cfg, groups, sources, z_att, yv, box)
    return rows


def _nanmean(v) -> float:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def transfer_kappas(amplify: float) -> np.ndarray:
    """Amplifications k of the minimal perturbations (x + k eta) at which transfer is evaluated: 1, ``amplify``
    and 31 geometric steps 1 + 10^-3 ... 2."""
    return np.unique(np.concatenate([[1.0, amplify], 1.0 + np.geomspace(1e-3, 1.0, 31)]))


def _transfer_rows(cfg: Config, groups, sources, z_att, yv, box) -> list[dict]:
    """Error of every target on every source's adversarial points x + k eta (clipped to the box) for the
    amplifications k of :func:`transfer_kappas`: the matrices at k = 1 ('eta') and k = ``amplify``
    ('amplified'), and per pair the mean over the source's examples of the smallest k - 1 at which the
    target misclassifies x + k eta (capped at k = 2)."""
    m_pts = z_att.shape[0]
    kappas = transfer_kappas(cfg.amplify)
    i_amp = int(np.argmin(np.abs(kappas - cfg.amplify)))
    etas = np.stack([s[3] for s in sources])  # (S, M, d)
    pts = np.asarray(z_att)[None, None] + kappas[:, None, None, None] * etas[None]  # (K, S, M, d)
    if box is not None:
        pts = np.clip(pts, box[0], box[1])
    pts = jnp.asarray(pts.reshape(-1, pts.shape[-1]))
    rows = []
    names = [s[0] for s in sources]
    masks = np.stack([s[4] for s in sources])  # (S, M) points the source actually perturbed
    for g in groups:
        if "eta" not in g:
            continue
        keep = [i for i, r in enumerate(g["runs"]) if r[0] == 0.0]
        params = jax.tree_util.tree_map(lambda a, keep=keep: a[np.asarray(keep)], g["params"])
        outs = np.asarray(_outputs(cfg, g["width"], params, pts)).reshape(len(keep), len(kappas), len(sources), m_pts)
        wrong = np.where(outs >= 0, 1.0, -1.0) != yv[None, None, None, :]
        rate = np.sum(wrong * masks[None, None], axis=3) / np.maximum(masks.sum(axis=1), 1)[None, None]  # (R, K, S)
        # per point: the smallest k with x + k eta misclassified (k_max if none), minus 1
        first = np.where(wrong.any(axis=1), np.argmax(wrong, axis=1), len(kappas) - 1)  # (R, S, M)
        excess = kappas[first] - 1.0
        for j, i in enumerate(keep):
            target = _name(g["width"], g["runs"][i])
            for si, src in enumerate(names):
                for variant, k in (("eta", 0), ("amplified", i_amp)):
                    rows.append({"part": "c", "source": src, "target": target, "variant": variant,
                                 "metric": "transfer", "value": float(rate[j, k, si])})
                rows.append({"part": "c", "source": src, "target": target, "metric": "kappa_excess",
                             "value": float(np.sum(excess[j, si] * masks[si]) / max(masks[si].sum(), 1))})
    # derived: net-net (same width, other seeds), net-limit and limit-net per width
    table = {(r["source"], r["target"], r.get("variant"), r["metric"]): r["value"] for r in rows}
    for w in cfg.widths:
        for s in range(cfg.seeds):
            src = f"m={w} s{s}"
            if src not in names:
                continue
            for variant, metric in (("eta", "transfer"), ("amplified", "transfer"), (None, "kappa_excess")):
                others = [table[(src, f"m={w} s{t}", variant, metric)] for t in range(cfg.seeds) if t != s]
                base = {"part": "c", "model": "net", "width": w, "seed": s}
                if variant is not None:
                    base["variant"] = variant
                rows.append({**base, "metric": f"{metric}_net_net", "value": _nanmean(others)})
                rows.append({**base, "metric": f"{metric}_net_limit", "value": table[(src, "limit", variant, metric)]})
                rows.append({**base, "metric": f"{metric}_limit_net", "value": table[("limit", src, variant, metric)]})
    return rows


# ------------------------------------------------------------------------------------------------ summary
def _values(rows, **where) -> np.ndarray:
    return np.asarray([r["value"] for r in select(rows, **where)], float)


def _mean(rows, **where) -> float:
    v = _values(rows, **where)
    v = v[np.isfinite(v)]
    return float(np.mean(v)) if v.size else float("nan")


def summarize(cfg: Config, rows: list[dict], probes: list[dict], ds, shape, lazy: dict | None = None) -> dict:
    summary: dict = {"experiment": "intriguing", "config": asdict(cfg), "dataset": ds.name,
                     "n_train": int(shape[0]), "d": int(shape[1]), **provenance(), "predictions": {}}
    parts = set(cfg.parts)
    if "a" in parts:
        _summarize_a(cfg, rows, summary)
    if "b" in parts:
        _summarize_b(cfg, rows, summary)
    if "c" in parts:
        _summarize_c(cfg, rows, summary)
    if "d" in parts:
        _summarize_d(cfg, rows, probes, summary)
    if "e" in parts:
        _summarize_e(cfg, rows, summary, lazy)
    summary["claims"] = claims_table(summary["predictions"])
    return summary


def _summarize_a(cfg: Config, rows, summary) -> None:
    claims = summary["predictions"]
    full0 = dict(part="a", decay=0.0, train_set="full")
    success = {str(w): _mean(rows, model="net", width=w, metric="success_rate", **full0) for w in cfg.widths}
    success["limit"] = _mean(rows, model="limit", metric="success_rate", **full0)
    dist = {str(w): _mean(rows, model="net", width=w, metric="distortion", **full0) for w in cfg.widths}
    dist_ci = {str(w): list(_ci(_values(rows, model="net", width=w, metric="distortion", **full0)))
               for w in cfg.widths}
    dist_limit = _mean(rows, model="limit", metric="distortion", **full0)
    gap = select(rows, model="net", metric="distortion_gap", **full0)
    gap = [r for r in gap if r["width"] in cfg.widths and np.isfinite(r["value"])]
    fit = fit_loglog_slope([r["width"] for r in gap], [r["value"] for r in gap])
    by_decay = {str(lam): _mean(rows, part="a", model="net", width=cfg.decay_width, decay=lam, train_set="full",
                                metric="distortion") for lam in cfg.decays}
    by_decay_limit = {str(lam): _mean(rows, part="a", model="limit", decay=lam, train_set="full",
                                      metric="distortion") for lam in cfg.decays}
    lam_max = str(max(cfg.decays))
    change = by_decay[lam_max] / by_decay["0.0"] - 1.0
    change_limit = by_decay_limit[lam_max] / by_decay_limit["0.0"] - 1.0
    mismatch = max(abs(by_decay[k] / by_decay_limit[k] - 1.0) for k in by_decay)
    summary.update({"lbfgs_success_rate": success, "distortion_by_width": dist, "distortion_by_width_ci95": dist_ci,
                    "distortion_limit": dist_limit, "distortion_gap_slope": fit.slope,
                    "distortion_gap_slope_ci95": [fit.low, fit.high],
                    "distortion_gap_by_width": {str(w): _mean(rows, model="net", width=w, metric="distortion_gap",
                                                              **full0) for w in cfg.widths},
                    "distortion_by_decay": by_decay, "distortion_by_decay_limit": by_decay_limit,
                    "clean_error_by_decay": {str(lam): _mean(rows, part="a", model="net", width=cfg.decay_width,
                                                             decay=lam, train_set="full", metric="clean_error")
                                             for lam in cfg.decays}})
    claims["a_lbfgs_always_succeeds"] = prediction(
        "box-constrained L-BFGS finds a misclassifying perturbation for every attacked test point", 1.0, success,
        "success rate >= 0.95 for every width and the limit", min(success.values()) >= 0.95)
    claims["a_distortion_converges_to_limit"] = prediction(
        "per-point minimal distortion of finite nets converges to the infinite-width value (relative gap vs m)",
        -0.5, fit.slope, "slope < 0 with its 95% interval below 0 (theory: -1/2)", fit.high < 0,
        ci95=[fit.low, fit.high])
    claims["a_decay_matches_limit"] = prediction(
        f"at every weight decay the width-{cfg.decay_width} distortion matches the infinite-width distortion",
        0.0, mismatch, "max relative difference over the decays <= 0.05", mismatch <= 0.05)
    claims["a_decay_raises_distortion"] = prediction(
        "stronger weight decay raises the minimal distortion (Szegedy et al. 2014)", "increase",
        {"net": change, "limit": change_limit},
        f"relative change from decay 0 to {lam_max} >= +0.05 for the net and the limit",
        change >= 0.05 and change_limit >= 0.05)


def _ci(v) -> tuple[float, float]:
    s = mean_ci(v)
    return s.low, s.high


def _summarize_b(cfg: Config, rows, summary) -> None:
    models_ = [("limit", None)] + [(str(w), w) for w in cfg.widths]
    table, worst = {}, -np.inf
    for name, w in models_:
        where = dict(part="b", model="limit") if w is None else dict(part="b", model="net", width=w)
        clean = _mean(rows, metric="noise_error", multiple=0.0, **where)
        noise = {str(k): _mean(rows, metric="noise_error", multiple=float(k), **where) for k in cfg.noise_multiples}
        adv = _mean(rows, metric="adversarial_error", **where)
        table[name] = {"clean_error": clean, "noise_error": noise, "adversarial_error": adv}
        worst = max(worst, max(noise.values()) - clean)
    summary["noise_vs_adversarial"] = table
    min_adv = min(t["adversarial_error"] for t in table.values())
    summary["predictions"]["b_noise_near_clean"] = prediction(
        "Gaussian perturbations of 1x, 2x, 5x the mean minimal adversarial norm leave the error near the clean "
        "error, while the adversarial perturbation (1x) misclassifies every point",
        {"noise_minus_clean": 0.0, "adversarial_error": 1.0}, {"max_noise_minus_clean": worst,
                                                               "min_adversarial_error": min_adv},
        f"noise error - clean error <= {cfg.noise_tolerance:g} for every model and multiple; adversarial "
        "error >= 0.95", worst <= cfg.noise_tolerance and min_adv >= 0.95)


def _summarize_c(cfg: Config, rows, summary) -> None:
    claims = summary["predictions"]
    out = {}
    for variant in ("eta", "amplified"):
        out[variant] = {kind: {str(w): _mean(rows, part="c", width=w, variant=variant, metric=f"transfer_{kind}")
                               for w in cfg.widths} for kind in ("net_net", "net_limit", "limit_net")}
    out["kappa_excess"] = {kind: {str(w): _mean(rows, part="c", width=w, metric=f"kappa_excess_{kind}")
                                    for w in cfg.widths} for kind in ("net_net", "net_limit", "limit_net")}
    t = {(r["source"], r["target"], r["variant"]): r["value"] for r in select(rows, part="c", metric="transfer")}
    a, b = f"m={cfg.transfer_width} half A", f"m={cfg.transfer_width} half B"
    halves = {variant: {"net_A_to_B": t.get((a, b, variant)), "net_B_to_A": t.get((b, a, variant)),
                        "limit_A_to_B": t.get(("limit half A", "limit half B", variant)),
                        "limit_B_to_A": t.get(("limit half B", "limit half A", variant))}
              for variant in ("eta", "amplified")}
    summary["transfer"] = out
    summary["transfer_halves"] = halves
    w0, w1 = str(min(cfg.widths)), str(max(cfg.widths))
    nn, nl = out["amplified"]["net_net"], out["amplified"]["net_limit"]
    claims["c_transfer_rises_to_limit_value"] = prediction(
        f"transfer of x + {cfg.amplify:g} eta between two finite nets of the same width (different seeds) rises "
        "with the width toward the net-to-limit transfer", "net-net rises; net-limit minus net-net shrinks",
        {"net_net": nn, "net_limit": nl},
        f"net-net(m={w1}) > net-net(m={w0}) and net-limit - net-net is smaller at m={w1} than at m={w0}",
        nn[w1] > nn[w0] and (nl[w1] - nn[w1]) < (nl[w0] - nn[w0]))
    sub = [r for r in select(rows, part="c", metric="kappa_excess_net_net") if np.isfinite(r["value"])]
    try:
        fit = fit_loglog_slope([r["width"] for r in sub], [r["value"] for r in sub])
        slope, ci = fit.slope, [fit.low, fit.high]
    except ValueError:  # too few positive values (every example transfers at k = 1)
        slope, ci = float("nan"), [float("nan"), float("nan")]
    summary["kappa_excess_net_net_slope"] = slope
    summary["kappa_excess_net_net_slope_ci95"] = ci
    claims["c_amplification_for_transfer_shrinks"] = prediction(
        "the amplification k - 1 needed before x + k eta of one net fools another net of the same width (mean over "
        "examples) shrinks with the width (the nets converge to one function; theory m^(-1/2))", -0.5, slope,
        "log-log slope vs width with its 95% interval below 0", bool(ci[1] < 0), ci95=ci)
    amp = [v for v in (halves["amplified"]["net_A_to_B"], halves["amplified"]["net_B_to_A"]) if v is not None]
    amp_mean = float(np.mean(amp)) if amp else float("nan")
    claims["c_amplified_transfer_across_halves"] = prediction(
        f"adversarial examples amplified x{cfg.amplify:g} transfer between nets trained on disjoint halves of the "
        "training set", ">= 0.5", amp_mean, "mean error of the half-B net on half-A examples and vice versa >= 0.5",
        bool(amp_mean >= 0.5))


def _summarize_d(cfg: Config, rows, probes, summary) -> None:
    metrics = ("purity_units", "purity_random_pre", "purity_random_act", "purity_chance")
    summary["purity_by_width"] = {m: {str(w): _mean(rows, part="d", width=w, metric=m) for w in cfg.probe_widths}
                                  for m in metrics}
    widest = max(cfg.probe_widths)
    pr = next(p for p in probes if p["width"] == widest)
    units, rand = np.ravel(pr["purity_units"]), np.ravel(pr["purity_random_pre"])
    diff = float(units.mean() - rand.mean())
    se = np.sqrt(units.var(ddof=1) / units.size + rand.var(ddof=1) / rand.size)
    dof = se**4 / ((units.var(ddof=1) / units.size) ** 2 / (units.size - 1)
                   + (rand.var(ddof=1) / rand.size) ** 2 / (rand.size - 1)) if se > 0 else 1.0
    half = float(stats.t.ppf(0.975, dof) * se) if se > 0 else 0.0
    chance = summary["purity_by_width"]["purity_chance"][str(widest)]
    summary["purity_difference_widest"] = {"width": widest, "units_minus_random": diff, "ci95": [diff - half,
                                                                                              diff + half]}
    summary["predictions"]["d_units_like_random_directions"] = prediction(
        f"top-{cfg.top_k} label purity of hidden units equals that of random directions (pre-activation space), "
        f"widest net m={widest}", 0.0, diff,
        f"Welch 95% interval of the difference contains 0, or |difference| <= {cfg.purity_tolerance:g}",
        (diff - half <= 0 <= diff + half) or abs(diff) <= cfg.purity_tolerance, ci95=[diff - half, diff + half])
    above = min(float(units.mean()), float(rand.mean())) - chance
    summary["predictions"]["d_directions_are_semantic"] = prediction(
        "both units and random directions select label-pure top sets, well above chance", "> chance + 0.1",
        {"units": float(units.mean()), "random": float(rand.mean()), "chance": chance},
        "min(units, random) - chance >= 0.1", above >= 0.1)


def _summarize_e(cfg: Config, rows, summary, lazy: dict) -> None:
    widths = sorted(cfg.probe_widths)
    top = widths[-3:]  # the random-matrix regime: the three largest widths
    d = summary["d"]
    theory = {"init": lipschitz_ratio_theory(widths, d, cfg.gamma),
              "trained": lipschitz_ratio_theory(widths, d, cfg.gamma, lazy["delta_w2"], lazy["limit_grad_norms"])}
    out = {"lazy_delta_w_norm": float(np.sqrt(lazy["delta_w2"])),
           "lazy_limit_grad_norm": float(np.mean(lazy["limit_grad_norms"]))}
    claims = summary["predictions"]
    for state, metric in (("init", "lipschitz_ratio_init"), ("trained", "lipschitz_ratio")):
        sub = [r for r in select(rows, part="e", metric=metric) if r["width"] in top]
        fit = fit_loglog_slope([r["width"] for r in sub], [r["value"] for r in sub])
        th = dict(zip(widths, theory[state]))
        th_fit = fit_loglog_slope(top, [th[w] for w in top])
        measured = {str(w): _mean(rows, part="e", width=w, metric=metric) for w in widths}
        out[state] = {"ratio_by_width": measured, "theory_by_width": {str(w): float(v) for w, v in th.items()},
                      "slope_top3": fit.slope, "slope_top3_ci95": [fit.low, fit.high], "theory_slope_top3":
                      th_fit.slope, "min_ratio": min(measured.values())}
        rel = measured[str(widths[-1])] / th[widths[-1]] - 1.0
        if state == "init":
            claims["e_bound_loosens_with_width_at_init"] = prediction(
                "at initialization ||W||_2 ||a||_2 / mean ||grad f|| grows like (1 + sqrt(m/d)) / "
                "sqrt((1 + gamma^2)/2) (slope over the three largest widths)", th_fit.slope, fit.slope,
                "slope interval above 0 and |slope - theory slope| <= 0.1", fit.low > 0
                and abs(fit.slope - th_fit.slope) <= 0.1, ci95=[fit.low, fit.high])
        else:
            claims["e_bound_loosens_with_width_trained"] = prediction(
                "after lazy training the ratio still grows with the width, as the lazy-regime prediction "
                "sqrt((1 + sqrt(m/d))^2 + ||Delta W||^2) / mean sqrt((1 + gamma^2)/2 + ||grad Delta f_inf||^2)",
                {"slope": th_fit.slope, "ratio_at_widest": th[widths[-1]]},
                {"slope": fit.slope, "ratio_at_widest": measured[str(widths[-1])]},
                "slope interval (three largest widths) above 0, and the ratio at the widest net within 25% of the "
                "prediction", fit.low > 0 and abs(rel) <= 0.25, ci95=[fit.low, fit.high])
    summary["lipschitz"] = out


def _by_width(d: dict) -> list[str]:
    return sorted(d, key=int)


def report(summary: dict, out: Path) -> None:
    if "distortion_by_width" in summary:
        dist = summary["distortion_by_width"]
        succ = summary["lbfgs_success_rate"]
        print("(a) L-BFGS success " + ", ".join(f"{k}: {succ[k]:.2f}" for k in sorted(succ, key=lambda k: (
            k == "limit", int(k) if k != "limit" else 0))) + " (theory 1)")
        print("    min distortion (RMS/pixel) " + ", ".join(f"m={k}: {dist[k]:.4f}" for k in _by_width(dist))
              + f"; limit {summary['distortion_limit']:.4f}")
        print(f"    per-point gap to limit slope {summary['distortion_gap_slope']:+.3f} (theory -0.5)")
        print("    by decay (net / limit) " + ", ".join(
            f"{k}: {v:.4f}/{summary['distortion_by_decay_limit'][k]:.4f}" for k, v in
            summary["distortion_by_decay"].items()))
    if "noise_vs_adversarial" in summary:
        table = summary["noise_vs_adversarial"]
        for name in [*_by_width({k: v for k, v in table.items() if k != "limit"}), "limit"]:
            t = table[name]
            label = name if name == "limit" else f"m={name}"
            print(f"(b) {label:<8} clean {t['clean_error']:.3f}  noise " + " ".join(
                f"{k}x {v:.3f}" for k, v in t["noise_error"].items()) + f"  adversarial {t['adversarial_error']:.3f}")
    if "transfer" in summary:
        for variant in ("eta", "amplified"):
            tr = summary["transfer"][variant]
            label = "x + eta" if variant == "eta" else f"x + {summary['config']['amplify']:g} eta"
            print(f"(c) transfer of {label}, net-net / net-limit: " + ", ".join(
                f"m={w}: {tr['net_net'][w]:.2f}/{tr['net_limit'][w]:.2f}" for w in _by_width(tr["net_net"])))
        k = summary["transfer"]["kappa_excess"]
        print("    mean amplification k - 1 needed to transfer, net-net / net-limit: " + ", ".join(
            f"m={w}: {k['net_net'][w]:.3f}/{k['net_limit'][w]:.3f}" for w in _by_width(k["net_net"]))
              + f"; slope {summary['kappa_excess_net_net_slope']:+.2f} (theory -0.5)")
        print(f"    disjoint halves: {summary['transfer_halves']}")
    if "purity_by_width" in summary:
        p = summary["purity_by_width"]
        print("(d) purity units / random pre / random act / chance: " + ", ".join(
            f"m={w}: {p['purity_units'][w]:.3f}/{p['purity_random_pre'][w]:.3f}/{p['purity_random_act'][w]:.3f}/"
            f"{p['purity_chance'][w]:.3f}" for w in _by_width(p["purity_units"])))
    if "lipschitz" in summary:
        for state in ("init", "trained"):
            lp = summary["lipschitz"][state]
            print(f"(e) {state:<7} bound / grad norm " + ", ".join(
                f"m={w}: {lp['ratio_by_width'][w]:.2f} ({lp['theory_by_width'][w]:.2f})"
                for w in _by_width(lp["ratio_by_width"]))
                  + f"; slope {lp['slope_top3']:+.3f} (theory {lp['theory_slope_top3']:+.3f})")
    for name, pred in summary["predictions"].items():
        print(f"    {name:<38} {pred['verdict']}")
    print(f"Wrote {out}/")


# ------------------------------------------------------------------------------------------------ figures
def plot(rows, summary, out: Path) -> list[Path]:
    parts = set(summary["config"]["parts"])
    paths = []
    if "a" in parts:
        paths += _plot_distortion(rows, summary, out)
    if "b" in parts:
        paths += _plot_noise(rows, summary, out)
    if "c" in parts:
        paths += _plot_transfer(rows, summary, out)
    if parts & {"d", "e"}:
        paths += _plot_probes(rows, summary, out, parts)
    return paths


def _plot_distortion(rows, summary, out: Path) -> list[Path]:
    cfg = summary["config"]
    fig, (ax1, ax2) = plots.new_figure(2, 3.8, 3.0)
    full0 = dict(part="a", model="net", decay=0.0, train_set="full")
    sub = [r for r in select(rows, metric="distortion", **full0) if r["width"] in cfg["widths"]]
    plots.plot_metric(ax1, sub, "width", "distortion", label="finite width (mean, 95% CI)")
    plots.theory_line(ax1, summary["distortion_limit"], label="infinite width")
    ax1.set_xlabel("width m")
    ax1.set_ylabel("mean minimal distortion (RMS per pixel)")
    ax1.set_title("(a) minimal L-BFGS distortion vs width")
    ax1.text(0.97, 0.97, f"L-BFGS success on {min(summary['lbfgs_success_rate'].values()):.0%} of points",
             transform=ax1.transAxes, ha="right", va="top", fontsize=7)
    ax1.legend(frameon=False, loc="lower right")
    decays = sorted(cfg["decays"])
    nonzero = [v for v in decays if v > 0]
    plots.plot_metric(ax2, select(rows, part="a", model="net", width=cfg["decay_width"], train_set="full"), "decay",
                      "distortion", label=f"net m={cfg['decay_width']}", logx=None)
    lim = [summary["distortion_by_decay_limit"][str(v)] for v in decays]
    ax2.plot(decays, lim, ls="--", color="k", lw=1.0, marker="x", ms=4, label="infinite width")
    if nonzero:
        ax2.set_xscale("symlog", linthresh=min(nonzero))
    ax2.set_xlabel("weight decay lambda (anchored at init)")
    ax2.set_ylabel("mean minimal distortion (RMS per pixel)")
    ax2.set_title("(a) distortion vs weight decay")
    ax2.legend(frameon=False)
    fig.tight_layout()
    return plots.save(fig, out, "intriguing_distortion")


def _plot_noise(rows, summary, out: Path) -> list[Path]:
    cfg = summary["config"]
    fig, (ax,) = plots.new_figure(1, 4.2, 3.1)
    cmap = plots.plt.get_cmap("viridis")
    widths = sorted(cfg["widths"])
    for i, w in enumerate(widths):
        plots.plot_metric(ax, rows, "multiple", "noise_error", label=f"Gaussian noise, m={w}", logx=None,
                          color=cmap(0.1 + 0.75 * i / max(len(widths) - 1, 1)), part="b", model="net", width=w)
    line = plots.plot_metric(ax, rows, "multiple", "noise_error", label="Gaussian noise, infinite width", logx=None,
                             color="k", part="b", model="limit")
    line.set_linestyle("--")
    adv = [t["adversarial_error"] for t in summary["noise_vs_adversarial"].values()]
    ax.plot([1.0], [np.mean(adv)], marker="*", ms=11, color="C3", ls="none",
            label="minimal L-BFGS perturbation (1x)")
    ax.axhspan(0, cfg["noise_tolerance"], color="0.9", lw=0, label=f"tolerance {cfg['noise_tolerance']:g}")
    ax.set_xlabel("perturbation L2 norm / mean minimal adversarial norm")
    ax.set_ylabel("test error (attacked points)")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title("(b) adversarial vs Gaussian perturbations")
    ax.set_xticks([0.0, *cfg["noise_multiples"]])
    ax.legend(frameon=False, loc="center right", fontsize=6.5)
    return plots.save(fig, out, "intriguing_noise")


def _plot_transfer(rows, summary, out: Path) -> list[Path]:
    cfg = summary["config"]
    sub = select(rows, part="c", metric="transfer")
    names = list(dict.fromkeys(r["source"] for r in sub))
    fig, axes = plots.new_figure(3, 3.6, 3.4)
    index = {n: i for i, n in enumerate(names)}
    for ax, variant in zip(axes[:2], ("eta", "amplified")):
        mat = np.full((len(names), len(names)), np.nan)
        for r in select(sub, variant=variant):
            if r["target"] in index:
                mat[index[r["source"]], index[r["target"]]] = r["value"]
        im = ax.imshow(mat, vmin=0, vmax=1, cmap="magma")
        ax.set_xticks(range(len(names)))
        ax.set_yticks(range(len(names)))
        ax.set_xticklabels(names, rotation=90, fontsize=4.5)
        ax.set_yticklabels(names, fontsize=4.5)
        ax.set_xlabel("target model (evaluated)")
        ax.set_ylabel("source model (attacked)")
        title = "x + eta" if variant == "eta" else f"x + {cfg['amplify']:g} eta"
        ax.set_title(f"(c) transfer error, {title}")
        ax.spines[:].set_visible(True)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    ax = axes[2]
    for metric, label, color in (("kappa_excess_net_net", "net -> net (same m, other seed)", "C0"),
                                 ("kappa_excess_net_limit", "net -> infinite width", "C1"),
                                 ("kappa_excess_limit_net", "infinite width -> net", "C2")):
        sub = [r for r in select(rows, part="c", metric=metric) if np.isfinite(r["value"]) and r["value"] > 0]
        if sub:
            plots.plot_metric(ax, sub, "width", metric, label=label, color=color, logy=True)
    widths = sorted(cfg["widths"])
    anchor = summary["transfer"]["kappa_excess"]["net_net"][str(widths[0])]
    if np.isfinite(anchor) and anchor > 0:
        plots.theory_slope(ax, widths, anchor, -0.5, label="theory: slope -1/2")
    ax.set_xlabel("width m")
    ax.set_ylabel("mean k - 1 needed to transfer x + k eta")
    ax.set_title("(c) amplification needed to transfer")
    means = [v for v in summary["transfer"]["kappa_excess"]["net_net"].values() if np.isfinite(v) and v > 0]
    if means:
        ax.set_ylim(min(means) / 10, max(means) * 10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, loc="lower left", fontsize=6)
    else:
        ax.text(0.5, 0.5, "every pair transfers at k = 1", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    return plots.save(fig, out, "intriguing_transfer")


def _plot_probes(rows, summary, out: Path, parts) -> list[Path]:
    cfg = summary["config"]
    panels = [p for p in ("d", "e") if p in parts]
    fig, axes = plots.new_figure(len(panels), 3.8, 3.0)
    for ax, part in zip(axes, panels):
        if part == "d":
            for metric, label, color in (("purity_units", "hidden units (pre-activation)", "C0"),
                                         ("purity_random_pre", "random directions (pre-activation)", "C1"),
                                         ("purity_random_act", "random directions (activation)", "C2")):
                plots.plot_metric(ax, rows, "width", metric, label=label, color=color, part="d")
            line = plots.plot_metric(ax, rows, "width", "purity_chance", label="chance (random scores)", color="k",
                                     part="d")
            line.set_linestyle("--")
            ax.set_ylim(0.45, 1.02)
            ax.set_xlabel("width m")
            ax.set_ylabel(f"top-{cfg['top_k']} label purity (test set)")
            ax.set_title("(d) hidden units vs random directions")
        else:
            lp = summary["lipschitz"]
            widths = sorted(cfg["probe_widths"])
            for state, metric, color in (("init", "lipschitz_ratio_init", "C0"), ("trained", "lipschitz_ratio", "C1")):
                plots.plot_metric(ax, rows, "width", metric, label=f"{state}: measured", logy=True, part="e",
                                  color=color)
                ax.plot(widths, [lp[state]["theory_by_width"][str(w)] for w in widths], ls="--", color=color, lw=1.0,
                        label=f"{state}: theory")
            ax.axhline(1.0, color="0.6", lw=0.6)
            ax.set_xlabel("width m")
            ax.set_ylabel(r"$\|W\|_2\,\|a\|_2$ / mean $\|\nabla_x f\|_2$")
            ax.set_title("(e) operator-norm Lipschitz bound / true")
        ax.legend(frameon=False, fontsize=6, loc="lower left" if part == "d" else "upper left")
    fig.tight_layout()
    return plots.save(fig, out, "intriguing_probes")
