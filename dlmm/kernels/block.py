"""Blocks of whole groups: partial cross-products added by key, then stacked.

A chunk of rows may hold only part of a group. Its cross-products are keyed by
group label (and, for variance components, by global column slot), so the
parts of a group from different chunks are added by key. Once every part of
every group of a block is in, the block is laid out as stacked batches
(:func:`dlmm.kernels.layout.stack_groups`) and kept for the whole fit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .crossprod import GroupCrossProducts, _group_sum, _sum_by_key
from .layout import GroupBatch, stack_groups
from .likelihood import batch_pieces
from .pieces import LikelihoodPieces


@dataclass(eq=False)
class KeyedCrossProducts:
    """Cross-products of the groups of a chunk, with their labels.

    ``labels[c]`` is the label of group code ``c`` in ``cp``.
    """

    labels: np.ndarray
    cp: GroupCrossProducts

    def select(self, keep: np.ndarray) -> KeyedCrossProducts:
        """The groups with ``keep[code]`` true, re-coded ``0 .. keep.sum() - 1``."""
        keep = np.asarray(keep, dtype=bool)
        new_code = np.cumsum(keep) - 1
        cp = self.cp
        wz_in = keep[cp.wz_group]
        ww_in = keep[cp.ww_group]
        return KeyedCrossProducts(
            self.labels[keep],
            GroupCrossProducts(
                cp.n[keep], cp.zz[keep], cp.zr[keep],
                new_code[cp.wz_group[wz_in]], cp.wz_slot[wz_in], cp.wz[wz_in], cp.wr[wz_in],
                new_code[cp.ww_group[ww_in]], cp.ww_slot_a[ww_in], cp.ww_slot_b[ww_in],
                cp.ww[ww_in],
            ),
        )


def labels_in_order(parts: list[KeyedCrossProducts]) -> bool:
    """Whether the labels, part after part, are strictly increasing (the chunks of data
    written group by group, in order): then no label is in two parts."""
    try:
        return all(bool(np.all(p.labels[1:] > p.labels[:-1])) for p in parts) and all(
            a.labels[-1] < b.labels[0] for a, b in zip(parts, parts[1:]))
    except TypeError:  # labels that do not order
        return False


def _concatenate(parts: list[KeyedCrossProducts]) -> KeyedCrossProducts:
    """Parts of disjoint labels in order, as one: nothing to add by key."""
    cps = [p.cp for p in parts]
    offsets = np.cumsum([0] + [c.n.shape[0] for c in cps[:-1]])

    def cat(name):
        return np.concatenate([getattr(c, name) for c in cps])

    def shifted(name):
        return np.concatenate([getattr(c, name) + o for c, o in zip(cps, offsets)])

    return KeyedCrossProducts(
        np.concatenate([p.labels for p in parts]),
        GroupCrossProducts(
            cat("n"), cat("zz"), cat("zr"), shifted("wz_group"), cat("wz_slot"), cat("wz"),
            cat("wr"), shifted("ww_group"), cat("ww_slot_a"), cat("ww_slot_b"), cat("ww"),
        ),
    )


def combine_keyed(parts: list[KeyedCrossProducts], n_slots: int) -> KeyedCrossProducts:
    """Add the cross-products of equal group labels; labels come out sorted."""
    parts = [p for p in parts if p.labels.shape[0]]
    if not parts:
        raise ValueError("no groups to combine")
    if len(parts) == 1:
        labels = parts[0].labels
        if labels.shape[0] < 2 or bool(np.all(labels[1:] > labels[:-1])):
            return parts[0]
    elif labels_in_order(parts):
        return _concatenate(parts)
    labels = np.concatenate([p.labels for p in parts])
    uniq, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    offsets = np.cumsum([0] + [p.labels.shape[0] for p in parts])
    cps = [p.cp for p in parts]
    ng = uniq.shape[0]
    k_re, r = cps[0].zr.shape[1], cps[0].zr.shape[2]

    n = np.bincount(inverse, weights=np.concatenate([c.n for c in cps]), minlength=ng)
    flat = np.concatenate(
        [np.concatenate([c.zz.reshape(c.n.shape[0], -1), c.zr.reshape(c.n.shape[0], -1)], axis=1)
         for c in cps]
    )
    summed = _group_sum(inverse, ng, flat)
    zz = summed[:, : k_re * k_re].reshape(ng, k_re, k_re)
    zr = summed[:, k_re * k_re:].reshape(ng, k_re, r)

    wz_group = np.concatenate([inverse[o + c.wz_group] for o, c in zip(offsets, cps)])
    wz_slot = np.concatenate([c.wz_slot for c in cps])
    wz_vals = np.concatenate([np.concatenate([c.wz, c.wr], axis=1) for c in cps])
    key, wz_sum = _sum_by_key(wz_group * n_slots + wz_slot, wz_vals)
    wz_group, wz_slot = np.divmod(key, n_slots)

    ww_group = np.concatenate([inverse[o + c.ww_group] for o, c in zip(offsets, cps)])
    ww_key = (ww_group * n_slots + np.concatenate([c.ww_slot_a for c in cps])) * n_slots
    ww_key = ww_key + np.concatenate([c.ww_slot_b for c in cps])
    key2, ww_sum = _sum_by_key(ww_key, np.concatenate([c.ww for c in cps])[:, None])
    group_slot, slot_b = np.divmod(key2, n_slots)
    ww_group, slot_a = np.divmod(group_slot, n_slots)

    return KeyedCrossProducts(
        uniq,
        GroupCrossProducts(
            n, zz, zr, wz_group, wz_slot, wz_sum[:, :k_re], wz_sum[:, k_re:],
            ww_group, slot_a, slot_b, ww_sum[:, 0],
        ),
    )


@dataclass(eq=False)
class StatsBlock:
    """Whole groups, laid out for the per-step kernel: what a worker keeps.

    Attributes
    ----------
    labels : ndarray (g,)
        Group labels, sorted.
    n : ndarray (g,)
        Rows per group.
    batches : list of GroupBatch
    """

    labels: np.ndarray
    n: np.ndarray
    batches: list[GroupBatch]

    @property
    def n_groups(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the block's arrays (labels, sizes, each batch's ``g``, ``h`` and slots)."""
        return int(self.labels.nbytes + self.n.nbytes + sum(
            b.g.nbytes + b.h.nbytes + b.slots.nbytes + b.index.nbytes for b in self.batches))

    def __sizeof__(self) -> int:
        """The block's bytes (``sys.getsizeof``, which Dask's ``sizeof`` falls back to), so
        that the scheduler runs each step where its block is instead of moving it."""
        return self.nbytes + object.__sizeof__(self)


