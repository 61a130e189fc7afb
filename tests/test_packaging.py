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
    assert "ntk_adv_experiments/cli.py" in names and "ntk_adv_experiments/perturbation_learning.py" in names
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "ntk-adv = ntk_adv.cli:launch" in wheel.read(meta).decode()


def test_core_requirements_are_lean(wheel):
    meta = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    core = [ln for ln in meta.splitlines() if ln.startswith("Requires-Dist:") and "extra ==" not in ln]
    assert not any(p in ln.lower() for ln in core for p in ("neural-tangents", "tensorflow", "tf2jax"))
    assert any("neural-tangents" in ln and "extra == 'oracle'" in ln for ln in meta.splitlines())
