"""One pass over rows: the keyed sufficient statistics of a crossed model.

For K grouping factors (factor ``k``: ``l_k`` levels, ``t_k`` terms per level,
``Z_k`` the ``n x l_k t_k`` indicator-times-terms matrix) and ``r = p + 1``
columns ``[X y]``, everything the fit needs is a sum over rows:

    zz[k]     (l_k, t_k, t_k)   diagonal blocks of Z_k'Z_k (Z_k'Z_k is block diagonal)
    zxy[k]    (l_k, t_k, r)     Z_k'[X y], per level
    pairs     per factor pair j < k, per level pair seen: the t_j x t_k blocks of Z_j'Z_k
    xy_cross  (r, r)            [X y]'[X y]
    n_rows

Level codes are global (learned once by the caller), so the statistics of two
chunks of rows combine by adding per ``(factor, level)`` and per
``(pair, level_j, level_k)`` key: :func:`combine_sums` (and ``+``) does it with
a sort of the keys and ``np.bincount``, summing parts in list order, so the result
is deterministic. The cost and size are those of the levels and level pairs
seen, never of the raw rows after the pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import combinations

import numpy as np


@dataclass(eq=False)
class PairSums:
    """Sparse ``Z_j'Z_k`` of one factor pair ``j < k``, as sorted unique keys and blocks.

    Attributes
    ----------
    rows : ndarray (m,) int64
        Level of factor ``j`` of each level pair seen.
    cols : ndarray (m,) int64
        Level of factor ``k``. Pairs are sorted by ``(rows, cols)``, without repeats.
    values : ndarray (m, t_j, t_k)
        ``sum over rows with that level pair of outer(z_j, z_k)`` (for two intercepts:
        the count of rows).
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray


@dataclass(eq=False)
class CrossedSums:
    """Additive one-pass statistics of a crossed model (see the module docstring).

    Two instances for disjoint sets of rows combine with ``+`` (``sum(parts)`` works,
    starting from 0); :func:`combine_sums` combines a whole list in one sort.

    Attributes
    ----------
    zz : tuple of ndarray (l_k, t_k, t_k)
        ``zz[k][l] = sum_{rows i with level l} z_ki z_ki'``.
    zxy : tuple of ndarray (l_k, t_k, r)
        ``zxy[k][l] = sum_{rows i with level l} z_ki [x_i' y_i]``.
    pairs : tuple of PairSums
        One per factor pair ``(j, k)``, ``j < k``, in ``itertools.combinations`` order.
    xy_cross : ndarray (r, r)
        ``[X y]'[X y]``.
    n_rows : float
    """

    zz: tuple
    zxy: tuple
    pairs: tuple
    xy_cross: np.ndarray
    n_rows: float

    @property
    def n_levels(self) -> list[int]:
        return [z.shape[0] for z in self.zz]

    @property
    def n_terms(self) -> list[int]:
        return [z.shape[1] for z in self.zz]

    @property
    def n_factors(self) -> int:
        return len(self.zz)

    @property
    def n_columns(self) -> int:
        """``r = p + 1``: fixed-effect columns and the response."""
        return self.xy_cross.shape[0]

    @classmethod
    def zeros(cls, n_levels: Sequence[int], n_terms: Sequence[int], r: int) -> CrossedSums:
        """The identity of ``+``: no rows."""
        k_fac = len(n_levels)
        pairs = tuple(
            PairSums(
                np.zeros(0, np.int64),
                np.zeros(0, np.int64),
                np.zeros((0, n_terms[j], n_terms[k])),
            )
            for j, k in combinations(range(k_fac), 2)
        )
        return cls(
            zz=tuple(np.zeros((lv, t, t)) for lv, t in zip(n_levels, n_terms)),
            zxy=tuple(np.zeros((lv, t, r)) for lv, t in zip(n_levels, n_terms)),
            pairs=pairs,
            xy_cross=np.zeros((r, r)),
            n_rows=0.0,
        )

    def __add__(self, other):
        if isinstance(other, (int, float)) and other == 0:  # ``sum(parts)`` starts from 0
            return self
        if not isinstance(other, CrossedSums):
            return NotImplemented
        return combine_sums([self, other])

    def __radd__(self, other):
        if isinstance(other, (int, float)) and other == 0:
            return self
        return NotImplemented


def _term_matrix(terms: np.ndarray | None, n: int) -> np.ndarray | None:
    """``(n, t)`` term values of a factor, or None for a random intercept (t = 1)."""
    if terms is None:
        return None
    z = np.asarray(terms, dtype=float)
    if z.ndim == 1:
        z = z[:, None]
    if z.shape[0] != n:
        raise ValueError(f"terms have {z.shape[0]} rows, expected {n}")
    return z


def _weights(z: np.ndarray | None, a: int, other: np.ndarray | None) -> np.ndarray | None:
    """Row weights ``z[:, a] * other`` with None meaning all ones."""
    col = None if z is None else z[:, a]
    if col is None:
        return other
    if other is None:
        return col
    return col * other


def _codes(codes: np.ndarray, n_levels: int, n: int) -> np.ndarray:
    c = np.asarray(codes)
    if c.shape != (n,):
        raise ValueError(f"level codes have shape {c.shape}, expected ({n},)")
    if not np.issubdtype(c.dtype, np.integer):
        raise TypeError("level codes must be integers (global codes learned once)")
    c = c.astype(np.int64, copy=False)
    if n and (c.min() < 0 or c.max() >= n_levels):
        raise ValueError(f"level codes must lie in [0, {n_levels})")
    return c


