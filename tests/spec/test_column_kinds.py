"""Kinds of data columns in formulas, as users pass them (issues 20 and 21).

Text whose values look like numbers (grades ``K, 1, 2, 3``) is a factor, as in
formulaic, statsmodels and lme4, unless its other values are only missing-value
markers; a boolean is a factor (statsmodels' ``b[T.True]``); a column of times used
as a number, a data column named ``Intercept`` beside the intercept and a Python
keyword in a formula's code are refused in one line naming the column. Each from
pandas and, where the path differs, from Parquet on a Dask cluster; fits are checked
against statsmodels' MixedLM on the same rows.
"""

from __future__ import annotations

import io
import logging
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import dlmm
from dlmm import InputError

GRADES = ["K", "1", "2", "3"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """72 rows, 12 groups: y, x, g, grade (text), b (bool), t (times), Intercept."""
    rng = np.random.default_rng(7)
    n, n_groups = 72, 12
    g = np.repeat(np.arange(n_groups), n // n_groups)
    grade = rng.choice(GRADES, n)
    b = rng.random(n) < 0.45
    x = rng.standard_normal(n)
    y = (1.0 + x + 0.7 * b + 0.3 * pd.Series(grade).map({"K": 0, "1": 1, "2": 2, "3": 3})
         + rng.standard_normal(n_groups)[g] + rng.standard_normal(n))
    return pd.DataFrame({
        "y": y, "x": x, "g": g, "grade": grade, "b": b,
        "t": pd.Timestamp("2024-03-01") + pd.to_timedelta(rng.integers(0, 90, n), unit="D"),
        "Intercept": rng.standard_normal(n),
    })


def _sm(formula: str, data: pd.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(formula, data, groups="g").fit(reml=True)


def _fit(formula: str, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dlmm.mixedlm(formula, data, groups="g", **kwargs).fit()


def _agrees(result, sm) -> None:
    """fe_params, their standard errors and the REML log-likelihood of statsmodels."""
    assert result.converged
    assert list(result.fe_params.index) == list(sm.fe_params.index)
    np.testing.assert_allclose(result.fe_params, sm.fe_params, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.bse_fe, sm.bse_fe, rtol=1e-4)
    assert abs(result.llf - sm.llf) < 1e-6


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message, message
    return message


def _text_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "dlmm" and "is text (values such as" in r.getMessage()]


# -- text whose values look like numbers: a factor --------------------------------------


CSV = "y,x,g,grade\n" + "".join(
    f"{y:.6f},{x:.6f},{g},{grade}\n" for y, x, g, grade in zip(
        np.random.default_rng(3).standard_normal(60), np.random.default_rng(4).standard_normal(60),
        np.repeat(np.arange(10), 6), np.tile(GRADES, 15)))


def test_text_grades_from_csv_are_a_factor(caplog):
    """``K, 1, 2, 3`` read from CSV: a factor with statsmodels' names and fit (it was
    refused as 'text, but its values are numbers except K'), logged once."""
    data = pd.read_csv(io.StringIO(CSV))
    assert not pd.api.types.is_numeric_dtype(data["grade"])
    before = data.copy()
    with caplog.at_level(logging.INFO, logger="dlmm"):
        result = _fit("y ~ x + grade", data)
    _agrees(result, _sm("y ~ x + grade", data))
    assert list(result.fe_params.index) == ["Intercept", "grade[T.2]", "grade[T.3]",
                                            "grade[T.K]", "x"]
    logs = _text_logs(caplog)
    assert len(logs) == 1 and "'grade'" in logs[0] and "4 levels" in logs[0], logs
    pd.testing.assert_frame_equal(data, before)


def test_text_grades_from_parquet_are_a_factor(frame, tmp_path, dask_client, caplog):
    """The same from two Parquet files on a cluster, the word 'K' only in the second."""
    data = frame[["y", "x", "g", "grade"]].copy()
    data.loc[:35, "grade"] = data.loc[:35, "grade"].replace("K", "1")
    folder = tmp_path / "data"
    folder.mkdir()
    data.iloc[:36].to_parquet(folder / "part-0.parquet")
    data.iloc[36:].to_parquet(folder / "part-1.parquet")
    with caplog.at_level(logging.INFO, logger="dlmm"):
        result = _fit("y ~ x + grade", str(folder), client=dask_client)
    _agrees(result, _sm("y ~ x + grade", data))
    assert len(_text_logs(caplog)) == 1


@pytest.mark.parametrize("marker", ["n/a", "NA", "", "null", "-", " N/A "])
def test_numbers_with_missing_markers_are_refused(frame, marker):
    """Numbers whose only other values are missing-value markers stay an error (a damaged
    numeric column would be a factor with a level per number), naming column and marker."""
    data = frame[["y", "g"]].assign(score=frame["x"].round(4).astype(str))
    data.loc[[5, 40], "score"] = marker
    before = data.copy()
    with pytest.raises(InputError, match=re.escape("column 'score' is text, but its values "
                                                   "are numbers")) as info:
        _fit("y ~ score", data)
    message = _one_line(info)
    assert f"except {marker!r}, a missing-value marker" in message and "C(score)" in message
    pd.testing.assert_frame_equal(data, before)


def test_numbers_with_a_word_and_a_marker_are_a_factor(frame):
    """A word that is not a missing-value marker (beside one that is) makes a factor."""
    data = frame[["y", "x", "g"]].assign(grade=frame["grade"])
    data.loc[[2, 30], "grade"] = "n/a"
    result = _fit("y ~ x + grade", data)
    _agrees(result, _sm("y ~ x + grade", data))
    assert "grade[T.n/a]" in result.fe_params.index


# -- booleans: a factor, b[T.True] ------------------------------------------------------


def test_boolean_covariates_from_pandas(frame):
    """A numpy bool column and a pandas nullable ``boolean`` one (it was a
    FactorEncodingError): statsmodels' names, estimates, standard errors and llf."""
    rng = np.random.default_rng(11)
    data = frame[["y", "x", "g", "b"]].assign(c=pd.array(rng.random(len(frame)) < 0.5,
                                                         dtype="boolean"))
    before = data.copy()
    result = _fit("y ~ x + b + c", data)
    _agrees(result, _sm("y ~ x + b + c", data.assign(c=data["c"].astype(bool))))
    assert list(result.fe_params.index) == ["Intercept", "b[T.True]", "c[T.True]", "x"]
    pd.testing.assert_frame_equal(data, before)


def test_boolean_covariates_from_parquet(frame, tmp_path, dask_client):
    """From Parquet on a cluster: a bool column and a nullable ``boolean`` one with a
    missing value (dropped with missing='drop'), as statsmodels fits the complete rows."""
    rng = np.random.default_rng(12)
    data = frame[["y", "x", "g", "b"]].assign(c=pd.array(rng.random(len(frame)) < 0.5,
                                                         dtype="boolean"))
    data.loc[[4, 50], "c"] = pd.NA
    folder = tmp_path / "data"
    folder.mkdir()
    data.iloc[:36].to_parquet(folder / "part-0.parquet")
    data.iloc[36:].to_parquet(folder / "part-1.parquet")
    result = _fit("y ~ x + b + c", str(folder), client=dask_client, missing="drop")
    complete = data.dropna().assign(c=lambda d: d["c"].astype(bool))
    assert result.nobs == len(complete) == len(data) - 2
    _agrees(result, _sm("y ~ x + b + c", complete))


# -- times: refused as numbers ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["datetime", "datetime tz", "timedelta"])
def test_time_covariate_is_refused_in_one_line(frame, kind):
    """A column of times (or durations) used as a term: one line naming it (it was a
    numpy UFuncTypeError), not a number in a unit dlmm would have to choose."""
    t = {"datetime": frame["t"], "datetime tz": frame["t"].dt.tz_localize("UTC"),
         "timedelta": frame["t"] - pd.Timestamp("2024-01-01")}[kind]
    data = frame[["y", "x", "g"]].assign(t=t)
    with pytest.raises(InputError, match=re.escape("column 't' holds times")) as info:
        _fit("y ~ x + t", data)
    assert "C(t)" in _one_line(info)


def test_time_covariate_from_parquet_is_refused(frame, tmp_path, dask_client):
    path = tmp_path / "data.parquet"
    frame[["y", "x", "g", "t"]].to_parquet(path)
    with pytest.raises(InputError, match=re.escape("column 't' holds times")) as info:
        _fit("y ~ x + t", str(path), client=dask_client)
    _one_line(info)


def test_time_through_python_code_is_a_number(frame):
    """Times made numbers by the formula's own code are not refused (nor are they
    touched): statsmodels' fit of the same conversion."""
    data = frame[["y", "x", "g", "t"]]
    result = _fit("y ~ x + I(t.dt.day_of_year / 30)", data)
    sm = _sm("y ~ x + day", data.assign(day=data["t"].dt.day_of_year / 30))
    np.testing.assert_allclose(result.fe_params, sm.fe_params, rtol=1e-5, atol=1e-5)
    assert abs(result.llf - sm.llf) < 1e-6


# -- a data column named Intercept --------------------------------------------------------


def test_intercept_column_beside_the_intercept_is_refused(frame, tmp_path, dask_client):
    """``y ~ Intercept + x`` with a data column 'Intercept': two fixed effects of one name,
    the intercept lost (k_fe 3, fe_params 2); refused like statsmodels, in one line."""
    data = frame[["y", "x", "g", "Intercept"]]
    path = tmp_path / "data.parquet"
    data.to_parquet(path)
    for source, kw in ((data, {}), (str(path), {"client": dask_client})):
        with pytest.raises(InputError, match=re.escape(
                "has the data column 'Intercept' beside the intercept")) as info:
            _fit("y ~ Intercept + x", source, **kw)
        assert "'0 + Intercept + ...'" in _one_line(info)


def test_intercept_column_without_the_intercept_fits(frame):
    """``0 + Intercept + x``: the column is the only 'Intercept', fitted as statsmodels."""
    data = frame[["y", "x", "g", "Intercept"]]
    _agrees(_fit("y ~ 0 + Intercept + x", data), _sm("y ~ 0 + Intercept + x", data))


def test_intercept_column_in_random_effects_is_refused(frame):
    data = frame[["y", "x", "g", "Intercept"]]
    with pytest.raises(InputError, match=re.escape(
            "re_formula '~Intercept' has the data column 'Intercept' beside the intercept")):
        _fit("y ~ x", data, re_formula="~Intercept")


# -- a column named with a Python keyword ---------------------------------------------------


@pytest.mark.parametrize("text", ["0 + C(class)", "0 + C(`class`)", "0 + C(Q('class'))"])
def test_keyword_column_fits_as_statsmodels_q(frame, text):
    """``C(class)`` was a SyntaxError from formulaic's Python parse (with backticks
    too); each spelling now fits statsmodels' ``C(Q('class'))``."""
    data = frame[["y", "x", "g"]].assign(**{"class": frame["grade"]})
    result = _fit("y ~ x", data, vc_formula={"class": text})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = smf.mixedlm("y ~ x", data, groups="g",
                         vc_formula={"class": "0 + C(Q('class'))"}).fit(reml=True)
    _agrees(result, sm)
    np.testing.assert_allclose(result.vcomp, sm.vcomp, rtol=1e-3, atol=1e-5)


def test_keyword_column_in_other_code_is_one_line(frame):
    """A bare keyword in other Python code (``I(class * 2)``) cannot be read: one line
    naming the column and the spellings that read it."""
    data = frame[["y", "x", "g"]].assign(**{"class": frame["x"] * 2})
    with pytest.raises(InputError, match=re.escape("column 'class' is named with a Python "
                                                   "keyword")) as info:
        _fit("y ~ I(class * 2)", data)
    assert "`class`" in _one_line(info) and "Q('class')" in _one_line(info)


def test_keyword_column_in_backticks_in_code_fits(frame):
    data = frame[["y", "x", "g"]].assign(**{"class": frame["x"]})
    result = _fit("y ~ I(`class` * 2)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = smf.mixedlm("y ~ I(x * 2)", data, groups="g").fit(reml=True)
    np.testing.assert_allclose(result.fe_params.to_numpy(), sm.fe_params.to_numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(result.llf, sm.llf, rtol=1e-6)
