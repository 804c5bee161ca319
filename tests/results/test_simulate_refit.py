"""simulate, refit and update: the simulated responses have the fitted model's
moments, refits recover exact transformations and lme4's fits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.results.simulate_refit import hashed_normals
from tests.results.lme4_reference import FEATURES, fit_sleepstudy, sleepstudy


@pytest.fixture(scope="module")
def result():
    return fit_sleepstudy()


def test_simulated_responses_have_the_model_moments(result):
    sims = result.simulate(2000, seed=3)
    assert sims.shape == (180, 2000) and list(sims.columns[:2]) == ["sim_1", "sim_2"]
    data = sleepstudy()
    rows = data.index[data["Subject"] == "308"]
    y = sims.loc[rows].to_numpy()  # 10 rows of one subject, 2000 draws
    x = np.column_stack([np.ones(10), data.loc[rows, "Days"]])
    mean = x @ result.fe_params.to_numpy()
    cov = x @ result.cov_re.to_numpy() @ x.T + result.scale * np.eye(10)
    se_mean = np.sqrt(np.diag(cov) / 2000)
    assert np.all(np.abs(y.mean(axis=1) - mean) < 4 * se_mean)
    emp = np.cov(y)
    # Monte Carlo error of a variance from 2000 draws: about sqrt(2 / 2000) = 3%
    np.testing.assert_allclose(np.diag(emp), np.diag(cov), rtol=0.15)
    assert emp[0, 9] == pytest.approx(cov[0, 9], rel=0.2)  # the shared random effects
    other = data.index[data["Subject"] == "309"][0]
    corr = np.corrcoef(sims.loc[rows[0]], sims.loc[other])[0, 1]
    assert abs(corr) < 4 / np.sqrt(2000)  # groups independent


def test_same_seed_same_responses_and_group_effects_from_the_label(result):
    a, b = result.simulate(2, seed=5), result.simulate(2, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.to_numpy(), result.simulate(2, seed=6).to_numpy())
    labels = np.array([11, 11, 12], dtype=np.uint64)
    z = hashed_normals(labels, 5, 0, 1)
    assert z[0] == z[1] != z[2]
    big = hashed_normals(np.arange(20000, dtype=np.uint64), 1, 2, 3)
    assert abs(big.mean()) < 0.03 and big.std() == pytest.approx(1.0, abs=0.02)


def test_refit_recovers_an_exact_transformation(result):
    data = sleepstudy().assign(y2=lambda d: 2 * d["Reaction"] + 1)
    model = dlmm.mixedlm("Reaction ~ Days", data, groups="Subject", re_formula="~Days")
    base = model.fit()
    for new in ("y2", data["y2"], data["y2"].to_numpy()):
        refit = base.refit(new)
        assert refit.reml
        np.testing.assert_allclose(refit.fe_params.to_numpy(),
                                   2 * base.fe_params.to_numpy() + [1, 0], rtol=1e-6)
        np.testing.assert_allclose(refit.cov_re.to_numpy(), 4 * base.cov_re.to_numpy(),
                                   rtol=1e-5)
        assert refit.scale == pytest.approx(4 * base.scale, rel=1e-6)
    with pytest.raises(dlmm.InputError, match="has 3 values; the data have 180 rows"):
        base.refit(np.ones(3))


def test_refit_of_a_simulation_fits_it(result):
    sims = result.simulate(1, seed=2)
    refit = result.refit(sims["sim_1"])
    assert refit.nobs == 180 and refit.converged
    assert refit.fe_params["Days"] == pytest.approx(result.fe_params["Days"], abs=6.0)
    with pytest.raises(dlmm.InputError, match="pick a column"):
        result.refit(sims)


def test_update_matches_lme4_fits():
    ml = fit_sleepstudy(False)
    llf = FEATURES["sleepstudy"]["llf_ml"]
    assert ml.llf == pytest.approx(llf["ss"], rel=1e-8)
    smaller = ml.update(". ~ . - Days", re_formula="1")
    assert not smaller.reml and smaller.exog_names == ["Intercept"]
    assert smaller.llf == pytest.approx(llf["ss00"], rel=1e-8)
    assert ml.update(re_formula="1").llf == pytest.approx(llf["ss0"], rel=1e-8)
    with pytest.raises(dlmm.InputError, match="formula must look like"):
        ml.update("Days")


def test_variance_components_are_simulated_per_level():
    from tests.results.lme4_reference import fit_penicillin

    fit = fit_penicillin()  # crossed: plate and sample intercepts
    sims = fit.simulate(2000, seed=1).to_numpy()
    total = fit.vcomp.sum() + fit.scale
    assert sims[0].var() == pytest.approx(total, rel=0.1)
    # rows 0 and 1: the same plate, different samples -> covariance vcomp[plate]
    data = pd.read_csv("tests/reference/data/penicillin.csv")
    assert data["plate"][0] == data["plate"][1] and data["sample"][0] != data["sample"][1]
    assert np.cov(sims[0], sims[1])[0, 1] == pytest.approx(fit.vcomp[0], abs=0.15)


def test_refit_refused_for_loaded_and_array_models(result, tmp_path):
    result.save(tmp_path / "fit")
    with pytest.raises(dlmm.InputError, match="a loaded result has neither"):
        dlmm.load_result(tmp_path / "fit").refit("Reaction")
    data = sleepstudy()
    arrays = dlmm.MixedLM(data["Reaction"].to_numpy(), np.ones((180, 1)),
                          data["Subject"].to_numpy()).fit()
    with pytest.raises(dlmm.InputError, match="need a model made from a formula"):
        arrays.update(". ~ .")
