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
