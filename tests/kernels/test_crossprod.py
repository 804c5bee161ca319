"""``group_crossproducts`` against dense per-group products ``A_i'A_i``, ``A_i'[X y]``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dlmm.kernels.crossprod import group_crossproducts, row_crossproduct

RTOL = 1e-12


def _random_rows(rng, n_rows, n_groups, k_re, r, comp_levels, extra_density=0.0):
    """Rows in random group order; W one-hot per component plus random extra nonzeros.

    Returns codes, z, xy and the dense W (n_rows, L) with ``L = sum(comp_levels)``.
    """
    codes = rng.permutation(np.arange(n_rows) % n_groups)
    z = rng.normal(size=(n_rows, k_re))
    xy = rng.normal(size=(n_rows, r))
    n_slots = int(sum(comp_levels))
    w = np.zeros((n_rows, n_slots))
    start = 0
    for levels in comp_levels:
        level = rng.integers(0, levels, size=n_rows)
        w[np.arange(n_rows), start + level] = rng.uniform(0.5, 2.0, size=n_rows)
        start += levels
    if extra_density:
        extra = rng.random((n_rows, n_slots)) < extra_density
        w[extra] += rng.normal(size=int(extra.sum()))
    return codes, z, xy, w


def _dense_per_group(codes, n_groups, z, xy, w):
    """``G_i = A_i'A_i``, ``H_i = A_i'[X y]`` with ``A = [Z | W]`` (all slots), and counts."""
    a = np.hstack([z, w])
    q, r = a.shape[1], xy.shape[1]
    g = np.zeros((n_groups, q, q))
    h = np.zeros((n_groups, q, r))
    n = np.zeros(n_groups)
    for i in range(n_groups):
        rows = codes == i
        g[i] = a[rows].T @ a[rows]
        h[i] = a[rows].T @ xy[rows]
        n[i] = rows.sum()
    return n, g, h


def _assemble(cp, n_groups, k_re, n_slots, r):
    """Dense ``G_i``, ``H_i`` from the stacked and keyed (coordinate) outputs."""
    q = k_re + n_slots
    g = np.zeros((n_groups, q, q))
    h = np.zeros((n_groups, q, r))
    g[:, :k_re, :k_re] = cp.zz
    h[:, :k_re, :] = cp.zr
    pos = k_re + cp.wz_slot
    g[cp.wz_group, pos, :k_re] = cp.wz
    g[cp.wz_group, :k_re, pos] = cp.wz
    h[cp.wz_group, pos, :] = cp.wr
    g[cp.ww_group, k_re + cp.ww_slot_a, k_re + cp.ww_slot_b] = cp.ww
    return g, h


def _check_keys(cp, codes, n_groups, w):
    """Keys are unique, and exactly the (group, slot) pairs / slot pairs W touches."""
    wz_key = cp.wz_group * w.shape[1] + cp.wz_slot
    assert np.unique(wz_key).size == wz_key.size
    ww_key = (cp.ww_group * w.shape[1] + cp.ww_slot_a) * w.shape[1] + cp.ww_slot_b
    assert np.unique(ww_key).size == ww_key.size
    used = set()
    pairs = set()
    for i in range(n_groups):
        nz = w[codes == i] != 0
        used |= {(i, s) for s in np.flatnonzero(nz.any(axis=0))}
        co = nz.T.astype(int) @ nz.astype(int)
        pairs |= {(i, a, b) for a, b in zip(*np.nonzero(co))}
    assert set(zip(cp.wz_group.tolist(), cp.wz_slot.tolist())) == used
    got_pairs = set(zip(cp.ww_group.tolist(), cp.ww_slot_a.tolist(), cp.ww_slot_b.tolist()))
    assert got_pairs == pairs


@pytest.mark.parametrize(
    "seed, k_re, comp_levels, extra_density",
    [
        (0, 2, (3, 4), 0.0),  # two components, one nonzero each per row
        (1, 2, (3, 4), 0.3),  # several nonzeros per row, within and across components
        (2, 1, (5,), 0.5),
        (3, 3, (2, 1, 6), 0.2),  # three components, one with a single column
    ],
)
def test_matches_dense(seed, k_re, comp_levels, extra_density):
    rng = np.random.default_rng(seed)
    n_groups, r = 7, 4
    codes, z, xy, w = _random_rows(rng, 150, n_groups, k_re, r, comp_levels, extra_density)
    if extra_density:
        assert ((w != 0).sum(axis=1) > len(comp_levels)).any()
    cp = group_crossproducts(codes, n_groups, z, xy, sp.csr_array(w))

    n, g_ref, h_ref = _dense_per_group(codes, n_groups, z, xy, w)
    g, h = _assemble(cp, n_groups, k_re, w.shape[1], r)
    np.testing.assert_array_equal(cp.n, n)
    np.testing.assert_allclose(g, g_ref, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=1e-12)
    assert cp.zz.shape == (n_groups, k_re, k_re)
    assert cp.zr.shape == (n_groups, k_re, r)
    _check_keys(cp, codes, n_groups, w)


def test_empty_group_and_unsorted_codes():
    """A code that no row carries gives a zero group; codes need not be sorted."""
    rng = np.random.default_rng(11)
    n_groups, r = 5, 3
    codes = rng.choice([0, 1, 3, 4], size=60)  # group 2 has no rows
    z = rng.normal(size=(60, 2))
    xy = rng.normal(size=(60, r))
    w = np.zeros((60, 4))
    w[np.arange(60), rng.integers(0, 4, size=60)] = 1.0
    cp = group_crossproducts(codes, n_groups, z, xy, sp.csr_array(w))
    n, g_ref, h_ref = _dense_per_group(codes, n_groups, z, xy, w)
    g, h = _assemble(cp, n_groups, 2, 4, r)
    assert cp.n[2] == 0
    np.testing.assert_array_equal(cp.n, n)
    np.testing.assert_allclose(g, g_ref, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=1e-12)
    assert not np.any(cp.wz_group == 2) and not np.any(cp.ww_group == 2)


def test_duplicate_and_unsorted_sparse_entries():
    """A CSR matrix with repeated, unsorted column indices means their sum."""
    rng = np.random.default_rng(5)
    n_rows, n_groups, n_slots, r = 40, 4, 5, 3
    codes = rng.integers(0, n_groups, size=n_rows)
    z = rng.normal(size=(n_rows, 1))
    xy = rng.normal(size=(n_rows, r))
    indptr = [0]
    indices, data = [], []
    for _ in range(n_rows):
        cols = rng.integers(0, n_slots, size=3)  # may repeat, not sorted
        indices += cols.tolist()
        data += rng.normal(size=3).tolist()
        indptr.append(len(indices))
    w_sp = sp.csr_array((np.array(data), np.array(indices), np.array(indptr)),
                        shape=(n_rows, n_slots))
    w_dense = np.zeros((n_rows, n_slots))
    for i in range(n_rows):
        for k in range(indptr[i], indptr[i + 1]):
            w_dense[i, indices[k]] += data[k]
    cp = group_crossproducts(codes, n_groups, z, xy, w_sp)
    _, g_ref, h_ref = _dense_per_group(codes, n_groups, z, xy, w_dense)
    g, h = _assemble(cp, n_groups, 1, n_slots, r)
    np.testing.assert_allclose(g, g_ref, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("w_kind", ["none", "empty"])
def test_without_components(w_kind):
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 6, size=80)
    z = rng.normal(size=(80, 2))
    xy = rng.normal(size=(80, 3))
    w = None if w_kind == "none" else sp.csr_array((80, 4))
    cp = group_crossproducts(codes, 6, z, xy, w)
    n, g_ref, h_ref = _dense_per_group(codes, 6, z, xy, np.zeros((80, 0)))
    np.testing.assert_array_equal(cp.n, n)
    np.testing.assert_allclose(cp.zz, g_ref, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(cp.zr, h_ref, rtol=RTOL, atol=1e-12)
    assert cp.wz_group.size == cp.wz.shape[0] == cp.ww.size == 0
    assert cp.wz.shape == (0, 2) and cp.wr.shape == (0, 3)


def test_only_components():
    """``k_re = 0``: no standard columns, the components alone."""
    rng = np.random.default_rng(8)
    codes, _, xy, w = _random_rows(rng, 90, 4, 0, 3, (3, 2), 0.2)
    z = np.zeros((90, 0))
    cp = group_crossproducts(codes, 4, z, xy, sp.csr_array(w))
    _, g_ref, h_ref = _dense_per_group(codes, 4, z, xy, w)
    g, h = _assemble(cp, 4, 0, w.shape[1], 3)
    assert cp.zz.shape == (4, 0, 0) and cp.zr.shape == (4, 0, 3) and cp.wz.shape[1] == 0
    np.testing.assert_allclose(g, g_ref, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(h, h_ref, rtol=RTOL, atol=1e-12)


def test_row_crossproduct():
    rng = np.random.default_rng(2)
    xy = rng.normal(size=(50, 4))
    expected = sum(np.outer(row, row) for row in xy)
    np.testing.assert_allclose(row_crossproduct(xy), expected, rtol=RTOL, atol=1e-12)
