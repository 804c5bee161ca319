"""Additive containers: what a map step returns and a reduce step adds.

Every field is a sum over groups (or rows), so two containers for disjoint
sets of groups combine with ``+``. ``zeros`` gives the identity of that sum.
The Dask layer only ever calls ``+`` on these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


class _Additive:
    """Field-wise ``+`` for dataclasses whose fields are arrays or floats."""

    def __add__(self, other):
        if other == 0:  # lets ``sum(list_of_pieces)`` start from 0
            return self
        if type(other) is not type(self):
            return NotImplemented
        return type(self)(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def __radd__(self, other):
        return self.__add__(other)


@dataclass(eq=False)
class LikelihoodPieces(_Additive):
    """Sums over groups that the profiled log-likelihood and its gradient need.

    With ``r = p + 1`` (fixed effects and the response), ``q`` random-effect
    columns per group (``k_re`` standard ones, then variance components),
    ``C_i = I + Lambda' G_i Lambda`` and ``M_i = Lambda C_i^{-1} Lambda'``:

    Attributes
    ----------
    logdet : float
        ``sum_i log|C_i|`` (equal to ``sum_i log|V_i|``).
    hmh : ndarray (r, r)
        ``sum_i H_i' M_i H_i``; the driver forms ``S = K - hmh``.
    p_re : ndarray (k_re, k_re)
        ``sum_i P_i[:k_re, :k_re]`` where ``P_i = A_i' V_i^{-1} A_i``.
    p_vc : ndarray (k_vc,)
        ``sum_i trace`` of the diagonal block of ``P_i`` of each component.
    t_re : ndarray (k_re, k_re, r, r)
        ``sum_i outer(R_i[a], R_i[b])`` for standard random-effect columns a, b,
        where ``R_i = A_i' V_i^{-1} [X_i y_i]`` (row a of R_i has length r).
    t_vc : ndarray (k_vc, r, r)
        ``sum_i sum_{a in component k} outer(R_i[a], R_i[a])``.
    n_groups : float
        Number of groups summed (a check that every group was seen once).
    """

    logdet: float
    hmh: np.ndarray
    p_re: np.ndarray
    p_vc: np.ndarray
    t_re: np.ndarray
    t_vc: np.ndarray
    n_groups: float

    @classmethod
    def zeros(cls, k_re: int, k_vc: int, r: int) -> LikelihoodPieces:
        return cls(
            logdet=0.0,
            hmh=np.zeros((r, r)),
            p_re=np.zeros((k_re, k_re)),
            p_vc=np.zeros(k_vc),
            t_re=np.zeros((k_re, k_re, r, r)),
            t_vc=np.zeros((k_vc, r, r)),
            n_groups=0.0,
        )


@dataclass(eq=False)
class RowTotals(_Additive):
    """Sums over rows that do not depend on the groups.

    Attributes
    ----------
    xy_cross : ndarray (r, r)
        ``K = sum_rows [x y]' [x y]``.
    n_rows : float
        Rows used in the fit.
    n_dropped : float
        Rows dropped for missing values (``missing="drop"``).
    missing_by_column : ndarray (n_columns,)
        Rows with a missing value, counted per model column (in the order of
        the model specification's ``columns``).
    infinite_by_column : ndarray (n_columns,)
        Rows with an infinite value, per model column.
    z_cross : ndarray (k_re, k_re)
        ``sum_rows Z' Z`` (identifiability of the random-effects design).
    log_weights : float
        ``sum_rows log w`` of the rows used, with precision weights (the sums
        above are then of rows times √w; :mod:`dlmm.spec.residual`).
    bad_weights : float
        Rows with a zero or negative weight (left out; the model refuses them).
    """

    xy_cross: np.ndarray
    n_rows: float
    n_dropped: float
    missing_by_column: np.ndarray
    infinite_by_column: np.ndarray
    z_cross: np.ndarray
    log_weights: float = 0.0
    bad_weights: float = 0.0
