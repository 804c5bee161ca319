"""The nested engine's one pass: blocks of whole outer groups whose node sums are the
dense sums of the rows, however the rows are partitioned (in process and on a Dask
cluster), and nesting read from the data.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dlmm.distributed.dask_backend import DaskBackend
from dlmm.distributed.local import LocalBackend
from dlmm.kernels.nested import nested_effects, nested_pieces
from dlmm.kernels.nested.sums import build_stats, leaf_sums
from dlmm.objective.profiled import profiled_value
from dlmm.structure.nested import NestedStatistics, NotNestedError, nested_pass
from tests.kernels.nested.tree_data import (
    FrameDesign,
    dense_node_sums,
    random_tree_rows,
    tree_frame,
)


class Chunks(LocalBackend):
    """The in-process backend over given chunks of rows, with a parallelism of
    ``threads`` (so that the pass makes several blocks, as on a cluster)."""

    def __init__(self, chunks, threads=4):
        super().__init__(pd.concat(chunks))
        self.chunks, self.threads = list(chunks), threads

    @property
    def parallelism(self):
        return self.threads

    @property
    def n_chunks(self):
        return len(self.chunks)

    def map_chunks(self, func, progress=None):
        return [func(c) for c in self.chunks]


def _split(frame, n_parts):
    return [frame.iloc[rows] for rows in np.array_split(np.arange(len(frame)), n_parts)]


def _no_theta(theta):
    raise AssertionError("not evaluated in these tests")


def _pass(frame, design, backend) -> NestedStatistics:
    return nested_pass(design, backend, _no_theta, _no_theta)


def _assert_blocks_equal_dense(stats: NestedStatistics, codes, z, xy):
    dense = dense_node_sums(codes, z, xy)
    q = tuple(zl.shape[1] for zl in z)
    blocks = [b.stats for b in stats.backend.gather(stats.blocks)]
    outer = [set(b.keys[0][:, 0].tolist()) for b in blocks]
    # whole outer groups: no outer code in two blocks
    assert sum(len(o) for o in outer) == len(set().union(*outer)) == len(dense[0])
    for l, nodes in enumerate(dense):
        keys = np.concatenate([b.keys[l] for b in blocks])
        order = np.lexsort(keys.T[::-1])
        assert [tuple(k) for k in keys[order].tolist()] == list(nodes)
        got = {
            "n": np.concatenate([b.n_rows[l] for b in blocks])[order],
            "zz": np.concatenate([b.zz[l] for b in blocks])[order],
            "zxy": np.concatenate([b.zxy[l] for b in blocks])[order],
        }
        want = list(nodes.values())
        np.testing.assert_array_equal(got["n"], [w[0] for w in want])
        np.testing.assert_allclose(got["zz"], np.reshape([w[1] for w in want], got["zz"].shape),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got["zxy"],
                                   np.reshape([w[2] for w in want], got["zxy"].shape),
                                   rtol=1e-12, atol=1e-12)
        for m in range(l):
            za = np.concatenate([b.za[l][m] for b in blocks])[order]
            np.testing.assert_allclose(za, np.reshape([w[3][m] for w in want], za.shape),
                                       rtol=1e-12, atol=1e-12)
        for b in blocks:  # each block's parents point at its own nodes
            if l and b.n_nodes[l]:
                np.testing.assert_array_equal(b.keys[l - 1][b.parent[l]], b.keys[l][:, :l])
    assert stats.q == q
    assert stats.n_nodes == tuple(len(nodes) for nodes in dense)
    assert stats.n_groups == len(dense[0])
    sizes = [v[0] for v in dense[0].values()]
    assert (stats.group_size_min, stats.group_size_max) == (min(sizes), max(sizes))
    np.testing.assert_array_equal(stats.vc_effect_counts(), stats.n_nodes)
    assert stats.totals.n_rows == xy.shape[0]
    np.testing.assert_allclose(stats.totals.xy_cross, xy.T @ xy, rtol=1e-12, atol=1e-12)
    z_all = np.hstack(z)
    np.testing.assert_allclose(stats.totals.z_cross, z_all.T @ z_all, rtol=1e-12, atol=1e-12)
    assert stats.engine_name == "nested"
    assert not stats.has_newton_pieces and not stats.full_effect_covariances


SHAPES = [(2,), (1, 2), (2, 0, 1)]


@pytest.mark.parametrize("n_parts", [1, 3, 17])
@pytest.mark.parametrize("q", SHAPES, ids=str)
def test_in_process_blocks_hold_the_dense_sums_of_whole_outer_groups(q, n_parts):
    rng = np.random.default_rng(len(q) * 100 + n_parts)
    codes, z, xy = random_tree_rows(rng, q, r=3, n_outer=12, max_rows=5)
    frame = tree_frame(codes, z, xy)
    # rows are shuffled: the chunks split leaves and outer groups
    backend = Chunks(_split(frame, n_parts), threads=4)
    stats = _pass(frame, FrameDesign(q, 3, own_codes=[False] * len(q)), backend)
    assert stats.shuffled == (n_parts > 1)
    assert len(stats.blocks) == (4 if n_parts > 1 else 1)  # hashed into 4, or one chunk
    assert stats.backend_name == "local"
    _assert_blocks_equal_dense(stats, codes, z, xy)


@pytest.mark.parametrize("n_parts", [1, 3, 17])
def test_dask_blocks_hold_the_dense_sums_of_whole_outer_groups(dask_client, n_parts):
    q = (1, 2, 1)
    rng = np.random.default_rng(40 + n_parts)
    codes, z, xy = random_tree_rows(rng, q, r=2, n_outer=9, max_rows=4)
    frame = tree_frame(codes, z, xy)
    ddf = dd.from_pandas(frame, npartitions=n_parts, sort=False)
    assert ddf.npartitions == n_parts
    stats = _pass(frame, FrameDesign(q, 2, own_codes=[False] * 3), DaskBackend(ddf, dask_client))
    assert stats.backend_name == "dask"
    if stats.shuffled:  # hashed into a multiple of the cluster's two threads
        assert len(stats.blocks) % 2 == 0
    _assert_blocks_equal_dense(stats, codes, z, xy)
    copy = stats.on_driver()
    assert copy.backend.name == "driver" and stats.on_driver(max_bytes=0) is stats
    _assert_blocks_equal_dense(copy, codes, z, xy)


def test_chunks_of_whole_outer_groups_are_blocks_without_a_shuffle():
    q = (1, 1)
    rng = np.random.default_rng(8)
    codes, z, xy = random_tree_rows(rng, q, r=2, n_outer=6)
    frame = tree_frame(codes, z, xy)
    outer = sorted(set(codes[0].tolist()))
    design = FrameDesign(q, 2, own_codes=[False] * 2)
    interleaved = [frame[frame["c0"].isin(outer[i::3])] for i in range(3)]
    stats = _pass(frame, design, Chunks(interleaved, threads=2))
    assert stats.shuffled  # the chunks' ranges of outer codes overlap
    runs = [frame[frame["c0"].isin(outer[2 * i:2 * i + 2])] for i in range(3)]
    stats = _pass(frame, design, Chunks(runs[::-1], threads=2))
    assert not stats.shuffled and len(stats.blocks) == 2
    _assert_blocks_equal_dense(stats, codes, z, xy)


def _schools(school):
    lea = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    n = lea.shape[0]
    return pd.DataFrame({"c0": lea, "c1": np.asarray(school), "z0_0": np.ones(n),
                         "z1_0": np.ones(n), "xy0": np.ones(n), "xy1": np.arange(n, dtype=float)})


def test_factors_written_as_columns_of_their_own_must_nest_in_the_data():
    design = FrameDesign((1, 1), 2, own_codes=[True, True], factor_names=["lea", "school"])
    nested = _schools([10, 11, 10, 12, 13, 14, 15, 14])
    for chunk_rows in (8, 3):
        stats = _pass(nested, design, LocalBackend(nested, chunk_rows=chunk_rows))
        assert stats.n_nodes == (3, 6)
    # school 12 lies in lea 1 and lea 2 (in other blocks, or chunks, or both)
    crossed = _schools([10, 11, 10, 12, 13, 14, 12, 14])
    for chunk_rows in (8, 3, 1):
        with pytest.raises(NotNestedError, match=r"^factor 'school' does not nest in 'lea': "
                                                 r"its 5 levels appear in 6 distinct "
                                                 r"combinations with 'lea', so some lie in "
                                                 r"more than one level of 'lea' \(the factors "
                                                 r"are crossed\)$"):
            _pass(crossed, design, LocalBackend(crossed, chunk_rows=chunk_rows))
    # written as an interaction (lea:school), the codes may repeat under other parents
    design = FrameDesign((1, 1), 2, own_codes=[True, False], factor_names=["lea", "lea:school"])
    assert _pass(crossed, design, LocalBackend(crossed, chunk_rows=3)).n_nodes == (3, 6)
    # three levels: class 7 in two schools (school 11 of lea 0, school 14 of lea 2)
    frame = _schools([10, 11, 10, 12, 13, 14, 15, 14]).assign(
        c2=[1, 7, 2, 3, 4, 5, 6, 7], z2_0=1.0)
    design = FrameDesign((1, 1, 1), 2, own_codes=[True, True, True],
                         factor_names=["lea", "school", "class"])
    with pytest.raises(NotNestedError, match=r"^factor 'class' does not nest in 'school': "
                                             r"its 7 levels appear in 8 distinct combinations "
                                             r"with 'lea', 'school', so"):
        _pass(frame, design, LocalBackend(frame, chunk_rows=5))


def test_dropped_fixed_columns_leave_the_node_sums():
    q = (1, 1)
    rng = np.random.default_rng(12)
    codes, z, xy = random_tree_rows(rng, q, r=3)
    frame = tree_frame(codes, z, xy)
    stats = _pass(frame, FrameDesign(q, 3, own_codes=[False] * 2),
                  LocalBackend(frame, chunk_rows=20))
    keep = np.array([True, False, True])
    stats.drop_fixed_columns(keep)
    _assert_blocks_equal_dense(stats, codes, z, xy[:, keep])
    assert stats.on_driver() is stats  # already in this process


class DroppingDesign(FrameDesign):
    """A design that reports rows it dropped: one per chunk, with a missing ``xy1``."""

    def dropped(self, frame):
        return 1, np.array([0.0, 1.0]), np.array([0.0, 0.0])


def test_the_totals_count_the_rows_a_design_dropped():
    rng = np.random.default_rng(13)
    codes, z, xy = random_tree_rows(rng, (1, 1), r=2)
    frame = tree_frame(codes, z, xy)
    stats = _pass(frame, DroppingDesign((1, 1), 2, own_codes=[False] * 2),
                  Chunks(_split(frame, 3)))
    assert stats.totals.n_dropped == 3
    np.testing.assert_array_equal(stats.totals.missing_by_column, [0, 3])
    np.testing.assert_array_equal(stats.totals.infinite_by_column, [0, 0])
    plain = _pass(frame, FrameDesign((1, 1), 2, own_codes=[False] * 2),
                  Chunks(_split(frame, 3)))
    assert plain.totals.n_dropped == 0 and plain.totals.missing_by_column.shape == (0,)


# -- the kernels over the blocks ----------------------------------------------------


class LowerTriangular:
    """theta -> Lambda_l: per level a full lower-triangular factor, its entries column
    by column (lme4's order), and the derivative directions d Lambda_l / d theta_j."""

    def __init__(self, q):
        self.directions = []
        for l, ql in enumerate(q):
            for j in range(ql):
                for i in range(j, ql):
                    d = np.zeros((ql, ql))
                    d[i, j] = 1.0
                    self.directions.append((l, d))
        self.q = q

    def to_lambdas(self, theta):
        lambdas = [np.zeros((ql, ql)) for ql in self.q]
        for t, (l, d) in zip(theta, self.directions):
            lambdas[l] = lambdas[l] + t * d
        return lambdas

    def dlambdas(self, theta):
        return list(self.directions)

    def random_theta(self, rng):
        diag = np.array([d[np.diag_indices_from(d)].any() for _, d in self.directions])
        return np.where(diag, rng.uniform(0.3, 1.4, diag.size),
                        rng.uniform(-0.8, 0.8, diag.size))


def _assert_pieces_close(got, want, rtol=1e-10):
    scale = np.abs(want.hmh).max()
    assert got.n_groups == want.n_groups
    np.testing.assert_allclose(got.logdet, want.logdet, rtol=rtol)
    np.testing.assert_allclose(got.hmh, want.hmh, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(got.dlogdet, want.dlogdet, rtol=rtol,
                               atol=rtol * np.abs(want.dlogdet).max())
    np.testing.assert_allclose(got.dhmh, want.dhmh, rtol=rtol,
                               atol=rtol * np.abs(want.dhmh).max())


@pytest.fixture(scope="module")
def tree_case():
    q = (2, 1, 2)
    rng = np.random.default_rng(21)
    codes, z, xy = random_tree_rows(rng, q, r=3, n_outer=11, max_rows=5)
    params = LowerTriangular(q)
    theta = params.random_theta(rng)
    one_block = build_stats(leaf_sums(codes, z, xy))
    want = nested_pieces(one_block, params.to_lambdas(theta), params.dlambdas(theta))
    return codes, z, xy, params, theta, one_block, want


@pytest.mark.parametrize("n_parts, threads", [(1, 4), (3, 5), (17, 16)])
def test_pieces_over_the_blocks_add_up_to_one_block(tree_case, n_parts, threads):
    codes, z, xy, params, theta, _, want = tree_case
    frame = tree_frame(codes, z, xy)
    stats = nested_pass(FrameDesign((2, 1, 2), 3, own_codes=[False] * 3),
                        Chunks(_split(frame, n_parts), threads=threads),
                        params.to_lambdas, params.dlambdas)
    got = stats.pieces(theta)
    assert len(stats.blocks) == (threads if n_parts > 1 else 1)
    if threads > 11:  # more blocks than outer groups: empty blocks add nothing
        assert any(b.stats.n_nodes[0] == 0 for b in stats.blocks)
    _assert_pieces_close(got, want)
    assert want.n_groups == stats.n_groups == 11
    assert stats.pieces(theta.copy()) is got and stats.evaluations == 1  # the last one kept
    other = stats.pieces(theta * 0.5)
    assert stats.evaluations == 2 and other.logdet < got.logdet


def test_pieces_and_effects_on_dask_add_up_to_one_block(tree_case, dask_client):
    codes, z, xy, params, theta, one_block, want = tree_case
    ddf = dd.from_pandas(tree_frame(codes, z, xy), npartitions=5, sort=False)
    stats = nested_pass(FrameDesign((2, 1, 2), 3, own_codes=[False] * 3),
                        DaskBackend(ddf, dask_client), params.to_lambdas, params.dlambdas)
    assert stats.shuffled and len(stats.blocks) > 1
    _assert_pieces_close(stats.pieces(theta), want)
    copy = stats.on_driver()
    here, there = copy.pieces(theta), stats.pieces(theta * 1.0)
    assert here.logdet == there.logdet  # the same sums in the same order
    np.testing.assert_array_equal(here.dhmh, there.dhmh)
    # conditional modes and covariances: each block's nodes, as one block has them
    coef = np.array([-0.3, 0.2, 1.0])
    scale = 2.5
    ref = nested_effects(one_block, params.to_lambdas(theta), coef)
    parts = stats.gather(stats.effects(theta, coef, scale))
    for l, (modes, cov) in enumerate(ref):
        keys = np.concatenate([p.keys[l] for p in parts])
        order = np.lexsort(keys.T[::-1])
        np.testing.assert_array_equal(keys[order], one_block.keys[l])
        got_modes = np.concatenate([p.modes[l] for p in parts])[order]
        got_cov = np.concatenate([p.cov[l] for p in parts])[order]
        np.testing.assert_allclose(got_modes, modes, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(got_cov, scale * cov, rtol=1e-10, atol=1e-10)


def _dense_llf(codes, z, xy, reml):
    """``llf(lambdas)``: the profiled (RE)ML log-likelihood from the rows, with
    V = I + Z Lambda Lambda'Z' built densely (brute force)."""
    n = xy.shape[0]
    table = np.stack(codes, axis=1)
    onehots = []
    for l in range(len(codes)):
        _, node = np.unique(table[:, :l + 1], axis=0, return_inverse=True)
        onehot = np.zeros((n, node.max() + 1))
        onehot[np.arange(n), node.reshape(-1)] = 1.0
        onehots.append(onehot)
    x, y = xy[:, :-1], xy[:, -1]
    fac = n - x.shape[1] if reml else n

    def llf(lambdas):
        # the columns of node k at level l: z_l Lambda_l on its rows
        zl = np.hstack([(o[:, :, None] * (zz @ lam)[:, None, :]).reshape(n, -1)
                        for o, zz, lam in zip(onehots, z, lambdas)])
        vinv = np.linalg.inv(np.eye(n) + zl @ zl.T)
        xvx = x.T @ vinv @ x
        res = y - x @ np.linalg.solve(xvx, x.T @ vinv @ y)
        out = (0.5 * np.linalg.slogdet(vinv)[1] - 0.5 * fac * np.log(res @ vinv @ res)
               - 0.5 * fac * (1 + np.log(2 * np.pi) - np.log(fac)))
        return out - 0.5 * np.linalg.slogdet(xvx)[1] if reml else out

    return llf


@pytest.mark.parametrize("reml", [True, False])
def test_the_profiled_likelihood_from_the_engine_is_the_dense_one(tree_case, reml):
    codes, z, xy, params, theta, _, _ = tree_case
    frame = tree_frame(codes, z, xy)
    stats = nested_pass(FrameDesign((2, 1, 2), 3, own_codes=[False] * 3),
                        Chunks(_split(frame, 17), threads=4), params.to_lambdas,
                        params.dlambdas)
    value = profiled_value(stats.pieces(theta), stats.totals.xy_cross, stats.totals.n_rows,
                           reml)
    dense = _dense_llf(codes, z, xy, reml)
    np.testing.assert_allclose(value.llf, dense(params.to_lambdas(theta)), rtol=1e-10)
    h = 1e-5
    grad = [(dense(params.to_lambdas(theta + h * e)) - dense(params.to_lambdas(theta - h * e)))
            / (2 * h) for e in np.eye(theta.size)]
    np.testing.assert_allclose(value.grad_theta, grad, rtol=1e-6, atol=1e-7)
