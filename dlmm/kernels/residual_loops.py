"""Compiled loops of the residual components (numba): a step's sweep, a chunk's sums.

:func:`residual_sweep_loop` is :func:`dlmm.kernels.residual_blocks.sweep` over a block's
groups: for each group it forms ``G = Σ_k c_k G_k``, ``H = Σ_k c_k H_k``, ``C = I + Λ'GΛ
= T T'``, ``X = T⁻¹Λ'``, ``M = X'X`` and ``N = X'XH`` in scalars and adds the group's
value pieces, its derivatives along every component and, for a Newton step, its
second-derivative sums, reading each component of the group once.

:func:`ar1_sums_loop` is the AR(1) part of the one pass over a chunk whose rows are
sorted by (group, time) (:func:`time_order` tells): each row centred and weighted as it
is read, its ``z z'`` and ``z [x y]'`` into its group's ``lag0`` component of its
stratum, and each pair of consecutive rows of a group (times ``t`` and ``t + 1``)
``z_a z_b' + z_b z_a'`` and ``z_a [x y]_b' + z_b [x y]_a'`` into the ``lag1`` component
of its two strata; the same for ``[x y]`` into the components' ``K``.

Compiled once per machine (``cache=True``), imported only when first used; serial,
the GIL released.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.tuple import tuple_setitem


def sizes(*counts: int) -> tuple[tuple, ...]:
    """Each count (``q``, ``r``, ...) as the length of a tuple of zeros, which numba
    knows when it compiles: the loops below are compiled (and cached) for each model's
    sizes, their small loops over ``q`` and ``r`` unrolled (the AR(1) sums of 5·10^5 rows
    of q = 2, r = 3: 19 → 9 ms), not for any size; a loop that keeps a row in registers
    starts its tuples from them (:mod:`dlmm.kernels.ar1_columns`)."""
    return tuple((0.0,) * int(c) for c in counts)


@numba.njit(cache=True, nogil=True)
def time_order(g, t):  # pragma: no cover - compiled
    """``(sorted, first repeat)``: whether the rows are in (group code ``g``, time ``t``)
    order with increasing times within a group, and else -1; in order, the first row
    whose time repeats the one before in its group (-1: none)."""
    for j in range(1, g.shape[0]):
        if g[j] < g[j - 1] or (g[j] == g[j - 1] and t[j] < t[j - 1]):
            return False, -1
    for j in range(1, g.shape[0]):
        if g[j] == g[j - 1] and t[j] == t[j - 1]:
            return True, j - 1
    return True, -1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def ar1_sums_loop(g, t, s, z_raw, xy_raw, shifts, sw, lag1_of, gz, hz, n, kk, pair,
                  q_len, r_len):  # pragma: no cover - compiled
    """The sums of a chunk sorted by (group code ``g``, time ``t``), each row centred as
    it is read (``shifts = (z_shift, z_scale, xy_shift, xy_scale)``: ``(value - shift) /
    scale``, as a product with the scale's reciprocal: exact, the scales are powers of
    two, :mod:`dlmm.spec.centering`) and times ``sw`` (√w): row ``j`` into component
    ``s[j]`` (``lag0``), each pair ``j, j + 1`` of a group at consecutive times into
    component ``lag1_of[s[j], s[j + 1]]`` (``pair[j]`` set); ``gz`` (C, groups, q, q),
    ``hz`` (C, groups, q, r), ``n`` (C, groups) counts (rows, pairs), ``kk`` (C, r, r)
    (its upper triangle; the caller mirrors it). ``q_len``, ``r_len``: tuples of ``q``
    and ``r`` entries (:func:`sizes`)."""
    rows = z_raw.shape[0]
    q = len(q_len)
    r = len(r_len)
    z_shift, z_scale, xy_shift, xy_scale = shifts
    z_inv = 1.0 / z_scale
    xy_inv = 1.0 / xy_scale
    z = np.empty((2, q))
    xy = np.empty((2, r))
    for j in range(rows):
        cur = j & 1
        prev = 1 - cur
        w = sw[j]
        for a in range(q):
            z[cur, a] = (z_raw[j, a] - z_shift[a]) * z_inv[a] * w
        for a in range(r):
            xy[cur, a] = (xy_raw[j, a] - xy_shift[a]) * xy_inv[a] * w
        k = s[j]
        i = g[j]
        n[k, i] += 1.0
        for a in range(q):
            za = z[cur, a]
            for e in range(q):
                gz[k, i, a, e] += za * z[cur, e]
            for e in range(r):
                hz[k, i, a, e] += za * xy[cur, e]
        for a in range(r):
            xa = xy[cur, a]
            for e in range(a, r):
                kk[k, a, e] += xa * xy[cur, e]
        if j > 0 and g[j - 1] == i and t[j] == t[j - 1] + 1:
            pair[j - 1] = True
            k = lag1_of[s[j - 1], s[j]]
            n[k, i] += 1.0
            for a in range(q):
                zp = z[prev, a]
                zc = z[cur, a]
                for e in range(q):
                    gz[k, i, a, e] += zp * z[cur, e] + zc * z[prev, e]
                for e in range(r):
                    hz[k, i, a, e] += zp * xy[cur, e] + zc * xy[prev, e]
            for a in range(r):
                xp = xy[prev, a]
                xc = xy[cur, a]
                for e in range(a, r):
                    kk[k, a, e] += xp * xy[cur, e] + xc * xy[prev, e]


@numba.njit(cache=True, nogil=True, inline="always")
def _flat(a, out):  # pragma: no cover - compiled
    """``out`` (a tuple of ``len(out)`` zeros) filled with ``a[0 : len(out)]``."""
    for i in range(len(out)):
        out = tuple_setitem(out, i, a[i])
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def residual_sweep_loop(gd, hd, lam, e, n_hess, hessian, logdet, hmh, p_sum, t_sum, p_dir,
                        t_dir, trace2, d2, q_len, r_len, qr_len,
                        qq_len):  # pragma: no cover - compiled
    """One sweep over a block's groups for a step: ``gd[0]`` (b, q, q), ``hd[0]`` (b, q, r)
    the combined cross-products ``G``, ``H`` of each group, ``gd[1 + d]``, ``hd[1 + d]``
    those along direction d. Adds the value pieces (``logdet`` (1,), ``hmh``, ``p_sum`` =
    Σ P, ``t_sum[a, b]`` = Σ outer(R[a], R[b])), the derivatives along every direction
    (``p_dir``, ``t_dir``: of ``Σ log|C|`` and of ``hmh``) and, with ``hessian``, the
    second-derivative sums (``trace2``, ``d2``) along the covariance's ``E_j`` of ``e``
    and the first ``n_hess`` directions, as :func:`dlmm.kernels.residual_blocks.
    numpy_sweep` states them. ``q_len``, ``r_len``, ``qr_len``, ``qq_len``: tuples of
    ``q``, ``r``, ``q·r`` and ``q·q`` zeros (:func:`sizes`): the small matrices that the
    sums read again and again (``R``, ``N``, ``H_d``, ``U_d``, ``M``, ``F``, ``P``,
    ``G_a``, ``E_j``, ``E_j R``, ``P E_k R``, ``V_a``, ``M U_a``) are read into tuples,
    held in registers while the sums are stored (a sweep of 5·10^4 groups of q = 2,
    r = 3 along 4 directions: 23.7 → 17.0 ms with the Newton sums, 10.0 → 8.9 ms
    without)."""
    b = hd.shape[1]
    q = len(q_len)
    r = len(r_len)
    n_dir = gd.shape[0] - 1
    m_cov = e.shape[0]
    gl = np.empty((q, q))
    t = np.empty((q, q))
    x = np.empty((q, q))
    qm = np.empty((q, q))
    u = np.empty((q, r))
    mm = np.empty((q, q))
    nn = np.empty((q, r))
    pp = np.empty((q, q))
    rr = np.empty((q, r))
    gkn = np.empty((q, r))
    ua = np.empty((n_hess, q, r))
    qa = np.empty((n_hess, q, q))
    va = np.empty((n_hess, q, r))
    mga = np.empty((n_hess, q, q))
    mua = np.empty((n_hess, q, r))
    ep = np.empty((m_cov, q, q))
    er = np.empty((m_cov, q, r))
    yk = np.empty((m_cov, q, r))
    er_f = er.reshape(m_cov, q * r)  # flat views, read into tuples
    yk_f = yk.reshape(m_cov, q * r)
    va_f = va.reshape(n_hess, q * r)
    ua_f = ua.reshape(n_hess, q * r)
    mua_f = mua.reshape(n_hess, q * r)
    rr_f = rr.reshape(q * r)
    nn_f = nn.reshape(q * r)
    gkn_f = gkn.reshape(q * r)
    hd_f = hd.reshape(hd.shape[0], b, q * r)
    gd_f = gd.reshape(gd.shape[0], b, q * q)
    mm_f = mm.reshape(q * q)
    pp_f = pp.reshape(q * q)
    e_f = e.reshape(m_cov, q * q)
    for i in range(b):
        gg = gd[0, i]
        hh = hd[0, i]
        for a in range(q):  # G Λ
            for f in range(q):
                s = 0.0
                for z in range(q):
                    s += gg[a, z] * lam[z, f]
                gl[a, f] = s
        for a in range(q):  # C = I + Λ'GΛ
            for f in range(q):
                s = 1.0 if a == f else 0.0
                for z in range(q):
                    s += lam[z, a] * gl[z, f]
                t[a, f] = s
        for a in range(q):  # its Cholesky factor T, in place (lower)
            for f in range(a + 1):
                s = t[a, f]
                for z in range(f):
                    s -= t[a, z] * t[f, z]
                if a == f:
                    t[a, a] = np.sqrt(s)
                else:
                    t[a, f] = s / t[f, f]
        for a in range(q):
            logdet[0] += 2.0 * np.log(t[a, a])
        for col in range(q):  # X = T⁻¹ Λ'
            for a in range(q):
                s = lam[col, a]
                for z in range(a):
                    s -= t[a, z] * x[z, col]
                x[a, col] = s / t[a, a]
        for a in range(q):  # Qm = X G, U = X H
            for f in range(q):
                s = 0.0
                for z in range(q):
                    s += x[a, z] * gg[z, f]
                qm[a, f] = s
            for f in range(r):
                s = 0.0
                for z in range(q):
                    s += x[a, z] * hh[z, f]
                u[a, f] = s
        for a in range(q):  # M = X'X, N = X'U, P = G - Qm'Qm, R = H - Qm'U
            for f in range(q):
                s = 0.0
                s2 = 0.0
                for z in range(q):
                    s += x[z, a] * x[z, f]
                    s2 += qm[z, a] * qm[z, f]
                mm[a, f] = s
                pp[a, f] = gg[a, f] - s2
            for f in range(r):
                s = 0.0
                s2 = 0.0
                for z in range(q):
                    s += x[z, a] * u[z, f]
                    s2 += qm[z, a] * u[z, f]
                nn[a, f] = s
                rr[a, f] = hh[a, f] - s2
        for e1 in range(r):  # hmh = U'U
            for f in range(r):
                s = 0.0
                for z in range(q):
                    s += u[z, e1] * u[z, f]
                hmh[e1, f] += s
        rv = _flat(rr_f, qr_len)
        for a in range(q):
            for f in range(q):
                p_sum[a, f] += pp[a, f]
                for e1 in range(r):
                    for e2 in range(r):
                        t_sum[a, f, e1, e2] += rv[a * r + e1] * rv[f * r + e2]
        nv = _flat(nn_f, qr_len)
        for d in range(n_dir):  # along each direction: tr(M G_d), H_d'N + N'H_d - N'G_dN
            gk = gd[1 + d, i]
            hv = _flat(hd_f[1 + d, i], qr_len)
            s = 0.0
            for a in range(q):
                for f in range(q):
                    s += mm[a, f] * gk[f, a]
                for f in range(r):
                    s2 = 0.0
                    for z in range(q):
                        s2 += gk[a, z] * nv[z * r + f]
                    gkn[a, f] = hv[a * r + f] - s2  # U_d = H_d - G_d N
                    if d < n_hess:
                        ua[d, a, f] = gkn[a, f]
            p_dir[d] += s
            uv = _flat(gkn_f, qr_len)
            for e1 in range(r):
                for e2 in range(r):
                    s = 0.0
                    for a in range(q):
                        s += hv[a * r + e1] * nv[a * r + e2] + nv[a * r + e1] * uv[a * r + e2]
                    t_dir[d, e1, e2] += s
        if not hessian:
            continue
        mv = _flat(mm_f, qq_len)
        ftv = qq_len
        for a in range(q):  # F' = I - G M
            for f in range(q):
                s = 1.0 if a == f else 0.0
                for z in range(q):
                    s -= gg[a, z] * mv[z * q + f]
                ftv = tuple_setitem(ftv, a * q + f, s)
        for d in range(n_hess):
            gav = _flat(gd_f[1 + d, i], qq_len)
            tmv = qq_len
            for a in range(q):  # M G_a, G_a F (into tmv)
                for f in range(q):
                    s = 0.0
                    s2 = 0.0
                    for z in range(q):
                        s += mv[a * q + z] * gav[z * q + f]
                        s2 += gav[a * q + z] * ftv[f * q + z]
                    mga[d, a, f] = s
                    tmv = tuple_setitem(tmv, a * q + f, s2)
            uav = _flat(ua_f[d], qr_len)
            for a in range(q):  # Q_a = F' G_a F, V_a = F' U_a, M U_a
                for f in range(q):
                    s = 0.0
                    for z in range(q):
                        s += ftv[a * q + z] * tmv[z * q + f]
                    qa[d, a, f] = s
                for f in range(r):
                    s = 0.0
                    s2 = 0.0
                    for z in range(q):
                        s += ftv[a * q + z] * uav[z * r + f]
                        s2 += mv[a * q + z] * uav[z * r + f]
                    va[d, a, f] = s
                    mua[d, a, f] = s2
        pv = _flat(pp_f, qq_len)
        for j in range(m_cov):  # E_j P and E_j R
            ev = _flat(e_f[j], qq_len)
            for a in range(q):
                for f in range(q):
                    s = 0.0
                    for z in range(q):
                        s += ev[a * q + z] * pv[z * q + f]
                    ep[j, a, f] = s
                for f in range(r):
                    s = 0.0
                    for z in range(q):
                        s += ev[a * q + z] * rv[z * r + f]
                    er[j, a, f] = s
        for k in range(m_cov):  # Y_k = P E_k R
            ekv = _flat(er_f[k], qr_len)
            for a in range(q):
                for f in range(r):
                    s = 0.0
                    for z in range(q):
                        s += pv[a * q + z] * ekv[z * r + f]
                    yk[k, a, f] = s
        for j in range(m_cov):
            erj = _flat(er_f[j], qr_len)
            for k in range(j, m_cov):  # tr(E_j P E_k P), R'E_j P E_k R (one side)
                s = 0.0
                for a in range(q):
                    for f in range(q):
                        s += ep[j, a, f] * ep[k, f, a]
                trace2[j, k] += s
                yv = _flat(yk_f[k], qr_len)
                for e1 in range(r):
                    for e2 in range(r):
                        s = 0.0
                        for a in range(q):
                            s += erj[a * r + e1] * yv[a * r + e2]
                        d2[j, k, e1, e2] += s
            for d in range(n_hess):  # -tr(E_j Q_a), -R'E_j V_a (one side)
                s = 0.0
                for a in range(q):
                    for f in range(q):
                        s += e[j, a, f] * qa[d, f, a]
                trace2[j, m_cov + d] -= s
                vv = _flat(va_f[d], qr_len)
                for e1 in range(r):
                    for e2 in range(r):
                        s = 0.0
                        for a in range(q):
                            s += erj[a * r + e1] * vv[a * r + e2]
                        d2[j, m_cov + d, e1, e2] -= s
        for d in range(n_hess):  # tr(M G_a M G_b), -U_a'M U_b (one side)
            uv = _flat(ua_f[d], qr_len)
            for d3 in range(d, n_hess):
                s = 0.0
                for a in range(q):
                    for f in range(q):
                        s += mga[d, a, f] * mga[d3, f, a]
                trace2[m_cov + d, m_cov + d3] += s
                mv = _flat(mua_f[d3], qr_len)
                for e1 in range(r):
                    for e2 in range(r):
                        s = 0.0
                        for a in range(q):
                            s += uv[a * r + e1] * mv[a * r + e2]
                        d2[m_cov + d, m_cov + d3, e1, e2] -= s
    m = trace2.shape[0]
    for j in range(m):  # the other side: trace2 symmetric, d2[l, j] = d2[j, l]'
        for k in range(j + 1, m):
            trace2[k, j] = trace2[j, k]
            for e1 in range(r):
                for e2 in range(r):
                    d2[k, j, e2, e1] = d2[j, k, e1, e2]
