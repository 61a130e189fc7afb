"""One validation layer for the library's public entry points: shapes, label values, finite values and
parameter ranges, each failure a ``ValueError`` naming the argument.

Every check works on jit / vmap tracers: shapes are always checked (they are static), values only for concrete
arrays (inside a trace they are unknown; the metrics then return NaN instead of a number, see
:mod:`ntk_adv.metrics`). The checks are Python-level and run once per call (or once per trace under jit),
never inside a compiled loop.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_tracer(v: Any) -> bool:
    return isinstance(v, jax.core.Tracer)


def _values(arr) -> np.ndarray | None:
    """The concrete values of ``arr`` as numpy, or None inside a trace."""
    if is_tracer(arr):
        return None
    return np.asarray(arr)


def finite(name: str, arr) -> None:
    """NaN or inf anywhere in a concrete ``arr`` is an error naming ``name``."""
    v = _values(arr)
    if v is not None and v.dtype.kind in "fc" and not bool(np.all(np.isfinite(v))):
        bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
        raise ValueError(f"{name} contains NaN or inf ({bad} of {np.size(v)} values)")


def inputs(name: str, x, d: int | None = None, *, check_finite: bool = True) -> None:
    """``x`` is a 2-D (N, d) array of finite numbers (and has ``d`` columns if given)."""
    shape = np.shape(x)
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (N, d); got shape {shape}")
    if d is not None and shape[1] != d:
        raise ValueError(f"{name} has d = {shape[1]} features, expected d = {d}")
    if check_finite:
        finite(name, x)


def pair(x, z, names: tuple[str, str] = ("x", "z")) -> None:
    """x (N, d) and z (M, d): 2-D with the same d."""
    x_shape, z_shape = np.shape(x), np.shape(z)
    if len(x_shape) != 2 or len(z_shape) != 2:
        raise ValueError(
            f"{names[0]} and {names[1]} must be 2-D (N, d) and (M, d); got shapes {x_shape} and {z_shape}"
        )
    if x_shape[1] != z_shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} disagree in dimension d: {x_shape} vs {z_shape}")


def vector(name: str, v, n: int | None = None) -> None:
    """``v`` has shape (n,) (a (n, 1) column is refused: it would broadcast to (n, n))."""
    shape = np.shape(v)
    if len(shape) != 1 or (n is not None and shape[0] != n):
        want = f"({n},)" if n is not None else "(N,)"
        raise ValueError(f"{name} must have shape {want}; got {shape}")


def labels(name: str, y, n: int | None = None) -> None:
    """``y`` has shape (n,), a floating dtype and (if concrete) values exactly in {-1, +1}."""
    vector(name, y, n)
    dtype = np.result_type(y) if not is_tracer(y) else y.dtype
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{name} must be floating-point labels in {{-1.0, +1.0}}; got dtype {dtype}")
    v = _values(y)
    if v is not None:
        bad = ~((v == 1.0) | (v == -1.0))
        if bool(np.any(bad)):
            found = np.unique(v[bad])[:5].tolist()
            raise ValueError(f"{name} must contain only -1.0 and +1.0; found {found}")


def data(x, y, names: tuple[str, str] = ("x", "y")) -> None:
    """Training data: x (N, d) finite with N >= 1 (no points: nothing to train on, never the initial
    parameters returned as if trained), y (N,) labels in {-1, +1}."""
    inputs(names[0], x)
    if np.shape(x)[0] == 0:
        raise ValueError(f"{names[0]} has N = 0 points (shape {np.shape(x)}); training needs at least one")
    labels(names[1], y, np.shape(x)[0])


def scalar(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A finite real number in the given range (bounds inclusive unless ``*_open``); tracers pass
    unchecked."""
    if is_tracer(value):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar; got shape {np.shape(value)}")
        return
    try:
        v = float(np.asarray(value))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number; got {value!r}") from None
    if isinstance(value, (bool, np.bool_)) or not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}; got {value!r}")
    if high is not None and (v >= high if high_open else v > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}; got {value!r}")


def positive(name: str, value) -> None:
    scalar(name, value, low=0.0, low_open=True)


def gamma(value) -> float:
    """Leaky-ReLU slope in [0, 1)."""
    if not is_tracer(value):
        try:
            g = float(value)
        except (TypeError, ValueError):
            g = np.nan
        if not (np.isfinite(g) and 0.0 <= g < 1.0):
            raise ValueError(f"leaky-ReLU slope gamma={value!r} is outside [0, 1)")
        return g
    return value


def outputs(name: str, out, n: int | None = None) -> None:
    """Scalar model outputs (n,), finite when concrete (a NaN output is an error, never a class)."""
    vector(name, out, n)
    finite(name, out)


# ------------------------------------------------------------------------------------------- metric inputs
# The domain rules of the public metrics (ntk_adv.metrics), in one place. Each helper checks what is static
# (shape, dtype) by raising ValueError, eagerly and at trace time alike; values are checked by raising for a
# concrete array and, inside a trace (jit / vmap), by returning a traced boolean "bad" flag that the metric
# turns into a NaN result (a traced call cannot raise on values). For a concrete array the flag is False.


