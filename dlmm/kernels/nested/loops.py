"""Compiled loops over the nodes of a level (numba), for :mod:`.small`.

Compiled once per machine (``cache=True``); imported only when a nested kernel first
runs.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def product_loop(n, a, b, out, rows_a, rows_b, into, trans_a, trans_b, sign):  # pragma: no cover
    """The loop of :func:`.small.product`; an index array of -1 (one entry) means "none"."""
    p = a.shape[2] if trans_a else a.shape[1]
    inner = a.shape[1] if trans_a else a.shape[2]
    s = b.shape[1] if trans_b else b.shape[2]
    by_a, by_b, scatter = rows_a[0] != -1, rows_b[0] != -1, into[0] != -1
    for k in range(n):
        i = rows_a[k] if by_a else (0 if a.shape[0] == 1 else k)
        j = rows_b[k] if by_b else (0 if b.shape[0] == 1 else k)
        o = into[k] if scatter else k
        for x in range(p):
            for y in range(s):
                acc = 0.0
                for z in range(inner):
                    av = a[i, z, x] if trans_a else a[i, x, z]
                    bv = b[j, y, z] if trans_b else b[j, z, y]
                    acc += av * bv
                out[o, x, y] += sign * acc


@numba.njit(cache=True, nogil=True)
def cholesky_inverse_loop(d, ti):  # pragma: no cover
    """The loop of :func:`.small.cholesky_inverse`: fills ``ti``, returns the log
    determinant (NaN at a block that is not positive definite)."""
    n, q = d.shape[0], d.shape[1]
    t = np.zeros((q, q))
    logdet = 0.0
    for k in range(n):
        for j in range(q):
            pivot = d[k, j, j]
            for m in range(j):
                pivot -= t[j, m] * t[j, m]
            if not pivot > 0.0:
                return np.nan
            t[j, j] = np.sqrt(pivot)
            logdet += np.log(pivot)
            for i in range(j + 1, q):
                off = d[k, i, j]
                for m in range(j):
                    off -= t[i, m] * t[j, m]
                t[i, j] = off / t[j, j]
        for i in range(q):
            ti[k, i, i] = 1.0 / t[i, i]
            for j in range(i):
                acc = 0.0
                for m in range(j, i):
                    acc += t[i, m] * ti[k, m, j]
                ti[k, i, j] = -acc / t[i, i]
    return logdet
