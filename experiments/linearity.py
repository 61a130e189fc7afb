"""The linearity explanation of adversarial examples (Goodfellow, Shlens, Szegedy 2015), at finite and infinite width.

Claims, each measured on finite two-layer nets of several widths and on their infinite-width (NTK) predictor:

(a) Dimension. The FGSM logit change eps * ||grad_x f||_1 grows linearly in the input dimension d, a random-sign
    perturbation of the same L-inf size only like sqrt(d) (first order: eps |grad_x f . r|, r uniform signs), so
    their ratio is ~ sqrt(d) (exactly sqrt(d) for Gaussian gradient entries). Synthetic data, d swept, for a
    linear model, a wide net and the limit, trained with the identity loss. Predicted log-log slopes vs d: 1 and
    1/2. Part (a) always uses the standard parametrization: Goodfellow's argument assumes weights of fixed
    per-coordinate size (in the NTK parametrization both slopes drop by 1, the ratio still grows like sqrt(d)).
(b) Rays. Along the FGSM ray x + t s, s = sign of the loss gradient, t in [-T, T], a finite ReLU net is exactly
    piecewise linear, with kinks only where a hidden unit changes sign (their number grows like the width m),
    and close to linear overall (R^2 of a line fit); as m grows the curve converges to the smooth
    infinite-width curve (sup distance ~ m^(-1/2)); the wrong-class set along the ray is one interval.
(c) FGSM error vs eps for logistic regression, nets of several widths and the limit (digits data).
(d) Adversarial training with J~ = a J(x) + (1 - a) J(x + eps sign grad_x J) lowers the FGSM error at that eps
    compared to clean training; training on random-sign noise of the same size does not.

Finite nets are *centred*, f(x; theta_t) - f(x; theta_0) (docs/theory.md): the random initial function is removed
and their infinite-width limit is the width-independent kernel predictor f(z) = Theta(z, X) coef. Trained
first layer, frozen readout, full-batch gradient descent (the theory preset); ``parts`` selects a subset.

Outputs in ``out``: results.csv (long format: part, model, width, d, eps, t, seed, metric, value), summary.json
(measured slopes / values next to each prediction, and a ``verdict`` per claim in ``claims``), and figures
linearity_dimension (a), linearity_ray (b), linearity_fgsm (c, d) as .png and .pdf.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ntk_adv import attacks, kernels, limits, models, plots, training
from ntk_adv.data import DataSpec, load_spec
from ntk_adv.losses import MARGIN_LOSSES
from ntk_adv.metrics import accuracy, fit_loglog_slope, mean_ci
from ntk_adv.models import apply_in_chunks
from ntk_adv.results import claims_table, prediction, provenance, select, write_csv, write_json
from ntk_adv.training import TrainConfig, centered, centered_mask, train

COMMAND = "linearity"
ADV_MODES = ("clean", "fgsm", "noise")
DIM_MODELS = ("linear", "net", "limit")
DIM_METRICS = ("fgsm_change", "fgsm_first_order", "random_change", "random_first_order", "fgsm_random_ratio")
RAY_METRICS = ("ray_sup_gap", "ray_kinks", "ray_pl_residual", "ray_wrong_contiguous", "ray_linear_r2")
PL_TOLERANCE = 1e-4  # max relative deviation from linearity between consecutive kinks (float32 round-off)


@dataclass(frozen=True)
class Config:
    # (a) dimension sweep on synthetic data (identity loss: the gradient is linear in the training time)
    dims: tuple[int, ...] = (16, 64, 256, 1024)
    synthetic: str = "gauss"
    n_synthetic: int = 200
    n_points: int = 100  # held-out points at which the logit changes are measured
    dim_width: int = 512
    dim_eps: float = 0.01
    dim_loss: str = "identity"
    dim_lr: float = 0.01
    dim_steps: int = 100
    # (b), (c): real data, widths
    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=None, n_test=None))
    widths: tuple[int, ...] = (16, 64, 256, 1024, 4096)
    seeds: int = 4
    loss: str = "logistic"
    lr: float = 0.5
    steps: int = 200
    eps_grid: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
    ray_t: float = 1.0  # rays x + t s for t in [-ray_t, ray_t]
    ray_points: int = 801
    n_rays: int = 32
    # (d) adversarial training
    adv_width: int = 512
    adv_eps: float = 0.3
    adv_alpha: float = 0.5
    adv_margin: float = 0.1  # adversarial training must lower the FGSM error by at least this much
    gamma: float = 0.0
    parametrization: str = "standard"  # parts (b)-(d); part (a) always uses the standard parametrization
    parts: str = "abcd"  # which parts to run, any subset of "abcd"
    seed: int = 0

    def __post_init__(self):
        if not self.parts or set(self.parts) - set("abcd"):
            raise ValueError(f"parts must be a non-empty subset of 'abcd', got {self.parts!r}")
        for name in ("dims", "widths"):
            v = getattr(self, name)
            if len(v) < 3 or min(v) < 1 or len(set(v)) != len(v):
                raise ValueError(f"{name} must hold >= 3 distinct integers >= 1 (for a slope fit), got {v}")
        if self.synthetic not in ("gauss", "shifted_gauss"):
            raise ValueError(f"synthetic must be 'gauss' or 'shifted_gauss', got {self.synthetic!r}")
        for name in ("seeds", "n_synthetic", "n_points", "dim_width", "adv_width", "n_rays"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ray_points < 5:
            raise ValueError(f"ray_points must be >= 5, got {self.ray_points}")
        for name in ("dim_eps", "ray_t", "adv_eps"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v}")
        if not self.eps_grid or any(not np.isfinite(e) or e < 0 for e in self.eps_grid):
            raise ValueError(f"eps_grid must be a non-empty list of finite values >= 0, got {self.eps_grid}")
        if not 0.0 <= self.adv_alpha <= 1.0:
            raise ValueError(f"adv_alpha must be in [0, 1], got {self.adv_alpha}")
        if not (np.isfinite(self.adv_margin) and self.adv_margin >= 0):
            raise ValueError(f"adv_margin must be finite and >= 0, got {self.adv_margin}")
        for name in ("dim_loss", "loss"):
            if getattr(self, name) not in MARGIN_LOSSES:
                raise ValueError(f"{name} must be a margin loss ({', '.join(MARGIN_LOSSES)}), got "
                                 f"{getattr(self, name)!r}")
        models.TwoLayerConfig(self.dim_width, gamma=self.gamma, parametrization=self.parametrization)
        TrainConfig(loss=self.loss, lr=self.lr, steps=self.steps)
        TrainConfig(loss=self.dim_loss, lr=self.dim_lr, steps=self.dim_steps)

    def net(self, width: int, parametrization: str | None = None) -> models.TwoLayerConfig:
        return models.TwoLayerConfig(width, gamma=self.gamma, parametrization=parametrization or self.parametrization)

    def kernel(self) -> kernels.KernelFn:
        return kernels.two_layer_kernel(gamma=self.gamma, parametrization=self.parametrization)


# A smoke-test scale (``ntk-adv report --quick``; numbers indicative only).
QUICK_CONFIG = Config(dims=(16, 64, 256), dim_width=256, n_synthetic=100, n_points=50, widths=(16, 128, 1024), seeds=2,
                      data=DataSpec("digits", n_train=120, n_test=60), steps=100, ray_points=201, n_rays=8,
                      eps_grid=(0.0, 0.1, 0.2, 0.3, 0.4), adv_width=128)


# ------------------------------------------------------------------------------------------------ helpers
def _linear_apply(params, x):
    """Linear model f(x) = x.w + b, params = (w (d,), b ())."""
    w, b = params
    return x @ w + b


def _train_centered(net: models.TwoLayerConfig, x, y, tcfg: TrainConfig, key):
    """Centred net (params, params0) trained from a fresh init (first layer only)."""
    p0 = models.init_params(net, x.shape[1], key=key, dtype=x.dtype)
    apply_c = centered(models.make_apply(net))
    return train(apply_c, (p0, p0), x, y, tcfg, mask=centered_mask(models.trainable_mask(net))).params


def _on_ray(f, z, s, ts):
    """f(z_j + t s_j) for rays j: z, s (M, d); ts (G,) shared or (M, G) per ray -> (M, G)."""
    ts = jnp.broadcast_to(ts, (z.shape[0], ts.shape[-1]))
    pts = z[:, None, :] + ts[:, :, None] * s[:, None, :]
    return apply_in_chunks(f, pts.reshape(-1, z.shape[1])).reshape(ts.shape)


def _crossings(p, net, z, s, t_max):
    """Ray parameters t (M, m) at which each hidden unit's pre-activation w.(z + t s) + b is zero; units that
    do not cross inside [-t_max, t_max] get +t_max (a zero-length segment, harmless for the midpoint test)."""
    u = models.hidden(p, z, net)
    v = models.hidden(p, z + s, net) - u
    t = -u / jnp.where(v != 0, v, 1.0)
    inside = (v != 0) & (jnp.abs(t) <= t_max)
    return jnp.where(inside, t, t_max), inside


def _wrong_runs(out, y):
    """Number of maximal runs of grid points classified wrongly, per ray: out (M, G), y (M,) -> (M,)."""
    wrong = (jnp.where(out >= 0, 1.0, -1.0) != y[:, None]).astype(jnp.int32)
    starts = jnp.sum((wrong[:, 1:] - wrong[:, :-1]) == 1, axis=1)
    return starts + wrong[:, 0]


def _linear_r2(ts, out):
    """R^2 of the least-squares line through (t, f(t)) per ray; out (M, G)."""
    tc = ts - jnp.mean(ts)
    oc = out - jnp.mean(out, axis=1, keepdims=True)
    slope = (oc @ tc) / jnp.sum(tc**2)
    resid = oc - slope[:, None] * tc[None, :]
    return 1.0 - jnp.sum(resid**2, axis=1) / jnp.maximum(jnp.sum(oc**2, axis=1), 1e-30)


def _error(f, z, y):
    return jnp.clip(1.0 - accuracy(f(z), y), 0.0, 1.0)  # no -0.0 / 1e-8 round-off below zero


def _fgsm_errors(f, z, y, eps_grid, loss):
    """FGSM (untargeted: targeted toward -y) error rate for each eps in eps_grid (E,) -> (E,)."""
    def one(eps):
        return _error(f, z + attacks.fgsm(f, z, -y, eps=eps, loss=loss), y)
    return jax.vmap(one)(eps_grid)


# ------------------------------------------------------------------------------------------------ (a)
@partial(jax.jit, static_argnums=0)
def _dimension_cell(cfg: Config, x, y, z, keys):
    """All seeds of one dimension d: x (S, N, d), y (S, N), z (S, M, d), keys (S, 2) -> metric dicts (S,)."""
    tcfg = TrainConfig.theory(lr=cfg.dim_lr, steps=cfg.dim_steps, loss=cfg.dim_loss, record_loss=False)
    net = cfg.net(cfg.dim_width, "standard")
    apply_c = centered(models.make_apply(net))
    kernel = kernels.two_layer_kernel(gamma=cfg.gamma, parametrization="standard")
    eps = cfg.dim_eps

    def one(x, y, z, key):
        k_net, k_sign = jax.random.split(key)
        d = x.shape[1]
        lin = train(_linear_apply, (jnp.zeros((d,), x.dtype), jnp.zeros((), x.dtype)), x, y, tcfg).params
        pair = _train_centered(net, x, y, tcfg, k_net)
        limit = limits.make_predictor(kernel, x, y, loss=cfg.dim_loss, lr=cfg.dim_lr, steps=cfg.dim_steps)
        preds = {"linear": partial(_linear_apply, lin), "net": partial(apply_c, pair), "limit": limit}
        up = jnp.ones((z.shape[0],), z.dtype)
        r = eps * jax.random.rademacher(k_sign, z.shape, dtype=z.dtype)
        out = {}
        for name, f in preds.items():
            fz = f(z)
            g = -attacks.input_gradients(f, z, up, loss="identity")  # grad_x f (identity loss: l = -f)
            eta = eps * jnp.sign(g)  # = attacks.fgsm(f, z, up, eps=eps): the FGSM step that raises f
            fgsm_change = jnp.mean(jnp.abs(f(z + eta) - fz))
            random_change = jnp.mean(jnp.abs(f(z + r) - fz))
            out[name] = {
                "fgsm_change": fgsm_change,
                "fgsm_first_order": eps * jnp.mean(jnp.sum(jnp.abs(g), axis=1)),
                "random_change": random_change,
                "random_first_order": jnp.mean(jnp.abs(jnp.sum(g * r, axis=1))),
                "fgsm_random_ratio": fgsm_change / random_change,
            }
        return out

    return jax.vmap(one)(x, y, z, keys)


def run_dimension(cfg: Config, d: int) -> list[dict]:
    sets = [load_spec(DataSpec(cfg.synthetic, n_train=cfg.n_synthetic, n_test=cfg.n_points, d=d,
                               seed=cfg.seed * 1000 + s)) for s in range(cfg.seeds)]
    x = jnp.stack([jnp.asarray(ds.x_train) for ds in sets])
    y = jnp.stack([jnp.asarray(ds.y_train) for ds in sets])
    z = jnp.stack([jnp.asarray(ds.x_test) for ds in sets])
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), d), cfg.seeds)
    res = _dimension_cell(cfg, x, y, z, keys)
    width = {"linear": None, "net": cfg.dim_width, "limit": None}
    return [{"part": "a", "model": model, "width": width[model], "d": d, "seed": s, "metric": metric,
             "value": float(v)}
            for model in DIM_MODELS for metric in DIM_METRICS for s, v in enumerate(np.asarray(res[model][metric]))]


# ------------------------------------------------------------------------------------------------ (b), (c)
@partial(jax.jit, static_argnums=(0, 1))
def _width_cell(cfg: Config, width: int, x, y, z, yz, z_ray, y_ray, eps_grid, keys):
    """All seeds of one width: FGSM errors over eps (c) and the ray metrics (b) of the centred net that do not
    involve the limit (the limit along the same rays is evaluated by :func:`_limit_on_rays`, compiled once)."""
    net = cfg.net(width)
    apply_c = centered(models.make_apply(net))
    tcfg = TrainConfig.theory(lr=cfg.lr, steps=cfg.steps, loss=cfg.loss, record_loss=False)
    ts = _ray_grid(cfg, x.dtype)

    def one(key):
        pair = _train_centered(net, x, y, tcfg, key)
        f = partial(apply_c, pair)
        errors = _fgsm_errors(f, z, yz, eps_grid, cfg.loss)
        s = attacks.fgsm(f, z_ray, -y_ray, eps=1.0, loss=cfg.loss)  # the net's own FGSM ray direction
        fm = _on_ray(f, z_ray, s, ts)
        span = jnp.max(fm, axis=1) - jnp.min(fm, axis=1)
        # Kinks: unit sign changes of the trained and of the initial net (the centred function has both).
        t1, in1 = _crossings(pair[0], net, z_ray, s, cfg.ray_t)
        t0, in0 = _crossings(pair[1], net, z_ray, s, cfg.ray_t)
        kinks = jnp.sum(in1, axis=1) + jnp.sum(in0, axis=1)
        # Exact piecewise linearity on the first ray: f at consecutive kinks and at their midpoints.
        edge = jnp.full((1,), cfg.ray_t, x.dtype)
        knots = jnp.sort(jnp.concatenate([-edge, t1[0], t0[0], edge]))[None, :]
        mids = 0.5 * (knots[:, 1:] + knots[:, :-1])
        f_knots = _on_ray(f, z_ray[:1], s[:1], knots)
        f_mids = _on_ray(f, z_ray[:1], s[:1], mids)
        dev = jnp.abs(f_mids - 0.5 * (f_knots[:, 1:] + f_knots[:, :-1]))
        return {
            "errors": errors,
            "direction": s,
            "curve": fm,
            "ray_kinks": jnp.mean(kinks.astype(x.dtype)),
            "ray_pl_residual": jnp.max(dev) / span[0],
            "ray_wrong_contiguous": jnp.mean((_wrong_runs(fm, y_ray) <= 1).astype(x.dtype)),
            "ray_linear_r2": jnp.mean(_linear_r2(ts, fm)),
        }

    return jax.vmap(one)(keys)


def _ray_grid(cfg: Config, dtype):
    return jnp.linspace(-cfg.ray_t, cfg.ray_t, cfg.ray_points, dtype=dtype)


@partial(jax.jit, static_argnums=0)
def _limit_on_rays(cfg: Config, limit, z_ray, s, fm):
    """The limit along the finite nets' rays s (S, M, d) and the relative sup distance to their curves fm."""
    ts = _ray_grid(cfg, z_ray.dtype)

    def one(s, fm):
        fi = _on_ray(limit, z_ray, s, ts)
        span = jnp.max(fi, axis=1) - jnp.min(fi, axis=1)
        return jnp.mean(jnp.max(jnp.abs(fm - fi), axis=1) / span), fi[0]

    return jax.vmap(one)(s, fm)


