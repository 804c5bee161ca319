"""The grouped engine's optimizer step as one compiled loop over the groups (numba).

For each group of a batch (``G = A'A`` (q, q), ``H = A'[X y]`` (q, r) as the block
keeps them, one after the other in memory) the loop forms, in scalars held in a few
small scratch arrays, what :mod:`dlmm.kernels.likelihood` and
:mod:`dlmm.kernels.hessian` describe:

    C = I + Lambda'G Lambda = T T',  U = T^{-1} Lambda'H,  Q = T^{-1} Lambda'G
    P = G - Q'Q = A'V^{-1}A,         R = H - Q'U = A'V^{-1}[X y]

and adds the group's value and gradient pieces (``log|C|``, ``U'U``, ``P``'s
standard block and component traces, ``R``'s outer products) and, when asked, its
Hessian pieces (``tr(E_j P E_k P)``, ``R'E_j P E_k R`` through ``Y_k = P E_k R``) to
the sums, in the same sweep: each group's numbers are read once and nothing of size
``groups x ...`` is made. ``Lambda = blockdiag(L, s I)`` is used by its structure
(the lower-triangular ``L`` of the standard random effects, one scale per component
column; ``L`` any square matrix, as the engine is asked at ``U L`` for shifted
random-effect columns, :mod:`dlmm.structure.shifted`), so a batch with many
component columns costs ``O(q^2)`` per group for ``Lambda'G Lambda``, not ``O(q^3)``.

The sums are made in two levels: ``CHUNK`` groups into a partial sum, then the
partial sums into the total, so that rounding grows with the number of chunks, not
of groups. Symmetric results (``U'U``, the diagonal blocks of ``R``'s outer
products, ``trace2`` and ``d2`` over (j, k)) are summed on one side and mirrored at
the end.

Compiled once per machine (``cache=True``), imported only when a step first runs
(so that importing dlmm does not import numba); serial and the GIL released (a
Dask worker's threads run blocks side by side).
"""

from __future__ import annotations

import numba
import numpy as np

#: Groups summed into one partial sum before it is added to the total.
CHUNK = 64


