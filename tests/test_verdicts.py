"""The verdict type: intervals respect their range, and each verdict (confirmed, refuted, inconclusive) comes
out exactly when the numbers say so - including the cases that used to pass by construction."""

import json
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
    assert wide.method == verdicts.SEED_PROPORTION_METHOD and wide.bounds == (0.0, 1.0)
    one = verdicts.seed_proportion([0.93], 1000)
    assert one.method == verdicts.SEED_PROPORTION_METHOD and one.n == 1
    # one seed says little about the protocol's mean: its Wilson interval over seeds (n = 1), far wider than
    # the Wilson interval of that one trained pair over its test points
    assert one.low < verdicts.wilson(930, 1000).low - 0.3 and one.high == pytest.approx(
        verdicts.wilson(0.93, 1).high
    )
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
    below_chance = verdicts.seed_proportion([0.2, 0.25, 0.22, 0.18, 0.21] * 4, 200)  # 20 seeds
    assert verdicts.above("chance", "above chance", 0.5, below_chance).verdict == "refuted"
    # five seeds at 0.2 cannot exclude chance: seeds of a bimodal protocol could all have landed low
    assert verdicts.above(
        "c", "c", 0.5, verdicts.seed_proportion([0.2, 0.25, 0.22, 0.18, 0.21], 200)
    ).verdict == ("inconclusive")


def test_slope_claim_refutes_a_wrong_rate():
    rng = np.random.default_rng(0)
    m = np.repeat([64, 256, 1024, 4096], 5).astype(float)
    gap = 3.0 * m**-0.5 * np.exp(0.05 * rng.standard_normal(m.size))
    fit = fit_loglog_slope(m, gap)
    assert verdicts.slope("s", "m^-1/2", -0.5, 0.1, fit).verdict == "confirmed"
    assert verdicts.slope("s", "m^-1", -1.0, 0.1, fit).verdict == "refuted"


def test_claim_dict_is_json_ready():
    est = verdicts.seed_proportion([0.9, 0.95, 0.92, 0.97, 0.93, 0.96, 0.91, 0.94], 100)
    c = verdicts.above("x", "x above 0.5", 0.5, est).to_dict()
    json.dumps(c)
    json.dumps(verdicts.equals("y", "y", 0.9, 0.01, est).to_dict())  # inconclusive, with a seeds hint
    json.dumps(
        verdicts.equals(
            "z", "z", 0.0, 0.01, verdicts.paired_difference([0.01, 0.02], [0.3, 0.3], 200)
        ).to_dict()
    )
    assert c["verdict"] == "confirmed" and c["region"] == [0.5, "inf"] and c["prediction"] == "> 0.5"
    assert c["measured_ci95"][0] > 0.5 and not math.isnan(c["measured_value"])
    with pytest.raises(ValueError, match="outside its interval"):
        verdicts.Estimate(0.9, 0.1, 0.2, 3, "t")


def test_seed_proportion_never_collapses_at_the_edges():
    """All seeds at exactly 0 (or 1): the interval is the Wilson interval over seeds (at least as wide as the
    pooled one over test points), not a point."""
    from ntk_adv.verdicts import seed_proportion, wilson

    zero = seed_proportion([0.0, 0.0, 0.0, 0.0], 10)
    assert zero.value == 0.0 and zero.low == 0.0
    assert zero.high == wilson(0, 4).high > wilson(0, 40).high > 0.05
    one = seed_proportion([1.0] * 5, 20)
    assert one.high == 1.0 and one.low == wilson(5, 5).low < wilson(100, 100).low < 0.97
    # many seeds: the pooled floor over test points is what keeps the interval open
    many = seed_proportion([1.0] * 2000, 20, n_boot=50)
    assert many.low == pytest.approx(wilson(2000, 2000).low) and many.low < 1.0


