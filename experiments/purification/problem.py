"""The sparse-coding problem of Allen-Zhu & Li, the purified oracle, and the measurements: per-neuron purity
and dense mass (coefficients c_i = M^T w_i), clean and robust accuracy.

Neuron metrics: ``purity`` = max_j |<M_j, w_i>| / (||M_j|| ||w_i||) (a dense direction such as M w* has
purity 1/sqrt(n_atoms), a pure atom 1); decomposition w_i = beta w'_i + v_i with beta w'_i the projection of
w_i onto the span of its ``pure_atoms`` largest-|coefficient| atoms; ``dense_mass`` = ||v_i||^2 / ||w_i||^2;
``pure`` = 1 when ||beta w'_i|| > ||v_i||. Averages are weighted by the neuron's importance |a_i| ||w_i||.
Accuracies: clean, and robust under untargeted PGD (identity margin loss, targets -y) at L2 radius ``eps_l2``
and L-inf radius ``eps_linf``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import attacks, models
from ntk_adv.metrics import accuracy

from .config import Config


def make_problem(cfg: Config, seed: int) -> dict[str, np.ndarray]:
    """One sparse-coding problem (numpy, float32): dictionary ``dic`` (d, D), ``w_star`` (D,), train/test
    inputs and labels. Deterministic in (cfg.seed, seed)."""
    rng = np.random.default_rng([cfg.seed, seed])
    data = cfg.data
    d, big_d = data.d, data.n_atoms
    g = rng.standard_normal((d, big_d))
    if data.dictionary == "orthogonal":
        q, r = np.linalg.qr(g)
        dic = q * np.where(np.diagonal(r) >= 0, 1.0, -1.0)[None, :]
    else:
        dic = g / np.linalg.norm(g, axis=0, keepdims=True)
    w_star = rng.choice([-1.0, 1.0], big_d)

    def sample(n):
        support = np.argsort(rng.random((n, big_d)), axis=1)[:, : data.sparsity]
        z = np.zeros((n, big_d))
        np.put_along_axis(z, support, rng.choice([-1.0, 1.0], (n, data.sparsity)), axis=1)
        x = z @ dic.T + data.noise * rng.standard_normal((n, d))
        return x.astype(np.float32), np.sign(z @ w_star).astype(np.float32)

    x, y = sample(data.n_train)
    xt, yt = sample(data.n_test)
    return {
        "dic": dic.astype(np.float32),
        "w_star": w_star.astype(np.float32),
        "x": x,
        "y": y,
        "x_test": xt,
        "y_test": yt,
    }


def make_problems(cfg: Config, seeds=None) -> dict[str, jax.Array]:
    """The problems of ``seeds`` (default: all, 0 .. cfg.seeds - 1), stacked along a leading seed axis."""
    probs = [make_problem(cfg, s) for s in (range(cfg.seeds) if seeds is None else seeds)]
    return {k: jnp.asarray(np.stack([p[k] for p in probs])) for k in probs[0]}


def oracle_params(dic: jax.Array, w_star: jax.Array, threshold: float) -> models.TwoLayerParams:
    """The ideal purified net (standard parametrization, width 2D): neurons +-M_j, bias -threshold, readout
    +-w*_j, i.e. f(x) = sum_j w*_j [relu(<M_j,x> - b) - relu(-<M_j,x> - b)]."""
    w = jnp.concatenate([dic.T, -dic.T], axis=0)
    return models.TwoLayerParams(
        w=w, b=jnp.full((w.shape[0],), -threshold), a=jnp.concatenate([w_star, -w_star])
    )


def oracle_net(cfg: Config) -> models.TwoLayerConfig:
    return models.TwoLayerConfig(2 * cfg.data.n_atoms, gamma=0.0, bias=True, parametrization="standard")


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
    return {
        "purity": purity,
        "dense_mass": (dense_norm / safe_w) ** 2,
        "pure": (pure_norm > dense_norm).astype(w.dtype),
        "importance": jnp.abs(a) * w_norm,
    }


def summarize_neurons(stats: dict[str, jax.Array]) -> dict[str, jax.Array]:
    weight = stats["importance"] / jnp.sum(stats["importance"])
    return {
        "purity": jnp.sum(weight * stats["purity"]),
        "dense_mass": jnp.sum(weight * stats["dense_mass"]),
        "pure_fraction": jnp.sum(weight * stats["pure"]),
    }


def robust_accuracy(predict, x, y, *, eps: float, norm: str, steps: int) -> jax.Array:
    """Accuracy under untargeted PGD (targeted toward -y), identity margin loss, step 2.5 eps / steps."""
    if eps == 0:
        return accuracy(predict(x), y)
    eta = attacks.pgd(predict, x, labels=y, eps=eps, step_size=2.5 * eps / steps, steps=steps, norm=norm)
    return accuracy(predict(x + eta), y)


def accuracies(cfg: Config, predict, x, y) -> dict[str, jax.Array]:
    return {
        "clean_acc": accuracy(predict(x), y),
        "robust_acc_l2": robust_accuracy(predict, x, y, eps=cfg.eps_l2, norm="l2", steps=cfg.eval_steps),
        "robust_acc_linf": robust_accuracy(
            predict, x, y, eps=cfg.eps_linf, norm="linf", steps=cfg.eval_steps
        ),
    }


def net_metrics(cfg: Config, net: models.TwoLayerConfig, params, params0, prob) -> dict[str, jax.Array]:
    apply_fn = models.make_apply(net)
    out = accuracies(cfg, lambda q: apply_fn(params, q), prob["x_test"], prob["y_test"])
    out.update(summarize_neurons(neuron_stats(params.w, params.a, prob["dic"], cfg.pure_atoms)))
    out["weight_move"] = jnp.linalg.norm(params.w - params0.w) / jnp.linalg.norm(params0.w)
    return out
