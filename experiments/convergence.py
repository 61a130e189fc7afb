"""Width convergence of finite two-layer nets to their NTK limit (the suite's foundation check).

For each width m and seed: the relative Frobenius error of the empirical NTK (trainable first layer, frozen
readout) against the closed-form NTK, at initialization and after training; and the relative distance between
the trained finite net's outputs on held-out points and the infinite-width predictor that starts from the same
initial function (``limits.make_predictor(..., f0=f_m,0)``). Theory: both decay like m^(-1/2).

Cells: one per width with all its seeds (:class:`WidthCell`, run by :func:`ntk_adv.engine.run_rows`, kept
in the result store ``out``/store, so a killed run resumes per width on any backend).

Outputs in ``out``: results.csv (long format: width, seed, metric, value), summary.json (fitted log-log slopes
with 95% intervals: ``ntk_rel_error_slope``, ``ntk_rel_error_trained_slope``, ``function_gap_slope``), and
figure convergence.png / .pdf.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ntk_adv import engine, kernels, limits, models, plots, verdicts
from ntk_adv.data import DataSpec, load_spec
from ntk_adv.empirical import relative_frobenius_error, two_layer_empirical_ntk
from ntk_adv.metrics import fit_loglog_slope, relative_gap
from ntk_adv.results import provenance, write_csv, write_json
from ntk_adv.training import TrainConfig, train

COMMAND = "convergence"
METRICS = ("ntk_rel_error_init", "ntk_rel_error_trained", "function_gap")


def _theory(lr: float = 0.01, steps: int = 100, loss: str = "identity") -> TrainConfig:
    return TrainConfig.theory(lr=lr, steps=steps, loss=loss, record_loss=False)


@dataclass(frozen=True)
class Config:
    """Composed of the library's configs: ``net`` (:class:`ntk_adv.models.TwoLayerConfig`, standard or NTK
    parametrization; its ``width`` is a template overridden by ``widths``; the readout stays frozen),
    ``train`` (:class:`ntk_adv.training.TrainConfig`: plain full-batch gradient descent, the dynamics whose
    limit is kernel gradient descent), ``data`` (:class:`ntk_adv.data.DataSpec`)."""

    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096)
    seeds: int = 8
    data: DataSpec = field(default_factory=lambda: DataSpec("digits", n_train=200, n_test=100))
    net: models.TwoLayerConfig = field(default_factory=lambda: models.TwoLayerConfig(1))  # width: from widths
    train: TrainConfig = field(default_factory=_theory)
    n_kernel: int = 100  # training points on which the NTK error is measured
    seed: int = 0
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
                f"the convergence experiment compares against kernel gradient descent: --optimizer must be "
                f"gd without --plateau, got {self.train.optimizer!r}"
            )
        if self.net.train_readout or self.net.n_out != 1:
            raise ValueError("the convergence experiment's NTK is the first layer's: a frozen scalar readout")


QUICK_CONFIG = Config(
    widths=(32, 256, 2048),
    seeds=3,
    data=DataSpec("digits", n_train=60, n_test=30),
    n_kernel=30,
    train=_theory(steps=20),
)


def run_width(
    cfg: Config | WidthCell, width: int, x, y, z, k_kernel, k_train, k_test
) -> dict[str, np.ndarray]:
    """All seeds of one width at once (vmap); returns metric -> (seeds,) array."""
    net = replace(cfg.net, width=width)
    apply_fn, mask = models.make_apply(net), models.trainable_mask(net)
    tcfg = replace(cfg.train, record_loss=False)
    xk = x[: cfg.n_kernel]
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), width), cfg.seeds)

    def one_seed(key):
        p0 = models.init_params(net, x.shape[1], key=key, dtype=x.dtype)
        p1 = train(apply_fn, p0, x, y, tcfg, mask=mask).params
        f0_test = apply_fn(p0, z)
        coef = limits.flow_coefficients(tcfg.loss, k_train, y, apply_fn(p0, x), lr=tcfg.lr, steps=tcfg.steps)
        f_inf = f0_test + k_test @ coef
        return {
            "ntk_rel_error_init": relative_frobenius_error(
                two_layer_empirical_ntk(p0, xk, xk, net), k_kernel
            ),
            "ntk_rel_error_trained": relative_frobenius_error(
                two_layer_empirical_ntk(p1, xk, xk, net), k_kernel
            ),
            "function_gap": relative_gap(apply_fn(p1, z), f_inf)
            * jnp.linalg.norm(f_inf)
            / jnp.linalg.norm(f_inf - f0_test),
        }

    out = jax.jit(jax.vmap(one_seed))(keys)
    return {k: np.asarray(v) for k, v in out.items()}


@dataclass(frozen=True)
class WidthCell:
    """One cell of the experiment: the ``seeds`` nets of width ``width``, trained together in one jitted vmap
    (keys ``split(fold_in(PRNGKey(seed), width), seeds)``). Holds what :func:`run_width` reads - the
    experiment's settings without the other widths and the execution."""

    width: int
    data: DataSpec
    seeds: int
    net: models.TwoLayerConfig
    train: TrainConfig
    n_kernel: int
    seed: int


