"""Rows to per-group cross-products, in one vectorized pass.

For group i with random-effects design ``A_i = [Z_i | W_i]`` and
``R_i = [X_i y_i]`` the fit needs only

    G_i = A_i' A_i,   H_i = A_i' R_i,   K = sum_i R_i' R_i.

The standard columns ``Z`` are dense and shared by every group, so their parts
of ``G_i`` and ``H_i`` come out as stacked arrays indexed by group code. The
variance-component columns ``W`` are sparse and keyed by a global column
("slot") number; their parts come out in coordinate form, keyed by
(group code, slot), so that partial sums from different partitions can be
added by key before a group's own columns are laid out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(eq=False)
class GroupCrossProducts:
    """Per-group cross-products of one chunk of rows.

    Attributes
    ----------
    n : ndarray (g,)
        Rows of each group.
    zz : ndarray (g, k_re, k_re)
        ``Z_i' Z_i``.
    zr : ndarray (g, k_re, r)
        ``Z_i' [X_i y_i]``.
    wz_group, wz_slot : ndarray (m,)
        Keys (group code, component column slot) of the rows below.
    wz : ndarray (m, k_re)
        ``W_i[:, slot]' Z_i``.
    wr : ndarray (m, r)
        ``W_i[:, slot]' [X_i y_i]``.
    ww_group, ww_slot_a, ww_slot_b : ndarray (t,)
        Keys of the nonzero entries of ``W_i' W_i``.
    ww : ndarray (t,)
        ``W_i[:, a]' W_i[:, b]``.
    """

    n: np.ndarray
    zz: np.ndarray
    zr: np.ndarray
    wz_group: np.ndarray
    wz_slot: np.ndarray
    wz: np.ndarray
    wr: np.ndarray
    ww_group: np.ndarray
    ww_slot_a: np.ndarray
    ww_slot_b: np.ndarray
    ww: np.ndarray


def _group_sum(codes: np.ndarray, n_groups: int, values: np.ndarray) -> np.ndarray:
    """``out[g] = sum of values[rows with codes == g]`` for a 2-d ``values``."""
    n = codes.shape[0]
    indicator = sp.csc_array((np.ones(n), codes, np.arange(n + 1)), shape=(n_groups, n))
    return np.asarray(indicator @ values)


def _sum_by_key(keys: np.ndarray, values: np.ndarray):
    """Unique keys and the column sums of ``values`` (2-d) over equal keys."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    out = np.zeros((uniq.shape[0], values.shape[1]))
    for j in range(values.shape[1]):  # loop over value columns
        out[:, j] = np.bincount(inverse, weights=values[:, j], minlength=uniq.shape[0])
    return uniq, out


def group_crossproducts(
    codes: np.ndarray,
    n_groups: int,
    z: np.ndarray,
    xy: np.ndarray,
    w: sp.csr_array | None = None,
) -> GroupCrossProducts:
    """Per-group cross-products ``Z'Z``, ``Z'[X y]``, ``W'Z``, ``W'[X y]``, ``W'W``.

    Parameters
    ----------
    codes : ndarray of int (n,)
        Group code of each row, in ``0 .. n_groups - 1``.
    n_groups : int
        Number of groups in this chunk.
    z : ndarray (n, k_re)
        Standard random-effects design.
    xy : ndarray (n, r)
        Fixed-effects design followed by the response as the last column.
        (C-ordered arrays avoid a copy.)
    w : sparse array (n, L), optional
        Variance-component design with global column slots.

    Returns
    -------
    GroupCrossProducts
    """
    codes = np.asarray(codes, dtype=np.int64)
    n_rows, k_re = z.shape
    r = xy.shape[1]
    counts = np.bincount(codes, minlength=n_groups).astype(float)

    # Z'Z and Z'[X y]: per Z column a, a sparse (groups x rows) matrix holding
    # z_a at (group, row), times [Z X y]; no (rows x k^2) product is formed.
    if k_re:
        zz = np.empty((n_groups, k_re, k_re))
        zr = np.empty((n_groups, k_re, r))
        indptr = np.arange(n_rows + 1)  # one entry per row: no sorting to build it
        z_c = np.ascontiguousarray(z)
        xy_c = np.ascontiguousarray(xy)
        for a in range(k_re):  # loop over random-effect columns
            weighted = sp.csc_array((z_c[:, a], codes, indptr), shape=(n_groups, n_rows))
            zz[:, a, :] = weighted @ z_c
            zr[:, a, :] = weighted @ xy_c
    else:
        zz = np.zeros((n_groups, 0, 0))
        zr = np.zeros((n_groups, 0, r))

    if w is None or w.nnz == 0:
        empty_i = np.zeros(0, dtype=np.int64)
        return GroupCrossProducts(
            counts, zz, zr, empty_i, empty_i, np.zeros((0, k_re)), np.zeros((0, r)),
            empty_i, empty_i, empty_i, np.zeros(0),
        )

    w = sp.csr_array(w)
    w.sum_duplicates()
    n_slots = w.shape[1]
    entry_row = np.repeat(np.arange(n_rows), np.diff(w.indptr))
    entry_slot = w.indices.astype(np.int64)
    entry_val = w.data.astype(float)
    entry_group = codes[entry_row]

    # W'Z and W'[X y], keyed by (group, slot).
    key = entry_group * n_slots + entry_slot
    vals = entry_val[:, None] * np.concatenate([z[entry_row], xy[entry_row]], axis=1)
    uniq, summed = _sum_by_key(key, vals)
    wz_group, wz_slot = np.divmod(uniq, n_slots)

    # W'W: every pair of nonzero entries that share a row.
    row_nnz = np.diff(w.indptr)
    per_entry = row_nnz[entry_row]
    left = np.repeat(np.arange(entry_row.shape[0]), per_entry)
    start = w.indptr[entry_row][left] if left.size else left
    first_of_run = np.concatenate([[0], np.cumsum(per_entry)[:-1]])
    right = start + (np.arange(left.shape[0]) - np.repeat(first_of_run, per_entry))
    pair_key = (entry_group[left] * n_slots + entry_slot[left]) * n_slots + entry_slot[right]
    pair_val = (entry_val[left] * entry_val[right])[:, None]
    pair_uniq, pair_sum = _sum_by_key(pair_key, pair_val)
    group_slot, slot_b = np.divmod(pair_uniq, n_slots)
    ww_group, slot_a = np.divmod(group_slot, n_slots)

    return GroupCrossProducts(
        counts, zz, zr,
        wz_group, wz_slot, summed[:, :k_re], summed[:, k_re:],
        ww_group, slot_a, slot_b, pair_sum[:, 0],
    )


