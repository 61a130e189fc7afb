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
    argv = ["convergence", "--widths", "16", "128", "1024", "--seeds", "2", "--n-train", "40", "--n-test", "20",
            "--n-kernel", "20", "--steps", "10", "--out", str(tmp_path), "--quiet"]
    assert cli.main(argv) == 0
    assert (tmp_path / "summary.json").exists()


def test_tuple_options_take_spaces_or_commas():
    from experiments import convergence

    parser = cli.build_parser("convergence")
    for argv in (["--widths", "16", "128", "1024"], ["--widths", "16,128", "1024"], ["--widths", "16,128,1024"]):
        cfg = cli.config_from_args(parser.parse_args(["convergence", *argv]), convergence.Config)
        assert cfg.widths == (16, 128, 1024)


def test_bad_tuple_item_is_named(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["convergence", "--widths", "16,x"])
    assert exc.value.code == 2
    assert "invalid int in '16,x'" in capsys.readouterr().err
