"""Metrics on hand-computed examples, and the statistics against scipy and by simulation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from ntk_adv import metrics
from ntk_adv.metrics import accuracy, agreement, fit_loglog_slope, mean_abs_cosine, relative_gap
from ntk_adv.verdicts import mean_ci


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
    assert ci.value == pytest.approx(v.mean()) and (ci.n, ci.method) == (7, "t")
    assert ci.low == pytest.approx(low, rel=1e-12) and ci.high == pytest.approx(high, rel=1e-12)
    assert ci.half_width == pytest.approx((high - low) / 2)
    ci90 = mean_ci(v, level=0.9)
    assert (ci90.low, ci90.high) == pytest.approx(
        stats.t.interval(0.9, df=6, loc=v.mean(), scale=stats.sem(v))
    )
    # a NaN is an error naming the count, dropped only when asked (and counted); one value gives a
    # zero-width interval, none is an error
    with pytest.raises(ValueError, match="1 of 8 values are NaN or inf"):
        mean_ci(np.append(v, np.nan))
    omitted = mean_ci(np.append(v, np.nan), nan="omit")
    assert (omitted.n, omitted.dropped, omitted.value) == (7, 1, ci.value)
    one = mean_ci([3.0])
    assert (one.value, one.low, one.high, one.n, one.method) == (3.0, 3.0, 3.0, 1, "single")
    with pytest.raises(ValueError, match="no finite values"):
        mean_ci([])


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


# ------------------------------------------------------------------------------- domain rules (issue 21)
# Every public metric refuses what it cannot measure: eagerly a ValueError naming the argument; under jit the
# shape/dtype rules still raise at trace time and bad values give NaN, never a number.

FEW = settings(max_examples=25, deadline=None)
# subnormals excluded: XLA on CPU flushes them to zero, so -1e-45 has sign +1 there and -1 in numpy
finite_floats = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False, width=32)


def float_vectors(min_size: int = 1, max_size: int = 8):
    return hnp.arrays(np.float32, st.integers(min_size, max_size), elements=finite_floats)


def test_the_reported_wrong_numbers_are_refusals():
    x = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    with pytest.raises(
        ValueError, match="f_out must be real-valued outputs with a real floating dtype; got dtype int"
    ):
        agreement([0, 1, 0, 1], [1, 0, 1, 0])  # class ids read as signs gave 1.0
    with pytest.raises(ValueError, match="f_out .* got dtype bool"):
        agreement(np.array([True, False]), np.array([False, True]))
    with pytest.raises(ValueError, match="outputs .* got dtype int"):
        accuracy(np.array([0, 1, 1]), np.array([-1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must contain only -1.0 and \+1.0; found \[0.0\]"):
        accuracy(np.array([-0.5, 0.5]), np.array([0.0, 1.0]))
    with pytest.raises(
        ValueError, match=r"u and v must have the same shape \(no broadcasting\); got \(12, 5\) and \(12, 1\)"
    ):
        mean_abs_cosine(x, x[:, :1])  # gave 0.838
    y = x[:, 0]
    with pytest.raises(
        ValueError, match=r"a and b must have the same shape \(no broadcasting\); got \(12,\) and \(12, 1\)"
    ):
        relative_gap(y, y[:, None])  # gave 4.899
    with pytest.raises(ValueError, match=r"u contains NaN or inf \(1 of 60 values\)"):
        mean_abs_cosine(np.where(np.arange(60).reshape(12, 5) == 7, np.nan, x), x)  # the NaN row counted 0
    with pytest.raises(ValueError, match=r"f_out is empty \(shape \(0,\)\)"):
        agreement(np.zeros(0, np.float32), np.zeros(0, np.float32))
    with pytest.raises(ValueError, match=r"outputs is empty"):
        accuracy(np.zeros(0, np.float32), np.zeros(0, np.float32))
    with pytest.raises(ValueError, match=r"b is all zero"):
        relative_gap(y, np.zeros_like(y))
    with pytest.raises(ValueError, match="complex"):
        mean_abs_cosine(x.astype(np.complex64), x)


def test_the_same_rules_under_jit():
    y = jnp.asarray([1.0, -1.0, 1.0])
    jagree, jacc = jax.jit(agreement), jax.jit(accuracy)
    jcos, jgap = jax.jit(mean_abs_cosine), jax.jit(relative_gap)
    # values: NaN, never a number
    assert np.isnan(float(jagree(y.at[1].set(jnp.inf), y)))
    assert np.isnan(float(jacc(y, jnp.asarray([1.0, 0.0, 1.0]))))  # a {0, 1} label under jit
    assert np.isnan(float(jcos(jnp.ones((3, 2)).at[2, 0].set(jnp.nan), jnp.ones((3, 2)))))
    assert np.isnan(float(jgap(y, jnp.zeros(3))))
    # shapes and dtypes raise at trace time
    with pytest.raises(ValueError, match="g_out must have shape"):
        jagree(y, y[:, None])
    with pytest.raises(ValueError, match="f_out must be real-valued outputs .* dtype int32"):
        jagree(jnp.asarray([0, 1, 1]), y)
    with pytest.raises(ValueError, match="same shape"):
        jcos(jnp.ones((3, 2)), jnp.ones((3, 1)))
    with pytest.raises(ValueError, match="empty"):
        jacc(jnp.zeros(0), jnp.zeros(0))
    # and a vmapped batch marks only its bad member
    out = jax.vmap(agreement)(jnp.ones((2, 3)).at[0, 0].set(jnp.nan), jnp.ones((2, 3)))
    assert np.isnan(out[0]) and out[1] == 1.0


@FEW
@given(hnp.arrays(st.sampled_from([np.int8, np.int32, np.int64, np.uint8, np.bool_]), st.integers(1, 8)))
def test_sign_metrics_refuse_every_integer_or_bool_dtype(ids):
    with pytest.raises(ValueError, match="f_out must be real-valued outputs with a real floating dtype"):
        agreement(ids, np.ones(ids.shape, np.float32))
    with pytest.raises(ValueError, match="g_out must be real-valued outputs with a real floating dtype"):
        agreement(np.ones(ids.shape, np.float32), ids)
    with pytest.raises(ValueError, match="outputs must be real-valued outputs"):
        accuracy(ids, np.ones(ids.shape, np.float32))


@FEW
@given(
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
)
def test_shapes_must_match_exactly(sa, sb):
    a, b = np.ones(sa, np.float32), np.ones(sb, np.float32)
    if sa != sb:
        with pytest.raises(ValueError, match="a and b must have the same shape"):
            relative_gap(a, b)
        if len(sa) == 2 and len(sb) == 2:
            with pytest.raises(ValueError, match="u and v must have the same shape"):
                mean_abs_cosine(a, b)
        if len(sa) == 1:
            with pytest.raises(ValueError, match="g_out must have shape"):
                agreement(a, b)
    else:
        assert float(relative_gap(a, b)) == 0.0
    if len(sa) != 2:
        with pytest.raises(ValueError, match=r"u and v must be \(N, d\) arrays"):
            mean_abs_cosine(a, a)
    if len(sa) != 1:
        with pytest.raises(ValueError, match="f_out must have shape"):
            agreement(a, a)


@FEW
@given(float_vectors(), st.data())
def test_a_nan_or_inf_is_an_error_eagerly_and_nan_under_jit(v, data):
    i = data.draw(st.integers(0, v.size - 1))
    bad_value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    w = v.copy()
    w[i] = bad_value
    labels = np.where(v >= 0, 1.0, -1.0).astype(np.float32)
    with pytest.raises(ValueError, match="g_out contains NaN or inf"):
        agreement(v, w)
    with pytest.raises(ValueError, match="outputs contains NaN or inf"):
        accuracy(w, labels)
    with pytest.raises(ValueError, match="u contains NaN or inf"):
        mean_abs_cosine(w[:, None], v[:, None])
    with pytest.raises(ValueError, match="a contains NaN or inf"):
        relative_gap(w, v + 1.0)
    assert np.isnan(float(jax.jit(agreement)(v, w)))
    assert np.isnan(float(jax.jit(accuracy)(w, labels)))
    assert np.isnan(float(jax.jit(mean_abs_cosine)(w[:, None], v[:, None])))
    assert np.isnan(float(jax.jit(relative_gap)(w, v + 1.0)))


@FEW
@given(float_vectors(), st.data())
def test_valid_scores_give_the_reference_number_eagerly_and_under_jit(f, data):
    g = data.draw(hnp.arrays(np.float32, f.shape, elements=finite_floats))
    labels = data.draw(hnp.arrays(np.float32, f.shape, elements=st.sampled_from([-1.0, 1.0])))
    sign = lambda v: np.where(v >= 0, 1.0, -1.0)
    want_agree = np.mean(sign(f) == sign(g))
    want_acc = np.mean(sign(f) == labels)
    assert float(agreement(f, g)) == pytest.approx(want_agree)
    assert float(jax.jit(agreement)(f, g)) == pytest.approx(want_agree)
    assert float(accuracy(f, labels)) == pytest.approx(want_acc)
    assert float(jax.jit(accuracy)(f, labels)) == pytest.approx(want_acc)
    cos = float(mean_abs_cosine(f[:, None], g[:, None]))
    assert 0.0 <= cos <= 1.0 + 1e-6


@FEW
@given(
    st.lists(st.floats(0.1, 100.0), min_size=0, max_size=6),
    st.lists(st.sampled_from(["nan", "inf", "x<=0", "y<=0"]), min_size=0, max_size=4),
)
def test_fit_loglog_slope_reports_every_dropped_point(good_x, bad):
    x = list(good_x) + [{"nan": 2.0, "inf": np.inf, "x<=0": 0.0, "y<=0": 3.0}[b] for b in bad]
    y = [2.0 * v**-0.5 for v in good_x] + [
        {"nan": np.nan, "inf": 1.0, "x<=0": 1.0, "y<=0": -1.0}[b] for b in bad
    ]
    usable = len(good_x) >= 3 and np.ptp(np.log(good_x)) > 0
    if not usable:
        with pytest.raises(ValueError, match=">= 3 positive points"):
            fit_loglog_slope(x, y)
        if bad and len(good_x) < 3:
            with pytest.raises(ValueError, match=f"dropped {len(bad)} of {len(x)} points"):
                fit_loglog_slope(x, y)
        return
    fit = fit_loglog_slope(x, y)
    assert fit.n == len(good_x) and fit.dropped == len(bad)
    assert fit.slope == pytest.approx(-0.5, abs=1e-6)
    if not bad:
        assert fit.why == ""
    for kind, what in (("x<=0", "with x <= 0"), ("y<=0", "with y <= 0")):
        if kind in bad:
            assert f"{bad.count(kind)} {what}" in fit.why
    if "nan" in bad or "inf" in bad:
        assert f"{bad.count('nan') + bad.count('inf')} with NaN/inf" in fit.why


def test_fit_loglog_slope_shapes():
    with pytest.raises(
        ValueError, match=r"x and y must be 1-D of the same length; got shapes \(4,\) and \(3,\)"
    ):
        fit_loglog_slope([1, 2, 3, 4], [1, 2, 3])
    with pytest.raises(ValueError, match="level must be"):
        fit_loglog_slope([1, 2, 3], [1, 2, 3], level=1.5)


def test_geometry_and_transfer_metrics_refuse_bad_input():
    y = np.array([1.0, 1.0, -1.0, -1.0])
    clean = np.ones((2, 4))
    adv = np.ones((2, 2, 4))
    with pytest.raises(ValueError, match=r"out_clean must be \(n_models, n_test\) and out_adv"):
        metrics.transfer_matrix(clean, adv[:, :, :3], y, -y)
    with pytest.raises(ValueError, match=r"y must contain only -1.0 and \+1.0; found \[0.0\]"):
        metrics.transfer_matrix(clean, adv, (y + 1) / 2, -y)
    with pytest.raises(ValueError, match="target must have shape"):
        metrics.transfer_matrix(clean, adv, y, -y[:3])
    with pytest.raises(ValueError, match=r"out_adv contains NaN or inf \(1 of 16 values\)"):
        metrics.white_box_success(clean, np.where(np.arange(16).reshape(2, 2, 4) == 5, np.nan, adv), y)
    with pytest.raises(ValueError, match="out_clean must be real-valued outputs .* dtype int"):
        metrics.white_box_success(clean.astype(int), adv, y)
    with pytest.raises(ValueError, match=r"dist and sim must be square matrices of one shape"):
        metrics.mantel(np.ones((3, 3)), np.ones((3, 2)), 10, 0)
    with pytest.raises(ValueError, match="permutations must be an integer >= 0"):
        metrics.mantel(np.ones((3, 3)), np.ones((3, 3)), -1, 0)
    xa = jnp.ones((4, 2))
    with pytest.raises(ValueError, match=r"xa and xb must have the same shape \(no broadcasting\)"):
        metrics.flip_points(lambda q: q[:, 0], xa, xa[:1])
    with pytest.raises(ValueError, match="grid must be an integer >= 1; got 0"):
        metrics.flip_points(lambda q: q[:, 0], xa, -xa, grid=0)
