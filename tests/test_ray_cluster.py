"""A sweep sent through ``--ray-address`` to a real local Ray cluster (``ray start --head``) gives the same
records as the in-process run. Slow: starting the cluster takes tens of seconds."""

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import cli

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed", allow_module_level=True)

pytestmark = pytest.mark.slow

ARGS = [
    "perturbation-learning",
    "--dataset",
    "shifted_gauss",
    "--n-train",
    "24",
    "--n-test",
    "16",
    "--d",
    "8",
    "--widths",
    "8",
    "--seeds",
    "2",
    "--eps",
    "1.0",
    "--steps-f",
    "10",
    "--steps-g",
    "10",
    "--no-decision-map",
    "--quiet",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node with 2 CPUs on a free port, started by ``ray start --head --block`` in its own session;
    teardown stops exactly that process group (never a broad ``ray stop``)."""
    port = free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [str(ray_cli)] if ray_cli.exists() else [sys.executable, "-m", "ray.scripts.scripts"]
    log = tmp_path_factory.mktemp("ray") / "head.log"
    # Ray >= 2.59 authenticates local clusters with a token; the fixture's own token (never the shared default
    # file) keeps parallel clusters of other processes apart.
    token = secrets.token_hex(32)
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [
                *cmd,
                "start",
                "--head",
                "--port",
                str(port),
                "--num-cpus",
                "2",
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--block",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 120
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"ray start failed:\n{log.read_text()[-2000:]}")
        time.sleep(1)
    yield address, token
    proc.send_signal(signal.SIGTERM)  # --block: the head stops the processes it started
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in the session this fixture created
    except ProcessLookupError:
        pass


def records(out: Path) -> dict:
    return {
        p.stem: json.loads(p.read_text())["metrics"]
        for p in sorted((out / "store" / "records").glob("*.json"))
    }


def test_sweep_on_a_ray_cluster_matches_inprocess(cluster, tmp_path, capsys):
    """The Ray run is a separate ``ntk-adv`` process, as a user runs it (Ray reads its token settings once per
    process)."""
    address, token = cluster
    assert cli.main([*ARGS, "--out", str(tmp_path / "local")]) == 0
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            *ARGS,
            "--ray-address",
            address,
            "--out",
            str(tmp_path / "ray"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    local, remote = records(tmp_path / "local"), records(tmp_path / "ray")
    assert len(local) == 2 * 2 and local.keys() == remote.keys()
    for cid in local:
        for k, v in local[cid].items():
            assert remote[cid][k] == pytest.approx(v, rel=1e-5, abs=1e-6), (cid, k)
    assert f"outputs in {tmp_path / 'ray'}/" in done.stdout and "results.csv" in done.stdout
