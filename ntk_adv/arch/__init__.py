"""Architectures: one frozen description per network family (:class:`Architecture`, docs/architecture.md).

``ARCHITECTURES`` maps the ``--arch`` choice to its class (``architecture(name)`` looks one up); a new
architecture is one module here plus its tests. ``two-layer`` is :class:`ntk_adv.models.TwoLayerConfig`,
imported on first use (models imports :mod:`ntk_adv.arch.base`, so importing it here eagerly would be
circular).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal, get_args

from ntk_adv.arch._deep import Trained, blockwise
from ntk_adv.arch.base import (
    INF_WIDTH,
    PARAMETRIZATIONS,
    Architecture,
    KernelKind,
    Parametrization,
    check_width,
    is_infinite,
)
from ntk_adv.arch.cnn import CNN
from ntk_adv.arch.fc import FC

ArchName = Literal["two-layer", "fc", "cnn"]  # the --arch choices, the keys of ARCHITECTURES


class _Registry(Mapping):
    """name -> Architecture subclass; 'two-layer' resolves lazily to models.TwoLayerConfig."""

    _names: tuple[str, ...] = get_args(ArchName)

    def __getitem__(self, name: str) -> type[Architecture]:
        if name == "two-layer":
            from ntk_adv.models import TwoLayerConfig

            return TwoLayerConfig
        if name == "fc":
            return FC
        if name == "cnn":
            return CNN
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


ARCHITECTURES: Mapping[str, type[Architecture]] = _Registry()


def architecture(name: str) -> type[Architecture]:
    """The class of ``--arch name``; an unknown name is a one-line ValueError listing the choices."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r}; expected one of {', '.join(ARCHITECTURES)}"
        ) from None


def build(name: str, width, *, depth: int | None = None, option: str = "--arch", **fields) -> Architecture:
    """The architecture ``name`` at ``width`` (an int or :data:`INF_WIDTH`) with ``depth`` (None: the
    architecture's default; the two-layer net has depth 2 only) and any other of its ``fields`` (e.g.
    ``gamma``, ``parametrization``, ``n_out``); a field the architecture does not have is a one-line
    ValueError naming ``option`` (unless its value is the neutral 0 / None), as is an unknown name."""
    import dataclasses

    cls = architecture(name)
    names = {f.name for f in dataclasses.fields(cls)}
    kw: dict = {"width": width}
    for key, value in fields.items():
        if key in names:
            kw[key] = value
        elif value not in (None, 0, 0.0):
            raise ValueError(f"{option} {name} has no field {key!r} (got {value!r})")
    if depth is not None:
        if "depth" in names:
            kw["depth"] = depth
        elif depth != 2:
            raise ValueError(f"--depth: {option} {name} has a fixed depth 2; got {depth}")
    return cls(**kw)


__all__ = [
    "build",
    "ARCHITECTURES",
    "ArchName",
    "Trained",
    "CNN",
    "FC",
    "INF_WIDTH",
    "PARAMETRIZATIONS",
    "Architecture",
    "KernelKind",
    "Parametrization",
    "architecture",
    "blockwise",
    "check_width",
    "is_infinite",
]
