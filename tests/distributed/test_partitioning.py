"""Partition invariance: the same data, partitioned any way, give the same estimates.

These tests compare dlmm with itself by design: the reference is the in-process
(pandas) fit, and every Dask or Parquet layout of the same rows must reproduce it
to 1e-8 relative.
"""

from __future__ import annotations

import dask.dataframe as dd  # noqa: E402
import numpy as np
import pandas as pd
import pytest

import dlmm
from tests.simulate import grouped_data

FORMULA = "y ~ x1 + x2"
KW = {"groups": "g", "re_formula": "~x1", "vc_formula": {"c": "0 + C(c)"}}
RTOL = 1e-8


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """About 1500 rows of 80 groups (random intercept and slope, one component),
    rows shuffled so that every contiguous split cuts groups apart."""
    frame = grouped_data(n_groups=80, per_group=(8, 30), k_fe=3,
                         re_cov=np.array([[1.0, 0.3], [0.3, 0.5]]), vc_sd={"c": 0.7},
                         vc_levels=4, seed=3)
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(data):
    """The pandas fit, without a cluster (REML and ML)."""
    out = {}
    for reml in (True, False):
        result = dlmm.mixedlm(FORMULA, data, **KW).fit(reml=reml)
        assert result.converged
        assert result.backend == "local"
        out[reml] = result
    return out


def _assert_same(result, ref):
    """fe_params, cov_re, vcomp, scale and llf equal to RTOL relative.

    A relative tolerance means nothing for a value that happens to be near zero
    (a covariance or fixed effect whose estimate is ~0 differs between layouts only
    by rounding noise on the scale of the quantity it belongs to), so each value
    also gets an absolute floor of RTOL times that natural scale: the largest fixed
    effect for fe_params, the random-effect standard deviations for cov_re, the
    largest variance for vcomp. It only matters for entries far below that scale.
    """
    assert result.converged
    fe, fe_ref = result.fe_params, ref.fe_params
    assert list(fe.index) == list(fe_ref.index)
    np.testing.assert_allclose(fe.values, fe_ref.values, rtol=RTOL,
                               atol=RTOL * np.abs(fe_ref.values).max(), err_msg="fe_params")

    cov, cov_ref = result.cov_re.values, ref.cov_re.values
    sd = np.sqrt(np.diag(cov_ref))
    np.testing.assert_allclose(cov, cov_ref, rtol=RTOL, atol=RTOL * np.outer(sd, sd).max(),
                               err_msg="cov_re")
    assert list(result.cov_re.index) == list(ref.cov_re.index)

    np.testing.assert_allclose(result.vcomp, ref.vcomp, rtol=RTOL,
                               atol=RTOL * max(ref.vcomp.max(), ref.scale), err_msg="vcomp")
    np.testing.assert_allclose(result.scale, ref.scale, rtol=RTOL, err_msg="scale")
    np.testing.assert_allclose(result.llf, ref.llf, rtol=RTOL, err_msg="llf")
    assert result.nobs == ref.nobs and result.n_groups == ref.n_groups


def _groups_spanning(ddf) -> int:
    """Groups found in more than one partition."""
    seen: dict = {}
    for part in ddf.to_delayed():
        for g in pd.unique(part.compute()["g"]):
            seen[g] = seen.get(g, 0) + 1
    return sum(1 for c in seen.values() if c > 1)


def test_reference_is_a_real_fit(reference):
    """The estimates are not degenerate (so equal estimates say something)."""
    ref = reference[True]
    assert ref.vcomp[0] > 0.05 and np.all(np.diag(ref.cov_re.values) > 0.05)
    assert abs(ref.cov_re.values[0, 1]) > 1e-3


@pytest.mark.parametrize("npartitions", [1, 3, 17])
def test_dask_partitions(data, reference, dask_client, npartitions):
    ddf = dd.from_pandas(data, npartitions=npartitions, sort=False)
    assert ddf.npartitions == npartitions
    if npartitions > 1:
        assert _groups_spanning(ddf) > 40  # most groups are cut apart
    result = dlmm.mixedlm(FORMULA, ddf, **KW).fit(reml=True, client=dask_client)
    assert result.backend == "dask"
    assert result.groups_shuffled == (npartitions > 1)
    _assert_same(result, reference[True])