@partial(jax.jit, static_argnums=0)
def _limit_cell(cfg: Config, z, yz, z_ray, y_ray, limit, lin, eps_grid):
    """The limit's and the linear model's FGSM errors, and the limit's own rays."""
    ts = _ray_grid(cfg, z.dtype)
    s = attacks.fgsm(limit, z_ray, -y_ray, eps=1.0, loss=cfg.loss)
    fi = _on_ray(limit, z_ray, s, ts)
    return {
        "errors_limit": _fgsm_errors(limit, z, yz, eps_grid, cfg.loss),
        "errors_linear": _fgsm_errors(partial(_linear_apply, lin), z, yz, eps_grid, cfg.loss),
        "ray_wrong_contiguous": jnp.mean((_wrong_runs(fi, y_ray) <= 1).astype(z.dtype)),
        "ray_linear_r2": jnp.mean(_linear_r2(ts, fi)),
        "example": fi[0],
    }


def run_widths(cfg: Config, x, y, z, yz, bar) -> list[dict]:
    """Parts (b) and (c): the limit, logistic regression and every width (rows for both parts)."""
    n_rays = min(cfg.n_rays, z.shape[0])
    z_ray, y_ray = z[:n_rays], yz[:n_rays]
    eps_grid = jnp.asarray(cfg.eps_grid, x.dtype)
    tcfg = TrainConfig.theory(lr=cfg.lr, steps=cfg.steps, loss=cfg.loss, record_loss=False)
    limit = limits.make_predictor(cfg.kernel(), x, y, loss=cfg.loss, lr=cfg.lr, steps=cfg.steps)
    lin = train(_linear_apply, (jnp.zeros((x.shape[1],), x.dtype), jnp.zeros((), x.dtype)), x, y, tcfg).params
    res = _limit_cell(cfg, z, yz, z_ray, y_ray, limit, lin, eps_grid)
    rows = []
    for model in ("limit", "linear"):  # deterministic: one row each (seed 0)
        rows += [{"part": "c", "model": model, "eps": e, "seed": 0, "metric": "fgsm_error", "value": float(v)}
                 for e, v in zip(cfg.eps_grid, np.asarray(res["errors_" + model]))]
    for metric in ("ray_wrong_contiguous", "ray_linear_r2"):
        rows.append({"part": "b", "model": "limit", "seed": 0, "metric": metric, "value": float(res[metric])})
    ts = np.linspace(-cfg.ray_t, cfg.ray_t, cfg.ray_points)
    keep = np.unique(np.linspace(0, cfg.ray_points - 1, min(cfg.ray_points, 401)).round().astype(int))
    rows += [{"part": "b", "model": "limit", "t": float(ts[i]), "seed": 0, "metric": "ray_example",
              "value": float(np.asarray(res["example"])[i])} for i in keep]
    bar.update()

    root = jax.random.PRNGKey(cfg.seed)
    for width in cfg.widths:
        keys = jax.random.split(jax.random.fold_in(root, width), cfg.seeds)
        res = _width_cell(cfg, width, x, y, z, yz, z_ray, y_ray, eps_grid, keys)
        gap, example_limit = _limit_on_rays(cfg, limit, z_ray, res["direction"], res["curve"])
        res = {**res, "ray_sup_gap": gap}
        errors = np.asarray(res["errors"])
        for s in range(cfg.seeds):
            rows += [{"part": "c", "model": "net", "width": width, "eps": e, "seed": s, "metric": "fgsm_error",
                      "value": float(errors[s, j])} for j, e in enumerate(cfg.eps_grid)]
            rows += [{"part": "b", "model": "net", "width": width, "seed": s, "metric": metric,
                      "value": float(np.asarray(res[metric])[s])} for metric in RAY_METRICS]
        for name, arr in (("ray_example", res["curve"][:, 0]), ("ray_example_limit", example_limit)):
            rows += [{"part": "b", "model": "net", "width": width, "t": float(ts[i]), "seed": 0, "metric": name,
                      "value": float(np.asarray(arr)[0, i])} for i in keep]
        bar.update()
    return rows


