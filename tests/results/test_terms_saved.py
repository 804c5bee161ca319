"""``TermsResults.save`` and ``dlmm.load_result`` for lme4's models beyond statsmodels'
shape: the result folder (schema ``dlmm.result/2``, ``kind`` terms) holds lme4's θ,
the fixed effects, vcov and the conditional modes and sds as lme4 1.1-31 gives them
(``tests/reference/nested``), and a loaded result has the same summary, VarCorr,
estimates, random effects and predictions (lme4's) without its data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.exceptions import InputError
from dlmm.io.result_folder import read_result
from dlmm.results.terms_results import TermsResults

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "nested"
CASES = json.loads((REFERENCE / "lme4_nested.json").read_text())["cases"]
PREDICTIONS = json.loads((REFERENCE / "lme4_nested_features.json").read_text())["predictions"]


@pytest.fixture(scope="module", params=["sim_three_reml", "sim_blocks_reml", "egsingle_reml",
                                         "sim_slopes2_reml"])
def saved(request, tmp_path_factory):
    key = request.param
    data = pd.read_csv(REFERENCE / "data" / CASES[key]["data"])
    fit = dlmm.lmer(CASES[key]["lmer"], data, REML=CASES[key]["reml"])
    folder = tmp_path_factory.mktemp("terms") / "result"
    fit.save(folder)
    return key, fit, folder, dlmm.load_result(folder)


def test_the_folder_holds_lme4s_numbers(saved):
    key, _, folder, _ = saved
    ref = CASES[key]
    doc = read_result(folder)  # the reader of every result folder
    assert doc["schema"] == "dlmm.result/2" and doc["kind"] == "terms"
    assert doc["status"] == "converged" and doc["model"]["lmer"] == ref["lmer"]
    est = doc["estimates"]
    assert list(est["theta"]) == ref["theta_names"]
    np.testing.assert_allclose(list(est["theta"].values()), ref["theta"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(est["llf"], ref["llf"], rtol=1e-8)
    np.testing.assert_allclose(est["cov_fe"]["matrix"], ref["cov_fe"], rtol=1e-3)
    assert doc["n_levels"] == ref["ngroups"]
    table = pd.read_parquet(folder / "random_effects.parquet")
    assert list(table.columns) == ["grpvar", "term", "grp", "condval", "condsd"]
    for factor, theirs in ref["random_effects"].items():
        mine = table[table["grpvar"] == factor].set_index(["term", "grp"])
        assert len(mine) == theirs["n_levels"] * len(theirs["condval"])
        for what in ("condval", "condsd"):
            for column, values in theirs[what].items():
                got = mine.loc[column][what].loc[list(values)].to_numpy()
                np.testing.assert_allclose(got, list(values.values()), rtol=1e-3, atol=1e-5)
    assert (folder / "summary.txt").read_text() == saved[1].summary() + "\n"


def test_a_loaded_result_is_the_fit(saved):
    key, fit, _, back = saved
    assert isinstance(back, TermsResults) and back.model.data is None
    assert back.summary() == fit.summary()
    pd.testing.assert_frame_equal(back.varcorr(), fit.varcorr(), check_exact=True)
    for name in ("theta", "fe_params", "bse_fe"):
        pd.testing.assert_series_equal(getattr(back, name), getattr(fit, name),
                                       check_exact=True)
    pd.testing.assert_frame_equal(back.cov_fe, fit.cov_fe, check_exact=True)
    assert (back.llf, back.scale, back.aic, back.bic, back.nobs, back.n_levels, back.reml) == \
        (fit.llf, fit.scale, fit.aic, fit.bic, fit.nobs, fit.n_levels, fit.reml)
    assert list(back.random_effects) == list(fit.random_effects)
    for name, frame in fit.random_effects.items():
        pd.testing.assert_frame_equal(back.random_effects[name], frame, check_exact=True)


def test_a_loaded_result_predicts_as_lme4(saved):
    key, fit, _, back = saved
    ref = PREDICTIONS[key]
    new = pd.DataFrame(ref["newdata"])
    got = back.predict(new)
    np.testing.assert_allclose(got.to_numpy(), ref["predict_new"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got.to_numpy(), fit.predict(new).to_numpy())
    np.testing.assert_allclose(back.predict(new, random_effects=False).to_numpy(),
                               ref["predict_fixed"], rtol=1e-7, atol=1e-7)


def test_a_loaded_result_says_what_needs_the_data(saved):
    _, _, _, back = saved
    for call in (back.predict, back.satterthwaite, back.simulate, back.profile_conf_int,
                 back.random_effects_cov, lambda: back.refit("y"), lambda: back.anova(back)):
        with pytest.raises(InputError, match="loaded result"):
            call()


def test_a_saved_folder_is_data(saved, tmp_path):
    """A term formula that is code, or a table of another size, is refused on load."""
    _, fit, folder, _ = saved
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("summary.txt", "random_effects.parquet"):
        (bad / name).write_bytes((folder / name).read_bytes())
    doc = json.loads((folder / "result.json").read_text())
    doc["state"]["terms"][0]["formula"] = "I(__import__('os').getcwd())"
    (bad / "result.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=re.escape("state.terms[0].formula")):
        dlmm.load_result(bad)
    doc = json.loads((folder / "result.json").read_text())
    doc["state"]["fit"]["n_levels"] = {k: v + 1 for k, v in doc["state"]["fit"]["n_levels"]
                                       .items()}
    (bad / "result.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="random_effects.parquet has .* rows"):
        dlmm.load_result(bad)
    with pytest.raises(InputError, match="not empty"):
        fit.save(folder)