# ------------------------------------------------------------------------ the seed as the statistical unit
def _coverage_proportion(chance_share: float, n_seeds: int, reps: int, rng) -> float:
    """Coverage of seed_proportion for agreements drawn from a chance/0.99 mixture of seeds (random targets:
    a seed agrees either at chance or almost always), each seed's agreement Binomial(200, p) / 200."""
    truth = chance_share * 0.5 + (1 - chance_share) * 0.99
    p = np.where(rng.random((reps, n_seeds)) < chance_share, 0.5, 0.99)
    agreement = rng.binomial(200, p) / 200
    hits = 0
    for row in agreement:
        est = verdicts.seed_proportion(row, 200, n_boot=400)
        hits += est.low <= truth <= est.high
    return hits / reps


def _coverage_paired(n_seeds: int, reps: int, rng, n_cells: int = 4, n_points: int = 200) -> float:
    """Coverage of paired_difference (true value 0): a seed effect N(0, 0.02) shared by the seed's cells, a
    small per-cell N(0, 0.005), and test-point noise of per-point sd 0.3 over n_points points per cell."""
    shape = (reps, n_seeds, n_cells)
    seed_effect = rng.normal(0.0, 0.02, (reps, n_seeds, 1))
    diff = seed_effect + rng.normal(0.0, 0.005, shape) + rng.normal(0.0, 0.3 / np.sqrt(n_points), shape)
    sd = np.full((n_seeds, n_cells), 0.3)
    hits = 0
    for row in diff:
        est = verdicts.paired_difference(row, sd, n_points, n_boot=400)
        hits += est.low <= 0.0 <= est.high
    return hits / reps


def test_coverage_with_the_seed_as_unit():
    """At nominal 95%, both intervals cover the true mean in >= 93% of 400 simulated experiments, for 3 to 20
    seeds - including the bimodal agreements under which the old seed-mean interval covered 27% at 3 seeds."""
    rng = np.random.default_rng(20260)
    reps, table = 400, {}
    for n_seeds in (3, 5, 8, 20):
        for share in (0.1, 0.3):
            table[f"proportion {int(share * 100)}/{int(100 - share * 100)}", n_seeds] = _coverage_proportion(
                share, n_seeds, reps, rng
            )
        table["paired difference", n_seeds] = _coverage_paired(n_seeds, reps, rng)
    print("\ncoverage at nominal 95% (400 reps):")
    for (what, n_seeds), cov in table.items():
        print(f"  {what:24s} S={n_seeds:2d}: {cov:.3f}")
    low = {k: v for k, v in table.items() if v < 0.93}
    assert not low, low


def test_paired_difference_identical_seeds_are_not_a_point():
    """Three seeds that all measure the same 0.009 (one of 108 test points) do not pin the difference at
    0.009: the test points still leave an interval, wide enough that a 0.005 tolerance around 0 cannot be
    decided either way."""
    sd = verdicts.paired_point_sd(0.991, 1.0)
    assert sd == pytest.approx(math.sqrt(0.991 * 0.009))
    est = verdicts.paired_difference([[0.009, 0.009]] * 3, [[sd, sd]] * 3, 108)
    assert est.value == pytest.approx(0.009) and est.high - est.low > 0.02 and est.low < 0 < est.high
    claim = verdicts.equals("same", "measured equals predicted", 0.0, 0.005, est)
    assert claim.verdict == "inconclusive" and claim.verdict != "refuted"
    old = verdicts.seed_mean([0.009] * 3, bounds=(-1, 1))  # the interval this replaces: a point
    assert old.low == old.high and verdicts.equals("old", "old", 0.0, 0.005, old).verdict == "refuted"
    # the flat form: one cell per seed; one seed gets an interval over its test points
    one = verdicts.paired_difference([0.009], [sd], 108)
    assert one.method == "points" and one.n == 1 and one.low < 0 < one.high
    assert verdicts.equals("one", "one", 0.0, 0.005, one).verdict == "inconclusive"
    assert verdicts.paired_difference([0.0, 0.0], [0.0, 0.0], 100).high == 0.0  # zero only with zero sd
    assert np.allclose(verdicts.paired_point_sd(np.array([0.5, 1.0]), np.array([0.5, 0.0])), [1.0, 0.0])


