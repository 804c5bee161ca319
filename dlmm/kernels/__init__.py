"""NumPy/SciPy kernels: the math of the fit, with no knowledge of Dask.

``crossprod``   rows -> per-group cross-products (one pass).
``layout``      complete cross-products -> stacked, padded batches.
``likelihood``  batches + parameters -> additive likelihood pieces, BLUPs.
``block``       a block of whole groups: the unit a worker keeps in memory.
"""

from .block import StatsBlock, block_pieces, build_block
from .crossprod import GroupCrossProducts, group_crossproducts, row_crossproduct
from .layout import GroupBatch, stack_groups
from .likelihood import batch_pieces, conditional_modes, relative_factor
from .pieces import LikelihoodPieces, RowTotals

__all__ = [
    "GroupBatch",
    "GroupCrossProducts",
    "LikelihoodPieces",
    "RowTotals",
    "StatsBlock",
    "batch_pieces",
    "block_pieces",
    "build_block",
    "conditional_modes",
    "group_crossproducts",
    "relative_factor",
    "row_crossproduct",
    "stack_groups",
]