def row_crossproduct(xy: np.ndarray) -> np.ndarray:
    """``K = [X y]' [X y]`` summed over rows."""
    return xy.T @ xy


@dataclass(eq=False)
class FusedSums:
    """What :func:`fused_crossproducts` makes of a chunk's columns.

    Attributes
    ----------
    cp : GroupCrossProducts
        Per-group cross-products of the centred design (codes as given; a code
        without usable rows has ``n == 0``).
    xy_cross : ndarray (r, r)
        ``[X y]'[X y]`` over the usable rows (centred).
    z_cross : ndarray (k_re, k_re)
        ``Z'Z`` over the usable rows (centred).
    peak : ndarray (n_src,)
        Largest magnitude of each source column over the usable rows (raw values).
    missing, infinite : ndarray (n_src,)
        Rows with a NaN, and with +-inf, per source column (over every row).
    n_used : int
        Usable rows.
    log_weights : float
        Σ log w over the usable rows, with precision weights.
    bad_weights : int
        Rows left out for a zero or negative weight.
    """

    cp: GroupCrossProducts
    xy_cross: np.ndarray
    z_cross: np.ndarray
    peak: np.ndarray
    missing: np.ndarray
    infinite: np.ndarray
    n_used: int
    log_weights: float = 0.0
    bad_weights: int = 0


_IDENTITY = np.full(1, -1, dtype=np.int64)


def _mirror(upper: np.ndarray) -> np.ndarray:
    """A stack of (or one) square matrices with the strict lower triangle copied from
    the upper one."""
    k = upper.shape[-1]
    rows, cols = np.tril_indices(k, -1)
    upper[..., rows, cols] = upper[..., cols, rows]
    return upper


#: The loop takes the columns as a tuple of this many arrays (or a multiple of it),
#: padded with the first: one compiled specialization serves every model of up to
#: this many source columns.
COLUMNS_PER_TUPLE = 8


