"""--dry-run plans every sweep of a command (one line per sweep and a total line), computes nothing, and
estimates the time from the bench or the store's recorded timings - or says it has no estimate."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from experiments import cli, depth, intriguing
from ntk_adv import engine
from ntk_adv.guards import DryRun

TINY = ("--seeds", "2", "--n-train", "30", "--n-test", "30", "--steps", "5", "--width", "16", "--quiet")


@pytest.fixture(autouse=True)
def no_bench(tmp_path, monkeypatch):
    """No bench result unless a test writes one (a runs/bench/bench.json of the working tree is not read)."""
    monkeypatch.setenv(engine.BENCH_ENV, str(tmp_path / "no-bench.json"))


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_reproduce_two_panels_plans_both_and_computes_nothing(tmp_path, capsys):
    argv = ["reproduce", "--panels", "shifted_gauss_a_eps", "gauss_a_gamma", *TINY, "--out", str(tmp_path)]
    assert cli.main([*argv, "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "reproduce: dry run of 2 sweeps; nothing computed"
    assert lines[1].startswith("  perturbation_learning [shifted_gauss_a_eps]: ")
    assert lines[2].startswith("  perturbation_learning [gauss_a_gamma]: ")
    counts = [
        int(re.search(r": (\d+) cells, 0 already in the store and fresh", line)[1]) for line in lines[1:3]
    ]
    assert all(n > 0 for n in counts)
    assert all("estimated time no estimate (no timing recorded)" in line for line in lines[1:3])
    chunks = sum(int(re.search(r"in (\d+) chunks", line)[1]) for line in lines[1:3])
    assert lines[3] == (
        f"reproduce: total: {sum(counts)} cells, 0 already in the store and fresh, {sum(counts)} to compute "
        f"in {chunks} chunks; estimated time no estimate (no timing recorded)"
    )
    assert files(tmp_path) == []  # no record, no csv, no figure, no table


def test_dry_run_after_a_real_run_finds_the_cells_fresh_and_times_new_ones(tmp_path, capsys):
    """A d panel runs one sweep per d; with one shared store the recorded times of the computed cells estimate
    the cells of a new d, and the line says so."""
    argv = ["reproduce", "--panel", "shifted_gauss_a_d", *TINY, "--out", str(tmp_path)]
    argv += ["--store", str(tmp_path / "store")]
    assert cli.main([*argv, "--values", "10", "20"]) == 0
    capsys.readouterr()
    computed = len(files(tmp_path / "store"))
    assert computed > 0
    assert cli.main([*argv, "--values", "10", "20", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(
        "to compute (none)" in x and "0 s (nothing to compute)" in x for x in lines[1:3]
    )
    assert lines[3].startswith(
        f"reproduce: total: {computed} cells, {computed} already in the store and fresh, 0 to compute"
    )
    assert cli.main([*argv, "--values", "10", "20", "40", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    new = lines[3]  # the d = 40 sweep
    assert "0 already in the store and fresh" in new
    assert re.search(
        r"estimated time [\d.]+ s \(from the store's timings: mean recorded time of \d+ stored", new
    )
    assert "estimated time" in lines[4] and "from the store's timings" in lines[4]
    assert len(files(tmp_path / "store")) == computed  # the dry runs wrote nothing


def test_the_bench_estimates_perturbation_learning_cells(tmp_path, capsys, monkeypatch):
    bench = tmp_path / "bench"
    bench.mkdir()
    sweep = {"engine_cold_s": 2.0, "cells": 4, "n_train": 48, "d": 16, "widths": [8]}
    (bench / "bench.json").write_text(json.dumps({"width_sweep": sweep}))
    monkeypatch.setenv(engine.BENCH_ENV, str(bench))
    argv = [
        "reproduce",
        "--panel",
        "shifted_gauss_a_eps",
        *TINY,
        "--values",
        "0",
        "0.5",
        "--out",
        str(tmp_path),
    ]
    assert cli.main([*argv, "--dry-run"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    n = int(re.search(r"dry run: (\d+) cells", line)[1])
    assert f"estimated time {0.5 * n:.3g} s (from the bench: {bench / 'bench.json'}: 0.5 s/cell" in line


def test_depth_plans_its_three_sweeps(tmp_path):
    cfg = replace(depth.QUICK_CONFIG, run=engine.Execution(dry_run=True))
    with pytest.raises(DryRun) as err:
        depth.main(cfg, tmp_path, progress=False)
    plan = err.value
    assert [(s.kind, s.label) for s in plan.sweeps] == [
        ("convergence", "convergence"),
        ("perturbation_learning", "agreement"),
        ("perturbation_learning", "agreement_balanced"),
    ]
    assert plan.plan["total"] == sum(s.plan["total"] for s in plan.sweeps) > 0
    assert plan.plan["compute"] == plan.plan["total"] and plan.plan["fresh"] == 0
    assert len(str(plan).splitlines()) == 5
    assert files(tmp_path) == []


def test_a_sweep_chosen_from_earlier_results_is_planned_as_depending_on_them(tmp_path):
    cfg = replace(intriguing.QUICK_CONFIG, run=engine.Execution(dry_run=True))
    with pytest.raises(DryRun) as err:
        intriguing.main(cfg, tmp_path, progress=False)
    sweeps = err.value.sweeps
    assert [s.label for s in sweeps][-1] == "transfer" and sweeps[0].label == "per-seed units"
    assert sweeps[-1].depends and sweeps[-1].plan == {}
    text = str(err.value)
    assert "  intriguing [transfer]: depends on previous sweep: " in text
    assert "plus 1 sweep(s) not counted: they depend on earlier sweeps' results" in text.splitlines()[-1]
    assert files(tmp_path) == []
