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


#: Groups per tile of :func:`small_step_loop`: each sum over a tile's groups is one
#: loop over a row of the scratch (small enough that the tile's rows stay in cache).
TILE = 256

# Rows of :func:`small_step_loop`'s scratch, each ``TILE`` long: the tile's ``G``
# entries, ``det C``, ``P``'s entries, then the coefficients of a group's rows ``U_a``
# and ``R_a`` on its rows of ``H`` (``k = 2``: ``U = W H``, ``R = X H``, the 2 x 2
# ``W`` and ``X`` by rows; ``k = 1``: ``w`` and ``x``), then the ``k r`` rows of
# ``U`` and the ``k r`` rows of ``R`` (row ``a r + c``: ``U_a`` or ``R_a`` at column c).
_G00, _G10, _G11, _DET, _P00, _P10, _P11, _CO = 0, 1, 2, 3, 4, 5, 6, 7
_ROWS = _CO + 8

#: The sums over a tile: what reassociating them changes is the order of additions
#: (four groups a time, SIMD), the same in every run of the same machine code.
_SUMS_MATH = {"reassoc", "contract"}


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _tile_coefficients_two(s, n, l00, l01, l10, l11):  # pragma: no cover - compiled
    """Each group's factor for ``k = 2``, in the scratch rows of :func:`small_step_loop`.

    With ``A = G Lambda``, ``C = Lambda'A + I = T T'``, ``Q = T^{-1} A'`` and
    ``P = G - Q'Q``, a group's rows ``U = T^{-1} Lambda'H = W H`` and
    ``R = H - Q'U = (I - Q'W) H`` are linear in its rows of ``H``: ``W`` and
    ``X = I - Q'W`` go to the scratch, with ``det C`` and ``P``. One loop over the
    groups of a flat scratch at fixed offsets: the compiler runs it four groups at a
    time (SIMD).
    """
    for e in range(n):
        g00 = s[_G00 * TILE + e]
        g10 = s[_G10 * TILE + e]
        g11 = s[_G11 * TILE + e]
        a00 = g00 * l00 + g10 * l10
        a01 = g00 * l01 + g10 * l11
        a10 = g10 * l00 + g11 * l10
        a11 = g10 * l01 + g11 * l11
        c00 = l00 * a00 + l10 * a10 + 1.0
        c10 = l01 * a00 + l11 * a10
        c11 = l01 * a01 + l11 * a11 + 1.0
        i00 = 1.0 / np.sqrt(c00)  # 1 / T_00; NaN where C is not positive definite
        t10 = c10 * i00
        d11 = c11 - t10 * t10  # T_11^2
        s[_DET * TILE + e] = c00 * d11
        i11 = 1.0 / np.sqrt(d11)
        q00 = a00 * i00
        q01 = a10 * i00
        q10 = (a01 - t10 * q00) * i11
        q11 = (a11 - t10 * q01) * i11
        s[_P00 * TILE + e] = g00 - (q00 * q00 + q10 * q10)
        s[_P10 * TILE + e] = g10 - (q00 * q01 + q10 * q11)
        s[_P11 * TILE + e] = g11 - (q01 * q01 + q11 * q11)
        w00 = l00 * i00  # W = T^{-1} Lambda'
        w01 = l10 * i00
        w10 = (l01 - t10 * w00) * i11
        w11 = (l11 - t10 * w01) * i11
        s[(_CO + 0) * TILE + e] = w00
        s[(_CO + 1) * TILE + e] = w01
        s[(_CO + 2) * TILE + e] = w10
        s[(_CO + 3) * TILE + e] = w11
        s[(_CO + 4) * TILE + e] = 1.0 - (q00 * w00 + q10 * w10)  # X = I - Q'W
        s[(_CO + 5) * TILE + e] = -(q00 * w01 + q10 * w11)
        s[(_CO + 6) * TILE + e] = -(q01 * w00 + q11 * w10)
        s[(_CO + 7) * TILE + e] = 1.0 - (q01 * w01 + q11 * w11)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _tile_coefficients_one(s, n, l00):  # pragma: no cover - compiled
    """:func:`_tile_coefficients_two` for ``k = 1`` (a random intercept)."""
    for e in range(n):
        g00 = s[_G00 * TILE + e]
        a00 = g00 * l00
        c00 = l00 * a00 + 1.0
        s[_DET * TILE + e] = c00
        i00 = 1.0 / np.sqrt(c00)
        q00 = a00 * i00
        p00 = g00 - q00 * q00
        s[_P00 * TILE + e] = p00
        w00 = l00 * i00
        x00 = 1.0 - q00 * w00
        s[(_CO + 0) * TILE + e] = w00
        s[(_CO + 1) * TILE + e] = x00


@numba.njit(cache=True, nogil=True, fastmath=_SUMS_MATH)
def _tile_gram(s, first, n_rows, n, out):  # pragma: no cover - compiled
    """``out[i, j] += sum_e x_i[e] x_j[e]`` for ``i <= j`` over the scratch rows
    ``x_i = s[(first + i) TILE : ... + n]`` (one side of a symmetric sum)."""
    for i in range(n_rows):
        xi = (first + i) * TILE
        for j in range(i, n_rows):
            xj = (first + j) * TILE
            acc = 0.0
            for e in range(n):
                acc += s[xi + e] * s[xj + e]
            out[i, j] += acc


