"""``t_test`` with an ``r_matrix`` of the wrong width fails as statsmodels' does (issue 25,
item 12): a ``ValueError`` saying it should have ``k_fe`` columns. The data and the
checks are those of statsmodels' ``test_mixedlm_t_test``; the numbers statsmodels' own.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM as SMMixedLM

import dlmm


@pytest.fixture(scope="module")
def fits():
    rs = np.random.RandomState(12345)
    n_groups, group_size = 30, 10
    n = n_groups * group_size
    groups = np.repeat(np.arange(n_groups), group_size)
    exog = np.column_stack([np.ones(n), rs.standard_normal((n, 2))])
    endog = (exog @ [1.0, 0.5, -0.5] + rs.standard_normal(n_groups)[groups] * 0.5
             + rs.standard_normal(n) * 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = SMMixedLM(endog, exog, groups).fit(gtol=1e-10)
    return dlmm.MixedLM(endog, exog, groups).fit(), expected


@pytest.mark.parametrize("shape", [(4, 4), (1, 2), (2, 5)])
def test_t_test_of_the_wrong_width_is_statsmodels_value_error(fits, shape):
    result, expected = fits
    r = np.eye(*shape)
    with pytest.raises(ValueError, match="should have 3 columns"):
        expected.t_test(r)
    with pytest.raises(ValueError, match="should have 3 columns"):
        result.t_test(r)


def test_t_test_over_the_fixed_effects_matches_statsmodels(fits):
    result, expected = fits
    got, want = result.t_test(np.eye(3)), expected.t_test(np.eye(3))
    np.testing.assert_allclose(got.effect, want.effect, rtol=1e-6)
    np.testing.assert_allclose(got.sd, want.sd, rtol=1e-5)
    np.testing.assert_allclose(got.tvalue, want.tvalue, rtol=1e-5)
    contrast = np.array([[1.0, -1.0, 0.0]])
    np.testing.assert_allclose(result.t_test(contrast).effect,
                               expected.t_test(contrast).effect, rtol=1e-6)
