"""Regenerate every experiment at a stated scale and write one Markdown report: all figures and a table of
claim, prediction, measured value and verdict (each experiment's ``summary['claims']``).

Scale: each experiment runs its ``REPORT_CONFIG`` if it defines one, else its default ``Config()``; with
``--quick`` its ``QUICK_CONFIG`` (a smoke-test scale: numbers are then indicative only). The scale used is
written into the report. Results are cached in each experiment's store where it has one, so re-running the
report after an interruption resumes.

``--html`` also writes ``report.html``: the same verdict table (sortable: click a column header; a few lines
of inline JavaScript) and the figures as relative ``<img>`` links into each experiment's directory, one
self-contained file with no external assets (move it together with the experiment directories).
"""

from __future__ import annotations

import html
import importlib
import time
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
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
    experiments: tuple[str, ...] = ()  # subset of the reportable commands (e.g. halfway ilyas); empty = all
    quick: bool = False  # each experiment at its smoke-test scale (QUICK_CONFIG): numbers indicative only
    html: bool = False  # also write report.html (sortable verdict table, figures inline, no external assets)
    dry_run: bool = False  # plan every experiment's sweeps (cells, cached, estimated time), compute nothing

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
    commands = reportable()
    chosen = cfg.experiments or tuple(commands)
    if cfg.dry_run:
        plan(chosen, commands, cfg.quick, out)
    out.mkdir(parents=True, exist_ok=True)
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
    if cfg.html:
        atomic_write(out / "report.html", render_html(sections, table, timings))
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


def with_dry_run(cfg):
    """``cfg`` with ``dry_run`` set on every execution sub-config (``ntk_adv.engine.Execution``)."""
    from ntk_adv import engine

    changes = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, engine.Execution):
            changes[f.name] = replace(v, dry_run=True)
        elif is_dataclass(v) and not isinstance(v, type):
            changes[f.name] = with_dry_run(v)
    return replace(cfg, **changes)


def plan(chosen, commands, quick: bool, out: Path):
    """``--dry-run``: every chosen experiment's sweeps planned at the report's scale (one
    :class:`ntk_adv.guards.DryRun` holding them all), nothing computed."""
    from ntk_adv import engine

    planner = engine.Planner(COMMAND)
    for command in chosen:
        module = importlib.import_module(commands[command])
        exp_cfg, _ = scale_of(module, quick)
        with planner.sweep(command):
            module.main(with_dry_run(exp_cfg), out / command, progress=False)
    planner.finish()


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


SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], rows = Array.from(body.rows);
    var dir = th.dataset.dir === "asc" ? -1 : 1;
    th.dataset.dir = dir === 1 ? "asc" : "desc";
    var key = function (r) {
      var t = r.cells[col].textContent.trim(), n = parseFloat(t);
      return isNaN(n) ? [1, t.toLowerCase()] : [0, n];
    };
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x[0] !== y[0]) return (x[0] - y[0]) * dir;
      return (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; }
th { cursor: pointer; background: #f0f0f0; }
td.confirmed { background: #e6f4e6; }
td.refuted { background: #fbe3e3; }
td.inconclusive { background: #f6f3dc; }
img { max-width: 100%; }
"""

COLUMNS = ("experiment", "claim", "prediction", "measured", "verdict", "reason", "paper")


def render_html(sections, table, timings) -> str:
    """report.html: the verdict table (``table``: claim dicts with an ``experiment`` key) sortable by any
    column, then per experiment its summary line, scale and figures as relative
    ``<img src="COMMAND/NAME.png">`` (``sections`` as :func:`render` takes them). Self-contained: inline
    CSS and JavaScript, no external assets; every text is HTML-escaped."""
    esc = html.escape
    prov = provenance()
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = "\n".join(
        "<tr>"
        + "".join(
            f'<td class="{esc(str(r.get(c, "")))}">{esc(str(r.get(c, "")))}</td>'
            if c == "verdict"
            else f"<td>{esc(str(r.get(c, '')))}</td>"
            for c in COLUMNS
        )
        + "</tr>"
        for r in table
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>ntk-adv report</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>ntk-adv report</h1>",
        f"<p>git {esc(prov['git_rev'][:12])}, jax {esc(prov['jax'])}, jaxlib {esc(prov['jaxlib'])}. "
        "Click a column header to sort.</p>",
        f'<table class="sortable" id="verdicts"><thead><tr>{head}</tr></thead>',
        f"<tbody>\n{body}\n</tbody></table>",
    ]
    for command, module, exp_cfg, scale, claims, pngs in sections:
        doc = (module.__doc__ or "").strip().split("\n\n")[0]
        parts += [
            f'<h2 id="{esc(command)}">{esc(command)}</h2>',
            f"<p>{esc(' '.join(doc.split()))}</p>",
            f"<p>Scale: {esc(scale)} config, {timings[command]:.0f} s. "
            f"Config: <code>{esc(repr(exp_cfg))}</code></p>",
        ]
        if not claims:
            parts.append("<p>(this experiment reports no claims table)</p>")
        parts += [f'<img src="{esc(command)}/{esc(p.name)}" alt="{esc(p.stem)}">' for p in pngs]
    parts += [f"<script>{SORT_JS}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"
