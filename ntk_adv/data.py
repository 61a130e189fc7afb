"""Binary-classification datasets for the perturbation-learning experiments.

Every loader returns a :class:`Dataset` of numpy float32 arrays: inputs ``x`` of shape ``(N, d)`` and
labels ``y`` of shape ``(N,)`` in ``{-1, +1}``. Callers convert to JAX arrays themselves.

Synthetic sets (``gauss``, ``shifted_gauss``) take an explicit ``jax.random`` key. File-based sets
(``digits``, ``mnist``, ``fmnist``, ``cifar10``) are deterministic given an integer ``seed``.
Image pixels are scaled to ``[0, 1]`` and a *scalar* mean is subtracted, as in Kumano et al. (2024).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import zlib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import jax
import numpy as np

__all__ = [
    "CIFAR10_MEAN",
    "DATASETS",
    "FMNIST_MEAN",
    "IDX_MAX_BYTES",
    "MNIST_MEAN",
    "DataSpec",
    "Dataset",
    "Float64Cast",
    "array_fingerprint",
    "check_seed",
    "data_arrays",
    "fingerprint",
    "load_cifar10_pair",
    "load_dataset",
    "load_digits_pair",
    "load_all_classes",
    "load_mnist_pair",
    "load_spec",
    "load_spec_cached",
    "make_gauss",
    "make_shifted_gauss",
    "read_idx",
    "subsample",
]

DatasetName = Literal["gauss", "shifted_gauss", "digits", "mnist", "fmnist", "cifar10"]
DATASETS: tuple[str, ...] = get_args(DatasetName)
SyntheticName = Literal["gauss", "shifted_gauss"]  # the synthetic DATASETS (drawn, with d and shift)
SYNTHETIC_DATASETS: tuple[str, ...] = get_args(SyntheticName)

MNIST_MEAN = 0.1307  # mean pixel of the MNIST training set, pixels in [0, 1]
FMNIST_MEAN = 0.2860  # same for Fashion-MNIST
CIFAR10_MEAN = 0.4734  # mean over all pixels and channels of the CIFAR-10 training set, in [0, 1]


# ----------------------------------------------------------------------------------------------------
# Container
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """A binary classification split, or a C-class one when ``meta["n_classes"]`` is set.

    x_train: (N, d) float32, y_train: (N,) float32 in {-1, +1} (C classes: the class index 0..C-1);
    x_test: (M, d) float32, y_test: (M,) float32 likewise (M may be 0).
    ``meta`` records provenance (classes, subtracted mean, source files, split).
    Inputs are coerced to float32 numpy arrays; invalid shapes/values raise ``ValueError``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for attr in ("x_train", "y_train", "x_test", "y_test"):
            value = getattr(self, attr)
            if np.iscomplexobj(value):  # casting would silently drop the imaginary part
                raise ValueError(f"{attr} is complex (dtype {np.asarray(value).dtype}); inputs must be real")
            try:
                arr = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{attr} cannot be converted to a float32 array: {err}") from err
            object.__setattr__(self, attr, arr)
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.ndim != 2:
                raise ValueError(f"x_{split} has {x.ndim} dimensions, expected 2 (N, d)")
            if y.ndim != 1:
                raise ValueError(f"y_{split} has {y.ndim} dimensions, expected 1 (N,)")
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"x_{split} has {x.shape[0]} rows but y_{split} has {y.shape[0]} labels")
            if not np.all(np.isfinite(x)):
                raise ValueError(f"x_{split} contains NaN or inf")
            n_classes = self.meta.get("n_classes") if isinstance(self.meta, dict) else None
            allowed = (-1.0, 1.0) if n_classes is None else np.arange(int(n_classes), dtype=np.float32)
            bad = ~np.isin(y, allowed)
            if np.any(bad):
                found = np.unique(y[bad])[:5].tolist()
                what = "{-1, +1}" if n_classes is None else f"the class indices 0..{int(n_classes) - 1}"
                raise ValueError(f"y_{split} has labels outside {what}, e.g. {found}")
        if self.x_train.shape[0] == 0:
            raise ValueError("x_train is empty (N = 0)")
        if self.x_test.shape[1] != self.x_train.shape[1]:
            raise ValueError(
                f"x_test has d = {self.x_test.shape[1]} features but x_train has d = {self.x_train.shape[1]}"
            )
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {type(self.name).__name__}")
        if not isinstance(self.meta, dict):
            raise TypeError(f"meta must be a dict, got {type(self.meta).__name__}")

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, d={self.d}, "
            f"meta keys={sorted(self.meta)})"
        )

    @property
    def d(self) -> int:
        """Input dimension d."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training points N."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test points M."""
        return int(self.x_test.shape[0])


