"""Intriguing properties of neural networks (Szegedy et al. 2014), at finite and infinite width.

Centred two-layer nets f(x; theta_t) - f(x; theta_0) of several widths (standard or NTK parametrization as
``Config.net``; first layer trained by the library's full-batch gradient descent on the logistic loss, frozen
readout) and their infinite-width limit, the kernel predictor f(z) = Theta(z, X) coef (docs/theory.md). Every
claim is a :class:`ntk_adv.verdicts.Claim` (prediction with tolerance fixed in the code, measured estimate
with a 95% interval, verdict confirmed / refuted / inconclusive, the published number in ``paper``). Modules,
one per claim group:

* :mod:`.distortion` (a, b) minimal box-constrained L-BFGS distortions (RMS per pixel, ||eta||_2 / sqrt(d)) vs
  width and anchored weight decay; Gaussian noise of the same L2 norm;
* :mod:`.transfer` (c) transfer of minimal and amplified examples across seeds, widths, the limit and
  disjoint training halves;
* :mod:`.probes` (d) units vs random directions in activation space at every width, (e) the operator-norm
  Lipschitz bound against the true gradient norm, with the lazy-regime prediction;
* :mod:`.advtrain` (f) adversarial training and clean generalization;
* :mod:`.table1` the Table-1 distortions on real MNIST, only when ``--data-root`` is given.

The work runs through the library's sweep engine (:func:`ntk_adv.engine.run_rows`) in the units of
:mod:`.units`: per-seed cells (the nets of each width, adversarial training, MNIST) and coupled ones (the
limit, the lazy Lipschitz pieces, one transfer unit per target group). Every cell is stored in the result
store (``--store``, default OUT/store) as it finishes; a re-run reuses them (``--force`` recomputes), so a
killed run resumes per cell, and ``--backend processes`` / ``ray`` spread the cells over workers with the
same numbers.

Outputs in ``out``: results.csv (long format), summary.json (``claims``: one dict per claim), figures
intriguing_distortion, intriguing_noise, intriguing_transfer, intriguing_probes (.png and .pdf), store/.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from ntk_adv import engine
from ntk_adv import verdicts as V
from ntk_adv.data import load_spec
from ntk_adv.results import provenance, write_csv, write_json

from . import advtrain, common, distortion, probes, table1, transfer, units
from .common import decayed_train
from .config import PARTS, QUICK_CONFIG, Config
from .figures import plot
from .probes import lipschitz_ratio_theory, top_k_purity
from .transfer import transfer_kappas

COMMAND = "intriguing"

__all__ = [
    "COMMAND",
    "PARTS",
    "QUICK_CONFIG",
    "Config",
    "decayed_train",
    "lipschitz_ratio_theory",
    "main",
    "top_k_purity",
    "transfer_kappas",
]


def main(cfg: Config = Config(), out: str | Path = "runs/intriguing", *, progress: bool = True) -> dict:
    """Run the requested parts through the sweep engine (cells stored under ``cfg.run.store`` or OUT/store,
    reused on a re-run, see :mod:`.units`), write results.csv, summary.json and the figures into ``out``;
    return the summary (``summary["claims"]``: every claim's dict)."""
    out = Path(out)
    ds = load_spec(cfg.data)
    parts = set(cfg.parts)
    options = dict(run=units.run_unit, kind=COMMAND, progress=progress, **cfg.run.sweep_options(out))
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    per_seed, coupled = units.cells(cfg)
    planner = engine.Planner(COMMAND)  # --dry-run: plan every sweep, compute nothing
    cell_rows: list[dict] = []
    with planner.sweep("per-seed units"):
        cell_rows += engine.run_rows(per_seed, **options)
    if coupled:
        with planner.sweep("coupled units"):
            cell_rows += engine.run_rows(coupled, seed_column=None, **options)
    timings["nets_limit_probes"] = time.perf_counter() - tick
    tick = time.perf_counter()
    sources = []
    if "c" in parts and planner.planning:  # the transfer cells are chosen from the units' rows
        n = len(units.attacked_widths(cfg)) + 1
        planner.depends(
            COMMAND,
            "transfer",
            f"{n} cells (one per attacked width and the limit) that carry the per-seed units' attacks: how "
            "many are in the store is known once those are computed",
        )
    elif "c" in parts:
        sources = transfer.sources(cell_rows)
        cell_rows += engine.run_rows(units.transfer_cells(cfg, sources), seed_column=None, **options)
        timings["transfer"] = time.perf_counter() - tick
    planner.finish()
    rows, probe_out, lazy, mnist_meta = assemble(cfg, cell_rows, sources)

    summary: dict = {
        "experiment": COMMAND,
        "config": asdict(cfg),
        "dataset": ds.name,
        "n_train": int(ds.x_train.shape[0]),
        "d": int(ds.x_train.shape[1]),
        **provenance(),
    }
    claims: list[V.Claim] = []
    if "a" in parts:
        claims += distortion.claims_a(cfg, rows, summary)
    if "b" in parts:
        claims += distortion.claims_b(cfg, rows, summary)
    if "c" in parts:
        claims += transfer.claims_c(cfg, rows, summary)
    if "d" in parts:
        claims += probes.claims_d(cfg, probe_out, summary)
    if "e" in parts:
        claims += probes.claims_e(cfg, rows, summary, lazy)
    if "f" in parts:
        claims += advtrain.claims_f(cfg, rows, summary)
    if mnist_meta is not None:
        summary["mnist"] = mnist_meta
        claims += table1.claims_mnist(cfg, rows, summary)
    summary["claims"] = [c.to_dict() for c in claims]
    summary["timings_s"] = timings
    summary["verdicts"] = V.summarize(claims)
    write_csv([_columns(r) for r in rows], out / "results.csv")
    write_json(summary, out / "summary.json")
    plot(rows, summary, out)
    if progress is not False:
        report(summary, out)
    return summary


def assemble(cfg: Config, cell_rows: list[dict], sources) -> tuple[list[dict], list[dict], dict, dict | None]:
    """From the rows of every unit: the long-format result rows (parts a, b with ``distortion_gap``, the clean
    test errors, the transfer matrix and its per-(width, seed) summaries, parts d, e, f, mnist; the units'
    intermediate rows left out), the probe results per width (:func:`probes.results_of`), the lazy-limit
    Lipschitz pieces and the MNIST metadata (None without MNIST)."""
    parts = set(cfg.parts)

    def group_order(r):  # widths ascending, then the limit; runs: full set by (decay, seed), then the halves
        return (
            r["width"] is None,
            r["width"] or 0,
            r["train_set"] != "full",
            r["train_set"],
            r["decay"],
            r["seed"],
        )

    ab = [r for r in cell_rows if r["part"] in ("a", "b", "run")]
    attack = sorted((r for r in ab if r.get("metric") != "test_error"), key=group_order)
    test_error = sorted((r for r in ab if r.get("metric") == "test_error"), key=group_order)
    rows = [r for r in distortion.with_gaps(attack) if r["part"] != "run"] + test_error
    matrix = [r for r in cell_rows if r["part"] == "c"]
    rows += matrix
    if "c" in parts:
        rows += transfer.derived_rows(cfg, matrix, sources)
    probe_out = probes.results_of(cell_rows)
    rows += probes.probe_rows(cfg, probe_out, parts)
    rows += sorted(
        (r for r in cell_rows if r["part"] == "f"), key=lambda r: (r["model"] != "adversarial", r["seed"])
    )
    rows += sorted((r for r in cell_rows if r["part"] == "mnist"), key=lambda r: r["seed"])
    lazy = {}
    for r in cell_rows:
        if r["part"] == "lipschitz":
            lazy = {"delta_w2": r["delta_w2"], "limit_grad_norms": common.decode(r["grad_norms"])}
    meta = next((json.loads(r["meta"]) for r in cell_rows if r["part"] == "mnist_meta"), None)
    return rows, probe_out, lazy, meta


COLUMNS = ("part", "model", "width", "seed", "decay", "train_set", "metric", "value", "multiple")


def _columns(row: dict) -> dict:
    """A row with its columns in the reading order (stored rows come back with sorted keys)."""
    return {**{k: row[k] for k in COLUMNS if k in row}, **row}


def report(summary: dict, out: Path) -> None:
    """One line per claim: verdict, name, measured [interval] vs prediction, reason."""
    for c in summary["claims"]:
        print(
            f"[{c['verdict']:<12}] {c['name']:<46} {c['measured']} vs {c['prediction']}"
            + (f"  ({c['reason']})" if c["reason"] else "")
        )
    print(f"Wrote {out}/")
