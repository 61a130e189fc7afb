"""Tests for ntk_adv.data: synthetic sets, digits, IDX reader, MNIST/FMNIST and CIFAR-10 loaders."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest

from ntk_adv.data import (
    DATASETS,
    FMNIST_MEAN,
    MNIST_MEAN,
    Dataset,
    load_cifar10_pair,
    load_dataset,
    load_digits_pair,
    load_mnist_pair,
    make_gauss,
    make_shifted_gauss,
    read_idx,
    subsample,
)

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
MNIST_IMAGES_MD5 = "2646ac647ad5339dbf082846283269ea"
MNIST_LABELS_MD5 = "27ae3e4e09519cfbb04c329615203637"
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"shared MNIST t10k files not present in {MNIST_DIR}",
)


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialize a uint8 array in IDX format (dtype code 0x08)."""
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_mnist(root: Path, *, n_train: int = 40, n_test: int = 20, with_train: bool = True, gz: bool = True):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    splits = [("t10k", n_test)] + ([("train", n_train)] if with_train else [])
    for prefix, n in splits:
        write_idx(root / f"{prefix}-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n, 28, 28)), gz=gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{sfx}", np.arange(n) % 10, gz=gz)
    return root


def write_cifar_batch(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"fake",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": [int(v) for v in np.arange(n) % 10],
    }
    with path.open("wb") as fh:
        pickle.dump(batch, fh, protocol=2)


def fake_cifar(root: Path, n: int = 20) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_cifar_batch(root / f"data_batch_{i}", n, seed=i)
    write_cifar_batch(root / "test_batch", n, seed=0)
    return root


# ----------------------------------------------------------------------------------------------------
# Dataset validation
# ----------------------------------------------------------------------------------------------------


def _ok(**over):
    kw = {
        "x_train": np.zeros((4, 3)),
        "y_train": np.array([1, -1, 1, -1]),
        "x_test": np.zeros((2, 3)),
        "y_test": np.array([1, -1]),
        "name": "t",
    }
    kw.update(over)
    return Dataset(**kw)


def test_dataset_valid_and_properties():
    ds = _ok()
    assert (ds.d, ds.n_train, ds.n_test) == (3, 4, 2)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.float32
    assert ds.meta == {}
    assert "n_train=4" in repr(ds)


@pytest.mark.parametrize(
    ("over", "msg"),
    [
        ({"x_train": np.zeros((4, 3, 1))}, "x_train has 3 dimensions, expected 2"),
        ({"y_train": np.ones((4, 1))}, "y_train has 2 dimensions, expected 1"),
        ({"x_test": np.zeros(3)}, "x_test has 1 dimensions, expected 2"),
        ({"y_train": np.array([1, -1, 1])}, "x_train has 4 rows but y_train has 3"),
        ({"x_train": np.array([[0, 0, np.nan]] * 4)}, "x_train contains NaN or inf"),
        ({"x_test": np.array([[np.inf, 0, 0]] * 2)}, "x_test contains NaN or inf"),
        ({"y_train": np.array([1, 0, 1, -1])}, "y_train has labels outside"),
        ({"y_test": np.array([2, -1])}, "y_test has labels outside"),
        ({"y_test": np.array([np.nan, -1])}, "y_test has labels outside"),
        ({"x_test": np.zeros((2, 5))}, "x_test has d = 5"),
    ],
)
def test_dataset_rejects_invalid(over, msg):
    with pytest.raises(ValueError, match=msg):
        _ok(**over)


def test_dataset_is_frozen():
    ds = _ok()
    with pytest.raises(AttributeError):
        ds.name = "other"


# ----------------------------------------------------------------------------------------------------
# synthetic data
# ----------------------------------------------------------------------------------------------------


