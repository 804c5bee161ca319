"""The one pass reads a worker's long run of Parquet pieces several pieces a task (issue 27:
each task cost its worker 2-10 ms between pieces), one chunk of both; the fit is the
same, groups that span the two pieces of a task included."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pytest
import statsmodels.formula.api as smf

import dlmm
from dlmm.distributed import piece_tasks
from dlmm.kernels.block import KeyedCrossProducts, combine_keyed
from dlmm.kernels.crossprod import group_crossproducts
from dlmm.kernels.pieces import RowTotals
from dlmm.structure.grouped import ChunkResult, ChunkRun, _chunk_summary, _parts, merge_chunks
from tests.simulate import grouped_data

KW = {"groups": "g", "re_formula": "~x1", "vc_formula": {"c": "0 + C(c)"}}
PAIR_MIN_PIECES = 4  # (16 in use: fewer files here)
FILES = 2 * PAIR_MIN_PIECES + 2  # two workers: runs of 5 pieces


@pytest.fixture(scope="module")
def data():
    return grouped_data(n_groups=60, per_group=(5, 12), re_cov=np.array([[1, 0.3], [0.3, 0.5]]),
                        vc_sd={"c": 0.7}, seed=5)


@pytest.fixture(scope="module")
def fitted(data, dask_client, tmp_path_factory):
    folder = tmp_path_factory.mktemp("paired")
    # the first worker's files of whole groups; the second's cut by row count, inside
    # groups (a group in two files: in the two pieces of one task, or of two tasks)
    half = int(np.searchsorted(data["g"].to_numpy(), data["g"].iloc[len(data) // 2]))
    groups = np.array_split(np.unique(data["g"].iloc[:half]), FILES // 2)
    files = [np.flatnonzero(data["g"].isin(g).to_numpy()) for g in groups]
    files += np.array_split(np.arange(half, len(data)), FILES // 2)
    for j, rows in enumerate(files):
        data.iloc[rows].to_parquet(folder / f"part-{j:03d}.parquet", index=False)
    model = dlmm.mixedlm("y ~ x1", dd.read_parquet(str(folder)), **KW)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(piece_tasks, "PAIR_MIN_PIECES", PAIR_MIN_PIECES)
        patch.setattr(piece_tasks, "TASK_PIECES", 2)
        return model.fit(reml=False, client=dask_client)


def test_long_runs_are_read_two_pieces_a_task(fitted):
    chunks = fitted._stats.backend._chunks
    assert len(chunks["pieces"]) == FILES
    # each worker's 5 pieces: two tasks of two, one of one
    assert sorted(chunks["sizes"].values()) == [1, 1, 2, 2, 2, 2]


def test_the_fit_is_statsmodels(data, fitted):
    sm = smf.mixedlm("y ~ x1", data, **KW).fit(reml=False, method="lbfgs", gtol=1e-10)
    assert fitted.converged
    np.testing.assert_allclose(fitted.llf, sm.llf, rtol=1e-8)
    np.testing.assert_allclose(fitted.fe_params, sm.fe_params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fitted.cov_re, sm.cov_re, rtol=1e-4, atol=1e-6)
    assert fitted.nobs == len(data)


def _chunk(labels: np.ndarray, z: np.ndarray, xy: np.ndarray) -> ChunkResult:
    uniq, codes = np.unique(labels, return_inverse=True)
    totals = RowTotals(xy_cross=xy.T @ xy, n_rows=float(len(labels)), n_dropped=0.0,
                       missing_by_column=np.zeros(2), infinite_by_column=np.zeros(2),
                       z_cross=z.T @ z)
    return ChunkResult(KeyedCrossProducts(uniq, group_crossproducts(codes, len(uniq), z, xy)),
                       totals)


@pytest.mark.parametrize("cut", [40, 37])  # between groups 3 and 4; inside group 3
def test_two_chunks_merged_are_their_rows_sums(cut):
    rng = np.random.default_rng(cut)
    labels = np.repeat(np.arange(10), 10)
    z, xy = rng.normal(size=(100, 2)), rng.normal(size=(100, 3))
    one, two = _chunk(labels[:cut], z[:cut], xy[:cut]), _chunk(labels[cut:], z[cut:], xy[cut:])
    merged = merge_chunks([one, two], 1)
    # data written group by group: the second chunk's sums kept as they are, no copy
    assert isinstance(merged, ChunkRun) == (cut == 40)
    if cut == 40:
        assert merged.keyed is one.keyed and merged.rest == (two.keyed,)
    totals, (n_groups, first, last), (n_min, n_max, _) = _chunk_summary(merged)
    assert (n_groups, first, last, n_min, n_max) == (10, 0, 9, 10.0, 10.0)
    np.testing.assert_allclose(totals.xy_cross, xy.T @ xy, rtol=1e-12)
    block = combine_keyed(_parts(merged), 1)  # the groups, whole
    np.testing.assert_array_equal(block.labels, np.arange(10))
    for g in range(10):  # brute force: each group's rows
        rows = labels == g
        np.testing.assert_allclose(block.cp.zz[g], z[rows].T @ z[rows], rtol=1e-12)
        np.testing.assert_allclose(block.cp.zr[g], z[rows].T @ xy[rows], rtol=1e-12)
    assert block.cp.n.tolist() == [10.0] * 10
