"""What a weighted fit's results know (precision weights, :mod:`dlmm.spec.residual`):
the summary says so, a saved folder keeps it, predictions ignore the weights (lme4's
``predict``), fitted values are lme4's, simulated responses have residual variance
``scale / w`` and profile intervals of the variances are lme4's.

lme4's numbers: ``tests/reference/weights/lme4_weights.R``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.results.profile import ProfileLikelihood

HERE = Path(__file__).resolve().parents[1] / "reference" / "weights"
REF = json.loads((HERE / "lme4_weights.json").read_text())["sleep_slope"]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(HERE / "sleepstudy_w.csv", dtype={"Subject": str})


@pytest.fixture(scope="module")
def fits(data):
    def fit(reml):
        return dlmm.mixedlm("Reaction ~ Days", data, groups="Subject", re_formula="~Days",
                            weights="w").fit(reml=reml)
    return {True: fit(True), False: fit(False)}


def test_summary_says_weighted(fits):
    text = str(fits[True].summary())
    assert "Precision weights:" in text and " w " in text
    assert fits[True].weights == "w"


def test_save_and_load_keep_the_weights(fits, data, tmp_path):
    result = fits[True]
    result.save(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["state"]["fit"]["weights"] == "w"
    loaded = dlmm.load_result(tmp_path / "out")
    assert loaded.weights == "w" and "Precision weights:" in str(loaded.summary())
    np.testing.assert_allclose(loaded.llf, REF["REML"]["logLik"], rtol=1e-6)
    # a loaded result predicts new data without the weights column, as lme4
    np.testing.assert_allclose(np.asarray(loaded.predict(data.drop(columns="w").head())),
                               REF["REML"]["predict_fixed_head"], rtol=1e-7)


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_predictions_and_fitted_values_are_lme4s(fits, data, reml):
    result, ref = fits[reml], REF["REML" if reml else "ML"]
    np.testing.assert_allclose(np.asarray(result.predict(data.drop(columns="w")))[:5],
                               ref["predict_fixed_head"], rtol=1e-7)
    # conditional modes of the weighted model: lme4's fitted()
    np.testing.assert_allclose(np.asarray(result.fittedvalues)[:5], ref["fitted_head"],
                               rtol=1e-6)


def test_simulated_residual_variance_is_scale_over_w(fits, data):
    result = fits[True]
    sims = result.simulate(n=2000, seed=3).to_numpy()
    z = np.column_stack([np.ones(len(data)), data["Days"]])
    random_part = np.einsum("ri,ij,rj->r", z, np.asarray(result.cov_re), z)
    w = data["w"].to_numpy()
    ratio = sims.var(axis=1) / (random_part + result.scale / w)
    small = w < np.median(w)
    # each half on its own: noise of sd sigma (unweighted) would give 1.6 and 0.89
    assert abs(ratio[small].mean() - 1) < 0.05 and abs(ratio[~small].mean() - 1) < 0.05


def test_profile_intervals_are_lme4s(fits):
    """lme4's profile of a weighted fit is right for the variance parameters (not for
    the fixed effects: lme4 issue #192, its deviance for the fixed-effect profile
    leaves out the weights' log-determinant); the intercept's sd and the correlation
    are compared, with the tolerance of tests/results/test_profile.py."""
    prof = ProfileLikelihood(fits[False])
    params = prof.parameters()
    ref = REF["ML"]["profile_ci"]
    for j in (0, 1):  # sd_(Intercept)|Subject, cor_Days.(Intercept)|Subject
        _, kind, index = params[j]
        np.testing.assert_allclose(prof.interval(kind, index),
                                   [ref[j]["lower"], ref[j]["upper"]], rtol=1e-2)


def test_refit_keeps_the_weights(fits, data):
    again = fits[True].refit("Reaction")
    np.testing.assert_allclose(again.llf, REF["REML"]["logLik"], rtol=1e-6)
