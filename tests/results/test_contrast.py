"""Hypothesis tests and their result objects, against statsmodels and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from dlmm.exceptions import InputError
from dlmm.results.contrast import constraint_matrix, holm_sidak, t_test, wald_test

BETA = np.array([1.0, 2.0, -0.5])
COV = np.array([[0.04, 0.01, 0.0], [0.01, 0.09, 0.02], [0.0, 0.02, 0.25]])
NAMES = ["Intercept", "x1", "x2"]


def test_holm_sidak_is_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.0005, 0.8])
    np.testing.assert_allclose(holm_sidak(p), multipletests(p, method="hs")[1], rtol=1e-12)


def test_constraint_forms_agree():
    r1, q1 = constraint_matrix("x1 = x2, Intercept = 1", None, NAMES, 5)
    r2, q2 = constraint_matrix((np.array([[0, 1, -1], [1, 0, 0]]), [0, 1]), None, NAMES, 5)
    full = np.zeros((2, 5))
    full[:, :3] = r2
    r3, q3 = constraint_matrix(full, [0, 1], NAMES, 5)
    for r, q in ((r2, q2), (r3, q3)):
        np.testing.assert_array_equal(r, r1)
        np.testing.assert_array_equal(q, q1)
    with pytest.raises(InputError, match="covariance parameters"):
        constraint_matrix(np.eye(5)[4:], None, NAMES, 5)
    with pytest.raises(InputError, match="should have 3 columns"):
        constraint_matrix(np.eye(2), None, NAMES, 5)


def test_t_z_chi2_and_f_by_hand():
    r = np.array([[0.0, 1.0, -1.0], [1.0, 0.0, 0.0]])
    q = np.array([2.0, 0.0])
    sd = np.sqrt(np.diag(r @ COV @ r.T))
    z = (r @ BETA - q) / sd
    res = t_test(BETA, COV, r, q)
    np.testing.assert_allclose(res.effect, r @ BETA)
    np.testing.assert_allclose(res.tvalue, z)
    np.testing.assert_allclose(res.pvalue, 2 * sps.norm.sf(np.abs(z)))
    np.testing.assert_allclose(res.conf_int(0.1), np.column_stack(
        [r @ BETA - 1.6448536269514722 * sd, r @ BETA + 1.6448536269514722 * sd]))
    assert list(res.summary_frame().columns)[:4] == ["coef", "std err", "z", "P>|z|"]
    with_t = t_test(BETA, COV, r, q, df_resid=30)
    np.testing.assert_allclose(with_t.pvalue, 2 * sps.t.sf(np.abs(z), 30))
    d = r @ BETA - q
    stat = d @ np.linalg.solve(r @ COV @ r.T, d)
    chi2 = wald_test(BETA, COV, r, q)
    assert chi2.statistic == pytest.approx(stat) and chi2.df_num == 2
    assert chi2.pvalue == pytest.approx(sps.chi2.sf(stat, 2))
    f = wald_test(BETA, COV, r, q, df_resid=30)
    assert f.fvalue == pytest.approx(stat / 2)
    assert f.pvalue == pytest.approx(sps.f.sf(stat / 2, 2, 30))
    assert "F test" in str(f)
    with pytest.raises(InputError, match="no confidence interval"):
        chi2.conf_int()