# ------------------------------------------------------------------------------------------------ (d)
def adversarial_train(apply_fn, params, x, y, *, mode: str, eps, alpha, loss: str, lr, steps: int, key,
                      mask=None):
    """Full-batch gradient descent on J~ = alpha J(x) + (1 - alpha) J(x + eta) (Goodfellow et al. 2015).

    ``mode``: 'fgsm' eta = eps sign(grad_x J), recomputed at every step from the current parameters (a
    constant: no gradient flows through it); 'noise' eta = eps * uniform random signs, fresh at every step;
    'clean' J~ = J. ``mask`` (pytree of bools like params) freezes leaves. A ``lax.scan`` loop; jit/vmap it
    (``eps``, ``alpha``, ``lr`` may be traced)."""
    if mode not in ADV_MODES:
        raise ValueError(f"unknown adversarial training mode {mode!r}; expected one of {', '.join(ADV_MODES)}")
    return _mixed_train(apply_fn, params, x, y, _mode_weights(mode, alpha, x.dtype), eps=eps, loss=loss, lr=lr,
                        steps=steps, key=key, mask=mask)


def _mode_weights(mode: str, alpha, dtype):
    """(alpha, adversarial share, noise share) of :func:`_mixed_train` for a training mode."""
    one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)
    return jnp.stack({"clean": (one, zero, zero), "fgsm": (alpha * one, one, zero),
                      "noise": (alpha * one, zero, one)}[mode])


