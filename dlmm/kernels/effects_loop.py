"""Conditional modes and covariances of many groups as compiled loops (numba).

The output of a fit of millions of groups (:func:`dlmm.kernels.block.block_effects`,
:func:`dlmm.kernels.block.transform_effects`) is per-group arithmetic on matrices
of two or three rows, where NumPy's stacked LAPACK calls and ``einsum`` pay a
per-matrix overhead many times the arithmetic (measured on 250,000 groups of
q = 2: the NumPy modes and covariances 0.6 us a group, their change of
coordinates 0.4 us). Here each is one loop over the groups.

For a group with ``C = I + Lambda'G Lambda = T T'`` (``Lambda = blockdiag(L, s I)``,
``L`` any square matrix, as in :mod:`dlmm.kernels.step_loop`) and ``c = [-beta; 1]``::

    M     = Lambda T^{-T}            (q, q)
    modes = M T^{-1} Lambda'H c      (= Lambda C^{-1} Lambda'H c)
    cov   = M M'                     (= Lambda C^{-1} Lambda', relative to the scale)

Compiled once per machine (``cache=True``), imported on first use; serial, the GIL
released.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, error_model="numpy")
def modes_loop(g, h, k_re, chol, col_sd, coef, scale, modes, cov):  # pragma: no cover
    """Fill ``modes`` (b, q) and ``cov`` (b, q, q; times ``scale``) for every group of
    ``g`` (b, q, q), ``h`` (b, q, r); ``col_sd`` (q - k_re,) the scale of each component
    position."""
    nb, q, r = h.shape[0], h.shape[1], h.shape[2]
    lam = np.zeros((q, q))  # L any square matrix (shifted columns: U L)
    for a in range(k_re):
        for b in range(k_re):
            lam[a, b] = chol[a, b]
    for a in range(k_re, q):
        lam[a, a] = col_sd[a - k_re]
    gl = np.empty((q, q))
    t = np.empty((q, q))
    ti = np.empty((q, q))
    w = np.empty(q)
    y = np.empty(q)
    mh = np.empty((q, q))
    for i in range(nb):
        # G Lambda, then C = Lambda'G Lambda + I (lower) and its Cholesky factor
        for x in range(q):
            for j in range(q):
                acc = 0.0
                for k in range(q):
                    acc += g[i, x, k] * lam[k, j]
                gl[x, j] = acc
        for a in range(q):
            for b in range(a + 1):
                acc = 0.0
                for k in range(q):
                    acc += lam[k, a] * gl[k, b]
                t[a, b] = acc
            t[a, a] += 1.0
        for j in range(q):
            d = t[j, j]
            for k in range(j):
                d -= t[j, k] * t[j, k]
            tjj = np.sqrt(d)
            t[j, j] = tjj
            for a in range(j + 1, q):
                off = t[a, j]
                for k in range(j):
                    off -= t[a, k] * t[j, k]
                t[a, j] = off / tjj
        # T^{-1} (lower)
        for a in range(q):
            ti[a, a] = 1.0 / t[a, a]
            for b in range(a):
                acc = 0.0
                for k in range(b, a):
                    acc += t[a, k] * ti[k, b]
                ti[a, b] = -acc / t[a, a]
        # w = Lambda'H c, y = T^{-1} w
        for a in range(q):
            acc = 0.0
            for k in range(q):
                lv = lam[k, a]
                if lv != 0.0:
                    hc = 0.0
                    for c in range(r):
                        hc += h[i, k, c] * coef[c]
                    acc += lv * hc
            w[a] = acc
        for a in range(q):
            acc = 0.0
            for k in range(a + 1):
                acc += ti[a, k] * w[k]
            y[a] = acc
        # M = Lambda T^{-T}: M[x, a] = sum_k Lambda[x, k] T^{-1}[a, k]
        for x in range(q):
            for a in range(q):
                acc = 0.0
                for k in range(a + 1):
                    acc += lam[x, k] * ti[a, k]
                mh[x, a] = acc
        for x in range(q):
            acc = 0.0
            for a in range(q):
                acc += mh[x, a] * y[a]
            modes[i, x] = acc
            for z in range(x + 1):
                acc = 0.0
                for a in range(q):
                    acc += mh[x, a] * mh[z, a]
                cov[i, x, z] = acc * scale
                cov[i, z, x] = acc * scale


@numba.njit(cache=True, nogil=True)
def transform_loop(cov, k, u_inv, f2, out):  # pragma: no cover - compiled
    """``out[i] = f2 T cov[i] T'`` with ``T = blockdiag(u_inv, I)`` (``u_inv`` (k, k)) for
    every matrix of the stack ``cov`` (b, q, q)."""
    nb, q = cov.shape[0], cov.shape[1]
    left = np.empty((q, q))
    for i in range(nb):
        for a in range(q):  # T cov
            for c in range(q):
                if a < k:
                    acc = 0.0
                    for b in range(k):
                        acc += u_inv[a, b] * cov[i, b, c]
                    left[a, c] = acc
                else:
                    left[a, c] = cov[i, a, c]
        for a in range(q):  # (T cov) T'
            for c in range(q):
                if c < k:
                    acc = 0.0
                    for b in range(k):
                        acc += left[a, b] * u_inv[c, b]
                else:
                    acc = left[a, c]
                out[i, a, c] = acc * f2
