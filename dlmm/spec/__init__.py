"""Model specification: formulas or arrays to per-chunk model arrays.

Learned once over the whole data set (levels, column names, contrasts) and
applied identically to every chunk. No math beyond building designs, no Dask.
"""

from .arrays import ArraySpec
from .design import ChunkDesign
from .formula import FormulaSpec

__all__ = ["ArraySpec", "ChunkDesign", "FormulaSpec"]
