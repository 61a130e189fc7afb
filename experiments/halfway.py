"""Flip points between classes: do wide nets "meet halfway", and does boundary agreement predict transfer?

Claim operationalized (BenShmuel 2022, "Meet you halfway: explaining deep learning mysteries", arXiv
2206.04463): the paper explains (1) generalization - a trained net decides a new point by where it lies
*between* training samples of the two classes, like a nearest-neighbour rule that "meets halfway" - and (2)
the transfer of adversarial examples - different models trained on the same data place their decision
boundaries at nearly the same places between samples of different classes, so a perturbation that crosses one
model's boundary crosses the others'. We operationalize the paper's two claims through *flip points*: for a
pair (x_a, x_b) of test points of different classes, the flip point of a predictor f is the first t in [0, 1]
at which the predicted class of x(t) = (1 - t) x_a + t x_b differs from the class at x_a (a grid of ``grid``
steps locates the first sign change, ``bisection`` halvings refine it; pairs without a change count as "no
flip" and are left out of flip-point distances). In the lazy regime the account is made quantitative by the
infinite-width limit:

(i)   Two nets of the same width trained from independent initializations have flip points that approach each
      other as the width grows, like each net's distance to the infinite-width predictor (``ntk``: the kernel
      predictor of ``limits.make_predictor`` with the matching NTK): mean |t_1 - t_2| -> 0 with a log-log
      slope < 0 (fluctuation theory: -1/2; for independent fluctuations net-net ~ sqrt(2) x net-limit). Nets
      are *centred* by default (f(x; theta) - f(x; theta_0)), so the limit is deterministic; with
      ``centered=False`` the O(1) random initial function survives at every width and net-net distances stall
      at a floor, while each net still approaches its own limit f_0 + Theta coef.
(ii)  Across all pairs of models (nets of every width and seed, and the NTK limit), closer flip points go with
      higher transfer of one-step targeted perturbations (``attack``: fgm = one-step L2 or fgsm = L-inf sign,
      targets -y, radius ``eps_rel`` x the median pair distance (fgm), divided by sqrt(d) for fgsm): the
      Spearman correlation between flip-point distance and symmetrized transfer rate is negative (prediction:
      sign < 0), judged with a one-sided Mantel permutation test over models (p < 0.05).
(iii) The net agrees more and more with the kernel predictor as the width grows (sign agreement on test points
      rises towards 1), and its agreement with the 1-nearest-neighbour rule (1-NN on the training set, score =
      distance to the nearest negative - distance to the nearest positive) converges to the kernel predictor's
      agreement with 1-NN. The paper's "halfway / nearest-neighbour" reading is reported next to it: the net's
      1-NN agreement at the largest width and the mean flip-point locations of the net, the limit and 1-NN.

Every claim is a :class:`ntk_adv.verdicts.Claim` judged per width, on what distinguishes the two readings:
agreement with 1-NN on the test points where 1-NN and the kernel predictor disagree (paper: > 0.5; lazy
theory: -> 0), the mean flip point t vs 0.5 (+- ``halfway_tolerance``), the transfer/boundary Spearman
correlation among the seeds of one width (Fisher-z interval; not pooled over widths, which confounds it),
agreement with the kernel predictor; plus the slope of (i) and the attack's own white-box success (a
precondition of the transfer claims).

Transfer rate A -> B: among test points that B classifies correctly and on which the perturbation crafted on A
succeeds against A, the fraction that B also classifies as the target.

Cells (:func:`units`, run by :func:`ntk_adv.engine.run_rows` and kept in the result store ``out``/store, so
a killed run resumes per cell on any backend): the kernel predictor and 1-NN (``reference``), the nets of one
width with all their seeds (``width``: seeds are compared in pairs, so they form one unit), and the transfer
between every pair of models (``transfer``: it needs the nets of all widths together; in the process that
trained them it reuses them, elsewhere it retrains them, with the same numbers).

Outputs in ``out``: results.csv (long format: width, seed, metric, value; net-net rows use ``seed`` = index of
a disjoint seed pair), pairs.csv (one row per model pair: flip distance, transfer both ways), summary.json
(``claims``: one verdict dict per claim), halfway.png / .pdf.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from ntk_adv import attacks, engine, kernels, limits, models, plots
from ntk_adv import verdicts as V
from ntk_adv.data import DataSpec, load_spec
from ntk_adv.losses import MARGIN_LOSSES
from ntk_adv.metrics import (
    agreement,
    fit_loglog_slope,
    flip_points,
    mantel,
    transfer_matrix,
    white_box_success,
)
from ntk_adv.results import provenance, write_csv, write_json
from ntk_adv.training import TrainConfig, centered, centered_mask, train

COMMAND = "halfway"
HALFWAY_ATTACKS = ("fgm", "fgsm")
# per (width, seed) rows; ``flip_net_net`` has one row per (width, disjoint seed pair)
SEED_METRICS = (
    "flip_net_limit",
    "flip_net_1nn",
    "flip_net_kernel",
    "agree_net_limit",
    "agree_net_1nn",
    "acc",
    "flip_t",
    "flip_rate",
    "attack_success",
    "agree_1nn_where_kernel_differs",
)


@dataclass(frozen=True)
class Config:
    """Composed of the library's configs: ``net`` (:class:`ntk_adv.models.TwoLayerConfig`; its ``width`` is a
    template overridden by ``widths``), ``train`` (:class:`ntk_adv.training.TrainConfig`, plain gradient
    descent), ``data`` (:class:`ntk_adv.data.DataSpec`). ``eps_rel``: attack radius as a fraction of the
    median test-pair L2 distance (fgm, L2) or that divided by sqrt(d) (fgsm, L-inf)."""

    widths: tuple[int, ...] = (16, 64, 256, 1024, 4096)
    seeds: int = 8
    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=250, n_test=None, pos=3, neg=8))
    net: models.TwoLayerConfig = field(default_factory=lambda: models.TwoLayerConfig(1))  # width: from widths
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig.theory(lr=0.2, steps=100, loss="logistic", record_loss=False)
    )
    centered: bool = True
    n_pairs: int = 300
    grid: int = 64
    bisection: int = 20
    attack: str = "fgm"
    eps_rel: float = 0.3  # radius / median test-pair L2 distance (fgm: L2; fgsm: L-inf, also / sqrt(d))
    permutations: int = 2000
    halfway_tolerance: float = 0.05  # |mean flip point t - 0.5| allowed by the "halfway" claim
    seed: int = 0
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        if not self.widths or any(not isinstance(w, (int, np.integer)) or w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty list of integers >= 1, got {self.widths}")
        if len(set(self.widths)) != len(self.widths):
            raise ValueError(f"widths must be distinct, got {self.widths}")
        if not isinstance(self.seeds, (int, np.integer)) or self.seeds < 4 or self.seeds % 2:
            raise ValueError(
                f"seeds must be an even integer >= 4 (nets are compared in disjoint pairs; a "
                f"within-width correlation needs >= 6 pairs of nets), got {self.seeds!r}"
            )
        if self.train.loss not in MARGIN_LOSSES:
            raise ValueError(
                f"loss must be a margin loss ({', '.join(MARGIN_LOSSES)}), got {self.train.loss!r}"
            )
        if self.train.optimizer != "gd" or self.train.plateau or self.train.steps < 1:
            raise ValueError(
                "--optimizer gd without --plateau and --steps >= 1: the kernel limit is plain "
                "gradient descent"
            )
        if self.net.train_readout or self.net.n_out != 1:
            raise ValueError(
                "the experiment trains the first layer of a scalar-output net (--no-train-readout)"
            )
        for name, low in (("n_pairs", 1), ("grid", 1), ("bisection", 0), ("permutations", 1)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.attack not in HALFWAY_ATTACKS:
            raise ValueError(f"unknown attack {self.attack!r}; expected one of {', '.join(HALFWAY_ATTACKS)}")
        if not (np.isfinite(self.eps_rel) and self.eps_rel > 0):
            raise ValueError(f"eps_rel must be finite and > 0, got {self.eps_rel!r}")
        if not 0 < self.halfway_tolerance < 0.5:
            raise ValueError(f"halfway_tolerance must lie in (0, 0.5), got {self.halfway_tolerance!r}")

    def net_of(self, width: int) -> models.TwoLayerConfig:
        return replace(self.net, width=int(width))

    def kernel(self) -> kernels.KernelFn:
        return kernels.two_layer_kernel(
            "ntk", gamma=self.net.gamma, bias=self.net.bias, parametrization=self.net.parametrization
        )


# A smoke-test scale (``ntk-adv report --quick``; numbers indicative only).
QUICK_CONFIG = Config(
    widths=(16, 256, 2048),
    seeds=4,
    data=DataSpec("digits", n_train=120, n_test=None, pos=3, neg=8),
    n_pairs=80,
    grid=32,
    bisection=12,
    permutations=200,
)


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
    net = cfg.net_of(width)
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
                cfg.kernel(),
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
    apply_fn = models.make_apply(cfg.net_of(width))
    model_fn = centered(apply_fn) if cfg.centered else apply_fn
    return jax.jit(jax.vmap(lambda p: model_fn(p, points)))(params)


# ------------------------------------------------------------------------------------------------ statistics
def mean_abs_diff(t1: np.ndarray, t2: np.ndarray) -> float:
    """Mean |t1 - t2| over the pairs where both predictors flip (NaN if none)."""
    ok = np.isfinite(t1) & np.isfinite(t2)
    return float(np.mean(np.abs(t1[ok] - t2[ok]))) if ok.any() else np.nan


# ------------------------------------------------------------------------------------------------ cells
PARTS = ("reference", "width", "transfer")


@dataclass(frozen=True)
class Unit:
    """One cell of the experiment (what its unit reads, nothing of the execution). ``part``: ``reference``
    (the kernel predictor and 1-NN: flip points on the test pairs, outputs on the test points), ``width``
    (the ``seeds`` nets of width ``width``, trained together in one jitted vmap: per seed the flip points,
    test outputs and, for uncentred nets, the flip points of the net's own limit) or ``transfer`` (every
    model's one-step perturbations of the test points evaluated on every model: all nets of all widths and
    the kernel predictor; ``width`` 0). ``data`` is the data spec the unit reads; ``config`` the
    experiment's settings with the data's path, the judgement-only settings (``permutations``,
    ``halfway_tolerance``) and the execution reset, and ``widths`` narrowed to ``(width,)`` for a width
    part."""

    part: str
    width: int
    data: DataSpec
    config: Config

    def settings(self) -> Config:
        return replace(self.config, data=self.data)


_JUDGEMENT = ("permutations", "halfway_tolerance")  # read by summarize only: not part of a cell


def units(cfg: Config) -> list[Unit]:
    """The cells of ``cfg``: the reference, one per width (in ``cfg.widths`` order), the transfer unit."""
    defaults = {f.name: f.default for f in fields(Config) if f.name in _JUDGEMENT}
    base = replace(cfg, data=replace(cfg.data, root=None), run=engine.Execution(), **defaults)
    return (
        [Unit("reference", 0, cfg.data, base)]
        + [Unit("width", int(w), cfg.data, replace(base, widths=(int(w),))) for w in cfg.widths]
        + [Unit("transfer", 0, cfg.data, base)]
    )


def setup(cfg: Config) -> tuple:
    """(data set, arrays dict: x, y, x_test, y_test and the pair end points xa, xb (n_pairs, d), attack
    radius eps, median pair distance): what every unit derives from the config the same way."""
    ds = load_spec(cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    xt, yt = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    ia, ib = make_pairs(cfg, ds.x_test, ds.y_test)
    median_dist = float(np.median(np.linalg.norm(ds.x_test[ia] - ds.x_test[ib], axis=1)))
    eps = cfg.eps_rel * median_dist / (1.0 if cfg.attack == "fgm" else np.sqrt(x.shape[1]))
    arrays = {"x": x, "y": y, "x_test": xt, "y_test": yt, "xa": xt[ia], "xb": xt[ib]}
    return ds, arrays, eps, median_dist


def kernel_limit(cfg: Config, arrays: dict):
    """The infinite-width (centred) kernel predictor trained like the nets."""
    return limits.make_predictor(
        cfg.kernel(), arrays["x"], arrays["y"], loss=cfg.train.loss, lr=cfg.train.lr, steps=cfg.train.steps
    )


_TRAINED: dict = {}  # width Unit -> train_width's result in this process, until the transfer unit takes it


def _train_unit(unit: Unit, cfg: Config, arrays: dict, eps: float, *, keep: bool):
    """``train_width`` of a width unit (memoized in this process for the transfer unit when ``keep``: the
    result is a deterministic function of the unit, so a unit that finds none retrains and gets the same)."""
    if unit in _TRAINED:
        return _TRAINED.pop(unit) if not keep else _TRAINED[unit]
    params, res = train_width(cfg, unit.width, arrays, eps)
    res = {k: np.asarray(v) for k, v in res.items()}
    if keep:
        _TRAINED[unit] = (params, res)
    return params, res


def unit_rows(unit: Unit, seeds) -> list[dict]:
    """The rows of one cell (``seeds``: the engine's cell label, unused). reference: one row per test pair
    (``pair``; flip point ``t_limit``/``t_1nn`` and ``found_*``) and per test point (``point``; outputs
    ``out_limit``/``out_1nn``). width: per seed the same for its net (``t``, ``found``, ``t_own_limit``
    for uncentred nets, else None; ``out``). transfer: one row per ordered model pair (``source``,
    ``target``; index into the models: nets by width then seed, the kernel predictor last) with the
    ``transfer`` rate, and for source = target the white-box ``success`` rate. Every row names its unit
    (``part``, ``width``)."""
    cfg = unit.settings()
    ds, arrays, eps, _ = setup(cfg)
    tag = {"part": unit.part, "width": unit.width}
    if unit.part == "reference":
        return [{**tag, **r} for r in _reference_rows(cfg, arrays)]
    if unit.part == "transfer":
        return [{**tag, **r} for r in _transfer_rows(unit, cfg, ds, arrays, eps)]
    if unit.part == "width":
        _, res = _train_unit(unit, cfg, arrays, eps, keep=True)
        rows = []
        for s in range(cfg.seeds):
            own = res.get("t_own_limit")
            rows += [
                {
                    **tag,
                    "seed": s,
                    "pair": i,
                    "t": float(res["t"][s, i]),
                    "found": bool(res["found"][s, i]),
                    "t_own_limit": None if own is None else float(own[s, i]),
                }
                for i in range(cfg.n_pairs)
            ]
            rows += [
                {**tag, "seed": s, "point": j, "out": float(v)} for j, v in enumerate(res["out_test"][s])
            ]
        return rows
    raise ValueError(f"unknown part {unit.part!r}; expected one of {', '.join(PARTS)}")


def _reference_rows(cfg: Config, arrays: dict) -> list[dict]:
    xa, xb, xt = arrays["xa"], arrays["xb"], arrays["x_test"]
    flips = lambda f: jax.jit(lambda a, b: flip_points(f, a, b, grid=cfg.grid, bisection=cfg.bisection))(
        xa, xb
    )
    limit, nn1 = kernel_limit(cfg, arrays), nearest_neighbour(arrays["x"], arrays["y"])
    t_limit, found_limit = (np.asarray(v) for v in flips(limit))
    t_1nn, found_1nn = (np.asarray(v) for v in flips(nn1))
    out_limit, out_1nn = np.asarray(limit(xt)), np.asarray(nn1(xt))
    return [
        {
            "pair": i,
            "t_limit": float(t_limit[i]),
            "found_limit": bool(found_limit[i]),
            "t_1nn": float(t_1nn[i]),
            "found_1nn": bool(found_1nn[i]),
        }
        for i in range(cfg.n_pairs)
    ] + [
        {"point": j, "out_limit": float(a), "out_1nn": float(b)}
        for j, (a, b) in enumerate(zip(out_limit, out_1nn))
    ]


def _transfer_rows(unit: Unit, cfg: Config, ds, arrays: dict, eps: float) -> list[dict]:
    x, xt, yt = arrays["x"], arrays["x_test"], arrays["y_test"]
    limit = kernel_limit(cfg, arrays)
    x_adv_limit = xt + jax.jit(lambda q: attack_fn(cfg, eps)(limit, q, yt))(xt)
    trained = {}
    for w in cfg.widths:
        part = Unit("width", int(w), unit.data, replace(unit.config, widths=(int(w),)))
        trained[w] = _train_unit(part, part.settings(), arrays, eps, keep=False)
    adv_all = jnp.concatenate(
        [jnp.asarray(trained[w][1]["x_adv"]).reshape(-1, x.shape[1]) for w in cfg.widths] + [x_adv_limit]
    )
    out_adv = np.concatenate(
        [np.asarray(evaluate_width(cfg, w, trained[w][0], adv_all)) for w in cfg.widths]
        + [np.asarray(limit(adv_all))[None, :]]
    )  # (models, sources * n_test)
    n_models = len(cfg.widths) * cfg.seeds + 1
    out_adv = out_adv.reshape(n_models, n_models, -1).transpose(1, 0, 2)  # (sources, models, n_test)
    out_clean = np.concatenate(
        [trained[w][1]["out_test"] for w in cfg.widths] + [np.asarray(limit(xt))[None, :]]
    )
    transfer = transfer_matrix(out_clean, out_adv, ds.y_test, -ds.y_test)
    success = white_box_success(out_clean, out_adv, ds.y_test)
    return [
        {
            "source": a,
            "target": b,
            "transfer": float(transfer[a, b]),
            "success": float(success[a]) if a == b else None,
        }
        for a in range(n_models)
        for b in range(n_models)
    ]


def _table(rows: list[dict], index: str, columns: tuple[str, ...], n: int, dtype) -> dict[str, np.ndarray]:
    """Columns of the rows that have ``index`` (0..n-1), as arrays ordered by it (None -> NaN)."""
    sub = sorted((r for r in rows if r.get(index) is not None), key=lambda r: r[index])
    if [r[index] for r in sub] != list(range(n)):
        raise ValueError(f"stored rows: expected {index} 0..{n - 1}, got {len(sub)} rows")
    return {
        c: np.asarray(
            [np.nan if r[c] is None else r[c] for r in sub], bool if c.startswith("found") else dtype
        )
        for c in columns
    }


def _width_arrays(rows: list[dict], cfg: Config, n_test: int, dtype) -> dict[str, np.ndarray]:
    """A width unit's rows back as train_width's per-seed arrays: t, found, t_own_limit (seeds, n_pairs),
    out_test (seeds, n_test)."""
    per_seed = [
        {
            **_table(
                [r for r in rows if r["seed"] == s], "pair", ("t", "found", "t_own_limit"), cfg.n_pairs, dtype
            ),
            **_table([r for r in rows if r["seed"] == s], "point", ("out",), n_test, dtype),
        }
        for s in range(cfg.seeds)
    ]
    res = {k: np.stack([p[k] for p in per_seed]) for k in ("t", "found", "t_own_limit", "out")}
    res["out_test"] = res.pop("out")
    return res


# ------------------------------------------------------------------------------------------------ main
def main(cfg: Config = Config(), out: str | Path = "runs/halfway", *, progress: bool = True) -> dict:
    """Run the experiment's cells (:func:`units`) through the sweep engine (stored per cell in the result
    store, so a killed run resumes per cell; any backend), write results.csv, pairs.csv, summary.json and the
    figure; return the summary."""
    t_start = time.perf_counter()
    out = Path(out)
    ds, arrays, eps, median_dist = setup(cfg)
    x, xt = arrays["x"], arrays["x_test"]
    dtype, n_test = np.asarray(x).dtype, int(xt.shape[0])
    try:
        stored = engine.run_rows(
            [(u, 0) for u in units(cfg)],
            kind=COMMAND,
            run=unit_rows,
            seed_column=None,
            progress=progress,
            **cfg.run.sweep_options(out),
        )
    finally:
        _TRAINED.clear()
    part = lambda name, width=0: [r for r in stored if r["part"] == name and r["width"] == width]

    ref = {
        **_table(
            part("reference"), "pair", ("t_limit", "found_limit", "t_1nn", "found_1nn"), cfg.n_pairs, dtype
        ),
        **_table(part("reference"), "point", ("out_limit", "out_1nn"), n_test, dtype),
    }
    t_limit, t_1nn, out_limit, out_1nn = ref["t_limit"], ref["t_1nn"], ref["out_limit"], ref["out_1nn"]
    found_limit, found_1nn = ref["found_limit"], ref["found_1nn"]
    sign = lambda v: np.where(np.asarray(v) >= 0, 1.0, -1.0)
    differ = sign(out_limit) != sign(out_1nn)  # test points where 1-NN and the kernel predictor disagree
    rows: list[dict] = []
    per_width: dict[int, dict] = {}
    for width in cfg.widths:
        res = _width_arrays(part("width", int(width)), cfg, n_test, dtype)
        if cfg.centered:
            res["t_own_limit"] = np.broadcast_to(t_limit, res["t"].shape)
        per_width[width] = res
        for s in range(cfg.seeds):
            t = res["t"][s]
            vals = {
                "flip_net_limit": mean_abs_diff(t, res["t_own_limit"][s]),
                "flip_net_1nn": mean_abs_diff(t, t_1nn),
                "flip_net_kernel": mean_abs_diff(t, t_limit),
                "agree_net_limit": float(agreement(res["out_test"][s], out_limit)),
                "agree_net_1nn": float(agreement(res["out_test"][s], out_1nn)),
                "acc": float(np.mean(np.where(res["out_test"][s] >= 0, 1.0, -1.0) == ds.y_test)),
                "flip_t": float(np.nanmean(t)),
                "flip_rate": float(np.mean(res["found"][s])),
                "agree_1nn_where_kernel_differs": (
                    float(np.mean(sign(res["out_test"][s])[differ] == sign(out_1nn)[differ]))
                    if differ.any()
                    else np.nan
                ),
            }
            rows += [{"width": width, "seed": s, "metric": k, "value": v} for k, v in vals.items()]
        for j in range(cfg.seeds // 2):
            rows.append(
                {
                    "width": width,
                    "seed": j,
                    "metric": "flip_net_net",
                    "value": mean_abs_diff(res["t"][2 * j], res["t"][2 * j + 1]),
                }
            )

    # transfer between every pair of models: nets (width, seed) and the NTK limit
    names = [f"m{w}_s{s}" for w in cfg.widths for s in range(cfg.seeds)] + ["ntk"]
    widths_of = [w for w in cfg.widths for _ in range(cfg.seeds)] + [np.inf]
    n_models = len(names)
    t_all = np.concatenate([per_width[w]["t"] for w in cfg.widths] + [t_limit[None, :]])
    transfer = np.full((n_models, n_models), np.nan)
    success = np.full(n_models, np.nan)
    for r in part("transfer"):
        transfer[r["source"], r["target"]] = np.nan if r["transfer"] is None else r["transfer"]
        if r["source"] == r["target"]:
            success[r["source"]] = np.nan if r["success"] is None else r["success"]
    for i, (w, s) in enumerate((w, s) for w in cfg.widths for s in range(cfg.seeds)):
        rows.append({"width": w, "seed": s, "metric": "attack_success", "value": float(success[i])})
    dist = np.array([[mean_abs_diff(t_all[a], t_all[b]) for b in range(n_models)] for a in range(n_models)])
    sym = (transfer + transfer.T) / 2
    rho, p_mantel = mantel(dist, sym, cfg.permutations, cfg.seed)
    within = {}  # the same correlation among the seeds of one width (width cannot confound it)
    for w in cfg.widths:
        idx = [i for i, wi in enumerate(widths_of) if wi == w]
        iu = np.triu_indices(len(idx), 1)
        dd, ss = dist[np.ix_(idx, idx)][iu], sym[np.ix_(idx, idx)][iu]
        ok = np.isfinite(dd) & np.isfinite(ss)
        varies = ok.sum() > 2 and np.ptp(dd[ok]) > 0 and np.ptp(ss[ok]) > 0
        within[str(w)] = {
            "rho": float(stats.spearmanr(dd[ok], ss[ok]).statistic) if varies else np.nan,
            "pairs": int(ok.sum()),
        }
    pair_rows = [
        {
            "model_a": names[a],
            "model_b": names[b],
            "width_a": widths_of[a],
            "width_b": widths_of[b],
            "flip_distance": dist[a, b],
            "transfer_ab": transfer[a, b],
            "transfer_ba": transfer[b, a],
        }
        for a in range(n_models)
        for b in range(a + 1, n_models)
    ]
    write_csv(rows, out / "results.csv")
    write_csv(pair_rows, out / "pairs.csv")

    summary = summarize(
        cfg,
        rows,
        {
            "dataset": ds.name,
            "classes": ds.meta.get("classes"),
            "n_train": int(x.shape[0]),
            "d": int(x.shape[1]),
            "eps": eps,
            "median_pair_distance": median_dist,
            "rho": rho,
            "p_mantel": p_mantel,
            "rho_within_width": within,
            "limit_acc": float(np.mean(np.where(out_limit >= 0, 1.0, -1.0) == ds.y_test)),
            "nn1_acc": float(np.mean(np.where(out_1nn >= 0, 1.0, -1.0) == ds.y_test)),
            "limit_1nn_agreement": float(agreement(out_limit, out_1nn)),
            "limit_1nn_flip_distance": mean_abs_diff(t_limit, t_1nn),
            "flip_t_limit": float(np.nanmean(t_limit)),
            "flip_t_1nn": float(np.nanmean(t_1nn)),
            "flip_rate_limit": float(np.mean(found_limit)),
            "flip_rate_1nn": float(np.mean(found_1nn)),
            "mean_transfer": float(np.nanmean(transfer[~np.eye(n_models, dtype=bool)])),
            "limit_attack_success": float(success[-1]),
            "n_test": int(xt.shape[0]),
            "n_kernel_1nn_differ": int(differ.sum()),
        },
    )
    summary["timings_s"] = {"total": time.perf_counter() - t_start}
    write_json(summary, out / "summary.json")
    plot(rows, pair_rows, summary, out)
    if progress is not False:
        report(summary, out)
    return summary


def _by_width(rows, metric, widths):
    return {
        w: V.mean_ci([r["value"] for r in rows if r["metric"] == metric and r["width"] == w]) for w in widths
    }


PAPER = (
    "BenShmuel 2022 (arXiv 2206.04463) argues qualitatively, without a table for a comparable setting: "
    "trained nets decide like a nearest-neighbour rule that meets halfway between samples of the "
    "two classes, and models share decision boundaries, hence transfer"
)


def _seed_values(rows, metric, width) -> list[float]:
    return [
        r["value"]
        for r in sorted(rows, key=lambda r: r["seed"])
        if r["metric"] == metric and r["width"] == width and np.isfinite(r["value"])
    ]


def _fisher(rho: float, n: int) -> V.Estimate:
    """Spearman rho over n pairs with the Fisher-z 95% interval (se 1.06 / sqrt(n - 3), Fieller et al.
    1957)."""
    if not np.isfinite(rho) or n < 4:
        return V.Estimate(0.0, -1.0, 1.0, int(n), "none")
    zr, half = np.arctanh(np.clip(rho, -0.999999, 0.999999)), 1.96 * 1.06 / np.sqrt(n - 3)
    return V.Estimate(float(rho), float(np.tanh(zr - half)), float(np.tanh(zr + half)), int(n), "fisher-z")


def summarize(cfg: Config, rows: list[dict], ref: dict) -> dict:
    """Summary with ``claims`` (one :class:`ntk_adv.verdicts.Claim` dict each): flip points converge with
    width; per width: agreement with 1-NN where 1-NN and the kernel disagree, the mean flip point t vs 0.5,
    the within-width transfer/boundary correlation, agreement with the kernel; the attack's white-box
    success."""
    widths = sorted(cfg.widths)
    summary: dict = {"experiment": COMMAND, "config": asdict(cfg), **provenance(), **ref}
    for metric in (
        "flip_net_net",
        "flip_net_limit",
        "flip_net_1nn",
        "flip_net_kernel",
        "agree_net_limit",
        "agree_net_1nn",
        "acc",
        "flip_t",
        "attack_success",
        "agree_1nn_where_kernel_differs",
    ):
        summary[metric + "_by_width"] = {
            str(w): {"mean": ci.value, "ci95": [ci.low, ci.high]}
            for w, ci in _by_width(rows, metric, widths).items()
        }
    claims: list[V.Claim] = []
    nn_rows = [
        r for r in rows if r["metric"] == "flip_net_net" and np.isfinite(r["value"]) and r["value"] > 0
    ]
    text = "mean |t_1 - t_2| between the flip points of two nets of the same width shrinks like m^(-1/2)"
    basis = "lazy regime: two nets differ from the common kernel predictor by O(m^(-1/2)) fluctuations"
    try:
        claims.append(
            V.slope(
                "flip_points_converge",
                text,
                -0.5,
                0.25,
                fit_loglog_slope([r["width"] for r in nn_rows], [r["value"] for r in nn_rows]),
                basis=basis,
                paper="no published counterpart (the paper does not vary width)",
            )
        )
    except ValueError as err:
        claims.append(
            V.Claim(
                "flip_points_converge",
                text,
                -0.5,
                0.25,
                (-0.75, -0.25),
                V.Estimate(0.0, 0.0, 0.0, len(nn_rows), "none"),
                "inconclusive",
                f"no slope: {err}",
                basis,
                "no published counterpart",
            )
        )
    n_differ = ref["n_kernel_1nn_differ"]
    for w in widths:
        agree = _seed_values(rows, "agree_1nn_where_kernel_differs", w)
        text = (
            f"width {w}: on the {n_differ} test points where 1-NN and the kernel predictor disagree, the net "
            "sides with 1-NN more often than with the kernel (agreement with 1-NN > 0.5)"
        )
        basis = (
            "the paper's nearest-neighbour reading predicts > 0.5; the lazy (NTK) theory predicts the net "
            "follows the kernel, i.e. agreement -> 0 as the width grows"
        )
        if agree and n_differ > 0:
            claims.append(
                V.above(
                    f"halfway_sides_with_1nn_m{w}",
                    text,
                    0.5,
                    V.seed_proportion(agree, n_differ),
                    basis=basis,
                    paper=PAPER + "; predicts > 0.5 here",
                )
            )
        else:
            claims.append(
                V.Claim(
                    f"halfway_sides_with_1nn_m{w}",
                    text,
                    None,
                    None,
                    (0.5, np.inf),
                    V.Estimate(0.0, 0.0, 1.0, 0, "none"),
                    "inconclusive",
                    "1-NN and the kernel predictor agree on every test point: nothing to decide",
                    basis,
                    PAPER,
                )
            )
        ts = _seed_values(rows, "flip_t", w)
        claims.append(
            V.equals(
                f"flip_point_halfway_m{w}",
                f"width {w}: the flip point between a test pair of opposite classes lies "
                f"halfway, mean t = 0.5 within +-{cfg.halfway_tolerance:g} (t = 0 at the +1 point)",
                0.5,
                cfg.halfway_tolerance,
                V.seed_mean(ts, bounds=(0.0, 1.0)),
                basis="'meet you halfway' read literally on the segment",
                paper=PAPER + f"; the 1-NN rule's own mean t here is {ref['flip_t_1nn']:.3f}, the kernel's "
                f"{ref['flip_t_limit']:.3f}",
            )
        )
        within = ref["rho_within_width"][str(w)]
        claims.append(
            V.below(
                f"transfer_follows_boundaries_m{w}",
                f"width {w}: among the seeds of one width, pairs of nets with closer flip points "
                "transfer more (Spearman rho(flip distance, symmetrized transfer) < 0 over net pairs)",
                0.0,
                _fisher(within["rho"], within["pairs"]),
                basis="shared boundaries -> shared adversarial directions; within one width so width cannot "
                "confound it (pairs of nets share nets, so the interval is optimistic)",
                paper=PAPER + "; predicts rho < 0",
            )
        )
        acc = _seed_values(rows, "agree_net_limit", w)
        claims.append(
            V.above(
                f"net_agrees_with_kernel_m{w}",
                f"width {w}: the net agrees with the kernel predictor on > 90% of test points",
                0.9,
                V.paired_proportion(acc, ref["n_test"]),  # a net vs its own limit: paired, per seed
                basis="lazy regime: f_m -> f_inf as m grows (docs/theory.md)",
                paper="no published counterpart",
            )
        )
    success = [r["value"] for r in rows if r["metric"] == "attack_success" and np.isfinite(r["value"])]
    claims.append(
        V.above(
            "attack_white_box_success",
            f"the one-step {cfg.attack} attack (eps_rel {cfg.eps_rel:g}) fools its own net on "
            "more than half of the "
            "correctly classified test points (so transfer rates measure something), all nets pooled",
            0.5,
            V.seed_proportion(success, ref["n_test"]),
            basis="a precondition of the transfer claims",
            paper="no published counterpart",
        )
    )
    summary["rho_within_width"] = ref["rho_within_width"]
    summary["claims"] = [c.to_dict() for c in claims]
    summary["verdicts"] = {c.name: c.verdict for c in claims}
    return summary


def report(summary: dict, out: Path) -> None:
    for c in summary["claims"]:
        print(
            f"[{c['verdict']:<12}] {c['name']:<36} {c['measured']} vs {c['prediction']}"
            + (f"  ({c['reason']})" if c["reason"] else "")
        )
    print(f"Wrote {out}/ in {summary['timings_s']['total']:.0f}s")


# ------------------------------------------------------------------------------------------------ figure
def plot(rows, pair_rows, summary, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    with plt.rc_context(plots.PAPER_RC):
        return _plot(plt, rows, pair_rows, summary, out)


def _plot(plt, rows, pair_rows, summary, out: Path) -> list[Path]:
    fig, (ax_flip, ax_tr, ax_ag) = plots.new_figure(3, 3.6, 2.9)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    widths = sorted({r["width"] for r in rows})

    # (a) flip-point distances against width
    plots.plot_metric(
        ax_flip, rows, "width", "flip_net_net", label="net vs net (same width)", color=colors[0], logy=True
    )
    plots.plot_metric(
        ax_flip,
        rows,
        "width",
        "flip_net_limit",
        label="net vs its infinite-width limit",
        color=colors[1],
        logy=True,
    )
    anchor = summary["flip_net_net_by_width"][str(widths[0])]["mean"]
    if np.isfinite(anchor) and anchor > 0:
        plots.theory_slope(ax_flip, widths, anchor, -0.5, label="slope -1/2")
    ax_flip.set_xlabel("width m")
    ax_flip.set_ylabel(r"mean $|t_1 - t_2|$ of flip points")
    ax_flip.set_title("(a) flip points converge with width")
    ax_flip.legend(frameon=False)

    # (b) transfer rate against flip-point distance, one point per model pair
    d = np.array([r["flip_distance"] for r in pair_rows], float)
    tr = np.array([(r["transfer_ab"] + r["transfer_ba"]) / 2 for r in pair_rows], float)
    wmin = np.array([min(r["width_a"], r["width_b"]) for r in pair_rows], float)
    lim = np.array([np.isinf(r["width_a"]) or np.isinf(r["width_b"]) for r in pair_rows])
    sc = ax_tr.scatter(d[~lim], tr[~lim], c=np.log2(wmin[~lim]), s=6, cmap="viridis", lw=0, alpha=0.7)
    ax_tr.scatter(d[lim], tr[lim], marker="x", s=14, color="k", lw=0.8, label="net vs NTK limit")
    cb = fig.colorbar(sc, ax=ax_tr, pad=0.02)
    cb.set_label(r"$\log_2$ smaller width of the pair", fontsize=7)
    cb.ax.tick_params(labelsize=7)
    ax_tr.set_xscale("log")
    ax_tr.set_xlabel("flip-point distance between the two models")
    ax_tr.set_ylabel(f"transfer rate ({summary['config']['attack']}, symmetrized)")
    ax_tr.set_title("(b) boundary agreement predicts transfer")
    ax_tr.text(
        0.04,
        0.5,
        f"Spearman $\\rho$ = {summary['rho']:+.2f}\nMantel p = {summary['p_mantel']:.2g}",
        transform=ax_tr.transAxes,
        ha="left",
        va="center",
        fontsize=7,
    )
    ax_tr.legend(frameon=False, loc="lower left")

    # (c) agreement with the kernel predictor and with 1-NN
    plots.plot_metric(ax_ag, rows, "width", "agree_net_limit", label="net vs NTK limit", color=colors[1])
    plots.plot_metric(ax_ag, rows, "width", "agree_net_1nn", label="net vs 1-NN", color=colors[2])
    plots.theory_line(ax_ag, summary["limit_1nn_agreement"], label="NTK limit vs 1-NN", color=colors[2])
    plots.theory_line(ax_ag, 1.0, label="", color=colors[1])
    ax_ag.set_ylim(top=1.005)
    ax_ag.set_xlabel("width m")
    ax_ag.set_ylabel("sign agreement on test points")
    ax_ag.set_title("(c) agreement with kernel and 1-NN")
    ax_ag.legend(frameon=False, loc="center right")
    cfg = summary["config"]
    classes = summary.get("classes")
    data = summary["dataset"] + (f" {classes['pos']} vs {classes['neg']}" if classes else "")
    fig.suptitle(
        f"Meet you halfway: {data} (d={summary['d']}, N={summary['n_train']}), "
        f"{cfg['train']['loss']} loss, "
        f"{'centred ' if cfg['centered'] else ''}{cfg['net']['parametrization']} param., "
        f"{cfg['seeds']} seeds",
        fontsize=9,
    )
    fig.tight_layout()
    return plots.save(fig, out, "halfway")
