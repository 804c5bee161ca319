"""Blocks of whole groups: split groups added by key, stacked and padded layouts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dlmm.kernels.block import (
    KeyedCrossProducts,
    StatsBlock,
    block_pieces,
    build_block,
    combine_keyed,
)
from dlmm.kernels.crossprod import group_crossproducts
from dlmm.kernels.layout import padded_width

K_RE, R = 2, 3
# Component 0 has 3 columns, component 1 has 7: groups use different numbers of
# each, so their layouts are padded to different widths.
SLOT_COMPONENT = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])


def _rows(seed: int = 0):
    """Rows of 9 string-labelled groups, in random order, each group using its own
    number of component columns (1..3 of component 0, 1..7 of component 1); some rows
    have several nonzeros in a component."""
    rng = np.random.default_rng(seed)
    labels, z, xy, w = [], [], [], []
    for i in range(9):
        n_i = int(rng.integers(4, 12))
        used0 = rng.choice(3, size=1 + i % 3, replace=False)
        used1 = 3 + rng.choice(7, size=1 + (2 * i) % 7, replace=False)
        w_i = np.zeros((n_i, SLOT_COMPONENT.size))
        rows = np.arange(n_i)
        w_i[rows, used0[rows % used0.size]] = rng.uniform(0.5, 2, size=n_i)
        w_i[rows, used1[rows % used1.size]] = rng.uniform(0.5, 2, size=n_i)
        if used1.size > 1:  # a second nonzero of component 1 in some rows
            w_i[rows[::2], used1[(rows[::2] + 1) % used1.size]] += 0.7
        labels += [f"grp{i:02d}"] * n_i
        z.append(rng.normal(size=(n_i, K_RE)))
        xy.append(rng.normal(size=(n_i, R)))
        w.append(w_i)
    perm = rng.permutation(len(labels))
    return (np.array(labels, dtype=object)[perm], np.vstack(z)[perm], np.vstack(xy)[perm],
            np.vstack(w)[perm])


def _keyed(labels, z, xy, w) -> KeyedCrossProducts:
    codes, uniq = pd.factorize(pd.Series(labels), sort=True)
    cp = group_crossproducts(codes, uniq.shape[0], z, xy, sp.csr_array(w))
    return KeyedCrossProducts(np.asarray(uniq, dtype=object), cp)


def _chunks(labels, z, xy, w, cuts):
    return [_keyed(labels[a:b], z[a:b], xy[a:b], w[a:b])
            for a, b in zip([0, *cuts], [*cuts, len(labels)])]


def _dense_check(block: StatsBlock, labels, z, xy, w):
    """Every stacked G, H equals A'A, A'[X y] with A = [Z | W[:, slots]] (slot -1: a zero
    column), slots cover exactly the columns the group uses, sorted within each component,
    and the widths are the padded column counts."""
    seen = []
    for batch in block.batches:
        assert batch.k_re == K_RE
        comp_of_pos = np.repeat(np.arange(batch.widths.size), batch.widths)
        for j, gi in enumerate(batch.index):
            label = block.labels[gi]
            rows = labels == label
            slots = batch.slots[j]
            w_pad = np.hstack([w[rows], np.zeros((rows.sum(), 1))])[:, slots]  # -1: zeros
            a = np.hstack([z[rows], w_pad])
            np.testing.assert_allclose(batch.g[j], a.T @ a, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(batch.h[j], a.T @ xy[rows], rtol=1e-12, atol=1e-12)
            used = np.flatnonzero((w[rows] != 0).any(axis=0))
            real = slots[slots >= 0]
            np.testing.assert_array_equal(np.sort(real), used)
            np.testing.assert_array_equal(SLOT_COMPONENT[real], comp_of_pos[slots >= 0])
            counts = np.bincount(SLOT_COMPONENT[used], minlength=batch.widths.size)
            np.testing.assert_array_equal(batch.widths, padded_width(counts))
            for k in range(batch.widths.size):
                s = slots[comp_of_pos == k]
                s = s[s >= 0]
                assert np.all(np.diff(s) > 0)
                # real columns first, padding after
                assert np.all(slots[comp_of_pos == k][: s.size] == s)
            assert block.n[gi] == rows.sum()
            seen.append(gi)
    assert sorted(seen) == list(range(block.n_groups))


def test_unsplit_block_matches_dense():
    labels, z, xy, w = _rows(0)
    block = build_block([_keyed(labels, z, xy, w)], SLOT_COMPONENT)
    np.testing.assert_array_equal(block.labels, np.sort(np.unique(labels)))
    assert len(block.batches) > 1  # several padded layouts
    _dense_check(block, labels, z, xy, w)


@pytest.mark.parametrize("cuts", [[20], [7, 30, 31, 55], [1, 2, 3]])
def test_split_groups_give_the_unsplit_block(cuts):
    labels, z, xy, w = _rows(1)
    whole = build_block([_keyed(labels, z, xy, w)], SLOT_COMPONENT)
    parts = _chunks(labels, z, xy, w, cuts)
    # every group spans chunks in at least one configuration; check ours do
    spans = sum(len(set(p.labels) & set(q.labels)) for p in parts for q in parts if p is not q)
    assert spans > 0
    for order in (parts, parts[::-1]):
        split = build_block(order, SLOT_COMPONENT)
        np.testing.assert_array_equal(split.labels, whole.labels)
        np.testing.assert_array_equal(split.n, whole.n)
        assert len(split.batches) == len(whole.batches)
        for a, b in zip(split.batches, whole.batches):
            np.testing.assert_array_equal(a.index, b.index)
            np.testing.assert_array_equal(a.widths, b.widths)
            np.testing.assert_array_equal(a.slots, b.slots)
            np.testing.assert_allclose(a.g, b.g, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(a.h, b.h, rtol=1e-12, atol=1e-12)
        _dense_check(split, labels, z, xy, w)


def test_combine_keyed_adds_by_key():
    labels, z, xy, w = _rows(2)
    whole = _keyed(labels, z, xy, w)
    parts = _chunks(labels, z, xy, w, [15, 40])
    parts.insert(1, KeyedCrossProducts(np.zeros(0, dtype=object), parts[0].cp))  # ignored
    combined = combine_keyed(parts, SLOT_COMPONENT.size)
    np.testing.assert_array_equal(combined.labels, whole.labels)
    a, b = combined.cp, whole.cp
    np.testing.assert_array_equal(a.n, b.n)
    np.testing.assert_allclose(a.zz, b.zz, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.zr, b.zr, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(a.wz_group, b.wz_group)
    np.testing.assert_array_equal(a.wz_slot, b.wz_slot)
    np.testing.assert_allclose(a.wz, b.wz, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.wr, b.wr, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(a.ww_group, b.ww_group)
    np.testing.assert_array_equal(a.ww_slot_a, b.ww_slot_a)
    np.testing.assert_array_equal(a.ww_slot_b, b.ww_slot_b)
    np.testing.assert_allclose(a.ww, b.ww, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        combine_keyed([KeyedCrossProducts(np.zeros(0), parts[0].cp)], SLOT_COMPONENT.size)


def test_select_matches_the_rows_of_the_kept_groups():
    labels, z, xy, w = _rows(3)
    keyed = _keyed(labels, z, xy, w)
    keep = np.zeros(keyed.labels.size, dtype=bool)
    keep[[0, 3, 4, 8]] = True
    sel = keyed.select(keep)
    rows = np.isin(labels, keyed.labels[keep])
    ref = _keyed(labels[rows], z[rows], xy[rows], w[rows])
    np.testing.assert_array_equal(sel.labels, ref.labels)
    for field in ("n", "zz", "zr", "wz", "wr", "ww"):
        np.testing.assert_allclose(getattr(sel.cp, field), getattr(ref.cp, field),
                                   rtol=1e-12, atol=1e-12, err_msg=field)
    for field in ("wz_group", "wz_slot", "ww_group", "ww_slot_a", "ww_slot_b"):
        np.testing.assert_array_equal(getattr(sel.cp, field), getattr(ref.cp, field),
                                      err_msg=field)
    # nothing kept: an empty selection, which build_block turns into an empty block
    none = keyed.select(np.zeros(keyed.labels.size, dtype=bool))
    assert none.labels.size == 0 and none.cp.n.size == 0 and none.cp.ww.size == 0
    empty = build_block([none], SLOT_COMPONENT)
    assert empty.n_groups == 0 and empty.batches == []
    assert block_pieces(empty, np.eye(K_RE), np.ones(2)) == 0


def _dense_llf_pieces(labels, z, xy, w, chol_re, sd_vc):
    """sum log|V_i| and sum [Xy]'V_i^-1[Xy] with each group's own (unpadded) columns."""
    logdet, s = 0.0, np.zeros((R, R))
    for label in np.unique(labels):
        rows = labels == label
        used = np.flatnonzero((w[rows] != 0).any(axis=0))
        a = np.hstack([z[rows], w[rows][:, used]])
        b = np.zeros((a.shape[1], a.shape[1]))
        b[:K_RE, :K_RE] = chol_re @ chol_re.T
        b[K_RE:, K_RE:] = np.diag(sd_vc[SLOT_COMPONENT[used]] ** 2)
        v = np.eye(rows.sum()) + a @ b @ a.T
        logdet += np.linalg.slogdet(v)[1]
        s += xy[rows].T @ np.linalg.solve(v, xy[rows])
    return logdet, s


def test_padded_block_likelihood_matches_unpadded_dense():
    """Padding columns are zero columns of A: the likelihood pieces do not see them."""
    labels, z, xy, w = _rows(4)
    block = build_block(_chunks(labels, z, xy, w, [10, 33]), SLOT_COMPONENT)
    assert any(int(b.slots.min()) == -1 for b in block.batches)  # some padding present
    chol_re = np.array([[0.9, 0.0], [-0.4, 0.6]])
    sd_vc = np.array([0.7, 1.3])
    pieces = block_pieces(block, chol_re, sd_vc)
    logdet, s = _dense_llf_pieces(labels, z, xy, w, chol_re, sd_vc)
    np.testing.assert_allclose(pieces.logdet, logdet, rtol=1e-11)
    np.testing.assert_allclose(xy.T @ xy - pieces.hmh, s, rtol=1e-10, atol=1e-10)
    assert pieces.n_groups == block.n_groups == 9


def test_padded_width():
    m = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9, 13, 17, 25, 33, 100, 500, 1000, 1024, 1025, 5000])
    expected = np.array(
        [0, 1, 2, 3, 4, 6, 6, 8, 12, 16, 24, 32, 48, 128, 512, 1024, 1024, 1025, 5000]
    )
    np.testing.assert_array_equal(padded_width(m), expected)
    every = np.arange(0, 3000)
    out = padded_width(every)
    assert np.all(out >= every)
    assert np.all(np.diff(out) >= 0)
    assert np.all(out[1:] <= np.maximum(2 * every[1:], 1))  # never more than doubles
    np.testing.assert_array_equal(padded_width(out), out)  # grid points are fixed points
    np.testing.assert_array_equal(padded_width(np.array([[3, 5], [7, 0]])), [[3, 6], [8, 0]])


def test_a_block_tells_its_size():
    """Dask's scheduler sizes a block by ``sys.getsizeof`` (its ``sizeof`` fallback): at
    least its arrays' bytes, counted here from the arrays themselves, so that each step
    runs where its block is rather than moving it to another worker."""
    from dask.sizeof import sizeof

    labels, z, xy, w = _rows()
    block = build_block([_keyed(labels, z, xy, w)], SLOT_COMPONENT)
    arrays = block.labels.nbytes + block.n.nbytes + sum(
        b.g.nbytes + b.h.nbytes for b in block.batches)
    assert arrays > 500  # an object of a few fields is some 50 bytes
    assert sizeof(block) >= arrays
