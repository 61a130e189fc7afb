"""The verdict type: intervals respect their range, and each verdict (confirmed, refuted, inconclusive) comes
out exactly when the numbers say so - including the cases that used to pass by construction."""

import math

import numpy as np
import pytest

from ntk_adv import verdicts
from ntk_adv.metrics import fit_loglog_slope


def test_wilson_closed_form():
    est = verdicts.wilson(8, 10)  # textbook value: 0.8 with 95% Wilson interval [0.490, 0.943]
    assert est.value == 0.8
    assert est.low == pytest.approx(0.4902, abs=1e-4) and est.high == pytest.approx(0.9433, abs=1e-4)
    assert verdicts.wilson(10, 10).high == 1.0 and verdicts.wilson(0, 10).low == 0.0
    with pytest.raises(ValueError, match="0 <= k <= n"):
        verdicts.wilson(11, 10)


def test_seed_proportion_stays_in_range_and_covers_the_spread():
    for p in ([1.0, 1.0, 1.0], [0.0, 0.0], [0.98, 1.0, 0.99, 1.0, 0.97], [0.531, 0.501, 0.997, 0.501]):
        est = verdicts.seed_proportion(p, 200)
        assert 0.0 <= est.low <= est.value <= est.high <= 1.0
    wide = verdicts.seed_proportion([0.531, 0.501, 0.997, 0.501], 1000)
    assert wide.high - wide.low > 0.4  # one seed far from the others: few seeds cannot pin the mean
    one = verdicts.seed_proportion([0.93], 1000)
    assert one.method == "wilson" and one.high - one.low > 0.02  # one seed: an interval over test points
    with pytest.raises(ValueError, match="not finite"):
        verdicts.seed_proportion([0.5, float("nan")], 100)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        verdicts.seed_proportion([1.2], 100)


def test_equals_gives_all_three_verdicts():
    tight_in = verdicts.Estimate(0.51, 0.50, 0.52, 5, "t")
    tight_out = verdicts.Estimate(0.70, 0.66, 0.74, 5, "t")
    wide = verdicts.Estimate(0.55, 0.40, 0.70, 5, "t")
    assert verdicts.equals("a", "a", 0.5, 0.05, tight_in).verdict == "confirmed"
    refuted = verdicts.equals("b", "b", 0.5, 0.05, tight_out)
    assert refuted.verdict == "refuted" and "0.550" in refuted.reason and "above" in refuted.reason
    unsure = verdicts.equals("c", "c", 0.5, 0.05, wide)
    assert unsure.verdict == "inconclusive" and "0.450" in unsure.reason and "0.550" in unsure.reason


def test_ties_single_seeds_and_chance_cannot_be_confirmed():
    tie = verdicts.seed_mean([0.0, 0.0, 0.0])  # "rises": difference > 0 strictly
    assert verdicts.above("rise", "rises", 0.0, tie).verdict == "inconclusive"
    single = verdicts.seed_mean([0.9])
    assert verdicts.equals("one", "one seed", 0.9, 0.05, single).verdict == "inconclusive"
    chance = verdicts.seed_proportion([0.52, 0.47, 0.55, 0.49, 0.5], 200)
    assert verdicts.above("chance", "above chance", 0.5, chance).verdict == "inconclusive"
    below_chance = verdicts.seed_proportion([0.2, 0.25, 0.22, 0.18, 0.21], 200)
    assert verdicts.above("chance", "above chance", 0.5, below_chance).verdict == "refuted"


def test_slope_claim_refutes_a_wrong_rate():
    rng = np.random.default_rng(0)
    m = np.repeat([64, 256, 1024, 4096], 5).astype(float)
    gap = 3.0 * m**-0.5 * np.exp(0.05 * rng.standard_normal(m.size))
    fit = fit_loglog_slope(m, gap)
    assert verdicts.slope("s", "m^-1/2", -0.5, 0.1, fit).verdict == "confirmed"
    assert verdicts.slope("s", "m^-1", -1.0, 0.1, fit).verdict == "refuted"


def test_claim_dict_is_json_ready():
    c = verdicts.above("x", "x above 0.5", 0.5, verdicts.seed_proportion([0.9, 0.95, 0.92], 100)).to_dict()
    assert c["verdict"] == "confirmed" and c["region"] == [0.5, "inf"] and c["prediction"] == "> 0.5"
    assert c["measured_ci95"][0] > 0.5 and not math.isnan(c["measured_value"])
    with pytest.raises(ValueError, match="outside its interval"):
        verdicts.Estimate(0.9, 0.1, 0.2, 3, "t")


def test_seed_proportion_never_collapses_at_the_edges():
    """All seeds at exactly 0 (or 1): the interval is the pooled Wilson interval, not a point."""
    from ntk_adv.verdicts import seed_proportion, wilson

    zero = seed_proportion([0.0, 0.0, 0.0, 0.0], 10)
    assert zero.value == 0.0 and zero.low == 0.0
    assert zero.high == wilson(0, 40).high > 0.05
    one = seed_proportion([1.0] * 5, 20)
    assert one.high == 1.0 and one.low == wilson(100, 100).low < 0.97


def test_a_slope_claim_names_the_points_its_fit_dropped():
    x = [16.0, 32.0, 64.0, 128.0, 256.0]
    fit = fit_loglog_slope(x, [v**-0.5 for v in x[:4]] + [0.0])
    assert (fit.dropped, fit.why) == (1, "1 with y <= 0")
    claim = verdicts.slope("s", "slope -1/2", -0.5, 0.1, fit)
    assert "1 points dropped from the log-log fit (1 with y <= 0)" in claim.basis
