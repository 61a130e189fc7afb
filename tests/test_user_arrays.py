"""A user's own arrays go through the sweep engine and store, identified by their content."""

import functools
import pickle
import warnings

import numpy as np
import pytest

from ntk_adv import engine
from ntk_adv.arch import INF_WIDTH
from ntk_adv.data import DataSpec, Float64Cast, fingerprint, load_spec
from ntk_adv.models import TwoLayerConfig
from ntk_adv.perturbation import batch, protocol
from ntk_adv.store import cell_id


def arrays(seed=0, n=24, m=12, d=5, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=(n, d)).astype(dtype), rng.normal(size=(m, d)).astype(dtype)
    return x, np.sign(x[:, 0] + 1e-3).astype(dtype), z, np.sign(z[:, 0] + 1e-3).astype(dtype)


def test_spec_is_identified_by_content():
    a, b = DataSpec.from_arrays(*arrays(0)), DataSpec.from_arrays(*arrays(0))
    c = DataSpec.from_arrays(*arrays(1))
    assert a == b and hash(a) == hash(b) and a.name.startswith("arrays:") and a.d == 5
    assert a != c and fingerprint(a) != fingerprint(c)
    cfg = protocol.ProtocolConfig(data=a, arch=TwoLayerConfig(8), steps_f=5, steps_g=5)
    assert cell_id(cfg, 0) == cell_id(
        protocol.ProtocolConfig(data=b, arch=TwoLayerConfig(8), steps_f=5, steps_g=5), 0
    )
    assert cell_id(cfg, 0) != cell_id(
        protocol.ProtocolConfig(data=c, arch=TwoLayerConfig(8), steps_f=5, steps_g=5), 0
    )
    ds = load_spec(a)
    np.testing.assert_array_equal(ds.x_train, arrays(0)[0])
    assert load_spec(DataSpec.from_arrays(*arrays(0), n_train=10)).x_train.shape == (10, 5)
    back = pickle.loads(
        pickle.dumps(engine.set_field(cfg, "data.n_train", 12))
    )  # what process/Ray workers get
    assert load_spec(back.data).x_train.shape == (12, 5)


def test_bad_arrays_are_named():
    x, y, z, yz = arrays()
    with pytest.raises(ValueError, match="labels outside"):
        DataSpec.from_arrays(x, y * 2, z, yz)
    with pytest.raises(ValueError, match="no such user arrays"):
        DataSpec(name="arrays:0123456789abcdef")


def test_float64_is_cast_once_with_one_note():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        spec = DataSpec.from_arrays(*arrays(2, dtype=np.float64))
    assert [w.category for w in seen] == [Float64Cast]
    assert load_spec(spec).x_train.dtype == np.float32
    assert spec == DataSpec.from_arrays(*arrays(2, dtype=np.float32))  # same numbers, same data


def test_sweep_on_user_arrays_resumes_from_the_store(tmp_path, monkeypatch):
    spec = DataSpec.from_arrays(*arrays(3))
    base = protocol.ProtocolConfig(
        data=spec, arch=TwoLayerConfig(8), steps_f=5, steps_g=5, lr_f=0.1, lr_g=0.1, eps=1.0
    )
    grid = engine.Grid(base, axes=(("width", (8, INF_WIDTH)),), seeds=1)
    first = batch.run_sweep(grid, tmp_path, progress=False)
    fail = functools.wraps(batch.run_protocol_batch)(lambda chunk, **k: pytest.fail("recomputed a cell"))
    monkeypatch.setattr(batch, "run_protocol_batch", fail)  # same module: the code fingerprint is unchanged
    again = batch.run_sweep(grid, tmp_path, progress=False)
    assert [r["metrics"] for r in first] == [r["metrics"] for r in again]
    assert {r["data_fingerprint"] for r in first} == {fingerprint(spec)}
