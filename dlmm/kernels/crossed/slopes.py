"""A dense part with several terms per level: ``Lambda_2`` folded into the blocks.

When a factor after the first has ``t_k > 1`` terms, ``Lambda_2 = blockdiag(T_k)``
mixes the rows (and columns) of each level's block. Applying it to the ``Q2 x Q2``
Schur complement after the update costs two whole-matrix passes and a mirror of
the triangle (at ``Q2 = 2,400``, ``t = 2``: ~90 ms of a ~0.4 s evaluation). Since
``Lambda_2`` is block diagonal it can be applied to the inputs instead:

    Lambda_2'(G22 - G21 M1 G21')Lambda_2 = Lambda_2'G22 Lambda_2 - W~ M1 W~'

with ``Lambda_2'G22 Lambda_2`` on ``G22``'s block pattern (``T_I' G_IJ T_J`` per block
pair ``(I, J)``, :func:`lambda_g22_lower`) and ``W~ = Lambda_2'G21`` at the row entries
(``T_k' W_b`` per block of ``G21``, :func:`lambda_entries`): the update then writes the
lower triangle of the final matrix directly. The gradient's sums over ``G22``'s
nonzeros (``sum_l (G22 Lambda_2 A^{-1})_{kl,kl}``) are made on the same block pairs
(:func:`g22_lambda_ainv`), reading ``A^{-1}`` once per block entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .system import CrossedSystem


@dataclass(frozen=True)
class BlockGroup:
    """The block pairs ``(I, J)``, ``I >= J``, of ``G22`` between two factors of the dense
    part (``fa`` owns ``I``, ``fb`` owns ``J``; positions in :attr:`CrossedSystem.rest`).

    Attributes
    ----------
    values : ndarray (m, t_a, t_b)
        ``G_IJ`` (zeros where ``G22`` has none).
    read : ndarray (m, t_a, t_b)
        Flat index (Fortran order) of entry ``(i, j)`` of block ``(I, J)`` in the lower
        triangle of a ``Q2 x Q2`` matrix (``(max, min)``: a diagonal block's upper
        entries are read from its lower ones).
    write : ndarray
        Flat lower-triangle index of each entry with ``row >= col`` (``keep``).
    keep : ndarray (m, t_a, t_b) bool
    off_diagonal : ndarray (m,)
        1.0 for ``I != J`` (the block stands for ``(J, I)`` too), else 0.0.
    """

    fa: int
    fb: int
    values: np.ndarray
    read: np.ndarray
    write: np.ndarray
    keep: np.ndarray
    off_diagonal: np.ndarray


def block_groups(system: CrossedSystem) -> list[BlockGroup]:
    """``G22`` by block pairs, grouped by the pair of factors (cached: data only)."""
    if "slope_block_groups" in system._cache:
        return system._cache["slope_block_groups"]
    q2 = system.dense_size
    terms = np.array([system.n_terms[k] for k in system.rest], dtype=np.int64)
    sizes = np.repeat(terms, [system.n_levels[k] for k in system.rest])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    owner_of_block = np.repeat(np.arange(terms.size), [system.n_levels[k] for k in system.rest])
    row_block = np.repeat(np.arange(sizes.size), sizes)
    rows, cols, values, _ = system.g22_entries()
    bi, bj = row_block[rows], row_block[cols]
    low = bi >= bj
    rows, cols, values, bi, bj = rows[low], cols[low], values[low], bi[low], bj[low]
    n_blocks = sizes.size
    keys, pair_of = np.unique(bi * n_blocks + bj, return_inverse=True)
    pi, pj = np.divmod(keys, n_blocks)
    groups = []
    for fa in range(terms.size):
        for fb in range(fa + 1):
            sel = np.flatnonzero((owner_of_block[pi] == fa) & (owner_of_block[pj] == fb))
            if not sel.size:
                continue
            ta, tb = int(terms[fa]), int(terms[fb])
            local = np.full(keys.size, -1, np.int64)
            local[sel] = np.arange(sel.size)
            on = local[pair_of] >= 0
            vals = np.zeros((sel.size, ta, tb))
            vals[local[pair_of[on]], rows[on] - starts[bi[on]], cols[on] - starts[bj[on]]] = \
                values[on]
            r = starts[pi[sel]][:, None, None] + np.arange(ta)[None, :, None]
            c = starts[pj[sel]][:, None, None] + np.arange(tb)[None, None, :]
            r, c = np.broadcast_arrays(r, c)
            read = np.maximum(r, c) + np.minimum(r, c) * q2
            keep = r >= c
            groups.append(BlockGroup(fa, fb, vals, read, (r + c * q2)[keep], keep,
                                     (pi[sel] != pj[sel]).astype(float)))
    system._cache["slope_block_groups"] = groups
    return groups


def _sandwich(t_a: np.ndarray, blocks: np.ndarray, t_b: np.ndarray) -> np.ndarray:
    """``T_a' B_m T_b`` for a stack ``B (m, t_a, t_b)``: ``t_a t_b`` whole-array
    multiply-adds per term pair (no stacked tiny products)."""
    ta, tb = t_a.shape[0], t_b.shape[0]
    right = np.zeros(blocks.shape)
    for j in range(tb):
        for y in range(j, tb):  # T_b lower: T_b[y, j] = 0 for y < j
            if t_b[y, j] != 0.0:
                right[:, :, j] += blocks[:, :, y] * t_b[y, j]
    out = np.zeros(blocks.shape)
    for i in range(ta):
        for x in range(i, ta):
            if t_a[x, i] != 0.0:
                out[:, i, :] += t_a[x, i] * right[:, x, :]
    return out


def lambda_g22_lower(system: CrossedSystem, factors: list, flat: np.ndarray) -> None:
    """In place, ``flat[lower index] = (Lambda_2'G22 Lambda_2)`` at ``G22``'s block pairs
    (lower triangle; ``flat`` a ``Q2 x Q2`` Fortran array's ``reshape(-1, order="F")``,
    zero there before)."""
    rest = [factors[k] for k in system.rest]
    for g in block_groups(system):
        flat[g.write] = _sandwich(rest[g.fa], g.values, rest[g.fb])[g.keep]


def lambda_entries(system: CrossedSystem, factors: list) -> np.ndarray:
    """``W~ = Lambda_2'G21`` at the row entries (``(n_e, t_1)``): ``T_k' W_b`` per block."""
    out = np.empty_like(system.entry_w)
    for k, (idx, _lev, w) in zip(system.rest, system.blocks):
        tk = factors[k]
        mixed = np.zeros(w.shape)
        for i in range(tk.shape[0]):
            for x in range(i, tk.shape[0]):  # (T_k' W)_i = sum_x T_k[x, i] W_x
                if tk[x, i] != 0.0:
                    mixed[:, i, :] += tk[x, i] * w[:, x, :]
        out[idx] = mixed
    return out


def g22_lambda_ainv(system: CrossedSystem, factors: list, ainv_read) -> list[np.ndarray]:
    """``sum_{I in k} (G22 Lambda_2 A^{-1})_{II} = sum_I sum_J G_IJ T_J A^{-1}_JI`` per factor
    of the dense part (``t_k x t_k``), over ``G22``'s block pairs; ``ainv_read(flat)``
    gives ``A^{-1}``'s entries at flat lower-triangle indices."""
    rest = [factors[k] for k in system.rest]
    out = [np.zeros((t.shape[0], t.shape[0])) for t in rest]
    for g in block_groups(system):
        ab = ainv_read(g.read.reshape(-1)).reshape(g.read.shape)  # A^{-1}_IJ (m, ta, tb)
        # (I, J): G_IJ T_J A^{-1}_JI = G_IJ T_J (A^{-1}_IJ)'
        out[g.fa] += np.einsum("mij,jk,mlk->il", g.values, rest[g.fb], ab, optimize=True)
        # (J, I), I != J: G_JI T_I A^{-1}_IJ = G_IJ' T_I A^{-1}_IJ
        if g.off_diagonal.any():
            vals = g.values * g.off_diagonal[:, None, None]
            out[g.fb] += np.einsum("mji,jk,mkl->il", vals, rest[g.fa], ab, optimize=True)
    return out
