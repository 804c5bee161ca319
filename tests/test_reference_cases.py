"""dlmm against lme4: every case of ``tests/reference/cases.json``.

The expected numbers were computed by lme4 (R, optimizer bobyqa) and written in
statsmodels' conventions (see ``tests/reference/README.md``); nothing here
comes from dlmm's own output. Each case is fitted once (the fits are cached per
case) and checked against lme4's log-likelihood, fixed effects, random-effects
covariance, variance components, residual variance and number of rows.

lme4 stops at its optimizer's tolerance, so a dlmm fit may reach a slightly
higher log-likelihood: that is a better fit, not a wrong one, and the llf check
is one-sided. So that "higher" cannot hide a wrongly computed likelihood, the
llf dlmm reports is also checked against statsmodels' likelihood evaluated at
dlmm's estimates. The estimates are compared with lme4's at tolerances that
assume lme4 is at the optimum, which the reference README states it is.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import statsmodels.formula.api as smf
from statsmodels.regression.mixed_linear_model import MixedLMParams
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import dlmm
from tests.conftest import _load_cases, reference_data

CASES = _load_cases()
CASE_NAMES = sorted(CASES)

LLF_ATOL = 1e-4  # lme4 and statsmodels agree on llf to ~1e-6 at the optimum
FE_RTOL = 1e-4
COV_RTOL = 2e-3  # lme4's variance estimates carry its optimizer tolerance (~1e-5)


def _model_spec(case: dict) -> dict:
    spec = case["model"]
    return {
        "formula": spec["formula"],
        "groups": spec["groups"],
        "re_formula": spec["re_formula"],
        "vc_formula": spec["vc_formula"],
    }


@functools.cache
def _fit(name: str):
    """dlmm's fit of one reference case (the same model as lme4's)."""
    case = CASES[name]
    spec = _model_spec(case)
    data = reference_data(case["model"]["data"])
    model = dlmm.mixedlm(spec["formula"], data, groups=spec["groups"],
                         re_formula=spec["re_formula"], vc_formula=spec["vc_formula"])
    return model.fit(reml=case["model"]["reml"])


@pytest.fixture(params=CASE_NAMES)
def case(request, reference_cases):
    return request.param, reference_cases[request.param]


def test_case_list_is_complete(reference_cases):
    # The parametrization is built at import time from the same file as the fixture.
    assert sorted(reference_cases) == CASE_NAMES
    assert CASE_NAMES


def test_llf(case):
    name, ref = case
    result = _fit(name)
    expected = ref["expected"]["llf"]
    # One-sided on purpose: lme4 stops at its optimizer's tolerance; a higher llf
    # than lme4's is a better optimum, not an error.
    assert result.llf >= expected - LLF_ATOL, (
        f"{name}: dlmm llf {result.llf!r} is below lme4's {expected!r} by "
        f"{expected - result.llf:.3g} (a higher llf would be accepted: it is a better fit)"
    )
    # Accepting "higher" is safe because test_llf_is_statsmodels_likelihood checks
    # that the value dlmm reports is the true likelihood at dlmm's estimates.


def test_llf_is_statsmodels_likelihood(case):
    """The llf dlmm reports is what statsmodels' likelihood says at dlmm's estimates."""
    name, ref = case
    result = _fit(name)
    spec = _model_spec(ref)
    data = reference_data(ref["model"]["data"])
    # statsmodels has no "one group" option: give every row the same group label.
    groups = spec["groups"] if spec["groups"] is not None else np.zeros(len(data))
    sm_model = smf.mixedlm(spec["formula"], data, groups=groups,
                           re_formula=spec["re_formula"], vc_formula=spec["vc_formula"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sm_model.fit(reml=ref["model"]["reml"])  # sets the model's REML/ML state
    at_dlmm = MixedLMParams.from_components(
        fe_params=result.fe_params.to_numpy(),
        cov_re=result.cov_re_unscaled,
        vcomp=result.vcomp / result.scale,
    )
    sm_llf = sm_model.loglike(at_dlmm, profile_fe=True)
    assert result.llf == pytest.approx(sm_llf, rel=1e-9, abs=1e-9)


def test_fe_params(case):
    name, ref = case
    result = _fit(name)
    expected = ref["expected"]["fe_params"]
    assert sorted(result.fe_params.index) == sorted(expected)
    for coef, value in expected.items():
        assert result.fe_params[coef] == pytest.approx(value, rel=FE_RTOL), coef


def test_cov_re(case):
    name, ref = case
    result = _fit(name)
    expected = np.array(ref["expected"]["cov_re"], dtype=float)
    k_re = len(ref["expected"]["cov_re"])
    expected = expected.reshape(k_re, k_re)
    got = result.cov_re.to_numpy()
    assert got.shape == (k_re, k_re)
    if k_re:
        # Relative, with a floor for near-zero covariances of 1e-5 in correlation units.
        sd = np.sqrt(np.diag(expected))
        tol = COV_RTOL * np.abs(expected) + 1e-5 * np.outer(sd, sd)
        err = np.abs(got - expected)
        assert np.all(err <= tol), f"{name}: cov_re\n{got}\nlme4\n{expected}\nerror\n{err}"
        np.testing.assert_allclose(got, got.T, rtol=0, atol=1e-12 * np.abs(got).max())


def test_vcomp(case):
    name, ref = case
    result = _fit(name)
    expected = ref["expected"]["vcomp"]
    names = sorted(expected)  # dlmm, like statsmodels, sorts components by name
    assert list(result.vc_names) == names
    assert result.vcomp.shape == (len(names),)
    for j, comp in enumerate(names):
        assert result.vcomp[j] == pytest.approx(expected[comp], rel=COV_RTOL), comp
    # statsmodels' names for them close the params vector: "<name> Var".
    tail = list(result.params.index[len(result.params) - len(names):]) if names else []
    assert tail == [f"{comp} Var" for comp in names]


def test_scale(case):
    name, ref = case
    result = _fit(name)
    assert result.scale == pytest.approx(ref["expected"]["scale"], rel=COV_RTOL)


def test_nobs_and_convergence(case):
    name, ref = case
    result = _fit(name)
    assert result.nobs == ref["expected"]["nobs"]
    data = reference_data(ref["model"]["data"])
    groups = ref["model"]["groups"]
    assert result.n_groups == (1 if groups is None else data[groups].nunique())
    assert result.converged is True


def test_engine(case):
    """Crossed factors of one group (Penicillin: plate x sample) take the crossed
    engine; every nested or grouped case the grouped engine."""
    name, ref = case
    crossed = ref["model"]["groups"] is None and ref["model"]["re_formula"] == "0"
    assert _fit(name).engine == ("crossed" if crossed else "grouped")
    if name == "penicillin_crossed_reml":
        assert _fit(name).engine == "crossed"