def _f32(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def subsample(ds: Dataset, n_train: int, *, key: jax.Array) -> Dataset:
    """Random subset of ``n_train`` training points (without replacement); the test split is kept.

    Returns a new Dataset with x_train (n_train, d); ``meta['subsampled_from']`` records the old N.
    """
    if not 1 <= n_train <= ds.n_train:
        raise ValueError(f"n_train must be in [1, {ds.n_train}], got {n_train}")
    idx = np.asarray(jax.random.permutation(key, ds.n_train)[:n_train])
    meta = {**ds.meta, "subsampled_from": ds.n_train}
    return replace(ds, x_train=ds.x_train[idx], y_train=ds.y_train[idx], meta=meta)


# ----------------------------------------------------------------------------------------------------
# Synthetic data
# ----------------------------------------------------------------------------------------------------


def _check_sizes(n_train: int, n_test: int, d: int) -> None:
    if int(n_train) < 1:
        raise ValueError(f"n_train must be >= 1, got {n_train}")
    if int(n_test) < 0:
        raise ValueError(f"n_test must be >= 0, got {n_test}")
    if int(d) < 1:
        raise ValueError(f"d must be >= 1, got {d}")


def make_gauss(*, key: jax.Array, n_train: int, n_test: int, d: int) -> Dataset:
    """x ~ N(0, I_d), labels uniform on {-1, +1} independent of x.

    Returns x_train (n_train, d), y_train (n_train,), x_test (n_test, d), y_test (n_test,).
    """
    _check_sizes(n_train, n_test, d)
    kx, ky, kxt, kyt = jax.random.split(key, 4)
    return Dataset(
        x_train=_f32(jax.random.normal(kx, (n_train, d))),
        y_train=_f32(jax.random.rademacher(ky, (n_train,), dtype=np.float32)),
        x_test=_f32(jax.random.normal(kxt, (n_test, d))),
        y_test=_f32(jax.random.rademacher(kyt, (n_test,), dtype=np.float32)),
        name="gauss",
        meta={"distribution": "N(0, I_d)", "labels": "uniform random, independent of x"},
    )


def _shifted_half(key: jax.Array, n: int, d: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """n points: ceil(n/2) from N(+shift*1, I) labelled +1, floor(n/2) from N(-shift*1, I) labelled -1,
    in random order. Returns x (n, d), y (n,)."""
    kx, kp = jax.random.split(key)
    n_pos = n - n // 2
    y = np.concatenate([np.ones(n_pos, np.float32), -np.ones(n // 2, np.float32)])
    x = _f32(jax.random.normal(kx, (n, d))) + np.float32(shift) * y[:, None]
    perm = np.asarray(jax.random.permutation(kp, n))
    return x[perm], y[perm]


def make_shifted_gauss(*, key: jax.Array, n_train: int, n_test: int, d: int, shift: float = 0.3) -> Dataset:
    """Balanced mixture: N(+shift*1, I_d) labelled +1 and N(-shift*1, I_d) labelled -1, shuffled.

    With odd sizes the +1 class has one extra point. Returns x (n, d), y (n,) for train and test.
    """
    _check_sizes(n_train, n_test, d)
    if not np.isfinite(shift):
        raise ValueError(f"shift must be finite, got {shift}")
    k_train, k_test = jax.random.split(key)
    x_tr, y_tr = _shifted_half(k_train, n_train, d, shift)
    x_te, y_te = _shifted_half(k_test, n_test, d, shift)
    return Dataset(
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        name="shifted_gauss",
        meta={"distribution": "N(+-shift*1, I_d)", "shift": float(shift)},
    )


# ----------------------------------------------------------------------------------------------------
# Shared helpers for image pairs
# ----------------------------------------------------------------------------------------------------


SEED_LIMIT = 2**32  # data seeds are integers in [0, 2**32): numpy's and JAX's seeds both take them


def check_seed(seed: Any, name: str = "seed") -> None:
    """``seed`` is an integer in [0, 2**32) (a negative seed or one of 10**23 is an error naming ``name``, not
    an OverflowError from inside numpy or JAX)."""
    ok = isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_))
    if not ok or not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"{name} must be an integer in [0, 2**32); got {seed!r}")


def _check_pair(pos: int, neg: int, n_classes: int) -> None:
    for nm, c in (("pos", pos), ("neg", neg)):
        if not (isinstance(c, (int, np.integer)) and 0 <= c < n_classes):
            raise ValueError(f"{nm} must be a class index in [0, {n_classes - 1}], got {c!r}")
    if pos == neg:
        raise ValueError(f"pos and neg must differ, both are {pos}")


def _pair_indices(labels: np.ndarray, pos: int, neg: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the pos/neg class and the +-1 labels (original order)."""
    idx = np.flatnonzero((labels == pos) | (labels == neg))
    for c in (pos, neg):
        if not np.any(labels == c):
            raise ValueError(f"{what} contains no samples of class {c}")
    y = np.where(labels[idx] == pos, 1.0, -1.0).astype(np.float32)
    return idx, y


def _stratified_split(
    y: np.ndarray, test_fraction: float, rng: np.random.Generator, what: str = "data"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class random split of indices into (train, test); round(test_fraction * n_c) test points
    per class (at least one, at most n_c - 1). Both index arrays are shuffled. A class with fewer than 2
    examples cannot be split: an error naming the class counts."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    counts = {c: int(np.count_nonzero(y == c)) for c in (1.0, -1.0)}
    if min(counts.values()) < 2:
        raise ValueError(
            f"{what}: a train/test split needs >= 2 examples of each class (one to train on, one held out); "
            f"found {counts[1.0]} of the +1 class and {counts[-1.0]} of the -1 class"
        )
    train, test = [], []
    for c in (1.0, -1.0):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_te = round(test_fraction * idx.size)
        n_te = min(max(n_te, 1), idx.size - 1) if idx.size >= 2 else 0
        test.append(idx[:n_te])
        train.append(idx[n_te:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _take(n: int | None, available: int, what: str, rng: np.random.Generator) -> np.ndarray:
    """Random subset (size n, or everything if n is None) of range(available), shuffled."""
    if n is None:
        return rng.permutation(available)
    if available == 0:
        raise ValueError(
            f"{what} must be in [1, 0]: there are no points to take (the split is empty), got {n}"
        )
    if not 1 <= int(n) <= available:
        raise ValueError(f"{what} must be in [1, {available}] (available after the class filter), got {n}")
    return rng.permutation(available)[: int(n)]


# ----------------------------------------------------------------------------------------------------
# scikit-learn digits (8x8, embedded, offline)
# ----------------------------------------------------------------------------------------------------


def load_digits_pair(
    *,
    pos: int = 0,
    neg: int = 1,
    n_train: int | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    scale: str = "unit",
) -> Dataset:
    """Two classes of scikit-learn's 8x8 digits (offline); pos -> +1, neg -> -1.

    scale='unit': pixels / 16 in [0, 1]; scale='raw': pixel counts 0..16. Then the scalar train mean
    is subtracted from train and test. Stratified split by ``seed``; ``n_train`` subsamples train.
    Returns x (n, 64), y (n,).
    """
    from sklearn.datasets import load_digits

    check_seed(seed)
    if scale not in ("unit", "raw"):
        raise ValueError(f"scale must be 'unit' or 'raw', got {scale!r}")
    _check_pair(pos, neg, 10)
    bunch = load_digits()
    idx, y = _pair_indices(np.asarray(bunch.target), pos, neg, "digits")
    x = np.asarray(bunch.data[idx], dtype=np.float64)
    if scale == "unit":
        x = x / 16.0
    rng = np.random.default_rng(seed)
    tr, te = _stratified_split(y, test_fraction, rng)
    tr = tr[_take(n_train, tr.size, "n_train", rng)]
    mean = float(x[tr].mean())
    return Dataset(
        x_train=_f32(x[tr] - mean),
        y_train=y[tr],
        x_test=_f32(x[te] - mean),
        y_test=y[te],
        name="digits",
        meta={
            "classes": {"pos": pos, "neg": neg},
            "mean_subtracted": mean,
            "mean_source": "train (scalar)",
            "scale": scale,
            "source": "sklearn.datasets.load_digits",
            "split": f"stratified, test_fraction={test_fraction}",
            "seed": seed,
            "image_shape": (8, 8),
        },
    )


# ----------------------------------------------------------------------------------------------------
# IDX files (MNIST / Fashion-MNIST)
# ----------------------------------------------------------------------------------------------------

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# The largest IDX payload read (1 GiB; MNIST's train images are 47 MB): a header may not make the reader
# allocate or inflate more than this.
IDX_MAX_BYTES = 1 << 30


def _open_idx(path: Path):
    """The file as a binary stream, a streaming gunzip if it starts with the gzip magic (nothing is inflated
    beyond what is read: a decompression bomb cannot make the reader allocate more than the header asks)."""
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else path.open("rb")


def _read_exact(fh, n: int, path: Path) -> bytes:
    try:
        return fh.read(n)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt or truncated gzip data ({err})") from err


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into an array of shape ``dims`` in native byte order.

    Supports dtype codes 0x08 (uint8), 0x09 (int8), 0x0B (int16), 0x0C (int32), 0x0D (float32),
    0x0E (float64). Raises FileNotFoundError if missing, ValueError (naming the file) on a bad magic
    number, a truncated header, a payload whose length differs from prod(dims), or a header asking for more
    than ``IDX_MAX_BYTES``. The header is read first and the payload streamed: at most the header's size
    plus one byte is ever read or inflated (a small .gz that inflates to gigabytes is refused early)."""
    path = Path(path)
    with _open_idx(path) as fh:
        head = _read_exact(fh, 4, path)
        if len(head) < 4:
            raise ValueError(f"{path}: too short for an IDX header ({len(head)} bytes)")
        if head[0] != 0 or head[1] != 0:
            raise ValueError(f"{path}: bad IDX magic number {head[:4].hex()} (must start with 0000)")
        code, ndim = head[2], head[3]
        if code not in _IDX_DTYPES:
            raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02x}")
        if ndim == 0:
            raise ValueError(f"{path}: IDX header declares 0 dimensions")
        dims_raw = _read_exact(fh, 4 * ndim, path)
        header = 4 + 4 * ndim
        if len(dims_raw) < 4 * ndim:
            raise ValueError(
                f"{path}: truncated IDX header (need {header} bytes, file has {4 + len(dims_raw)})"
            )
        dims = tuple(int(v) for v in np.frombuffer(dims_raw, dtype=">u4", count=ndim))
        dtype = _IDX_DTYPES[code]
        expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
        if expected > IDX_MAX_BYTES:
            raise ValueError(
                f"{path}: IDX header declares dims {dims}, {expected} bytes of data, more than the "
                f"{IDX_MAX_BYTES} bytes (IDX_MAX_BYTES) this reader accepts"
            )
        buf = _read_exact(fh, expected, path)
        if len(buf) < expected:
            raise ValueError(
                f"{path}: IDX payload truncated: dims {dims} need {expected} bytes of data, found {len(buf)}"
            )
        if _read_exact(fh, 1, path):
            raise ValueError(
                f"{path}: IDX payload has trailing garbage: dims {dims} need {expected} bytes of data, found "
                f"more"
            )
    arr = np.frombuffer(buf, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


_IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find_idx(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = root / name
        if p.is_file():
            return p
    return None


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, h, w) uint8 and labels (n,) with consistency checks naming the files."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8:  # pixels are bytes 0..255: int8 would be negative, int32 out of range
        lo, hi = (images.min(), images.max()) if images.size else (0, 0)
        raise ValueError(
            f"{images_path}: IDX images must be unsigned bytes (dtype code 0x08, pixels 0..255); got "
            f"{images.dtype} with values in [{lo}, {hi}]"
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{labels_path}: IDX labels must be integers (class ids); got {labels.dtype}")
    if images.ndim != 3:
        raise ValueError(f"{images_path}: expected 3-D images (n, h, w), got dims {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected 1-D labels (n,), got dims {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"image/label count mismatch: {images_path} has {images.shape[0]} images but "
            f"{labels_path} has {labels.shape[0]} labels"
        )
    return images, labels


def load_mnist_pair(
    root: str | Path,
    *,
    pos: int | None = None,
    neg: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    kind: str = "mnist",
    test_fraction: float = 0.3,
    mean: float | None = None,
) -> Dataset:
    """Two classes of MNIST (kind='mnist', default 1 vs 2) or Fashion-MNIST (kind='fmnist', default
    0 vs 9) from the standard IDX files in ``root`` (raw or ``.gz``); pos -> +1, neg -> -1.

    Pixels / 255 minus the dataset mean constant (0.1307 / 0.2860, or ``mean``). If only the t10k
    files exist, the t10k pair is split per class by ``seed`` with ``test_fraction`` held out
    (meta['split'] = 't10k-only'). ``n_train`` / ``n_test`` take random subsets by ``seed``.
    Returns x (n, 784), y (n,).
    """
    check_seed(seed)
    defaults = {"mnist": (1, 2, MNIST_MEAN), "fmnist": (0, 9, FMNIST_MEAN)}
    if kind not in defaults:
        raise ValueError(f"kind must be 'mnist' or 'fmnist', got {kind!r}")
    d_pos, d_neg, d_mean = defaults[kind]
    pos = d_pos if pos is None else pos
    neg = d_neg if neg is None else neg
    mean = d_mean if mean is None else float(mean)
    _check_pair(pos, neg, 10)

    root = Path(root)
    expected = ", ".join(f"{s}[.gz]" for s in _IDX_NAMES.values())
    if not root.is_dir():
        raise FileNotFoundError(f"{kind} directory not found: {root} (expected files: {expected})")
    found = {k: _find_idx(root, s) for k, s in _IDX_NAMES.items()}
    if found["test_images"] is None or found["test_labels"] is None:
        missing = [_IDX_NAMES[k] for k in ("test_images", "test_labels") if found[k] is None]
        raise FileNotFoundError(
            f"{kind}: missing {', '.join(m + '[.gz]' for m in missing)} in {root} (expected "
            f"files: {expected})"
        )
    have_train = found["train_images"] is not None and found["train_labels"] is not None
    if (found["train_images"] is None) != (found["train_labels"] is None):
        missing = [_IDX_NAMES[k] for k in ("train_images", "train_labels") if found[k] is None]
        raise FileNotFoundError(
            f"{kind}: found only one of the train files, missing {missing[0]}[.gz] in {root} "
            f"(expected files: {expected})"
        )

    rng = np.random.default_rng(seed)
    te_images, te_labels = _read_idx_pair(found["test_images"], found["test_labels"])
    te_idx, te_y = _pair_indices(te_labels, pos, neg, str(found["test_labels"]))
    if have_train:
        tr_images, tr_labels = _read_idx_pair(found["train_images"], found["train_labels"])
        if tr_images.shape[1:] != te_images.shape[1:]:
            raise ValueError(
                f"image shape mismatch: {found['train_images']} has {tr_images.shape[1:]}, "
                f"{found['test_images']} has {te_images.shape[1:]}"
            )
        tr_idx, tr_y = _pair_indices(tr_labels, pos, neg, str(found["train_labels"]))
        x_tr_all, x_te_all = tr_images[tr_idx], te_images[te_idx]
        y_tr_all, y_te_all = tr_y, te_y
        split = "standard"
        sources = [str(found[k]) for k in _IDX_NAMES]
    else:
        x_all = te_images[te_idx]
        tr, te = _stratified_split(
            te_y, test_fraction, rng, f"{found['test_labels']} (t10k-only, classes pos={pos}, neg={neg})"
        )
        x_tr_all, y_tr_all = x_all[tr], te_y[tr]
        x_te_all, y_te_all = x_all[te], te_y[te]
        split = "t10k-only"
        sources = [str(found["test_images"]), str(found["test_labels"])]

    i_tr = _take(n_train, len(y_tr_all), "n_train", rng)
    i_te = _take(n_test, len(y_te_all), "n_test", rng)

    def prep(images: np.ndarray) -> np.ndarray:
        x = images.reshape(images.shape[0], int(np.prod(images.shape[1:]))).astype(np.float32)
        x = x / np.float32(255.0)
        return x - np.float32(mean)

    meta: dict[str, Any] = {
        "classes": {"pos": pos, "neg": neg},
        "mean_subtracted": mean,
        "scale": "pixels / 255",
        "source": sources,
        "split": split,
        "seed": seed,
        "image_shape": tuple(te_images.shape[1:]),
    }
    if split == "t10k-only":
        meta["test_fraction"] = test_fraction
    return Dataset(
        x_train=prep(x_tr_all[i_tr]),
        y_train=y_tr_all[i_tr],
        x_test=prep(x_te_all[i_te]),
        y_test=y_te_all[i_te],
        name=kind,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)
# ----------------------------------------------------------------------------------------------------

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"

# Only what a CIFAR batch (a dict of a numpy array and a list) needs; anything else is refused, so a
# malicious pickle cannot run code.
_PICKLE_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core"):  # pickles written with numpy < 2
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _cifar_root(root: Path) -> Path:
    if (root / _CIFAR_TEST).is_file() or not (root / "cifar-10-batches-py").is_dir():
        return root
    return root / "cifar-10-batches-py"


def _cifar_labels(raw: Any, path: Path) -> np.ndarray:
    """CIFAR-10 labels as int64 class ids in [0, 9]: non-integers (4.9, "3", True) and ids out of range
    (e.g. 2**70) are one-line errors naming the file, never truncated or overflowing."""
    try:
        arr = np.asarray(raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: b'labels' is not a list of integers ({err})") from err
    if arr.dtype.kind == "O":  # Python ints beyond int64, or mixed types
        items = arr.reshape(-1).tolist()
        odd = [v for v in items if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
        if odd:
            raise ValueError(f"{path}: b'labels' must be integer class ids in [0, 9]; found {odd[:5]}")
        out_of_range = [v for v in items if not 0 <= v <= 9]
        if out_of_range:
            raise ValueError(
                f"{path}: b'labels' must be integer class ids in [0, 9]; found {out_of_range[:5]}"
            )
        arr = np.asarray(items, dtype=np.int64).reshape(arr.shape)
    if arr.dtype.kind not in "iu":
        found = arr.reshape(-1)[:5].tolist()
        raise ValueError(
            f"{path}: b'labels' must be integer class ids in [0, 9]; got dtype {arr.dtype}, e.g. {found}"
        )
    bad = (arr < 0) | (arr > 9)
    if np.any(bad):
        found = np.unique(arr[bad])[:5].tolist()
        raise ValueError(f"{path}: b'labels' must be integer class ids in [0, 9]; found {found}")
    return arr.astype(np.int64)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch: data (n, 3072) uint8, labels (n,) int64. ValueError naming the file if corrupt."""
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 batch not found: {path}")
    try:
        with path.open("rb") as fh:
            obj = _SafeUnpickler(fh, encoding="bytes").load()
    except Exception as err:  # any unpickling failure means a corrupt file
        raise ValueError(
            f"{path}: not a readable CIFAR-10 pickle batch ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(obj, dict):  # a corrupt file, not a caller's type error
        raise ValueError(f"{path}: expected a dict, got {type(obj).__name__}")  # noqa: TRY004
    obj = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in obj or "labels" not in obj:
        raise ValueError(f"{path}: missing key b'data' or b'labels' (keys: {sorted(map(str, obj))})")
    data = np.asarray(obj["data"])
    labels = _cifar_labels(obj["labels"], path)
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise ValueError(f"{path}: b'data' must be (n, 3072) uint8, got {data.shape} {data.dtype}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise ValueError(f"{path}: {data.shape[0]} images but labels of shape {labels.shape}")
    return data, labels


def load_cifar10_pair(
    root: str | Path,
    *,
    pos: int = 0,
    neg: int = 1,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    mean: float | None = None,
) -> Dataset:
    """Two CIFAR-10 classes (default airplane 0 vs automobile 1) from the python pickle batches
    ``data_batch_1..5`` and ``test_batch`` in ``root`` or ``root/cifar-10-batches-py``.

    Rows are flattened channel-major (R, G, B planes of 32x32), / 255, minus the scalar mean
    (0.4734, or ``mean``). ``n_train`` / ``n_test`` take random subsets by ``seed``.
    Returns x (n, 3072), y (n,).
    """
    check_seed(seed)
    _check_pair(pos, neg, 10)
    mean = CIFAR10_MEAN if mean is None else float(mean)
    root = Path(root)
    names = (*_CIFAR_TRAIN, _CIFAR_TEST)
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10 directory not found: {root} (expected files: {', '.join(names)})")
    base = _cifar_root(root)
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10: missing {', '.join(missing)} in {base} (expected files: {', '.join(names)})"
        )

    def read_pair(files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for fname in files:
            data, labels = _read_cifar_batch(base / fname)
            sel = (labels == pos) | (labels == neg)
            xs.append(data[sel])
            ys.append(labels[sel])
        labels = np.concatenate(ys)
        idx, y = _pair_indices(labels, pos, neg, f"CIFAR-10 {'/'.join(files)} in {base}")
        return np.concatenate(xs)[idx], y

    x_tr, y_tr = read_pair(_CIFAR_TRAIN)
    x_te, y_te = read_pair((_CIFAR_TEST,))
    rng = np.random.default_rng(seed)
    i_tr = _take(n_train, len(y_tr), "n_train", rng)
    i_te = _take(n_test, len(y_te), "n_test", rng)

    def prep(data: np.ndarray) -> np.ndarray:
        return data.astype(np.float32) / np.float32(255.0) - np.float32(mean)

    return Dataset(
        x_train=prep(x_tr[i_tr]),
        y_train=y_tr[i_tr],
        x_test=prep(x_te[i_te]),
        y_test=y_te[i_te],
        name="cifar10",
        meta={
            "classes": {"pos": pos, "neg": neg},
            "mean_subtracted": mean,
            "scale": "pixels / 255",
            "source": [str(base / n) for n in names],
            "split": "standard",
            "seed": seed,
            "image_shape": (3, 32, 32),
            "layout": "CHW flattened",
        },
    )


# ----------------------------------------------------------------------------------------------------
# All ten classes (DataSpec.classes == "all"): integer labels 0..9
# ----------------------------------------------------------------------------------------------------

AllClassesDataset = Literal["digits", "mnist", "fmnist", "cifar10"]  # the data sets with --classes all
ALL_CLASSES_DATASETS: tuple[str, ...] = get_args(AllClassesDataset)


def _split_by_class(labels: np.ndarray, test_fraction: float, rng: np.random.Generator):
    """Per-class random split of indices (every class keeps >= 1 train point); both parts shuffled."""
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_te = min(max(round(test_fraction * idx.size), 1), idx.size - 1) if idx.size >= 2 else 0
        test.append(idx[:n_te])
        train.append(idx[n_te:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_all_classes(
    name: str,
    *,
    root: str | Path | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.3,
) -> Dataset:
    """All ten classes of ``name`` (digits, mnist, fmnist, cifar10) with integer labels 0..9 (float32) and
    ``meta["n_classes"] = 10``. Pixels as in the two-class loaders: digits / 16 minus the scalar train mean;
    mnist / fmnist / cifar10 / 255 minus the data set's mean constant. digits: a per-class split by ``seed``
    (``test_fraction`` held out); IDX files: train / t10k (t10k alone: a per-class split); CIFAR-10: the five
    data batches / test_batch. ``n_train`` / ``n_test`` take random subsets by ``seed``. x (n, d), y (n,)."""
    if name not in ALL_CLASSES_DATASETS:
        raise ValueError(
            f"--classes all needs one of {', '.join(ALL_CLASSES_DATASETS)}, got dataset {name!r}"
        )
    rng = np.random.default_rng(seed)
    meta: dict[str, Any] = {"n_classes": 10, "classes": "all", "seed": seed}
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x_all, y_all = np.asarray(bunch.data, np.float64) / 16.0, np.asarray(bunch.target, np.int64)
        tr, te = _split_by_class(y_all, test_fraction, rng)
        tr = tr[_take(n_train, tr.size, "n_train", rng)]
        te = te[_take(n_test, te.size, "n_test", rng)]
        mean = float(x_all[tr].mean())
        x_tr, y_tr, x_te, y_te = x_all[tr] - mean, y_all[tr], x_all[te] - mean, y_all[te]
        meta |= {"mean_subtracted": mean, "source": "sklearn.datasets.load_digits", "image_shape": (8, 8)}
    else:
        if root is None:
            raise ValueError(f"dataset {name!r} is read from files: give --data-root DIR")
        base = Path(root)
        if not base.is_dir():
            raise FileNotFoundError(f"{name} directory not found: {base}")
        if name in ("mnist", "fmnist"):
            found = {k: _find_idx(base, s) for k, s in _IDX_NAMES.items()}
            if found["test_images"] is None or found["test_labels"] is None:
                raise FileNotFoundError(f"{name}: missing the t10k IDX files in {base}")
            te_x, te_y = _read_idx_pair(found["test_images"], found["test_labels"])
            if found["train_images"] is not None and found["train_labels"] is not None:
                tr_x, tr_y = _read_idx_pair(found["train_images"], found["train_labels"])
            else:
                tr_i, te_i = _split_by_class(te_y, test_fraction, rng)
                tr_x, tr_y, te_x, te_y = te_x[tr_i], te_y[tr_i], te_x[te_i], te_y[te_i]
            mean = MNIST_MEAN if name == "mnist" else FMNIST_MEAN
            shape = tuple(te_x.shape[1:])
        else:
            cbase = _cifar_root(base)
            parts = [_read_cifar_batch(cbase / f) for f in _CIFAR_TRAIN]
            tr_x, tr_y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            te_x, te_y = _read_cifar_batch(cbase / _CIFAR_TEST)
            mean, shape = CIFAR10_MEAN, (3, 32, 32)
        i_tr, i_te = _take(n_train, len(tr_y), "n_train", rng), _take(n_test, len(te_y), "n_test", rng)

        def prep(images: np.ndarray) -> np.ndarray:
            return images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255.0) - np.float32(
                mean
            )

        x_tr, y_tr, x_te, y_te = prep(tr_x[i_tr]), tr_y[i_tr], prep(te_x[i_te]), te_y[i_te]
        meta |= {"mean_subtracted": mean, "source": str(base), "image_shape": shape}
    bad = [int(v) for v in np.unique(np.concatenate([y_tr, y_te])) if not 0 <= v < 10]
    if bad:
        raise ValueError(f"{name}: class labels outside 0..9, e.g. {bad[:5]}")
    return Dataset(
        x_train=_f32(x_tr),
        y_train=np.asarray(y_tr, np.float32),
        x_test=_f32(x_te),
        y_test=np.asarray(y_te, np.float32),
        name=name,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------------
# Dispatcher
# ----------------------------------------------------------------------------------------------------


def load_dataset(
    name: str, *, key: jax.Array | None = None, root: str | Path | None = None, **kwargs: Any
) -> Dataset:
    """Load a dataset by name (one of ``DATASETS``); ``kwargs`` go to the specific loader.

    Synthetic sets need ``key``. File sets need ``root`` (mnist, fmnist, cifar10) and are seeded by
    ``seed``; if ``key`` is given instead, a seed is derived from it. ``root`` is ignored otherwise.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if name in ("gauss", "shifted_gauss"):
        if key is None:
            raise ValueError(f"dataset {name!r} is synthetic and needs key=jax.random.key(...)")
        maker = make_gauss if name == "gauss" else make_shifted_gauss
        return maker(key=key, **kwargs)
    if key is not None:
        if "seed" in kwargs:
            raise ValueError(f"dataset {name!r}: pass either key or seed, not both")
        kwargs["seed"] = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
    if name == "digits":
        return load_digits_pair(**kwargs)
    if root is None:
        raise ValueError(
            f"dataset {name!r} is read from files: pass root=<directory containing the {name} files>"
        )
    if name in ("mnist", "fmnist"):
        if "kind" in kwargs:
            raise ValueError(f"dataset {name!r}: 'kind' is set by the name; do not pass it")
        return load_mnist_pair(root, kind=name, **kwargs)
    return load_cifar10_pair(root, **kwargs)


# ----------------------------------------------------------------------------------------------------
# One frozen description of the data an experiment uses
# ----------------------------------------------------------------------------------------------------


ARRAYS_PREFIX = "arrays:"  # DataSpec.name of a user's own arrays: "arrays:" + 16 hex digits of their sha256
_USER_ARRAYS: dict[str, Dataset] = {}  # name -> arrays, filled by DataSpec.from_arrays (an in-process cache)


def arrays_name(ds: Dataset) -> str:
    """``"arrays:"`` + the first 16 hex digits of a sha256 over name, dtype, shape and bytes of the four
    arrays."""
    h = hashlib.sha256()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a = np.ascontiguousarray(getattr(ds, name))
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        if a.size:  # (an empty array has no bytes; memoryview cannot cast a view with a 0 in its shape)
            h.update(memoryview(a).cast("B"))
    return ARRAYS_PREFIX + h.hexdigest()[:16]


class Float64Cast(UserWarning):
    """User arrays in float64 were converted to float32 (once, when the spec was built)."""


def _x64_enabled() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


_OMIT = {"omit_if_default": True}  # a field left out of cell identities at its default


@dataclass(frozen=True)
class DataSpec:
    """What data an experiment runs on; hashable, so it is part of a sweep cell's identity.

    ``name`` in DATASETS (or ``"arrays:<hash>"``: a user's own arrays, see :meth:`from_arrays`); ``n_train`` /
    ``n_test`` (None: all available for file sets and user arrays, 200 for synthetic ones; asking for more
    than a data set has is an error); ``d`` and ``shift`` for the synthetic sets; ``pos`` / ``neg`` classes
    (None: the loader's default pair); ``root`` the directory of the files (mnist, fmnist, cifar10); ``seed``
    the data seed.
    """

    name: DatasetName = "digits"  # data set: embedded digits, synthetic Gaussians, or files under --data-root
    n_train: int | None = 200  # training points N (none: all available; 200 for synthetic sets)
    n_test: int | None = None  # held-out test points (none: all available; 200 for synthetic sets)
    d: int = 100  # input dimension d of the synthetic sets
    shift: float = 0.3  # class-mean shift of shifted_gauss (L2 distance of each mean from 0)
    pos: int | None = None  # class index labelled +1 (none: the data set's default pair)
    neg: int | None = None  # class index labelled -1 (none: the data set's default pair)
    root: str | None = None  # directory holding the mnist / fmnist / cifar10 files (a path every worker sees)
    seed: int = 0  # data seed: split, subsample and synthetic draw
    classes: Literal["pair", "all"] = field(
        default="pair", metadata=_OMIT
    )  # pair: two classes labelled +-1 (pos, neg); all: every class, labels 0..C-1

    CLI_ALIASES: ClassVar[dict[str, str]] = {"dataset": "name", "data_seed": "seed", "data_root": "root"}

    def __post_init__(self) -> None:
        if self.name.startswith(ARRAYS_PREFIX):
            # The arrays ride along as a non-field attribute: not part of eq/hash/ids (the name carries their
            # content hash), but pickled with the spec to process and Ray workers.
            if self.name not in _USER_ARRAYS:
                raise ValueError(
                    f"dataset {self.name!r}: no such user arrays in this process; build the spec "
                    f"with DataSpec.from_arrays(x_train, y_train, x_test, y_test)"
                )
            object.__setattr__(self, "_arrays", _USER_ARRAYS[self.name])
        elif self.name not in DATASETS:
            raise ValueError(f"unknown dataset {self.name!r}; valid names: {', '.join(DATASETS)}")
        for attr in ("n_train", "n_test"):
            v = getattr(self, attr)
            if v is not None and v < 1:
                raise ValueError(f"{attr} must be >= 1, got {v}")
        check_seed(self.seed, "data_seed (--data-seed)")
        if self.d < 1:
            raise ValueError(f"d must be >= 1, got {self.d}")
        if self.classes not in ("pair", "all"):
            raise ValueError(f"--classes must be pair or all, got {self.classes!r}")
        if self.classes == "all" and self.name not in ALL_CLASSES_DATASETS:
            raise ValueError(
                f"--classes all needs one of {', '.join(ALL_CLASSES_DATASETS)}, got dataset {self.name!r}"
            )
        if self.classes == "all" and (self.pos is not None or self.neg is not None):
            raise ValueError("--classes all takes every class: do not give --pos / --neg")

    @classmethod
    def from_arrays(
        cls,
        x_train,
        y_train,
        x_test,
        y_test,
        *,
        n_train: int | None = None,
        n_test: int | None = None,
        seed: int = 0,
    ) -> DataSpec:
        """A spec of the user's own arrays: inputs x (N, d) and labels y (N,) in {-1, +1}, train and test. Its
        name is ``"arrays:<sha256 prefix>"`` of the arrays' content, so cell ids, store records and data
        fingerprints identify the data exactly. ``n_train`` / ``n_test`` take a random subset (by ``seed``);
        None keeps all. float64 input is converted to float32 once, with one ``Float64Cast`` warning (none
        when ``jax_enable_x64`` is on: the arrays are then still stored as float32, the library's
        precision)."""
        raw = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        if any(getattr(v, "dtype", None) == np.float64 for v in raw.values()) and not _x64_enabled():
            import warnings

            warnings.warn(
                "float64 arrays converted to float32, the precision ntk_adv computes in (done once "
                "here; jax_enable_x64 silences this note)",
                Float64Cast,
                stacklevel=2,
            )
        ds = Dataset(**raw, name="arrays")  # validates shapes, labels in {-1, +1}, finite values; float32
        name = arrays_name(ds)
        _USER_ARRAYS.setdefault(name, replace(ds, name=name, meta={"source": "user arrays"}))
        return cls(name=name, n_train=n_train, n_test=n_test, d=ds.d, seed=seed)


def _load_arrays(spec: DataSpec) -> Dataset:
    ds = spec._arrays  # type: ignore[attr-defined]
    rng = np.random.default_rng(spec.seed)
    tr = np.sort(_take(spec.n_train, ds.n_train, "n_train", rng)) if spec.n_train is not None else slice(None)
    te = np.sort(_take(spec.n_test, ds.n_test, "n_test", rng)) if spec.n_test is not None else slice(None)
    return replace(
        ds, x_train=ds.x_train[tr], y_train=ds.y_train[tr], x_test=ds.x_test[te], y_test=ds.y_test[te]
    )


def load_spec(spec: DataSpec) -> Dataset:
    """Load the :class:`Dataset` described by ``spec`` (deterministic given ``spec.seed``).

    Errors name the command-line option of the field (``--n-test``, ``--data-root``): a DataSpec is what the
    CLI builds from them. Asking for more points than the data has is an error, never a silent cap."""
    pair = {k: v for k, v in (("pos", spec.pos), ("neg", spec.neg)) if v is not None}
    if spec.name in ("gauss", "shifted_gauss"):
        kw: dict[str, Any] = {"n_train": spec.n_train or 200, "n_test": spec.n_test or 200, "d": spec.d}
        if spec.name == "shifted_gauss":
            kw["shift"] = spec.shift
        return load_dataset(spec.name, key=jax.random.PRNGKey(spec.seed), **kw)
    try:
        if spec.name.startswith(ARRAYS_PREFIX):
            return _load_arrays(spec)
        if spec.classes == "all":
            return load_all_classes(
                spec.name, root=spec.root, n_train=spec.n_train, n_test=spec.n_test, seed=spec.seed
            )
        if spec.name == "digits":
            ds = load_digits_pair(n_train=spec.n_train, seed=spec.seed, **pair)
            if spec.n_test is not None:
                _take(spec.n_test, ds.x_test.shape[0], "n_test", np.random.default_rng(0))  # range check
                ds = replace(ds, x_test=ds.x_test[: spec.n_test], y_test=ds.y_test[: spec.n_test])
            return ds
        if spec.root is None:
            raise ValueError(
                f"dataset {spec.name!r} is read from files: give --data-root DIR (DataSpec.root), the "
                f"directory containing the {spec.name} files"
            )
        return load_dataset(
            spec.name, root=spec.root, n_train=spec.n_train, n_test=spec.n_test, seed=spec.seed, **pair
        )
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--data-root {spec.root}: {err}") from err
    except ValueError as err:
        msg = str(err)
        for fld in ("n_train", "n_test"):
            if msg.startswith(f"{fld} must be in"):
                msg = f"--{fld.replace('_', '-')} {getattr(spec, fld)}: {msg}"
        raise ValueError(msg) from err


# ----------------------------------------------------------------------------------------------------
# Fingerprints: what identifies the data actually read
# ----------------------------------------------------------------------------------------------------


def array_fingerprint(*arrays: Any) -> str:
    """Content hash (16 hex digits) of arrays: dtype, shape and bytes of each. Identifies user-supplied
    data."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape};".encode())
        if a.size:
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _stamp(spec: DataSpec) -> tuple:
    """A cheap stamp of the files a file-based spec may read (absolute path, size, mtime, inode of every file
    in the root and its CIFAR subdirectory), so that a cache keyed on it never serves data that changed on
    disk or that a relative root now names in another working directory."""
    if spec.root is None or spec.name not in ("mnist", "fmnist", "cifar10"):
        return ()
    root = Path(spec.root).expanduser().absolute()
    out = [str(root)]
    for folder in (root, root / "cifar-10-batches-py"):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat()
            except OSError:
                continue
            out.append((e.path, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


@lru_cache(maxsize=8)
def _load_stamped(spec: DataSpec, stamp: tuple) -> tuple[Dataset, str]:
    ds = load_spec(spec)
    return ds, array_fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.y_test)


def load_spec_cached(spec: DataSpec) -> Dataset:
    """:func:`load_spec`, cached in-process; the cache is keyed on the spec and a stamp of the files on
    disk."""
    return _load_stamped(spec, _stamp(spec))[0]


def data_arrays(spec: DataSpec) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(x_train (N, d), y_train (N,), x_test (M, d), y_test (M,)) of ``spec`` as JAX arrays, cached in-process
    (:func:`load_spec_cached`: the cache notices files that changed on disk)."""
    return _jax_arrays(load_spec_cached(spec))


@lru_cache(maxsize=8)
def _jax_arrays(ds: Dataset) -> tuple[jax.Array, ...]:
    return tuple(jax.numpy.asarray(a) for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))


def fingerprint(spec: DataSpec) -> str:
    """Content hash of the arrays ``spec`` loads (train and test inputs and labels, after class selection,
    splitting and subsampling): two specs that read the same numbers share it, whatever the root path; changed
    files, a switched split or another directory behind the same relative root change it."""
    return _load_stamped(spec, _stamp(spec))[1]
