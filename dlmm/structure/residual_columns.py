"""The AR(1) one pass over a chunk of a plain model: columns to components, no design.

Where the model is made of plain columns (:mod:`dlmm.spec.plain_columns`: ``y ~ x``,
random effects ``~x``, weights a column) a chunk's AR(1) components are formed straight
from its columns (:func:`columns_ar1_chunk`), as the fused pass forms the grouped
engine's sums (:mod:`.fused`): the group labels read in runs (:func:`.fused.group_runs`),
the stratum column's codes taken from its Arrow buffers where it is text of few values
(:func:`strata_codes`), then one compiled read of every row
(:func:`dlmm.kernels.ar1_columns.ar1_read_loop`) that counts and leaves out what the
formula path would and, while the usable rows come in (group, time) order (data written
group by group), centres, weights and sums them into the components; rows that do not
come in that order are sorted and summed by a second loop. The numbers are those of the formula path
(:func:`.residual_chunk.residual_chunk` through the design) up to rounding: the same
rows left out and counted, the same centring, the same components, loose rows and
errors. A chunk or a model this path does not take (a time column that is not plain
integers, a stratum column of another type, a column with two roles) goes to the
formula path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputError
from ..kernels.crossprod import _padded
from ..kernels.pieces import RowTotals
from ..spec.checks import check_magnitude
from ..spec.plain_columns import chunk_columns, plain_layout
from .fused import group_runs
from .residual_parts import ComponentChunk, LooseRows, ar1_parts, component_keys

#: Distinct values of a text stratum column read by :func:`text_codes`; beyond it, a
#: hash table (pandas' factorize).
TEXT_LEVELS_MAX = 64


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def text_codes(values: pd.Series) -> tuple[np.ndarray, list] | None:
    """``(codes, levels)`` of a text column held by Arrow (``large_string`` or
    ``string``) of at most :data:`TEXT_LEVELS_MAX` distinct values: ``levels`` sorted,
    ``codes`` (n,) int64 indexing them, -1 where missing -- what ``pandas.factorize(values,
    sort=True)`` gives; None for another column (the caller factorizes)."""
    import pyarrow as pa

    from ..kernels.ar1_columns import text_codes_loop

    chunked = getattr(values.array, "_pa_array", None)
    if not isinstance(chunked, pa.ChunkedArray):
        return None
    kind = chunked.type
    if kind == pa.large_string():
        width = np.int64
    elif kind == pa.string():
        width = np.int32
    else:
        return None
    codes = np.empty(len(values), dtype=np.int64)
    names: dict[str, int] = {}
    maps, at = [], 0
    for chunk in chunked.chunks:
        valid_buf, offsets_buf, data_buf = chunk.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=width)
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None \
            else np.zeros(0, dtype=np.uint8)
        valid = np.frombuffer(valid_buf, dtype=np.uint8) if valid_buf is not None \
            and chunk.null_count else np.zeros(0, dtype=np.uint8)
        starts = np.zeros(TEXT_LEVELS_MAX, dtype=offsets.dtype)
        ends = np.zeros(TEXT_LEVELS_MAX, dtype=offsets.dtype)
        part = codes[at: at + len(chunk)]
        found = text_codes_loop(offsets, data, valid, chunk.offset, part, starts, ends)
        if found < 0:
            return None
        local = [bytes(data[a:b]).decode("utf-8") for a, b in zip(starts[:found], ends[:found])]
        maps.append((at, len(chunk), [names.setdefault(v, len(names)) for v in local]))
        at += len(chunk)
    if len(names) > TEXT_LEVELS_MAX:
        return None
    levels = sorted(names)
    rank = {v: i for i, v in enumerate(levels)}
    by_name = np.array([rank[v] for v in names], dtype=np.int64)
    for start, size, local in maps:  # chunk's own codes -> the sorted levels' codes
        lookup = np.append(by_name[np.asarray(local, dtype=np.int64)], -1) \
            if local else np.array([-1], dtype=np.int64)
        part = codes[start: start + size]
        part[...] = lookup[part]  # -1 (missing) takes the appended last entry
    return codes, levels


def strata_codes(values: pd.Series) -> tuple[np.ndarray, list]:
    """``(codes, levels)`` of a stratum column as ``pandas.factorize(values, sort=True)``
    gives them (levels as plain Python values; -1 where missing), by
    :func:`text_codes` where it applies."""
    fast = text_codes(values)
    if fast is not None:
        return fast
    codes, levels = pd.factorize(values, sort=True)
    return codes.astype(np.int64, copy=False), [_plain(v) for v in levels]


def _int_times(values: pd.Series) -> np.ndarray | None:
    kind = values.dtype
    if isinstance(kind, np.dtype) and kind.kind in "iu":
        return values.to_numpy(dtype=np.int64, copy=False)
    return None


def columns_ar1_chunk(frame: pd.DataFrame, spec):
    """The chunk's :class:`~.residual_parts.ComponentChunk` of an AR(1) model straight
    from its columns, or None where this path does not apply (the formula path then
    reads the chunk)."""
    from ..kernels.ar1_columns import ar1_columns_loop, ar1_read_loop
    from ..kernels.residual_loops import sizes, time_order

    residual = spec.residual
    layout = plain_layout(spec)
    if layout is None or layout.group is None or layout.factors:
        return None
    taken = set(layout.sources) | {layout.group}
    if residual.ar1 in taken or (residual.strata is not None and residual.strata in taken):
        return None
    t = _int_times(frame[residual.ar1])
    if t is None:
        return None
    cols = chunk_columns(frame, layout)
    if cols is None:
        return None
    n_all = len(frame)
    missing, infinite = cols.missing.copy(), cols.infinite.copy()
    ok = np.ones(n_all, dtype=np.uint8)
    if residual.strata is not None:
        s, levels = strata_codes(frame[residual.strata])
        bad_s = s < 0
        if bad_s.any():
            missing[layout.columns.index(residual.strata)] += bad_s.sum()
            ok[bad_s] = 0
    else:
        s, levels = np.zeros(n_all, dtype=np.int64), [None]
    labels, seg_start, seg_code, _ = group_runs(cols.groups, cols.group_bad, n_all)
    g = np.repeat(seg_code, np.diff(seg_start))
    ok[g < 0] = 0
    n_src = len(layout.sources)
    src = _padded(cols.values)[:n_src]  # exactly the sources: the loops compiled for them
    src_missing = np.zeros(n_src, dtype=np.int64)
    src_infinite = np.zeros(n_src, dtype=np.int64)
    peak = np.zeros(n_src)
    wstats = np.zeros(2)
    labels = np.asarray(labels, dtype=object if np.asarray(labels).dtype.kind in "UO"
                        else None)
    keys, lag1_of = component_keys(len(levels))
    centering = spec.centering
    q, r = layout.z_src.shape[0], layout.xy_src.shape[0]
    n_groups = labels.shape[0]
    gz = np.zeros((len(keys), n_groups, q, q))
    hz = np.zeros((len(keys), n_groups, q, r))
    n = np.zeros((len(keys), n_groups))
    kk = np.zeros((len(keys), r, r))
    paired = np.zeros(n_all, dtype=np.uint8)
    shifts = tuple(np.asarray(x, dtype=float) for x in (
        centering.z_shift, centering.z_scale, centering.xy_shift, centering.xy_scale))
    ordered, repeat = ar1_read_loop(src, layout.xy_src, layout.z_src, shifts,
                                    int(layout.weights_src), g, t, s, ok, lag1_of, gz, hz, n,
                                    kk, paired, src_missing, src_infinite, peak, wstats,
                                    *sizes(q, r, n_src))
    for j, column in enumerate(layout.sources):
        where = layout.columns.index(column)
        missing[where], infinite[where] = src_missing[j], src_infinite[j]
    rows = np.flatnonzero(ok)
    if rows.shape[0]:
        def peaks(which):
            return np.array([1.0 if j < 0 else peak[j] for j in which])[None, :]

        check_magnitude(peaks(layout.xy_src), peaks(layout.z_src), None, layout.names)
    if not ordered:  # not written group by group in time order: the rows sorted
        rows = rows[np.lexsort((t[rows], g[rows]))]
        repeat = time_order(g[rows], t[rows])[1]
        repeat = rows[repeat] if repeat >= 0 else -1
    if repeat >= 0:
        raise InputError(f"residual_ar1: group {_plain(labels[g[repeat]])!r} has two rows at time "
                         f"{t[repeat]} in column {residual.ar1!r}")
    if ordered:
        pair = paired[rows[1:]].astype(bool)
    else:
        for a in (gz, hz, n, kk):
            a[...] = 0.0
        pair = np.zeros(max(rows.shape[0] - 1, 0), dtype=bool)
        ar1_columns_loop(src, layout.xy_src, layout.z_src, shifts, int(layout.weights_src),
                         rows, g, t, s, lag1_of, gz, hz, n, kk, pair, *sizes(q, r, n_src))
    kk = np.triu(kk) + np.swapaxes(np.triu(kk, 1), 1, 2)  # the loop sums the upper half
    parts, k, by_stratum = ar1_parts(keys, labels, gz, hz, n, kk)
    n_used = rows.shape[0]
    head = np.concatenate([[True], ~pair])[:n_used]
    tail = np.concatenate([~pair, [True]])[:n_used]
    loose = np.flatnonzero(head | tail)
    at = rows[loose]

    def design_of(which):
        return np.column_stack([np.ones(at.shape[0]) if j < 0 else cols.values[j][at]
                                for j in which]) if len(which) else np.zeros((at.shape[0], 0))

    xy_loose, z_loose = centering.apply(design_of(layout.xy_src), design_of(layout.z_src))
    sw = np.ones(at.shape[0]) if layout.weights_src < 0 \
        else np.sqrt(cols.values[layout.weights_src][at])
    s_loose = s[at]
    if residual.strata is not None:
        levels, parts, k, by_stratum, s_loose = _present_levels(levels, parts, k, by_stratum,
                                                                s_loose)
    lag0 = [k[key] for key in k if key[0] == "lag0"]
    totals = RowTotals(
        xy_cross=sum(lag0) if lag0 else np.zeros((r, r)),
        n_rows=float(n_used), n_dropped=float(n_all - n_used - wstats[1]),
        missing_by_column=missing, infinite_by_column=infinite,
        z_cross=sum(parts[key].cp.zz.sum(axis=0) for key in parts if key[0] == "lag0")
        if lag0 else np.zeros((q, q)),
        log_weights=float(wstats[0]), bad_weights=float(wstats[1]))
    return ComponentChunk(levels, parts, k, by_stratum, totals, 0, LooseRows(
        labels[g[at]], t[at], s_loose, head[loose], tail[loose], z_loose * sw[:, None],
        xy_loose * sw[:, None]))


def _present_levels(levels, parts, k, by_stratum, s_loose):
    """The chunk's strata renumbered to those with usable rows (a level seen only on
    rows left out is not one of the chunk's, as the formula path finds them)."""
    present = np.array([code in by_stratum for code in range(len(levels))], dtype=bool)
    if present.all():
        return levels, parts, k, by_stratum, s_loose
    new = np.cumsum(present) - 1

    def key_of(key):
        return (key[0], int(new[key[1]]), int(new[key[2]]))

    return ([v for v, p in zip(levels, present) if p],
            {key_of(key): v for key, v in parts.items()},
            {key_of(key): v for key, v in k.items()},
            {int(new[code]): v for code, v in by_stratum.items()},
            new[s_loose])
