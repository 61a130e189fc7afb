"""Width convergence of finite nets to their NTK limit (the suite's foundation check), at every depth.

The net is the two-layer net (``--arch two-layer``, first layer trained, readout frozen) or a deep
fully-connected net (``--arch fc --depths 2 3 5``, :class:`ntk_adv.arch.FC`: ``--trained first`` trains the
first layer only, ``all`` every layer, which needs ``--parametrization ntk`` for a limit to exist). For each
depth, width m and seed: the relative Frobenius error of the empirical NTK (trainable first layer, frozen
readout) against the closed-form NTK, at initialization and after training; and the relative distance between
the trained finite net's outputs on held-out points and the infinite-width predictor that starts from the same
initial function (``limits.make_predictor(..., f0=f_m,0)``). Theory: both decay like m^(-1/2) at every
fixed depth (the NTK's fluctuation is a sum over m units per layer).

Cells: one per (depth, width) with all its seeds (:class:`WidthCell`, run by
:func:`ntk_adv.engine.run_rows`, kept in the result store ``out``/store, so a killed run resumes per cell on
any backend).

Outputs in ``out``: results.csv (long format: depth, width, seed, metric, value), summary.json (fitted
log-log slopes with 95% intervals per depth under ``by_depth``; the first depth's also at the top level:
``ntk_rel_error_slope``, ``ntk_rel_error_trained_slope``, ``function_gap_slope``), and figure
convergence.png / .pdf (one panel per depth).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import engine, kernels, limits, models, plots, verdicts
from ntk_adv.arch import INF_WIDTH, Architecture, Trained, build
from ntk_adv.data import DataSpec, load_spec
from ntk_adv.empirical import empirical_ntk_implicit, relative_frobenius_error, two_layer_empirical_ntk
from ntk_adv.metrics import fit_loglog_slope, relative_gap
from ntk_adv.results import provenance, write_csv, write_json
from ntk_adv.training import TrainConfig, train

COMMAND = "convergence"
ConvergenceArch = Literal["two-layer", "fc"]  # the ntk_adv.arch.ARCHITECTURES this experiment runs
METRICS = ("ntk_rel_error_init", "ntk_rel_error_trained", "function_gap")


def _theory(lr: float = 0.01, steps: int = 100, loss: str = "identity") -> TrainConfig:
    return TrainConfig.theory(lr=lr, steps=steps, loss=loss, record_loss=False)


@dataclass(frozen=True)
class Config:
    """Composed of the library's configs: ``net`` (:class:`ntk_adv.models.TwoLayerConfig`, standard or NTK
    parametrization; its ``width`` is a template overridden by ``widths``; the readout stays frozen),
    ``train`` (:class:`ntk_adv.training.TrainConfig`: plain full-batch gradient descent, the dynamics whose
    limit is kernel gradient descent), ``data`` (:class:`ntk_adv.data.DataSpec`)."""

    widths: tuple[int, ...] = (
        64,
        128,
        256,
        512,
        1024,
        2048,
        4096,
    )  # hidden widths m of the finite nets, >= 1
    seeds: int = 8  # number of seeds (independent initializations) per width, >= 1
    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=200, n_test=100))
    net: models.TwoLayerConfig = field(default_factory=lambda: models.TwoLayerConfig(1))  # width: from widths
    arch: ConvergenceArch = "two-layer"  # the net family (fc takes gamma/bias/param. from net)
    depths: tuple[int, ...] = (2,)  # weight layers L (fc: any >= 2; two-layer: 2)
    trained: Trained = "first"  # fc: train the first layer only, or every layer
    train: TrainConfig = field(default_factory=_theory)
    n_kernel: int = 100  # first training points on which the NTK error is measured, 1..N
    seed: int = 0  # base seed of the network initializations (folded with width and depth)
    # set by the experiment (net.width from widths; a frozen scalar readout; plain GD, no loss curve)
    CLI_HIDE: ClassVar[tuple[str, ...]] = (
        "net.width",
        "net.n_out",
        "net.train_readout",
        *(f"train.{f}" for f in TrainConfig.PLAIN_GD_FIXED),
    )
    run: engine.Execution = field(default_factory=engine.Execution)

    def __post_init__(self):
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be a non-empty list of integers >= 1, got {self.widths}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        distinct = len(set(self.widths))
        if distinct < 2 or distinct * self.seeds < 3:
            raise ValueError(
                f"the log-log slope needs >= 2 distinct --widths and >= 3 (width, seed) points; got "
                f"--widths {' '.join(map(str, self.widths))} with --seeds {self.seeds}"
            )
        if self.n_kernel < 1:
            raise ValueError(f"--n-kernel must be >= 1, got {self.n_kernel}")
        if self.data.n_train is not None and self.n_kernel > self.data.n_train:
            raise ValueError(
                f"--n-kernel {self.n_kernel} exceeds the --n-train {self.data.n_train} training points "
                f"it is measured on"
            )
        if self.train.loss == "mse":
            raise ValueError(
                "the convergence experiment needs a margin loss: identity, logistic or exponential"
            )
        if self.train.optimizer != "gd" or self.train.plateau:
            raise ValueError(
                f"the convergence experiment compares against kernel gradient descent: train.optimizer "
                f"must be gd without train.plateau, got {self.train.optimizer!r}"
            )
        if self.net.train_readout or self.net.n_out != 1:
            raise ValueError("the convergence experiment's NTK is the first layer's: a frozen scalar readout")
        if not self.depths or any(d < 2 for d in self.depths):
            raise ValueError(f"--depths must be integers >= 2, got {self.depths}")
        if self.arch == "two-layer" and (set(self.depths) != {2} or self.trained != "first"):
            raise ValueError(
                "--arch two-layer has depth 2 and trains its first layer: use --arch fc for "
                f"--depths {' '.join(map(str, self.depths))} / --trained {self.trained}"
            )
        if self.trained == "all" and self.net.parametrization == "standard":
            raise ValueError(
                "--trained all in the standard parametrization has no infinite-width NTK (its deeper layers' "
                "terms grow with the width): use --parametrization ntk or --trained first"
            )


QUICK_CONFIG = Config(
    widths=(32, 256, 2048),
    seeds=3,
    data=DataSpec("digits", n_train=60, n_test=30),
    n_kernel=30,
    train=_theory(steps=20),
)


def architecture(arch: str, net: models.TwoLayerConfig, depth: int, width, trained: str) -> Architecture:
    """The net of one cell: the two-layer template at ``width``, or an fc net of ``depth`` layers with the
    template's gamma, bias and parametrization (:func:`ntk_adv.arch.build`)."""
    if arch == "two-layer":
        return replace(net, width=width)
    return build(
        "fc",
        width,
        depth=depth,
        gamma=net.gamma,
        bias=net.bias,
        parametrization=net.parametrization,
        trained=trained,
    )


