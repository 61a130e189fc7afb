"""The report regenerates experiments and writes one Markdown file with the verdict table and figures."""

import json

import pytest

from experiments import report


def test_report_quick_subset(tmp_path):
    cfg = report.Config(experiments=("convergence",), quick=True)
    summary = report.main(cfg, tmp_path, progress=False)
    text = (tmp_path / "report.md").read_text()
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
