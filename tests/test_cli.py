"""The ntk-adv command: subcommands run, bad options give one clear line and exit code 2."""

import pytest

from experiments import cli


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in cli.commands():
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["convergence", "--gamma", "1.0"], "gamma=1.0 is outside [0, 1)"),
        (["convergence", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["convergence", "--widths", "0", "8"], "widths must be"),
        (["convergence", "--loss", "hinge"], "unknown loss 'hinge'"),
        (["convergence", "--parametrization", "mup"], "unknown parametrization 'mup'"),
        (["convergence", "--dataset", "mnist", "--data-root", "/nonexistent/dir"], "/nonexistent/dir"),
    ],
)
def test_bad_options_fail_clearly(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_convergence_via_cli(tmp_path):
    argv = [
        "convergence",
        "--widths",
        "16",
        "128",
        "1024",
        "--seeds",
        "2",
        "--n-train",
        "40",
        "--n-test",
        "20",
        "--n-kernel",
        "20",
        "--steps",
        "10",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    assert (tmp_path / "summary.json").exists()


def test_tuple_options_take_spaces_or_commas():
    from experiments import convergence

    parser = cli.build_parser("convergence")
    for argv in (
        ["--widths", "16", "128", "1024"],
        ["--widths", "16,128", "1024"],
        ["--widths", "16,128,1024"],
    ):
        cfg = cli.config_from_args(parser.parse_args(["convergence", *argv]), convergence.Config)
        assert cfg.widths == (16, 128, 1024)


def test_bad_tuple_item_is_named(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["convergence", "--widths", "16,x"])
    assert exc.value.code == 2
    assert "invalid int in '16,x'" in capsys.readouterr().err


def test_nested_options_have_dotted_names_and_unambiguous_aliases():
    from experiments import convergence, perturbation_learning

    parser = cli.build_parser("convergence")
    cfg = cli.config_from_args(
        parser.parse_args(
            [
                "convergence",
                "--data.n-train",
                "30",
                "--n-test",
                "10",
                "--dataset",
                "shifted_gauss",
                "--data-seed",
                "3",
                "--n-kernel",
                "10",
            ]
        ),
        convergence.Config,
    )
    assert (cfg.data.n_train, cfg.data.n_test, cfg.data.name, cfg.data.seed) == (30, 10, "shifted_gauss", 3)
    parser = cli.build_parser("perturbation-learning")
    args = parser.parse_args(["perturbation-learning", "--n-train", "25", "50", "--data.n-train", "60"])
    cfg = cli.config_from_args(args, perturbation_learning.Config)
    # the bare name is the top-level field's (the N sweep); the sweep sets data.n_train in every cell, and
    # cfg.data carries its headline (largest) N, the value the whole-run steps read
    assert cfg.n_train == (25, 50) and cfg.data.n_train == 50
    args = parser.parse_args(["perturbation-learning", "--data.n-train", "60"])
    cfg = cli.config_from_args(args, perturbation_learning.Config)
    assert cfg.n_train == () and cfg.data.n_train == 60


def test_help_lines_come_from_the_config(capsys):
    with pytest.raises(SystemExit):
        cli.main(["perturbation-learning", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "L2 norm" in out and "one of gauss, shifted_gauss, digits, mnist, fmnist, cifar10" in out
    assert "(default: ; spaces" not in out and "--ray-address HOST:PORT" in out
    assert "--data.name NAME, --dataset NAME" in out
    assert "--run.backend BACKEND, --backend BACKEND" in out and "--run.store STORE, --store STORE" in out


def test_choices_are_enforced_by_name(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--dataset", "imagenet"])
    assert exc.value.code == 2
    assert (
        "unknown dataset 'imagenet'; expected one of gauss, shifted_gauss, digits, mnist, fmnist, cifar10"
        in capsys.readouterr().err
    )


def test_field_docs_from_comments_and_attribute_docstrings():
    from dataclasses import dataclass
    from typing import Literal

    from ntk_adv import cli as lib_cli

    @dataclass(frozen=True)
    class Inner:
        lr: float = 0.1  # learning rate (step size)
        kind: Literal["a", "b"] = "a"
        """which kind"""

    @dataclass(frozen=True)
    class Outer:
        train: Inner = Inner()
        ids: tuple[int, ...] = ()

    specs = {s["dest"]: s for s in lib_cli.option_specs(Outer)}
    assert (
        specs["train.lr"]["flags"] == ["--train.lr", "--lr"]
        and specs["train.lr"]["help"] == "learning rate (step size)"
    )
    assert specs["train.kind"]["choices"] == ["a", "b"] and specs["train.kind"]["help"] == "which kind"
    assert lib_cli._help_text(specs["ids"]).endswith("(default: none)")


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("ntk-adv ")


def test_help_is_fast_and_imports_no_jax(tmp_path):
    """Top-level help reads docstrings from source; a command's help reads its cached option spec (the first
    call fills the cache)."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    probe = (
        "import sys, runpy; sys.argv = ['ntk-adv'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('experiments.cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\nprint('JAX' if 'jax' in sys.modules else 'NOJAX')"
    )
    for argv in (["--help"], ["demo", "--help"], ["demo", "--help"]):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env
        ).stdout
        elapsed = time.perf_counter() - t0
    assert out.strip().endswith("NOJAX") and "--eps" in out
    assert elapsed < 3.0  # < 1 s on an idle machine; the bound leaves room for a loaded CI box


def test_command_prints_where_it_wrote(tmp_path, capsys):
    argv = [
        "convergence",
        "--widths",
        "16",
        "64",
        "--seeds",
        "2",
        "--n-train",
        "20",
        "--n-test",
        "10",
        "--n-kernel",
        "10",
        "--steps",
        "5",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"ntk-adv convergence: outputs in {tmp_path}/: ") and "summary.json" in last


def test_default_out_follows_the_command():
    args = cli.build_parser("figures").parse_args(["figures"])
    assert str(args.out) == "figures"
    assert str(cli.build_parser("demo").parse_args(["demo"]).out) == "runs/demo"


def test_console_script_is_the_applications_main():
    """[project.scripts] points at the application (experiments -> ntk_adv_experiments in a wheel); the
    library's CLI imports no application."""
    from pathlib import Path

    from ntk_adv import cli as lib_cli

    root = Path(__file__).resolve().parents[1]
    scripts = (root / "pyproject.toml").read_text().split("[project.scripts]\n", 1)[1].split("\n\n", 1)[0]
    assert scripts.strip() == 'ntk-adv = "ntk_adv_experiments.cli:main"'
    assert not hasattr(lib_cli, "launch") and "experiments" not in lib_cli.__all__
    assert "experiments" not in (root / "ntk_adv" / "cli.py").read_text().split('"""', 2)[2]


def test_editable_install_copy_hands_over_to_the_checkout(tmp_path):
    """An editable install (uv sync) carries a copy of experiments/ as ntk_adv_experiments taken at install
    time; the console script imports that copy, which runs the checkout's experiments.cli instead (the
    application beside the library it imports). A wheel's copy, installed beside its ntk_adv, runs itself
    (tests/test_packaging.py)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "ntk_adv_experiments"
    copy.mkdir()
    for name in ("__init__.py", "cli.py"):
        shutil.copy(root / "experiments" / name, copy / name)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2])\n"
        "import ntk_adv_experiments.cli as c\n"
        "live = c._checkout_cli()\n"
        "print(c.__file__, live.__file__, live.PACKAGE)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path), str(root)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    mine, live, package = done.stdout.split()
    assert Path(mine) == copy / "cli.py" and Path(live) == root / "experiments" / "cli.py"
    assert package == "experiments"


def test_dry_run_prints_the_plan_and_parquet_sits_beside_results_csv(tmp_path, capsys):
    """--dry-run: the plan (cells total, in the store and fresh, to compute), exit 0, nothing computed; then a
    real run with --parquet writes OUT/results.parquet holding results.csv's table; a second dry run finds
    every cell in the store."""
    import pandas as pd

    from ntk_adv.results import to_frame

    argv = [
        "convergence",
        *("--widths", "16", "64", "--seeds", "2", "--n-train", "20", "--n-test", "10"),
        *("--n-kernel", "10", "--steps", "5", "--out", str(tmp_path), "--quiet"),
    ]
    assert cli.main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: 2 cells, 0 already in the store and fresh, 2 to compute (2 missing)" in out
    assert not (tmp_path / "results.csv").exists()
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []  # no record written
    assert cli.main([*argv, "--parquet"]) == 0
    capsys.readouterr()
    frame = pd.read_parquet(tmp_path / "results.parquet")
    pd.testing.assert_frame_equal(frame, to_frame(tmp_path))
    assert len(frame) == len(to_frame(tmp_path / "results.csv")) > 0
    assert "results.parquet" in (tmp_path / "manifest.json").read_text()
    assert cli.main([*argv, "--dry-run"]) == 0
    assert (
        "dry run: 2 cells, 2 already in the store and fresh, 0 to compute (none)" in capsys.readouterr().out
    )