def _mixed_train(apply_fn, params, x, y, weights, *, eps, loss: str, lr, steps: int, key, mask=None):
    """:func:`ntk_adv.training.adversarial_train` on w0 J(x) + (1 - w0) J(x + w1 eps sign grad_x J + w2 eps r),
    r random signs; the weights (3,) may be traced, so that clean, adversarial and noise training share one
    compiled program."""

    def perturb(f, x, y, k):
        return (weights[1] * attacks.fgsm(f, x, -y, eps=eps, loss=loss)
                + weights[2] * eps * jax.random.rademacher(k, x.shape, dtype=x.dtype))

    return training.adversarial_train(apply_fn, params, x, y, perturb=perturb, alpha=weights[0], loss=loss, lr=lr,
                                      steps=steps, key=key, mask=mask)


@partial(jax.jit, static_argnums=0)
def _adv_cell(cfg: Config, x, y, z, yz, eps_grid, weights, keys):
    """Runs (R,) = modes x seeds: weights (R, 3), keys (R, 2) -> FGSM errors (R, E)."""
    net = cfg.net(cfg.adv_width)
    apply_c = centered(models.make_apply(net))
    mask = centered_mask(models.trainable_mask(net))

    def one(w, key):
        k_init, k_noise = jax.random.split(key)
        p0 = models.init_params(net, x.shape[1], key=k_init, dtype=x.dtype)
        pair = _mixed_train(apply_c, (p0, p0), x, y, w, eps=cfg.adv_eps, loss=cfg.loss, lr=cfg.lr,
                            steps=cfg.steps, key=k_noise, mask=mask)
        return _fgsm_errors(partial(apply_c, pair), z, yz, eps_grid, cfg.loss)

    return jax.vmap(one)(weights, keys)


