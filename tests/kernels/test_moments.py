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
