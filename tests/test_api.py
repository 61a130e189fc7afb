"""The library's public API: lazy (``import ntk_adv`` imports no JAX), versioned, and every name resolves."""

import math
import subprocess
import sys

import numpy as np
import pytest

import ntk_adv


def test_import_is_light_and_versioned():
    code = (
        "import sys, ntk_adv; print(ntk_adv.__version__); print('jax' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[1:] == ["False", "False"]
    assert out[0] and out[0][0].isdigit()


def test_every_public_name_resolves():
    for name in ntk_adv.__all__:
        assert getattr(ntk_adv, name) is not None, name
    assert set(ntk_adv.__all__) <= set(dir(ntk_adv))


def test_readme_example_on_user_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(30, 6)), rng.normal(size=(10, 6))
    x_train, y_train, x_test, y_test = (
        a.astype(np.float32) for a in (x, np.sign(x[:, 0]), z, np.sign(z[:, 0]))
    )
    data = ntk_adv.DataSpec.from_arrays(x_train, y_train, x_test, y_test)
    net = ntk_adv.TwoLayerConfig(16)
    cfg = ntk_adv.ProtocolConfig(data=data, arch=net, eps=1.0, steps_f=10, steps_g=10)
    grid = ntk_adv.Grid(cfg, axes={"width": [16, ntk_adv.INF_WIDTH]}, seeds=1)  # the README's spelling
    assert grid == ntk_adv.Grid(cfg, axes=(("width", (16, math.inf)),), seeds=1)
    with pytest.raises(ValueError, match="INF_WIDTH"):  # one spelling of infinite width
        ntk_adv.Grid(cfg, axes=(("width", (16, None)),), seeds=1)
    store = ntk_adv.ResultStore(tmp_path / "store")
    rows = store.rows(ntk_adv.run_perturbation_sweep(grid, store, progress=False))
    agreement = {str(r["width"]): r["value"] for r in rows if r["metric"] == "agreement"}
    assert set(agreement) == {"16", "inf"} and all(0.0 <= v <= 1.0 for v in agreement.values())
    assert {r["data.name"] for r in rows} == {data.name}
    assert {r["arch"] for r in rows} == {"two-layer"} and {r["depth"] for r in rows} == {2}


def test_run_sweep_is_the_engine():
    """``ntk_adv.run_sweep`` is the generic engine; the perturbation sweep has its own name."""
    from ntk_adv import engine
    from ntk_adv.perturbation import batch

    assert ntk_adv.run_sweep is engine.run_sweep
    assert ntk_adv.run_perturbation_sweep is batch.run_perturbation_sweep


IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
import jax, jax.monitoring
from jax._src import monitoring as m  # read-only: jax offers no public getter of its listeners

def listeners():
    out = {}
    for kind in ("event", "event_duration_secs", "event_time_span", "scalar"):
        lst = getattr(m, f"_{kind}_listeners", None)
        out[kind] = None if lst is None else len(lst)
    return out

before = listeners()
modules = []
for pkg in ("ntk_adv", "experiments"):
    root = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(root.__path__, pkg + "."):
        importlib.import_module(info.name)
        modules.append(info.name)
print(json.dumps({"before": before, "after": listeners(), "modules": modules}))
"""


def test_importing_every_module_registers_no_jax_listener():
    """No side effects at import: importing every module under ntk_adv/ and experiments/ (the benchmark's
    compile-time listener included) adds no ``jax.monitoring`` listener."""
    import json

    import jax

    res = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True, check=True
    ).stdout
    got = json.loads(res.strip().splitlines()[-1])
    assert "experiments.bench" in got["modules"] and "ntk_adv.engine" in got["modules"]
    if got["before"]["event_time_span"] is None:  # the probe must read jax's list, else it proves nothing
        pytest.skip(f"jax {jax.__version__} keeps no _event_time_span_listeners list to inspect")
    assert got["after"] == got["before"]


def test_the_benchmark_listens_once_it_measures():
    """The listener the import no longer registers is registered by the first measurement, once, and
    measures compile time there."""
    import jax
    import jax.numpy as jnp
    from jax._src import monitoring as m

    from experiments import bench

    if not hasattr(m, "_event_time_span_listeners"):
        pytest.skip(f"jax {jax.__version__} keeps no _event_time_span_listeners list to inspect")
    ours = lambda: sum(1 for f in m._event_time_span_listeners if f is bench._SPANS)  # noqa: E731
    t = bench.timed(jax.jit(lambda v: jnp.sin(v) * 3.0 + 1.0), jnp.arange(7.0))
    assert t.compile > 0 and ours() == 1
    bench.timed(jax.jit(lambda v: jnp.cos(v) - 2.0), jnp.arange(5.0))
    assert ours() == 1
