"""The lme4 reference of issue 22 (``tests/reference/nested/lme4_nested.json``) holds.

The reference numbers were made by lme4 (``tests/reference/nested/lme4_nested.R``);
this checks them against software other than lme4 wherever it states the same
model: statsmodels' MixedLM fits ``(x || g) + (1 | g:h)`` (an intercept per
``g``, a slope variance per ``g``, an intercept per ``h`` within ``g``: all
variance components of the group ``g``) and nlme's Pixel model
``(day | Dog) + (1 | Dog:Side)`` (a correlated intercept and slope per ``Dog``
and a variance component for ``Side`` within ``Dog``), REML and ML.

Two checks per case: statsmodels' log-likelihood at lme4's estimates is lme4's
``llf``, its generalised least squares fixed effects there are lme4's and the
inverse of its Hessian's fixed-effects block is lme4's ``vcov`` (the numbers are
lme4's function at lme4's point); and statsmodels' own fit, from its own start,
reaches lme4's optimum (llf 1e-5 relative and never above lme4's by more than
1e-6 relative: lme4's is the optimum; fixed effects 1e-4, variances 1e-3).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.regression.mixed_linear_model import MixedLMParams

NESTED = Path(__file__).resolve().parent / "nested"
REFERENCE = json.loads((NESTED / "lme4_nested.json").read_text())

#: the same models in statsmodels' spelling: (fixed formula, groups, re_formula,
#: {statsmodels' vc name: (formula, lme4's VarCorr group, column)},
#: lme4's VarCorr rows (group, var1, var2) of cov_re in statsmodels' order, or None)
MODELS = {
    "sim_diag": ("y ~ x", "g", "1",
                 {"h": ("0 + C(h)", "g.h", "(Intercept)"), "x": ("0 + x", "g", "x")},
                 [[("g.1", "(Intercept)", "")]]),
    "pixel": ("pixel ~ day + day2", "Dog", "~day",
              {"Side": ("0 + C(Side)", "Dog:Side", "(Intercept)")},
              [[("Dog", "(Intercept)", ""), ("Dog", "(Intercept)", "day")],
               [("Dog", "(Intercept)", "day"), ("Dog", "day", "")]]),
}
CASES = [f"{name}_{method}" for name in MODELS for method in ("reml", "ml")]


def _model(name: str, reml: bool):
    case = REFERENCE["cases"][f"{name}_{'reml' if reml else 'ml'}"]
    data = pd.read_csv(NESTED / "data" / case["data"],
                       dtype={column: str for column in case["label_columns"]})
    formula, groups, re_formula, vc, _ = MODELS[name]
    model = smf.mixedlm(formula, data, groups=groups, re_formula=re_formula,
                        vc_formula={k: f for k, (f, _, _) in vc.items()})
    model.reml = reml
    return case, model


def _lme4_variances(name: str, case: dict, model) -> tuple[np.ndarray, np.ndarray]:
    """lme4's ``cov_re`` and ``vcomp`` (data scale) in statsmodels' order."""
    vcov = {(r["grp"], r["var1"], r["var2"]): r["vcov"] for r in case["varcorr"]}
    vc = MODELS[name][3]
    vcomp = np.array([vcov[(vc[k][1], vc[k][2], "")] for k in model.exog_vc.names])
    cov_re = np.array([[vcov[key] for key in row] for row in MODELS[name][4]])
    return cov_re, vcomp


@pytest.fixture(scope="module")
def fits() -> dict:
    out = {}
    for key in CASES:
        name, method = key.rsplit("_", 1)
        case, model = _model(name, method == "reml")
        # BFGS: statsmodels' default L-BFGS stops at -415.97 on Pixel's ML fit (and says
        # converged); its BFGS reaches lme4's optimum on every case here
        out[key] = (case, model, model.fit(reml=method == "reml", method="bfgs"))
    return out


@pytest.mark.parametrize("key", CASES)
def test_statsmodels_likelihood_at_lme4s_estimates_is_lme4s(fits, key):
    case, model, _ = fits[key]
    name = key.rsplit("_", 1)[0]
    cov_re, vcomp = _lme4_variances(name, case, model)
    assert model.nobs == case["nobs"]
    scale = case["scale"]
    fe, singular = model.get_fe_params(cov_re / scale, vcomp / scale)
    assert not singular
    expected_fe = [case["fe_params"][k] for k in case["fe_params"]]
    assert list(model.exog_names) == ["Intercept", *list(case["fe_params"])[1:]]
    np.testing.assert_allclose(fe, expected_fe, rtol=1e-7)
    params = MixedLMParams.from_components(fe, cov_re=cov_re / scale, vcomp=vcomp / scale)
    assert model.loglike(params, profile_fe=False) == pytest.approx(case["llf"], rel=1e-9)
    # lme4's vcov(fit) is sigma^2 (X' V^-1 X)^-1: the inverse of the fixed-effects block
    # of statsmodels' Hessian there
    hessian, singular = model.hessian(params)
    p = len(fe)
    np.testing.assert_allclose(np.linalg.inv(-hessian[:p, :p]), case["cov_fe"], rtol=1e-7)


@pytest.mark.parametrize("key", CASES)
def test_statsmodels_fit_reaches_lme4s_optimum(fits, key):
    case, model, result = fits[key]
    name = key.rsplit("_", 1)[0]
    assert result.converged
    # lme4's llf is the optimum: statsmodels reaches it and does not beat it
    assert result.llf == pytest.approx(case["llf"], rel=1e-5)
    assert result.llf <= case["llf"] + 1e-6 * abs(case["llf"])
    np.testing.assert_allclose(result.fe_params.to_numpy(), list(case["fe_params"].values()),
                               rtol=1e-4)
    cov_re, vcomp = _lme4_variances(name, case, model)
    np.testing.assert_allclose(result.vcomp, vcomp, rtol=1e-3)
    np.testing.assert_allclose(result.cov_re.to_numpy(), cov_re, rtol=1e-3)
    assert result.scale == pytest.approx(case["scale"], rel=1e-3)
    # (statsmodels' bse_fe inverts its whole Hessian, variance parameters included, so
    # it is not lme4's; lme4's is checked at lme4's estimates above)


def test_the_reference_describes_its_data():
    # every case's data file is there, with lme4's nobs rows; nesting as recorded
    for name, case in REFERENCE["cases"].items():
        data = pd.read_csv(NESTED / "data" / case["data"],
                           dtype={column: str for column in case["label_columns"]})
        assert len(data) == case["nobs"] == REFERENCE["data"][case["data"]]["rows"], name
        for pair in case["nesting"]:  # each level of `inner` lies in one level of `outer`
            inner, outer = pair["inner"].split(":"), pair["outer"].split(":")
            pairs = data[inner + [c for c in outer if c not in inner]].drop_duplicates()
            assert not pairs.duplicated(inner).any(), (name, pair)
            assert len(pairs) == case["ngroups"][pair["inner"]], (name, pair)
        assert len(case["theta"]) == len(case["theta_names"]) == len(case["theta_lower"])
