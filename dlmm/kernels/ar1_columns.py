"""Compiled loops (numba) of the AR(1) one pass over a chunk of plain columns.

Where the model is made of plain columns (:mod:`dlmm.spec.plain_columns`) a chunk's
AR(1) components are formed from its columns as they are read, with no design matrix
(:mod:`dlmm.structure.residual_columns`), in one or two loops:

* :func:`ar1_read_loop` reads every row once: it counts the missing and infinite
  values of each source column, marks the usable rows (``ok``), keeps each source's
  largest magnitude over them, sums ``log w`` and counts the rows left out for a weight
  ``<= 0``, and, while the usable rows come in (group, time) order (data written group
  by group, the usual case), centres, weights and adds each into the components as
  :func:`dlmm.kernels.residual_loops.ar1_sums_loop` does from a design;
* :func:`ar1_columns_loop` does the adding over the usable rows sorted by (group,
  time), where they did not come in that order.

:func:`text_codes_loop` gives the codes of a text column of few distinct values from its
Arrow buffers (offsets and bytes) in one pass, without a hash table.

Compiled once per machine (``cache=True``), imported only when first used; serial, the
GIL released. The source columns come as the fused pass's padded tuple
(:func:`dlmm.kernels.crossprod._padded`).
"""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.tuple import tuple_setitem


@numba.njit(cache=True, nogil=True, inline="always")
def _row(values, src, shift, inv, w, out):  # pragma: no cover - compiled
    """``out`` (a tuple as long as the design) with a row's design columns: column ``a``
    source ``src[a]`` of the tuple ``values`` (-1: the intercept, 1), centred
    (``(value - shift[a]) * inv[a]``) and times ``w``; a tuple, held in registers."""
    for a in range(len(out)):
        c = src[a]
        out = tuple_setitem(out, a, ((values[c] if c >= 0 else 1.0) - shift[a]) * inv[a] * w)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _add(gz, hz, kk, n, ki, k, z, xy, zp, xyp, pair):  # pragma: no cover - compiled
    """Into entry ``ki`` (component · groups + group) of the flat ``gz`` (C·groups·q·q),
    ``hz`` (C·groups·q·r), ``n`` (C·groups) and component ``k`` of ``kk`` (C·r·r, its
    upper half): the row ``z``, ``xy`` (``z z'``, ``z xy'``, ``xy xy'``) or, with
    ``pair``, the pair of it and the row before, ``zp``, ``xyp`` (``zp z' + z zp'``, ...)."""
    q = len(z)
    r = len(xy)
    n[ki] += 1.0
    bg = ki * (q * q)
    bh = ki * (q * r)
    bk = k * (r * r)
    if pair:
        for a in range(q):
            for e in range(q):
                gz[bg + a * q + e] += zp[a] * z[e] + z[a] * zp[e]
            for e in range(r):
                hz[bh + a * r + e] += zp[a] * xy[e] + z[a] * xyp[e]
        for a in range(r):
            for e in range(a, r):
                kk[bk + a * r + e] += xyp[a] * xy[e] + xy[a] * xyp[e]
    else:
        for a in range(q):
            za = z[a]
            for e in range(q):
                gz[bg + a * q + e] += za * z[e]
            for e in range(r):
                hz[bh + a * r + e] += za * xy[e]
        for a in range(r):
            xa = xy[a]
            for e in range(a, r):
                kk[bk + a * r + e] += xa * xy[e]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def ar1_read_loop(cols, xy_src, z_src, shifts, w_src, g, t, s, ok, lag1_of, gz, hz, n, kk,
                  paired, missing, infinite, peak, wstats, q_len, r_len,
                  src_len):  # pragma: no cover - compiled
    """One read of every row. ``ok`` (n,) (uint8; 0 on entry for a row whose group,
    stratum or time is missing) is cleared where a source is NaN (``missing`` counted)
    or ±inf (``infinite``), and, with weights (source ``w_src`` >= 0), where the weight
    is ``<= 0`` (``wstats[1]`` counts them; ``wstats[0]`` sums ``log w`` of the usable
    rows, compensated); ``peak`` keeps the largest magnitude of each source over the
    rows usable but for their weight. While the usable rows come in (group ``g``, time
    ``t``) order each is added as :func:`ar1_columns_loop` adds it (``paired[j]`` set
    where row ``j`` pairs with the usable row before it). Returns ``(ordered,
    repeat)``: whether the usable rows are in that order (if not, the sums are partial:
    the caller sums the rows sorted by :func:`ar1_columns_loop`) and, so, the first
    usable row whose time repeats the usable row before in its group (-1: none).

    ``cols``: the source columns, a tuple of exactly ``len(src_len)``; ``q_len``,
    ``r_len``, ``src_len``: tuples of zeros as long as ``Z``, ``[X y]`` and the sources
    (:func:`dlmm.kernels.residual_loops.sizes`). Compiled for each model's sizes: a
    row's values, its design columns and the row before are tuples in registers, the
    loops over them unrolled."""
    rows = g.shape[0]
    n_src = len(cols)
    n_groups = gz.shape[1]
    gzf, hzf, nf, kkf = gz.reshape(-1), hz.reshape(-1), n.reshape(-1), kk.reshape(-1)
    z_shift, z_scale, xy_shift, xy_scale = shifts
    z_inv = 1.0 / z_scale
    xy_inv = 1.0 / xy_scale
    z = zp = q_len
    xy = xyp = r_len
    v = src_len
    ordered = True
    repeat = -1
    prev = -1
    log_sum = 0.0
    log_comp = 0.0
    for j in range(rows):
        good = ok[j] == 1
        for c in range(n_src):
            x = cols[c][j]
            v = tuple_setitem(v, c, x)
            if x - x != 0.0:  # NaN or ±inf
                if x != x:
                    missing[c] += 1
                else:
                    infinite[c] += 1
                good = False
        if not good:
            ok[j] = 0
            continue
        for c in range(n_src):
            x = abs(v[c])
            if x > peak[c]:
                peak[c] = x
        w = 1.0
        if w_src >= 0:
            wv = v[w_src]
            if not wv > 0.0:
                wstats[1] += 1.0
                ok[j] = 0
                continue
            lw = np.log(wv)  # Neumaier's compensated sum
            tot = log_sum + lw
            if abs(log_sum) >= abs(lw):
                log_comp += (log_sum - tot) + lw
            else:
                log_comp += (lw - tot) + log_sum
            log_sum = tot
            w = np.sqrt(wv)
        if prev >= 0 and ordered:
            if g[j] < g[prev] or (g[j] == g[prev] and t[j] < t[prev]):
                ordered = False
            elif g[j] == g[prev] and t[j] == t[prev] and repeat < 0:
                repeat = prev
        if not ordered:
            prev = j
            continue
        zp, xyp = z, xy
        z = _row(v, z_src, z_shift, z_inv, w, z)
        xy = _row(v, xy_src, xy_shift, xy_inv, w, xy)
        k = s[j]
        i = g[j]
        _add(gzf, hzf, kkf, nf, k * n_groups + i, k, z, xy, zp, xyp, False)
        if prev >= 0 and g[prev] == i and t[j] == t[prev] + 1:
            paired[j] = 1
            k = lag1_of[s[prev], s[j]]
            _add(gzf, hzf, kkf, nf, k * n_groups + i, k, z, xy, zp, xyp, True)
        prev = j
    wstats[0] += log_sum + log_comp
    return ordered, repeat


