"""Compiled loops (numba) of the sparse Schur factorization, for :mod:`.sparse`.

A symmetric positive definite ``A`` (order ``n``) is given by its upper triangle
by column (CSC ``ap, ai``: column ``k`` holds the rows ``i <= k``, which are the
columns of row ``k`` of the lower triangle). The factor ``L`` (``A = L L'``) is
kept in CSC with the diagonal first in each column and the rows ascending
(``lp, li, lx``). Written from the textbook algorithms (Liu's elimination tree,
row subtrees for the pattern, the up-looking Cholesky, Takahashi's recurrence for
the inverse on the pattern of ``L``); serial, no Python objects.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def elimination_tree(n, ap, ai):
    """Parent of each column in the elimination tree of ``A`` (-1 for a root)."""
    parent = np.full(n, -1, np.int64)
    ancestor = np.full(n, -1, np.int64)
    for k in range(n):
        for p in range(ap[k], ap[k + 1]):
            i = ai[p]
            while i != -1 and i < k:
                nxt = ancestor[i]
                ancestor[i] = k
                if nxt == -1:
                    parent[i] = k
                i = nxt
    return parent


@numba.njit(cache=True, nogil=True)
def column_counts(n, ap, ai, parent, budget):
    """Strictly-lower nonzeros of each column and of each row of ``L`` (row subtrees),
    or all -1 as soon as their total passes ``budget`` (the caller then keeps the
    dense factorization)."""
    counts = np.zeros(n, np.int64)
    row_counts = np.zeros(n, np.int64)
    mark = np.full(n, -1, np.int64)
    total = 0
    for k in range(n):
        mark[k] = k
        for p in range(ap[k], ap[k + 1]):
            i = ai[p]
            while i != -1 and i < k and mark[i] != k:
                mark[i] = k
                counts[i] += 1
                row_counts[k] += 1
                i = parent[i]
        total += row_counts[k]
        if total > budget:
            counts[:] = -1
            return counts, row_counts
    return counts, row_counts


@numba.njit(cache=True, nogil=True)
def row_patterns(n, ap, ai, parent, rp):
    """Columns of each row of ``L`` below the diagonal, ascending (CSR with pointers
    ``rp``): the rows' subtrees of the elimination tree."""
    rc = np.empty(rp[n], np.int64)
    mark = np.full(n, -1, np.int64)
    for k in range(n):
        mark[k] = k
        top = rp[k]
        for p in range(ap[k], ap[k + 1]):
            i = ai[p]
            while i != -1 and i < k and mark[i] != k:
                mark[i] = k
                rc[top] = i
                top += 1
                i = parent[i]
        rc[rp[k]:rp[k + 1]] = np.sort(rc[rp[k]:rp[k + 1]])
    return rc


@numba.njit(cache=True, nogil=True)
def factor_rows(n, rp, rc, lp):
    """Row index of each stored entry of ``L`` (diagonal first, rows ascending)."""
    li = np.empty(lp[n], np.int64)
    nxt = lp[:n] + 1
    for j in range(n):
        li[lp[j]] = j
    for k in range(n):
        for q in range(rp[k], rp[k + 1]):
            j = rc[q]
            li[nxt[j]] = k
            nxt[j] += 1
    return li


@numba.njit(cache=True, nogil=True)
def cholesky(n, ap, ai, ax, rp, rc, lp, li, lx):
    """Up-looking Cholesky into ``lx`` (pattern ``lp, li`` of :func:`factor_rows`).

    Row ``k`` of ``L`` solves ``L[:k, :k] x = A[:k, k]`` on its pattern ``rc``
    (ascending is a topological order). Returns -1, or the first column whose pivot
    is not positive.
    """
    x = np.zeros(n)
    nxt = lp[:n] + 1
    for k in range(n):
        for p in range(ap[k], ap[k + 1]):
            x[ai[p]] = ax[p]
        d = x[k]
        x[k] = 0.0
        for q in range(rp[k], rp[k + 1]):
            j = rc[q]
            lkj = x[j] / lx[lp[j]]
            x[j] = 0.0
            for p in range(lp[j] + 1, nxt[j]):
                x[li[p]] -= lx[p] * lkj
            d -= lkj * lkj
            lx[nxt[j]] = lkj
            nxt[j] += 1
        if not d > 0.0:
            return k
        lx[lp[k]] = np.sqrt(d)
    return -1


@numba.njit(cache=True, nogil=True)
def solve_lower(n, lp, li, lx, b):
    """In place ``b <- L^{-1} b`` (``b``: ``n x s``, C order)."""
    s = b.shape[1]
    for j in range(n):
        d = lx[lp[j]]
        for c in range(s):
            b[j, c] /= d
        for p in range(lp[j] + 1, lp[j + 1]):
            i = li[p]
            v = lx[p]
            for c in range(s):
                b[i, c] -= v * b[j, c]


@numba.njit(cache=True, nogil=True)
def solve_upper(n, lp, li, lx, b):
    """In place ``b <- L^{-T} b`` (``b``: ``n x s``, C order)."""
    s = b.shape[1]
    for j in range(n - 1, -1, -1):
        for p in range(lp[j] + 1, lp[j + 1]):
            i = li[p]
            v = lx[p]
            for c in range(s):
                b[j, c] -= v * b[i, c]
        d = lx[lp[j]]
        for c in range(s):
            b[j, c] /= d


@numba.njit(cache=True, nogil=True)
def selected_inverse(n, lp, li, lx):
    """``Z = A^{-1}`` on the pattern of ``L`` (same layout as ``lx``), by Takahashi's
    recurrence from the last column: for ``i`` in ``S`` (rows of column ``j`` below
    the diagonal) ``Z_ij = -sum_{k in S} Z_ik L_kj / L_jj`` and
    ``Z_jj = 1 / L_jj^2 - sum_{k in S} Z_kj L_kj / L_jj``. Every ``Z_ik`` it reads
    is on the pattern (the rows of a column below ``k`` lie in column ``k``)."""
    z = np.zeros(lx.size)
    acc = np.zeros(n)
    for j in range(n - 1, -1, -1):
        p0 = lp[j]
        p1 = lp[j + 1]
        for q in range(p0 + 1, p1):
            acc[q - p0] = 0.0
        for q in range(p0 + 1, p1):
            k = li[q]
            lkj = lx[q]
            acc[q - p0] += z[lp[k]] * lkj
            r = lp[k] + 1
            for q2 in range(q + 1, p1):
                i = li[q2]
                while li[r] < i:
                    r += 1
                zik = z[r]
                acc[q2 - p0] += zik * lkj
                acc[q - p0] += zik * lx[q2]
        ljj = lx[p0]
        diag = 1.0 / (ljj * ljj)
        for q in range(p0 + 1, p1):
            v = -acc[q - p0] / ljj
            z[q] = v
            diag -= v * lx[q] / ljj
        z[p0] = diag
    return z
