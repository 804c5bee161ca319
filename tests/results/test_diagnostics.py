"""Diagnostic plots (residuals, QQ, random-effects QQ, profiles), each written to PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

import dlmm  # noqa: E402
from dlmm.results.diagnostics import normal_quantiles, residual_sample  # noqa: E402
from tests.results.lme4_reference import fit_sleepstudy  # noqa: E402


@pytest.fixture(scope="module")
def result():
    return fit_sleepstudy()


def test_residuals_against_fitted(result, tmp_path):
    fig = result.plot_residuals()
    fig.savefig(tmp_path / "resid.png")
    (ax,) = fig.axes
    points = ax.collections[0].get_offsets()
    assert points.shape == (180, 2)
    np.testing.assert_allclose(np.sort(points[:, 1]), np.sort(result.resid.to_numpy()))
    np.testing.assert_allclose(np.sort(points[:, 0]), np.sort(result.fittedvalues.to_numpy()))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("fitted values", "residuals")
    (small,) = result.plot_residuals(max_points=40).axes
    assert small.collections[0].get_offsets().shape == (40, 2)
    assert "40 of 180 rows" in small.get_title()


def test_sample_is_reproducible(result):
    a, b = residual_sample(result, 30, seed=2), residual_sample(result, 30, seed=2)
    assert a.index.equals(b.index) and len(a) == 30


def test_normal_quantiles_are_rs_ppoints():
    np.testing.assert_allclose(normal_quantiles(5),
                               stats.norm.ppf((np.arange(1, 6) - 0.375) / 5.25))
    np.testing.assert_allclose(normal_quantiles(20), stats.norm.ppf((np.arange(1, 21) - 0.5)
                                                                    / 20))


def test_residual_qq(result, tmp_path):
    fig = result.plot_qq()
    fig.savefig(tmp_path / "qq.png")
    (ax,) = fig.axes
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 0], normal_quantiles(180))
    np.testing.assert_allclose(points[:, 1],
                               np.sort(result.resid.to_numpy()) / np.sqrt(result.scale))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["standardized residuals",
                                                                   "y = x"]


def test_random_effects_qq(result, tmp_path):
    fig = result.plot_random_effects_qq()
    fig.savefig(tmp_path / "ranef_qq.png")
    left, right = fig.axes
    assert left.get_title() == "(Intercept) (18 groups)" and right.get_title().startswith("Days")
    np.testing.assert_allclose(right.lines[0].get_xdata(),
                               np.sort(result.random_effects_table()["Days"].to_numpy()))
    np.testing.assert_allclose(right.lines[0].get_ydata(), normal_quantiles(18))


def test_profile_plot(tmp_path):
    result = fit_sleepstudy(re_formula="1")
    fig = result.plot_profile(parameters=["Subject SD", "Residual SD", "Days"])
    fig.savefig(tmp_path / "profile.png")
    # lme4's strips (.sig01, .sigma, Days), the axes saying what they are
    assert [ax.get_title() for ax in fig.axes] == [r"$\sigma_{1}$", r"$\sigma$", "Days"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["sd (Intercept) | Subject", "residual sd",
                                                    "fixed effect"]
    days = fig.axes[2].lines[0]
    x, zeta = days.get_xdata(), days.get_ydata()
    assert np.all(np.diff(x) > 0) and np.all(np.diff(zeta) > 0) and zeta.min() < -2 < 2 < \
        zeta.max()
    # a fixed effect's profile is nearly straight: zeta ~ (beta - beta_hat) / se
    fe_ml = dlmm.mixedlm("Reaction ~ Days", result.model.data.frame,
                         groups="Subject").fit(reml=False)
    mid = np.abs(zeta) < 1.5
    slope = np.polyfit(x[mid], zeta[mid], 1)[0]
    assert slope * fe_ml.bse_fe["Days"] == pytest.approx(1.0, rel=0.05)
    with pytest.raises(dlmm.InputError, match="no parameter named 'nope'"):
        result.plot_profile(parameters=["nope"])


def test_random_effects_qq_of_crossed_factors(tmp_path):
    from tests.results.lme4_reference import fit_penicillin

    fig = fit_penicillin().plot_random_effects_qq(max_groups=10)
    fig.savefig(tmp_path / "crossed_qq.png")
    plate, sample = fig.axes
    assert plate.get_title() == "plate (10 of 24 groups)"
    assert sample.get_title() == "sample (6 groups)"
    assert len(sample.lines[0].get_xdata()) == 6