@numba.njit(cache=True, nogil=True, error_model="numpy")
def ar1_columns_loop(cols, xy_src, z_src, shifts, w_src, rows, g, t, s, lag1_of, gz, hz,
                     n, kk, pair, q_len, r_len, src_len):  # pragma: no cover - compiled
    """The AR(1) components of the usable ``rows`` (in (group, time) order) read from the
    source columns: design column ``a`` of ``Z`` is source ``z_src[a]`` (-1: the
    intercept, 1), centred ``(value - shift) * (1 / scale)`` (``shifts = (z_shift,
    z_scale, xy_shift, xy_scale)``; the scales are powers of two) and times √w (source
    ``w_src``, -1: none); so for ``[X y]``. Row ``rows[m]`` into component ``s`` of its
    stratum (``lag0``), each pair ``m, m + 1`` of a group at consecutive times into
    ``lag1_of[s_m, s_m+1]`` (``pair[m]`` set); ``gz`` (C, groups, q, q), ``hz`` (C,
    groups, q, r), ``n`` (C, groups) counts, ``kk`` (C, r, r) (upper triangle). ``cols``,
    ``q_len``, ``r_len``, ``src_len`` as :func:`ar1_read_loop` takes them."""
    n_src = len(cols)
    n_groups = gz.shape[1]
    gzf, hzf, nf, kkf = gz.reshape(-1), hz.reshape(-1), n.reshape(-1), kk.reshape(-1)
    z_shift, z_scale, xy_shift, xy_scale = shifts
    z_inv = 1.0 / z_scale
    xy_inv = 1.0 / xy_scale
    z = zp = q_len
    xy = xyp = r_len
    v = src_len
    for m in range(rows.shape[0]):
        j = rows[m]
        for c in range(n_src):
            v = tuple_setitem(v, c, cols[c][j])
        w = np.sqrt(v[w_src]) if w_src >= 0 else 1.0
        zp, xyp = z, xy
        z = _row(v, z_src, z_shift, z_inv, w, z)
        xy = _row(v, xy_src, xy_shift, xy_inv, w, xy)
        k = s[j]
        i = g[j]
        _add(gzf, hzf, kkf, nf, k * n_groups + i, k, z, xy, zp, xyp, False)
        if m > 0:
            jp = rows[m - 1]
            if g[jp] == i and t[j] == t[jp] + 1:
                pair[m - 1] = True
                k = lag1_of[s[jp], s[j]]
                _add(gzf, hzf, kkf, nf, k * n_groups + i, k, z, xy, zp, xyp, True)


