"""The example notebooks run from top to bottom (nbclient, a fresh kernel) and print what they promise."""

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow  # default run under ~10 min on 2 cores; CI runs -m slow too
@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.ipynb")))
def test_notebook_runs(name, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat/nbclient are in the dev group (uv sync)")
    nbclient = pytest.importorskip("nbclient", reason="nbformat/nbclient are in the dev group (uv sync)")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": EXAMPLES}}
    ).execute()
    text = "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    if name == "perturbation_learning.ipynb":
        assert "agreement of sign f and sign g" in text and "mean |cos(eta_n, D_n)|" in text
        agreements = [
            float(t.split("finite ")[2].split(" /")[0]) for t in text.splitlines() if "agreement of" in t
        ]
        assert len(agreements) == 2 and min(agreements) > 0.9  # g learned f from perturbations alone
