"""Partition invariance of crossed fits of lme4's terms: 1, 3 and 17 partitions;
pandas, Dask, Parquet.

These tests compare dlmm with itself by design: the reference is the in-process
(pandas) fit, and every Dask or Parquet layout of the same rows must reproduce it to
1e-8 relative (each chunk's keyed sums move to the levels of the whole data and are
added in chunk order on the driver). The shapes: correlated slopes on a crossed
factor beside a nested one, ``||`` beside a crossed intercept, two blocks on one
factor, three crossed factors.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dlmm

from .test_crossed_terms import _data

RTOL = 1e-8
FORMULAS = {"beside": "y ~ x + (1 + x | a) + (1 | c/k)",
            "diagonal": "y ~ x + (x || a) + (1 | b)",
            "blocks": "y ~ x + z + (1 | a) + (0 + x + z | a) + (1 | b)",
            "three": "y ~ x + (1 + x | a) + (1 | b) + (1 | c)"}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _data(seed=3, n=600)


@pytest.fixture(scope="module")
def reference(data) -> dict:
    out = {}
    for name, formula in FORMULAS.items():
        fit = dlmm.lmer(formula, data)
        assert fit.converged and fit.engine == "crossed"
        out[name] = fit
    return out


def _assert_same(fit, ref):
    assert fit.converged and fit.engine == "crossed"
    np.testing.assert_allclose(fit.llf, ref.llf, rtol=RTOL)
    np.testing.assert_allclose(fit.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=RTOL,
                               atol=RTOL * np.abs(ref.fe_params).max())
    np.testing.assert_allclose(fit.theta.to_numpy(), ref.theta.to_numpy(), rtol=RTOL,
                               atol=RTOL)
    np.testing.assert_allclose(fit.scale, ref.scale, rtol=RTOL)
    np.testing.assert_allclose(fit.bse_fe.to_numpy(), ref.bse_fe.to_numpy(), rtol=1e-6)
    for name, frame in ref.random_effects.items():
        ours = fit.random_effects[name]
        assert list(ours.index) == list(frame.index)
        np.testing.assert_allclose(ours.to_numpy(), frame.to_numpy(), rtol=0,
                                   atol=RTOL * np.abs(frame.to_numpy()).max())


def test_reference_is_a_real_fit(reference):
    for fit in reference.values():
        table = fit.varcorr()
        assert np.all(table.loc[table["var2"] == "", "vcov"] > 1e-2)


@pytest.mark.parametrize(("name", "npartitions"),
                         [("beside", 1), ("beside", 3), ("beside", 17), ("diagonal", 17),
                          ("blocks", 3), ("three", 17)])
def test_dask_partitions(data, reference, dask_client, npartitions, name):
    ddf = dd.from_pandas(data, npartitions=npartitions, sort=False)
    assert ddf.npartitions == npartitions
    fit = dlmm.lmer(FORMULAS[name], ddf, client=dask_client)
    _assert_same(fit, reference[name])


def test_dask_ml_and_empty_partitions(data, dask_client):
    pieces = [data.iloc[:0], data.iloc[:250], data.iloc[:0], data.iloc[250:]]
    ddf = dd.concat([dd.from_pandas(p, npartitions=1, sort=False) for p in pieces])
    fit = dlmm.lmer(FORMULAS["beside"], ddf, REML=False, client=dask_client)
    _assert_same(fit, dlmm.lmer(FORMULAS["beside"], data, REML=False))


@pytest.mark.parametrize("n_files", [1, 3, 17])
def test_parquet(data, reference, dask_client, tmp_path, n_files):
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(data)), n_files)):
        data.iloc[rows].to_parquet(folder / f"part-{i:02d}.parquet", index=False)
    fit = dlmm.lmer(FORMULAS["beside"], str(folder), client=dask_client)
    _assert_same(fit, reference["beside"])
    if n_files == 3:  # fitted values where the rows are: a lazy Dask series
        fitted = fit.fittedvalues
        assert hasattr(fitted, "npartitions")
        np.testing.assert_allclose(np.sort(fitted.compute().to_numpy()),
                                   np.sort(reference["beside"].fittedvalues.to_numpy()),
                                   rtol=1e-8, atol=1e-8)