def test_paired_difference_decides_when_the_numbers_do():
    big = verdicts.paired_difference(
        [[0.20, 0.22], [0.18, 0.21], [0.23, 0.19]], [[verdicts.paired_point_sd(0.9, 0.7)] * 2] * 3, 200
    )
    refuted = verdicts.equals("big", "no difference", 0.0, 0.05, big)
    assert refuted.verdict == "refuted" and "above" in refuted.reason
    rng = np.random.default_rng(3)
    small = verdicts.paired_difference(
        0.001 + 0.002 * rng.standard_normal((8, 3)), np.full((8, 3), 0.05), 20_000
    )
    assert verdicts.equals("small", "no difference", 0.0, 0.02, small).verdict == "confirmed"
    assert small.method == "cluster-bootstrap+t" and small.n == 8
    with pytest.raises(ValueError, match="nesting"):
        verdicts.paired_difference([[0.1, 0.2], [0.1]], [[0.3, 0.3], [0.3, 0.3]], 100)


def test_proportion_difference_is_never_a_point():
    """The referee's case: weight decay raises clean error by one of 108 test points in every seed. The seeds
    agree, but 108 test points cannot tell 0.009 from 0: inconclusive against 0 +- 0.005, with a real
    interval (seed_mean gave 0.009 [0.009, 0.009] and decided)."""
    est = verdicts.proportion_difference([0.009 + 1 / 108] * 3, [1 / 108] * 3, 108)
    assert (
        est.value == pytest.approx(0.009, abs=1e-3) and est.high - est.low > 0.02 and est.low < 0 < est.high
    )
    assert verdicts.equals("wd", "no change", 0.0, 0.005, est).verdict == "inconclusive"
    assert verdicts.above("wd", "raises", 0.0, est).verdict == "inconclusive"
    # identical proportions at 0 or 1 still get an interval (the adjusted proportion is not 0)
    for p in (0.0, 1.0):
        flat = verdicts.proportion_difference([p] * 4, [p] * 4, 108)
        assert flat.value == 0.0 and flat.low < 0 < flat.high
    # (S, cells) is accepted: the seed is the unit, cells are averaged within it
    cells = verdicts.proportion_difference(np.full((3, 4), 0.2), np.full((3, 4), 0.1), 500)
    assert cells.n == 3 and cells.value == pytest.approx(0.1) and cells.low < 0.1 < cells.high
    ragged = verdicts.proportion_difference([[0.2, 0.3], [0.2]], [[0.1, 0.1], [0.1]], 500)
    assert ragged.n == 2 and ragged.value == pytest.approx((0.15 + 0.1) / 2)
    # a large real difference decides both ways
    big = verdicts.proportion_difference([0.31, 0.29, 0.33, 0.30], [0.10, 0.12, 0.09, 0.11], 1000)
    assert big.low > 0.1 and big.high < 0.3
    assert verdicts.equals("big", "no difference", 0.0, 0.05, big).verdict == "refuted"
    assert verdicts.above("big", "raises error", 0.0, big).verdict == "confirmed"
    assert verdicts.below("big", "lowers error", 0.0, big).verdict == "refuted"
    with pytest.raises(ValueError, match="shape"):
        verdicts.proportion_difference([0.1, 0.2], [0.1], 100)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        verdicts.proportion_difference([1.2], [0.1], 100)


def test_seeds_to_decide_is_monotone_and_reported():
    inf = math.inf
    ks = [verdicts.seeds_to_decide(m, (0.5, inf)) for m in (0.55, 0.6, 0.7, 0.8, 0.9, 0.99)]
    assert all(a >= b for a, b in zip(ks, ks[1:])) and ks[0] > ks[-1] >= 1
    assert verdicts.seeds_to_decide(0.5, (0.5, inf)) is None  # a mean on the edge never decides
    # at K seeds the Wilson interval over seeds decides, at K - 1 it does not
    for m in (0.75, 0.9):
        k = verdicts.seeds_to_decide(m, (0.5, inf))
        assert verdicts.above("k", "k", 0.5, verdicts.seed_proportion([m] * k, 10**6)).verdict == "confirmed"
        assert verdicts.above("k", "k", 0.5, verdicts.seed_proportion([m] * (k - 1), 10**6)).verdict == (
            "inconclusive"
        )
    # two-sided: farther from the region's edges decides sooner
    assert verdicts.seeds_to_decide(0.95, (0.9, 1.0)) > verdicts.seeds_to_decide(0.97, (0.9, 1.0))
    est = verdicts.seed_proportion([0.99, 0.5, 0.99, 0.99], 200)
    claim = verdicts.equals("mix", "agreement 0.9", 0.9, 0.05, est)
    k = verdicts.seeds_to_decide(est.value, claim.region)
    assert (
        claim.verdict == "inconclusive"
        and k > est.n
        and claim.reason.endswith(f"; about {k} seeds would decide")
    )
    edge = verdicts.above("edge", "above chance", 0.5, verdicts.seed_proportion([0.4, 0.6], 200))
    assert edge.reason.endswith("no number of seeds would decide at this mean")


