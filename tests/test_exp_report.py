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
