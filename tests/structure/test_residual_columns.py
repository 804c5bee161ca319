"""The AR(1) one pass straight from a plain model's columns (dlmm.structure.residual_columns):
a chunk's components against dense sums written out row by row, the same chunk as the
formula path (rows left out and counted, loose rows, errors), text stratum codes as
pandas' factorize gives them, and the fit for 1, 3 and 17 partitions whose strata
differ against the formula path and the dense likelihood."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import dlmm
import dlmm.structure.residual_columns as residual_columns
from dlmm.exceptions import InputError
from dlmm.structure.residual_chunk import residual_chunk
from dlmm.structure.residual_columns import TEXT_LEVELS_MAX, columns_ar1_chunk, text_codes

MODEL = {"groups": "g", "re_formula": "~x", "weights": "w", "residual_by": "s",
         "residual_ar1": "t"}


def _frame(seed: int = 3, n_groups: int = 30) -> pd.DataFrame:
    """Groups of 2-9 rows at consecutive times, written group by group in time order
    (integer labels); text strata, the first groups' of two levels only."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 10, n_groups)
    g = np.repeat(np.arange(n_groups) * 7 + 100, sizes)
    n = g.size
    s = rng.choice(["hi", "lo", "mid"], n, p=[0.3, 0.5, 0.2])
    first = g < 100 + 7 * 8  # the first 8 groups: no "mid"
    s[first] = np.where(rng.random(first.sum()) < 0.5, "hi", "lo")
    x = rng.normal(size=n) * 2.0 + 1.0
    b = rng.normal(size=(n_groups, 2)) * [1.0, 0.4]
    code = np.repeat(np.arange(n_groups), sizes)
    sd = pd.Series(s).map({"hi": 2.0, "lo": 1.0, "mid": 0.5}).to_numpy()
    y = 3 + 0.5 * x + b[code, 0] + b[code, 1] * x + sd * rng.normal(size=n)
    t = np.repeat(rng.integers(0, 4, n_groups), sizes) + np.concatenate(
        [np.arange(m) for m in sizes])
    w = rng.uniform(0.5, 2.0, n).round(3)
    return pd.DataFrame({"g": g, "t": t, "s": pd.array(s, dtype="string[pyarrow]"),
                         "x": x, "y": y, "w": w})


@pytest.fixture(scope="module")
def spec():
    """A learned specification of the model (the local fit's)."""
    model = dlmm.mixedlm("y ~ x", _frame(), **MODEL)
    model.objective()
    return model.spec


def _formula_chunk(frame, spec, monkeypatch):
    """The chunk as the formula path (the design) reads it."""
    with monkeypatch.context() as patch:
        patch.setattr(residual_columns, "columns_ar1_chunk", lambda *a: None)
        return residual_chunk(frame, spec)


def _dense_components(frame, spec) -> dict:
    """Each component's per-group sums and ``K``, written out row by row: rows centred as
    the spec centres them and times √w, in time order within each group; ``lag0`` of a
    stratum, ``lag1`` of each pair of strata (consecutive times, both products)."""
    frame = frame[np.isfinite(frame[["x", "y", "w"]]).all(axis=1) & frame["s"].notna()
                  & (frame["w"] > 0)]
    levels = sorted(frame["s"].unique())
    c = spec.centering
    out: dict = {}

    def add(key, group, zz, zr, kk):
        entry = out.setdefault(key, [{}, 0.0])
        old = entry[0].get(group, (0.0, 0.0, 0))
        entry[0][group] = (old[0] + zz, old[1] + zr, old[2] + 1)
        entry[1] = entry[1] + kk

    for group, part in frame.sort_values(["g", "t"]).groupby("g", sort=True):
        sw = np.sqrt(part["w"].to_numpy())
        xy = (np.column_stack([np.ones(len(part)), part["x"], part["y"]]) - c.xy_shift) \
            / c.xy_scale * sw[:, None]
        z = (np.column_stack([np.ones(len(part)), part["x"]]) - c.z_shift) / c.z_scale \
            * sw[:, None]
        s = part["s"].map(levels.index).to_numpy()
        t = part["t"].to_numpy()
        for j in range(len(part)):
            add(("lag0", s[j], s[j]), group, np.outer(z[j], z[j]), np.outer(z[j], xy[j]),
                np.outer(xy[j], xy[j]))
            if j and t[j] == t[j - 1] + 1:
                a, b = j - 1, j
                add(("lag1", min(s[a], s[b]), max(s[a], s[b])), group,
                    np.outer(z[a], z[b]) + np.outer(z[b], z[a]),
                    np.outer(z[a], xy[b]) + np.outer(z[b], xy[a]),
                    np.outer(xy[a], xy[b]) + np.outer(xy[b], xy[a]))
    return {"levels": levels, "parts": out}


