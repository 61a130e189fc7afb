"""The models of the experiment: the trained nets of one width (all seeds in one jitted vmap), the
infinite-width kernel predictor, the 1-nearest-neighbour rule, the test pairs and the one-step attack."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import attacks, limits, models
from ntk_adv.arch import INF_WIDTH
from ntk_adv.data import load_spec
from ntk_adv.metrics import flip_points
from ntk_adv.training import centered, centered_mask, train

from .config import Config


# ------------------------------------------------------------------------------------------------ baselines
def nearest_neighbour(x_train: jax.Array, y_train: jax.Array):
    """1-NN score ``z -> min_{y=-1} ||z - x_n|| - min_{y=+1} ||z - x_n||`` (> 0: class +1); continuous in
    z."""

    def score(z):
        sq = jnp.sum(z * z, axis=1)[:, None] + jnp.sum(x_train * x_train, axis=1)[None, :] - 2 * z @ x_train.T
        dist = jnp.sqrt(jnp.maximum(sq, 0.0))
        big = jnp.asarray(jnp.inf, dist.dtype)
        pos = jnp.min(jnp.where(y_train[None, :] > 0, dist, big), axis=1)
        neg = jnp.min(jnp.where(y_train[None, :] < 0, dist, big), axis=1)
        return neg - pos

    return score


# ------------------------------------------------------------------------------------------------ models
def make_pairs(cfg: Config, x_test: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (a, b) of ``n_pairs`` random test pairs with y_a = +1, y_b = -1 (fixed by ``seed``)."""
    rng = np.random.default_rng(cfg.seed)
    pos, neg = np.flatnonzero(y_test > 0), np.flatnonzero(y_test < 0)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("the test set needs points of both classes to form flip-point pairs")
    return rng.choice(pos, cfg.n_pairs), rng.choice(neg, cfg.n_pairs)


def attack_fn(cfg: Config, eps: float):
    if cfg.attack == "fgm":
        return lambda predict, x, y: attacks.fgm(predict, x, labels=y, eps=eps)
    return lambda predict, x, y: attacks.fgsm(predict, x, labels=y, eps=eps)


def train_width(cfg: Config, width: int, arrays: dict, eps: float):
    """All seeds of one width in one jitted vmap: trained parameters, and per seed the flip points, test
    outputs and adversarial test inputs (and, for uncentred nets, the flip points of the net's own limit)."""
    net = cfg.net.with_width(width)
    apply_fn = models.make_apply(net)
    model_fn = centered(apply_fn) if cfg.centered else apply_fn
    tcfg = cfg.train
    x, y, xt, yt = arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]
    xa, xb = arrays["xa"], arrays["xb"]
    attack = attack_fn(cfg, eps)
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), width), cfg.seeds)

    def one_seed(key):
        p0 = models.init_params(net, x.shape[1], key=key, dtype=x.dtype)
        mask = models.trainable_mask(net)
        start, mask = ((p0, p0), centered_mask(mask)) if cfg.centered else (p0, mask)
        params = train(model_fn, start, x, y, tcfg, mask=mask).params
        predict = lambda q: model_fn(params, q)
        t_net, found = flip_points(predict, xa, xb, grid=cfg.grid, bisection=cfg.bisection)
        out = {"t": t_net, "found": found, "out_test": predict(xt), "x_adv": xt + attack(predict, xt, yt)}
        if not cfg.centered:  # each net's own limit keeps its initial function f_0
            own_limit = limits.make_predictor(
                cfg.net.with_width(INF_WIDTH).kernel,
                x,
                y,
                loss=cfg.train.loss,
                lr=cfg.train.lr,
                steps=cfg.train.steps,
                f0=lambda q: apply_fn(p0, q),
            )
            out["t_own_limit"] = flip_points(own_limit, xa, xb, grid=cfg.grid, bisection=cfg.bisection)[0]
        return params, out

    return jax.jit(jax.vmap(one_seed))(keys)


def evaluate_width(cfg: Config, width: int, params, points: jax.Array) -> jax.Array:
    """Outputs of every seed's net (seeds, K) on ``points`` (K, d)."""
    apply_fn = models.make_apply(cfg.net.with_width(width))
    model_fn = centered(apply_fn) if cfg.centered else apply_fn
    return jax.jit(jax.vmap(lambda p: model_fn(p, points)))(params)


# ------------------------------------------------------------------------------------------------ statistics
def mean_abs_diff(t1: np.ndarray, t2: np.ndarray) -> float:
    """Mean |t1 - t2| over the pairs where both predictors flip (NaN if none)."""
    ok = np.isfinite(t1) & np.isfinite(t2)
    return float(np.mean(np.abs(t1[ok] - t2[ok]))) if ok.any() else np.nan


def setup(cfg: Config) -> tuple:
    """(data set, arrays dict: x, y, x_test, y_test and the pair end points xa, xb (n_pairs, d), attack
    radius eps, median pair distance): what every unit derives from the config the same way."""
    ds = load_spec(cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    xt, yt = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    ia, ib = make_pairs(cfg, ds.x_test, ds.y_test)
    median_dist = float(np.median(np.linalg.norm(ds.x_test[ia] - ds.x_test[ib], axis=1)))
    eps = cfg.eps * median_dist / (1.0 if cfg.attack == "fgm" else np.sqrt(x.shape[1]))
    arrays = {"x": x, "y": y, "x_test": xt, "y_test": yt, "xa": xt[ia], "xb": xt[ib]}
    return ds, arrays, eps, median_dist


def kernel_limit(cfg: Config, arrays: dict):
    """The infinite-width (centred) kernel predictor trained like the nets."""
    return limits.make_predictor(
        cfg.net.with_width(INF_WIDTH).kernel,
        arrays["x"],
        arrays["y"],
        loss=cfg.train.loss,
        lr=cfg.train.lr,
        steps=cfg.train.steps,
    )
