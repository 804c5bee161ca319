"""Compiled loops of the residual components (numba): a step's solves, a chunk's sums.

:func:`group_solves_loop` is the per-group part of
:func:`dlmm.kernels.residual_blocks.group_solves`, one sweep over a block's groups: for
each group it forms ``G = Σ_k c_k G_k``, ``H = Σ_k c_k H_k``, ``C = I + Λ'GΛ = T T'``,
``M = Λ C⁻¹ Λ' = X'X`` with ``X = T⁻¹Λ'`` and ``N = M H`` in scalars; the sums over the
groups that the derivatives need are then BLAS products.

:func:`ar1_sums_loop` is the AR(1) part of the one pass over a chunk whose rows are
sorted by (group, time): each row's ``z z'`` and ``z [x y]'`` into its group's ``lag0``
component of its stratum, and each pair of consecutive rows of a group (times ``t``
and ``t + 1``) ``z_a z_b' + z_b z_a'`` and ``z_a [x y]_b' + z_b [x y]_a'`` into the
``lag1`` component of its two strata; the same for ``[x y]`` into the components' ``K``.

Compiled once per machine (``cache=True``), imported only when first used; serial,
the GIL released.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def group_solves_loop(g, h, c, lam, gg_out, hh_out, m, nn):  # pragma: no cover - compiled
    """Each group's ``G = Σ_k c_k G_k`` into ``gg_out`` (b, q, q), ``H = Σ_k c_k H_k`` into
    ``hh_out`` (b, q, r), ``M = Λ C⁻¹ Λ'`` into ``m`` (b, q, q) and ``N = M H`` into ``nn``
    (b, q, r); ``g`` (K, b, q, q), ``h`` (K, b, q, r)."""
    n_comp, b, q, _ = g.shape
    r = h.shape[3]
    gl = np.empty((q, q))
    t = np.empty((q, q))
    x = np.empty((q, q))
    for i in range(b):
        gg = gg_out[i]
        hh = hh_out[i]
        gg[:, :] = 0.0
        hh[:, :] = 0.0
        for k in range(n_comp):
            ck = c[k]
            if ck == 0.0:
                continue
            for a in range(q):
                for e in range(q):
                    gg[a, e] += ck * g[k, i, a, e]
                for e in range(r):
                    hh[a, e] += ck * h[k, i, a, e]
        for a in range(q):  # G Λ
            for e in range(q):
                s = 0.0
                for f in range(q):
                    s += gg[a, f] * lam[f, e]
                gl[a, e] = s
        for a in range(q):  # C = I + Λ'GΛ
            for e in range(q):
                s = 1.0 if a == e else 0.0
                for f in range(q):
                    s += lam[f, a] * gl[f, e]
                t[a, e] = s
        for a in range(q):  # its Cholesky factor T, in place (lower)
            for e in range(a + 1):
                s = t[a, e]
                for f in range(e):
                    s -= t[a, f] * t[e, f]
                if a == e:
                    t[a, a] = np.sqrt(s)
                else:
                    t[a, e] = s / t[e, e]
        for col in range(q):  # X = T⁻¹ Λ'
            for a in range(q):
                s = lam[col, a]
                for f in range(a):
                    s -= t[a, f] * x[f, col]
                x[a, col] = s / t[a, a]
        for a in range(q):  # M = X'X
            for e in range(q):
                s = 0.0
                for f in range(q):
                    s += x[f, a] * x[f, e]
                m[i, a, e] = s
        for a in range(q):  # N = M H
            for e in range(r):
                s = 0.0
                for f in range(q):
                    s += m[i, a, f] * hh[f, e]
                nn[i, a, e] = s


@numba.njit(cache=True, nogil=True)
def ar1_sums_loop(g, t, s, z, xy, lag1_of, gz, hz, n, kk):  # pragma: no cover - compiled
    """The sums of a chunk sorted by (group code ``g``, time ``t``): row ``j`` into
    component ``s[j]`` (``lag0``), each pair ``j, j + 1`` of a group at consecutive
    times into component ``lag1_of[s[j], s[j + 1]]``; ``gz`` (C, groups, q, q),
    ``hz`` (C, groups, q, r), ``n`` (C, groups) counts (rows, pairs), ``kk`` (C, r, r)."""
    rows, q = z.shape
    r = xy.shape[1]
    for j in range(rows):
        k = s[j]
        i = g[j]
        n[k, i] += 1.0
        for a in range(q):
            for e in range(q):
                gz[k, i, a, e] += z[j, a] * z[j, e]
            for e in range(r):
                hz[k, i, a, e] += z[j, a] * xy[j, e]
        for a in range(r):
            for e in range(r):
                kk[k, a, e] += xy[j, a] * xy[j, e]
        if j + 1 < rows and g[j + 1] == i and t[j + 1] == t[j] + 1:
            k = lag1_of[s[j], s[j + 1]]
            n[k, i] += 1.0
            for a in range(q):
                for e in range(q):
                    gz[k, i, a, e] += z[j, a] * z[j + 1, e] + z[j + 1, a] * z[j, e]
                for e in range(r):
                    hz[k, i, a, e] += z[j, a] * xy[j + 1, e] + z[j + 1, a] * xy[j, e]
            for a in range(r):
                for e in range(r):
                    kk[k, a, e] += xy[j, a] * xy[j + 1, e] + xy[j + 1, a] * xy[j, e]