@numba.njit(cache=True, nogil=True)
def _flush(part, total):  # pragma: no cover - compiled
    """``total += part; part[:] = 0`` for arrays of one (contiguous) shape."""
    src = part.reshape(-1)
    dst = total.reshape(-1)
    for i in range(src.shape[0]):
        dst[i] += src[i]
        src[i] = 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def step_loop(g, h, k_re, chol, col_sd, col_comp, dir_ptr, dir_a, dir_b, hessian,
              hmh, p_re, p_vc, t_re, t_vc, trace2, d2):  # pragma: no cover - compiled
    """Add the pieces of every group of ``g`` (b, q, q), ``h`` (b, q, r) to the outputs.

    ``chol`` (k_re, k_re) is ``L`` (any square matrix); ``col_sd[c]`` and
    ``col_comp[c]`` the scale and the component of component position ``c``
    (q - k_re of them). Direction ``j`` is
    ``E_j = sum e_a e_b'`` over ``(dir_a[e], dir_b[e])``, ``e`` in
    ``dir_ptr[j]:dir_ptr[j + 1]``. ``hmh``, ``t_re`` (its blocks a <= c), ``t_vc``,
    ``trace2`` and ``d2`` (j <= k) get one side of their symmetric sums (see the
    module docstring); ``trace2`` and ``d2`` only when ``hessian``.

    Returns
    -------
    float
        ``sum log|C|`` over the groups.
    """
    nb, q, r = h.shape[0], h.shape[1], h.shape[2]
    m = dir_ptr.shape[0] - 1
    k_vc = p_vc.shape[0]
    gl = np.empty((q, q))  # G Lambda
    t = np.empty((q, q))  # C, then its Cholesky factor (lower)
    u = np.empty((q, r))
    qm = np.empty((q, q))
    p = np.empty((q, q))
    rr = np.empty((q, r))
    y = np.empty((m if hessian else 0, q, r))
    # partial sums of a chunk of groups
    c_hmh = np.zeros((r, r))
    c_pre = np.zeros((k_re, k_re))
    c_pvc = np.zeros(k_vc)
    c_tre = np.zeros((k_re, k_re, r, r))
    c_tvc = np.zeros((k_vc, r, r))
    c_tr2 = np.zeros((m, m) if hessian else (0, 0))
    c_d2 = np.zeros((m, m, r, r) if hessian else (0, 0, r, r))
    logdet = 0.0
    c_logdet = 0.0
    for i in range(nb):
        gi = g[i]
        hi = h[i]
        # G Lambda
        for x in range(q):
            for j in range(k_re):
                acc = 0.0
                for k in range(k_re):
                    acc += gi[x, k] * chol[k, j]
                gl[x, j] = acc
            for j in range(k_re, q):
                gl[x, j] = gi[x, j] * col_sd[j - k_re]
        # C = Lambda' G Lambda + I (lower triangle), then T in place
        for a in range(q):
            for b in range(a + 1):
                if a < k_re:
                    acc = 0.0
                    for k in range(k_re):
                        acc += chol[k, a] * gl[k, b]
                else:
                    acc = col_sd[a - k_re] * gl[a, b]
                t[a, b] = acc
            t[a, a] += 1.0
        ld = 0.0
        for j in range(q):
            d = t[j, j]
            for k in range(j):
                d -= t[j, k] * t[j, k]
            tjj = np.sqrt(d)  # NaN where C is not positive definite (NaN input)
            t[j, j] = tjj
            ld += np.log(tjj)
            for a in range(j + 1, q):
                off = t[a, j]
                for k in range(j):
                    off -= t[a, k] * t[j, k]
                t[a, j] = off / tjj
        c_logdet += 2.0 * ld
        # U = T^{-1} Lambda'H and Q = T^{-1} Lambda'G ((Lambda'G)[a, x] = gl[x, a])
        for a in range(q):
            taa = t[a, a]
            for c in range(r):
                if a < k_re:
                    acc = 0.0
                    for k in range(k_re):
                        acc += chol[k, a] * hi[k, c]
                else:
                    acc = col_sd[a - k_re] * hi[a, c]
                for k in range(a):
                    acc -= t[a, k] * u[k, c]
                u[a, c] = acc / taa
            for x in range(q):
                acc = gl[x, a]
                for k in range(a):
                    acc -= t[a, k] * qm[k, x]
                qm[a, x] = acc / taa
        # H'MH = U'U (upper triangle)
        for c1 in range(r):
            for c2 in range(c1, r):
                acc = 0.0
                for k in range(q):
                    acc += u[k, c1] * u[k, c2]
                c_hmh[c1, c2] += acc
        # P = G - Q'Q (every entry for the Hessian, else what the value needs)
        for a in range(q):
            for b in range(a, q):
                if hessian or b < k_re or a == b:
                    acc = gi[a, b]
                    for k in range(q):
                        acc -= qm[k, a] * qm[k, b]
                    p[a, b] = acc
                    p[b, a] = acc
        # R = H - Q'U
        for a in range(q):
            for c in range(r):
                acc = hi[a, c]
                for k in range(q):
                    acc -= qm[k, a] * u[k, c]
                rr[a, c] = acc
        # value and gradient pieces
        for a in range(k_re):
            for b in range(k_re):
                c_pre[a, b] += p[a, b]
            for b in range(a, k_re):
                for c1 in range(r):
                    ra = rr[a, c1]
                    for c2 in range(c1 if b == a else 0, r):
                        c_tre[a, b, c1, c2] += ra * rr[b, c2]
        for a in range(k_re, q):
            comp = col_comp[a - k_re]
            c_pvc[comp] += p[a, a]
            for c1 in range(r):
                ra = rr[a, c1]
                for c2 in range(c1, r):
                    c_tvc[comp, c1, c2] += ra * rr[a, c2]
        if hessian:
            # Y_k = P E_k R, then R'E_j P E_k R = sum_(a, b) in j outer(R_a, Y_k[b])
            for k in range(m):
                for x in range(q):
                    for c in range(r):
                        y[k, x, c] = 0.0
                for e in range(dir_ptr[k], dir_ptr[k + 1]):
                    ca, cb = dir_a[e], dir_b[e]
                    for x in range(q):
                        pxc = p[x, ca]
                        for c in range(r):
                            y[k, x, c] += pxc * rr[cb, c]
            for j in range(m):
                for e in range(dir_ptr[j], dir_ptr[j + 1]):
                    a, b = dir_a[e], dir_b[e]
                    for k in range(j, m):
                        acc = 0.0  # tr(E_j P E_k P): sum P_bc P_da over (c, d) in k
                        for f in range(dir_ptr[k], dir_ptr[k + 1]):
                            acc += p[b, dir_a[f]] * p[dir_b[f], a]
                        c_tr2[j, k] += acc
                        for c1 in range(r):
                            ra = rr[a, c1]
                            for c2 in range(r):
                                c_d2[j, k, c1, c2] += ra * y[k, b, c2]
        if (i + 1) % CHUNK == 0 or i == nb - 1:
            logdet += c_logdet
            c_logdet = 0.0
            _flush(c_hmh, hmh)
            _flush(c_pre, p_re)
            _flush(c_pvc, p_vc)
            _flush(c_tre, t_re)
            _flush(c_tvc, t_vc)
            if hessian:
                _flush(c_tr2, trace2)
                _flush(c_d2, d2)
    return logdet


