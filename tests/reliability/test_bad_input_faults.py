"""Bad input that used to end in an "unexpected" error (issue 10, item 5): each is now an
``InputError`` whose one line names the column, value or file; the input frame or files are
left exactly as they were. Folders with files that are not data are read as Dask reads them.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm import InputError
from tests.reliability.helpers import (
    sm_profile_loglike,
    sqrt_params,
    statsmodels_fit,
    tree_state,
)
from tests.simulate import grouped_data


@pytest.fixture
def df() -> pd.DataFrame:
    """200 rows, 20 groups; columns y, g, x1, x2."""
    return grouped_data(n_groups=20, per_group=10, k_fe=3, re_cov=np.array([[1.0]]), seed=1)


def _raises(data, match: str, formula="y ~ x1", **kwargs) -> str:
    """Fit and expect a one-line InputError containing ``match`` literally; a pandas input
    frame must be left unchanged."""
    before = data.copy(deep=True) if isinstance(data, pd.DataFrame) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match=re.escape(match)) as info:
            dlmm.mixedlm(formula, data, **kwargs).fit()
    if before is not None:
        pd.testing.assert_frame_equal(data, before)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message, message
    return message


def _raises_parquet(path, match: str, root: Path, client, **kwargs) -> str:
    before = tree_state(root)
    message = _raises(str(path), match, groups="g", client=client, **kwargs)
    assert tree_state(root) == before
    return message


def _two_files(folder: Path, first: pd.DataFrame, second: pd.DataFrame) -> Path:
    folder.mkdir()
    first.to_parquet(folder / "part-0.parquet")
    second.to_parquet(folder / "part-1.parquet")
    return folder


# -- types -------------------------------------------------------------------------------


@pytest.mark.parametrize("column, first_type, second_type", [
    ("g", "int64", "string"), ("x1", "double", "string")])
def test_column_type_differs_between_files(tmp_path, df, dask_client, column, first_type,
                                           second_type):
    """int (or float) in one file, text in another: found in the footers, before any row
    is read (today: a numpy UFuncTypeError from the data pass, or a silent fit)."""
    second = df.iloc[100:].assign(**{column: df[column].iloc[100:].astype(str)})
    folder = _two_files(tmp_path / "data", df.iloc[:100], second)
    message = _raises_parquet(folder, f"column {column!r} is {first_type} in Parquet file",
                              tmp_path, dask_client)
    assert "part-0.parquet" in message and "part-1.parquet" in message
    assert second_type in message


def test_text_among_numbers_in_a_pandas_column(df):
    """'n/a' in a numeric column (an object column of floats and text)."""
    data = df.assign(x1=df["x1"].astype(object))
    data.loc[7, "x1"] = "n/a"
    message = _raises(data, "column 'x1' mixes text and numbers (e.g. 'n/a' and", groups="g")
    assert "make it numeric" in message


def test_text_among_numbers_in_a_parquet_text_column(tmp_path, df, dask_client):
    """A column written as text whose values are numbers except 'n/a': not a factor with a
    level per value (today: a ValueError from the workers)."""
    data = df.assign(x1=df["x1"].round(6).astype(str))
    data.loc[[3, 50], "x1"] = "n/a"
    folder = _two_files(tmp_path / "data", data.iloc[:100], data.iloc[100:])
    message = _raises_parquet(folder, "column 'x1' is text, but its values are numbers",
                              tmp_path, dask_client)
    assert "'n/a'" in message and "C(x1)" in message


def test_object_factor_mixing_text_and_numbers(df):
    data = df.assign(c=pd.Series(["a", 1, "b", 2.5] * 50, dtype=object))
    _raises(data, "column 'c' mixes text and numbers (e.g. 'a' and 1)", formula="y ~ x1 + c",
            groups="g")


def test_text_levels_that_look_numeric_stay_a_factor(df):
    """Not an error: a text column whose values are all numbers is a factor, as patsy and
    statsmodels make it."""
    data = df.assign(k=np.array(["1", "2", "3"])[np.arange(len(df)) % 3])
    result = dlmm.mixedlm("y ~ x1 + k", data, groups="g").fit()
    _, sm_result, _, error = statsmodels_fit("y ~ x1 + k", data, groups="g")
    assert error is None
    assert list(result.fe_params.index) == list(sm_result.fe_params.index)
    np.testing.assert_allclose(result.llf, sm_result.llf, rtol=1e-8)


# -- names -------------------------------------------------------------------------------


def test_duplicated_column_names(df):
    data = pd.concat([df, df[["x1"]]], axis=1)
    _raises(data, "column 'x1' appears 2 times in the data; give the columns unique names",
            groups="g")
    grouped = pd.concat([df, df[["g"]]], axis=1)
    _raises(grouped, "groups column 'g' appears 2 times in the data", groups="g")


def test_duplicated_unused_column_is_fine(df):
    data = pd.concat([df, df[["x2"]]], axis=1)
    result = dlmm.mixedlm("y ~ x1", data, groups="g").fit()
    _, sm_result, _, _ = statsmodels_fit("y ~ x1", df, groups="g")
    np.testing.assert_allclose(result.llf, sm_result.llf, rtol=1e-8)


@pytest.fixture
def spaced(df) -> pd.DataFrame:
    return df.rename(columns={"x1": "x 1"})


def test_backtick_quoted_column_names_fit_as_statsmodels(spaced):
    """formulaic's backticks (patsy's Q("x 1") in statsmodels)."""
    result = dlmm.mixedlm("y ~ `x 1`", spaced, groups="g").fit()
    _, sm_result, _, error = statsmodels_fit('y ~ Q("x 1")', spaced, groups="g")
    assert error is None and sm_result.converged
    np.testing.assert_allclose(result.llf, sm_result.llf, rtol=1e-8)
    np.testing.assert_allclose(result.fe_params.to_numpy(), sm_result.fe_params.to_numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(result.cov_re.to_numpy(), sm_result.cov_re.to_numpy(),
                               rtol=1e-4)


def test_backtick_quoted_random_slope_is_statsmodels_model(spaced):
    """A random slope on `x 1`: statsmodels' own fit fails to converge here, so the check
    is its log-likelihood at dlmm's estimate."""
    result = dlmm.mixedlm("y ~ `x 1`", spaced, groups="g", re_formula="~`x 1`").fit()
    sm_model, _, _, _ = statsmodels_fit('y ~ Q("x 1")', spaced, groups="g",
                                        re_formula='~Q("x 1")')
    assert result.converged and result.model.exog_re_names == ["g", "x 1"]
    chol, vc_sd = sqrt_params(result)
    np.testing.assert_allclose(result.llf, sm_profile_loglike(sm_model, chol, vc_sd),
                               rtol=1e-10)


