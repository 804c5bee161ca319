"""lme4's ``anova`` and likelihood-ratio tests of fits of lme4's models beyond
statsmodels' shape (``TermsResults``), against lme4 1.1-31's tables
(``tests/reference/nested/lme4_nested_features.json``, ``anova``): REML fits are
refitted by ML as lme4 does, and a restricted model of statsmodels' shape
(``MixedLMResults``) compares with a ``TermsResults``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.exceptions import InputError
from dlmm.results.compare import RefitWarning
from dlmm.results.terms_results import TermsResults

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "nested"
CASES = json.loads((REFERENCE / "lme4_nested.json").read_text())["cases"]
ANOVA = json.loads((REFERENCE / "lme4_nested_features.json").read_text())["anova"]


@pytest.fixture(scope="module", params=sorted(ANOVA))
def pair(request):
    key = request.param
    ref = ANOVA[key]
    data = pd.read_csv(REFERENCE / "data" / CASES[key]["data"])
    small = dlmm.lmer(ref["restricted"], data, REML=ref["reml"])
    full = dlmm.lmer(ref["full"], data, REML=ref["reml"])
    return ref, small, full


def test_anova_is_lme4s(pair):
    ref, small, full = pair
    assert isinstance(full, TermsResults)
    np.testing.assert_allclose([small.llf, full.llf], [ref["llf_given"]["restricted"],
                                                      ref["llf_given"]["full"]], rtol=1e-8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = full.anova(small, names=["full", "restricted"])
    assert any(issubclass(w.category, RefitWarning) for w in caught) == ref["reml"]
    assert list(table.index) == ["restricted", "full"]  # lme4's order: by npar
    assert table["npar"].tolist() == ref["npar"]
    for column, key in [("AIC", "AIC"), ("BIC", "BIC"), ("logLik", "logLik"),
                        ("deviance", "deviance")]:
        np.testing.assert_allclose(table[column].to_numpy(), ref[key], rtol=1e-8)
    np.testing.assert_allclose(table["Chisq"].iloc[1], ref["Chisq"][1], rtol=1e-5)
    assert table["Df"].iloc[1] == ref["Df"][1] and np.isnan(table["Chisq"].iloc[0])
    np.testing.assert_allclose(table["Pr(>Chisq)"].iloc[1], ref["p_value"][1], rtol=1e-4)
    assert table.attrs["models"]["full"] == ref["full"]
    # the REML fits are left as they were
    assert full.reml == ref["reml"] and full.model.reml == ref["reml"]
    np.testing.assert_allclose(full.llf, ref["llf_given"]["full"], rtol=1e-8)


def test_lrtest_is_lme4s(pair):
    """Two ML fits: anova's Chisq; two REML fits of the same fixed effects: twice the
    difference of lme4's REML log-likelihoods (lme4's anova(refit = FALSE))."""
    ref, small, full = pair
    stat, df, pvalue = dlmm.lrtest(small, full)
    given = ref["llf_given"]
    np.testing.assert_allclose(stat, 2 * (given["full"] - given["restricted"]), rtol=1e-6)
    assert df == ref["Df"][1]
    if not ref["reml"]:
        np.testing.assert_allclose(stat, ref["Chisq"][1], rtol=1e-5)
        np.testing.assert_allclose(pvalue, ref["p_value"][1], rtol=1e-4)
        table = dlmm.anova(small, full)  # the public function, ML fits as they are
        np.testing.assert_allclose(table["Chisq"].iloc[1], ref["Chisq"][1], rtol=1e-5)
    with pytest.raises(InputError, match="more parameters"):
        dlmm.lrtest(full, small)
