"""The moment sums of the start values (``dlmm/kernels/moments.py``) against their
definition, group by group: ``w_i = H_i c``, ``sum_i w_i w_i'``, ``sum_i G_i`` and
``sum_i G_i E_j G_i`` (dense, one group at a time), read at each equation (the
standard block's entries a >= b, the trace of each component's block)."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.layout import GroupBatch
from dlmm.kernels.moments import batch_moment_pieces


def _batch(rng, n_groups, k_re, widths, r):
    q = k_re + int(sum(widths))
    a = rng.normal(size=(n_groups, 7, q))
    xy = rng.normal(size=(n_groups, 7, r))
    g = np.einsum("nix,niy->nxy", a, a)
    h = np.einsum("nix,nir->nxr", a, xy)
    slots = np.tile(np.arange(q - k_re), (n_groups, 1))
    return GroupBatch(np.arange(n_groups), g, h, k_re, np.asarray(widths, dtype=np.int64),
                      slots)


def _brute(batch, coef):
    k_re, q = batch.k_re, batch.q
    eqs = [([(a, b)]) for a in range(k_re) for b in range(a + 1)]  # tril order
    start = k_re
    for width in batch.widths:
        eqs.append([(c, c) for c in range(start, start + int(width))])
        start += int(width)
    dirs = []
    for a in range(k_re):
        for b in range(a + 1):
            e = np.zeros((q, q))
            e[a, b] = e[b, a] = 1.0
            dirs.append(e)
    start = k_re
    for width in batch.widths:
        e = np.zeros((q, q))
        e[range(start, start + int(width)), range(start, start + int(width))] = 1.0
        dirs.append(e)
        start += int(width)
    ww = np.zeros((q, q))
    gg = np.zeros((q, q))
    gegs = [np.zeros((q, q)) for _ in dirs]
    for gi, hi in zip(batch.g, batch.h):  # one group at a time
        wi = hi @ coef
        ww += np.outer(wi, wi)
        gg += gi
        for j, e in enumerate(dirs):
            gegs[j] += gi @ e @ gi

    def read(m):
        return np.array([sum(m[a, b] for a, b in eq) for eq in eqs])

    return read(ww), read(gg), np.column_stack([read(m) for m in gegs])


@pytest.mark.parametrize("k_re,widths", [(1, []), (2, []), (3, []), (2, [2, 3]), (0, [4])])
def test_moment_sums_are_their_definition(k_re, widths):
    rng = np.random.default_rng(k_re * 10 + len(widths))
    r = 5
    batch = _batch(rng, 300, k_re, widths, r)
    coef = rng.normal(size=r)
    got = batch_moment_pieces(batch, coef)
    lhs, g, design = _brute(batch, coef)
    np.testing.assert_allclose(got.lhs, lhs, rtol=1e-12)
    np.testing.assert_allclose(got.g, g, rtol=1e-12)
    np.testing.assert_allclose(got.design, design, rtol=1e-12)


def test_a_batch_without_groups_adds_nothing():
    rng = np.random.default_rng(1)
    batch = _batch(rng, 0, 2, [], 4)
    got = batch_moment_pieces(batch, rng.normal(size=4))
    assert got.lhs.shape == (3,) and not got.lhs.any() and not got.design.any()


def _explained_brute(g, w):
    total, rank = 0.0, 0
    for gi, wi in zip(g, w):  # one group at a time
        total += float(wi @ np.linalg.pinv(gi, rcond=1e-10, hermitian=True) @ wi)
        rank += int(np.linalg.matrix_rank(gi, hermitian=True))
    return total, rank


def test_explained_squares_is_the_pseudo_inverse_form():
    """``sum w'G^+w`` and ``sum rank G`` against ``numpy.linalg.pinv`` and ``matrix_rank``,
    with groups of every rank: full, a padded (zero) column, a column equal to another,
    a group of one row (rank 1), no rows at all."""
    rng = np.random.default_rng(3)
    q, n_groups = 4, 200
    a = rng.normal(size=(n_groups, 6, q))
    a[20:40, :, 3] = 0.0  # padding
    a[40:60, :, 2] = a[40:60, :, 0]  # dependent column
    a[60:80, 1:, :] = 0.0  # one row
    a[80:90] = 0.0  # no rows
    a[90:100, :, 1] *= 1e-3  # small but independent
    resid = rng.normal(size=(n_groups, 6))
    g = np.einsum("nix,niy->nxy", a, a)
    w = np.einsum("nix,ni->nx", a, resid)  # in the range of G
    from dlmm.kernels.moments import explained_squares

    got, rank = explained_squares(g, w)
    want, want_rank = _explained_brute(g, w)
    assert rank == want_rank == 120 * 4 + 20 * 3 + 20 * 3 + 20 * 1 + 10 * 4
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_the_batch_sums_carry_the_explained_squares():
    rng = np.random.default_rng(4)
    batch = _batch(rng, 50, 2, [3], 4)
    coef = rng.normal(size=4)
    got = batch_moment_pieces(batch, coef)
    want, rank = _explained_brute(batch.g, batch.h @ coef)
    assert got.rank == rank == 50 * 5
    np.testing.assert_allclose(got.explained, want, rtol=1e-10)
