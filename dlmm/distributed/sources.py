"""Pick a backend for the input: pandas in process, anything else on Dask.

* a pandas DataFrame without ``client``: the in-process backend;
* a pandas DataFrame with ``client``: split into one partition per worker;
* a Dask DataFrame: the Dask backend;
* a Parquet file, directory, glob, list of those, or any fsspec URL: read
  lazily with ``dask.dataframe.read_parquet``, only the model's columns.

Small local Parquet input is fitted in process (:func:`fits_in_process`): when no
cluster is asked for (no ``client``, no current ``distributed`` client) and the
model's columns hold at most :func:`in_process_max_bytes` (8 bytes per value,
rows from the files' footers), the model reads them into pandas
(:func:`read_in_process`, the frame the Dask reader would give) instead of
starting a cluster: a cluster costs seconds to start, and below that size its
parallel pass does not win them back.

In a local folder, as Dask and Spark read it, the data are the files ending in
``.parquet``, ``.parq`` or ``.pq`` (in subfolders too); files and folders whose
names start with ``_`` or ``.`` (``_SUCCESS``, ``_metadata``, ``.crc`` files) and
files of other kinds (``README.txt``) are not data and are ignored. A file named
explicitly, or matched by a glob, is always read.

Dask is imported only here and only when needed, so that ``import dlmm`` and
the kernels stay light.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import InputError
from .base import Backend
from .local import LocalBackend

#: File name endings of Parquet data in a folder (Dask's default).
PARQUET_EXTENSIONS = (".parquet", ".parq", ".pq")


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
        elif os.path.isdir(local) and not _folder_files(local):
            raise InputError(
                f"Parquet folder {p!r} holds no Parquet files (names ending in "
                f"{', '.join(PARQUET_EXTENSIONS)}; names starting with _ or . are ignored)"
            )


def _folder_files(folder: str) -> list[str]:
    """The data files of a local folder, sorted (see the module docstring)."""
    files: list[str] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        files += [os.path.join(root, n) for n in sorted(names)
                  if not n.startswith((".", "_")) and n.lower().endswith(PARQUET_EXTENSIONS)]
    return files


def _ignored_files(folder: str) -> bool:
    """Whether a local folder holds files that are not data (see the module docstring)."""
    for _root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        if any(not n.startswith((".", "_")) and not n.lower().endswith(PARQUET_EXTENSIONS)
               for n in names):
            return True
    return False


def _local_parquet_files(paths: list[str], limit: int) -> list[str] | None:
    """The Parquet files behind local paths, or None (remote, or more than ``limit``)."""
    files: list[str] = []
    for p in paths:
        if "://" in p and not p.startswith("file://"):
            return None
        local = p[len("file://"):] if p.startswith("file://") else p
        if os.path.isdir(local):
            files += _folder_files(local)
        elif any(ch in local for ch in "*?["):
            files += sorted(glob.glob(local))
        else:
            files.append(local)
        if len(files) > limit:
            return None
    return files


def _type_kind(arrow_type) -> str | None:
    """The kind of a Parquet column's type, as far as a fit cares: integer and
    floating point (and decimal) numbers mix freely; None for an all-null column."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return None
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or (
            hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t)):
        return "text"
    if pa.types.is_temporal(t):
        return "time"
    return str(t)


def check_parquet_columns(path, columns: list[str], limit: int = 5000) -> None:
    """Every local Parquet file has every model column, of one kind of type
    (footers only: no rows are read).

    Raises
    ------
    InputError
        Naming the first file that lacks a column, and the column; or a column
        whose type differs between two files, the types and the files.
    """
    import pyarrow.parquet as pq

    paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    files = _local_parquet_files(paths, limit)
    if not files or len(files) < 2:
        return  # a single file was checked when the frame was opened
    first: dict[str, tuple] = {}
    for file in files:
        try:
            schema = pq.read_schema(file)
            names = set(schema.names)
        except Exception as exc:  # pyarrow raises several types
            raise InputError(f"cannot read Parquet file {file!r}: {exc}") from None
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(
                f"Parquet file {file!r} lacks column {missing[0]!r} used by the model "
                "(the other files have it)"
            )
        for c in columns:
            arrow_type = schema.field(c).type
            kind = _type_kind(arrow_type)
            if kind is None:
                continue
            if c not in first:
                first[c] = (kind, arrow_type, file)
            elif first[c][0] != kind:
                raise InputError(
                    f"column {c!r} is {first[c][1]} in Parquet file {first[c][2]!r} but "
                    f"{arrow_type} in {file!r}; write it with one type in every file"
                )


