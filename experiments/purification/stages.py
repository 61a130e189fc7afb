"""Training and evaluation of every model, each stage one jitted vmap over seeds. Gradient loops are the
library's (:func:`ntk_adv.training.train`, :func:`ntk_adv.training.adversarial_train`, kernel flow of
:func:`ntk_adv.limits.make_predictor`); every stage takes an explicit key."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ntk_adv import attacks, limits, models, training
from ntk_adv.arch import INF_WIDTH
from ntk_adv.training import TrainConfig, train

from .config import LOSS, Config
from .problem import accuracies, net_metrics, neuron_stats, oracle_net, oracle_params, summarize_neurons


def adversarial_attack(cfg: Config):
    """``attack(predict, x, y) -> eta``: the untargeted training attack (``labels=y``, identity margin loss)
    at radius ``adv_eps`` in the attack's norm (fgm, pgd_l2: L2; pgd_linf: L-inf)."""
    if cfg.adv_attack == "fgm":
        return lambda predict, x, y: attacks.fgm(predict, x, labels=y, eps=cfg.adv_eps)
    norm = cfg.adv_norm()
    step = 2.5 * cfg.adv_eps / cfg.adv_attack_steps
    return lambda predict, x, y: attacks.pgd(
        predict, x, labels=y, eps=cfg.adv_eps, step_size=step, steps=cfg.adv_attack_steps, norm=norm
    )


def adversarial_train(cfg: Config, apply_fn, params, x, y, *, lr, steps: int, key, mask=None):
    """``steps`` of adversarial training (alpha = 0: the loss at x + eta only), the library loop."""
    attack = adversarial_attack(cfg)
    return training.adversarial_train(
        apply_fn,
        params,
        x,
        y,
        perturb=lambda f, x, y, k: attack(f, x, y),
        alpha=0.0,
        loss=LOSS,
        lr=lr,
        steps=steps,
        key=key,
        mask=mask,
    )


def linear_apply(params, x):
    """Linear model f(x) = x.w + b, params = (w (d,), b ()); x (N, d) -> (N,)."""
    w, b = params
    return x @ w + b


def stage_train(cfg: Config, key, prob):
    """Clean feature-learning training, then adversarial training from the clean weights in ``checkpoints``
    chunks. Returns the initial and clean parameters and the parameters after each chunk (leading axis)."""
    net = cfg.net
    apply_fn = models.make_apply(net)
    mask = models.trainable_mask(net)
    p0 = models.init_params(net, cfg.data.d, key=jax.random.fold_in(key, 1))
    p_clean = train(apply_fn, p0, prob["x"], prob["y"], cfg.train, mask=mask).params
    chunk = cfg.adv_steps // cfg.checkpoints

    def body(p, k):
        p = adversarial_train(
            cfg, apply_fn, p, prob["x"], prob["y"], lr=cfg.adv_lr, steps=chunk, key=k, mask=mask
        )
        return p, p

    keys = jax.random.split(jax.random.fold_in(key, 3), cfg.checkpoints)
    _, p_adv = jax.lax.scan(body, p_clean, keys)
    return p0, p_clean, p_adv


def stage_evaluate(cfg: Config, prob, p0, p_clean, p_adv):
    """Metrics and per-neuron statistics of the clean net and of every adversarial-training checkpoint.
    ``weight_move`` is measured from the initialization for the clean net and from the clean weights for the
    checkpoints. Returns ((C+1,) metrics, (C+1, m) stats)."""
    net = cfg.net
    stack = jax.tree_util.tree_map(lambda c, a: jnp.concatenate([c[None], a]), p_clean, p_adv)
    refs = jax.tree_util.tree_map(
        lambda i, c, a: jnp.concatenate([i[None], jnp.broadcast_to(c, a.shape)]), p0, p_clean, p_adv
    )

    def one(p, ref):
        return net_metrics(cfg, net, p, ref, prob), neuron_stats(p.w, p.a, prob["dic"], cfg.pure_atoms)

    return jax.vmap(one)(stack, refs)


def stage_lazy(cfg: Config, key, prob):
    """The lazy-regime net (NTK parametrization, init scale 1) trained clean and, from the same init, trained
    adversarially (same attack and radius as the rich net); both for ``lazy_steps`` at ``lazy_lr``."""
    net = cfg.lazy_net()
    apply_fn = models.make_apply(net)
    mask = models.trainable_mask(net)
    p0 = models.init_params(net, cfg.data.d, key=jax.random.fold_in(key, 2))
    tcfg = TrainConfig(loss=LOSS, lr=cfg.lazy_lr, steps=cfg.lazy_steps, record_loss=False)
    p1 = train(apply_fn, p0, prob["x"], prob["y"], tcfg, mask=mask).params
    p_adv = adversarial_train(
        cfg,
        apply_fn,
        p0,
        prob["x"],
        prob["y"],
        lr=cfg.lazy_lr,
        steps=cfg.lazy_steps,
        key=jax.random.fold_in(key, 4),
        mask=mask,
    )
    lazy, lazy_adv = net_metrics(cfg, net, p1, p0, prob), net_metrics(cfg, net, p_adv, p0, prob)
    limit = limits.make_predictor(
        cfg.lazy_net().with_width(INF_WIDTH).kernel,
        prob["x"],
        prob["y"],
        loss=LOSS,
        lr=cfg.lazy_lr,
        steps=cfg.lazy_steps,
    )
    lazy["agreement_with_limit"] = jnp.mean(
        jnp.sign(apply_fn(p1, prob["x_test"])) == jnp.sign(limit(prob["x_test"]))
    )
    return {"lazy": lazy, "lazy_adv": lazy_adv}


def stage_kernels(cfg: Config, key, prob):
    """The NTK limit (kernel flow of the lazy net, f_0 = 0), its adversarially trained version
    (``kernel_rounds`` refits on the training points moved by the training attack against the current
    predictor), logistic regression clean and adversarially trained, and the purified oracle."""
    attack = adversarial_attack(cfg)
    x, y = prob["x"], prob["y"]
    fit = partial(
        limits.make_predictor,
        cfg.lazy_net().with_width(INF_WIDTH).kernel,
        loss=LOSS,
        lr=cfg.lazy_lr,
        steps=cfg.lazy_steps,
    )
    limit = fit(x, y)
    kernel_adv = limit
    for _ in range(cfg.kernel_rounds):
        kernel_adv = fit(x + jax.lax.stop_gradient(attack(kernel_adv, x, y)), y)
    lin0 = (jnp.zeros((cfg.data.d,), x.dtype), jnp.zeros((), x.dtype))
    lin = train(linear_apply, lin0, x, y, cfg.train).params
    lin_adv = adversarial_train(
        cfg, linear_apply, lin0, x, y, lr=cfg.train.lr, steps=cfg.train.steps, key=jax.random.fold_in(key, 5)
    )
    oracle = oracle_params(prob["dic"], prob["w_star"], cfg.oracle_threshold)
    oracle_fn = models.make_apply(oracle_net(cfg))
    acc = lambda f: accuracies(cfg, f, prob["x_test"], prob["y_test"])
    m_oracle = acc(lambda q: oracle_fn(oracle, q))
    m_oracle.update(summarize_neurons(neuron_stats(oracle.w, oracle.a, prob["dic"], cfg.pure_atoms)))
    return {
        "ntk_limit": acc(limit),
        "kernel_adv": acc(kernel_adv),
        "linear": acc(partial(linear_apply, lin)),
        "linear_adv": acc(partial(linear_apply, lin_adv)),
        "oracle": m_oracle,
    }
