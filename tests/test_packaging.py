"""The wheel: ntk_adv and the experiments (as ntk_adv_experiments, never a top-level 'experiments'), the
ntk-adv script, and no neural-tangents / TensorFlow in the core requirements."""

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [uv, "build", "--wheel", "--offline", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.skip(f"could not build the wheel offline: {done.stderr.strip().splitlines()[-1:]}")
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def test_wheel_layout_and_script(wheel):
    names = wheel.namelist()
    assert {n.split("/")[0] for n in names if "dist-info" not in n} == {"ntk_adv", "ntk_adv_experiments"}
    assert (
        "ntk_adv_experiments/cli.py" in names
        and "ntk_adv_experiments/perturbation_learning/__init__.py" in names
    )
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "ntk-adv = ntk_adv_experiments.cli:main" in wheel.read(meta).decode()  # the application's script


def test_installed_wheel_runs_a_command_without_a_top_level_experiments(wheel, tmp_path):
    """The unpacked wheel (first on sys.path, so its ntk_adv and ntk_adv_experiments win over the checkout's
    editable install) runs a tiny sweep through the console script's function; the experiment modules
    import each other relatively, so nothing named 'experiments' is ever imported."""
    import json
    import os
    import sys

    site = tmp_path / "site"
    wheel.extractall(site)
    probe = (
        "import sys\n"
        "from ntk_adv_experiments.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "import ntk_adv, ntk_adv_experiments.perturbation_learning as pl\n"
        "print('MODULES', ntk_adv.__file__, pl.__file__, 'experiments' in sys.modules, code)"
    )
    argv = ["perturbation-learning", "--dataset", "shifted_gauss", "--n-train", "20", "--n-test", "20"]
    argv += ["--d", "4", "--widths", "4", "--no-infinite", "--seeds", "1"]
    argv += ["--steps-f", "2", "--steps-g", "2", "--no-decision-map", "--quiet", "--out", str(tmp_path / "o")]
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd = [sys.executable, "-c", probe, *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("MODULES"))
    _, lib, app, top_level, code = line.split()
    assert lib.startswith(str(site)) and app.startswith(str(site)) and (top_level, code) == ("False", "0")
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["config"]["widths"] == [4]


def test_core_requirements_are_lean(wheel):
    """Neither the core nor any extra pulls neural-tangents or TensorFlow: the oracle is its own pinned
    environment (oracle/), never a dependency of the package."""
    meta = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [ln for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    assert any(ln.startswith("Requires-Dist: jax") for ln in requires)
    assert not any(p in ln.lower() for ln in requires for p in ("neural-tangents", "tensorflow", "tf2jax"))
    assert "Requires-Python: <3.14,>=3.12" in meta or "Requires-Python: >=3.12,<3.14" in meta
