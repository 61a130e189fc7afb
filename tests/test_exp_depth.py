"""The depth figure set (``ntk-adv depth``) on its tiny config: both parts, the agreement-vs-depth figure and
one summary with every claim of both parts."""

import json

import pytest

from experiments import depth
from ntk_adv import verdicts


@pytest.mark.slow  # about 3 min on 2 cores: two experiments at two depths
def test_depth_quick(tmp_path):
    summary = depth.main(depth.QUICK_CONFIG, tmp_path, progress=False)
    for name in ("summary.json", "agreement_vs_depth.png", "agreement_vs_depth.pdf",
                 "convergence/summary.json", "agreement/summary.json", "agreement/results.csv"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    names = {c["name"] for c in on_disk["claims"]}
    assert "convergence.ntk_rel_error_rate[depth=3]" in names
    assert any(n.startswith("agreement.") and n.endswith("[depth=2]") for n in names)
    by_depth = on_disk["agreement_by_depth"]
    assert set(by_depth) == {"agreement", "agreement_balanced"}
    assert set(by_depth["agreement"]) == {"2", "3"} and "inf" in by_depth["agreement_balanced"]["3"]
    assert on_disk["prediction"].startswith("no prediction for fc")
    for c in summary["claims"]:
        assert c["verdict"] in verdicts.VERDICTS and (c["verdict"] == "confirmed" or c["reason"])
    parts = [
        json.loads((tmp_path / p / "summary.json").read_text())
        for p in ("convergence", "agreement", "agreement_balanced")
    ]
    assert len(on_disk["claims"]) == sum(len(p["claims"]) for p in parts)
