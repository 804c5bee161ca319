"""dlmm's tail areas and quantiles are scipy.stats' (the reference), edges included."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dlmm.results import distributions as d

X = np.array([-np.inf, -40.0, -3.0, -0.5, 0.0, 1e-8, 0.5, 1.96, 3.0, 40.0, np.inf, np.nan])
Q = np.array([0.0, 1e-12, 0.001, 0.025, 0.3, 0.5, 0.95, 0.975, 0.999, 1 - 1e-12, 1.0, np.nan])
DF = [0.5, 1.0, 2.5, 7.0, 30.0, 1e4]


def _same(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-300, equal_nan=True)


def test_normal():
    _same(d.normal_sf(X), stats.norm.sf(X))
    _same(d.normal_quantile(Q), stats.norm.ppf(Q))


@pytest.mark.parametrize("df", DF + [np.inf])
def test_t(df):
    _same(d.t_sf(X, df), stats.t.sf(X, df))
    _same(d.t_quantile(Q, df), stats.t.ppf(Q, df))


@pytest.mark.parametrize("df", DF)
def test_chi2(df):
    _same(d.chi2_sf(X, df), stats.chi2.sf(X, df))
    _same(d.chi2_quantile(Q, df), stats.chi2.ppf(Q, df))


@pytest.mark.parametrize("df_num, df_denom", [(1, 1), (1, 30), (3, 7.5), (12, 1e4)])
def test_f(df_num, df_denom):
    _same(d.f_sf(X, df_num, df_denom), stats.f.sf(X, df_num, df_denom))


def test_scalars_stay_scalars():
    assert isinstance(d.t_quantile(0.975, 10), float)
    assert d.t_quantile(0.975, 10) == pytest.approx(stats.t.ppf(0.975, 10), rel=1e-14)
    assert d.chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-12)
