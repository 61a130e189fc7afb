"""Metrics on hand-computed examples, and the statistics against scipy and by simulation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ntk_adv import metrics
from ntk_adv.metrics import accuracy, agreement, fit_loglog_slope, mean_abs_cosine, mean_ci, relative_gap


def test_agreement_by_hand():
    f = jnp.array([1.0, -2.0, 0.0, 3.0, -0.5])
    g = jnp.array([2.0, -1.0, 1.0, -3.0, 0.0])  # agree, agree, agree (0 counts as +1), disagree, disagree
    assert float(agreement(f, g)) == pytest.approx(3 / 5)
    assert float(agreement(f, f)) == 1.0
    assert float(agreement(f, -f)) == pytest.approx(1 / 5)  # only at f = 0: -0.0 >= 0 counts as +1
    assert float(agreement(jnp.array([0.0, 0.0]), jnp.array([0.0, 5.0]))) == 1.0


def test_accuracy_by_hand():
    out = jnp.array([0.3, -0.1, 0.0, -2.0])
    assert float(accuracy(out, jnp.array([1.0, -1.0, 1.0, 1.0]))) == pytest.approx(3 / 4)
    assert float(accuracy(out, jnp.array([1.0, 1.0, -1.0, -1.0]))) == pytest.approx(2 / 4)  # 0 counts as +1
    assert float(accuracy(out, jnp.array([-1.0, 1.0, -1.0, 1.0]))) == 0.0


def test_mean_abs_cosine_by_hand():
    u = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [3.0, 4.0]])
    v = jnp.array([[-2.0, 0.0], [1.0, 0.0], [1.0, 1.0], [-4.0, 3.0]])
    # |cos| = 1, 1/sqrt(2), 0 (zero row), 0 (orthogonal)
    assert float(mean_abs_cosine(u, v)) == pytest.approx((1 + 1 / np.sqrt(2)) / 4, rel=1e-6)
    assert float(mean_abs_cosine(u[:2], 5.0 * u[:2])) == pytest.approx(1.0, rel=1e-6)


def test_relative_gap_by_hand():
    assert float(relative_gap(jnp.array([3.0, 4.0]), jnp.array([0.0, 4.0]))) == pytest.approx(3 / 4)


def test_mean_ci_matches_scipy_t_interval(rng):
    v = rng.normal(2.0, 0.7, size=7)
    ci = mean_ci(v)
    low, high = stats.t.interval(0.95, df=6, loc=v.mean(), scale=stats.sem(v))
    assert ci.mean == pytest.approx(v.mean()) and ci.n == 7
    assert ci.low == pytest.approx(low, rel=1e-12) and ci.high == pytest.approx(high, rel=1e-12)
    assert ci.half_width == pytest.approx((high - low) / 2)
    ci90 = mean_ci(v, level=0.9)
    assert (ci90.low, ci90.high) == pytest.approx(
        stats.t.interval(0.9, df=6, loc=v.mean(), scale=stats.sem(v))
    )
    # a NaN is an error naming the count, dropped only when asked (and counted); one value gives a
    # zero-width interval, none gives NaNs
    with pytest.raises(ValueError, match="1 of 8 values are NaN or inf"):
        mean_ci(np.append(v, np.nan))
    omitted = mean_ci(np.append(v, np.nan), nan="omit")
    assert (omitted.n, omitted.dropped, omitted.mean) == (7, 1, ci.mean)
    one = mean_ci([3.0])
    assert (one.mean, one.low, one.high, one.n) == (3.0, 3.0, 3.0, 1)
    assert np.isnan(mean_ci([]).mean)


def test_mean_ci_coverage_by_simulation(rng):
    """Over 2000 samples of 5 normals the 95% interval covers the true mean 95% of the time (binomial sd
    0.5%: accept [0.93, 0.97])."""
    cover = [mean_ci(s).low <= 1.0 <= mean_ci(s).high for s in rng.normal(1.0, 2.0, size=(2000, 5))]
    assert 0.93 <= np.mean(cover) <= 0.97


def test_fit_loglog_slope_recovers_a_known_slope(rng):
    """y = 3 m^(-1/2) with 10% multiplicative noise, 8 seeds x 6 widths: slope within 0.05 of -0.5, CI covers
    it, and the intercept is log 3."""
    widths = np.repeat(2.0 ** np.arange(4, 10), 8)
    y = 3.0 * widths**-0.5 * np.exp(0.1 * rng.standard_normal(widths.size))
    fit = fit_loglog_slope(widths, y)
    assert abs(fit.slope + 0.5) < 0.05 and fit.contains(-0.5), fit
    assert fit.intercept == pytest.approx(np.log(3.0), abs=0.15) and fit.n == widths.size
    assert not fit.contains(0.0)
    # noiseless: exact slope, degenerate interval
    exact = fit_loglog_slope([1, 2, 4, 8], [5.0, 2.5, 1.25, 0.625])
    assert exact.slope == pytest.approx(-1.0) and exact.high - exact.low < 1e-9


def test_fit_loglog_slope_coverage_by_simulation(rng):
    """The 95% slope interval covers the true slope in ~95% of 500 noisy replicates ([0.92, 0.98])."""
    x = np.repeat([16.0, 64.0, 256.0, 1024.0], 3)
    hits = [
        fit_loglog_slope(x, 2.0 * x**-0.5 * np.exp(0.2 * rng.standard_normal(x.size))).contains(-0.5)
        for _ in range(500)
    ]
    assert 0.92 <= np.mean(hits) <= 0.98


def test_fit_loglog_slope_rejects_degenerate_input():
    with pytest.raises(ValueError, match=">= 3 positive points"):
        fit_loglog_slope([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="distinct x"):
        fit_loglog_slope([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        fit_loglog_slope([1.0, 2.0, -4.0, 0.0], [1.0, 2.0, 3.0, 4.0])  # only 2 positive points remain


def test_flip_points_of_a_linear_predictor_are_exact():
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal(5), jnp.float32)
    predict = lambda q: q @ w - 0.1
    xa = jnp.asarray(rng.standard_normal((40, 5)), jnp.float32)
    xb = jnp.asarray(rng.standard_normal((40, 5)), jnp.float32)
    t, found = metrics.flip_points(predict, xa, xb, grid=16, bisection=25)
    fa, fb = np.asarray(predict(xa)), np.asarray(predict(xb))
    crosses = np.sign(fa) != np.sign(fb)
    assert np.array_equal(np.asarray(found), crosses)  # a line changes class at most once
    t_exact = fa / (fa - fb)
    np.testing.assert_allclose(np.asarray(t)[crosses], t_exact[crosses], atol=1e-5)
    assert np.all(np.isnan(np.asarray(t)[~crosses]))


def test_transfer_matrix_and_mantel():
    y = np.array([1.0, 1.0, -1.0, -1.0])
    clean = np.array([[1, 1, -1, -1], [1, -1, -1, -1]], float)  # model 1 misclassifies point 1
    adv = np.array(
        [
            [[-1, -1, 1, -1], [-1, -1, -1, -1]],  # source 0 fools itself on 0, 1, 2
            [[1, 1, 1, 1], [-1, -1, 1, 1]],
        ],
        float,
    )  # source 1 fools itself on 0, 2, 3
    tr = metrics.transfer_matrix(clean, adv, y, -y)
    assert tr[0, 0] == 1.0 and tr[1, 1] == 1.0
    assert tr[0, 1] == pytest.approx(1 / 2)  # base: points 0, 2 (fooled on source, correct on 1); fooled: 0
    assert tr[1, 0] == pytest.approx(2 / 3)  # base: points 0, 2, 3; model 0 fooled on 2, 3
    rng = np.random.default_rng(2)
    pts = rng.standard_normal((12, 2))
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    rho, p = metrics.mantel(dist, -dist + 0.01 * rng.standard_normal(dist.shape), 200, 0)
    assert rho < -0.9 and p < 0.02
