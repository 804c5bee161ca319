"""Lay out complete per-group cross-products as stacked, padded arrays.

A group's random-effects columns are its ``k_re`` standard columns followed,
for each variance component k, by the component columns the group uses
(its "slots", in increasing global order). Groups are batched by the number
of columns of each component, rounded up to a coarse grid so that a few
batches cover any mix of group shapes; the padding columns are zero, and a
zero column of ``A_i`` changes neither the likelihood nor its derivatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .crossprod import GroupCrossProducts

_GRID = np.array(
    [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
)


def padded_width(m: np.ndarray) -> np.ndarray:
    """Round column counts up to the batching grid (exact above 1024)."""
    m = np.asarray(m, dtype=np.int64)
    idx = np.searchsorted(_GRID, np.minimum(m, _GRID[-1]))
    return np.where(m > _GRID[-1], m, _GRID[np.minimum(idx, _GRID.size - 1)])


@dataclass(eq=False)
class GroupBatch:
    """Groups with the same (padded) random-effects layout.

    Attributes
    ----------
    index : ndarray (b,)
        Positions of these groups in the block's group list.
    g : ndarray (b, q, q)
        ``A_i' A_i``.
    h : ndarray (b, q, r)
        ``A_i' [X_i y_i]``.
    k_re : int
        Standard random-effect columns (the first ``k_re`` of q).
    widths : ndarray (k_vc,)
        Columns of each variance component, in order after the standard ones.
    slots : ndarray (b, q - k_re)
        Global component column of each component position, -1 for padding.
    """

    index: np.ndarray
    g: np.ndarray
    h: np.ndarray
    k_re: int
    widths: np.ndarray
    slots: np.ndarray

    @property
    def q(self) -> int:
        return self.g.shape[1]

    @cached_property
    def g_by_entry(self) -> np.ndarray:
        """``g`` laid out (q, q, b): each matrix entry contiguous over the groups."""
        return np.ascontiguousarray(np.moveaxis(self.g, 0, -1))

    @cached_property
    def h_by_entry(self) -> np.ndarray:
        """``h`` laid out (q, r, b)."""
        return np.ascontiguousarray(np.moveaxis(self.h, 0, -1))

    @cached_property
    def g_sum(self) -> np.ndarray:
        """``sum_i G_i`` over the batch (q, q)."""
        return self.g.sum(axis=0)


def stack_groups(
    cp: GroupCrossProducts, n_groups: int, slot_component: np.ndarray
) -> list[GroupBatch]:
    """Stack complete per-group cross-products into batches.

    Parameters
    ----------
    cp : GroupCrossProducts
        Cross-products of whole groups (codes ``0 .. n_groups - 1``).
    n_groups : int
        Number of groups.
    slot_component : ndarray of int (L,)
        Variance component of each global component column; non-decreasing
        (the columns of component 0, then of component 1, ...), as the
        specifications lay them out.

    Returns
    -------
    list of GroupBatch
    """
    k_re = cp.zz.shape[1]
    r = cp.zr.shape[2]
    k_vc = int(slot_component.max()) + 1 if slot_component.size else 0
    n_slots = slot_component.shape[0]
    if k_vc == 0:  # one layout: the stacked products as they are, not copied
        if n_groups == 0:
            return []
        return [GroupBatch(np.arange(n_groups), np.ascontiguousarray(cp.zz, dtype=float),
                           np.ascontiguousarray(cp.zr, dtype=float), k_re,
                           np.zeros(0, dtype=np.int64),
                           np.full((n_groups, 0), -1, dtype=np.int64))]

    # Rank of each used slot within its (group, component).
    comp = slot_component[cp.wz_slot] if cp.wz_slot.size else cp.wz_slot
    order = np.lexsort((cp.wz_slot, comp, cp.wz_group))
    grp_s, comp_s, slot_s = cp.wz_group[order], comp[order], cp.wz_slot[order]
    run_key = grp_s * max(k_vc, 1) + comp_s
    new_run = np.concatenate([[True], run_key[1:] != run_key[:-1]]) if run_key.size else run_key
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(run_key.size), 0))
    rank = np.arange(run_key.size) - run_start
    counts = np.zeros((n_groups, k_vc), dtype=np.int64)
    np.add.at(counts, (grp_s, comp_s), 1)
    widths = padded_width(counts)

    # Batch groups by their padded widths.
    if k_vc:
        sig, batch_of_group = np.unique(widths, axis=0, return_inverse=True)
        batch_of_group = batch_of_group.reshape(-1)
    else:
        sig = np.zeros((1, 0), dtype=np.int64)
        batch_of_group = np.zeros(n_groups, dtype=np.int64)

    # Sorted lookup from (group, slot) to the entry's position in `order`.
    sorted_key = grp_s * n_slots + slot_s
    batches = []
    for b, wvec in enumerate(sig):  # loop over a handful of layouts
        members = np.flatnonzero(batch_of_group == b)
        if members.size == 0:
            continue
        offsets = k_re + np.concatenate([[0], np.cumsum(wvec)[:-1]]).astype(np.int64)
        q = k_re + int(wvec.sum())
        nb = members.size
        local = np.full(n_groups, -1, dtype=np.int64)
        local[members] = np.arange(nb)

        g = np.zeros((nb, q, q))
        h = np.zeros((nb, q, r))
        g[:, :k_re, :k_re] = cp.zz[members]
        h[:, :k_re, :] = cp.zr[members]
        slots = np.full((nb, q - k_re), -1, dtype=np.int64)

        if k_vc:
            in_b = local[grp_s] >= 0
            bg = local[grp_s[in_b]]
            pos = offsets[comp_s[in_b]] + rank[in_b]
            src = order[in_b]
            g[bg, pos, :k_re] = cp.wz[src]
            g[bg, :k_re, pos] = cp.wz[src]
            h[bg, pos, :] = cp.wr[src]
            slots[bg, pos - k_re] = slot_s[in_b]

            in_pair = local[cp.ww_group] >= 0
            pg = cp.ww_group[in_pair]
            pos_of = offsets[comp_s] + rank  # position of each sorted entry
            ia = np.searchsorted(sorted_key, pg * n_slots + cp.ww_slot_a[in_pair])
            ib = np.searchsorted(sorted_key, pg * n_slots + cp.ww_slot_b[in_pair])
            g[local[pg], pos_of[ia], pos_of[ib]] = cp.ww[in_pair]

        batches.append(GroupBatch(members, g, h, k_re, wvec.astype(np.int64), slots))
    return batches
