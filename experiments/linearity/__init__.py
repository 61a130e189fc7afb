"""The linearity explanation of adversarial examples (Goodfellow, Shlens, Szegedy 2015), at finite and
infinite width.

One module per claim group, each measured on finite two-layer nets and on their infinite-width (NTK)
predictor:

* :mod:`.dimension` (a) FGSM logit change ~ d, random-sign change ~ sqrt(d) (synthetic data);
* :mod:`.rays` (b) logits along FGSM rays: piecewise linear, nearly linear, converging to the limit;
  (c) FGSM error over eps for logistic regression, an RBF machine, every width and the limit;
* :mod:`.magnitude` (c) the paper's magnitudes at eps 0.25: high error for linear models, wide nets and their
  limit, RBF models resist, FGSM examples transfer (also on real MNIST when ``--data-root`` is given);
* :mod:`.adversarial` (d) FGSM adversarial training lowers the FGSM error, noise training does not, and as a
  regularizer.

Every claim is a :class:`ntk_adv.verdicts.Claim` (prediction with tolerance fixed in the code, measured
estimate with a 95% interval, verdict confirmed / refuted / inconclusive, ``paper`` the published number for
the closest setting). Outputs in ``out``: results.csv (long format: part, model, width, d, eps, t, seed,
metric, value), summary.json (``claims``: one dict per claim) and figures linearity_dimension, linearity_ray,
linearity_fgsm.

The work runs through the sweep engine (:func:`ntk_adv.engine.run_rows`): one cell per part and seed, or one
unit where a measurement couples the seeds (:mod:`.cells`), each stored in the result store (``--store``,
default ``out/store``) as it finishes, so a killed run resumes cell by cell and ``--backend`` / ``--workers``
spread the parts over processes or Ray. A cell's numbers do not depend on which seeds run with it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import jax
import numpy as np

from ntk_adv import engine, verdicts
from ntk_adv.data import load_spec
from ntk_adv.results import provenance, write_csv, write_json

from . import adversarial, cells, dimension, magnitude, rays
from .adversarial import ADV_MODES, adversarial_train
from .config import QUICK_CONFIG, Config
from .dimension import DIM_METRICS, DIM_MODELS
from .figures import plot

COMMAND = "linearity"

__all__ = [
    "ADV_MODES",
    "COMMAND",
    "DIM_METRICS",
    "DIM_MODELS",
    "QUICK_CONFIG",
    "Config",
    "adversarial_train",
    "main",
]


def main(cfg: Config = Config(), out: str | Path = "runs/linearity", *, progress: bool = True) -> dict:
    """Run the requested parts through the sweep engine (cells: :mod:`.cells`, stored per cell in
    ``cfg.run.store``, default ``out/store``, so a killed run resumes), write results.csv, summary.json and
    the figures into ``out``; return the summary (``summary['claims']``: list of
    :meth:`ntk_adv.verdicts.Claim.to_dict`)."""
    out = Path(out)
    ds = load_spec(cfg.data)
    parts = set(cfg.parts)
    mnist = cfg.mnist() if "c" in parts else None
    summary: dict = {
        "experiment": COMMAND,
        "config": asdict(cfg),
        "dataset": ds.name,
        "n_train": int(ds.x_train.shape[0]),
        "d": int(ds.x_train.shape[1]),
        "n_test": int(ds.x_test.shape[0]),
        **provenance(),
    }
    seeded, whole = cells.plan(cfg)
    options = dict(run=cells.run_unit, kind=COMMAND, progress=progress, **cfg.run.sweep_options(out))
    planner = engine.Planner(COMMAND)  # --dry-run: plan both sweeps, compute nothing
    found: list[dict] = []
    if seeded:
        with planner.sweep("per-seed units"):
            found += engine.run_rows(seeded, **options)
    if whole:
        with planner.sweep("whole units"):
            found += engine.run_rows(whole, seed_column=None, **options)
    planner.finish()
    found = [_columns(r) for r in found]

    rows: list[dict] = []
    claims: list[verdicts.Claim] = []
    if "a" in parts:
        order = {k: i for i, k in enumerate((*DIM_MODELS, *DIM_METRICS, *cfg.dims))}
        rows += sorted(  # the order of the batched run (model, metric, d, seed): the same slope fits
            (r for r in found if r["part"] == "a"),
            key=lambda r: (order[r["model"]], order[r["metric"]], order[r["d"]], r["seed"]),
        )
        claims += dimension.summarize(cfg, rows, summary)
    if parts & {"b", "c"}:
        ray_rows = [
            r for r in found if r["part"] in parts & {"b", "c"} and not r["model"].startswith("paper_eps_")
        ]
        width = {w: i for i, w in enumerate(cfg.widths)}
        rows += sorted(  # as the batched run wrote them: the models, then per width its seeds, its examples
            ray_rows,
            key=lambda r: (
                (-1, 0, 0)
                if r["model"] != "net"
                else (width[r["width"]], r["metric"].startswith("ray_example"), r["seed"])
            ),
        )
        if "b" in parts:
            claims += rays.summarize_b(cfg, rows, summary)
        if "c" in parts:
            claims += rays.summarize_c(cfg, rows, summary)
    if "c" in parts:
        dtype = jax.dtypes.canonicalize_dtype(np.float64)  # the indicators' dtype in the run: same sums
        for tag, name in (
            ("data", ds.name),
            *((("mnist", load_spec(mnist).name),) if mnist is not None else ()),
        ):
            res = magnitude.res_of_point_rows(found, tag, dtype)
            rows += magnitude.rows_of(res, tag)
            claims += magnitude.summarize(cfg, res, tag, name, summary)
    if "d" in parts:
        modes = {f"train_{m}": i for i, m in enumerate(ADV_MODES)}
        rows += sorted((r for r in found if r["part"] == "d"), key=lambda r: (modes[r["model"]], r["seed"]))
        claims += adversarial.summarize(cfg, rows, summary)

    summary["claims"] = [c.to_dict() for c in claims]
    summary["verdicts"] = {c.name: c.verdict for c in claims}
    write_csv(rows, out / "results.csv")
    write_json(summary, out / "summary.json")
    plot(rows, summary, out)
    if progress is not False:
        report(summary, out)
    return summary


COLUMNS = ("part", "model", "width", "d", "eps", "ray", "t", "seed", "metric", "value")


def _columns(row: dict) -> dict:
    """``row`` with its columns in the order of results.csv (:data:`COLUMNS`, then any other, e.g. the
    store's ``stale`` mark), whether it was just computed or read back from the store."""
    return {**{k: row[k] for k in COLUMNS if k in row}, **row}


def report(summary: dict, out: Path) -> None:
    if "fgsm_error_curves" in summary:
        print("(c) FGSM error at eps " + " ".join(f"{e:5.2f}" for e in summary["fgsm_eps"]))
        for name, c in summary["fgsm_error_curves"].items():
            label = name if name in ("linear", "rbf", "limit") else f"m={name}"
            print(f"    {label:<18}" + " ".join(f"{v:5.2f}" for v in c))
    for c in summary["claims"]:
        print(
            f"[{c['verdict']:<12}] {c['name']}: {c['measured']} vs {c['prediction']}"
            + (f" - {c['reason']}" if c["reason"] else "")
        )
    print(f"Wrote {out}/")
