"""What a fit of crossed terms says beyond its estimates (``TermsResults`` on the crossed
engine), against lme4 1.1-31 (``tests/reference/crossed_terms``): predictions on new
data with unseen and missing levels, anova of nested fits, profile intervals; save and
load; simulate (checked against the fitted moments by a dense brute force) and
refit (lme4's fit)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.io.result_folder import read_result
from dlmm.results.compare import RefitWarning
from dlmm.results.terms_results import TermsResults

from .test_terms_simulate import simulated_moments

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "crossed_terms"
CASES = json.loads((REFERENCE / "lme4_crossed_terms.json").read_text())["cases"]
FEATURES = json.loads((REFERENCE / "lme4_crossed_terms_features.json").read_text())
# (kb07_reml's predictions are in the file too; its fit takes seconds, so its fitted
# values are checked in tests/test_crossed_terms_model.py only)


def _data(key: str) -> pd.DataFrame:
    ref = CASES[key]
    return pd.read_csv(REFERENCE / "data" / ref["data"],
                       dtype={c: str for c in ref["label_columns"]})


def _newdata(ref: dict, labels) -> pd.DataFrame:
    new = pd.DataFrame(ref["newdata"])
    for c in labels:  # R's JSON: missing labels are null
        new[c] = new[c].astype(object).where(new[c].notna(), None)
    return new


@pytest.fixture(scope="module", params=["scotssec_reml", "sim_beside_reml"])
def fitted(request):
    key = request.param
    ref = CASES[key]
    return key, dlmm.lmer(ref["lmer"], _data(key), REML=ref["reml"])


def test_predictions_are_lme4s(fitted):
    key, fit = fitted
    ref = FEATURES["predictions"][key]
    assert fit.engine == "crossed"
    np.testing.assert_allclose(fit.llf, ref["llf"], rtol=1e-8)
    values = fit.fittedvalues.to_numpy()
    assert values.size == ref["n_fitted"]
    np.testing.assert_allclose([values.sum(), (values**2).sum()],
                               [ref["fitted_sum"], ref["fitted_sum_squares"]], rtol=1e-7)
    new = _newdata(ref, CASES[key]["label_columns"])
    np.testing.assert_allclose(fit.predict(new).to_numpy(), ref["predict_new"], rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(fit.predict(new, random_effects=False).to_numpy(),
                               ref["predict_fixed"], rtol=1e-7, atol=1e-7)


def test_save_and_load(fitted, tmp_path):
    key, fit = fitted
    ref = CASES[key]
    folder = tmp_path / "result"
    fit.save(folder)
    doc = read_result(folder)
    assert doc["kind"] == "terms" and doc["status"] == "converged"
    assert doc["n_levels"] == ref["ngroups"]
    table = pd.read_parquet(folder / "random_effects.parquet")
    for factor, theirs in ref["random_effects"].items():
        mine = table[table["grpvar"] == factor].set_index(["term", "grp"])
        assert len(mine) == theirs["n_levels"] * len(theirs["condval"])
        scale = max(abs(v) for vals in theirs["condval"].values() for v in vals.values())
        for what in ("condval", "condsd"):
            for column, values in theirs[what].items():
                got = mine.loc[column][what].loc[list(values)].to_numpy()
                np.testing.assert_allclose(got, list(values.values()), rtol=1e-3,
                                           atol=1e-4 * scale)
    back = dlmm.load_result(folder)
    assert isinstance(back, TermsResults) and back.engine == "crossed"
    assert back.summary() == fit.summary() and "crossed engine" in back.summary()
    pd.testing.assert_frame_equal(back.varcorr(), fit.varcorr(), check_exact=True)
    for name in ("theta", "fe_params", "bse_fe"):
        pd.testing.assert_series_equal(getattr(back, name), getattr(fit, name),
                                       check_exact=True)
    for name, frame in fit.random_effects.items():
        pd.testing.assert_frame_equal(back.random_effects[name], frame, check_exact=True)
    new = _newdata(FEATURES["predictions"][key], ref["label_columns"])
    np.testing.assert_allclose(back.predict(new).to_numpy(),
                               FEATURES["predictions"][key]["predict_new"], rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("key", sorted(FEATURES["anova"]))
def test_anova_is_lme4s(key):
    ref = FEATURES["anova"][key]
    data = _data(key)
    small = dlmm.lmer(ref["restricted"], data, REML=ref["reml"])
    full = dlmm.lmer(ref["full"], data, REML=ref["reml"])
    assert isinstance(full, TermsResults) and full.engine == "crossed"
    np.testing.assert_allclose([small.llf, full.llf], [ref["llf_given"]["restricted"],
                                                      ref["llf_given"]["full"]], rtol=1e-8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = full.anova(small, names=["full", "restricted"])
    assert any(issubclass(w.category, RefitWarning) for w in caught) == ref["reml"]
    assert list(table.index) == ["restricted", "full"]
    assert table["npar"].tolist() == ref["npar"]
    for column in ("AIC", "BIC", "logLik", "deviance"):
        np.testing.assert_allclose(table[column].to_numpy(), ref[column], rtol=1e-8)
    np.testing.assert_allclose(table["Chisq"].iloc[1], ref["Chisq"][1], rtol=1e-5)
    assert table["Df"].iloc[1] == ref["Df"][1]
    np.testing.assert_allclose(table["Pr(>Chisq)"].iloc[1], ref["p_value"][1], rtol=1e-4)
    np.testing.assert_allclose(full.llf, ref["llf_given"]["full"], rtol=1e-8)


@pytest.mark.parametrize("key", ["sim_three_reml"])
def test_profile_intervals_are_lme4s(key):
    ref = FEATURES["profile"][key]
    fit = dlmm.lmer(ref["lmer"], _data(key), REML=ref["reml"])
    table = fit.profile_conf_int()
    assert ["(Intercept)" if n == "Intercept" else n for n in table.index] == \
        ref["parameter"]
    np.testing.assert_allclose(table["lower"].to_numpy(), ref["lower"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["upper"].to_numpy(), ref["upper"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["estimate"].to_numpy(), ref["ml_estimate"], rtol=1e-5)
    assert fit.reml and fit.model.reml  # the REML fit is left as it was
    np.testing.assert_allclose(fit.llf, CASES[key]["llf"], rtol=1e-8)


# -- simulate and refit ------------------------------------------------------------

N_SIM = 2000


@pytest.fixture(scope="module")
def simulated():
    """A small crossed design of the new shapes: items with a correlated slope beside
    classes in schools (the first 4 of sim_beside's 20 schools)."""
    data = _data("sim_beside_reml")
    data = data[data["school"].isin(sorted(data["school"].unique())[:4])]
    data = data.reset_index(drop=True)
    fit = dlmm.lmer(CASES["sim_beside_reml"]["lmer"], data)
    assert fit.engine == "crossed"
    return data, fit, fit.simulate(N_SIM, seed=11)


def test_simulated_responses_have_the_fitted_moments(simulated):
    from scipy import stats as sps

    data, fit, sims = simulated
    assert sims.shape == (len(data), N_SIM) and sims.index.equals(data.index)
    hotelling, phi, phi_hat, se = simulated_moments(data, fit, sims)
    assert hotelling < sps.chi2.ppf(1 - 1e-5, len(data))
    assert np.all(np.abs((phi_hat - phi) / se) < 4.5), (phi_hat, phi)
    large = np.abs(phi) > 0.05
    assert large.sum() >= 4 and np.all(se[large] / np.abs(phi[large]) < 0.05)


def test_refit_is_lme4s_fit():
    """refit of ScotsSec's response from a fit of noise in its place: lme4's fit."""
    key = "scotssec_reml"
    ref = CASES[key]
    data = _data(key)
    noise = data.assign(attain=np.random.default_rng(2).standard_normal(len(data)),
                        attain_obs=data["attain"])
    other = dlmm.lmer(ref["lmer"], noise)
    fit = other.refit("attain_obs")
    assert fit.engine == "crossed" and fit.converged
    np.testing.assert_allclose(fit.llf, ref["llf"], rtol=1e-8)
    np.testing.assert_allclose(fit.theta.to_numpy(), ref["theta"], rtol=1e-4, atol=1e-5)
    for name, value in ref["fe_params"].items():
        np.testing.assert_allclose(fit.fe_params["Intercept" if name == "(Intercept)"
                                                 else name], value, rtol=1e-6)