def _entk(net: Architecture, params, x, z):
    """The empirical NTK over the trained leaves: the two-layer closed form, else Jacobian-free."""
    if isinstance(net, models.TwoLayerConfig):
        return two_layer_empirical_ntk(params, x, z, net)
    return empirical_ntk_implicit(net.apply, params, x, z, mask=net.trainable_mask(params))


def run_width(cfg: WidthCell, width: int, x, y, z, k_kernel, k_train, k_test) -> dict[str, np.ndarray]:
    """All seeds of one width at once (vmap); returns metric -> (seeds,) array."""
    net = architecture(cfg.arch, cfg.net, cfg.depth, width, cfg.trained)
    apply_fn = models.make_apply(net) if isinstance(net, models.TwoLayerConfig) else net.apply
    tcfg = replace(cfg.train, record_loss=False)
    xk = x[: cfg.n_kernel]
    base = (
        jax.random.PRNGKey(cfg.seed)
        if cfg.depth == 2
        else jax.random.fold_in(jax.random.PRNGKey(cfg.seed), cfg.depth)
    )
    keys = jax.random.split(jax.random.fold_in(base, width), cfg.seeds)

    def one_seed(key):
        p0 = net.init(key, x.shape[1:], x.dtype)
        mask = net.trainable_mask(p0)
        p1 = train(apply_fn, p0, x, y, tcfg, mask=mask).params
        f0_test = apply_fn(p0, z)
        coef = limits.flow_coefficients(tcfg.loss, k_train, y, apply_fn(p0, x), lr=tcfg.lr, steps=tcfg.steps)
        f_inf = f0_test + k_test @ coef
        return {
            "ntk_rel_error_init": relative_frobenius_error(_entk(net, p0, xk, xk), k_kernel),
            "ntk_rel_error_trained": relative_frobenius_error(_entk(net, p1, xk, xk), k_kernel),
            "function_gap": relative_gap(apply_fn(p1, z), f_inf)
            * jnp.linalg.norm(f_inf)
            / jnp.linalg.norm(f_inf - f0_test),
        }

    out = jax.jit(jax.vmap(one_seed))(keys)
    return {k: np.asarray(v) for k, v in out.items()}