#: Groups per tile of :func:`small_step_loop`: their rows go to BLAS in one product
#: (small enough that OpenBLAS keeps the product on one thread).
TILE = 256


@numba.njit(cache=True, nogil=True, error_model="numpy")
def small_step_loop(g, h, chol, hessian, uu, rr_sum, ry_sum, p_re,
                    trace2):  # pragma: no cover - compiled
    """The step of a batch of ``k = 1`` or ``2`` standard random effects and no
    component (a random intercept; an intercept and a slope): most fits.

    Each group's factor is written out in scalars; its rows ``U_a`` (``k`` of length
    r), ``R_a`` and ``Y_j[b] = (P E_j R)[b]`` go to tiles of ``TILE`` groups, and the
    sums over groups of their outer products are matrix products of the tiles (BLAS):
    ``uu += sum_a U_a U_a'`` (r, r) (= ``H'MH``), ``rr_sum += R~'R~`` (k r, k r) and
    ``ry_sum += R~'Y~`` (k r, m k r), with ``R~`` the rows ``[R_0 .. R_{k-1}]`` of the
    groups and ``Y~`` their ``[Y_0[0] .. Y_0[k-1] Y_1[0] ..]`` (``m = k (k + 1) / 2``
    directions, ordered as :func:`dlmm.kernels.hessian.direction_pairs`). ``p_re``
    (k, k) and ``trace2`` (m, m) are added in scalars; ``ry_sum`` and ``trace2`` only
    when ``hessian``.

    Returns
    -------
    float
        ``sum log|C|`` over the groups.
    """
    nb, k, r = h.shape[0], h.shape[1], h.shape[2]
    m = k * (k + 1) // 2
    ut = np.zeros((TILE * k, r))
    rt = np.zeros((TILE, k * r))
    yt = np.zeros((TILE, m * k * r) if hessian else (1, 1))
    uu_t = np.empty((r, r))
    rr_t = np.empty((k * r, k * r))
    ry_t = np.empty((k * r, m * k * r) if hessian else (1, 1))
    l00 = chol[0, 0]  # L: any square matrix (a shifted factor U L is not triangular)
    l01 = chol[0, 1] if k == 2 else 0.0
    l10 = chol[1, 0] if k == 2 else 0.0
    l11 = chol[1, 1] if k == 2 else 0.0
    logdet = 0.0
    for i0 in range(0, nb, TILE):
        n = min(TILE, nb - i0)
        ld = 0.0
        s00 = s10 = s11 = 0.0  # sums of P
        w00 = w01 = w02 = w11 = w12 = w22 = 0.0  # sums of tr(E_j P E_k P), j <= k
        for e in range(n):
            i = i0 + e
            if k == 1:
                g00 = g[i, 0, 0]
                a00 = g00 * l00  # G Lambda
                t00 = np.sqrt(l00 * a00 + 1.0)
                ld += np.log(t00)
                q00 = a00 / t00  # T^{-1} Lambda'G
                p00 = g00 - q00 * q00
                s00 += p00
                for c in range(r):
                    h0 = h[i, 0, c]
                    v0 = l00 * h0 / t00
                    x0 = h0 - q00 * v0
                    ut[e, c] = v0
                    rt[e, c] = x0
                    if hessian:
                        yt[e, c] = p00 * x0
                if hessian:
                    w00 += p00 * p00
            else:
                g00, g10, g11 = g[i, 0, 0], g[i, 1, 0], g[i, 1, 1]
                a00 = g00 * l00 + g10 * l10  # G Lambda
                a01 = g00 * l01 + g10 * l11
                a10 = g10 * l00 + g11 * l10
                a11 = g10 * l01 + g11 * l11
                t00 = np.sqrt(l00 * a00 + l10 * a10 + 1.0)  # C = T T'
                t10 = (l01 * a00 + l11 * a10) / t00
                t11 = np.sqrt(l01 * a01 + l11 * a11 + 1.0 - t10 * t10)
                ld += np.log(t00) + np.log(t11)
                q00 = a00 / t00  # Q = T^{-1} Lambda'G, (Lambda'G)[a, x] = (G Lambda)[x, a]
                q01 = a10 / t00
                q10 = (a01 - t10 * q00) / t11
                q11 = (a11 - t10 * q01) / t11
                p00 = g00 - (q00 * q00 + q10 * q10)  # P = G - Q'Q
                p10 = g10 - (q00 * q01 + q10 * q11)
                p11 = g11 - (q01 * q01 + q11 * q11)
                s00 += p00
                s10 += p10
                s11 += p11
                for c in range(r):
                    h0, h1 = h[i, 0, c], h[i, 1, c]
                    v0 = (l00 * h0 + l10 * h1) / t00  # U = T^{-1} Lambda'H
                    v1 = (l01 * h0 + l11 * h1 - t10 * v0) / t11
                    x0 = h0 - (q00 * v0 + q10 * v1)  # R = H - Q'U
                    x1 = h1 - (q01 * v0 + q11 * v1)
                    ut[2 * e, c] = v0
                    ut[2 * e + 1, c] = v1
                    rt[e, c] = x0
                    rt[e, r + c] = x1
                    if hessian:  # Y_0 = P E_00 R, Y_1 = P (E_10 + E_01) R, Y_2 = P E_11 R
                        yt[e, c] = p00 * x0
                        yt[e, r + c] = p10 * x0
                        yt[e, 2 * r + c] = p10 * x0 + p00 * x1
                        yt[e, 3 * r + c] = p11 * x0 + p10 * x1
                        yt[e, 4 * r + c] = p10 * x1
                        yt[e, 5 * r + c] = p11 * x1
                if hessian:
                    w00 += p00 * p00
                    w01 += 2.0 * p00 * p10
                    w02 += p10 * p10
                    w11 += 2.0 * (p00 * p11 + p10 * p10)
                    w12 += 2.0 * p10 * p11
                    w22 += p11 * p11
        if n < TILE:  # the last tile: rows of no group add nothing
            ut[n * k:] = 0.0
            rt[n:] = 0.0
            if hessian:
                yt[n:] = 0.0
        logdet += 2.0 * ld
        np.dot(ut.T, ut, uu_t)
        uu += uu_t
        np.dot(rt.T, rt, rr_t)
        rr_sum += rr_t
        p_re[0, 0] += s00
        if k == 2:
            p_re[1, 0] += s10
            p_re[0, 1] += s10
            p_re[1, 1] += s11
        if hessian:
            np.dot(rt.T, yt, ry_t)
            ry_sum += ry_t
            trace2[0, 0] += w00
            if k == 2:
                trace2[0, 1] += w01
                trace2[0, 2] += w02
                trace2[1, 1] += w11
                trace2[1, 2] += w12
                trace2[2, 2] += w22
    return logdet
