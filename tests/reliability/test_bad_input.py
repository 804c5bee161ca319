"""Bad input (issue 5, item 2): a clear ``InputError`` naming the column, value, file or
option; the input frame or files left exactly as they were; nothing written."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import dask.dataframe as dd  # noqa: E402
import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm import InputError, MissingDataWarning
from tests.reliability.helpers import assert_same_fit, statsmodels_fit, tree_state
from tests.simulate import grouped_data


@pytest.fixture
def df() -> pd.DataFrame:
    """200 rows, 20 groups; columns y, g, x1, x2."""
    return grouped_data(n_groups=20, per_group=10, k_fe=3, re_cov=np.array([[1.0]]), seed=1)


def _raises(data, match: str, formula="y ~ x1", fit_kw=None, **kwargs) -> str:
    """Fit and expect an InputError whose text contains ``match`` literally; the input frame
    must be left unchanged (values, dtypes, index)."""
    before = data.copy(deep=True) if isinstance(data, pd.DataFrame) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match=re.escape(match)) as info:
            dlmm.mixedlm(formula, data, **kwargs).fit(**(fit_kw or {}))
    if before is not None:
        pd.testing.assert_frame_equal(data, before)
    return str(info.value)


# -- columns -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"formula": "y ~ x1 + zz", "groups": "g"},
     "column 'zz' used in formula 'y ~ x1 + zz' is not in the data (columns: y, g, x1, x2)"),
    ({"formula": "yy ~ x1", "groups": "g"},
     "column 'yy' used in formula 'yy ~ x1' is not in the data"),
    ({"formula": "y ~ x1", "groups": "gg"},
     "groups column 'gg' is not in the data (columns: y, g, x1, x2)"),
    ({"formula": "y ~ x1", "groups": "g", "re_formula": "~zz"},
     "column 'zz' used in re_formula '~zz' is not in the data"),
    ({"formula": "y ~ x1", "groups": "g", "vc_formula": {"c": "0 + C(zz)"}},
     "column 'zz' used in vc_formula['c'] '0 + C(zz)' is not in the data"),
], ids=["fixed", "response", "groups", "re_formula", "vc_formula"])
def test_unknown_column_is_named(df, kwargs, match):
    kwargs = dict(kwargs)
    formula = kwargs.pop("formula")
    _raises(df, match, formula=formula, **kwargs)


def test_non_numeric_response_is_named(df):
    text = df.assign(s=np.where(df["y"] > 0, "high", "low"))
    _raises(text, "response column 's' is not numeric", formula="s ~ x1", groups="g")
    flags = df.assign(b=df["y"] > 0)
    _raises(flags, "response column 'b' is not numeric (dtype bool)", formula="b ~ x1",
            groups="g")


def test_numeric_function_of_a_text_column_is_named(df):
    """``np.log(x1)`` where x1 holds text: the error names the term and the column."""
    text = df.assign(x1=df["x1"].abs().round(3).astype(str))
    message = _raises(text, "np.log(x1)", formula="y ~ np.log(x1)", groups="g")
    assert message.startswith("formula 'y ~ np.log(x1)' failed")


def test_text_covariate_is_categorical_as_in_statsmodels(df):
    """Not an error: a text column in a formula is categorical (patsy's and statsmodels'
    rule), so a column of a few text levels gives one coefficient per level."""
    data = df.assign(c=np.array(["a", "b", "c", "d"])[np.arange(len(df)) % 4])
    before = data.copy()
    result = dlmm.mixedlm("y ~ x1 + c", data, groups="g").fit()
    _, sm_result, _, error = statsmodels_fit("y ~ x1 + c", data, groups="g")
    assert error is None
    assert list(result.fe_params.index) == list(sm_result.fe_params.index)
    np.testing.assert_allclose(result.llf, sm_result.llf, rtol=1e-8)
    pd.testing.assert_frame_equal(data, before)


# -- missing and non-finite values ------------------------------------------------------------


@pytest.fixture
def with_nan(df) -> pd.DataFrame:
    out = df.copy()
    out.loc[[1, 5, 7], "x1"] = np.nan
    out.loc[2, "y"] = np.nan
    return out


@pytest.mark.parametrize("missing", ["none", "raise"])
def test_nan_stops_with_column_and_count(with_nan, missing):
    _raises(with_nan,
            "column 'x1' has 3 missing values (rows with missing values by column: "
            "'y': 1, 'x1': 3); pass missing=\"drop\" to drop those rows",
            groups="g", missing=missing)


def test_nan_dropped_and_counted(with_nan):
    before = with_nan.copy()
    with pytest.warns(MissingDataWarning, match=r"^dropped 4 rows with missing values$"):
        result = dlmm.mixedlm("y ~ x1", with_nan, groups="g", missing="drop").fit()
    pd.testing.assert_frame_equal(with_nan, before)
    assert result.n_dropped == 4 and result.nobs == 196
    clean = dlmm.mixedlm("y ~ x1", with_nan.dropna(), groups="g").fit()
    assert_same_fit(result, clean, rtol=1e-10)


def test_nan_dropped_and_counted_on_dask(with_nan, dask_client):
    ddf = dd.from_pandas(with_nan, npartitions=3, sort=False)
    with pytest.warns(MissingDataWarning, match=r"^dropped 4 rows with missing values$"):
        result = dlmm.mixedlm("y ~ x1", ddf, groups="g", missing="drop",
                              client=dask_client).fit()
    assert result.n_dropped == 4 and result.nobs == 196
    clean = dlmm.mixedlm("y ~ x1", with_nan.dropna(), groups="g").fit()
    assert_same_fit(result, clean)


def _arrays(df):
    y = df["y"].to_numpy().copy()
    X = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    return y, X, df["g"].to_numpy()


def test_array_input_nan_names_the_right_column(df):
    """The arrays form names columns as statsmodels does (const, x1, x2); a NaN in x1 must
    not move the name "const" onto x1."""
    import statsmodels.api as sm

    y, X, g = _arrays(df)
    assert sm.MixedLM(y, X, g).exog_names == ["const", "x1", "x2"]
    X[[3, 9], 1] = np.nan
    X_before = X.copy()
    with pytest.raises(InputError, match=re.escape(
            "column 'x1' has 2 missing values (rows with missing values by column: 'x1': 2)")):
        dlmm.MixedLM(y, X, g).fit()
    model = dlmm.MixedLM(y, X, g, missing="drop")
    assert model.exog_names == ["const", "x1", "x2"]
    np.testing.assert_array_equal(X, X_before)


def test_array_input_missing_drop(df):
    """statsmodels #7978: ``missing="drop"`` with arrays fails there (an IndexError);
    dlmm drops the rows, counts them and fits the complete rows."""
    y, X, g = _arrays(df)
    y[4] = np.nan
    X[[3, 9], 2] = np.nan
    with pytest.warns(MissingDataWarning, match=r"^dropped 3 rows with missing values$"):
        result = dlmm.MixedLM(y, X, g, missing="drop").fit()
    keep = ~np.isnan(y) & ~np.isnan(X).any(axis=1)
    clean = dlmm.MixedLM(y[keep], X[keep], g[keep]).fit()
    assert result.n_dropped == 3 and result.nobs == len(df) - 3
    # Values only: the names are test_array_input_nan_names_the_right_column's business.
    np.testing.assert_allclose(result.fe_params, clean.fe_params, rtol=1e-10)
    np.testing.assert_allclose(result.cov_re, clean.cov_re, rtol=1e-10)
    np.testing.assert_allclose([result.scale, result.llf], [clean.scale, clean.llf],
                               rtol=1e-10)


@pytest.mark.parametrize("case, missing", [
    ("covariate", "none"), ("covariate", "drop"), ("response", "raise"), ("transform", "none"),
])
def test_infinite_values_stop_with_column_and_count(df, case, missing):
    """inf is not missing: under every ``missing`` option it is an error naming the column
    (the model column, for a transform that makes it) and how many rows have it."""
    data = df.copy()
    if case == "covariate":
        data.loc[[1, 5], "x1"] = np.inf
        formula, column, count = "y ~ x1", "x1", 2
    elif case == "response":
        data.loc[9, "y"] = -np.inf
        formula, column, count = "y ~ x1", "y", 1
    else:
        data["pos"] = data["x1"].abs()
        data.loc[[3, 8, 11], "pos"] = 0.0
        formula, column, count = "y ~ np.log(pos)", "np.log(pos)", 3
    before = data.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError) as info:
            dlmm.mixedlm(formula, data, groups="g", missing=missing).fit()
    pd.testing.assert_frame_equal(data, before)
    assert re.search(rf"column '{re.escape(column)}' has {count} (infinite|non-finite) value",
                     str(info.value)), str(info.value)


@pytest.mark.parametrize("missing", ["none", "raise"])
def test_nan_group_label_stops(df, missing):
    data = df.assign(g=df["g"].astype(float))
    data.loc[[0, 13], "g"] = np.nan
    _raises(data, "column 'g' has 2 missing values (rows with missing values by column: "
            "'g': 2); pass missing=\"drop\"", groups="g", missing=missing)


def test_nan_group_label_dropped(df):
    data = df.assign(g=df["g"].astype(object))
    data.loc[[0, 13], "g"] = None
    before = data.copy()
    with pytest.warns(MissingDataWarning, match="dropped 2 rows"):
        result = dlmm.mixedlm("y ~ x1", data, groups="g", missing="drop").fit()
    pd.testing.assert_frame_equal(data, before)
    assert result.n_dropped == 2 and result.n_groups == 20
    clean = dlmm.mixedlm("y ~ x1", data.dropna().assign(g=lambda d: d["g"].astype(int)),
                         groups="g").fit()
    assert_same_fit(result, clean, rtol=1e-10)


# -- empty data ---------------------------------------------------------------------------


def test_empty_data(df):
    _raises(df.iloc[:0], "the data have no rows", groups="g")


def test_no_rows_left_after_dropping(df):
    data = df.assign(x1=np.nan)
    _raises(data, "no rows left after dropping 200 rows with missing values", groups="g",
            missing="drop")


def _with_empty_partitions(frame: pd.DataFrame, n_parts: int):
    import dask

    empty = frame.iloc[:0]
    parts = list(dd.from_pandas(frame, npartitions=n_parts, sort=False).to_delayed())
    layout = [dask.delayed(empty), *parts[:2], dask.delayed(empty), *parts[2:],
              dask.delayed(empty)]
    return dd.from_delayed(layout, meta=empty)


def test_empty_partitions_fit_fine(df, dask_client):
    ddf = _with_empty_partitions(df, 4)
    lengths = ddf.map_partitions(len).compute().tolist()
    assert lengths.count(0) == 3 and sum(lengths) == len(df)
    result = dlmm.mixedlm("y ~ x1", ddf, groups="g", client=dask_client).fit()
    ref = dlmm.mixedlm("y ~ x1", df, groups="g").fit()
    assert result.backend == "dask"
    assert_same_fit(result, ref)


def test_only_empty_partitions(df, dask_client):
    import dask

    empty = df.iloc[:0]
    ddf = dd.from_delayed([dask.delayed(empty)] * 3, meta=empty)
    _raises(ddf, "the data have no rows", groups="g", client=dask_client)


# -- Parquet files --------------------------------------------------------------------------


@pytest.fixture
def parquet_dir(tmp_path, df) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    df.iloc[:100].to_parquet(folder / "part-0.parquet")
    df.iloc[100:].to_parquet(folder / "part-1.parquet")
    return folder


def _raises_parquet(path, match, root: Path, client, formula="y ~ x1") -> str:
    """The error, and every file under ``root`` unchanged with nothing added."""
    before = tree_state(root)
    message = _raises(path, match, formula=formula, groups="g", client=client)
    assert tree_state(root) == before
    return message


def test_parquet_missing(tmp_path, parquet_dir, dask_client):
    missing = parquet_dir / "nope.parquet"
    _raises_parquet(str(missing), f"Parquet path {str(missing)!r} does not exist", tmp_path,
                    dask_client)
    pattern = str(parquet_dir / "*.parq")
    _raises_parquet(pattern, f"Parquet path {pattern!r} matches no file", tmp_path,
                    dask_client)


@pytest.mark.parametrize("content", ["garbage", "truncated"])
def test_parquet_unreadable(tmp_path, parquet_dir, dask_client, content):
    bad = parquet_dir / "part-0.parquet"
    raw = bad.read_bytes()
    bad.write_bytes(b"not a parquet file\n" * 20 if content == "garbage" else raw[: len(raw) // 2])
    _raises_parquet(str(bad), f"cannot read Parquet data {str(bad)!r}", tmp_path, dask_client)


def test_parquet_corrupt_data_page_is_named(tmp_path, df, dask_client):
    """A file whose footer is intact but whose data pages are damaged fails only when the
    workers read it: still an InputError that names the data, not a bare pyarrow OSError."""
    path = tmp_path / "corrupt.parquet"
    grouped_data(n_groups=200, per_group=10, seed=1).to_parquet(path, row_group_size=500)
    raw = bytearray(path.read_bytes())
    raw[2000:6000] = b"\xab" * 4000
    path.write_bytes(bytes(raw))
    message = _raises_parquet(str(path), "", tmp_path, dask_client)
    assert str(path) in message


def test_parquet_lacks_a_column(tmp_path, df, dask_client):
    path = tmp_path / "no_x1.parquet"
    df.drop(columns="x1").to_parquet(path)
    _raises_parquet(str(path), "column 'x1' used in formula 'y ~ x1' is not in the data "
                    "(columns: y, g, x2)", tmp_path, dask_client)


def test_parquet_dataset_with_one_file_lacking_a_column(tmp_path, parquet_dir, df,
                                                        dask_client):
    """Only the second file of a folder lacks x1: the schema of the first file has it, so
    only the data pass finds out. The error names the column (and the file)."""
    df.iloc[100:].drop(columns="x1").to_parquet(parquet_dir / "part-1.parquet")
    message = _raises_parquet(str(parquet_dir), "'x1'", tmp_path, dask_client)
    assert "part-1.parquet" in message


# -- designs --------------------------------------------------------------------------------


def test_collinear_fixed_effects_are_named(df):
    data = df.assign(x3=2 * df["x1"] - df["x2"])
    _raises(data, "fixed effects are collinear (rank 3 of 4): columns 'x1', 'x2', 'x3' are "
            "linearly dependent; drop one", formula="y ~ x1 + x2 + x3", groups="g")
    dup = df.assign(x3=2 * df["x1"])
    _raises(dup, "fixed effects are collinear (rank 3 of 4): columns 'x1', 'x3' are linearly "
            "dependent; drop one", formula="y ~ x1 + x3 + x2", groups="g")


def test_all_zero_fixed_effect_is_named(df):
    _raises(df.assign(z=0.0), "fixed-effects column 'z' is all zero in the rows used",
            formula="y ~ x1 + z", groups="g")


@pytest.mark.parametrize("re_formula, pattern", [
    ("~k", r"random-effects columns? .*'k'"),
    ("~0 + zero", r"random-effects column 'zero' is all zero in the rows used"),
], ids=["constant-slope", "zero-column"])
def test_random_effects_design_without_variation_is_named(df, re_formula, pattern):
    """A random-effects column without variation: ``k`` constant (its slope is a multiple
    of the random intercept) or all zero (no effect at all). The covariance is then not
    identified, not merely on a boundary: every cov_re with the same implied intercept
    variance has the same likelihood, so a fit returns whatever its start gives (today: a
    different cov_re for each start_params, each "converged" and not singular). lme4 keeps
    such fits with a warning; dlmm refuses collinear fixed effects, and the issue lists this
    design under bad input: an error naming the column, from the summed Z'Z as the
    fixed-effects rank check works from X'X."""
    data = df.assign(k=3.0, zero=0.0)
    before = data.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError) as info:
            dlmm.mixedlm("y ~ x1", data, groups="g", re_formula=re_formula).fit()
    pd.testing.assert_frame_equal(data, before)
    assert re.search(pattern, str(info.value)), str(info.value)


# -- options --------------------------------------------------------------------------------


def test_bad_options_are_named(df):
    _raises(df, "missing must be one of none, drop, raise, got 'omit'", groups="g",
            missing="omit")
    _raises(df, "unknown option 'foo' for fit", groups="g", fit_kw={"foo": 1})
    _raises(df, "unknown option 'foo' for from_formula", groups="g", foo=3)
    # groups takes a column name or, as in statsmodels, one label per row.
    _raises(df, "groups must be a column name or one label per row (200 rows), got an "
            "array of shape (1,)", groups=["g"])
    _raises([1, 2, 3], "data must be a pandas DataFrame, a Dask DataFrame or a Parquet path, "
            "got list", groups="g")


def test_unknown_optimizer_method_is_named(df):
    """A misspelt method must not silently fall through to an unconverged fit."""
    message = _raises(df, "'nope'", groups="g", fit_kw={"method": "nope"})
    assert "method" in message
