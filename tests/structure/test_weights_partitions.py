"""Precision weights: the same fit for any partitioning (1 and 3 Dask partitions,
Parquet files) and through the statistics cache, to 1e-8 of the in-process pandas
fit (compared with dlmm itself by design, as tests/structure/test_crossed_partitions.py;
the pandas fit is checked against lme4 in tests/test_weights.py). The cache keys its
sums by the weights column: a refit with other weights reads every file again."""

from __future__ import annotations

import json
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dlmm

HERE = Path(__file__).resolve().parents[1] / "reference" / "weights"
REF = json.loads((HERE / "lme4_weights.json").read_text())["sleep_slope"]["REML"]
FORMULA, KW = "Reaction ~ Days", {"groups": "Subject", "re_formula": "~Days"}
RTOL = 1e-8


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    frame = pd.read_csv(HERE / "sleepstudy_w.csv", dtype={"Subject": str})
    return frame.assign(w2=np.sqrt(frame["w"]))


@pytest.fixture(scope="module")
def reference(data):
    result = dlmm.mixedlm(FORMULA, data, weights="w", **KW).fit()
    assert result.backend == "local"
    np.testing.assert_allclose(result.llf, REF["logLik"], rtol=1e-6)
    return result


def _same(result, ref) -> None:
    assert result.converged and result.weights == "w"
    np.testing.assert_allclose(result.llf, ref.llf, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(result.fe_params), np.asarray(ref.fe_params),
                               rtol=RTOL)
    np.testing.assert_allclose(np.asarray(result.cov_re), np.asarray(ref.cov_re), rtol=1e-7)
    np.testing.assert_allclose(result.scale, ref.scale, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(result.bse), np.asarray(ref.bse), rtol=1e-6)


@pytest.mark.parametrize("npartitions", [1, 3])
def test_dask_partitions(data, reference, dask_client, npartitions):
    shuffled = data.sample(frac=1.0, random_state=5)  # groups span partitions
    ddf = dd.from_pandas(shuffled, npartitions=npartitions, sort=False)
    result = dlmm.mixedlm(FORMULA, ddf, weights="w", **KW).fit(client=dask_client)
    assert result.backend != "local"
    _same(result, reference)


def test_parquet_files_and_the_cache(data, reference, dask_client, tmp_path):
    folder, cache = tmp_path / "data", tmp_path / "cache"
    folder.mkdir()
    for j, part in enumerate(np.array_split(np.arange(len(data)), 3)):
        data.iloc[part].to_parquet(folder / f"part-{j}.parquet", index=False)
    first = dlmm.mixedlm(FORMULA, str(folder), weights="w", cache=cache, client=dask_client,
                         **KW)
    _same(first.fit(), reference)
    assert len(first.cache_report.read) == 3
    again = dlmm.mixedlm(FORMULA, str(folder), weights="w", cache=cache, client=dask_client,
                         **KW)
    _same(again.fit(), reference)
    assert again.cache_report.read == [] and again.cache_report.reused == 3
    other = dlmm.mixedlm(FORMULA, str(folder), weights="w2", cache=cache, client=dask_client,
                         **KW)
    result = other.fit()
    assert len(other.cache_report.read) == 3  # other weights: not the cached sums
    plain = dlmm.mixedlm(FORMULA, data, weights="w2", **KW).fit()
    np.testing.assert_allclose(result.llf, plain.llf, rtol=RTOL)


def test_crossed_engine_three_partitions(dask_client):
    frame = pd.read_csv(HERE / "penicillin_w.csv")
    options = dict(groups=None, re_formula="0",
                   vc_formula={"plate": "0 + C(plate)", "sample": "0 + C(sample)"},
                   weights="w")
    reference = dlmm.mixedlm("diameter ~ 1", frame, **options).fit()
    ddf = dd.from_pandas(frame.sample(frac=1.0, random_state=4), npartitions=3, sort=False)
    result = dlmm.mixedlm("diameter ~ 1", ddf, **options).fit(client=dask_client)
    assert (reference.engine, result.engine) == ("crossed", "crossed")
    np.testing.assert_allclose(result.llf, reference.llf, rtol=RTOL)
    np.testing.assert_allclose(result.vcomp, reference.vcomp, rtol=1e-7)
    np.testing.assert_allclose(np.asarray(result.fe_params), np.asarray(reference.fe_params),
                               rtol=RTOL)
