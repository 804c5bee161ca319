"""statsmodels' ``profile_re`` when the profiled variance is the model's only variance
parameter (issue 25, item 13): nothing is left to re-estimate at each point but the
fixed effects and the scale, which have closed forms.

The data are those of statsmodels' ``test_profile_re_likelihood_peaks_at_mle``; the
numbers are statsmodels' own ``profile_re`` of the same model.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM as SMMixedLM

import dlmm


def _data():
    rng = np.random.default_rng(4021)
    n_groups, n_per_group = 15, 8
    n = n_groups * n_per_group
    groups = np.repeat(np.arange(n_groups), n_per_group)
    exog = np.column_stack([np.ones(n), rng.standard_normal((n, 1))])
    endog = (exog @ [1.0, 0.5] + rng.standard_normal(n_groups)[groups] * 0.6
             + rng.standard_normal(n) * 0.5)
    return endog, exog, groups


@pytest.mark.parametrize("reml", [False, True], ids=["ml", "reml"])
def test_profile_re_of_the_only_variance_matches_statsmodels(reml):
    endog, exog, groups = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = SMMixedLM(endog, exog, groups).fit(reml=reml, gtol=1e-10).profile_re(
            0, vtype="re", num_low=2, dist_low=0.2, num_high=2, dist_high=0.2)
    result = dlmm.MixedLM(endog, exog, groups).fit(reml=reml)
    got = result.profile_re(0, vtype="re", num_low=2, dist_low=0.2, num_high=2,
                            dist_high=0.2)
    assert got.shape == expected.shape == (5, 2)
    np.testing.assert_allclose(got[:, 0], expected[:, 0], rtol=1e-5)
    np.testing.assert_allclose(got[:, 1], expected[:, 1], rtol=1e-9)
    # the middle point is the fit itself, the others below it
    assert got[2, 0] == pytest.approx(np.asarray(result.cov_re)[0, 0], rel=1e-9)
    assert got[2, 1] == pytest.approx(result.llf, rel=1e-12)
    assert np.all(np.delete(got[:, 1], 2) < result.llf)