def run_adversarial(cfg: Config, x, y, z, yz) -> list[dict]:
    """Part (d): clean, FGSM-adversarial and random-sign-noise training of one width, all seeds at once."""
    w = jnp.stack([_mode_weights(m, cfg.adv_alpha, x.dtype) for m in ADV_MODES for _ in range(cfg.seeds)])
    root = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 10_000)
    keys = jnp.concatenate([jax.random.split(jax.random.fold_in(root, j), cfg.seeds) for j in range(len(ADV_MODES))])
    errors = np.asarray(_adv_cell(cfg, x, y, z, yz, jnp.asarray(cfg.eps_grid, x.dtype), w, keys))
    errors = errors.reshape(len(ADV_MODES), cfg.seeds, -1)
    return [{"part": "d", "model": f"train_{mode}", "width": cfg.adv_width, "eps": e, "seed": s,
             "metric": "fgsm_error", "value": float(errors[j, s, i])}
            for j, mode in enumerate(ADV_MODES) for s in range(cfg.seeds) for i, e in enumerate(cfg.eps_grid)]


# ------------------------------------------------------------------------------------------------ main
def main(cfg: Config = Config(), out: str | Path = "runs/linearity", *, progress: bool = True) -> dict:
    """Run the requested parts, write results.csv, summary.json and the figures into ``out``; return the
    summary."""
    out = Path(out)
    ds = load_spec(cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    z, yz = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    parts = set(cfg.parts)
    n_cells = (len(cfg.dims) if "a" in parts else 0) + (len(cfg.widths) + 1 if parts & {"b", "c"} else 0) + (
        1 if "d" in parts else 0)
    bar = tqdm(total=n_cells, desc="linearity: cells", disable=None if progress else True)
    rows: list[dict] = []
    if "a" in parts:
        for d in cfg.dims:
            rows += run_dimension(cfg, d)
            bar.update()
    if parts & {"b", "c"}:
        rows += [r for r in run_widths(cfg, x, y, z, yz, bar) if r["part"] in parts]
    if "d" in parts:
        rows += run_adversarial(cfg, x, y, z, yz)
        bar.update()
    bar.close()

    write_csv(rows, out / "results.csv")
    summary = summarize(cfg, rows, ds, x.shape)
    write_json(summary, out / "summary.json")
    plot(rows, summary, out)
    if progress is not False:
        report(summary, out)
    return summary


# ------------------------------------------------------------------------------------------------ summary
TOL_SLOPE = 0.15  # tolerance on the slopes vs d (a) and on the kink-count slope vs width (b)
TOL_GAP_SLOPE = 0.2  # tolerance on the m^(-1/2) convergence slope along the ray (b)


def _values(rows, **where) -> np.ndarray:
    return np.asarray([r["value"] for r in select(rows, **where)], float)


def _geomean(v) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(v, float)))))


def summarize(cfg: Config, rows: list[dict], ds, shape) -> dict:
    summary: dict = {"experiment": "linearity", "config": asdict(cfg), "dataset": ds.name,
                     "n_train": int(shape[0]), "d": int(shape[1]), **provenance(), "predictions": {}}
    parts = set(cfg.parts)
    if "a" in parts:
        _summarize_a(cfg, rows, summary)
    if "b" in parts:
        _summarize_b(cfg, rows, summary)
    if "c" in parts:
        _summarize_c(cfg, rows, summary)
    if "d" in parts:
        _summarize_d(cfg, rows, summary)
    summary["claims"] = claims_table(summary["predictions"])
    return summary


def _summarize_a(cfg: Config, rows, summary) -> None:
    slopes: dict = {}
    for model in DIM_MODELS:
        for metric in DIM_METRICS:
            sub = select(rows, part="a", model=model, metric=metric)
            fit = fit_loglog_slope([r["d"] for r in sub], [r["value"] for r in sub])
            slopes[f"{metric}_{model}"] = {"slope": fit.slope, "ci95": [fit.low, fit.high]}
    summary["dim_slopes"] = slopes
    summary["dim_theory"] = {"fgsm_change": 1.0, "fgsm_first_order": 1.0, "random_change": 0.5,
                             "random_first_order": 0.5, "fgsm_random_ratio": 0.5}
    fg = {m: slopes[f"fgsm_change_{m}"]["slope"] for m in DIM_MODELS}
    rd = {m: slopes[f"random_change_{m}"]["slope"] for m in DIM_MODELS}
    summary["predictions"]["a_fgsm_linear_in_d"] = prediction(
        "FGSM logit change |f(x + eps sign grad f) - f(x)| grows linearly in d (slope vs d)", 1.0, fg,
        f"|slope - 1| <= {TOL_SLOPE} for the linear model, the net and the limit",
        all(abs(v - 1.0) <= TOL_SLOPE for v in fg.values()))
    summary["predictions"]["a_random_sqrt_d"] = prediction(
        "random-sign logit change of the same L-inf size grows like sqrt(d) (slope vs d)", 0.5, rd,
        f"|slope - 0.5| <= {TOL_SLOPE} for the linear model, the net and the limit",
        all(abs(v - 0.5) <= TOL_SLOPE for v in rd.values()))


