"""The one pass: rows to persisted blocks of per-group cross-products.

Each chunk of rows becomes its groups' cross-products, keyed by group label
(:func:`chunk_crossproducts`). When no group spans two chunks (the usual case
for data written group by group) every chunk becomes a block where it is.
Otherwise the keyed cross-products, not the rows, are shuffled by a stable
hash of the group label so that each block holds whole groups. The blocks stay
on the workers; every later step maps over them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .distributed.base import Backend, ordered_sum
from .kernels.block import KeyedCrossProducts, StatsBlock, block_pieces, build_block
from .kernels.crossprod import group_crossproducts, row_crossproduct
from .kernels.pieces import LikelihoodPieces, RowTotals


@dataclass(eq=False)
class ChunkResult:
    """What the one pass keeps of a chunk: keyed cross-products and row totals."""

    keyed: KeyedCrossProducts
    totals: RowTotals


def chunk_crossproducts(frame: pd.DataFrame, spec) -> ChunkResult:
    """Model design of a chunk, then its per-group cross-products."""
    design = spec.design(frame)
    codes, labels = pd.factorize(pd.Series(design.groups), sort=True)
    labels = np.asarray(labels)
    if labels.dtype.kind == "U":
        labels = labels.astype(object)
    cp = group_crossproducts(codes, labels.shape[0], design.z, design.xy, design.w)
    totals = RowTotals(
        xy_cross=row_crossproduct(design.xy),
        n_rows=float(design.xy.shape[0]),
        n_dropped=float(design.n_dropped),
        missing_by_column=design.missing_by_column,
    )
    return ChunkResult(KeyedCrossProducts(labels, cp), totals)


def _totals(result: ChunkResult) -> RowTotals:
    return result.totals


def _label_range(result: ChunkResult):
    labels = result.keyed.labels
    if labels.shape[0] == 0:
        return None
    return labels[0], labels[-1]


def _split_by_hash(result: ChunkResult, n_out: int) -> list[KeyedCrossProducts]:
    keyed = result.keyed
    bucket = pd.util.hash_array(keyed.labels) % np.uint64(n_out)
    return [keyed.select(bucket == np.uint64(j)) for j in range(n_out)]


def _disjoint(ranges: list) -> bool:
    spans = sorted((r for r in ranges if r is not None), key=lambda r: r[0])
    try:
        return all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    except TypeError:  # labels that do not order: shuffle to be safe
        return False


def _block_summary(block: StatsBlock):
    if block.n_groups == 0:
        return (0, np.inf, -np.inf)
    return (block.n_groups, float(block.n.min()), float(block.n.max()))


@dataclass(eq=False)
class SufficientStatistics:
    """Persisted blocks of whole groups, plus the row totals, for one model.

    Attributes
    ----------
    backend : Backend
    blocks : list
        Backend handles of :class:`~dlmm.kernels.block.StatsBlock` objects.
    totals : RowTotals
    n_groups : int
    group_size_min, group_size_max : float
    seconds : float
        Wall time of the pass.
    shuffled : bool
        Whether groups spanned chunks, so that keyed cross-products moved.
    """

    backend: Backend
    blocks: list[Any]
    totals: RowTotals
    n_groups: int
    group_size_min: float
    group_size_max: float
    seconds: float
    shuffled: bool
    evaluations: int = field(default=0)

    def pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> LikelihoodPieces:
        """One map-reduce: the likelihood pieces summed over every block."""
        self.evaluations += 1
        return self.backend.map_sum(block_pieces, self.blocks, chol_re, sd_vc)

    def map_blocks(self, func, *args) -> list[Any]:
        """``func(block, *args)`` on every block, gathered in block order."""
        return self.backend.gather(self.backend.map(func, self.blocks, *args))


def one_pass(spec, backend: Backend) -> SufficientStatistics:
    """Read the rows once; build and keep the blocks; add the row totals."""
    start = time.perf_counter()
    chunks = backend.map_chunks(lambda frame: chunk_crossproducts(frame, spec))
    totals = ordered_sum(backend.gather(backend.map(_totals, chunks)))
    ranges = backend.gather(backend.map(_label_range, chunks))
    slot_component = spec.slot_component
    shuffled = not _disjoint(ranges)
    if not shuffled:
        blocks = backend.map(lambda r: build_block([r.keyed], slot_component), chunks)
    else:
        blocks = backend.regroup(
            chunks,
            len(chunks),
            _split_by_hash,
            lambda parts: build_block(parts, slot_component),
        )
    summaries = backend.gather(backend.map(_block_summary, blocks))
    backend.release(chunks)
    n_groups = int(sum(s[0] for s in summaries))
    return SufficientStatistics(
        backend=backend,
        blocks=blocks,
        totals=totals,
        n_groups=n_groups,
        group_size_min=float(min(s[1] for s in summaries)) if n_groups else 0.0,
        group_size_max=float(max(s[2] for s in summaries)) if n_groups else 0.0,
        seconds=time.perf_counter() - start,
        shuffled=shuffled,
    )
