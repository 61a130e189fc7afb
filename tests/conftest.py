"""Shared test configuration and small fixtures.

* Implicit numpy-style rank promotion ((N, m) + (m,)) is an error in every test: silent broadcasting bugs
  surface as ValueError instead of wrong numbers. neural-tangents (stax kernels, predict, empirical_ntk_fn
  with the jacobian-contraction and NTK-vector-product implementations), optax (sgd, momentum,
  reduce_on_plateau) and flax.linen run under this setting.
* Tests that compare against neural-tangents are marked ``oracle``: they run in the pinned oracle
  environment (``bash oracle/build``, then ``.venv-oracle/bin/python -m pytest -m oracle``) and skip, saying
  so, elsewhere.
* Data fixtures are numpy float64 arrays, so a test can turn them into float64 jax arrays inside
  ``with enable_x64():`` (a jax array created outside that context would already be float32).
"""

from __future__ import annotations

import functools

import jax
import jax.experimental
import jax.numpy as jnp
import numpy as np
import pytest

if not hasattr(jax.experimental, "enable_x64"):  # current JAX: the context manager is jax.enable_x64
    jax.experimental.enable_x64 = jax.enable_x64
from jax.experimental import enable_x64  # noqa: E402

from ntk_adv import kernels, models  # noqa: E402


@functools.cache
def oracle_absent() -> str | None:
    """Why the neural-tangents oracle cannot run here (one line), or None where it imports."""
    try:
        kernels.neural_tangents()
    except kernels.OracleMissing as err:
        return str(err)
    return None


def pytest_runtest_setup(item):
    """A test marked ``oracle`` (it compares against neural-tangents) skips, saying how to build the oracle
    environment, where neural-tangents does not import (the default lock: current JAX)."""
    if item.get_closest_marker("oracle") is not None and (reason := oracle_absent()) is not None:
        pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test that reaches for neural-tangents without the ``oracle`` marker fails saying so, instead of
    erroring on the default lock or escaping the oracle run (``pytest -m oracle``)."""
    try:
        return (yield)
    except kernels.OracleMissing:
        if pyfuncitem.get_closest_marker("oracle") is None:
            msg = f"{pyfuncitem.nodeid} uses neural-tangents: mark it @pytest.mark.oracle"
            pytest.fail(msg, pytrace=False)
        raise


@pytest.fixture(scope="module", autouse=True)
def release_compiled_code():
    """Drop JAX's compiled executables after every test module. One pytest process compiles thousands of
    programs; on jax 0.12 their code sections exhaust the kernel's memory-map limit (vm.max_map_count, 65530
    here) about 600 tests in ("releaseMappedMemory failed: Cannot allocate memory", then failures or an
    abort). Modules share few programs, so this costs little compile time."""
    yield
    jax.clear_caches()


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


class WideInit:
    """NTK-parametrization weights of ``seeds`` independent nets of width ``width`` on ``dim`` inputs (numpy
    float64): W (S, m, d), b (S, m), A (S, m), all N(0, 1), so the first m neurons of each are a width-m
    init and one draw serves a whole width sweep (random-number compilation dominates small tests)."""

    seeds, width, dim = 8, 4096, 8

    def __init__(self):
        cfg = models.TwoLayerConfig(width=self.seeds * self.width, parametrization="ntk")
        with enable_x64():  # one net of width S * m, drawn by the library, split into S nets
            p = models.init_params(cfg, self.dim, key=jax.random.PRNGKey(100), dtype=jnp.float64)
        shape = (self.seeds, self.width)
        self.w = np.asarray(p.w).reshape(*shape, self.dim)
        self.b, self.a = np.asarray(p.b).reshape(shape), np.asarray(p.a).reshape(shape)

    def params(self, m: int, parametrization: str, seeds: int | None = None) -> models.TwoLayerParams:
        """Stacked (seeds, ...) width-m params; the standard parametrization stores (W / sqrt(d), b,
        A / sqrt(m)), exactly the map ``models.init_params`` applies (checked in test_models). Call inside
        ``enable_x64()`` for float64."""
        s = slice(0, self.seeds if seeds is None else seeds)
        w, b, a = (jnp.asarray(v[s, :m]) for v in (self.w, self.b, self.a))
        if parametrization == "standard":
            w, a = w / np.sqrt(self.dim), a / np.sqrt(m)
        return models.TwoLayerParams(w=w, b=b, a=a)


@pytest.fixture(scope="session")
def wide_init() -> WideInit:
    return WideInit()
