"""Running the experiment: the sweep of protocol cells through the engine (resumable store), then
results.csv, summary.json, the figures and the printed report (:func:`main`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ntk_adv.data import data_arrays
from ntk_adv.perturbation import batch, protocol
from ntk_adv.results import write_csv, write_json
from ntk_adv.store import ResultStore

from .claims import summarize, with_regime
from .config import COMMAND, Config
from .figures import decision_maps, figures


def main(
    cfg: Config = Config(), out: str | Path = "runs/perturbation-learning", *, progress: bool = True
) -> dict:
    """Run the sweep (resuming from the store), write results.csv, summary.json and figures; return
    summary."""
    out = Path(out)
    for (
        spec
    ) in cfg.data_specs():  # every data set loads (sizes in range) before any work, errors name the option
        protocol.need_held_out(data_arrays(spec)[2])
    out.mkdir(parents=True, exist_ok=True)
    grid = cfg.grid()
    options = cfg.run.sweep_options(out)
    store = ResultStore(options.pop("store"))
    records = batch.run_perturbation_sweep(
        grid,
        store,
        run_batch=partial(batch.run_protocol_batch, solver=cfg.solver),
        progress=progress,
        **options,
    )
    rows = with_regime(store.rows(records))
    write_csv(rows, out / "results.csv")
    summary = summarize(cfg, rows)
    summary["stale_cells"] = sum(
        1 for r in records if r.get("stale")
    )  # kept with --accept-stale, rows marked
    summary["figures"] = [str(p.name) for p in figures(cfg, rows, out)]
    if cfg.decision_map:
        summary["figures"] += [str(p.name) for p in decision_maps(cfg, out)]
    write_json(summary, out / "summary.json")
    if progress is not False:
        report(summary)
        print(
            f"{COMMAND}: wrote {out / 'results.csv'}, {out / 'summary.json'} and {len(summary['figures'])} "
            f"figure files in {out}"
        )
    return summary


def report(summary: dict) -> None:
    """Print per-width measured agreement next to the lazy limit's prediction, then the verdicts."""
    agr, acc = summary["agreement_by_width"], summary["g_acc_test_by_width"]
    pred = summary.get("agreement_predicted_by_width", {})
    point = ", ".join(f"{k}={v:g}" for k, v in summary["headline_point"].items()) or "the configured point"
    print(f"at {point} ({summary['n_test']} test points; intervals 95%, two-stage bootstrap):")
    print(f"{'width':>8}  {'agreement(f,g)':>22}  {'predicted':>9}  {'g accuracy (test)':>22}")
    for w in agr:
        a, g = agr[w], acc.get(w, {"mean": np.nan, "ci95": [np.nan, np.nan]})
        p = pred.get(w, {}).get("mean", np.nan)
        p_text = f"{p:>9.3f}" if np.isfinite(p) else f"{'-':>9}"  # no prediction printed as '-', not nan
        print(
            f"{w:>8}  {a['mean']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]  {p_text}  "
            f"{g['mean']:.3f} [{g['ci95'][0]:.3f}, {g['ci95'][1]:.3f}]"
        )
    if "agreement_infinite" in summary:
        print(f"centred limit (infinite width, g_0 = 0): agreement {summary['agreement_infinite']:.3f}")
    for c in summary["claims"]:
        print(
            f"  [{c['verdict']}] {c['claim']}: predicted {c['prediction']}, measured {c['measured']}"
            + (f" - {c['reason']}" if c.get("reason") else "")
        )