def build_block(
    parts: list[KeyedCrossProducts], slot_component: np.ndarray
) -> StatsBlock:
    """Combine the chunks of a set of groups and stack them into batches."""
    if not any(p.labels.shape[0] for p in parts):
        return StatsBlock(np.zeros(0), np.zeros(0), [])
    parts_in_use = [p for p in parts if p.labels.shape[0]]
    if slot_component.size == 0 and len(parts_in_use) > 1 and all(
            p.labels.shape[0] >= BATCH_MIN_GROUPS for p in parts_in_use) and \
            labels_in_order(parts_in_use):
        return _side_by_side(parts_in_use, slot_component)
    keyed = combine_keyed(parts, max(slot_component.shape[0], 1))
    batches = stack_groups(keyed.cp, keyed.labels.shape[0], slot_component)
    return StatsBlock(keyed.labels, keyed.cp.n, batches)


#: Groups from which a chunk of whole groups in order stays a batch of its own in its
#: block (:func:`build_block`): a step over it then runs the compiled loop
#: (:data:`dlmm.kernels.likelihood.COMPILED_MIN_GROUPS`).
BATCH_MIN_GROUPS = 20_000


def _side_by_side(parts: list[KeyedCrossProducts], slot_component: np.ndarray) -> StatsBlock:
    """A block of parts of disjoint labels in order and no component columns: each part
    one batch of the block as it is (its stacked products not copied into one array;
    a block of 250,000 groups took 0.1-0.3 s to copy on a busy worker)."""
    offsets = np.cumsum([0] + [p.labels.shape[0] for p in parts[:-1]])
    batches = []
    for part, offset in zip(parts, offsets):
        (batch,) = stack_groups(part.cp, part.labels.shape[0], slot_component)
        batches.append(replace(batch, index=batch.index + offset))
    return StatsBlock(np.concatenate([p.labels for p in parts]),
                      np.concatenate([p.cp.n for p in parts]), batches)


def component_effect_counts(block: StatsBlock, slot_component: np.ndarray) -> np.ndarray:
    """Random effects of each variance component in a block: the (group, column)
    pairs with rows, ``counts[k] = #{(i, c): column c of component k occurs in group i}``
    (a batch's used slots; padding is -1)."""
    k_vc = int(slot_component.max()) + 1 if slot_component.size else 0
    counts = np.zeros(k_vc, dtype=np.int64)
    for batch in block.batches:  # a handful of layouts
        used = batch.slots[batch.slots >= 0]
        counts += np.bincount(slot_component[used], minlength=k_vc)
    return counts


def sum_over_batches(block: StatsBlock, batch_func, *args):
    """``batch_func(batch, *args)`` added over the batches of a block in a fixed
    order; ``0`` (the identity of ``+``) for a block without groups."""
    total = 0
    for batch in block.batches:  # a handful of layouts
        total = total + batch_func(batch, *args)
    return total


def block_pieces(
    block: StatsBlock, chol_re: np.ndarray, sd_vc: np.ndarray
) -> LikelihoodPieces | int:
    """Sum of :func:`batch_pieces` over the batches of a block."""
    return sum_over_batches(block, batch_pieces, chol_re, sd_vc)