def _dtype(arr) -> np.dtype:
    dtype = getattr(arr, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(arr).dtype


def _real_float(name: str, arr, what: str) -> None:
    """``arr`` has a real floating dtype: bool, integer and complex dtypes are refused (class ids or bools are
    not signs, and a complex number has none)."""
    dtype = _dtype(arr)
    if not np.issubdtype(dtype, np.floating):
        hint = (
            " (class ids or booleans are not signs: pass the real-valued outputs)"
            if dtype.kind in "biu"
            else ""
        )
        raise ValueError(f"{name} must be {what} with a real floating dtype; got dtype {dtype}{hint}")


def _nonempty(name: str, arr) -> None:
    if np.size(arr) == 0:
        raise ValueError(f"{name} is empty (shape {np.shape(arr)}); a metric of no points is undefined")


def _bad_values(name: str, arr) -> jax.Array | bool:
    """NaN/inf in a concrete ``arr``: ValueError naming ``name``; in a tracer: the traced flag."""
    if is_tracer(arr):
        return jnp.any(~jnp.isfinite(arr))
    finite(name, arr)
    return False


def scores(name: str, out, n: int | None = None) -> jax.Array | bool:
    """Real-valued scores / model outputs read as signs (``>= 0`` is class +1): shape (n,) with n >= 1, a real
    floating dtype (bool, integer class ids and complex are refused, also under jit), finite values (NaN/inf:
    ValueError when concrete, the returned traced flag under jit)."""
    vector(name, out, n)
    _nonempty(name, out)
    _real_float(name, out, "real-valued outputs")
    return _bad_values(name, out)


def scores_nd(name: str, out) -> jax.Array | bool:
    """Real-valued outputs of any shape read as signs: a real floating dtype, at least one element, finite
    values (as :func:`scores`, without the (n,) shape)."""
    _nonempty(name, out)
    _real_float(name, out, "real-valued outputs")
    return _bad_values(name, out)


def count(name: str, value, *, low: int = 0) -> None:
    """A Python / numpy integer >= ``low`` (a static count: loop lengths, grid sizes)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


def sign_labels(name: str, y, n: int | None = None) -> jax.Array | bool:
    """Labels (n,) of a floating dtype exactly in {-1.0, +1.0}: :func:`labels` when concrete; under jit the
    dtype and shape are checked and values outside {-1, +1} give the returned traced flag."""
    labels(name, y, n)
    _nonempty(name, y)
    if is_tracer(y):
        return jnp.any((y != 1.0) & (y != -1.0))
    return False


def same_shape(names: tuple[str, str], a, b, *, ndim: int | None = None) -> None:
    """``a`` and ``b`` have exactly the same shape (no broadcasting), ``ndim`` dimensions if given, and at
    least one element."""
    sa, sb = np.shape(a), np.shape(b)
    if ndim is not None and (len(sa) != ndim or len(sb) != ndim):
        want = "(N, d)" if ndim == 2 else f"{ndim}-D"
        raise ValueError(f"{names[0]} and {names[1]} must be {want} arrays; got shapes {sa} and {sb}")
    if sa != sb:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape (no broadcasting); got {sa} and {sb}"
        )
    _nonempty(names[0], a)


def real_values(name: str, arr) -> jax.Array | bool:
    """A real-valued (integer or floating, not bool or complex) array of finite values (NaN/inf: ValueError
    when concrete, the traced flag under jit)."""
    dtype = _dtype(arr)
    if dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real-valued (integer or floating) array; got dtype {dtype}")
    return _bad_values(name, arr)


def one_of(name: str, value: Any, options) -> None:
    """``value`` is one of ``options``: else ``ValueError("unknown <name> 'x'; expected one of a, b, c")``."""
    if value not in tuple(options):
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(str, options))}")


def literal_options(tp) -> tuple | None:
    """The choices of a ``Literal[...]`` type (also inside ``Optional`` / ``X | None``), or None."""
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [literal_options(a) for a in typing.get_args(tp)]
        opts = tuple(o for f in found if f for o in f)
        if opts:
            return opts + ((None,) if type(None) in typing.get_args(tp) else ())
    return None


def check_choices(cfg: Any) -> None:
    """Every field of the dataclass ``cfg`` annotated ``Literal[...]`` holds one of its choices (the one place
    fixed-choice strings are validated; call it from ``__post_init__``). Annotations may be strings
    (``from __future__ import annotations``): they are resolved with :func:`typing.get_type_hints`."""
    for name, tp in _hints(type(cfg)).items():
        opts = literal_options(tp)
        if opts is not None:
            one_of(name, getattr(cfg, name), opts)


@functools.cache
def _hints(cls) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in typing.get_type_hints(cls).items() if k in names}