@dataclass(frozen=True)
class WidthCell:
    """One cell of the experiment: the ``seeds`` nets of width ``width`` and depth ``depth``, trained together
    in one jitted vmap (keys ``split(fold_in(PRNGKey(seed), width), seeds)`` at depth 2, with
    ``fold_in(PRNGKey(seed), depth)`` in place of ``PRNGKey(seed)`` at other depths). Holds what
    :func:`run_width` reads - the experiment's settings without the other cells and the execution."""

    width: int
    data: DataSpec
    seeds: int
    net: models.TwoLayerConfig
    train: TrainConfig
    n_kernel: int
    seed: int
    arch: str = "two-layer"
    depth: int = 2
    trained: str = "first"


def cells(cfg: Config) -> list[tuple[WidthCell, int]]:
    """The engine's cells of ``cfg``: one per (depth, width) (in ``cfg.depths`` x ``cfg.widths`` order), its
    seeds a coupled unit."""
    shared = {f.name: getattr(cfg, f.name) for f in fields(WidthCell) if f.name not in ("width", "depth")}
    return [(WidthCell(width=int(w), depth=int(d), **shared), 0) for d in cfg.depths for w in cfg.widths]


def width_rows(cell: WidthCell, seeds=None) -> list[dict]:
    """Long-format rows (depth, width, seed, metric, value) of one cell, every seed (``seeds``: the engine's
    cell label, unused). The kernels (training points x training points, test x training) are the exact
    infinite-width NTK of the cell's net (:meth:`Architecture.kernel` at ``INF_WIDTH``)."""
    ds = load_spec(cell.data)
    x, y, z = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), jnp.asarray(ds.x_test)
    limit = architecture(cell.arch, cell.net, cell.depth, INF_WIDTH, cell.trained)

    def kernel(a, b):
        return limit.kernel(a, b, "ntk")

    k_train = kernels.kernel_matrix(kernel, x)
    k_kernel = k_train[: cell.n_kernel, : cell.n_kernel]
    k_test = kernels.kernel_matrix(kernel, z, x)
    res = run_width(cell, cell.width, x, y, z, k_kernel, k_train, k_test)
    return [
        {"depth": cell.depth, "width": cell.width, "seed": s, "metric": metric, "value": float(v)}
        for metric in METRICS
        for s, v in enumerate(res[metric])
    ]


def main(cfg: Config = Config(), out: str | Path = "runs/convergence", *, progress: bool = True) -> dict:
    """Run the width cells through the sweep engine (stored per cell in the result store, so a killed run
    resumes per width; any backend), write results.csv, summary.json and the figure into ``out``; return the
    summary."""
    out = Path(out)
    ds = load_spec(cfg.data)
    x = jnp.asarray(ds.x_train)
    if cfg.n_kernel > x.shape[0]:  # --n-train unset: all points of the data set, known only now
        raise ValueError(f"--n-kernel {cfg.n_kernel} exceeds the {x.shape[0]} training points of {ds.name}")
    stored = engine.run_rows(
        cells(cfg),
        kind=COMMAND,
        run=width_rows,
        seed_column=None,
        progress=progress,
        **cfg.run.sweep_options(out),
    )
    rows = [
        {k: r[k] for k in ("depth", "width", "seed", "metric", "value")} for r in stored
    ]  # store sorts keys
    write_csv(rows, out / "results.csv")

    summary: dict = {
        "experiment": "convergence",
        "config": asdict(cfg),
        "dataset": ds.name,
        "n_train": int(x.shape[0]),
        "d": int(x.shape[1]),
        **provenance(),
        "theory_slope": -0.5,
        "by_depth": {str(depth): fits(cfg, [r for r in rows if r["depth"] == depth]) for depth in cfg.depths},
    }
    summary |= summary["by_depth"][str(cfg.depths[0])]  # the first depth's fits at the top level
    several = len(cfg.depths) > 1
    summary["claims"] = [
        c.to_dict()
        for depth in cfg.depths
        for c in claims(summary["by_depth"][str(depth)], depth if several else None)
    ]
    summary["verdicts"] = verdicts.summarize(summary["claims"])
    write_json(summary, out / "summary.json")
    plot(rows, summary, out)
    if progress is not False:
        for depth in cfg.depths:
            f = summary["by_depth"][str(depth)]
            print(
                f"depth {depth}: NTK relative error slope {f['ntk_rel_error_slope']:+.3f} "
                f"(95% CI {f['ntk_rel_error_slope_ci95'][0]:+.3f}..{f['ntk_rel_error_slope_ci95'][1]:+.3f}), "
                f"after training {f['ntk_rel_error_trained_slope']:+.3f}, function gap slope "
                f"{f['function_gap_slope']:+.3f}; theory -0.5"
            )
        print(f"Wrote {out}/")
    return summary