@numba.njit(cache=True, nogil=True)
def _same(data, a0, a1, b0, b1):  # pragma: no cover - compiled
    if a1 - a0 != b1 - b0:
        return False
    for i in range(a1 - a0):
        if data[a0 + i] != data[b0 + i]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _short_key(data, a0, a1):  # pragma: no cover - compiled
    """A value of at most 7 bytes as one integer (its length, then its bytes); -1 for a
    longer one."""
    size = a1 - a0
    if size > 7:
        return np.int64(-1)
    key = np.int64(size)
    for i in range(size):
        key |= np.int64(data[a0 + i]) << (8 * (i + 1))
    return key


#: Slots of the table of short values' codes (:func:`text_codes_loop`), a power of two
#: above twice the most distinct values it takes.
TEXT_SLOTS = 256


@numba.njit(cache=True, nogil=True)
def text_codes_loop(offsets, data, valid, first, codes, starts, ends):  # pragma: no cover
    """Codes of ``codes.shape[0]`` text values of an Arrow array from ``first`` (its
    offset): value ``i`` is ``data[offsets[first + i]:offsets[first + i + 1]]``, missing
    where bit ``first + i`` of ``valid`` is 0 (``valid`` empty: none is); each distinct
    value gets the next code in order of appearance (its bytes ``starts``, ``ends``), a
    missing one -1. A value of at most 7 bytes is one integer (:func:`_short_key`),
    found in a small open-addressing table; a longer one is compared with the longer
    values seen. Returns the number of distinct values, or -1 when there are more than
    ``starts.shape[0]`` (at most ``TEXT_SLOTS // 2``; a hash table of its own is then the
    better tool)."""
    n_levels = 0
    slots = TEXT_SLOTS
    table_key = np.full(slots, -1, dtype=np.int64)
    table_code = np.zeros(slots, dtype=np.int64)
    long_codes = np.empty(starts.shape[0], dtype=np.int64)
    n_long = 0
    check = valid.shape[0] > 0
    for i in range(codes.shape[0]):
        k = first + i
        if check and (valid[k >> 3] >> (k & 7)) & 1 == 0:
            codes[i] = -1
            continue
        a0 = offsets[k]
        a1 = offsets[k + 1]
        key = _short_key(data, a0, a1)
        found = -1
        if key >= 0:
            h = (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(56)
            slot = np.int64(h) & (slots - 1)
            while table_key[slot] >= 0:
                if table_key[slot] == key:
                    found = table_code[slot]
                    break
                slot = (slot + 1) & (slots - 1)
            if found >= 0:
                codes[i] = found
                continue
            if n_levels == starts.shape[0]:
                return -1
            table_key[slot] = key
            table_code[slot] = n_levels
        else:
            for c in range(n_long):
                lv = long_codes[c]
                if _same(data, a0, a1, starts[lv], ends[lv]):
                    found = lv
                    break
            if found >= 0:
                codes[i] = found
                continue
            if n_levels == starts.shape[0]:
                return -1
            long_codes[n_long] = n_levels
            n_long += 1
        starts[n_levels] = a0
        ends[n_levels] = a1
        codes[i] = n_levels
        n_levels += 1
    return n_levels
