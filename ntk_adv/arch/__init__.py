"""Architectures: one frozen description per network family (:class:`Architecture`, docs/architecture.md).

``ARCHITECTURES`` maps the ``--arch`` choice to its class (``architecture(name)`` looks one up); a new
architecture is one module here plus its tests. ``two-layer`` is :class:`ntk_adv.models.TwoLayerConfig`,
imported on first use (models imports :mod:`ntk_adv.arch.base`, so importing it here eagerly would be
circular).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ntk_adv.arch._deep import blockwise
from ntk_adv.arch.base import (
    INF_WIDTH,
    PARAMETRIZATIONS,
    Architecture,
    KernelKind,
    Parametrization,
    check_width,
    is_infinite,
)
from ntk_adv.arch.fc import FC


class _Registry(Mapping):
    """name -> Architecture subclass; 'two-layer' resolves lazily to models.TwoLayerConfig."""

    _names = ("two-layer", "fc", "cnn")

    def __getitem__(self, name: str) -> type[Architecture]:
        if name == "two-layer":
            from ntk_adv.models import TwoLayerConfig

            return TwoLayerConfig
        if name == "fc":
            return FC
        if name == "cnn":
            from ntk_adv.arch.cnn import CNN

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


__all__ = [
    "ARCHITECTURES",
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