def test_dask_empty_partitions(data, reference, dask_client):
    """Empty partitions (as filters leave them) contribute nothing."""
    pieces = [data.iloc[:0], data.iloc[:700], data.iloc[:0], data.iloc[700:], data.iloc[:0]]
    ddf = dd.concat([dd.from_pandas(p, npartitions=1, sort=False) for p in pieces])
    sizes = ddf.map_partitions(len).compute().tolist()
    assert sizes == [0, 700, 0, len(data) - 700, 0]
    result = dlmm.mixedlm(FORMULA, ddf, **KW).fit(reml=True, client=dask_client)
    _assert_same(result, reference[True])


def test_dask_ml(data, reference, dask_client):
    ddf = dd.from_pandas(data, npartitions=3, sort=False)
    result = dlmm.mixedlm(FORMULA, ddf, **KW).fit(reml=False, client=dask_client)
    assert result.groups_shuffled
    _assert_same(result, reference[False])


def test_parquet_single_file(data, reference, dask_client, tmp_path):
    path = tmp_path / "data.parquet"
    data.to_parquet(path, index=False)
    result = dlmm.mixedlm(FORMULA, str(path), **KW).fit(reml=True, client=dask_client)
    assert result.backend == "dask"
    _assert_same(result, reference[True])


def test_parquet_directory(data, reference, dask_client, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    cuts = [0, 200, 610, 900, 1300, len(data)]
    assert cuts[-2] < len(data)
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        data.iloc[a:b].to_parquet(folder / f"part-{i}.parquet", index=False)
    result = dlmm.mixedlm(FORMULA, str(folder), **KW).fit(reml=True, client=dask_client)
    assert result.groups_shuffled  # shuffled rows: groups span files
    _assert_same(result, reference[True])


def test_parquet_sorted_takes_no_shuffle_path(data, reference, dask_client, tmp_path):
    """Files of whole groups (sorted by group) build blocks in place; the same rows
    shuffled across files take the shuffle path; both give the reference estimates."""
    ordered = data.sort_values(["g", "x1"]).reset_index(drop=True)
    group_cuts = [0, 13, 30, 52, 80]  # contiguous group ranges, one per file
    by_group, shuffled = {}, {}
    for name, store in (("sorted", by_group), ("shuffled", shuffled)):
        folder = tmp_path / name
        folder.mkdir()
        store["path"] = str(folder)
    for i, (a, b) in enumerate(zip(group_cuts[:-1], group_cuts[1:])):
        part = ordered[(ordered["g"] >= a) & (ordered["g"] < b)]
        part.to_parquet(f"{by_group['path']}/part-{i}.parquet", index=False)
    for i, chunk in enumerate(np.array_split(np.arange(len(data)), 4)):
        data.iloc[chunk].to_parquet(f"{shuffled['path']}/part-{i}.parquet", index=False)

    sorted_fit = dlmm.mixedlm(FORMULA, by_group["path"], **KW).fit(client=dask_client)
    shuffled_fit = dlmm.mixedlm(FORMULA, shuffled["path"], **KW).fit(client=dask_client)
    assert sorted_fit.groups_shuffled is False
    assert shuffled_fit.groups_shuffled is True
    _assert_same(sorted_fit, reference[True])
    _assert_same(shuffled_fit, reference[True])
    _assert_same(sorted_fit, shuffled_fit)


def test_text_mixed_with_numbers_is_named():
    """Levels that do not sort (text among numbers beyond any sample) are an error that
    names the column, not a bare TypeError from ``sorted``."""
    import pandas as pd

    import dlmm
    from dlmm.distributed.base import sorted_levels

    with pytest.raises(dlmm.InputError, match="column 'c' mixes values of types int, str"):
        sorted_levels("c", [1, "a", 2])
    assert sorted_levels("c", [3, 1, 2]) == [1, 2, 3]
    frame = pd.DataFrame({"c": [1] * 2500 + ["n/a"], "y": np.arange(2501.0),
                          "g": np.arange(2501) % 7})
    # (Dask turns such an object column into strings, which sort: a factor there.)
    with pytest.raises(dlmm.InputError, match="column 'c' mixes values of types int, str"):
        dlmm.mixedlm("y ~ C(c)", frame, groups="g").fit()
