"""Dask frames with exactly one partition per input file, or per item.

The statistics cache reduces each input file to its own sums, so it needs to
know which rows came from which file: :func:`file_frame` makes partition ``j``
the whole of ``files[j]`` (read with pandas through fsspec, only ``columns``),
and :func:`item_frame` makes partition ``j`` a one-row frame holding
``items[j]`` (JSON values), so that a backend's ``map_chunks`` runs any function once per
item on the workers (loading cached sums where they are read).

No file is opened on the driver: the frame's schema comes from ``meta``.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd


def read_file(path: str, columns: list[str] | None) -> pd.DataFrame:
    """The rows of one Parquet file (local path or fsspec URL), only ``columns``."""
    if "://" in path and not path.startswith("file://"):
        import fsspec

        with fsspec.open(path, "rb") as handle:
            return pd.read_parquet(handle, columns=columns)
    local = path[len("file://"):] if path.startswith("file://") else path
    return pd.read_parquet(local, columns=columns)


def _read_partition(path: str, columns: list[str] | None) -> pd.DataFrame:
    return read_file(path, columns)  # looked up at call time (tests count the reads)


def file_schema(path: str, columns: list[str] | None) -> pd.DataFrame:
    """An empty frame with the columns and dtypes of a Parquet file (its footer only)."""
    import pyarrow.parquet as pq

    if "://" in path and not path.startswith("file://"):
        import fsspec

        with fsspec.open(path, "rb") as handle:
            schema = pq.read_schema(handle)
    else:
        schema = pq.read_schema(path[len("file://"):] if path.startswith("file://") else path)
    table = schema.empty_table()
    if columns is not None:
        table = table.select(columns)
    return table.to_pandas()


def file_frame(files: list[str], columns: list[str] | None, meta: pd.DataFrame):
    """A lazy Dask DataFrame whose partition ``j`` is all rows of ``files[j]``."""
    import dask.dataframe as dd

    return dd.from_map(_read_partition, list(files), columns=columns, meta=meta,
                       enforce_metadata=False, divisions=[None] * (len(files) + 1),
                       label="dlmm-read-file")


def _item_partition(text: str) -> pd.DataFrame:
    return pd.DataFrame({"item": pd.Series([text], dtype=object)})


def item_frame(items: list[Any]):
    """A lazy Dask DataFrame whose partition ``j`` is one row holding ``items[j]``
    (JSON values, written as JSON text; :func:`frame_item` reads it back)."""
    import dask.dataframe as dd

    meta = pd.DataFrame({"item": pd.Series([], dtype=object)})
    return dd.from_map(_item_partition, [json.dumps(item) for item in items], meta=meta,
                       enforce_metadata=False, divisions=[None] * (len(items) + 1),
                       label="dlmm-item")


def frame_item(frame: pd.DataFrame) -> Any:
    """The item of a partition of :func:`item_frame`."""
    return json.loads(str(frame["item"].iloc[0]))