def _summarize_b(cfg: Config, rows, summary) -> None:
    widths = list(cfg.widths)
    claims = summary["predictions"]
    gap = select(rows, part="b", model="net", metric="ray_sup_gap")
    gap_fit = fit_loglog_slope([r["width"] for r in gap], [r["value"] for r in gap])
    kinks = select(rows, part="b", model="net", metric="ray_kinks")
    kink_fit = fit_loglog_slope([r["width"] for r in kinks], [r["value"] for r in kinks])
    pl = float(np.max(_values(rows, part="b", model="net", metric="ray_pl_residual")))
    by_width = lambda metric, agg: {str(w): agg(_values(rows, part="b", model="net", width=w, metric=metric))
                                    for w in widths}
    contiguous = by_width("ray_wrong_contiguous", lambda v: float(np.mean(v)))
    contiguous["limit"] = float(_values(rows, part="b", model="limit", metric="ray_wrong_contiguous")[0])
    r2 = by_width("ray_linear_r2", lambda v: float(np.mean(v)))
    r2["limit"] = float(_values(rows, part="b", model="limit", metric="ray_linear_r2")[0])
    summary.update({
        "ray_sup_gap_slope": gap_fit.slope, "ray_sup_gap_slope_ci95": [gap_fit.low, gap_fit.high],
        "ray_sup_gap_by_width": by_width("ray_sup_gap", _geomean),
        "ray_kinks_slope": kink_fit.slope, "ray_kinks_slope_ci95": [kink_fit.low, kink_fit.high],
        "ray_kinks_by_width": by_width("ray_kinks", _geomean),
        "ray_pl_residual_max": pl, "ray_wrong_contiguous": contiguous, "ray_linear_r2": r2,
    })
    claims["b_piecewise_linear"] = prediction(
        "a finite ReLU net is exactly linear between consecutive unit sign changes along the FGSM ray",
        f"max |f(mid) - mean of f at the two kinks| / range f < {PL_TOLERANCE:g} (float32 round-off)", pl,
        "max over widths and seeds (first ray)", pl < PL_TOLERANCE)
    claims["b_kinks_grow_with_width"] = prediction(
        "the number of kinks along the ray grows like the width m (slope vs m)", 1.0, kink_fit.slope,
        f"|slope - 1| <= {TOL_SLOPE}", abs(kink_fit.slope - 1.0) <= TOL_SLOPE, ci95=[kink_fit.low, kink_fit.high])
    claims["b_ray_converges_to_limit"] = prediction(
        "sup distance between the finite-width and the infinite-width logit curve along the ray ~ m^(-1/2)",
        -0.5, gap_fit.slope, f"|slope + 0.5| <= {TOL_GAP_SLOPE}", abs(gap_fit.slope + 0.5) <= TOL_GAP_SLOPE,
        ci95=[gap_fit.low, gap_fit.high])
    claims["b_ray_nearly_linear"] = prediction(
        "logits along the FGSM ray are close to linear over [-T, T] (R^2 of a line fit, mean over rays)",
        ">= 0.9", r2, "R^2 >= 0.9 for every width and for the limit", min(r2.values()) >= 0.9)
    claims["b_wrong_region_contiguous"] = prediction(
        "the wrong-class region along the FGSM ray is one interval (fraction of rays)", 1.0, contiguous,
        "fraction >= 0.95 for every width and for the limit", min(contiguous.values()) >= 0.95)


def _summarize_c(cfg: Config, rows, summary) -> None:
    curves = {"linear": _values(rows, part="c", model="linear", metric="fgsm_error"),
              "limit": _values(rows, part="c", model="limit", metric="fgsm_error")}
    gaps = {}
    for w in cfg.widths:
        per_seed = np.asarray([_values(rows, part="c", model="net", width=w, seed=s, metric="fgsm_error")
                               for s in range(cfg.seeds)])
        curves[str(w)] = per_seed.mean(axis=0)
        gaps[str(w)] = float(np.mean(np.abs(per_seed - curves["limit"][None, :])))
    order = np.argsort(cfg.eps_grid)
    summary["fgsm_eps"] = [float(e) for e in np.asarray(cfg.eps_grid)[order]]
    summary["fgsm_error_curves"] = {k: [float(v) for v in c[order]] for k, c in curves.items()}
    summary["fgsm_error_gap_to_limit_by_width"] = gaps
    rising = {k: bool(np.all(np.diff(c[order]) >= -0.02) and c[order][-1] - c[order][0] >= 0.2)
              for k, c in curves.items()}
    summary["predictions"]["c_error_rises_with_eps"] = prediction(
        "FGSM error rises with eps for logistic regression, every width and the limit", "monotone increase",
        rising, "non-decreasing (tolerance 0.02) and rising by >= 0.2 over the eps grid", all(rising.values()))
    g_small, g_large = gaps[str(min(cfg.widths))], gaps[str(max(cfg.widths))]
    summary["predictions"]["c_error_converges_to_limit"] = prediction(
        "finite-width FGSM error curves approach the infinite-width curve as the width grows",
        "gap decreases with width", {"smallest_width": g_small, "largest_width": g_large},
        "mean |error_m - error_inf| over eps and seeds: largest width < smallest width (or both 0)",
        g_large < g_small or g_large == g_small == 0.0)


