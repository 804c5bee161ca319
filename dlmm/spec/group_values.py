"""Group labels given as values (statsmodels' ``groups=array``) become a column of the data."""

from __future__ import annotations

import os

import numpy as np

from ..exceptions import InputError
from .formula import GROUP_VALUES_COLUMN


def _is_paths(data) -> bool:
    """Parquet path(s) (as :func:`dlmm.distributed.sources.is_path_like`)."""
    if isinstance(data, (str, os.PathLike)):
        return True
    return isinstance(data, (list, tuple)) and bool(data) and all(
        isinstance(d, (str, os.PathLike)) for d in data)


def attach_groups(data, groups):
    """``data`` with the labels ``groups`` (one per row, or a Dask Series aligned with
    a Dask frame) as column :data:`GROUP_VALUES_COLUMN`, and that column's name."""
    if _is_paths(data):
        raise InputError("with Parquet input, groups must name a column of the data")
    if hasattr(groups, "npartitions"):  # a Dask Series aligned with a Dask frame
        return data.assign(**{GROUP_VALUES_COLUMN: groups}), GROUP_VALUES_COLUMN
    values = np.asarray(groups)
    if values.ndim != 1 or values.shape[0] != len(data):
        raise InputError(f"groups must be a column name or one label per row ({len(data)} "
                         f"rows), got an array of shape {values.shape}")
    if hasattr(data, "npartitions"):
        raise InputError("with a Dask DataFrame, groups must be a column name or a Dask "
                         "Series")
    return data.assign(**{GROUP_VALUES_COLUMN: values}), GROUP_VALUES_COLUMN
