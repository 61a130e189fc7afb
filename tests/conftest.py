"""Shared test configuration and small fixtures.

* Implicit numpy-style rank promotion ((N, m) + (m,)) is an error in every test: silent broadcasting bugs
  surface as ValueError instead of wrong numbers. neural-tangents (stax kernels, predict, empirical_ntk_fn
  with the jacobian-contraction and NTK-vector-product implementations), optax (sgd, momentum,
  reduce_on_plateau) and flax.linen run under this setting.
* Data fixtures are numpy float64 arrays, so a test can turn them into float64 jax arrays inside
  ``with enable_x64():`` (a jax array created outside that context would already be float32).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def strict_rank_promotion():
    previous = jax.config.jax_numpy_rank_promotion
    jax.config.update("jax_numpy_rank_promotion", "raise")
    yield
    jax.config.update("jax_numpy_rank_promotion", previous)


@pytest.fixture
def key() -> jax.Array:
    return jax.random.PRNGKey(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def small_data(rng):
    """Training inputs x (N, d), labels y (N,) in {-1, +1}, and held-out inputs z (M, d); numpy float64."""
    n, m, d = 12, 9, 5
    x = rng.standard_normal((n, d))
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    y[:2] = [1.0, -1.0]  # both classes present
    z = rng.standard_normal((m, d))
    return x, y, z
