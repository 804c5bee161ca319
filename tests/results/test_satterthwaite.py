"""Satterthwaite's degrees of freedom against lmerTest's (tests/reference/lme4_features.R)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dlmm
from tests.results.lme4_reference import (
    FEATURES,
    FIXED_NAMES,
    fit_chickweight,
    fit_pastes,
    fit_penicillin,
    fit_sleepstudy,
    sleepstudy,
)


def check_table(table: pd.DataFrame, rows: list[dict]) -> None:
    for row in rows:
        got = table.loc[FIXED_NAMES.get(row["name"], row["name"])]
        assert got["Estimate"] == pytest.approx(row["estimate"], rel=1e-6)
        assert got["Std. Error"] == pytest.approx(row["se"], rel=1e-5)
        assert got["df"] == pytest.approx(row["df"], rel=1e-5)
        assert got["t value"] == pytest.approx(row["t"], rel=1e-5)
        assert got["Pr(>|t|)"] == pytest.approx(row["p"], rel=1e-3)


@pytest.mark.parametrize("fit, case, key", [
    (lambda: fit_sleepstudy(True), "sleepstudy", "satterthwaite"),
    (lambda: fit_sleepstudy(False), "sleepstudy", "satterthwaite_ml"),
    (fit_chickweight, "chickweight", "satterthwaite"),
    (fit_pastes, "pastes", "satterthwaite"),
    (fit_penicillin, "penicillin", "satterthwaite"),
], ids=["sleepstudy", "sleepstudy-ml", "chickweight", "pastes", "penicillin-crossed"])
def test_table_matches_lmertest(fit, case, key):
    table = fit().satterthwaite()
    assert list(table.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    check_table(table, FEATURES[case][key])


@pytest.mark.parametrize("c_x, c_y", [(1e6, 1.0), (1e10, 1.0), (1.0, 1e-100)],
                         ids=["days*1e6", "days*1e10", "reaction*1e-100"])
def test_table_in_the_data_units_matches_lmertest_rescaled(c_x, c_y):
    """Days * c_x and Reaction * c_y (issue 21, item 8): the same df and t values as
    lmerTest's on the data as they are; estimates and SEs of Days times c_y / c_x, of
    the intercept times c_y."""
    data = sleepstudy()
    result = dlmm.mixedlm("Reaction ~ Days", data.assign(Days=data.Days * c_x,
                                                         Reaction=data.Reaction * c_y),
                          groups="Subject", re_formula="~Days").fit()
    factor = {"(Intercept)": c_y, "Days": c_y / c_x}
    rows = [dict(row, estimate=row["estimate"] * factor[row["name"]],
                 se=row["se"] * factor[row["name"]])
            for row in FEATURES["sleepstudy"]["satterthwaite"]]
    check_table(result.satterthwaite(), rows)


def test_contrasts_match_contest1d():
    result = fit_chickweight()
    ref = FEATURES["chickweight"]["contrast"]  # Diet2 - Diet3
    table = result.satterthwaite({"2 vs 3": {"Diet[T.2]": 1, "Diet[T.3]": -1}})
    row = table.loc["2 vs 3"]
    assert row["Estimate"] == pytest.approx(ref["estimate"], rel=1e-5)
    assert row["df"] == pytest.approx(ref["df"], rel=1e-5)
    assert row["Pr(>|t|)"] == pytest.approx(ref["p"], rel=1e-4)
    ref = FEATURES["sleepstudy"]["contrast"]  # intercept + 7 days
    row = fit_sleepstudy().satterthwaite(np.array([[1.0, 7.0]])).iloc[0]
    assert row["Std. Error"] == pytest.approx(ref["se"], rel=1e-5)
    assert row["df"] == pytest.approx(ref["df"], rel=1e-5)
    with pytest.raises(dlmm.InputError, match="not a fixed effect"):
        result.satterthwaite({"x": {"Diet5": 1}})
    with pytest.raises(dlmm.InputError, match="expected 5"):
        result.satterthwaite([[1.0, 2.0]])


def test_summary_ddf_adds_the_table():
    result = fit_sleepstudy()
    text = str(result.summary(ddf="Satterthwaite"))
    assert "Fixed effects (Satterthwaite's degrees of freedom, lmerTest):" in text
    days = next(ln for ln in text.splitlines()[-3:] if ln.startswith("Days"))
    assert float(days.split()[3]) == pytest.approx(17.0, rel=1e-5)
    with pytest.raises(dlmm.InputError, match="ddf must be one of Satterthwaite"):
        result.summary(ddf="Kenward-Roger")


def test_refused_without_the_fitted_data_or_with_free(tmp_path):
    result = fit_sleepstudy()
    result.save(tmp_path / "fit")
    with pytest.raises(dlmm.InputError, match="need the fitted data"):
        dlmm.load_result(tmp_path / "fit").satterthwaite()
    model = dlmm.mixedlm("Reaction ~ Days", sleepstudy(), groups="Subject", re_formula="~Days")
    free = dlmm.MixedLMParams.from_components(np.ones(2), cov_re=np.eye(2), vcomp=np.zeros(0))
    with pytest.raises(dlmm.InputError, match="free="):
        model.fit(free=free).satterthwaite()


def test_costs_two_evaluations_per_covariance_parameter():
    result = fit_sleepstudy()
    stats = result._stats
    before = stats.evaluations
    result.satterthwaite()
    first = stats.evaluations - before
    # theta has 3 entries: two evaluations each, and the optimum's own unless the fit's
    # last evaluation was there (kept from the fit; by the rounding of the machine's BLAS
    # the optimizer may end on a trial point beside it)
    assert first in (2 * 3, 2 * 3 + 1)
    result.satterthwaite([[0.0, 1.0]])  # the pieces are kept: no more evaluations
    assert stats.evaluations - before == first
