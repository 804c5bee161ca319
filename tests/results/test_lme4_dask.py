"""lme4's features on a Dask fit: computed on the workers, only samples collected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.results.diagnostics import residual_sample
from dlmm.results.simulate_refit import simulate_chunk
from tests.results.lme4_reference import sleepstudy


@pytest.fixture(scope="module")
def fits(dask_client):
    import dask.dataframe as dd

    data = sleepstudy()
    # 4 partitions of 45 rows: subjects (10 rows each) are split between partitions
    ddf = dd.from_pandas(data, npartitions=4, sort=False)
    model = dlmm.mixedlm("Reaction ~ Days", ddf, groups="Subject", re_formula="~Days")
    local = dlmm.mixedlm("Reaction ~ Days", data, groups="Subject", re_formula="~Days")
    return model.fit(client=dask_client), local.fit()


def test_group_effects_do_not_depend_on_the_partitioning(fits):
    _, local = fits
    spec = local.model.spec
    frame = sleepstudy()
    chol = np.linalg.cholesky(local.cov_re.to_numpy())
    args = (spec, local.fe_params.to_numpy(), chol, np.zeros(0), 0.0, 3, 7)  # no noise
    whole = simulate_chunk(frame, *args, partition=0)
    parts = pd.concat([simulate_chunk(frame.iloc[a:a + 45], *args, partition=i)
                       for i, a in enumerate(range(0, 180, 45))])
    pd.testing.assert_frame_equal(whole, parts)


def test_simulate_and_refit_stay_distributed(fits):
    result, local = fits
    sims = result.simulate(2, seed=4)
    assert hasattr(sims, "npartitions") and sims.npartitions == 4
    values = sims.compute()
    assert values.shape == (180, 2) and values.index.equals(sleepstudy().index)
    refit = result.refit(sims["sim_1"])
    assert refit.backend == "dask" and refit.nobs == 180
    direct = local.refit(values["sim_1"])  # the same numbers fitted in process
    assert refit.llf == pytest.approx(direct.llf, rel=1e-8)
    np.testing.assert_allclose(refit.fe_params, direct.fe_params, rtol=1e-7)


def test_residual_sample_is_bounded_and_right(fits):
    result, local = fits
    sample = residual_sample(result, max_points=50, seed=1)
    assert len(sample) == 50 and sample.attrs["nobs"] == 180
    resid = local.resid.loc[sample.index]
    np.testing.assert_allclose(sample["resid"], resid, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sample["fitted"], local.fittedvalues.loc[sample.index],
                               rtol=1e-7)


def test_coef_is_lazy_and_equal(fits):
    result, local = fits
    coef = result.coef()
    assert hasattr(coef, "npartitions")
    got = coef.compute().sort_index()
    pd.testing.assert_frame_equal(got, local.coef().sort_index(), rtol=1e-6)
