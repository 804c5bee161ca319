"""Partition invariance of crossed fits: 1, 3 and 17 partitions, pandas, Dask, Parquet.

These tests compare dlmm with itself by design: the reference is the in-process
(pandas) fit, and every Dask or Parquet layout of the same rows must reproduce it
to 1e-8 relative (the keyed sums are added in chunk order on the driver).
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dlmm

from .crossed_data import FORMULA, VC, crossed_data

RTOL = 1e-8


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return crossed_data(n=1500)


@pytest.fixture(scope="module")
def reference(data):
    out = {}
    for reml in (True, False):
        result = dlmm.mixedlm(FORMULA, data, vc_formula=VC).fit(reml=reml)
        assert result.converged and result.engine == "crossed" and result.backend == "local"
        out[reml] = result
    return out


def _assert_same(result, ref):
    assert result.converged and result.engine == "crossed"
    np.testing.assert_allclose(result.fe_params.to_numpy(), ref.fe_params.to_numpy(),
                               rtol=RTOL, atol=RTOL * np.abs(ref.fe_params).max())
    np.testing.assert_allclose(result.vcomp, ref.vcomp, rtol=RTOL)
    np.testing.assert_allclose(result.scale, ref.scale, rtol=RTOL)
    np.testing.assert_allclose(result.llf, ref.llf, rtol=RTOL)
    np.testing.assert_allclose(result.bse.to_numpy(), ref.bse.to_numpy(), rtol=1e-6)
    effects = result.random_effects[0]
    np.testing.assert_allclose(effects.to_numpy(), ref.random_effects[0].to_numpy(),
                               rtol=0, atol=RTOL * np.abs(effects).max())
    assert list(effects.index) == list(ref.random_effects[0].index)
    assert result.nobs == ref.nobs


def test_reference_is_a_real_fit(reference):
    assert np.all(reference[True].vcomp > 0.05)


@pytest.mark.parametrize("npartitions", [1, 3, 17])
def test_dask_partitions(data, reference, dask_client, npartitions):
    ddf = dd.from_pandas(data, npartitions=npartitions, sort=False)
    assert ddf.npartitions == npartitions
    result = dlmm.mixedlm(FORMULA, ddf, vc_formula=VC).fit(reml=True, client=dask_client)
    assert result.backend == "dask"
    _assert_same(result, reference[True])


def test_dask_ml_and_empty_partitions(data, reference, dask_client):
    pieces = [data.iloc[:0], data.iloc[:700], data.iloc[:0], data.iloc[700:]]
    ddf = dd.concat([dd.from_pandas(p, npartitions=1, sort=False) for p in pieces])
    result = dlmm.mixedlm(FORMULA, ddf, vc_formula=VC).fit(reml=False, client=dask_client)
    _assert_same(result, reference[False])


@pytest.mark.parametrize("n_files", [1, 3, 17])
def test_parquet(data, reference, dask_client, tmp_path, n_files):
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(data)), n_files)):
        data.iloc[rows].to_parquet(folder / f"part-{i:02d}.parquet", index=False)
    result = dlmm.mixedlm(FORMULA, str(folder), vc_formula=VC).fit(client=dask_client)
    assert result.backend == "dask"
    _assert_same(result, reference[True])
    # Fitted values come back from the rows, partition by partition.
    fitted = result.fittedvalues.compute()  # files in row order, each indexed from 0
    np.testing.assert_allclose(fitted.to_numpy(), reference[True].fittedvalues.to_numpy(),
                               rtol=1e-8)
