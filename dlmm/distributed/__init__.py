"""Map functions over partitions and add the results; nothing about mixed models.

``LocalBackend`` runs in process over a pandas frame; ``DaskBackend`` (imported
lazily from ``dlmm.distributed.dask_backend``) runs on a ``distributed`` cluster:
the user's, or dlmm's own embedded one (``dlmm.distributed.embedded``).
"""

from .base import Backend, ordered_sum
from .local import LocalBackend
from .sources import open_backend, read_parquet

__all__ = ["Backend", "LocalBackend", "open_backend", "ordered_sum", "read_parquet"]