@dataclass(eq=False)
class BlockEffects:
    """Predicted random effects of the groups of a block (data scale).

    Attributes
    ----------
    labels : ndarray (g,)
    re_modes : ndarray (g, k_re)
        ``E[b | y]`` of the standard random effects.
    re_cov : ndarray (g, k_re, k_re)
        Their conditional covariance.
    vc_group, vc_slot : ndarray (m,)
        Group position and global column of each variance-component effect.
    vc_modes, vc_var : ndarray (m,)
        Its prediction and conditional variance.
    batches : list of (index, slots, cov)
        Each batch's group positions, component slots and full conditional
        covariance (b, q, q), for per-group covariance matrices.
    """

    labels: np.ndarray
    re_modes: np.ndarray
    re_cov: np.ndarray
    vc_group: np.ndarray
    vc_slot: np.ndarray
    vc_modes: np.ndarray
    vc_var: np.ndarray
    batches: list


def block_effects(
    block: StatsBlock, chol_re: np.ndarray, sd_vc: np.ndarray, coef: np.ndarray,
    scale: float,
) -> BlockEffects:
    """Conditional modes and covariances of every group of a block.

    ``coef = [-beta; 1]``; see :func:`dlmm.kernels.likelihood.conditional_modes`.
    """
    from .likelihood import compiled_conditional_modes, conditional_modes, uses_compiled

    k_re = chol_re.shape[0]
    g = block.n_groups
    re_modes = np.zeros((g, k_re))
    re_cov = np.zeros((g, k_re, k_re))
    vc_parts: list[tuple] = []
    batches = []
    for batch in block.batches:  # a handful of layouts
        if uses_compiled(batch):
            modes, cov = compiled_conditional_modes(batch, chol_re, sd_vc, coef, scale)
        else:
            modes, cov = conditional_modes(batch, chol_re, sd_vc, coef)
            cov = cov * scale
        re_modes[batch.index] = modes[:, :k_re]
        re_cov[batch.index] = cov[:, :k_re, :k_re]
        valid = batch.slots >= 0
        rows, cols = np.nonzero(valid)
        diag = np.diagonal(cov, axis1=1, axis2=2)[:, k_re:]
        vc_parts.append((batch.index[rows], batch.slots[rows, cols],
                         modes[:, k_re:][rows, cols], diag[rows, cols]))
        batches.append((batch.index, batch.slots, cov))
    if vc_parts:
        vg, vs, vm, vv = (np.concatenate(x) for x in zip(*vc_parts))
    else:
        vg = vs = np.zeros(0, dtype=np.int64)
        vm = vv = np.zeros(0)
    return BlockEffects(block.labels, re_modes, re_cov, vg, vs, vm, vv, batches)


def select_xy_columns(block: StatsBlock, keep: np.ndarray) -> StatsBlock:
    """The block with only the ``keep`` columns of ``[X y]`` in its ``H_i``."""
    keep = np.asarray(keep, dtype=bool)
    batches = [GroupBatch(b.index, b.g, np.ascontiguousarray(b.h[:, :, keep]), b.k_re,
                          b.widths, b.slots) for b in block.batches]
    return StatsBlock(block.labels, block.n, batches)


def transform_effects(effects: BlockEffects, u_inv: np.ndarray,
                      factor: float = 1.0) -> BlockEffects:
    """The effects ``b = factor blockdiag(U^{-1}, I) b_c`` of effects ``b_c`` predicted
    in changed random-effect coordinates (``Z = Z_c U``) and response units
    (``y = factor y_c``), with their covariances ``factor^2 U^{-1} C U^{-T}`` (the
    variance-component block only times ``factor^2``)."""
    from .likelihood import COMPILED_MIN_GROUPS

    u_inv = np.ascontiguousarray(u_inv, dtype=float)
    k = u_inv.shape[0]
    f2 = factor * factor
    if effects.labels.shape[0] >= COMPILED_MIN_GROUPS:  # one compiled loop a stack
        from .effects_loop import transform_loop

        def moved(cov):
            cov = np.ascontiguousarray(cov, dtype=float)
            out = np.empty_like(cov)
            transform_loop(cov, k, u_inv, f2, out)
            return out

        re_cov = moved(effects.re_cov)
        full = moved
    else:
        re_cov = f2 * np.einsum("ab,gbc,dc->gad", u_inv, effects.re_cov, u_inv)

        def full(cov):
            out = cov.copy()
            out[:, :k, :] = np.einsum("ab,gbc->gac", u_inv, cov[:, :k, :])
            out[:, :, :k] = np.einsum("gac,bc->gab", out[:, :, :k], u_inv)
            return out * f2 if factor != 1.0 else out

    return BlockEffects(
        effects.labels, factor * (effects.re_modes @ u_inv.T), re_cov, effects.vc_group,
        effects.vc_slot, factor * effects.vc_modes, f2 * effects.vc_var,
        [(index, slots, full(cov)) for index, slots, cov in effects.batches],
    )
