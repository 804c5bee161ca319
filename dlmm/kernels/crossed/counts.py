"""What the blocked system of the keyed sums will cost, counted before it is built.

From the one pass's reduced sums alone (a ``bincount`` per factor pair): the order of
the factors (largest first), the pairs of row entries sharing a level of the first
factor that the Schur update walks (:func:`schur_pair_count`, :func:`streamed_work`),
the row entries (:func:`row_entry_count`) and which of the three ways
:mod:`.system` chooses for that update (stored, streamed, dense ``G21``). The
structure layer refuses, with these counts, what the driver cannot hold before
anything of that size is made.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from .sums import CrossedSums

#: Most pairs of row entries sharing a level of factor 1 for which the Schur
#: operator ``B`` is stored (about 1.6 GB while built); beyond, the pairs are
#: streamed (:mod:`.streamed`). At this size a stored step and a streamed one
#: both cost well under the dense Cholesky of a ``Q2`` that large.
STORED_PAIRS_MAX = 20_000_000

#: ``G21`` is made dense when its dense products' multiply-adds per step,
#: ``Q2^2 l_1 t_1``, are at most this many times the Schur pairs (a stored pair
#: costs a scattered sparse read or more; a dense multiply-add is a BLAS one).
DENSE_G21_RATIO = 4.0

#: Most numbers of a dense ``G21`` (``Q2 l_1 t_1``; 400 MB).
DENSE_G21_MAX = 50_000_000


def schur_pair_count(sums: CrossedSums) -> int:
    """Nonzeros of the Schur operator ``B`` that :func:`build_system` would make:
    ``t_1^2 sum_l nnz_l (nnz_l + 1) / 2`` with ``nnz_l`` the scalar rows of ``G21`` at
    level ``l`` of the first factor (levels of the other factors seen with it, times
    their terms). Cheap (one ``bincount`` per factor pair), for checks before building.
    """
    first = factor_order(sums.n_levels, sums.n_terms)[0]
    nnz = _entries_per_level(sums)
    return int(sums.n_terms[first] ** 2 * np.sum(nnz * (nnz + 1) / 2))


def _entries_per_level(sums: CrossedSums) -> np.ndarray:
    """Row entries (scalar rows of ``G21``) at each level of the first factor."""
    order = factor_order(sums.n_levels, sums.n_terms)
    first = order[0]
    nnz = np.zeros(sums.n_levels[first])
    for k in order[1:]:
        _, l_first, _ = _pair_blocks(sums, k, first)
        nnz += sums.n_terms[k] * np.bincount(l_first, minlength=nnz.size)
    return nnz


def streamed_work(sums: CrossedSums) -> tuple[int, int, float]:
    """What a step of streamed pairs (:mod:`.streamed`) costs, counted from the reduced
    sums before anything is built: the pairs the compiled loops walk, the dense levels
    (more than :data:`.streamed.DENSE_LEVEL_FRACTION` of ``Q2`` row entries, ``t_1 = 1``)
    and the BLAS multiply-adds of their update (``Q2 (Q2 + 1) / 2`` a level)."""
    from .streamed import DENSE_LEVEL_FRACTION

    order = factor_order(sums.n_levels, sums.n_terms)
    t1 = sums.n_terms[order[0]]
    q2 = sum(sums.n_levels[k] * sums.n_terms[k] for k in order[1:])
    nnz = _entries_per_level(sums)
    dense = nnz > DENSE_LEVEL_FRACTION * q2 if t1 == 1 else np.zeros(nnz.size, bool)
    walked = int(t1 * t1 * np.sum(np.where(dense, 0.0, nnz * (nnz + 1) / 2)))
    return walked, int(dense.sum()), float(dense.sum()) * q2 * (q2 + 1) / 2


def row_entry_count(sums: CrossedSums) -> int:
    """Scalar rows of the nonzero blocks of ``G21`` (the row entries; streamed pairs
    keep ``O`` of this many numbers): level pairs with the first factor times terms."""
    order = factor_order(sums.n_levels, sums.n_terms)
    first = order[0]
    return int(sum(sums.n_terms[k] * _pair_blocks(sums, k, first)[0].size for k in order[1:]))


def streams_pairs(pairs: int) -> bool:
    """Whether :func:`build_system` streams the Schur pairs by default (more than
    :data:`STORED_PAIRS_MAX` of them)."""
    return pairs > STORED_PAIRS_MAX


def uses_dense_g21(dense_size: int, n_first: int, t1: int, pairs: int) -> bool:
    """Whether :func:`build_system` makes ``G21`` dense by default: its products,
    ``Q2^2 l_1 t_1`` multiply-adds per step, cost at most :data:`DENSE_G21_RATIO`
    times the ``pairs`` of the Schur operator (:func:`schur_pair_count`), and it
    holds at most :data:`DENSE_G21_MAX` numbers."""
    size = dense_size * n_first * t1
    return 0 < size <= DENSE_G21_MAX and dense_size * size <= DENSE_G21_RATIO * pairs


def factor_order(n_levels, n_terms) -> list[int]:
    """Factor indices by ``l_k t_k`` descending (ties: the caller's order)."""
    return sorted(range(len(n_levels)), key=lambda k: (-n_levels[k] * n_terms[k], k))


def _pair_blocks(sums: CrossedSums, j: int, k: int):
    """``(levels of j, levels of k, blocks t_j x t_k)`` of ``Z_j'Z_k`` for any ``j != k``."""
    ids = list(combinations(range(sums.n_factors), 2))
    if j < k:
        p = sums.pairs[ids.index((j, k))]
        return p.rows, p.cols, p.values
    p = sums.pairs[ids.index((k, j))]
    return p.cols, p.rows, np.swapaxes(p.values, 1, 2)
