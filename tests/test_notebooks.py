"""The example notebooks run from top to bottom (nbclient, a fresh kernel) and print what they promise."""

import itertools
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
    if name == "reproduce_panel.ipynb":
        assert "agreement mean over 3 seeds per (eps, width) and lr pair:" in text  # the to_frame table
        lines = text.split("lr pair:\n")[1].splitlines()[2:]  # after the two header lines of the table
        rows = list(itertools.takewhile(lambda r: len(r) == 6, (t.split() for t in lines)))
        # eps, width, then the agreement mean over seeds of each of the 4 lr pairs, one row per eps value
        assert len(rows) == 4 and all(0 <= float(v) <= 1 for r in rows for v in r[2:])
        verdict_lines = [t for t in text.splitlines() if "-> verdict: " in t]
        assert verdict_lines and all(
            t.split("-> verdict: ")[1].split(":")[0] in ("confirmed", "refuted", "inconclusive")
            for t in verdict_lines
        )
        assert "panel verdicts: confirmed " in text and "regime at our lr pair" in text
