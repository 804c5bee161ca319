"""Pick a backend for the input: pandas in process, anything else on Dask.

* a pandas DataFrame without ``client``: the in-process backend;
* a pandas DataFrame with ``client``: split into one partition per worker;
* a Dask DataFrame: the Dask backend;
* a Parquet file, directory, glob, list of those, or any fsspec URL: read
  lazily with ``dask.dataframe.read_parquet``, only the model's columns.

Dask is imported only here and only when needed, so that ``import dlmm`` and
the kernels stay light.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import InputError
from .base import Backend
from .local import LocalBackend


def _is_dask_frame(data: Any) -> bool:
    mod = type(data).__module__ or ""
    return mod.startswith("dask") and hasattr(data, "npartitions")


def _check_local_paths(paths: list[str]) -> None:
    for p in paths:
        if "://" in p and not p.startswith("file://"):
            continue  # remote: let fsspec report
        local = p[len("file://"):] if p.startswith("file://") else p
        if any(ch in local for ch in "*?["):
            if not glob.glob(local):
                raise InputError(f"Parquet path {p!r} matches no file")
        elif not os.path.exists(local):
            raise InputError(f"Parquet path {p!r} does not exist")


def _local_parquet_files(paths: list[str], limit: int) -> list[str] | None:
    """The Parquet files behind local paths, or None (remote, or more than ``limit``)."""
    files: list[str] = []
    for p in paths:
        if "://" in p and not p.startswith("file://"):
            return None
        local = p[len("file://"):] if p.startswith("file://") else p
        if os.path.isdir(local):
            for root, dirs, names in os.walk(local):
                dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
                files += [os.path.join(root, n) for n in sorted(names)
                          if not n.startswith((".", "_")) and not n.endswith(".crc")]
        elif any(ch in local for ch in "*?["):
            files += sorted(glob.glob(local))
        else:
            files.append(local)
        if len(files) > limit:
            return None
    return files


def check_parquet_columns(path, columns: list[str], limit: int = 5000) -> None:
    """Every local Parquet file has every model column (footers only).

    Raises
    ------
    InputError
        Naming the first file that lacks a column, and the column.
    """
    import pyarrow.parquet as pq

    paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    files = _local_parquet_files(paths, limit)
    if not files or len(files) < 2:
        return  # a single file was checked when the frame was opened
    for file in files:
        try:
            names = set(pq.read_schema(file).names)
        except Exception as exc:  # pyarrow raises several types
            raise InputError(f"cannot read Parquet file {file!r}: {exc}") from None
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(
                f"Parquet file {file!r} lacks column {missing[0]!r} used by the model "
                "(the other files have it)"
            )


def read_parquet(path, columns: list[str] | None = None):
    """A lazy Dask DataFrame over Parquet data, with clear errors."""
    import dask.dataframe as dd

    paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    _check_local_paths(paths)
    try:
        frame = dd.read_parquet(paths if len(paths) > 1 else paths[0], columns=columns)
    except Exception as exc:  # pyarrow / fsspec errors vary by version
        raise InputError(f"cannot read Parquet data {paths[0]!r}: {exc}") from None
    return frame


def is_path_like(data: Any) -> bool:
    if isinstance(data, (str, Path)):
        return True
    return isinstance(data, (list, tuple)) and bool(data) and all(
        isinstance(d, (str, Path)) for d in data
    )


def open_backend(data: Any, client=None) -> Backend:
    """The backend that runs a fit on ``data`` (see the module docstring)."""
    if isinstance(data, pd.DataFrame):
        if client is None:
            return LocalBackend(data)
        import dask.dataframe as dd

        from .dask_backend import DaskBackend

        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        return DaskBackend(dd.from_pandas(data, npartitions=n_workers, sort=False), client)
    if _is_dask_frame(data):
        from .dask_backend import DaskBackend

        return DaskBackend(data, client)
    if is_path_like(data):
        from .dask_backend import DaskBackend

        return DaskBackend(read_parquet(data), client)
    raise InputError(
        "data must be a pandas DataFrame, a Dask DataFrame or a Parquet path, "
        f"got {type(data).__name__}"
    )
