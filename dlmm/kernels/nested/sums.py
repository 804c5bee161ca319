"""Rows to keyed per-leaf sums of a nested design, added by key, then per node.

Factors ``f_0`` (outermost) … ``f_{L-1}``. Each row carries one int64 code per level,
``codes[l]``, and a node at level ``l`` is the tuple ``(codes[0], …, codes[l])`` of its
rows: ``codes[l]`` only has to tell apart the levels of ``f_l`` under one parent (for
``lea/school`` the school column's code serves, even where school labels repeat across
authorities), and codes are global for the fit (the same label has the same code in
every chunk, as the learned levels give). A deepest-level node — a *leaf* — determines
all its ancestors, so a chunk keeps, per leaf, the sums over its rows of

    z_l z_m'        (q_l, q_m) for every pair m <= l
    z_l [x y]'      (q_l, r)
    1               (the row count)

(:func:`leaf_sums`). A leaf may span chunks: :func:`combine` adds the parts of equal
leaves, in list order (so that timing cannot change the bits), and
:func:`build_stats` adds the leaves of each node into the
:class:`~dlmm.kernels.nested.stats.NestedStats` the kernels read. Since the sums of a
node's rows are the sums over its leaves, ``zz[l]``, ``za[l][m]`` and ``zxy[l]`` of a
node at level ``l`` are the sums of its leaves' ``(l, l)``, ``(l, m)`` and ``l`` parts.

Nesting is a property of the data, not of the formula: where a factor is written as a
column of its own (``(1 | lea) + (1 | school)``), a school seen in two authorities
would become two nodes. :class:`LevelCodes` counts, per level, the nodes and the
distinct codes, so that the caller can check that each code lies in one parent
(:func:`nesting_violations`).

Every sum is a sparse indicator (or weighted indicator) product: no Python loop over
rows, leaves or nodes, only over levels and random-effect columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .stats import NestedStats


@dataclass(frozen=True)
class SumsLayout:
    """Where each part sits in a row of :attr:`NestedSums.values`.

    Column 0 is the row count; then, for ``l = 0 .. L-1`` and ``m = 0 .. l``, the
    ``q_l * q_m`` entries of ``sum z_l z_m'`` (row-major); then, for each ``l``, the
    ``q_l * r`` entries of ``sum z_l [x y]'``.
    """

    q: tuple[int, ...]
    r: int

    @property
    def n_levels(self) -> int:
        return len(self.q)

    def pair(self, level: int, other: int) -> slice:
        """Columns of ``sum z_level z_other'`` (``other <= level``)."""
        if not 0 <= other <= level < self.n_levels:
            raise ValueError(f"no pair ({level}, {other}) in {self.n_levels} levels")
        start = 1
        for l in range(level + 1):  # loops over levels only
            for m in range(l + 1):
                width = self.q[l] * self.q[m]
                if (l, m) == (level, other):
                    return slice(start, start + width)
                start += width
        raise AssertionError("unreachable")

    def _pairs_end(self) -> int:
        return 1 + sum(self.q[l] * self.q[m] for l in range(self.n_levels) for m in range(l + 1))

    def zxy(self, level: int) -> slice:
        """Columns of ``sum z_level [x y]'``."""
        start = self._pairs_end() + self.r * sum(self.q[:level])
        return slice(start, start + self.q[level] * self.r)

    @property
    def width(self) -> int:
        return self._pairs_end() + self.r * sum(self.q)


@dataclass(eq=False)
class NestedSums:
    """Per-leaf sums of a set of rows, keyed by the leaf's codes.

    Attributes
    ----------
    q : tuple of int
        Random-effect columns per level.
    r : int
        Columns of ``[X y]``.
    leaves : ndarray (m, L) int64
        The codes ``(codes[0], …, codes[L-1])`` of each leaf; sorted
        lexicographically (outermost code first), without repeats.
    values : ndarray (m, width)
        Each leaf's sums, laid out as :class:`SumsLayout` says.
    """

    q: tuple[int, ...]
    r: int
    leaves: np.ndarray
    values: np.ndarray

    @property
    def layout(self) -> SumsLayout:
        return SumsLayout(self.q, self.r)

    @property
    def n_leaves(self) -> int:
        return int(self.leaves.shape[0])

    @property
    def n_rows(self) -> np.ndarray:
        """Rows per leaf."""
        return self.values[:, 0]

    @property
    def nbytes(self) -> int:
        return int(self.leaves.nbytes + self.values.nbytes)

    @classmethod
    def empty(cls, q: Sequence[int], r: int) -> NestedSums:
        q = tuple(int(x) for x in q)
        return cls(q, int(r), np.zeros((0, len(q)), dtype=np.int64),
                   np.zeros((0, SumsLayout(q, int(r)).width)))

    def select(self, keep: np.ndarray) -> NestedSums:
        """The leaves where ``keep`` is true (order kept)."""
        keep = np.asarray(keep, dtype=bool)
        return NestedSums(self.q, self.r, self.leaves[keep], self.values[keep])


