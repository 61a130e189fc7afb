"""The figure-set command regenerates its panels (quick scale) with the right figure per panel."""

import pytest

from experiments import figures


def test_quick_panels(tmp_path):
    summary = figures.main(figures.Config(panels=("steps_f",), quick=True), tmp_path, progress=False)
    assert "cosine_vs_steps_f.png" in summary["panels"]["steps_f"]["figures"]
    for name in ("steps_f/cosine_vs_steps_f.pdf", "steps_f/results.csv", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0


def test_unknown_panel():
    with pytest.raises(ValueError, match="unknown panel"):
        figures.Config(panels=("colour",))