def test_q_of_a_spaced_name_is_not_stateful_on_dask(spaced, dask_client):
    """Q("x 1") records an empty transform state: it needs no pass over all the data."""
    ddf = dd.from_pandas(spaced, npartitions=3, sort=False)
    result = dlmm.mixedlm('y ~ Q("x 1")', ddf, groups="g", client=dask_client).fit()
    _, sm_result, _, error = statsmodels_fit('y ~ Q("x 1")', spaced, groups="g")
    assert error is None
    np.testing.assert_allclose(result.llf, sm_result.llf, rtol=1e-6)


def test_unquoted_spaced_name_is_one_plain_line(spaced):
    message = _raises(spaced, "formula 'y ~ x 1' cannot be parsed: Missing operator between",
                      formula="y ~ x 1", groups="g")
    assert "needs backticks, e.g. `x 1`" in message


# -- values and sizes ----------------------------------------------------------------------


@pytest.mark.parametrize("column", ["x1", "y"])
def test_values_too_large_for_the_sums(df, column):
    data = df.assign(**{column: df[column] * 1e300})
    _raises(data, f"design column {column!r} has values as large as", groups="g")


def test_values_too_large_in_parquet(tmp_path, df, dask_client):
    data = df.copy()
    data.loc[150, "x1"] = 3e300  # beyond the sample of the first file
    folder = _two_files(tmp_path / "data", data.iloc[:100], data.iloc[100:])
    _raises_parquet(folder, "design column 'x1' has values as large as 3e+300", tmp_path,
                    dask_client)


def test_factor_with_too_many_levels_is_refused_up_front():
    """86,000 levels as fixed effects: refused from the learned levels, with the size the
    cross-product of [X y] would need (8 * 86,003^2 bytes: the intercept, x, a column per
    level, then y), before any design is built."""
    n_levels = 86_000
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"y": rng.normal(size=2 * n_levels),
                         "id": np.tile(np.arange(n_levels), 2).astype(str),
                         "x": rng.normal(size=2 * n_levels),
                         "g": np.repeat(np.arange(40), 2 * n_levels // 40)})
    message = _raises(data, "would have about 86,002 columns (column 'id' has 86,000 levels)",
                      formula="y ~ x + id", groups="g")
    assert "55.1 GiB" in message and "random effect" in message


def test_constant_response_is_named(df):
    """A constant response has no residual variance: today a ZeroDivisionError."""
    _raises(df.assign(y=5.0), "response 'y'", groups="g")


def test_vc_formula_naming_a_missing_column_on_dask(df, dask_client):
    ddf = dd.from_pandas(df, npartitions=3, sort=False)
    _raises(ddf, "column 'zz' used in vc_formula['c'] '0 + C(zz)' is not in the data",
            groups="g", vc_formula={"c": "0 + C(zz)"}, client=dask_client)


# -- folders ------------------------------------------------------------------------------


def test_folder_with_files_that_are_not_data(tmp_path, df, dask_client):
    """_SUCCESS, README.txt, hidden files, _temporary/ beside the data: ignored, as Dask and
    Spark ignore them; the fit is statsmodels' fit of the data files' rows."""
    folder = _two_files(tmp_path / "data", df.iloc[:100], df.iloc[100:])
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "README.txt").write_text("written by the nightly job\n")
    (folder / ".part-0.parquet.crc").write_bytes(b"\x00\x01")
    (folder / "_temporary").mkdir()
    (folder / "_temporary" / "junk.parquet").write_bytes(b"not parquet")
    before = tree_state(tmp_path)
    result = dlmm.mixedlm("y ~ x1", str(folder), groups="g", client=dask_client).fit()
    assert tree_state(tmp_path) == before
    _, sm_result, _, error = statsmodels_fit("y ~ x1", df, groups="g")
    assert error is None and result.nobs == len(df)
    np.testing.assert_allclose(result.llf, sm_result.llf, rtol=1e-6)


def test_folder_without_parquet_files(tmp_path, dask_client):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "README.txt").write_text("nothing here\n")
    _raises_parquet(folder, f"Parquet folder {str(folder)!r} holds no Parquet files",
                    tmp_path, dask_client)
