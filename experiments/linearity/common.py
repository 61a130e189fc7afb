"""Models and measurements shared by the linearity parts: the linear model, centred nets, the RBF kernel
machine, FGSM error rates, and the papers' numbers (Goodfellow, Shlens, Szegedy, ICLR 2015)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import attacks, limits, models
from ntk_adv.metrics import accuracy
from ntk_adv.results import select
from ntk_adv.training import TrainConfig, centered, centered_mask, train

GOODFELLOW = "Goodfellow, Shlens, Szegedy, Explaining and harnessing adversarial examples, ICLR 2015"
PAPER_SOFTMAX = (
    f"{GOODFELLOW}, Sec. 4: shallow softmax regression on MNIST, FGSM eps 0.25 (pixels in [0, 1]): "
    "99.9% error (mean confidence 79.3%)"
)
PAPER_MAXOUT = f"{GOODFELLOW}, Sec. 4: maxout network on MNIST, FGSM eps 0.25: 89.4% error (confidence 97.6%)"
PAPER_RBF = (
    f"{GOODFELLOW}, Sec. 7: shallow RBF network on MNIST, FGSM eps 0.25: 55.4% error, confidence 1.2% "
    "on its mistakes (vs 99.9% for softmax regression)"
)
PAPER_ADV = (
    f"{GOODFELLOW}, Sec. 6: adversarial training (alpha 0.5, eps 0.25) of maxout on MNIST: FGSM error "
    "89.4% -> 17.9%"
)
PAPER_REG = (
    f"{GOODFELLOW}, Sec. 6: adversarial training as a regularizer: maxout clean test error 0.94% -> "
    "0.84% (with dropout, early stopping on a validation set)"
)
PAPER_TRANSFER = (
    f"{GOODFELLOW}, Sec. 6/8: FGSM examples transfer across models (examples of the original "
    "maxout net misclassified by the adversarially trained one at 19.6%, the reverse 40.9%, as we "
    "recall them; Sec. 8: different models misclassify the same examples, often as the same class)"
)
SETTINGS = (
    "here: binary two-layer ReLU nets (first layer trained, lazy regime) and their NTK limit on two classes "
    "of 8x8 digits (d = 64) unless MNIST is given; the paper: 10-class models on MNIST (d = 784). The "
    "FGSM logit change grows like eps ||w||_1 ~ d (part a), so at the same eps the effect on 64 pixels is "
    "~12x smaller than on 784"
)


def linear_apply(params, x):
    """Linear model f(x) = x.w + b, params = (w (d,), b ()); x (N, d) -> (N,)."""
    w, b = params
    return x @ w + b


def train_linear(x, y, tcfg: TrainConfig):
    """Logistic (softmax-like, binary) regression from zero weights with the library loop."""
    p0 = (jnp.zeros((x.shape[1],), x.dtype), jnp.zeros((), x.dtype))
    return train(linear_apply, p0, x, y, tcfg).params


def init_centered(net: models.TwoLayerConfig, d: int, key, dtype):
    """(params, params0) of a centred net, f(x; params) - f(x; params0), both drawn from ``key``."""
    return models.centred_pair(net, d, key=key, dtype=dtype)[1]


def train_centered(net: models.TwoLayerConfig, x, y, tcfg: TrainConfig, key, params0=None):
    """Centred net (params, params0) trained from a fresh init (``train`` with the centred mask); ``params0``
    overrides the init drawn from ``key`` (e.g. :func:`padded_init`)."""
    apply_c = centered(models.make_apply(net))
    p0 = init_centered(net, x.shape[1], key, x.dtype) if params0 is None else (params0, params0)
    return train(apply_c, p0, x, y, tcfg, mask=centered_mask(models.trainable_mask(net))).params


def padded_init(net: models.TwoLayerConfig, m, d: int, key, dtype) -> models.TwoLayerParams:
    """Init of a width-``m`` net stored in ``net.width`` >= m units (``m`` may be traced): units >= m are zero
    (w, b, a = 0: no output, zero gradient with a frozen readout, no sign change along any ray), the readout
    of the first m units is rescaled by sqrt(width / m), so that in both parametrizations the padded net is
    exactly a width-m net at init and along training. One compiled program then serves every width."""
    p = models.init_params(net, d, key=key, dtype=dtype)
    keep = (jnp.arange(net.width) < m).astype(dtype)
    scale = jnp.sqrt(jnp.asarray(net.width, dtype) / m)
    return models.TwoLayerParams(w=p.w * keep[:, None], b=p.b * keep, a=p.a * keep * scale)


def rbf_kernel(x, z, *, scale):
    """Gaussian RBF kernel exp(-||x - z||^2 / (2 scale^2)); x (N, d), z (M, d) -> (N, M)."""
    sq = jnp.sum(x**2, 1)[:, None] + jnp.sum(z**2, 1)[None, :] - 2.0 * x @ z.T
    return jnp.exp(-jnp.maximum(sq, 0.0) / (2.0 * scale**2))


def median_distance(x) -> float:
    x = np.asarray(x, float)
    sq = np.sum(x**2, 1)[:, None] + np.sum(x**2, 1)[None, :] - 2 * x @ x.T
    d = np.sqrt(np.maximum(sq[np.triu_indices(len(x), 1)], 0.0))
    return float(np.median(d))


def rbf_predictor(x, y, tcfg: TrainConfig, scale_fraction: float):
    """An RBF kernel machine (Gaussian units centred on the training points, coefficients from the same
    logistic-loss kernel flow as the NTK limit): the 'less linear' model of Goodfellow et al., Sec. 7."""
    scale = scale_fraction * median_distance(x)
    return limits.make_predictor(
        partial(rbf_kernel, scale=scale), x, y, loss=tcfg.loss, lr=tcfg.lr, steps=tcfg.steps
    )


def wrong(f, z, y):
    """Indicator (M,) of misclassified points (ties count as wrong: sign(0) is no class)."""
    return (jnp.sign(f(z)) != y).astype(z.dtype)


def error(f, z, y):
    return jnp.clip(1.0 - accuracy(f(z), y), 0.0, 1.0)  # no -0.0 / 1e-8 round-off below zero


def fgsm_step(f, z, y, eps, loss):
    """Untargeted FGSM (targeted toward -y) of L-inf size eps; z (M, d) -> perturbation (M, d)."""
    return attacks.fgsm(f, z, labels=y, eps=eps, loss=loss)


def fgsm_errors(f, z, y, eps_grid, loss):
    """FGSM error rate for each eps in eps_grid (E,) -> (E,)."""
    return jax.vmap(lambda eps: error(f, z + fgsm_step(f, z, y, eps, loss), y))(eps_grid)


def values(rows, **where) -> np.ndarray:
    return np.asarray([r["value"] for r in select(rows, **where)], float)


def geomean(v) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(v, float)))))