def _summarize_d(cfg: Config, rows, summary) -> None:
    order = np.argsort(cfg.eps_grid)
    grid = np.asarray(cfg.eps_grid, float)[order]
    at = {}
    for mode in ADV_MODES:
        per_seed = [_values(rows, part="d", model=f"train_{mode}", seed=s, metric="fgsm_error")[order]
                    for s in range(cfg.seeds)]
        at[mode] = mean_ci([float(np.interp(cfg.adv_eps, grid, v)) for v in per_seed])
    summary["adv_fgsm_error_at_eps"] = {m: {"mean": v.mean, "ci95": [v.low, v.high]} for m, v in at.items()}
    drop_adv = at["clean"].mean - at["fgsm"].mean
    drop_noise = at["clean"].mean - at["noise"].mean
    summary["predictions"]["d_adversarial_training_helps"] = prediction(
        f"adversarial training (alpha={cfg.adv_alpha:g}, eps={cfg.adv_eps:g}) lowers the FGSM error at that eps",
        f"drop >= {cfg.adv_margin:g}", drop_adv, "mean error of clean-trained minus adversarially trained nets",
        drop_adv >= cfg.adv_margin)
    summary["predictions"]["d_noise_training_does_not"] = prediction(
        "training on random-sign noise of the same size does not lower the FGSM error",
        f"drop < {cfg.adv_margin:g}", drop_noise, "mean error of clean-trained minus noise-trained nets",
        drop_noise < cfg.adv_margin)


def report(summary: dict, out: Path) -> None:
    if "dim_slopes" in summary:
        s = summary["dim_slopes"]
        print("(a) log-log slope vs d        linear     net   limit | theory")
        for metric in DIM_METRICS:
            vals = "  ".join(f"{s[f'{metric}_{m}']['slope']:+.3f}" for m in DIM_MODELS)
            print(f"    {metric:<24} {vals} | {summary['dim_theory'][metric]:+.2f}")
    if "ray_kinks_slope" in summary:
        print(f"(b) kinks vs width slope {summary['ray_kinks_slope']:+.3f} (theory +1); sup-gap slope "
              f"{summary['ray_sup_gap_slope']:+.3f} (theory -0.5); linear between kinks to "
              f"{summary['ray_pl_residual_max']:.1e} (theory 0); wrong region one interval on a fraction "
              f"{min(summary['ray_wrong_contiguous'].values()):.2f} of rays (theory 1); R^2 of a line fit "
              f">= {min(summary['ray_linear_r2'].values()):.3f}")
    if "fgsm_error_curves" in summary:
        curves = summary["fgsm_error_curves"]
        print("(c) FGSM error at eps " + " ".join(f"{e:5.2f}" for e in summary["fgsm_eps"]))
        for name, c in curves.items():
            label = name if name in ("linear", "limit") else f"m={name}"
            print(f"    {label:<18}" + " ".join(f"{v:5.2f}" for v in c))
    if "adv_fgsm_error_at_eps" in summary:
        a = summary["adv_fgsm_error_at_eps"]
        print(f"(d) FGSM error at eps={summary['config']['adv_eps']:g}: clean-trained {a['clean']['mean']:.3f}, "
              f"adversarially trained {a['fgsm']['mean']:.3f}, noise-trained {a['noise']['mean']:.3f} "
              f"(predicted: adversarial lower by >= {summary['config']['adv_margin']:g}, noise not)")
    for name, pred in summary["predictions"].items():
        print(f"    {name:<30} {pred['verdict']}")
    print(f"Wrote {out}/")


# ------------------------------------------------------------------------------------------------ figures
def plot(rows, summary, out: Path) -> list[Path]:
    parts = set(summary["config"]["parts"])
    paths = []
    if "a" in parts:
        paths += _plot_dimension(rows, summary, out)
    if "b" in parts:
        paths += _plot_rays(rows, summary, out)
    if parts & {"c", "d"}:
        paths += _plot_fgsm(rows, summary, out, parts)
    return paths


def _plot_dimension(rows, summary, out: Path) -> list[Path]:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import ScalarFormatter

    cfg = summary["config"]
    fig, (ax1, ax2) = plots.new_figure(2, 3.9, 3.1)
    colors = {"linear": "C0", "net": "C1", "limit": "C2"}
    labels = {"linear": "linear model", "net": f"net m={cfg['dim_width']}", "limit": "infinite width"}
    for model in DIM_MODELS:
        plots.plot_metric(ax1, rows, "d", "fgsm_change", color=colors[model], logy=True, part="a", model=model)
        line = plots.plot_metric(ax1, rows, "d", "random_change", color=colors[model], logy=True, part="a",
                                 model=model)
        line.set_linestyle(":")
        line.set_marker("s")
        plots.plot_metric(ax2, rows, "d", "fgsm_random_ratio", label=labels[model], color=colors[model],
                          logy=True, part="a", model=model)
    dims = sorted({r["d"] for r in select(rows, part="a")})
    plots.theory_slope(ax1, dims, 1.5 * _geomean(_values(rows, part="a", d=dims[0], metric="fgsm_change")), 1.0)
    plots.theory_slope(ax1, dims, _geomean(_values(rows, part="a", d=dims[0], metric="random_change")) / 1.5, 0.5,
                       color="0.5")
    handles = [Line2D([], [], color=colors[m], label=labels[m]) for m in DIM_MODELS] + [
        Line2D([], [], color="0.3", marker="o", ms=3, label="FGSM step"),
        Line2D([], [], color="0.3", ls=":", marker="s", ms=3, label="random signs"),
        Line2D([], [], color="k", ls="--", lw=1.0, label="theory: slope 1"),
        Line2D([], [], color="0.5", ls="--", lw=1.0, label="theory: slope 1/2")]
    ax1.legend(handles=handles, frameon=False, fontsize=6)
    ax1.set_xlabel("input dimension d")
    ax1.set_ylabel(f"mean |logit change|  (L-inf size {cfg['dim_eps']:g})")
    ax1.set_title(f"(a) logit change vs dimension ({cfg['synthetic']} data)")
    ax2.plot(dims, np.sqrt(dims), ls="--", color="k", lw=1.0, label=r"theory: $\sqrt{d}$")
    ax2.yaxis.set_major_formatter(ScalarFormatter())
    ax2.yaxis.set_minor_formatter(ScalarFormatter())
    ax2.tick_params(axis="y", which="minor", labelsize=6)
    ax2.set_xlabel("input dimension d")
    ax2.set_ylabel("FGSM change / random-sign change")
    ax2.set_title("(a) ratio")
    ax2.legend(frameon=False)
    fig.tight_layout()
    return plots.save(fig, out, "linearity_dimension")


