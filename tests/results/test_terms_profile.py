"""Profile confidence intervals of lme4's models beyond statsmodels' shape
(``TermsResults.profile_conf_int``): lme4 1.1-31's ``confint(profile(fit))`` of
sim_slopes2's REML fit (``(x | g) + (x | g:h)``; lme4 profiles the ML deviance),
profiled on a grid fine enough that its intervals are the profile's to about 1e-5
(``tests/reference/nested/lme4_nested_features.json``, ``profile``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.exceptions import InputError

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "nested"
CASES = json.loads((REFERENCE / "lme4_nested.json").read_text())["cases"]
PROFILE = json.loads((REFERENCE / "lme4_nested_features.json").read_text())["profile"]
KEY = "sim_slopes2_reml"


@pytest.fixture(scope="module")
def profiled():
    ref = PROFILE[KEY]
    data = pd.read_csv(REFERENCE / "data" / CASES[KEY]["data"])
    fit = dlmm.lmer(ref["lmer"], data, REML=ref["reml"])
    return ref, fit, fit.profile_conf_int()


def _lme4_name(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name


def test_profile_intervals_are_lme4s(profiled):
    ref, fit, table = profiled
    assert [_lme4_name(n) for n in table.index] == ref["parameter"]  # lme4's names, order
    np.testing.assert_allclose(table["lower"].to_numpy(), ref["lower"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["upper"].to_numpy(), ref["upper"], rtol=1e-5, atol=1e-6)
    # the estimates are the ML fit's (lme4 profiles the ML deviance of a REML fit)
    np.testing.assert_allclose(table["estimate"].to_numpy(), ref["ml_estimate"], rtol=1e-5)
    assert np.all(table["lower"] < table["estimate"]) and np.all(
        table["estimate"] < table["upper"])
    # the REML fit is left as it was
    assert fit.reml and fit.model.reml
    np.testing.assert_allclose(fit.llf, CASES[KEY]["llf"], rtol=1e-8)


def test_some_parameters_and_other_levels(profiled):
    ref, fit, table = profiled
    names = ["cor_x.(Intercept)|g", "x"]
    some = fit.profile_conf_int(alpha=0.05, parameters=names)
    assert list(some.index) == names
    np.testing.assert_allclose(some.to_numpy(), table.loc[names].to_numpy(), rtol=1e-9)
    narrower = fit.profile_conf_int(alpha=0.2, parameters=["x"])
    assert table.loc["x", "lower"] < narrower.loc["x", "lower"] < narrower.loc["x", "upper"] \
        < table.loc["x", "upper"]
    with pytest.raises(InputError, match=re.escape("no parameter 'sd_z|g'")):
        fit.profile_conf_int(parameters=["sd_z|g"])
    with pytest.raises(InputError, match="alpha"):
        fit.profile_conf_int(alpha=1.5)