def fits(cfg: Config, rows: list[dict]) -> dict:
    """The fitted log-log slopes (95% intervals) and per-width geometric means of one depth's rows."""
    out: dict = {}
    for metric, key in [
        ("ntk_rel_error_init", "ntk_rel_error_slope"),
        ("ntk_rel_error_trained", "ntk_rel_error_trained_slope"),
        ("function_gap", "function_gap_slope"),
    ]:
        sub = [r for r in rows if r["metric"] == metric]
        fit = fit_loglog_slope([r["width"] for r in sub], [r["value"] for r in sub])
        out[key] = fit.slope
        out[key + "_ci95"] = [fit.low, fit.high]
        out[key + "_n"] = fit.n
        if fit.dropped:  # points without a logarithm (gap 0, NaN) left out of the fit: reported, not hidden
            out[key + "_dropped"] = f"{fit.dropped} ({fit.why})"
        out[metric + "_geomean_by_width"] = {
            str(w): float(
                np.exp(verdicts.mean_ci(np.log([r["value"] for r in sub if r["width"] == w])).value)
            )
            for w in cfg.widths
        }
    return out


TOL_SLOPE = (
    0.2  # fitted log-log slope vs the theory's -1/2, fixed before the data (as in perturbation learning)
)
PAPER = (
    "Lee et al. 2019 (wide nets evolve as linear models), Thm 2.1 / Fig. 1: the empirical NTK's change "
    "in training and the output gap to the linearized net are O(m^-1/2); a standard-param. two-layer net "
    "here, not their deep nets, so the same exponent -1/2 is predicted"
)


def claims(summary: dict, depth: int | None = None) -> list[verdicts.Claim]:
    """The three rate claims of one depth's fits: each fitted log-log slope (95% Student-t interval over all
    width x seed points) against -1/2 +- :data:`TOL_SLOPE`; names carry ``[depth=L]`` when ``depth`` is
    given (several depths in one run)."""
    statements = [
        ("ntk_rel_error_slope", "Empirical NTK converges to the analytic NTK at init: error ~ m^(-1/2)"),
        ("ntk_rel_error_trained_slope", "... and stays close after training (lazy regime): error ~ m^(-1/2)"),
        ("function_gap_slope", "Trained finite net -> infinite-width predictor (same f_0): gap ~ m^(-1/2)"),
    ]
    out = []
    for key, text in statements:
        low, high = summary[key + "_ci95"]
        est = verdicts.Estimate(
            summary[key], min(low, summary[key]), max(high, summary[key]), summary[key + "_n"], "fit"
        )
        out.append(
            verdicts.equals(
                key.removesuffix("_slope") + "_rate" + (f"[depth={depth}]" if depth is not None else ""),
                text + (f" (depth {depth})" if depth is not None else ""),
                -0.5,
                TOL_SLOPE,
                est,
                basis="CLT over m neurons (docs/theory.md)",
                paper=PAPER,
            )
        )
    return out


@plots.styled
def plot(rows, summary, out: Path) -> list[Path]:
    """One panel per depth: the three errors vs width (log-log) with intervals over seeds and the theory's
    slope -1/2 as a line."""
    labels = {
        "ntk_rel_error_init": "NTK error at init",
        "ntk_rel_error_trained": "NTK error after training",
        "function_gap": r"$|f_m - f_\infty| / |f_\infty - f_0|$",
    }
    depths = [int(d) for d in summary["by_depth"]]
    fig, axes = plots.new_figure(len(depths), 4.2, 4.6)
    cfg = summary["config"]
    param = cfg["net"]["parametrization"]
    for ax, depth in zip(axes, depths):
        sub = [r for r in rows if r["depth"] == depth]
        for metric in METRICS:
            plots.plot_metric(ax, sub, "width", metric, label=labels[metric], logy=True)
        widths = sorted({r["width"] for r in sub})
        anchor = summary["by_depth"][str(depth)]["ntk_rel_error_init_geomean_by_width"][str(widths[0])]
        plots.theory_slope(ax, widths, anchor, -0.5, label=r"theory: slope $-1/2$")
        plots.log_ticks(ax, "y")
        ax.set_xlabel(plots.axis_label("width"))
        ax.set_ylabel("relative error")
        net = "two-layer" if cfg["arch"] == "two-layer" else f"fc, depth {depth}"
        ax.set_title(net)
    plots.legend_below(axes[0], ncol=1)
    trained = "" if cfg["arch"] == "two-layer" else f", {cfg['trained']} layers trained"
    fig.suptitle(f"{summary['dataset']}, {param} parametrization{trained}")
    return plots.save(fig, out, "convergence")
