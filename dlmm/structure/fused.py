"""The grouped engine's one pass over a chunk of a plain model: columns to sums.

Where the model is made of plain columns (:mod:`dlmm.spec.plain_columns`) a chunk's
keyed cross-products are formed straight from its columns by one compiled loop
(:func:`dlmm.kernels.crossprod.fused_crossproducts`): no design matrix, no centred
copy, no sparse indicator products. The group labels are read in runs of equal
labels: data written group by group (the usual case) have one run per group, in
label order, and need neither a hash nor a sort; otherwise the runs' labels are
factorized (sorted, as the formula path does) and the loop adds each run into its
group. The numbers are those of the formula path (:func:`.grouped.design_crossproducts`)
up to rounding: the same rows left out and counted, the same centring, sums in row
order within each group, the same errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..kernels.block import KeyedCrossProducts
from ..kernels.crossprod import fused_crossproducts
from ..kernels.pieces import RowTotals
from ..spec.checks import check_magnitude
from ..spec.plain_columns import chunk_columns, plain_layout


def _changes(values: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Where a row's label differs from the one before (``values[1:] != values[:-1]``),
    a left-out row being a run of its own; a missing label compares as ``None``."""
    if values.dtype.kind == "O" and bad.any():
        values = values.copy()
        values[bad] = None
    change = np.asarray(values[1:] != values[:-1], dtype=bool)
    return change | bad[1:] | bad[:-1]


def group_runs(groups: np.ndarray | None, bad: np.ndarray | None, n: int):
    """Runs of equal group labels: ``labels`` (the distinct labels of the usable runs,
    sorted; codes index them), ``seg_start`` (runs + 1,), ``seg_code`` (runs,; -1 for
    a left-out row) and whether each label has one run.

    Labels already in increasing order (data written group by group) are taken as
    they are, in O(n); others are factorized by run (``pandas.factorize``, sorted).
    """
    if groups is None:  # every row in one group
        return (np.zeros(min(n, 1), dtype=np.int64), np.array([0, n], dtype=np.int64),
                np.zeros(1, dtype=np.int64), True)
    if n == 0:
        labels = np.asarray(pd.factorize(pd.Series(groups), sort=True)[1])
        return labels, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), True
    if groups.dtype.kind in "iuf":  # numbers: one compiled pass
        from ..kernels.crossprod_loops import number_runs

        seg_start = number_runs(groups, bad)
    else:
        try:
            change = _changes(groups, bad)
        except (TypeError, ValueError):  # labels that do not compare: by their codes
            codes = pd.factorize(pd.Series(groups))[0]
            change = _changes(codes, bad)
        seg_start = np.concatenate([[0], np.flatnonzero(change) + 1, [n]]).astype(np.int64)
    first = seg_start[:-1]
    run_labels = groups[first]
    good = ~bad[first]
    labels = run_labels[good]
    try:
        ordered = bool(np.all(labels[1:] > labels[:-1]))
    except TypeError:
        ordered = False
    seg_code = np.full(first.shape[0], -1, dtype=np.int64)
    if ordered:
        seg_code[good] = np.arange(labels.shape[0])
        return labels, seg_start, seg_code, True
    codes, labels = pd.factorize(pd.Series(labels), sort=True)
    seg_code[good] = codes
    return np.asarray(labels), seg_start, seg_code, codes.shape[0] == labels.shape[0]


def fused_chunk(frame: pd.DataFrame, spec) -> tuple[KeyedCrossProducts, RowTotals] | None:
    """The chunk's keyed cross-products and row totals by the fused pass, or None where
    it does not apply (the model or the chunk's column types are not plain)."""
    layout = plain_layout(spec)
    if layout is None:
        return None
    cols = chunk_columns(frame, layout)
    if cols is None:
        return None
    n = len(frame)
    labels, seg_start, seg_code, grouped = group_runs(cols.groups, cols.group_bad, n)
    centering = spec.centering
    sums = fused_crossproducts(
        cols.values, layout.xy_src, layout.z_src,
        (centering.xy_shift, centering.xy_scale, centering.z_shift, centering.z_scale),
        seg_start, seg_code, labels.shape[0], cols.vc_codes, layout.offsets,
        layout.n_slots, grouped, layout.weights_src)
    if sums.n_used:
        def peaks(src):
            return np.array([1.0 if j < 0 else sums.peak[j] for j in src])[None, :]

        check_magnitude(peaks(layout.xy_src), peaks(layout.z_src), None, layout.names)
    missing, infinite = cols.missing.copy(), cols.infinite.copy()
    for j, column in enumerate(layout.sources):
        where = layout.columns.index(column)
        missing[where], infinite[where] = sums.missing[j], sums.infinite[j]
    if labels.dtype.kind == "U":
        labels = labels.astype(object)
    keyed = KeyedCrossProducts(labels, sums.cp)
    if not np.all(sums.cp.n > 0):  # labels whose rows were all left out
        keyed = keyed.select(sums.cp.n > 0)
    totals = RowTotals(
        xy_cross=sums.xy_cross,
        n_rows=float(sums.n_used),
        n_dropped=float(n - sums.n_used - sums.bad_weights),
        missing_by_column=missing,
        infinite_by_column=infinite,
        z_cross=sums.z_cross,
        log_weights=sums.log_weights,
        bad_weights=float(sums.bad_weights),
    )
    return keyed, totals
