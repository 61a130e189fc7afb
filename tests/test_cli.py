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
        (["convergence", "--gamma", "1.0"], "--gamma 1.0 is out of range: expected [0, 1)"),
        (["convergence", "--dataset", "imagenet"], "--dataset: unknown value 'imagenet'"),
        (["convergence", "--widths", "0", "8"], "--widths 0 is out of range: expected [1, inf]"),
        (["convergence", "--loss", "hinge"], "'hinge'"),
        (["convergence", "--parametrization", "mup"], "'mup'"),
        (["demo", "--lr-f", "0"], "--lr-f 0.0 is out of range: expected > 0"),
        (["demo", "--lr-f", "-1"], "--lr-f -1.0 is out of range: expected > 0"),
        (["demo", "--widht", "10"], "did you mean --widths?"),
        (["convergence", "--train.lr", "0.1"], "--train.lr is now --lr"),
        (["halfway", "--eps-rel", "0.1"], "--eps-rel is now --eps"),
        (["convergence", "--optimizer", "sgd"], "--optimizer is no option of ntk-adv convergence"),
        (["demo", "--data.d", "4"], "--data.d is no option of ntk-adv demo"),
        (["perturbation-learning", "--widths", "--seeds", "2"], "--widths needs at least one value"),
        (["perturbation-learning", "--seeds", "2.5"], "--seeds: '2.5' is not an integer"),
        (["perturbation-learning", "--widths", "10", "y"], "--widths: 'y' is not a number"),
        (["convergence", "--dataset", "mnist", "--data-root", "/nonexistent/dir"], "/nonexistent/dir"),
    ],
)
def test_bad_options_fail_clearly(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


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


def test_tuple_options_take_several_values():
    assert cli.parse_config("convergence", ["--widths", "16", "128", "1024"]).widths == (16, 128, 1024)
    assert cli.parse_config("perturbation-learning", ["--widths", "16", "inf"]).widths[-1] == float("inf")


def test_bad_tuple_item_is_named(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["convergence", "--widths", "16", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--widths: 'x' is not an integer" in err and len(err.strip().splitlines()) == 1


def test_nested_options_have_one_name_each():
    """A nested field's option is its bare name when unique in the command (``--n-train``, ``--lr``), its
    dotted path otherwise; the old dotted spelling of a shortened name is refused naming the new one."""
    cfg = cli.parse_config(
        "convergence",
        ["--n-train", "30", "--n-test", "10", "--dataset", "shifted_gauss", "--data-seed", "3", "--lr", "0.5"]
        + ["--n-kernel", "10"],
    )
    assert (cfg.data.n_train, cfg.data.n_test, cfg.data.name, cfg.data.seed) == (30, 10, "shifted_gauss", 3)
    assert cfg.train.lr == 0.5
    # the N sweep sets data.n_train in every cell; cfg.data carries its headline (largest) N
    cfg = cli.parse_config("perturbation-learning", ["--n-train", "25", "50"])
    assert cfg.n_train == (25, 50) and cfg.data.n_train == 50
    spec = cli._cli.load_command_spec(cli.app(), "depth")
    flags = [o["flag"] for o in spec["options"]]
    assert len(flags) == len(set(flags)) and "--agreement.widths" in flags and "--convergence.widths" in flags


def test_help_lines_come_from_the_config(capsys):
    with pytest.raises(SystemExit):
        cli.main(["perturbation-learning", "--help"])
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "L2 norm" in out and "--dataset {gauss,shifted_gauss,digits,mnist,fmnist,cifar10}" in out
    assert "--ray-address" in out and "--backend {inprocess,processes,ray}" in out and "--store" in out
    assert "--lr-f [FLOAT [FLOAT ...]]" in out and "valid: > 0)" in out


def test_choices_are_enforced_by_name(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--dataset", "imagenet"])
    assert exc.value.code == 2
    assert (
        "--dataset: unknown value 'imagenet'; expected one of gauss, shifted_gauss, digits, mnist, fmnist, "
        "cifar10" in capsys.readouterr().err
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

    specs = {s["dest"]: s for s in lib_cli.option_specs(Outer, ranges={"lr": "> 0"})["options"]}
    assert specs["train.lr"]["flag"] == "--lr" and specs["train.lr"]["help"] == "learning rate (step size)"
    assert specs["train.lr"]["range"] == "> 0" and specs["ids"]["range"] is None
    assert specs["train.kind"]["choices"] == ["a", "b"] and specs["train.kind"]["help"] == "which kind"


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("ntk-adv ")


def test_help_is_fast_and_imports_no_jax(tmp_path):
    """Top-level help reads docstrings from source; a command's help reads the shipped option schema: fast and
    without JAX on the first call after install (an empty user cache), and a range error too."""
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
    for argv in (
        ["--help"],
        ["demo", "--help"],
        ["perturbation-learning", "--attack", "foo"],
        ["demo", "--lr-f", "0"],
    ):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - t0
        assert done.stdout.strip().endswith("NOJAX"), (argv, done.stderr)
        assert elapsed < 3.0, argv  # < 1 s on an idle machine; the bound leaves room for a loaded CI box
    assert "--lr-f 0.0 is out of range" in done.stderr
    assert not (tmp_path / "ntk-adv").exists()  # the shipped schema answered: nothing was cached


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
    assert str(cli._cli.parse(cli.app(), "figures", [])[1]["cli:out"]) == "figures"
    assert str(cli._cli.parse(cli.app(), "demo", [])[1]["cli:out"]) == "runs/demo"


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


def test_shipped_schema_is_current():
    """experiments/cli_schema.json (the options --help and parsing read without importing JAX) was built from
    these sources; after editing a config or the CLI run `uv run python -m experiments.cli --write-schema`."""
    import json

    from ntk_adv import cli as lib_cli

    shipped = json.loads(cli.SCHEMA_FILE.read_text())
    fresh = lib_cli.build_schema(cli.app())
    assert shipped["commands"] == json.loads(json.dumps(fresh["commands"])), "stale options: --write-schema"
    assert shipped["source"] == fresh["source"], "stale schema: run python -m experiments.cli --write-schema"


def test_a_sweep_as_a_file_round_trips(tmp_path, capsys):
    """--config reads options from YAML (the command line wins), the run writes the options it used to
    OUT/config.yaml, and that file, read back, gives the same config; an unknown key is one line with the
    closest option."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("widths: [16, 64]\nseeds: 3\nn-train: 20\nn-kernel: 10\ndata:\n  n_test: 10\nlr: 0.5\n")
    cfg = cli.parse_config("convergence", ["--config", str(sweep), "--seeds", "2"])
    assert (cfg.widths, cfg.seeds, cfg.data.n_train, cfg.data.n_test, cfg.train.lr) == (
        (16, 64),
        2,
        20,
        10,
        0.5,
    )
    from ntk_adv import cli as lib_cli

    spec, values = lib_cli.parse(cli.app(), "convergence", ["--config", str(sweep)])
    written = tmp_path / "config.yaml"
    written.write_text(lib_cli.config_yaml("convergence", values, spec))
    assert cli.parse_config("convergence", ["--config", str(written)]) == cli.parse_config(
        "convergence", ["--config", str(sweep)]
    )
    # empty tuples (--depth) and the infinite width survive the round trip too
    spec, values = lib_cli.parse(cli.app(), "perturbation-learning", ["--widths", "16", "inf"])
    written.write_text(lib_cli.config_yaml("perturbation-learning", values, spec))
    cfg = cli.parse_config("perturbation-learning", ["--config", str(written)])
    assert cfg == cli.parse_config("perturbation-learning", ["--widths", "16", "inf"]) and cfg.depth == ()
    sweep.write_text("seds: 3\n")
    with pytest.raises(SystemExit) as exc:
        cli.main(["convergence", "--config", str(sweep)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unknown option 'seds'" in err and "did you mean 'seeds'" in err
    sweep.write_text("command: demo\n")
    with pytest.raises(SystemExit):
        cli.main(["convergence", "--config", str(sweep)])
    assert "is for 'ntk-adv demo'" in capsys.readouterr().err


def test_shell_completion_script_names_commands_and_options(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "ntk-adv.bash"
    probe = "import sys; from experiments import cli; sys.exit(cli.main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", probe, "--tyro-write-completion", "bash", str(target)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    text = target.read_text()
    assert "perturbation-learning" in text and "--widths" in text and "--lr-f" in text


def test_unknown_command_suggests_the_closest(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["perturbatoin-learning"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "did you mean perturbation-learning?" in err


def test_style_names_are_the_plots_styles(tmp_path):
    """--style lists ntk_adv.plots.STYLES (named in experiments/cli.py so that --help imports no matplotlib),
    default first; a command draws its figures inside plots.style(name)."""
    from ntk_adv import plots

    assert cli.STYLES == plots.STYLES and cli.STYLES[0] == plots.DEFAULT_STYLE
    assert cli._cli.parse(cli.app(), "demo", ["--style", "icml"])[1]["cli:style"] == "icml"
