"""A result's table written to Parquet all or nothing (``write_random_effects``).

A pandas table is one file, a lazy Dask table a folder of one file per
partition. Either is written under a temporary sibling of the target and
renamed into place when complete, so that a failure (a worker lost, a full
disk, Ctrl-C) leaves no empty folder and no half-written file behind
(:func:`dlmm.io.folders.staged_folder`). At a URL (``s3://…``) the table is
written where it goes, through fsspec.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ..exceptions import InputError
from ..io.folders import check_output_folder, staged_folder
from ..io.store import is_url, local_path


def write_table(table: Any, path: str | os.PathLike) -> None:
    """Write ``table`` (pandas or lazy Dask) to Parquet at ``path``.

    Parameters
    ----------
    table : pandas.DataFrame or dask.dataframe.DataFrame
    path : str or PathLike
        A file for pandas (replaced if it exists), a folder for Dask (which must
        not exist, or be empty), or a URL.

    Raises
    ------
    InputError
        A Dask table's folder exists and holds files.
    """
    if is_url(path):
        if hasattr(table, "npartitions"):  # Dask writes through fsspec
            table.to_parquet(os.fspath(path))
            return
        import fsspec

        # through fsspec, as every other file at a URL: pandas would pick pyarrow's own
        # S3 client for a URL string, which knows nothing of fsspec's endpoint settings
        with fsspec.open(os.fspath(path), "wb") as handle:
            table.to_parquet(handle)
        return
    out = Path(local_path(path))
    if hasattr(table, "npartitions"):
        if out.is_dir() and any(out.iterdir()):
            raise InputError(f"output folder {str(out)!r} exists and is not empty")
        if out.is_dir():
            out.rmdir()  # empty (checked above): the staged folder takes its place
        check_output_folder(out, option="path")  # a file there, a parent not writable
        with staged_folder(out) as tmp:
            table.to_parquet(str(tmp))
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(handle)
    try:
        table.to_parquet(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