@numba.njit(cache=True, nogil=True, fastmath=_SUMS_MATH)
def _tile_gram_by_p_one(s, first, n_rows, n, out, out_p):  # pragma: no cover - compiled
    """:func:`_tile_gram` into ``out`` and, weighted by each group's ``P`` (``k = 1``),
    into ``out_p``: ``out_p[0, i, j] += sum_e p_e x_i[e] x_j[e]``."""
    for i in range(n_rows):
        xi = (first + i) * TILE
        for j in range(i, n_rows):
            xj = (first + j) * TILE
            acc = 0.0
            acc0 = 0.0
            for e in range(n):
                x = s[xi + e] * s[xj + e]
                acc += x
                acc0 += x * s[_P00 * TILE + e]
            out[i, j] += acc
            out_p[0, i, j] += acc0


@numba.njit(cache=True, nogil=True, fastmath=_SUMS_MATH)
def _tile_gram_by_p_two(s, first, n_rows, n, out, out_p):  # pragma: no cover - compiled
    """:func:`_tile_gram_by_p_one` for ``k = 2``: weighted by each of ``P``'s entries
    ``P_00``, ``P_10``, ``P_11`` into ``out_p[0]``, ``out_p[1]``, ``out_p[2]``. (Two
    functions, not one with a loop over P's entries: with a fixed number of sums the
    compiler keeps them in registers and runs the loop four groups a time.)"""
    for i in range(n_rows):
        xi = (first + i) * TILE
        for j in range(i, n_rows):
            xj = (first + j) * TILE
            acc = 0.0
            acc0 = 0.0
            acc1 = 0.0
            acc2 = 0.0
            for e in range(n):
                x = s[xi + e] * s[xj + e]
                acc += x
                acc0 += x * s[_P00 * TILE + e]
                acc1 += x * s[_P10 * TILE + e]
                acc2 += x * s[_P11 * TILE + e]
            out[i, j] += acc
            out_p[0, i, j] += acc0
            out_p[1, i, j] += acc1
            out_p[2, i, j] += acc2