#: Measured (``docs/ARCHITECTURE.md``, "Where a fit runs"): on two busy cores a fit in
#: process took less time than one on the embedded cluster with its start up to three
#: million rows; more cores share the cluster's pass and steps, so the line is lower:
#: 32 MiB is 840,000 rows of five columns.
IN_PROCESS_MAX_BYTES = 32 * 2**20


def in_process_max_bytes() -> int:
    """The largest local Parquet input fitted in process, in bytes of its model columns
    at 8 bytes per value: Dask's configuration ``dlmm.in-process-max-bytes`` (a number
    or a size such as ``"64 MiB"``; 0 never fits in process), else
    :data:`IN_PROCESS_MAX_BYTES`."""
    import dask
    from dask.utils import parse_bytes

    value = dask.config.get("dlmm.in-process-max-bytes", None)
    if value is None:
        return IN_PROCESS_MAX_BYTES
    try:
        return int(parse_bytes(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise InputError(f"dlmm.in-process-max-bytes {value!r}: give a number of bytes or "
                         "a size such as '64 MiB'") from None


def parquet_rows(path, limit: int = 1000) -> int | None:
    """Rows of local Parquet data, from the files' footers (no rows are read); None for
    data at a URL, more than ``limit`` files, or a footer that cannot be read."""
    import pyarrow.parquet as pq

    paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    files = _local_parquet_files(paths, limit)
    if not files:
        return None
    try:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except Exception:  # noqa: BLE001 - unreadable here: the reader says why, later
        return None


def fits_in_process(path, columns: list[str]) -> bool:
    """Whether Parquet input is small enough to fit in process: local files whose
    ``columns`` hold at most :func:`in_process_max_bytes` at 8 bytes per value.
    (The caller checks that no cluster was asked for.)"""
    limit = in_process_max_bytes()
    if limit <= 0:
        return False
    rows = parquet_rows(path)
    return rows is not None and rows * max(len(columns), 1) * 8 <= limit


def in_process_backend(data: Any, columns: list[str], client=None) -> LocalBackend | None:
    """The in-process backend over ``columns`` of Parquet input when no cluster is asked
    for (no ``client``, no current ``distributed`` client) and :func:`fits_in_process`;
    else None (the caller keeps its Dask backend)."""
    if client is not None or not is_path_like(data):
        return None
    from .embedded import current_client

    if current_client() is not None or not fits_in_process(data, columns):
        return None
    return LocalBackend(read_in_process(data, columns))


def read_in_process(path, columns: list[str]) -> pd.DataFrame:
    """``columns`` of Parquet data as one pandas frame, read in this process by Dask's
    threads: the files, order and types the Dask reader gives a cluster, the rows
    numbered from 0."""
    frame = read_parquet(path, columns=columns)
    return frame.compute(scheduler="threads").reset_index(drop=True)


def read_parquet(path, columns: list[str] | None = None):
    """A lazy Dask DataFrame over Parquet data, with clear errors."""
    import dask.dataframe as dd

    paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    _check_local_paths(paths)
    sources: list[str] = []
    for p in paths:  # a local folder with files that are not data: its data files
        local = p[len("file://"):] if p.startswith("file://") else p
        is_local = "://" not in p or p.startswith("file://")
        if is_local and os.path.isdir(local) and _ignored_files(local):
            sources += _folder_files(local)
        else:
            sources.append(p)
    try:
        frame = dd.read_parquet(sources if len(sources) > 1 else sources[0], columns=columns)
    except Exception as exc:  # pyarrow / fsspec errors vary by version
        raise InputError(f"cannot read Parquet data {paths[0]!r}: {exc}") from None
    return frame


@contextlib.contextmanager
def reading_errors(data: Any) -> Iterator[None]:
    """Errors of the Parquet reader (raised where the rows are read, perhaps on a
    worker) as an InputError that names the data (``data`` path-like)."""
    try:
        yield
    except Exception as exc:
        from_reader = isinstance(exc, OSError) or type(exc).__module__.startswith("pyarrow")
        if isinstance(exc, InputError) or not is_path_like(data) or not from_reader:
            raise
        text = " ".join(str(exc).split())
        raise InputError(f"cannot read Parquet data {str(data)!r}: "
                         f"{type(exc).__name__}: {text}") from None


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
