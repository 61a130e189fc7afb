"""Regenerate every experiment at a stated scale and write one Markdown report: all figures and a table of
claim, prediction, measured value and verdict (each experiment's ``summary['claims']``).

Scale: each experiment runs its ``REPORT_CONFIG`` if it defines one, else its default ``Config()``; with
``--quick`` its ``QUICK_CONFIG`` (a smoke-test scale: numbers are then indicative only). The scale used is
written into the report. Results are cached in each experiment's store where it has one, so re-running the
report after an interruption resumes.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ntk_adv.results import atomic_write, provenance, write_json

COMMAND = "report"
SKIP = (
    "demo",
    "bench",
    "report",
    "figures",
    "reproduce",
)  # figures: the figure set; reproduce: one published panel


def reportable() -> dict[str, str]:
    from .cli import commands

    return {c: m for c, m in commands().items() if c not in SKIP}


@dataclass(frozen=True)
class Config:
    experiments: tuple[str, ...] = ()  # subset of commands; empty = all
    quick: bool = False

    def __post_init__(self):
        known = reportable()
        unknown = [e for e in self.experiments if e not in known]
        if unknown:
            raise ValueError(
                f"unknown experiment(s) {', '.join(unknown)}; expected some of {', '.join(known)}"
            )


def scale_of(module, quick: bool):
    if quick and hasattr(module, "QUICK_CONFIG"):
        return module.QUICK_CONFIG, "quick"
    if hasattr(module, "REPORT_CONFIG"):
        return module.REPORT_CONFIG, "report"
    return module.Config(), "default"


def main(cfg: Config = Config(), out: str | Path = "runs/report", *, progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    commands = reportable()
    chosen = cfg.experiments or tuple(commands)
    sections, table, timings = [], [], {}
    bar = tqdm(chosen, desc="report: experiments", disable=None if progress else True)
    for command in bar:
        bar.set_postfix_str(command)
        module = importlib.import_module(commands[command])
        exp_cfg, scale = scale_of(module, cfg.quick)
        t0 = time.perf_counter()
        summary = module.main(exp_cfg, out / command, progress=False)
        timings[command] = time.perf_counter() - t0
        claims = claims_of(summary)
        if progress is not False:
            counts = {
                v: sum(c["verdict"] == v for c in claims) for v in ("confirmed", "refuted", "inconclusive")
            }
            bar.write(
                f"report: {command} ({scale} scale) {timings[command]:.0f} s, {len(claims)} claims: "
                + ", ".join(f"{n} {v}" for v, n in counts.items())
            )
        table += [{"experiment": command, **c} for c in claims]
        sections.append((command, module, exp_cfg, scale, claims, sorted((out / command).glob("*.png"))))
    text = render(sections, table, timings)
    atomic_write(out / "report.md", text)
    summary = {
        "experiment": COMMAND,
        "config": asdict(cfg),
        **provenance(),
        "claims": table,
        "seconds": timings,
        "confirmed": sum(c["verdict"] == "confirmed" for c in table),
        "verdicts": {
            v: sum(c["verdict"] == v for c in table) for v in ("confirmed", "refuted", "inconclusive")
        },
        "total": len(table),
    }
    write_json(summary, out / "summary.json")
    if progress is not False:
        print(f"{summary['confirmed']}/{summary['total']} predictions confirmed; report: {out / 'report.md'}")
    return summary


def claims_of(summary: dict) -> list[dict]:
    """An experiment's verdict table: ``summary['claims']``, each a :meth:`ntk_adv.verdicts.Claim.to_dict`."""
    if "claims" not in summary:
        raise ValueError(f"experiment {summary.get('experiment', '?')!r} reported no claims")
    return list(summary["claims"])


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(sections, table, timings) -> str:
    prov = provenance()
    lines = [
        "# ntk-adv report",
        "",
        f"git {prov['git_rev'][:12]}, jax {prov['jax']}, jaxlib {prov['jaxlib']}.",
        "",
        "| experiment | claim | prediction | measured | verdict | reason | paper |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {_cell(r['experiment'])} | {_cell(r['claim'])} | {_cell(r['prediction'])} | "
        f"{_cell(r['measured'])} | **{r['verdict']}** | {_cell(r.get('reason', ''))} | "
        f"{_cell(r.get('paper', ''))} |"
        for r in table
    ]
    for command, module, exp_cfg, scale, claims, pngs in sections:
        doc = (module.__doc__ or "").strip().split("\n\n")[0]
        lines += [
            "",
            f"## {command}",
            "",
            doc,
            "",
            f"Scale: {scale} config, {timings[command]:.0f} s. Config: `{_cell(repr(exp_cfg))}`",
            "",
        ]
        if not claims:
            lines += ["(this experiment reports no claims table)", ""]
        lines += [f"![{p.stem}]({command}/{p.name})" for p in pngs]
    return "\n".join(lines) + "\n"
