"""lrtest: twice the llf difference against chi-square; refuses what lme4 refuses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import dlmm
from dlmm import InputError
from tests.simulate import grouped_data


@pytest.fixture(scope="module")
def data():
    return grouped_data(n_groups=60, per_group=(5, 12), re_cov=np.array([[1.0, 0.2], [0.2, 0.4]]),
                        seed=12)


def test_statistic_is_twice_the_llf_difference(data):
    small = dlmm.mixedlm("y ~ x1", data, groups="g").fit(reml=False)
    big = dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit(reml=False)
    test = dlmm.lrtest(small, big)
    assert test.statistic == pytest.approx(2 * (big.llf - small.llf), rel=1e-12)
    assert test.df == 2
    assert test.pvalue == pytest.approx(stats.chi2.sf(test.statistic, 2), rel=1e-12)
    assert test.pvalue < 1e-3  # the slope variance is real in these data
    stat, df, p = test  # unpacks like a tuple
    assert (stat, df, p) == (test.statistic, test.df, test.pvalue)


def test_fixed_effects_compared_under_ml(data):
    small = dlmm.mixedlm("y ~ x1", data, groups="g").fit(reml=False)
    big = dlmm.mixedlm("y ~ x1 + x2", data, groups="g").fit(reml=False)
    assert dlmm.lrtest(small, big).df == 1


def test_refuses_reml_fits_with_different_fixed_effects(data):
    small = dlmm.mixedlm("y ~ x1", data, groups="g").fit()
    big = dlmm.mixedlm("y ~ x1 + x2", data, groups="g").fit()
    with pytest.raises(InputError, match="REML fits with different fixed effects"):
        dlmm.lrtest(small, big)


def test_refuses_mixed_methods_and_wrong_order(data):
    ml = dlmm.mixedlm("y ~ x1", data, groups="g").fit(reml=False)
    reml = dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit()
    with pytest.raises(InputError, match="two REML fits or two ML fits"):
        dlmm.lrtest(ml, reml)
    big = dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit(reml=False)
    with pytest.raises(InputError, match="must have more parameters"):
        dlmm.lrtest(big, ml)
