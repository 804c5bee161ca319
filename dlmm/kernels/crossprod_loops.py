"""Compiled loops (numba) of the fused one pass, for :func:`.crossprod.fused_crossproducts`.

Compiled once per machine (``cache=True``), imported only when the fused pass first
runs, serial, and free of the GIL (a Dask worker's threads read partitions side by
side). The source columns come as a tuple of read-only float64 arrays (pandas' columns
as they are, no copy), padded to a fixed length so that one specialization serves
every model of a few columns.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def order_by_code(seg_start, seg_code, n_codes):  # pragma: no cover
    """Rows grouped by code, stably (a counting sort over the runs): ``order`` (n,),
    and segments ``start`` (n_codes + 2,), ``code`` (n_codes + 1,) -- one per code in
    increasing order, then one of the rows without a code (-1), empty or not."""
    n_runs = seg_code.shape[0]
    n = seg_start[n_runs]
    counts = np.zeros(n_codes + 1, dtype=np.int64)
    for s in range(n_runs):
        c = seg_code[s]
        counts[c if c >= 0 else n_codes] += seg_start[s + 1] - seg_start[s]
    start = np.zeros(n_codes + 2, dtype=np.int64)
    for c in range(n_codes + 1):
        start[c + 1] = start[c] + counts[c]
    fill = start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for s in range(n_runs):
        c = seg_code[s]
        c = c if c >= 0 else n_codes
        for i in range(seg_start[s], seg_start[s + 1]):
            order[fill[c]] = i
            fill[c] += 1
    code = np.empty(n_codes + 1, dtype=np.int64)
    for c in range(n_codes):
        code[c] = c
    code[n_codes] = -1
    return order, start, code


@numba.njit(cache=True, nogil=True)
def _grow2(a, size):  # pragma: no cover
    out = np.empty((max(size, 2 * a.shape[0]), a.shape[1]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


@numba.njit(cache=True, nogil=True)
def _grow1(a, size):  # pragma: no cover
    out = np.empty(max(size, 2 * a.shape[0]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


#: Rows read, checked and centred at a time (a block of scratch that stays in cache).
BLOCK_ROWS = 256


#: Columns of the centred block whose products with a column of ``Z`` a group sums at a
#: time (in as many local scalars, which the compiler keeps in registers); the centred
#: block has rows of zeros after its design columns up to a multiple of it.
LANES = 8


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _add_totals(u, nb, k, q, kk, zc):  # pragma: no cover
    """Add ``Z'Z`` and ``[X y]'[X y]`` (upper triangles) of the block's ``nb`` rows (``u``:
    a row per design column, the first ``q``) into the totals ``zc`` and ``kk``; each
    sum in any order (vectorized)."""
    for a in range(k):
        for b in range(a, k):
            t = 0.0
            for i in range(nb):
                t += u[a, i] * u[b, i]
            zc[a, b] += t
    for a in range(k, q):
        for b in range(a, q):
            t = 0.0
            for i in range(nb):
                t += u[a, i] * u[b, i]
            kk[a - k, b - k] += t


@numba.njit(cache=True, nogil=True)
def _add_row(urow, i, vc_codes, vc_offset, n_slots, pos, loc_slot, loc_sum, n_loc, pairs,
             n_pairs, wi, pair_w):  # pragma: no cover
    """Add row ``i`` (centred: ``urow``) into its component columns (``loc_sum`` at the
    slot's local position ``pos[slot]``, new slots numbered in order of appearance)
    and list each pair of its slots (``pos_a * n_slots + pos_b``), with the row's
    weight ``wi`` in ``pair_w`` when that is not empty (precision weights). Returns the
    slots so far, the pair list, its weights and its length."""
    n_vc = vc_codes.shape[0]
    q = urow.shape[0]
    weighted = pair_w.shape[0] > 0
    if n_pairs + n_vc * n_vc > pairs.shape[0]:
        pairs = _grow1(pairs, n_pairs + n_vc * n_vc)
        if weighted:
            pair_w = _grow1(pair_w, n_pairs + n_vc * n_vc)
    for qa in range(n_vc):
        code = vc_codes[qa, i]
        if code < 0:
            continue
        sl = vc_offset[qa] + code
        p = pos[sl]
        if p < 0:
            p = n_loc
            pos[sl] = p
            loc_slot[p] = sl
            for a in range(q):
                loc_sum[p, a] = 0.0
            n_loc += 1
        for a in range(q):
            loc_sum[p, a] += urow[a]
    for qa in range(n_vc):
        ca = vc_codes[qa, i]
        if ca < 0:
            continue
        pa = pos[vc_offset[qa] + ca]
        for qb in range(n_vc):
            cb = vc_codes[qb, i]
            if cb >= 0:
                pairs[n_pairs] = pa * n_slots + pos[vc_offset[qb] + cb]
                if weighted:
                    pair_w[n_pairs] = wi
                n_pairs += 1
    return n_loc, pairs, pair_w, n_pairs


@numba.njit(cache=True, nogil=True)
def _emit_components(c, n_loc, pos, loc_slot, loc_sum, pairs, n_pairs, n_slots,
                     wz_key, wz_val, m_wz, ww_key, ww_val, m_ww, pair_w):  # pragma: no cover
    """Write group ``c``'s component sums in increasing slot order, and its pairs of
    slots (counted, or their rows' weights summed when ``pair_w`` is not empty) in
    increasing (slot, slot) order; forget its slots."""
    by_slot = np.argsort(loc_slot[:n_loc])
    rank = np.empty(n_loc, dtype=np.int64)
    for e in range(n_loc):
        rank[by_slot[e]] = e
    if m_wz + n_loc > wz_key.shape[0]:
        wz_key = _grow2(wz_key, m_wz + n_loc)
        wz_val = _grow2(wz_val, m_wz + n_loc)
    for e in range(n_loc):
        p = by_slot[e]
        wz_key[m_wz, 0] = c
        wz_key[m_wz, 1] = loc_slot[p]
        for a in range(loc_sum.shape[1]):
            wz_val[m_wz, a] = loc_sum[p, a]
        m_wz += 1
    keys = np.empty(n_pairs, dtype=np.int64)
    for e in range(n_pairs):
        keys[e] = rank[pairs[e] // n_slots] * n_loc + rank[pairs[e] % n_slots]
    weighted = pair_w.shape[0] > 0
    if weighted:
        by_key = np.argsort(keys, kind="mergesort")  # stable: weights added in row order
        keys = keys[by_key]
    else:
        keys.sort()
    if m_ww + n_pairs > ww_key.shape[0]:
        ww_key = _grow2(ww_key, m_ww + n_pairs)
        ww_val = _grow1(ww_val, m_ww + n_pairs)
    e = 0
    while e < n_pairs:
        f = e
        while f < n_pairs and keys[f] == keys[e]:
            f += 1
        ww_key[m_ww, 0] = c
        ww_key[m_ww, 1] = loc_slot[by_slot[keys[e] // n_loc]]
        ww_key[m_ww, 2] = loc_slot[by_slot[keys[e] % n_loc]]
        if weighted:
            total = 0.0
            for t in range(e, f):
                total += pair_w[by_key[t]]
            ww_val[m_ww] = total
        else:
            ww_val[m_ww] = float(f - e)
        m_ww += 1
        e = f
    for e in range(n_loc):
        pos[loc_slot[e]] = -1
    return wz_key, wz_val, m_wz, ww_key, ww_val, m_ww


#: The bits of a float64 but its sign: for numbers that are not NaN, the order of these
#: bits as integers is the order of the magnitudes (a largest magnitude by integer max).
ABS_BITS = 0x7FFFFFFFFFFFFFFF


@numba.njit(cache=True, nogil=True)
def fused_loop(cols, n_src, xy_src, z_src, xy_shift, xy_scale, z_shift, z_scale,
               order, seg_start, seg_code, vc_codes, n, zz, zr, kk, zc, peak, missing,
               infinite, used, w_src, wstats):  # pragma: no cover
    """Read every row once; add each usable row's centred products into its group.

    ``cols[:n_src]`` are the source columns (the rest is padding); column ``a`` of
    ``[X y]`` is source ``xy_src[a]`` (-1: the intercept, 1), centred
    ``(value - shift) / scale``; so for ``Z``. The walk visits the rows ``order``
    (``order[0] == -1``: in their order) in segments (``seg_start``, ``seg_code``),
    :data:`BLOCK_ROWS` at a time: each source is copied into the block, its NaN and
    infinite values counted (``missing``, ``infinite``, over every row), then the
    rows are centred -- a row left out (a segment without a code, -1; a NaN or
    infinite source; a missing component factor, ``vc_codes[j, row] == -2``) is a
    row of zeros. Adds into ``n``, ``zz`` (upper triangle) and ``zr`` at each
    segment's code, and into the totals ``kk`` and ``zc`` (upper triangles of
    ``[X y]'[X y]`` and ``Z'Z``); ``peak`` keeps the largest magnitude of each source
    over the usable rows; ``used`` (unless empty) marks them, for
    :func:`component_loop`. With precision weights (source ``w_src`` >= 0) a usable
    row's centred values are times √w, a row with w <= 0 is left out, and ``wstats``
    adds (Σ log w over the usable rows, rows with w <= 0).

    Written for the compiler's vectorizer: each step of a block is a loop over its rows
    without branches (a row's flag ``ok`` is a byte, NaN and ±inf are found as
    ``x - x != x - x``, the largest magnitude as the integer max of the bits), the
    blocks are counted by index (a loop of stride :data:`BLOCK_ROWS` kept the inner
    loops scalar); a group's products are summed in registers (:data:`LANES`).
    """
    r = xy_src.shape[0]
    k = z_src.shape[0]
    q = k + r
    n_vc = vc_codes.shape[0]
    n_seg = seg_code.shape[0]
    identity = order[0] == -1
    n_rows = seg_start[n_seg]
    src = np.empty(q, dtype=np.int64)
    shift = np.empty(q)
    inv = np.empty(q)  # the scales are powers of two: times 1/scale is the quotient
    for a in range(k):
        src[a], shift[a], inv[a] = z_src[a], z_shift[a], 1.0 / z_scale[a]
    for a in range(r):
        src[k + a], shift[k + a], inv[k + a] = xy_src[a], xy_shift[a], 1.0 / xy_scale[a]
    for a in range(q):
        if src[a] < 0:
            src[a] = n_src
    vals = np.empty((n_src + 1, BLOCK_ROWS))
    vals[n_src, :] = 1.0  # the intercept's source
    bits = vals.view(np.int64)
    top = np.zeros(n_src, dtype=np.int64)  # bits of the largest magnitude so far
    width = -(-q // LANES) * LANES  # q rows, then rows of zeros to a multiple of LANES
    u = np.zeros((width, BLOCK_ROWS))
    acc = np.empty((k, width))
    ok = np.empty(BLOCK_ROWS, dtype=np.uint8)
    n_ok = np.zeros(BLOCK_ROWS + 1, dtype=np.int64)  # usable rows before each row
    sw = np.ones(BLOCK_ROWS)  # sqrt of each row's weight (1 without weights)
    rows = np.empty(BLOCK_ROWS, dtype=np.int64)
    mark = used.shape[0] > 0
    weighted = w_src >= 0
    s = 0
    for block in range((n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS):
        b0 = block * BLOCK_ROWS
        nb = min(BLOCK_ROWS, n_rows - b0)
        for t in range(nb):
            ok[t] = 1
        if not identity:
            for t in range(nb):
                rows[t] = order[b0 + t]
        for e in range(n_vc):
            for t in range(nb):
                if vc_codes[e, b0 + t if identity else rows[t]] == -2:
                    ok[t] = 0
        s2 = s  # rows of segments without a code are left out
        while s2 < n_seg and seg_start[s2] < b0 + nb:
            if seg_code[s2] < 0:
                for t in range(max(seg_start[s2], b0) - b0,
                               min(seg_start[s2 + 1], b0 + nb) - b0):
                    ok[t] = 0
            s2 += 1
        for j in range(n_src):  # copy, count NaN and infinite values, flag their rows
            col = cols[j]
            n_nan = 0
            n_finite = 0
            if identity:
                for t in range(nb):
                    x = col[b0 + t]
                    vals[j, t] = x
                    d = x - x  # NaN for NaN and +-inf, else 0
                    n_nan += np.int64(x != x)
                    finite = np.uint8(d == d)
                    n_finite += np.int64(finite)
                    ok[t] &= finite
            else:
                for t in range(nb):
                    x = col[rows[t]]
                    vals[j, t] = x
                    d = x - x
                    n_nan += np.int64(x != x)
                    finite = np.uint8(d == d)
                    n_finite += np.int64(finite)
                    ok[t] &= finite
            missing[j] += n_nan
            infinite[j] += nb - n_finite - n_nan
        if weighted:
            for t in range(nb):
                if ok[t]:
                    wv = vals[w_src, t]
                    if wv > 0.0:
                        sw[t] = np.sqrt(wv)
                        wstats[0] += np.log(wv)
                    else:
                        ok[t] = 0
                        wstats[1] += 1.0
        for j in range(n_src):  # largest magnitude over the usable rows
            tj = top[j]
            for t in range(nb):
                m = bits[j, t] & ABS_BITS if ok[t] else 0
                tj = max(tj, m)
            top[j] = tj
        if mark:
            for t in range(nb):
                used[b0 + t if identity else rows[t]] = ok[t] != 0
        for t in range(nb):
            n_ok[t + 1] = n_ok[t] + ok[t]
        for a in range(q):
            j = src[a]
            sh = shift[a]
            iv = inv[a]
            if weighted:
                for t in range(nb):
                    x = (vals[j, t] - sh) * iv * sw[t]
                    u[a, t] = x if ok[t] else 0.0
            else:
                for t in range(nb):
                    x = (vals[j, t] - sh) * iv
                    u[a, t] = x if ok[t] else 0.0
        _add_totals(u, nb, k, q, kk, zc)
        # the segments in this block
        while s < n_seg and seg_start[s] < b0 + nb:
            p0 = max(seg_start[s], b0) - b0
            p1 = min(seg_start[s + 1], b0 + nb) - b0
            c = seg_code[s]
            cnt = n_ok[p1] - n_ok[p0]
            if c >= 0 and cnt:
                n[c] += cnt
                # Z'Z (upper triangle) and Z'[X y] of the group's rows here, in row order
                for a in range(k):
                    for lane in range(0, width, LANES):
                        sum0 = sum1 = sum2 = sum3 = sum4 = sum5 = sum6 = sum7 = 0.0
                        for t in range(p0, p1):
                            ua = u[a, t]
                            sum0 += ua * u[lane, t]
                            sum1 += ua * u[lane + 1, t]
                            sum2 += ua * u[lane + 2, t]
                            sum3 += ua * u[lane + 3, t]
                            sum4 += ua * u[lane + 4, t]
                            sum5 += ua * u[lane + 5, t]
                            sum6 += ua * u[lane + 6, t]
                            sum7 += ua * u[lane + 7, t]
                        acc[a, lane] = sum0
                        acc[a, lane + 1] = sum1
                        acc[a, lane + 2] = sum2
                        acc[a, lane + 3] = sum3
                        acc[a, lane + 4] = sum4
                        acc[a, lane + 5] = sum5
                        acc[a, lane + 6] = sum6
                        acc[a, lane + 7] = sum7
                for a in range(k):
                    for b in range(a, k):
                        zz[c, a, b] += acc[a, b]
                    for b in range(k, q):
                        zr[c, a, b - k] += acc[a, b]
            if seg_start[s + 1] > b0 + nb:
                break  # the segment goes on in the next block
            s += 1
    magnitude = top.view(np.float64)
    for j in range(n_src):
        peak[j] = max(peak[j], magnitude[j])


@numba.njit(cache=True, nogil=True)
def component_loop(cols, n_src, xy_src, z_src, xy_shift, xy_scale, z_shift, z_scale,
                   order, seg_start, seg_code, used, vc_codes, vc_offset,
                   n_slots, w_src):  # pragma: no cover
    """The variance components' keyed sums of the rows :func:`fused_loop` used.

    Walks the same segments, each of which must hold whole groups, and adds each used
    row's centred ``[Z | X y]`` into its components' columns. Returns the sums sorted
    by (group, slot) and the pairs of slots that share rows, counted, sorted by
    (group, slot, slot): ``wz_key`` (m, 2), ``wz`` (m, k_re), ``wr`` (m, r),
    ``ww_key`` (t, 3), ``ww`` (t,). Compiled apart: only models with components
    need it. With precision weights (source ``w_src`` >= 0, positive on the used
    rows) a row's indicator and its centred values are each times √w: its values
    enter ``wz`` and ``wr`` times w, and ``ww`` sums w, not rows.
    """
    r = xy_src.shape[0]
    k = z_src.shape[0]
    q = k + r
    n_vc = vc_codes.shape[0]
    identity = order[0] == -1
    src = np.empty(q, dtype=np.int64)
    shift = np.empty(q)
    inv = np.empty(q)
    for a in range(k):
        src[a], shift[a], inv[a] = z_src[a], z_shift[a], 1.0 / z_scale[a]
    for a in range(r):
        src[k + a], shift[k + a], inv[k + a] = xy_src[a], xy_shift[a], 1.0 / xy_scale[a]
    urow = np.empty(q)
    pos = np.full(n_slots, -1, dtype=np.int64)
    loc_slot = np.empty(n_slots, dtype=np.int64)
    loc_sum = np.empty((n_slots, q))
    pairs = np.empty(max(16, n_vc * n_vc), dtype=np.int64)
    pair_w = np.empty(max(16, n_vc * n_vc) if w_src >= 0 else 0)
    cap = max(16, seg_code.shape[0])
    wz_key = np.empty((cap, 2), dtype=np.int64)
    wz_val = np.empty((cap, q))
    ww_key = np.empty((cap, 3), dtype=np.int64)
    ww_val = np.empty(cap)
    m_wz = 0
    m_ww = 0
    for s in range(seg_code.shape[0]):
        c = seg_code[s]
        n_loc = 0
        n_pairs = 0
        for t in range(seg_start[s], seg_start[s + 1]):
            i = t if identity else order[t]
            if c < 0 or not used[i]:
                continue
            # with weights, the indicator is sqrt(w) and so is the row's factor: times w
            wi = 1.0 if w_src < 0 else cols[w_src][i]
            for a in range(q):
                j = src[a]
                urow[a] = ((1.0 if j < 0 else cols[j][i]) - shift[a]) * inv[a] * wi
            n_loc, pairs, pair_w, n_pairs = _add_row(urow, i, vc_codes, vc_offset, n_slots,
                                                     pos, loc_slot, loc_sum, n_loc, pairs,
                                                     n_pairs, wi, pair_w)
        if n_loc:
            wz_key, wz_val, m_wz, ww_key, ww_val, m_ww = _emit_components(
                c, n_loc, pos, loc_slot, loc_sum, pairs, n_pairs, n_slots,
                wz_key, wz_val, m_wz, ww_key, ww_val, m_ww, pair_w)
    return (wz_key[:m_wz], wz_val[:m_wz, :k], wz_val[:m_wz, k:], ww_key[:m_ww],
            ww_val[:m_ww])


@numba.njit(cache=True, nogil=True)
def number_runs(values, bad):  # pragma: no cover
    """Starts of the runs of equal numbers in ``values`` (n,) and the end, ``n``: a row
    starts a run where its value differs from the one before or either is flagged
    ``bad`` (a left-out row is a run of its own), in one pass."""
    n = values.shape[0]
    starts = np.empty(n + 2, dtype=np.int64)
    starts[0] = 0
    m = 1
    for i in range(1, n):
        if values[i] != values[i - 1] or bad[i] or bad[i - 1]:
            starts[m] = i
            m += 1
    starts[m] = n
    return starts[: m + 1].copy()
