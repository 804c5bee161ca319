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


# -- anova of several fits, against lme4 (tests/reference/lme4_features.R) ------------

from tests.results.lme4_reference import (  # noqa: E402
    FEATURES,
    fit_chickweight,
    fit_sleepstudy,
)


def check_anova(table, rows):
    assert list(table.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df",
                                   "Pr(>Chisq)"]
    assert len(table) == len(rows)
    for (_, got), ref in zip(table.iterrows(), rows):
        assert got["npar"] == ref["npar"]
        for col in ("AIC", "BIC", "logLik", "deviance"):
            assert got[col] == pytest.approx(ref[col], rel=1e-8), col
        if ref["Chisq"] is None:
            assert np.isnan(got["Chisq"]) and np.isnan(got["Pr(>Chisq)"])
        else:
            assert got["Chisq"] == pytest.approx(ref["Chisq"], rel=1e-5, abs=1e-6)
            assert got["Df"] == ref["Df"]
            assert got["Pr(>Chisq)"] == pytest.approx(ref["p"], rel=1e-4)


def test_anova_refits_reml_by_ml_as_lme4():
    fits = [fit_sleepstudy(True, "1", "Reaction ~ 1"), fit_sleepstudy(True, "1"),
            fit_sleepstudy(True)]
    with pytest.warns(dlmm.results.compare.RefitWarning, match="refitting model"):
        table = fits[2].anova(fits[0], fits[1], names=["full", "null", "intercept"])
    assert list(table.index) == ["null", "intercept", "full"]  # sorted by npar
    check_anova(table, FEATURES["sleepstudy"]["anova"])
    assert all(f.reml for f in fits)  # the fits and their models are left as they were
    assert fits[2].model.reml


def test_anova_without_refit_compares_reml_fits_of_the_same_fixed_effects():
    small, big = fit_sleepstudy(True, "1"), fit_sleepstudy(True)
    check_anova(dlmm.results.compare.anova(small, big, refit=False),
                FEATURES["sleepstudy"]["anova_norefit"])
    other = fit_sleepstudy(True, "1", "Reaction ~ 1")
    with pytest.raises(InputError, match="REML fits with different fixed effects"):
        dlmm.results.compare.anova(other, big, refit=False)


def test_anova_of_fixed_effects_chickweight():
    with pytest.warns(dlmm.results.compare.RefitWarning):
        table = fit_chickweight("weight ~ Time").anova(fit_chickweight())
    check_anova(table, FEATURES["chickweight"]["anova"])
    assert "Diet" in table.attrs["models"]["model 2"]


def test_anova_refuses_other_rows_and_one_fit(data):
    fit = dlmm.mixedlm("y ~ x1", data, groups="g").fit(reml=False)
    other = dlmm.mixedlm("y ~ x1", data.iloc[:-5], groups="g").fit(reml=False)
    with pytest.raises(InputError, match="different rows"):
        fit.anova(other)
    with pytest.raises(InputError, match="two or more fits"):
        dlmm.results.compare.anova(fit)


def test_anova_prints_whole_as_lme4():
    small, big = fit_sleepstudy(False, "1"), fit_sleepstudy(False)
    text = repr(dlmm.results.compare.anova(small, big, names=["m0", "m1"]))
    lines = text.splitlines()
    assert lines[0] == "Models:" and lines[1].startswith("m0: Reaction ~ Days")
    assert lines[3].split() == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df",
                                "Pr(>Chisq)"]
    row = lines[5].split()
    ref = FEATURES["sleepstudy"]["anova"][2]
    assert row[0] == "m1" and float(row[2]) == pytest.approx(ref["AIC"], abs=0.01)
    assert float(row[6]) == pytest.approx(ref["Chisq"], abs=1e-4) and row[7] == "2"
