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

Outputs in ``out``: results.csv (long format), summary.json (``claims``: one dict per claim), figures
intriguing_distortion, intriguing_noise, intriguing_transfer, intriguing_probes (.png and .pdf).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ntk_adv import verdicts as V
from ntk_adv.data import load_spec
from ntk_adv.results import provenance, write_csv, write_json

from . import advtrain, common, distortion, probes, table1, transfer
from .common import anchored_limit_coefficients, decayed_train
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
    "anchored_limit_coefficients",
    "decayed_train",
    "lipschitz_ratio_theory",
    "main",
    "top_k_purity",
    "transfer_kappas",
]


def main(cfg: Config = Config(), out: str | Path = "runs/intriguing", *, progress: bool = True) -> dict:
    """Run the requested parts, write results.csv, summary.json and the figures into ``out``; return the
    summary (``summary["claims"]``: every claim's dict)."""
    out = Path(out)
    ds = load_spec(cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    z, yz = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    n_att = min(cfg.n_attack, z.shape[0])
    z_att, y_att = z[:n_att], yz[:n_att]
    box = common.pixel_box(ds)
    parts = set(cfg.parts)
    attack = bool(parts & {"a", "b", "c"})
    root = jax.random.PRNGKey(cfg.seed)
    n = x.shape[0]
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(root, 7), n))
    halves = {"A": np.sort(perm[: n // 2]), "B": np.sort(perm[n // 2 :])}

    plan: dict[int, list[tuple[float, str, int]]] = {}  # width -> runs (decay, train_set, seed)
    attacked: set[int] = set()
    if attack:
        for w in cfg.widths:
            plan.setdefault(w, []).extend((0.0, "full", s) for s in range(cfg.seeds))
            attacked.add(w)
    if "a" in parts:
        plan.setdefault(cfg.decay_width, []).extend(
            (lam, "full", s) for lam in cfg.decays for s in range(cfg.seeds)
        )
        attacked.add(cfg.decay_width)
    if "c" in parts:
        plan.setdefault(cfg.transfer_width, []).extend([(0.0, "A", 0), (0.0, "B", 1)])
        attacked.add(cfg.transfer_width)
    if parts & {"d", "e"}:
        for w in cfg.probe_widths:
            plan.setdefault(w, []).extend((0.0, "full", s) for s in range(cfg.seeds))
    plan = {w: sorted(set(runs), key=lambda r: (r[1], r[0], r[2])) for w, runs in plan.items()}

    n_cells = len(plan) + attack + ("f" in parts) + (cfg.data.root is not None)
    bar = tqdm(total=n_cells, desc="intriguing: cells", disable=None if progress else True)
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    groups: list[dict] = []
    probe_out: list[dict] = []
    for width in sorted(plan):
        runs = plan[width]
        keys = [
            jax.random.fold_in(jax.random.fold_in(root, width), 1000 * (r[1] != "full") + r[2]) for r in runs
        ]
        full = [i for i, r in enumerate(runs) if r[1] == "full"]
        stacks = []
        if full:
            stacks.append(
                common.train_cell(
                    cfg,
                    width,
                    x,
                    y,
                    jnp.asarray([runs[i][0] for i in full], x.dtype),
                    jnp.stack([keys[i] for i in full]),
                )
            )
        for i, r in enumerate(runs):  # disjoint halves: train on the half itself
            if r[1] != "full":
                idx = halves[r[1]]
                stacks.append(
                    common.train_cell(cfg, width, x[idx], y[idx], jnp.zeros(1, x.dtype), keys[i][None])
                )
        order = full + [i for i, r in enumerate(runs) if r[1] != "full"]
        runs = [runs[i] for i in order]
        pairs = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *stacks)
        group = {"width": width, "params": pairs, "runs": runs}
        if width in attacked:
            group["eta"], group["success"] = common.attack_cell(cfg, width, box, pairs, z_att, y_att)
        timings[f"train_attack_m{width}"] = time.perf_counter() - tick
        tick = time.perf_counter()
        groups.append(group)
        if parts & {"d", "e"} and width in cfg.probe_widths:
            idx = [i for i, r in enumerate(runs) if r[0] == 0.0 and r[1] == "full"]
            res = probes.probe_cell(
                cfg,
                width,
                common.take(pairs, idx),
                z,
                yz,
                jax.random.split(jax.random.fold_in(root, 99 + width), len(idx)),
            )
            probe_out.append(
                {
                    "width": width,
                    "seeds": [runs[i][2] for i in idx],
                    **{k: np.asarray(v) for k, v in res.items()},
                }
            )
            timings[f"probe_m{width}"] = time.perf_counter() - tick
            tick = time.perf_counter()
        bar.update()

    rows: list[dict] = []
    if attack:  # the infinite-width limit: every decay on the full set, and the two halves
        runs = [(lam, "full", 0) for lam in (cfg.decays if "a" in parts else (0.0,))]
        if "c" in parts:
            runs += [(0.0, "A", 0), (0.0, "B", 0)]
        weights = {
            "full": np.ones(n),
            "A": np.isin(np.arange(n), halves["A"]) * 1.0,
            "B": np.isin(np.arange(n), halves["B"]) * 1.0,
        }
        coef = common.limit_cell(
            cfg,
            x,
            y,
            jnp.asarray([r[0] for r in runs], x.dtype),
            jnp.asarray(np.stack([weights[r[1]] for r in runs]), x.dtype),
        )
        params = (jnp.broadcast_to(x, (len(runs),) + x.shape), coef)
        eta, success = common.attack_cell(cfg, None, box, params, z_att, y_att)
        groups.append({"width": None, "params": params, "runs": runs, "eta": eta, "success": success})
        bar.update()
        attack_rows, sources = distortion.attack_rows(cfg, groups, z_att, y_att, parts, root)
        rows += attack_rows
        if "a" in parts:
            rows += distortion.clean_error_by_decay(cfg, groups, z, yz)
        if "c" in parts:
            rows += transfer.transfer_rows(cfg, groups, sources, z_att, np.asarray(y_att), box)
    timings["limit_and_transfer"] = time.perf_counter() - tick
    tick = time.perf_counter()
    rows += probes.probe_rows(cfg, probe_out, parts)
    if "f" in parts:
        rows += advtrain.run(cfg, x, y, z, yz, root)
        timings["adversarial_training"] = time.perf_counter() - tick
        tick = time.perf_counter()
        bar.update()
    mnist_meta = None
    if cfg.data.root is not None:
        mnist_rows, mnist_meta = table1.run(cfg, root)
        timings["mnist"] = time.perf_counter() - tick
        rows += mnist_rows
        bar.update()
    bar.close()

    summary: dict = {
        "experiment": COMMAND,
        "config": asdict(cfg),
        "dataset": ds.name,
        "n_train": int(n),
        "d": int(x.shape[1]),
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
        delta_w2, grad_inf = probes.limit_lipschitz(cfg, x, y, z)
        claims += probes.claims_e(
            cfg, rows, summary, {"delta_w2": float(delta_w2), "limit_grad_norms": np.asarray(grad_inf)}
        )
    if "f" in parts:
        claims += advtrain.claims_f(cfg, rows, summary)
    if mnist_meta is not None:
        summary["mnist"] = mnist_meta
        claims += table1.claims_mnist(cfg, rows, summary)
    summary["claims"] = [c.to_dict() for c in claims]
    summary["timings_s"] = timings
    summary["verdicts"] = V.summarize(claims)
    write_csv(rows, out / "results.csv")
    write_json(summary, out / "summary.json")
    plot(rows, summary, out)
    if progress is not False:
        report(summary, out)
    return summary


def report(summary: dict, out: Path) -> None:
    """One line per claim: verdict, name, measured [interval] vs prediction, reason."""
    for c in summary["claims"]:
        print(
            f"[{c['verdict']:<12}] {c['name']:<46} {c['measured']} vs {c['prediction']}"
            + (f"  ({c['reason']})" if c["reason"] else "")
        )
    print(f"Wrote {out}/")
