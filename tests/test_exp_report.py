"""The report regenerates experiments and writes one Markdown file with the verdict table and figures."""

import json

import pytest

from experiments import report


def test_report_quick_subset(tmp_path):
    cfg = report.Config(experiments=("convergence",), quick=True, html=True)
    summary = report.main(cfg, tmp_path, progress=False)
    text = (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert '<img src="convergence/convergence.png" alt="convergence">' in page
    assert page.count("<tr><td>convergence</td>") == summary["total"] == 3
    assert "<script>" in page and "sortable" in page
    assert "| experiment | claim | prediction | measured | verdict | reason | paper |" in text
    assert summary["total"] == 3 and summary["total"] == text.count("| convergence |")
    assert "![convergence](convergence/convergence.png)" in text
    assert (tmp_path / "convergence" / "convergence.png").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["claims"][0]["verdict"] in (
        "confirmed",
        "refuted",
        "inconclusive",
    )


def test_report_rejects_unknown_experiment():
    with pytest.raises(ValueError, match="unknown experiment"):
        report.Config(experiments=("nope",))


@pytest.mark.slow
def test_quick_report_carries_every_experiments_claims(tmp_path):
    """``report --quick`` over every experiment: each experiment's own summary.json claims reach the report's
    table one for one, every verdict is one of the three words, and every verdict that is not 'confirmed'
    carries its reason."""
    summary = report.main(report.Config(quick=True), tmp_path, progress=False)
    text = (tmp_path / "report.md").read_text()
    assert set(summary["seconds"]) == set(report.reportable())
    for command in report.reportable():
        own = json.loads((tmp_path / command / "summary.json").read_text())["claims"]
        rows = [c for c in summary["claims"] if c["experiment"] == command]
        assert own, f"{command} reports no claims"
        assert [c["claim"] for c in rows] == [c["claim"] for c in own], command
        assert text.count(f"| {command} |") == len(own), command
    for c in summary["claims"]:
        assert c["verdict"] in ("confirmed", "refuted", "inconclusive")
        assert c["verdict"] == "confirmed" or c["reason"], c["claim"]
    assert summary["total"] == len(summary["claims"]) == sum(summary["verdicts"].values())


def test_report_html_is_self_contained_escaped_and_sortable(tmp_path):
    """render_html: no external assets (no http, no src other than the relative figures), every text escaped,
    the table sortable by inline JavaScript; without --html no report.html."""
    import re
    import types
    from pathlib import Path

    module = types.SimpleNamespace(__doc__="Toy <experiment> & co.\n\nMore.")
    table = [
        {
            "experiment": "toy",
            "claim": "a < b",
            "prediction": "x",
            "measured": "0.5 [0.4, 0.6]",
            "verdict": "confirmed",
            "reason": "",
            "paper": "P",
        },
        {
            "experiment": "toy",
            "claim": "<script>alert(1)</script>",
            "prediction": "y",
            "measured": "2",
            "verdict": "refuted",
            "reason": "r",
            "paper": "P",
        },
    ]
    sections = [("toy", module, "Cfg()", "quick", table, [Path("toy/fig one.png")])]
    page = report.render_html(sections, table, {"toy": 1.0})
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "a &lt; b" in page and "Toy &lt;experiment&gt; &amp; co." in page
    assert '<td class="refuted">refuted</td>' in page
    assert re.findall(r'(?:src|href)="([^"]*)"', page) == ["toy/fig one.png"]
    assert "http" not in page.lower().replace("<!doctype html>", "")
    assert page.count("<script>") == 1 and 'addEventListener("click"' in page
    assert "<th>experiment</th><th>claim</th>" in page
    assert not report.Config().html


def test_report_dry_run_plans_every_experiment_and_computes_nothing(tmp_path, capsys):
    from experiments import cli

    argv = ["report", "--quick", "--experiments", "convergence", "linearity", "--dry-run"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "convergence [convergence]" in out and "linearity [linearity/" in out and "report: total:" in out
    assert not (tmp_path / "report.md").exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no record, no figure