@numba.njit(cache=True, nogil=True, error_model="numpy")
def small_step_loop(g, h, chol, hessian, uu, rr_sum, ry_sum, p_re,
                    trace2):  # pragma: no cover - compiled
    """The step of a batch of ``k = 1`` or ``2`` standard random effects and no
    component (a random intercept; an intercept and a slope): most fits.

    The groups go by tiles of ``TILE``. For a tile, one vectorized loop writes each
    group's factor as the coefficients of its rows ``U_a`` and ``R_a`` (``k`` of each,
    of length r) on its rows of ``H`` (:func:`_tile_coefficients_two`); loops over the
    tile's groups, one per column of ``H``, form those rows into the scratch, laid out
    (row, group); then every sum over the tile's groups is one loop over two rows:

        uu     += sum_a U_a U_a'                      (r, r) (= H'MH)
        rr_sum += R~'R~                               (k r, k r)
        S_w    += sum_i P_i[w] R~_i R~_i'  for P's entries w = 00 (10, 11)

    with ``R~`` a group's rows ``[R_0 .. R_{k-1}]`` as one row of length k r, each
    symmetric sum on one side (mirrored at the end). ``ry_sum`` (k r, (2 m - 1) r) is
    ``R~'Y~`` with ``Y~`` the rows ``Y_0[0]`` (``k = 1``), or ``Y_0[0] Y_1[0] Y_1[1]
    Y_2[0] Y_2[1]`` (``k = 2``; ``m = 3`` directions ordered as
    :func:`dlmm.kernels.hessian.direction_pairs`) of ``Y_j = P E_j R``; each is linear
    in ``R`` with coefficients from ``P``, so its sums come from the ``S_w`` at the end:

        Y_0[0] = P_00 R_0             Y_1[0] = P_00 R_1 + P_10 R_0
        Y_1[1] = P_10 R_1 + P_11 R_0  Y_2[0] = P_10 R_1,  Y_2[1] = P_11 R_1

    (``Y_0[1]`` enters only the sums ``R'E_j P E_0 R`` of ``j > 0``, the transposes
    of ``R'E_0 P E_j R``). This is about half the multiplications of products of the
    rows with the ``Y`` rows formed, as the symmetric sums are made on one side.
    ``p_re`` (k, k) and ``trace2`` (m, m) are added in scalars; ``ry_sum`` and
    ``trace2`` only when ``hessian``.

    Returns
    -------
    float
        ``sum log|C|`` over the groups.
    """
    nb, k, r = h.shape[0], h.shape[1], h.shape[2]
    kr = k * r
    u_rows = _ROWS  # first row of U in the scratch, then R
    r_rows = _ROWS + kr
    s = np.zeros((_ROWS + 2 * kr) * TILE)  # see _G00 .. _ROWS
    uu_k = np.zeros((k, r, r))
    rr_up = np.zeros((kr, kr))
    by_p = np.zeros((2 * k - 1, kr, kr))  # S_w: one side
    l00 = chol[0, 0]  # L: any square matrix (a shifted factor U L is not triangular)
    l01 = chol[0, 1] if k == 2 else 0.0
    l10 = chol[1, 0] if k == 2 else 0.0
    l11 = chol[1, 1] if k == 2 else 0.0
    logdet = 0.0
    for i0 in range(0, nb, TILE):
        n = min(TILE, nb - i0)
        for e in range(n):
            s[_G00 * TILE + e] = g[i0 + e, 0, 0]
        if k == 2:
            for e in range(n):
                s[_G10 * TILE + e] = g[i0 + e, 1, 0]
                s[_G11 * TILE + e] = g[i0 + e, 1, 1]
            _tile_coefficients_two(s, n, l00, l01, l10, l11)
        else:
            _tile_coefficients_one(s, n, l00)
        ld = 0.0
        for e in range(n):
            ld += np.log(s[_DET * TILE + e])
        logdet += ld
        s00 = s10 = s11 = 0.0  # sums of P
        w00 = w01 = w02 = w11 = w12 = w22 = 0.0  # sums of tr(E_j P E_k P), j <= k
        for e in range(n):
            p00 = s[_P00 * TILE + e]
            p10 = s[_P10 * TILE + e]
            p11 = s[_P11 * TILE + e]
            s00 += p00
            s10 += p10
            s11 += p11
            w00 += p00 * p00
            w01 += 2.0 * p00 * p10
            w02 += p10 * p10
            w11 += 2.0 * (p00 * p11 + p10 * p10)
            w12 += 2.0 * p10 * p11
            w22 += p11 * p11
        # column c of the rows: U_a to row u_rows + a r + c, R_a to r_rows + a r + c
        for c in range(r):
            u0 = (u_rows + c) * TILE
            x0 = (r_rows + c) * TILE
            if k == 1:
                for e in range(n):
                    h0 = h[i0 + e, 0, c]
                    s[u0 + e] = s[_CO * TILE + e] * h0
                    s[x0 + e] = s[(_CO + 1) * TILE + e] * h0
                continue
            u1 = u0 + r * TILE
            x1 = x0 + r * TILE
            for e in range(n):
                h0 = h[i0 + e, 0, c]
                h1 = h[i0 + e, 1, c]
                s[u0 + e] = s[_CO * TILE + e] * h0 + s[(_CO + 1) * TILE + e] * h1
                s[u1 + e] = s[(_CO + 2) * TILE + e] * h0 + s[(_CO + 3) * TILE + e] * h1
                s[x0 + e] = s[(_CO + 4) * TILE + e] * h0 + s[(_CO + 5) * TILE + e] * h1
                s[x1 + e] = s[(_CO + 6) * TILE + e] * h0 + s[(_CO + 7) * TILE + e] * h1
        for a in range(k):
            _tile_gram(s, u_rows + a * r, r, n, uu_k[a])
        if not hessian:
            _tile_gram(s, r_rows, kr, n, rr_up)
        elif k == 1:
            _tile_gram_by_p_one(s, r_rows, kr, n, rr_up, by_p)
        else:
            _tile_gram_by_p_two(s, r_rows, kr, n, rr_up, by_p)
        p_re[0, 0] += s00
        if k == 2:
            p_re[1, 0] += s10
            p_re[0, 1] += s10
            p_re[1, 1] += s11
        if hessian:
            trace2[0, 0] += w00
            if k == 2:
                trace2[0, 1] += w01
                trace2[0, 2] += w02
                trace2[1, 1] += w11
                trace2[1, 2] += w12
                trace2[2, 2] += w22
    for a in range(k):  # the sums' lower triangles from their upper ones
        for c1 in range(r):
            for c2 in range(r):
                uu[c1, c2] += uu_k[a, min(c1, c2), max(c1, c2)]
    for x in range(kr):
        for y in range(kr):
            rr_sum[x, y] += rr_up[min(x, y), max(x, y)]
    if hessian:  # S_w[x, y] is by_p[w] at (min, max); k = 2: Y~'s blocks (see above)
        for x in range(kr):
            for c in range(r):
                if k == 1:
                    ry_sum[x, c] += by_p[0, min(x, c), max(x, c)]
                    continue
                y0, y1 = c, r + c  # S_w's columns of R_0 and R_1 at column c
                s00 = by_p[0, min(x, y0), max(x, y0)]
                s01 = by_p[0, min(x, y1), max(x, y1)]
                s10 = by_p[1, min(x, y0), max(x, y0)]
                s11 = by_p[1, min(x, y1), max(x, y1)]
                s20 = by_p[2, min(x, y0), max(x, y0)]
                s21 = by_p[2, min(x, y1), max(x, y1)]
                ry_sum[x, c] += s00
                ry_sum[x, r + c] += s01 + s10
                ry_sum[x, 2 * r + c] += s11 + s20
                ry_sum[x, 3 * r + c] += s11
                ry_sum[x, 4 * r + c] += s21
    return logdet