def test_gauss_shapes_labels_determinism():
    key = jax.random.key(0)
    ds = make_gauss(key=key, n_train=500, n_test=100, d=20)
    assert ds.x_train.shape == (500, 20) and ds.y_train.shape == (500,)
    assert ds.x_test.shape == (100, 20) and ds.y_test.shape == (100,)
    assert set(np.unique(ds.y_train)) == {-1.0, 1.0}
    # uniform labels: P(|#pos - 250| > 60) is ~1e-7 under Binomial(500, 1/2)
    assert abs(int((ds.y_train > 0).sum()) - 250) < 60
    assert abs(float(ds.x_train.mean())) < 0.05 and abs(float(ds.x_train.std()) - 1) < 0.05
    again = make_gauss(key=key, n_train=500, n_test=100, d=20)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    other = make_gauss(key=jax.random.key(1), n_train=500, n_test=100, d=20)
    assert not np.array_equal(ds.x_train, other.x_train)


def test_shifted_gauss_balance_means_determinism():
    key = jax.random.PRNGKey(3)  # legacy uint32 keys work as well as typed keys
    n, d = 2000, 50
    ds = make_shifted_gauss(key=key, n_train=n, n_test=301, d=d)
    assert ds.x_train.shape == (n, d) and ds.x_test.shape == (301, d)
    assert int((ds.y_train > 0).sum()) == n // 2
    assert int((ds.y_test > 0).sum()) == 151  # odd size: +1 class gets the extra point
    assert not np.all(ds.y_train[: n // 2] == 1), "order should be shuffled"
    for c in (1.0, -1.0):
        mu = ds.x_train[ds.y_train == c].mean(axis=0)  # per-coordinate std 1/sqrt(1000) ~ 0.032
        assert abs(float(mu.mean()) - 0.3 * c) < 0.02  # overall std ~ 0.0045
        np.testing.assert_allclose(mu, 0.3 * c, atol=0.15)
    again = make_shifted_gauss(key=key, n_train=n, n_test=301, d=d)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    np.testing.assert_array_equal(ds.y_train, again.y_train)


def test_synthetic_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_train"):
        make_gauss(key=jax.random.key(0), n_train=0, n_test=1, d=2)
    with pytest.raises(ValueError, match="d must be"):
        make_shifted_gauss(key=jax.random.key(0), n_train=2, n_test=1, d=0)


def test_subsample():
    ds = make_gauss(key=jax.random.key(0), n_train=50, n_test=5, d=3)
    sub = subsample(ds, 10, key=jax.random.key(1))
    assert sub.n_train == 10 and sub.n_test == 5 and sub.meta["subsampled_from"] == 50
    rows = {tuple(r) for r in ds.x_train.tolist()}
    assert all(tuple(r) in rows for r in sub.x_train.tolist())
    with pytest.raises(ValueError, match="n_train must be in"):
        subsample(ds, 51, key=jax.random.key(1))


# ----------------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------------


def test_digits_pair():
    ds = load_digits_pair()
    assert ds.d == 64
    assert ds.n_train + ds.n_test == 178 + 182  # sklearn digits: 178 zeros, 182 ones
    assert set(np.unique(ds.y_train)) == {-1.0, 1.0} and set(np.unique(ds.y_test)) == {-1.0, 1.0}
    assert abs(float(ds.x_train.mean())) < 1e-5  # scalar train mean removed
    assert abs(float(ds.x_test.mean())) < 0.05
    mean = ds.meta["mean_subtracted"]
    assert 0 < mean < 1
    np.testing.assert_allclose(ds.x_train.min(), -mean, atol=1e-6)
    assert ds.x_train.max() <= 1 - mean + 1e-6
    assert ds.meta["classes"] == {"pos": 0, "neg": 1}
    again = load_digits_pair()
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    other = load_digits_pair(seed=1)
    assert not np.array_equal(ds.y_train, other.y_train)
    small = load_digits_pair(pos=3, neg=8, n_train=20, seed=2)
    assert small.n_train == 20 and small.meta["classes"] == {"pos": 3, "neg": 8}
    with pytest.raises(ValueError, match="pos and neg must differ"):
        load_digits_pair(pos=1, neg=1)


# ----------------------------------------------------------------------------------------------------
# IDX reader and MNIST / FMNIST
# ----------------------------------------------------------------------------------------------------


@needs_mnist
def test_read_idx_real_mnist_md5():
    for name, md5 in (
        ("t10k-images-idx3-ubyte.gz", MNIST_IMAGES_MD5),
        ("t10k-labels-idx1-ubyte.gz", MNIST_LABELS_MD5),
    ):
        raw = gzip.decompress((MNIST_DIR / name).read_bytes())
        assert hashlib.md5(raw).hexdigest() == md5, name
        arr = read_idx(MNIST_DIR / name)
        assert hashlib.md5(idx_bytes(arr)).hexdigest() == md5, f"{name}: parsed array does not round-trip"
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert int((labels == 1).sum()) == 1135 and int((labels == 2).sum()) == 1032


@needs_mnist
def test_mnist_pair_full_splits():
    """With the train files present the pair uses the standard split: every 1 and 2 of each split."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("only the t10k files are present")
    ds = load_mnist_pair(MNIST_DIR)
    assert ds.meta["split"] == "standard" and ds.d == 784
    assert (int((ds.y_train > 0).sum()), int((ds.y_train < 0).sum())) == (6742, 5958)
    assert (int((ds.y_test > 0).sum()), int((ds.y_test < 0).sum())) == (1135, 1032)


@needs_mnist
def test_mnist_pair_t10k_only(tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):  # the test split alone
        (tmp_path / name).symlink_to(MNIST_DIR / name)
    ds = load_mnist_pair(tmp_path)
    assert ds.name == "mnist" and ds.d == 784
    assert ds.meta["split"] == "t10k-only"
    n_pos = int((ds.y_train > 0).sum() + (ds.y_test > 0).sum())
    n_neg = int((ds.y_train < 0).sum() + (ds.y_test < 0).sum())
    assert (n_pos, n_neg) == (1135, 1032)
    assert ds.n_test == round(0.3 * 1135) + round(0.3 * 1032)
    np.testing.assert_allclose(ds.x_train.min(), -MNIST_MEAN, atol=1e-6)
    np.testing.assert_allclose(ds.x_train.max(), 1 - MNIST_MEAN, atol=1e-6)
    # train and test are disjoint
    tr = {r.tobytes() for r in ds.x_train}
    assert not any(r.tobytes() in tr for r in ds.x_test[:200])
    again = load_mnist_pair(tmp_path)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    sub = load_mnist_pair(tmp_path, n_train=100, n_test=50, seed=1)
    assert (sub.n_train, sub.n_test) == (100, 50)
    with pytest.raises(ValueError, match="n_train must be in"):
        load_mnist_pair(tmp_path, n_train=10**6)


def test_read_idx_raw_and_gz_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte", arr)), arr)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte.gz", arr, gz=True)), arr)
    # big-endian int32 payload (dtype code 0x0C)
    vals = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "i32").write_bytes(
        bytes([0, 0, 0x0C, 1]) + np.array([3], dtype=">u4").tobytes() + vals.tobytes()
    )
    out = read_idx(tmp_path / "i32")
    np.testing.assert_array_equal(out, [1, -2, 70000])
    assert out.dtype.isnative


def test_read_idx_rejects_truncated_and_garbage(tmp_path):
    data = idx_bytes(np.ones((5, 28, 28), dtype=np.uint8))
    cut = tmp_path / "cut-images-idx3-ubyte"
    cut.write_bytes(data[:-100])
    with pytest.raises(ValueError, match=r"cut-images-idx3-ubyte.*truncated"):
        read_idx(cut)
    cut_gz = tmp_path / "cut-images-idx3-ubyte.gz"
    cut_gz.write_bytes(gzip.compress(data)[:-30])
    with pytest.raises(ValueError, match=r"cut-images-idx3-ubyte\.gz"):
        read_idx(cut_gz)
    header_only = tmp_path / "hdr"
    header_only.write_bytes(data[:10])
    with pytest.raises(ValueError, match=r"hdr.*truncated IDX header"):
        read_idx(header_only)
    trailing = tmp_path / "trailing"
    trailing.write_bytes(data + b"xx")
    with pytest.raises(ValueError, match=r"trailing.*trailing garbage"):
        read_idx(trailing)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"hello, this is not IDX")
    with pytest.raises(ValueError, match=r"garbage\.bin.*bad IDX magic"):
        read_idx(garbage)
    bad_code = tmp_path / "badcode"
    bad_code.write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"badcode.*dtype code 0x07"):
        read_idx(bad_code)


@needs_mnist
def test_read_idx_truncated_real_file(tmp_path):
    raw = gzip.decompress((MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    cut = tmp_path / "t10k-images-idx3-ubyte"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*truncated"):
        read_idx(cut)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope-idx1-ubyte"):
        read_idx(tmp_path / "nope-idx1-ubyte")


def test_mnist_images_labels_mismatch(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(9) % 10)
    with pytest.raises(ValueError, match="count mismatch") as exc:
        load_mnist_pair(tmp_path)
    assert "t10k-images-idx3-ubyte" in str(exc.value) and "t10k-labels-idx1-ubyte" in str(exc.value)


def test_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte") as exc:
        load_mnist_pair(tmp_path / "does-not-exist")
    assert "does-not-exist" in str(exc.value)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 28, 28)))
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte") as exc:
        load_mnist_pair(tmp_path)
    assert str(tmp_path) in str(exc.value)


def test_mnist_standard_split_and_fmnist(tmp_path):
    root = fake_mnist(tmp_path / "fm", n_train=40, n_test=20)
    ds = load_mnist_pair(root, kind="fmnist")
    assert ds.name == "fmnist" and ds.meta["split"] == "standard"
    assert ds.meta["classes"] == {"pos": 0, "neg": 9} and ds.meta["mean_subtracted"] == FMNIST_MEAN
    assert (ds.n_train, ds.n_test) == (8, 4)  # labels arange(n) % 10: 4 each of 0 and 9 in train
    assert int((ds.y_train > 0).sum()) == 4
    assert ds.x_train.min() >= -FMNIST_MEAN - 1e-6
    mn = load_mnist_pair(fake_mnist(tmp_path / "m", gz=False))
    assert mn.meta["classes"] == {"pos": 1, "neg": 2} and mn.meta["split"] == "standard"
    with pytest.raises(ValueError, match="kind must be"):
        load_mnist_pair(root, kind="kmnist")


# ----------------------------------------------------------------------------------------------------
# CIFAR-10
# ----------------------------------------------------------------------------------------------------


def test_cifar_fake_batches(tmp_path):
    fake_cifar(tmp_path / "cifar-10-batches-py", n=20)
    ds = load_cifar10_pair(tmp_path)  # finds the cifar-10-batches-py subfolder
    assert ds.d == 3072 and ds.name == "cifar10"
    assert (ds.n_train, ds.n_test) == (5 * 4, 4)  # 2 of class 0 and 2 of class 1 per batch of 20
    assert int((ds.y_train > 0).sum()) == 10
    direct = load_cifar10_pair(tmp_path / "cifar-10-batches-py", pos=3, neg=5, n_train=6, mean=0.5)
    assert direct.n_train == 6 and direct.meta["mean_subtracted"] == 0.5
    assert direct.x_train.min() >= -0.5 - 1e-6 and direct.x_train.max() <= 0.5 + 1e-6
    # values are pixel/255 - mean, in the original channel-major order
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes(), encoding="bytes")
    zeros = raw[b"data"][np.array(raw[b"labels"]) == 0]
    got = np.sort((ds.x_test[ds.y_test > 0] + 0.4734) * 255, axis=0)
    np.testing.assert_allclose(got, np.sort(zeros.astype(np.float32), axis=0), atol=1e-3)


def test_cifar_corrupt_and_missing(tmp_path):
    root = fake_cifar(tmp_path / "c", n=10)
    (root / "data_batch_3").write_bytes(b"\x80\x02}q\x00(garbage")
    with pytest.raises(ValueError, match="data_batch_3"):
        load_cifar10_pair(root)
    (root / "data_batch_3").write_bytes(
        pickle.dumps({b"data": np.zeros((3, 10), np.uint8), b"labels": [0, 1, 2]})
    )
    with pytest.raises(ValueError, match=r"data_batch_3.*\(n, 3072\) uint8"):
        load_cifar10_pair(root)
    (root / "data_batch_3").write_bytes(pickle.dumps(Path("x")))  # disallowed global
    with pytest.raises(ValueError, match=r"data_batch_3.*refusing"):
        load_cifar10_pair(root)
    (root / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        load_cifar10_pair(root)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_cifar10_pair(tmp_path / "missing")


# ----------------------------------------------------------------------------------------------------
# dispatcher
# ----------------------------------------------------------------------------------------------------


def test_load_dataset_dispatch(tmp_path):
    assert DATASETS == ("gauss", "shifted_gauss", "digits", "mnist", "fmnist", "cifar10")
    with pytest.raises(ValueError, match="unknown dataset 'svhn'") as exc:
        load_dataset("svhn")
    assert all(n in str(exc.value) for n in DATASETS)
    ds = load_dataset("shifted_gauss", key=jax.random.key(0), n_train=10, n_test=4, d=3, shift=0.5)
    assert ds.name == "shifted_gauss" and ds.meta["shift"] == 0.5
    with pytest.raises(ValueError, match="needs key"):
        load_dataset("gauss", n_train=10, n_test=4, d=3)
    assert load_dataset("digits", seed=0).name == "digits"
    k1 = load_dataset("digits", key=jax.random.key(5))
    k2 = load_dataset("digits", key=jax.random.key(5))
    np.testing.assert_array_equal(k1.y_train, k2.y_train)
    with pytest.raises(ValueError, match="either key or seed"):
        load_dataset("digits", key=jax.random.key(5), seed=1)
    for name in ("mnist", "fmnist", "cifar10"):
        with pytest.raises(ValueError, match="root="):
            load_dataset(name)
    assert load_dataset("fmnist", root=fake_mnist(tmp_path / "f")).meta["classes"] == {"pos": 0, "neg": 9}
    assert load_dataset("cifar10", root=fake_cifar(tmp_path / "c", n=10)).n_train == 10


# ----------------------------------------------------------------------------------------------------
# hostile inputs (issue 21): refusals naming the problem, never a wrong number or a deep traceback
# ----------------------------------------------------------------------------------------------------


def _idx_of(arr: np.ndarray, code: int, dtype: str) -> bytes:
    arr = np.asarray(arr, dtype=dtype)
    return bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes() + arr.tobytes()


def _arrays(n: int = 10, d: int = 3):
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    return x, np.where(x[:, 0] > 0, 1.0, -1.0).astype(np.float32)


def test_user_arrays_without_a_test_split_work():
    from ntk_adv.data import DataSpec, fingerprint, load_spec

    x, y = _arrays()
    spec = DataSpec.from_arrays(x, y, np.zeros((0, 3), np.float32), np.zeros(0, np.float32))
    ds = load_spec(spec)
    assert (ds.n_train, ds.n_test, ds.d) == (10, 0, 3)
    assert len(fingerprint(spec)) == 16
    assert load_spec(DataSpec.from_arrays(x, y, x[:0], y[:0], n_train=4)).n_train == 4
    with pytest.raises(ValueError, match=r"--n-test 5: n_test must be in \[1, 0\]: there are no points"):
        load_spec(DataSpec.from_arrays(x, y, x[:0], y[:0], n_test=5))


def test_complex_inputs_are_refused_not_cast():
    from ntk_adv.data import DataSpec

    x, y = _arrays()
    with pytest.raises(ValueError, match=r"x_train is complex \(dtype complex64\); inputs must be real"):
        DataSpec.from_arrays(x + 1j * x, y, x, y)
    with pytest.raises(ValueError, match="y_test is complex"):
        _ok(y_test=np.array([1, -1], complex))


@pytest.mark.parametrize(
    "code, dtype, values, message",
    [
        (0x0C, ">i4", 25_500_000, r"must be unsigned bytes .* got int32 with values in \[0, 25500000\]"),
        (0x09, "i1", -3, r"must be unsigned bytes .* got int8 with values in \[-3, 0\]"),
        (0x0D, ">f4", 0.5, r"must be unsigned bytes .* got float32"),
    ],
)
def test_mnist_images_must_be_bytes(tmp_path, code, dtype, values, message):
    images = np.zeros((20, 4, 4))
    images[0, 0, 0] = values
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_of(images, code, dtype))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(20) % 10)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: IDX images " + message):
        load_mnist_pair(tmp_path)


def test_mnist_float_labels_are_refused(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((20, 4, 4)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_of(np.arange(20) % 10 + 0.5, 0x0D, ">f4"))
    with pytest.raises(ValueError, match="IDX labels must be integers"):
        load_mnist_pair(tmp_path)


def test_one_example_per_class_names_the_class_counts(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 4, 4)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10))  # one example of each class
    with pytest.raises(
        ValueError, match=r"needs >= 2 examples of each class .* found 1 of the \+1 class and 1"
    ):
        load_mnist_pair(tmp_path)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([4.9] * 10, r"b'labels' must be integer class ids in \[0, 9\]; got dtype float64, e\.g\. \[4\.9"),
        (
            [2**70] + [0] * 9,
            r"b'labels' must be integer class ids in \[0, 9\]; found \[1180591620717411303424\]",
        ),
        ([10] + [0] * 9, r"b'labels' must be integer class ids in \[0, 9\]; found \[10\]"),
        ([-1] + [0] * 9, r"b'labels' must be integer class ids in \[0, 9\]; found \[-1\]"),
        (["3"] * 10, r"b'labels' must be integer class ids in \[0, 9\]; got dtype <U1"),
    ],
)
def test_cifar_labels_must_be_class_ids(tmp_path, labels, message):
    root = fake_cifar(tmp_path / "c", n=10)
    (root / "data_batch_2").write_bytes(
        pickle.dumps({b"data": np.zeros((10, 3072), np.uint8), b"labels": labels})
    )
    with pytest.raises(ValueError, match=r"data_batch_2: " + message):
        load_cifar10_pair(root)


@pytest.mark.parametrize("seed", [-1, 10**23, 2**32, 1.5, True])
def test_data_seed_is_range_checked_by_name(seed):
    from ntk_adv.data import DataSpec

    with pytest.raises(ValueError, match=r"data_seed \(--data-seed\) must be an integer in \[0, 2\*\*32\)"):
        DataSpec("digits", seed=seed)
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 2\*\*32\)"):
        load_digits_pair(seed=seed)
    assert DataSpec("digits", seed=2**32 - 1).seed == 2**32 - 1


def _gz_bomb(path: Path, header: bytes, zeros: int) -> Path:
    """A gzip file: ``header`` then ``zeros`` zero bytes, compressed in 1 MB chunks (~1000:1)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(header)]
    chunk = bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(comp.compress(chunk))
    parts.append(comp.flush())
    path.write_bytes(b"".join(parts))
    return path


def test_decompression_bombs_are_refused_without_inflating_them(tmp_path):
    import tracemalloc

    from ntk_adv.data import IDX_MAX_BYTES

    # a small header followed by 200 MB of inflated zeros: refused after reading the header's 784 bytes + 1
    small = _gz_bomb(
        tmp_path / "t10k-images-idx3-ubyte.gz",
        bytes([0, 0, 8, 3]) + np.array([1, 28, 28], ">u4").tobytes(),
        200 << 20,
    )
    assert small.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: IDX payload has trailing garbage"):
        read_idx(small)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5 << 20, peak
    # a header asking for more than the cap is refused before any payload is read
    big = _gz_bomb(
        tmp_path / "big.gz", bytes([0, 0, 8, 3]) + np.array([2_000_000, 28, 28], ">u4").tobytes(), 0
    )
    with pytest.raises(
        ValueError,
        match=rf"big\.gz: IDX header declares dims \(2000000, 28, 28\), 1568000000 bytes .* {IDX_MAX_BYTES}",
    ):
        read_idx(big)
