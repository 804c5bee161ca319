"""Profile likelihood: lme4's profile intervals and statsmodels' profile_re."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import statsmodels.formula.api as smf

import dlmm
from tests.conftest import REFERENCE, reference_data
from tests.simulate import grouped_data

PROFILE = json.loads((REFERENCE / "profile_ci.json").read_text())


@pytest.mark.parametrize("case", sorted(PROFILE))
def test_profile_intervals_match_lme4(case, reference_cases):
    model = reference_cases[case]["model"]
    data = reference_data(model["data"])
    result = dlmm.mixedlm(model["formula"], data, groups=model["groups"],
                          re_formula=model["re_formula"]).fit(reml=model["reml"])
    table = result.profile_conf_int()
    expected = PROFILE[case]
    assert len(table) == len(expected["parameter"])  # lme4's parameters, lme4's order
    np.testing.assert_allclose(table["lower"].to_numpy(), expected["lower"], rtol=1e-2)
    np.testing.assert_allclose(table["upper"].to_numpy(), expected["upper"], rtol=1e-2)
    # Each interval holds the ML estimate.
    assert np.all(table["lower"] < table["estimate"])
    assert np.all(table["estimate"] < table["upper"])


def test_profile_re_matches_statsmodels():
    data = grouped_data(n_groups=50, per_group=(5, 15), re_cov=np.array([[1, 0.3], [0.3, 0.5]]),
                        vc_sd={"c": 0.7}, seed=2)
    kw = {"groups": "g", "re_formula": "~x1", "vc_formula": {"c": "0 + C(c)"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = smf.mixedlm("y ~ x1", data, **kw).fit(reml=False, gtol=1e-10)
        expected = sm.profile_re(1, "re", 3, 0.2, 3, 0.2)
        expected_vc = sm.profile_re("c", "vc", 3, 0.2, 3, 0.2)
    result = dlmm.mixedlm("y ~ x1", data, **kw).fit(reml=False)
    got = result.profile_re(1, "re", 3, 0.2, 3, 0.2)
    got_vc = result.profile_re("c", "vc", 3, 0.2, 3, 0.2)
    assert got.shape == expected.shape == (7, 2)
    np.testing.assert_allclose(got[:, 0], expected[:, 0], rtol=1e-4)
    # dlmm's profile points are at least as high (its inner fits converge tighter).
    assert np.all(got[:, 1] >= expected[:, 1] - 1e-6)
    np.testing.assert_allclose(got[:, 1], expected[:, 1], rtol=1e-8)
    np.testing.assert_allclose(got_vc[:, 0], expected_vc[:, 0], rtol=1e-4)
    np.testing.assert_allclose(got_vc[:, 1], expected_vc[:, 1], rtol=1e-8)
    # The middle point is the fit itself.
    assert got[3, 1] == pytest.approx(result.llf, abs=1e-6)


def test_profile_re_rejects_bad_arguments():
    data = grouped_data(n_groups=20, per_group=5, re_cov=np.eye(1), seed=3)
    result = dlmm.mixedlm("y ~ x1", data, groups="g").fit()
    with pytest.raises(dlmm.InputError, match="vtype must be 're' or 'vc'"):
        result.profile_re(0, "x")
    with pytest.raises(dlmm.InputError, match="dist_low is too large"):
        result.profile_re(0, "re", dist_low=1e6)


def test_profiling_a_reml_fit_leaves_the_model_reml(reference_cases):
    """lme4 profiles the ML deviance, so a REML fit's profile refits by ML; the model must
    stay REML afterwards (it used to be left in ML mode, so ``loglike`` changed meaning)."""
    exp = reference_cases["dyestuff_reml"]["expected"]
    model = dlmm.mixedlm("Yield ~ 1", reference_data("dyestuff.csv"), groups="Batch")
    result = model.fit(reml=True)
    result.profile_conf_int()
    assert model.reml is True
    np.testing.assert_allclose(model.loglike(_profile_params(result)), exp["llf"], rtol=1e-8)


def _profile_params(result):
    """The fit's covariance parameters as a MixedLMParams (profile scale)."""
    return dlmm.MixedLMParams.from_components(cov_re=result.cov_re_unscaled,
                                              vcomp=result.vcomp / result.scale)