def _plot_rays(rows, summary, out: Path) -> list[Path]:
    fig, (ax1, ax2, ax3) = plots.new_figure(3, 3.4, 3.0)
    widths = sorted({r["width"] for r in select(rows, part="b", model="net", metric="ray_kinks")})
    shown = sorted({widths[0], widths[len(widths) // 2], widths[-1]})
    for i, w in enumerate(shown):
        sub = select(rows, part="b", model="net", width=w, metric="ray_example")
        ax1.plot([r["t"] for r in sub], [r["value"] for r in sub], color=f"C{i}", lw=1.0, label=f"net m={w}")
    sub = select(rows, part="b", model="net", width=shown[-1], metric="ray_example_limit")
    ax1.plot([r["t"] for r in sub], [r["value"] for r in sub], color="k", ls="--", lw=1.0,
             label=f"infinite width (ray of m={shown[-1]})")
    ax1.axhline(0.0, color="0.75", lw=0.6)
    ax1.axvline(0.0, color="0.75", lw=0.6)
    ax1.set_xlabel("t   (input x + t sign grad loss)")
    ax1.set_ylabel("logit f (centred)")
    ax1.set_title("(b) logits along an FGSM ray")
    ax1.legend(frameon=False)
    plots.plot_metric(ax2, rows, "width", "ray_sup_gap", label="measured", logy=True, part="b", model="net")
    plots.theory_slope(ax2, widths, summary["ray_sup_gap_by_width"][str(widths[0])], -0.5,
                       label="theory: slope -1/2")
    ax2.set_xlabel("width m")
    ax2.set_ylabel("sup |f_m - f_inf| / range of f_inf")
    ax2.set_title(f"(b) distance to the limit (slope {summary['ray_sup_gap_slope']:+.2f})")
    ax2.legend(frameon=False)
    plots.plot_metric(ax3, rows, "width", "ray_kinks", label="kinks in [-T, T]", logy=True, part="b",
                      model="net")
    plots.theory_slope(ax3, widths, summary["ray_kinks_by_width"][str(widths[0])], 1.0, label="theory: slope 1")
    ax3.set_xlabel("width m")
    ax3.set_ylabel("kinks per ray")
    ax3.set_title(f"(b) kinks (slope {summary['ray_kinks_slope']:+.2f})")
    ax3.text(0.97, 0.04, f"linear between kinks\nto {summary['ray_pl_residual_max']:.0e} (relative)",
             transform=ax3.transAxes, ha="right", va="bottom", fontsize=7)
    ax3.legend(frameon=False)
    fig.tight_layout()
    return plots.save(fig, out, "linearity_ray")


def _plot_fgsm(rows, summary, out: Path, parts) -> list[Path]:
    cfg = summary["config"]
    panels = [p for p in ("c", "d") if p in parts]
    fig, axes = plots.new_figure(len(panels), 3.8, 3.0)
    for ax, part in zip(axes, panels):
        if part == "c":
            widths = sorted(cfg["widths"])
            cmap = plots.plt.get_cmap("viridis")
            for i, w in enumerate(widths):
                plots.plot_metric(ax, rows, "eps", "fgsm_error", label=f"net m={w}", logx=None,
                                  color=cmap(0.1 + 0.75 * i / max(len(widths) - 1, 1)), part="c", model="net", width=w)
            plots.plot_metric(ax, rows, "eps", "fgsm_error", label="logistic regression", color="C3", logx=None,
                              part="c", model="linear")
            line = plots.plot_metric(ax, rows, "eps", "fgsm_error", label="infinite width", color="k", logx=None,
                                     part="c", model="limit")
            line.set_linestyle("--")
            line.set_marker("")
            ax.set_title(f"(c) FGSM error ({summary['dataset']})")
        else:
            names = {"clean": "clean training", "fgsm": f"adversarial training (alpha={cfg['adv_alpha']:g})",
                     "noise": "random-sign noise training"}
            for i, mode in enumerate(ADV_MODES):
                plots.plot_metric(ax, rows, "eps", "fgsm_error", label=names[mode], color=f"C{i}", logx=None,
                                  part="d", model=f"train_{mode}")
            ax.axvline(cfg["adv_eps"], color="0.5", ls=":", lw=0.8, label=f"training eps = {cfg['adv_eps']:g}")
            ax.set_title(f"(d) adversarial training, net m={cfg['adv_width']}")
        ax.set_xlabel("eps (L-inf)")
        ax.set_ylabel("FGSM test error")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(frameon=False, loc="upper left", fontsize=6)
    fig.tight_layout()
    return plots.save(fig, out, "linearity_fgsm")