def cells(cfg: Config) -> list[tuple[WidthCell, int]]:
    """The engine's cells of ``cfg``: one per width (in ``cfg.widths`` order), its seeds a coupled unit."""
    shared = {f.name: getattr(cfg, f.name) for f in fields(WidthCell) if f.name != "width"}
    return [(WidthCell(width=int(w), **shared), 0) for w in cfg.widths]


def width_rows(cell: WidthCell, seeds=None) -> list[dict]:
    """Long-format rows (width, seed, metric, value) of one width cell, every seed (``seeds``: the engine's
    cell label, unused). The kernels (training points x training points, test x training) are the
    closed-form NTK of the cell's net."""
    ds = load_spec(cell.data)
    x, y, z = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), jnp.asarray(ds.x_test)
    kernel = kernels.two_layer_kernel(
        gamma=cell.net.gamma, bias=cell.net.bias, parametrization=cell.net.parametrization
    )
    k_train = kernels.kernel_matrix(kernel, x)
    k_kernel = k_train[: cell.n_kernel, : cell.n_kernel]
    k_test = kernels.kernel_matrix(kernel, z, x)
    res = run_width(cell, cell.width, x, y, z, k_kernel, k_train, k_test)
    return [
        {"width": cell.width, "seed": s, "metric": metric, "value": float(v)}
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
    rows = [{k: r[k] for k in ("width", "seed", "metric", "value")} for r in stored]  # the store sorts keys
    write_csv(rows, out / "results.csv")

    summary: dict = {
        "experiment": "convergence",
        "config": asdict(cfg),
        "dataset": ds.name,
        "n_train": int(x.shape[0]),
        "d": int(x.shape[1]),
        **provenance(),
        "theory_slope": -0.5,
    }
    for metric, key in [
        ("ntk_rel_error_init", "ntk_rel_error_slope"),
        ("ntk_rel_error_trained", "ntk_rel_error_trained_slope"),
        ("function_gap", "function_gap_slope"),
    ]:
        sub = [r for r in rows if r["metric"] == metric]
        fit = fit_loglog_slope([r["width"] for r in sub], [r["value"] for r in sub])
        summary[key] = fit.slope
        summary[key + "_ci95"] = [fit.low, fit.high]
        summary[key + "_n"] = fit.n
        if fit.dropped:  # points without a logarithm (gap 0, NaN) left out of the fit: reported, not hidden
            summary[key + "_dropped"] = f"{fit.dropped} ({fit.why})"
        summary[metric + "_geomean_by_width"] = {
            str(w): float(
                np.exp(verdicts.mean_ci(np.log([r["value"] for r in sub if r["width"] == w])).value)
            )
            for w in cfg.widths
        }
    summary["claims"] = [c.to_dict() for c in claims(summary)]
    summary["verdicts"] = verdicts.summarize(summary["claims"])
    write_json(summary, out / "summary.json")
    plot(rows, summary, out)
    if progress is not False:
        print(
            f"NTK relative error slope {summary['ntk_rel_error_slope']:+.3f} "
            "(95% CI "
            f"{summary['ntk_rel_error_slope_ci95'][0]:+.3f}..{summary['ntk_rel_error_slope_ci95'][1]:+.3f}),"
            f" after training {summary['ntk_rel_error_trained_slope']:+.3f}, function gap slope "
            f"{summary['function_gap_slope']:+.3f}; theory -0.5. Wrote {out}/"
        )
    return summary


TOL_SLOPE = (
    0.2  # fitted log-log slope vs the theory's -1/2, fixed before the data (as in perturbation learning)
)
PAPER = (
    "Lee et al. 2019 (wide nets evolve as linear models), Thm 2.1 / Fig. 1: the empirical NTK's change "
    "in training and the output gap to the linearized net are O(m^-1/2); a standard-param. two-layer net "
    "here, not their deep nets, so the same exponent -1/2 is predicted"
)


def claims(summary: dict) -> list[verdicts.Claim]:
    """The three rate claims: each fitted log-log slope (95% Student-t interval over all width x seed points)
    against -1/2 +- :data:`TOL_SLOPE`."""
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
                key.removesuffix("_slope") + "_rate",
                text,
                -0.5,
                TOL_SLOPE,
                est,
                basis="CLT over m neurons (docs/theory.md)",
                paper=PAPER,
            )
        )
    return out


def plot(rows, summary, out: Path) -> list[Path]:
    fig, (ax,) = plots.new_figure(1, 4.2, 3.2)
    labels = {
        "ntk_rel_error_init": "NTK error at init",
        "ntk_rel_error_trained": "NTK error after training",
        "function_gap": "|f_m - f_inf| / |f_inf - f_0|",
    }
    for metric in METRICS:
        plots.plot_metric(ax, rows, "width", metric, label=labels[metric], logy=True)
    widths = sorted({r["width"] for r in rows})
    anchor = summary["ntk_rel_error_init_geomean_by_width"][str(widths[0])]
    plots.theory_slope(ax, widths, anchor, -0.5, label="theory: slope -1/2")
    ax.set_xlabel("width m")
    ax.set_ylabel("relative error")
    param = summary["config"]["net"]["parametrization"]
    ax.set_title(f"Convergence to the NTK limit ({summary['dataset']}, {param} param.)")
    ax.legend(frameon=False)
    return plots.save(fig, out, "convergence")