def _check_against_dense(chunk, dense) -> None:
    assert chunk.levels == dense["levels"]
    assert set(chunk.parts) == set(dense["parts"])
    for key, (groups, kk) in dense["parts"].items():
        keyed = chunk.parts[key]
        assert list(keyed.labels) == sorted(groups)
        zz = np.array([groups[g][0] for g in keyed.labels])
        zr = np.array([groups[g][1] for g in keyed.labels])
        n = np.array([groups[g][2] for g in keyed.labels])
        np.testing.assert_allclose(keyed.cp.zz, zz, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(keyed.cp.zr, zr, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(keyed.cp.n, n)
        np.testing.assert_allclose(chunk.k[key], kk, rtol=1e-12, atol=1e-12)


def _spoiled(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows the pass leaves out and counts: a missing and an infinite value, a missing
    stratum and weight, a weight of zero."""
    frame = frame.copy()
    frame.loc[4, "x"] = np.nan
    frame.loc[9, "y"] = np.inf
    frame.loc[15, "s"] = None
    frame.loc[21, "w"] = np.nan
    frame.loc[30, "w"] = 0.0
    return frame


@pytest.mark.parametrize("order", ["written", "shuffled"])
def test_chunk_components_equal_dense_sums_and_the_formula_path(spec, order, monkeypatch):
    frame = _spoiled(_frame())
    if order == "shuffled":  # not in (group, time) order: the rows are sorted
        frame = frame.sample(frac=1.0, random_state=4).reset_index(drop=True)
    chunk = columns_ar1_chunk(frame, spec)
    assert chunk is not None  # a plain model: the columns are read, no design
    _check_against_dense(chunk, _dense_components(frame, spec))
    formula = _formula_chunk(frame, spec, monkeypatch)
    for name in ("n_rows", "n_dropped", "bad_weights"):
        assert getattr(chunk.totals, name) == getattr(formula.totals, name)
    assert (chunk.totals.n_rows, chunk.totals.n_dropped, chunk.totals.bad_weights) == \
        (len(frame) - 5, 4.0, 1.0)
    np.testing.assert_array_equal(chunk.totals.missing_by_column,
                                  formula.totals.missing_by_column)
    np.testing.assert_array_equal(chunk.totals.infinite_by_column,
                                  formula.totals.infinite_by_column)
    assert chunk.totals.missing_by_column.sum() == 3
    for name in ("xy_cross", "z_cross", "log_weights"):
        np.testing.assert_allclose(getattr(chunk.totals, name),
                                   getattr(formula.totals, name), rtol=1e-12)
    usable = np.isfinite(frame[["x", "y", "w"]]).all(axis=1) & frame["s"].notna() \
        & (frame["w"] > 0)
    np.testing.assert_allclose(chunk.totals.log_weights, np.log(frame["w"][usable]).sum(),
                               rtol=1e-12)
    for name in ("labels", "t", "s", "head", "tail"):
        np.testing.assert_array_equal(getattr(chunk.loose, name),
                                      getattr(formula.loose, name))
    for name in ("z", "xy"):
        np.testing.assert_allclose(getattr(chunk.loose, name), getattr(formula.loose, name),
                                   rtol=1e-12, atol=1e-12)


def test_a_level_seen_only_on_rows_left_out_is_not_the_chunks(spec, monkeypatch):
    frame = _frame()
    frame["s"] = frame["s"].astype(object)
    frame.loc[5, "s"] = "zz_only_here"
    frame.loc[5, "x"] = np.nan
    frame["s"] = frame["s"].astype("string[pyarrow]")
    chunk = columns_ar1_chunk(frame, spec)
    assert chunk is not None and chunk.levels == ["hi", "lo", "mid"]
    _check_against_dense(chunk, _dense_components(frame, spec))
    assert chunk.levels == _formula_chunk(frame, spec, monkeypatch).levels


def test_a_repeated_time_named(spec, monkeypatch):
    frame = _frame()
    frame.loc[3, "t"] = frame.loc[2, "t"]
    for shuffled in (False, True):
        data = frame.sample(frac=1.0, random_state=1) if shuffled else frame
        with pytest.raises(InputError, match=r"group 100 has two rows at time \d+ in column 't'"):
            columns_ar1_chunk(data, spec)
        with pytest.raises(InputError, match=r"group 100 has two rows at time \d+"):
            _formula_chunk(data, spec, monkeypatch)


@pytest.mark.parametrize("arrow_type", [pa.large_string(), pa.string()])
def test_text_codes_are_pandas_factorize(arrow_type):
    rng = np.random.default_rng(2)
    pool = np.array(["b", "", "a", "longer than seven", "longer than seveN", "ü", "a" * 7])
    values = pool[rng.integers(0, len(pool), 500)].astype(object)
    values[rng.random(500) < 0.1] = None
    chunks = [pa.array(values[:200], type=arrow_type), pa.array(values[200:], type=arrow_type)]
    series = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array(chunks)))
    for part in (series, series.iloc[150:420], series[series.str.len() != 1]):
        codes, levels = text_codes(part)
        want_codes, want_levels = pd.factorize(part, sort=True)
        np.testing.assert_array_equal(codes, want_codes)
        assert levels == list(want_levels)
    many = pd.Series([f"v{j}" for j in range(TEXT_LEVELS_MAX + 1)], dtype="string[pyarrow]")
    assert text_codes(many) is None  # a hash table's work
    assert text_codes(pd.Series(["a", "b"], dtype=object)) is None


@pytest.fixture(scope="module")
def reference():
    """The fit of the formula path, in this process."""
    frame = _frame(7, 60)
    saved = residual_columns.columns_ar1_chunk
    residual_columns.columns_ar1_chunk = lambda *a: None
    try:
        result = dlmm.mixedlm("y ~ x", frame, **MODEL).fit()
    finally:
        residual_columns.columns_ar1_chunk = saved
    assert result.converged
    return frame, result


@pytest.mark.parametrize("npartitions", [1, 3, 17])
def test_partitions_with_different_strata(reference, dask_client, npartitions):
    """Written group by group (a group may span two partitions), the first partitions
    without one of the strata: the columns path on the workers gives the formula path's
    fit."""
    frame, ref = reference
    ddf = dd.from_pandas(frame, npartitions=npartitions, sort=False)
    result = dlmm.mixedlm("y ~ x", ddf, **MODEL).fit(client=dask_client)
    assert result.backend != "local" and result.converged
    np.testing.assert_allclose(result.llf, ref.llf, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(result.fe_params), np.asarray(ref.fe_params),
                               rtol=1e-8)
    np.testing.assert_allclose(np.asarray(result.cov_re), np.asarray(ref.cov_re), rtol=1e-6)
    np.testing.assert_allclose(result.residual.delta, ref.residual.delta, rtol=1e-7)
    np.testing.assert_allclose(result.residual.rho, ref.residual.rho, rtol=1e-7)
    assert result.residual.levels == ["hi", "lo", "mid"]