def _padded(columns: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The columns, read-only, C-contiguous float64, padded to a multiple of
    :data:`COLUMNS_PER_TUPLE`."""
    def readonly(a):
        a = np.ascontiguousarray(a, dtype=np.float64)
        if a.flags.writeable:
            a = a.view()
            a.flags.writeable = False
        return a

    cols = [readonly(a) for a in columns]
    fill = -len(cols) % COLUMNS_PER_TUPLE if cols else COLUMNS_PER_TUPLE
    return tuple(cols + [cols[0] if cols else np.zeros(0)] * fill)


def fused_crossproducts(
    columns: tuple[np.ndarray, ...],
    xy_src: np.ndarray,
    z_src: np.ndarray,
    shifts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    seg_start: np.ndarray,
    seg_code: np.ndarray,
    n_groups: int,
    vc_codes: np.ndarray | None = None,
    vc_offset: np.ndarray | None = None,
    n_slots: int = 0,
    grouped: bool = True,
    weights_src: int = -1,
) -> FusedSums:
    """Per-group cross-products straight from the columns, in one compiled loop.

    The same numbers as :func:`group_crossproducts` on the centred design of the
    usable rows (sums in row order within each group), without forming the design:
    each row is read once, checked, centred and added into its group.

    Parameters
    ----------
    columns : tuple of ndarray (n,)
        Source columns, float64 (NaN for a missing value).
    xy_src, z_src : ndarray of int (r,), (k_re,)
        Source column of each column of ``[X y]`` and of ``Z``; -1 for an intercept.
    shifts : tuple
        ``(xy_shift, xy_scale, z_shift, z_scale)``: design column ``a`` is
        ``(value - shift[a]) / scale[a]`` (see :mod:`dlmm.spec.centering`).
    seg_start : ndarray of int (s + 1,)
        Rows ``seg_start[j]:seg_start[j+1]`` form a run of one group label ...
    seg_code : ndarray of int (s,)
        ... whose group code is ``seg_code[j]`` (-1: the label is missing; such rows
        are counted, not used). A code may have several runs.
    n_groups : int
        Number of codes.
    vc_codes : ndarray of int (K, n), optional
        Level code of each row in each variance component (-1: a level the fit did not
        see, a row of zeros; -2: missing, the row is not used).
    vc_offset : ndarray of int (K,), optional
        Global slot of each component's first column.
    n_slots : int
        Global component columns.
    grouped : bool
        Whether no code has two runs; components need the rows of a group together,
        so otherwise they are ordered by code first (a counting sort, stable).
    weights_src : int
        Source column of precision weights (-1: none): each usable row's centred
        values times √w (components' ``W'W`` sums w), a row with w <= 0 left out and
        counted.

    Returns
    -------
    FusedSums
    """
    from .crossprod_loops import component_loop, fused_loop, order_by_code

    xy_src = np.asarray(xy_src, dtype=np.int64)
    z_src = np.asarray(z_src, dtype=np.int64)
    r, k = xy_src.shape[0], z_src.shape[0]
    n_rows = int(seg_start[-1]) if len(seg_start) else 0
    if vc_codes is None or vc_codes.shape[0] == 0:
        vc_codes = np.zeros((0, 1), dtype=np.int64)
        vc_offset = np.zeros(0, dtype=np.int64)
    vc_codes = np.ascontiguousarray(vc_codes, dtype=np.int64)
    vc_offset = np.asarray(vc_offset, dtype=np.int64)
    seg_start = np.asarray(seg_start, dtype=np.int64)
    seg_code = np.asarray(seg_code, dtype=np.int64)
    with_components = bool(vc_codes.shape[0]) and n_rows > 0
    wstats = np.zeros(2)  # sum log w, rows with w <= 0
    order = _IDENTITY
    if with_components and not grouped:
        order, seg_start, seg_code = order_by_code(seg_start, seg_code, n_groups)
    n_src = len(columns)
    n = np.zeros(n_groups)
    zz = np.zeros((n_groups, k, k))
    zr = np.zeros((n_groups, k, r))
    kk = np.zeros((r, r))
    zc = np.zeros((k, k))
    peak = np.zeros(n_src)
    missing = np.zeros(n_src, dtype=np.int64)
    infinite = np.zeros(n_src, dtype=np.int64)
    wz_key, ww_key = np.zeros((0, 2), dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    wz, wr, ww = np.zeros((0, k)), np.zeros((0, r)), np.zeros(0)
    if n_rows:
        shifts = tuple(np.ascontiguousarray(a, dtype=float) for a in shifts)
        cols = _padded(columns)
        used = np.zeros(n_rows if with_components else 0, dtype=np.bool_)
        fused_loop(cols, n_src, xy_src, z_src, *shifts, order, seg_start, seg_code, vc_codes,
                   n, zz, zr, kk, zc, peak, missing, infinite, used, int(weights_src), wstats)
        if with_components:
            wz_key, wz, wr, ww_key, ww = component_loop(
                cols, n_src, xy_src, z_src, *shifts, order, seg_start, seg_code, used,
                vc_codes, vc_offset, int(n_slots), int(weights_src))
    cp = GroupCrossProducts(
        n, _mirror(zz), zr, np.ascontiguousarray(wz_key[:, 0]),
        np.ascontiguousarray(wz_key[:, 1]), np.ascontiguousarray(wz),
        np.ascontiguousarray(wr), np.ascontiguousarray(ww_key[:, 0]),
        np.ascontiguousarray(ww_key[:, 1]), np.ascontiguousarray(ww_key[:, 2]),
        np.ascontiguousarray(ww))
    return FusedSums(cp, _mirror(kk), _mirror(zc), peak, missing.astype(float),
                     infinite.astype(float), int(n.sum()), float(wstats[0]), int(wstats[1]))