def test_one_sided_reasons_are_true():
    touch = verdicts.above("t", "t", 0.5, verdicts.Estimate(0.6, 0.5, 0.7, 5, "t"))
    assert touch.verdict == "inconclusive" and "touches the threshold 0.500" in touch.reason
    touch_b = verdicts.below("t", "t", 0.7, verdicts.Estimate(0.6, 0.5, 0.7, 5, "t"))
    assert touch_b.verdict == "inconclusive" and "touches the threshold 0.700" in touch_b.reason
    single = verdicts.above("s", "s", 0.5, verdicts.seed_mean([0.9]))
    assert (
        single.verdict == "inconclusive" and "one seed" in single.reason and "contains" not in single.reason
    )
    straddle = verdicts.below("c", "c", 0.6, verdicts.Estimate(0.6, 0.5, 0.7, 5, "t"))
    assert straddle.verdict == "inconclusive" and "contains the threshold 0.600" in straddle.reason
    short = verdicts.above("r", "r", 0.5, verdicts.Estimate(0.4, 0.3, 0.5, 5, "t"))
    assert short.verdict == "inconclusive" and "contains" not in short.reason and "upper end" in short.reason
    assert verdicts.above("ok", "ok", 0.5, verdicts.Estimate(0.6, 0.51, 0.7, 5, "t")).reason == ""
    assert "below" in verdicts.above("no", "no", 0.5, verdicts.Estimate(0.3, 0.2, 0.4, 5, "t")).reason


def test_a_slope_claim_names_the_points_its_fit_dropped():
    x = [16.0, 32.0, 64.0, 128.0, 256.0]
    fit = fit_loglog_slope(x, [v**-0.5 for v in x[:4]] + [0.0])
    assert (fit.dropped, fit.why) == (1, "1 with y <= 0")
    claim = verdicts.slope("s", "slope -1/2", -0.5, 0.1, fit)
    assert "1 points dropped from the log-log fit (1 with y <= 0)" in claim.basis


def test_paired_proportion_covers_unimodal_per_seed_agreements():
    """A net against its own limit: per-seed agreements spread around 0.97 (Beta(60, 2), no second mode),
    each measured on 200 points. The paired interval covers the true mean in >= 93% of 400 experiments at
    3 to 20 seeds, and it is far narrower than the marginal (bimodal-proof) interval."""
    rng = np.random.default_rng(11)
    truth = 60 / 62
    for n_seeds in (3, 5, 8, 20):
        p = rng.beta(60, 2, (400, n_seeds))
        obs = rng.binomial(200, p) / 200
        hits = [
            (lambda e: e.low <= truth <= e.high)(verdicts.paired_proportion(row, 200, n_boot=300))
            for row in obs
        ]
        assert np.mean(hits) >= 0.93, (n_seeds, np.mean(hits))
    perfect = verdicts.paired_proportion([1.0] * 4, 200)
    assert 0.97 < perfect.low < 1.0 == perfect.high  # 0 of 800 points differ: an interval, not a point
    assert perfect.low > verdicts.seed_proportion([1.0] * 4, 200).low + 0.3
    with pytest.raises(ValueError, match="must lie in"):
        verdicts.paired_proportion([1.2], 10)
