"""Architectures: one frozen description per network family (:class:`Architecture`, docs/architecture.md).

``ARCHITECTURES`` maps the ``--arch`` choice to its class; a new
architecture is one module here plus its tests.
"""

from __future__ import annotations

from ntk_adv.arch.base import (
    INF_WIDTH,
    PARAMETRIZATIONS,
    Architecture,
    KernelKind,
    Parametrization,
    check_width,
    is_infinite,
)

__all__ = [
    "INF_WIDTH",
    "PARAMETRIZATIONS",
    "Architecture",
    "KernelKind",
    "Parametrization",
    "check_width",
    "is_infinite",
]
