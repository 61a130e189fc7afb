"""The architecture object: one frozen, hashable description of a network (docs/architecture.md).

An :class:`Architecture` yields the neural-tangents-style triple and what the suite needs from a net:

* ``init(key, input_shape, dtype) -> params``  a pytree; ``input_shape`` is one example's shape
  (``x.shape[1:]``: ``(d,)`` for vectors, ``(H, W, C)`` for images), so images stay images for convolutions;
* ``apply(params, x) -> out``  ``x`` (N, *input_shape); ``out`` (N,) for ``n_out == 1`` else (N, n_out);
* ``kernel(x1, x2, get) -> (N1, N2)``  the infinite-width kernel (``get`` in {'ntk', 'nngp'}) of the trained
  parameters (:attr:`trained`), in the architecture's parametrization, jit-able and differentiable in both
  inputs (the attacks differentiate the kernel predictors);
* ``trainable_mask(params)``  a pytree of bools laid out like ``params``: which leaves train;
* ``preactivations(params, x)``  the first hidden layer's pre-activations (N, ...) (laziness: activation
  flips);
* ``first_layer(params)``  the first layer's weights (laziness: relative weight movement);
* ``with_width(width)``  the same architecture at another width.

Width: an ``int >= 1`` is a finite net; :data:`INF_WIDTH` (``math.inf``) is the one spelling of infinite width
and means "use the kernel" (``init``/``apply`` refuse it). ``None``, ``'inf'`` and ``'infinite'`` are refused
by :func:`check_width`, naming the one spelling.

Parametrization: ``standard`` (weights ~ N(0, 1/fan_in), no explicit scale in apply) or ``ntk`` (weights
~ N(0, 1), apply divides by sqrt(fan_in)); the same function at init for the same key, different kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, get_args

import numpy as np

Parametrization = Literal["standard", "ntk"]
PARAMETRIZATIONS: tuple[str, ...] = get_args(Parametrization)
# a command's --parametrization: either one, or auto (standard for two-layer, ntk for fc and cnn)
ParametrizationChoice = Literal["auto", "standard", "ntk"]
KernelKind = Literal["ntk", "nngp"]
INF_WIDTH = (
    math.inf
)  # the one spelling of "infinite width" (also the ``width`` column of infinite-width rows)


def is_infinite(width) -> bool:
    return isinstance(width, (float, np.floating)) and width == INF_WIDTH


def check_width(width, name: str = "width"):
    """``width`` as an int >= 1 or :data:`INF_WIDTH`; anything else is a one-line ValueError naming
    ``name``."""
    if is_infinite(width):
        return INF_WIDTH
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(
            f"{name} must be an integer >= 1 or ntk_adv.INF_WIDTH (math.inf, infinite width), got {width!r}"
        )
    return int(width)


@dataclass(frozen=True)
class Architecture:
    """Base of every architecture (frozen, hashable: equal descriptions share caches and jit traces).

    Subclasses set :attr:`name` (the ``--arch`` choice) and implement the methods below; fields common to all
    are ``width``, ``parametrization`` and ``n_out``."""

    name: ClassVar[str] = ""

    width: int | float = 1
    parametrization: Parametrization = "ntk"
    n_out: int = 1

    def __post_init__(self):
        object.__setattr__(self, "width", check_width(self.width))
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"unknown parametrization {self.parametrization!r}; "
                f"expected one of {', '.join(PARAMETRIZATIONS)}"
            )
        if isinstance(self.n_out, bool) or not isinstance(self.n_out, (int, np.integer)) or self.n_out < 1:
            raise ValueError(f"n_out must be an integer >= 1, got {self.n_out!r}")

    # ---- identity
    @property
    def infinite(self) -> bool:
        return is_infinite(self.width)

    @property
    def depth(self) -> int:
        """Number of weight layers (the two-layer net has depth 2)."""
        raise NotImplementedError

    def with_width(self, width) -> Architecture:
        return replace(self, width=width)

    def describe(self) -> dict[str, Any]:
        """The fields as a flat dict (the store's columns and the figures' labels)."""
        from dataclasses import asdict

        return {"arch": self.name, **asdict(self)}

    def _finite(self, what: str) -> int:
        if self.infinite:
            raise ValueError(f"{what} needs a finite width; width = INF_WIDTH means: use the kernel")
        return int(self.width)

    # ---- the triple
    def init(self, key, input_shape: tuple[int, ...], dtype=None) -> Any:
        raise NotImplementedError

    def apply(self, params, x):
        raise NotImplementedError

    def kernel(self, x1, x2, get: KernelKind = "ntk"):
        raise NotImplementedError

    # ---- what the suite needs
    def trainable_mask(self, params) -> Any:
        raise NotImplementedError

    def preactivations(self, params, x):
        raise NotImplementedError

    def first_layer(self, params):
        raise NotImplementedError
