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
    weights : ndarray (n,) or None
        Precision weights of these rows (positive), when the model has them
        (:mod:`dlmm.spec.residual`); the arrays above are not scaled.
    bad_weights : int
        Rows left out for a zero or negative weight (the model refuses them).
    """

    xy: np.ndarray
    z: np.ndarray
    w: sp.csr_array | None
    groups: np.ndarray
    missing_by_column: np.ndarray
    n_dropped: int
    kept: np.ndarray
    infinite_by_column: np.ndarray
    weights: np.ndarray | None = None
    bad_weights: int = 0

    def weighted_arrays(self, xy: np.ndarray, z: np.ndarray):
        """``(xy, z, w)`` -- the given (centred) ``xy`` and ``z`` of these rows and the
        component columns -- each row times √w (new arrays), or as they are when the
        rows carry no weights."""
        if self.weights is None:
            return xy, z, self.w
        sw = np.sqrt(self.weights)
        w = None if self.w is None else sp.csr_array(sp.diags_array(sw) @ self.w)
        return xy * sw[:, None], z * sw[:, None], w

    @property
    def log_weights(self) -> float:
        """Σ log w over these rows (0 without weights)."""
        return 0.0 if self.weights is None else float(np.log(self.weights).sum())

    def with_weights(self, weights: np.ndarray | None) -> ChunkDesign:
        """This design with the rows' precision weights (``weights`` over its rows,
        None: unweighted); rows with a zero or negative weight are left out and
        counted in ``bad_weights``."""
        if weights is None:
            return self
        ok = weights > 0
        self.weights = weights[ok]
        self.bad_weights = int((~ok).sum())
        if self.bad_weights:
            self.xy, self.z = self.xy[ok], self.z[ok]
            self.w = None if self.w is None else sp.csr_array(self.w[ok])
            self.groups = self.groups[ok]
            kept = self.kept.copy()
            kept[np.flatnonzero(kept)[~ok]] = False
            self.kept = kept
        return self


def rows_all(mask: np.ndarray) -> np.ndarray:
    """``mask.all(axis=1)`` of a 2-d boolean array of few columns, column by column (numpy's
    reduction along a short last axis costs some ten times more)."""
    out = np.ones(mask.shape[0], dtype=bool)
    for j in range(mask.shape[1]):  # a few model columns
        out &= mask[:, j]
    return out


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
    return na.sum(axis=0).astype(float), inf.sum(axis=0).astype(float), rows_all(~(na | inf))