def _indicator(ids: np.ndarray, n_out: int, weights: np.ndarray | None = None) -> sp.csc_array:
    """``(n_out, n)`` matrix with ``weights[i]`` (or 1) at ``(ids[i], i)``: its product
    with a row matrix adds rows of equal id, in row order."""
    n = ids.shape[0]
    data = np.ones(n) if weights is None else np.ascontiguousarray(weights, dtype=float)
    return sp.csc_array((data, ids, np.arange(n + 1)), shape=(n_out, n))


def _check_codes(codes: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    out = []
    for l, c in enumerate(codes):
        c = np.asarray(c)
        if c.shape != (n,):
            raise ValueError(f"codes of level {l} have shape {c.shape}, expected ({n},)")
        if c.dtype.kind not in "iu":
            raise ValueError(f"codes of level {l} must be integers, not {c.dtype}")
        c = c.astype(np.int64, copy=False)
        if n and int(c.min()) < 0:
            raise ValueError(f"codes of level {l} must be >= 0 (a missing level?)")
        out.append(c)
    return out


def leaf_ids(codes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's leaf, numbered in the lexicographic order of its codes.

    Returns
    -------
    ids : ndarray (n,) int64
        The leaf of each row, ``0 .. m-1``.
    first : ndarray (m,) int64
        A row of each leaf (its first), from which the leaf's codes are read.
    """
    codes = list(codes)
    n = codes[0].shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # key = the prefix's codes in mixed radix (order-preserving); ranked by np.unique
    # only when the next code would overflow int64, so usually one sort in all
    key = codes[0]
    key_max = int(key.max())
    for c in codes[1:]:  # loops over levels
        c_max = int(c.max())
        if key_max >= ((1 << 63) - 1 - c_max) // (c_max + 1):
            key = np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64)
            key_max = int(key.max())
            if key_max >= ((1 << 63) - 1 - c_max) // (c_max + 1):  # huge codes: ranks
                c = np.unique(c, return_inverse=True)[1].reshape(-1).astype(np.int64)
                c_max = int(c.max())
        key = key * (c_max + 1) + c
        key_max = key_max * (c_max + 1) + c_max
    _, first, ids = np.unique(key, return_index=True, return_inverse=True)
    return ids.reshape(-1).astype(np.int64), first.astype(np.int64)


def leaf_sums(codes: Sequence[np.ndarray], z: Sequence[np.ndarray], xy: np.ndarray) -> NestedSums:
    """The per-leaf sums of a chunk of rows.

    Parameters
    ----------
    codes : list of ndarray (n,) int
        Per level, outermost first, the code of each row's level of that factor
        (global for the fit, ``>= 0``; see the module docstring).
    z : list of ndarray (n, q_l)
        Per level, the random-effect columns of the terms on that factor (``q_l`` may
        be 0).
    xy : ndarray (n, r)
        ``[X y]``.

    Returns
    -------
    NestedSums
        Leaves sorted by their codes; sums added in row order.
    """
    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2:
        raise ValueError("xy must be a 2-d array (rows, columns of [X y])")
    n, r = xy.shape
    if len(codes) != len(z) or not codes:
        raise ValueError(f"{len(codes)} levels of codes but {len(z)} designs; "
                         "need one of each per level, at least one level")
    codes = _check_codes(codes, n)
    z = [np.asarray(zl, dtype=float) for zl in z]
    for l, zl in enumerate(z):
        if zl.ndim != 2 or zl.shape[0] != n:
            raise ValueError(f"the design of level {l} has shape {zl.shape}, expected "
                             f"({n}, q)")
    q = tuple(int(zl.shape[1]) for zl in z)
    layout = SumsLayout(q, r)
    ids, first = leaf_ids(codes)
    m = first.shape[0]
    leaves = np.stack([c[first] for c in codes], axis=1) if m else \
        np.zeros((0, len(q)), dtype=np.int64)
    values = np.empty((m, layout.width))
    values[:, 0] = np.bincount(ids, minlength=m)
    if sum(q) and m:
        offsets = [0, *np.cumsum(q).tolist()]
        # [z_0 … z_{L-1} | x y]: level l needs z_0 … z_l (a prefix) and [x y]
        w = np.hstack(z + [xy])
        big_q = offsets[-1]
        for l, zl in enumerate(z):  # loops over levels and their columns only
            if not q[l]:
                continue
            wl = np.ascontiguousarray(w[:, np.r_[0:offsets[l + 1], big_q:big_q + r]])
            for a in range(q[l]):
                # row a of each (q_l, q_m) block: sum over the leaf's rows of z_l[a] z_m'
                out = _indicator(ids, m, zl[:, a]) @ wl
                for mm in range(l + 1):
                    start = layout.pair(l, mm).start + a * q[mm]
                    values[:, start:start + q[mm]] = out[:, offsets[mm]:offsets[mm + 1]]
                start = layout.zxy(l).start + a * r
                values[:, start:start + r] = out[:, offsets[l + 1]:]
    return NestedSums(q, r, leaves, values)


def _lexicographic_groups(leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable lexicographic order of the rows of ``leaves`` (outermost code first) and
    the id of each row's distinct tuple in that order."""
    m = leaves.shape[0]
    order = np.lexsort(leaves.T[::-1]) if m else np.zeros(0, dtype=np.int64)
    ordered = leaves[order]
    new = np.ones(m, dtype=bool)
    if m > 1:
        new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    ids_sorted = np.cumsum(new) - 1
    ids = np.empty(m, dtype=np.int64)
    ids[order] = ids_sorted
    return ids, order[new]


def _is_sorted_unique(leaves: np.ndarray) -> bool:
    if leaves.shape[0] < 2:
        return True
    diff = leaves[1:] - leaves[:-1]
    # the first nonzero entry of each row's difference must be positive
    nonzero = diff != 0
    has = nonzero.any(axis=1)
    if not has.all():
        return False
    first = diff[np.arange(diff.shape[0]), np.argmax(nonzero, axis=1)]
    return bool(np.all(first > 0))


def combine(parts: Sequence[NestedSums]) -> NestedSums:
    """Add the sums of equal leaves over ``parts`` (several chunks of rows).

    Each leaf's parts are added in list order, so the result does not depend on
    when the parts were computed; leaves come out sorted by their codes.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("no sums to combine")
    q, r = parts[0].q, parts[0].r
    for p in parts[1:]:
        if p.q != q or p.r != r:
            raise ValueError(f"sums of different shapes: q={p.q}, r={p.r} after q={q}, r={r}")
    nonempty = [p for p in parts if p.n_leaves]
    if not nonempty:
        return NestedSums.empty(q, r)
    if len(nonempty) == 1 and _is_sorted_unique(nonempty[0].leaves):
        return nonempty[0]
    leaves = np.concatenate([p.leaves for p in nonempty])
    values = np.concatenate([p.values for p in nonempty])
    ids, first = _lexicographic_groups(leaves)
    summed = _indicator(ids, first.shape[0]) @ values  # row order: list order
    return NestedSums(q, r, leaves[first], np.asarray(summed))


def build_stats(sums: NestedSums) -> NestedStats:
    """The per-node cross-products of the nodes of ``sums`` (whole nodes: combine
    every chunk's sums of these leaves first).

    Nodes of each level are in the lexicographic order of their codes, so
    ``parent[l]`` is non-decreasing; ``keys[l]`` is the ``(n_l, l + 1)`` int64 array of
    each node's codes ``(codes[0], …, codes[l])``.
    """
    if not _is_sorted_unique(sums.leaves):
        sums = combine([sums])  # sorted, repeats added
    q, r, layout = sums.q, sums.r, sums.layout
    n_levels = len(q)
    leaves, values = sums.leaves, sums.values
    m = leaves.shape[0]
    # new[i, l]: leaf i starts a new node at level l (its codes 0..l differ from the
    # previous leaf's)
    new = np.ones((m, n_levels), dtype=bool)
    if m > 1:
        new[1:] = np.logical_or.accumulate(leaves[1:] != leaves[:-1], axis=1)
    parent: list[np.ndarray] = []
    zz: list[np.ndarray] = []
    zxy: list[np.ndarray] = []
    za: list[list[np.ndarray]] = []
    n_rows: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    node_of_leaf_above = None
    for l in range(n_levels):  # loops over levels only
        starts = np.flatnonzero(new[:, l])
        node_of_leaf = np.cumsum(new[:, l]) - 1
        n_l = starts.shape[0]
        cols = np.r_[0:1, layout.pair(l, l), layout.zxy(l)]
        cols = np.concatenate([cols] + [np.r_[layout.pair(l, mm)] for mm in range(l)])
        summed = np.asarray(_indicator(node_of_leaf, n_l) @ values[:, cols]) if m else \
            np.zeros((0, cols.shape[0]))
        n_rows.append(summed[:, 0].copy())
        pos = 1
        ql = q[l]
        zz.append(summed[:, pos:pos + ql * ql].reshape(n_l, ql, ql))
        pos += ql * ql
        zxy.append(summed[:, pos:pos + ql * r].reshape(n_l, ql, r))
        pos += ql * r
        above = []
        for mm in range(l):
            above.append(summed[:, pos:pos + ql * q[mm]].reshape(n_l, ql, q[mm]))
            pos += ql * q[mm]
        za.append(above)
        if l == 0:
            parent.append(np.zeros(0, dtype=np.int64))
        else:
            parent.append(node_of_leaf_above[starts].astype(np.int64))
        keys.append(leaves[starts, :l + 1].copy())
        node_of_leaf_above = node_of_leaf
    return NestedStats(q=q, parent=parent, zz=zz, zxy=zxy, za=za, n_rows=n_rows, keys=keys)


@dataclass(eq=False)
class LevelCodes:
    """Per level, how many nodes and which codes a set of whole outer groups holds.

    ``a + b`` is the union of two sets of *different* outer groups (their nodes are
    distinct, so the node counts add; the codes are merged), so the blocks' counts add
    up with the backend's ``+`` like any additive piece.

    Attributes
    ----------
    n_nodes : ndarray (L,) int64
        Nodes per level: distinct ``(codes[0], …, codes[l])``.
    seen : list of ndarray of uint8
        Per level, the codes ``codes[l]`` present, as a packed bitset
        (``np.packbits`` of a boolean over ``0 .. max code``).
    """

    n_nodes: np.ndarray
    seen: list[np.ndarray]

    def __add__(self, other):
        if isinstance(other, int) and other == 0:
            return self
        if not isinstance(other, LevelCodes):
            return NotImplemented
        seen = []
        for a, b in zip(self.seen, other.seen):
            if a.shape[0] < b.shape[0]:
                a, b = b, a
            out = a.copy()
            out[:b.shape[0]] |= b
            seen.append(out)
        return LevelCodes(self.n_nodes + other.n_nodes, seen)

    def __radd__(self, other):
        return self.__add__(other)

    @property
    def n_codes(self) -> np.ndarray:
        """Distinct codes per level."""
        return np.array([int(np.unpackbits(s).sum()) for s in self.seen], dtype=np.int64)


def level_codes(leaves: np.ndarray) -> LevelCodes:
    """The :class:`LevelCodes` of a set of leaves (``NestedSums.leaves`` of whole
    outer groups, or the last level's ``NestedStats.keys``)."""
    leaves = np.asarray(leaves, dtype=np.int64)
    m, n_levels = leaves.shape
    new = np.ones((m, n_levels), dtype=bool)
    if m > 1:
        order = np.lexsort(leaves.T[::-1])
        leaves = leaves[order]
        new[1:] = np.logical_or.accumulate(leaves[1:] != leaves[:-1], axis=1)
    n_nodes = new.sum(axis=0).astype(np.int64) if m else np.zeros(n_levels, dtype=np.int64)
    seen = []
    for l in range(n_levels):  # loops over levels only
        mask = np.zeros(int(leaves[:, l].max()) + 1 if m else 0, dtype=bool)
        mask[leaves[:, l]] = True
        seen.append(np.packbits(mask))
    return LevelCodes(n_nodes, seen)


def nesting_violations(codes: LevelCodes) -> np.ndarray:
    """Per level, how many more nodes than distinct codes: 0 where every code of the
    level lies in one parent (e.g. every school in one authority), so that the code
    alone names the node; ``k > 0`` where ``k`` nodes repeat a code seen under
    another parent (level 0 is always 0)."""
    return codes.n_nodes - codes.n_codes