def _pair_sums(
    cj: np.ndarray,
    ck: np.ndarray,
    zj: np.ndarray | None,
    zk: np.ndarray | None,
    n_levels_k: int,
    tj: int,
    tk: int,
) -> PairSums:
    """Blocks of ``Z_j'Z_k`` per level pair seen: sort the keys, then ``np.bincount``."""
    key = cj * n_levels_k + ck
    uniq, inv = np.unique(key, return_inverse=True)
    m = uniq.size
    values = np.empty((m, tj, tk))
    for a in range(tj):
        for b in range(tk):
            w = _weights(zj, a, None if zk is None else zk[:, b])
            values[:, a, b] = np.bincount(inv, weights=w, minlength=m)
    return PairSums(uniq // n_levels_k, uniq % n_levels_k, values)


def crossed_sums(
    codes: Sequence[np.ndarray],
    terms: Sequence[np.ndarray | None],
    x: np.ndarray,
    y: np.ndarray,
    n_levels: Sequence[int],
) -> CrossedSums:
    """The additive statistics of one chunk of rows.

    Parameters
    ----------
    codes : sequence of int arrays (n,)
        Global level code of each row, per factor (``0 <= code < n_levels[k]``).
    terms : sequence of (n, t_k) arrays or None
        Term values of each row, per factor (None: a random intercept, ``t_k = 1``).
    x : ndarray (n, p)
        Fixed-effects design (``p`` may be 0).
    y : ndarray (n,)
    n_levels : sequence of int
        ``l_k`` for each factor (levels absent from this chunk get zero sums).

    Returns
    -------
    CrossedSums
        ``zz[k][l] = sum_{i: code_ki = l} z_ki z_ki'``,
        ``zxy[k][l] = sum_{i: code_ki = l} z_ki [x_i' y_i]``, the pair blocks
        ``sum_{i: (code_ji, code_ki) = (l, m)} z_ji z_ki'``, ``[X y]'[X y]`` and ``n``.
        Computed with ``np.bincount`` and one key sort per factor pair; no loop
        over rows or levels.
    """
    y = np.asarray(y, dtype=float).ravel()
    n = y.size
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] != n:
        raise ValueError(f"x has {x.shape[0]} rows, y has {n}")
    xy = np.column_stack([x, y])
    r = xy.shape[1]
    if len(codes) != len(n_levels) or len(terms) != len(n_levels):
        raise ValueError("codes, terms and n_levels need one entry per factor")
    cs = [_codes(c, int(lv), n) for c, lv in zip(codes, n_levels)]
    zs = [_term_matrix(t, n) for t in terms]
    ts = [1 if z is None else z.shape[1] for z in zs]

    zz, zxy = [], []
    for c, z, t, lv in zip(cs, zs, ts, n_levels):
        g = np.empty((int(lv), t, t))
        for a in range(t):
            for b in range(a, t):
                w = _weights(z, a, None if z is None else z[:, b])
                g[:, a, b] = np.bincount(c, weights=w, minlength=lv)
                g[:, b, a] = g[:, a, b]
        h = np.empty((int(lv), t, r))
        for a in range(t):
            for col in range(r):
                h[:, a, col] = np.bincount(c, weights=_weights(z, a, xy[:, col]), minlength=lv)
        zz.append(g)
        zxy.append(h)

    pairs = tuple(
        _pair_sums(cs[j], cs[k], zs[j], zs[k], int(n_levels[k]), ts[j], ts[k])
        for j, k in combinations(range(len(cs)), 2)
    )
    return CrossedSums(tuple(zz), tuple(zxy), pairs, xy.T @ xy, float(n))


def _combine_pairs(parts: Sequence[PairSums], n_levels_k: int) -> PairSums:
    """Add pair blocks by key; values of one key are summed in the order of ``parts``."""
    rows = np.concatenate([p.rows for p in parts])
    cols = np.concatenate([p.cols for p in parts])
    values = np.concatenate([p.values for p in parts])
    key = rows * n_levels_k + cols
    uniq, inv = np.unique(key, return_inverse=True)
    m = uniq.size
    flat = values.reshape(values.shape[0], -1)
    out = np.empty((m, flat.shape[1]))
    for e in range(flat.shape[1]):
        out[:, e] = np.bincount(inv, weights=flat[:, e], minlength=m)
    return PairSums(uniq // n_levels_k, uniq % n_levels_k, out.reshape((m,) + values.shape[1:]))


def combine_sums(parts: Sequence[CrossedSums]) -> CrossedSums:
    """Sum the statistics of disjoint chunks of rows, by key, in list order.

    ``combine_sums([a, b, c])`` is ``(a + b) + c`` bit for bit; the same parts in the
    same order always give the same bits. Dense per-level fields add elementwise
    (levels are global codes); pair blocks are concatenated, their keys sorted,
    and summed per key with ``np.bincount``.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("nothing to combine")
    first = parts[0]
    for p in parts[1:]:
        if p.n_levels != first.n_levels or p.n_terms != first.n_terms:
            raise ValueError("parts have different factors (levels or terms)")
        if p.n_columns != first.n_columns:
            raise ValueError("parts have different [X y] widths")
    if len(parts) == 1:
        return first
    k_fac = first.n_factors
    pair_ids = list(combinations(range(k_fac), 2))
    pairs = tuple(
        _combine_pairs([p.pairs[i] for p in parts], first.n_levels[k])
        for i, (_, k) in enumerate(pair_ids)
    )
    return CrossedSums(
        zz=tuple(reduce(np.add, [p.zz[k] for p in parts]) for k in range(k_fac)),
        zxy=tuple(reduce(np.add, [p.zxy[k] for p in parts]) for k in range(k_fac)),
        pairs=pairs,
        xy_cross=reduce(np.add, [p.xy_cross for p in parts]),
        n_rows=float(sum(p.n_rows for p in parts)),
    )
