"""The numeric design of one chunk of rows, as the kernels take it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


class ModelNames:
    """Counts derived from a specification's names (``exog_names``,
    ``exog_re_names``, ``vc_names``)."""

    exog_names: list[str]
    exog_re_names: list[str]
    vc_names: list[str]

    @property
    def k_fe(self) -> int:
        return len(self.exog_names)

    @property
    def k_re(self) -> int:
        return len(self.exog_re_names)

    @property
    def k_vc(self) -> int:
        return len(self.vc_names)


@dataclass(eq=False)
class ChunkDesign:
    """Model arrays of the complete rows of one chunk.

    Attributes
    ----------
    xy : ndarray (n, p + 1)
        Fixed-effects design with the response as the last column.
    z : ndarray (n, k_re)
        Standard random-effects design.
    w : sparse array (n, L) or None
        Variance-component columns, in global slots (component after component).
    groups : ndarray (n,)
        Group label of each row.
    missing_by_column : ndarray (n_columns,)
        Rows with a missing value, per model column (before dropping).
    n_dropped : int
        Rows dropped because a model column was missing.
    infinite_by_column : ndarray (n_columns,)
        Rows with an infinite value, per model column (those rows are left out
        too; the model refuses them).
    kept : ndarray of bool (rows of the chunk,)
        Which rows of the chunk these arrays hold.
    """

    xy: np.ndarray
    z: np.ndarray
    w: sp.csr_array | None
    groups: np.ndarray
    missing_by_column: np.ndarray
    n_dropped: int
    kept: np.ndarray
    infinite_by_column: np.ndarray


def scan_rows(df: pd.DataFrame, columns: list[str]):
    """Missing and infinite values of the model's columns.

    Returns
    -------
    missing : ndarray (n_columns,)
        Rows with a missing value, per column.
    infinite : ndarray (n_columns,)
        Rows with +-inf, per numeric column.
    usable : ndarray of bool (n_rows,)
        Rows with neither.
    """
    na = df[columns].isna().to_numpy()
    inf = np.zeros_like(na)
    for j, col in enumerate(columns):
        values = df[col]
        if pd.api.types.is_float_dtype(values):
            inf[:, j] = np.isinf(values.to_numpy(dtype=float, na_value=np.nan))
    return na.sum(axis=0).astype(float), inf.sum(axis=0).astype(float), ~(na | inf).any(axis=1)
