"""Centring of the design for the one pass: shifts learned once, applied to every chunk.

Sums of raw values cancel catastrophically when a column sits far from zero
(a response around 1e8, a covariate in epoch seconds): ``S = K - H'MH`` and
``qf`` lose every digit. The model is invariant to shifting a column by a
constant when the intercept is in the column space, so the one pass sums
shifted columns instead, and the driver maps the estimates back exactly
(:mod:`dlmm.objective.shift`):

* ``[X y]``: with an intercept column in ``X``, every other column of ``X`` and
  the response are shifted by their sample means; this reparameterizes only the
  intercept.
* ``Z``: with an intercept column in ``Z``, the other random-effect columns are
  shifted by their sample means, ``Z = Z_c U`` with ``U = I + e_0 m'``.

Without an intercept the shift of that part is zero (nothing changes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _intercept(columns: np.ndarray) -> int | None:
    """0 when the first column is 1 in every row, else None.

    Only a first intercept counts: lme4-style dropping of collinear columns
    (``drop_collinear``) keeps the first column, so the shifts stay valid.
    """
    if columns.shape[0] == 0 or columns.shape[1] == 0:
        return None
    return 0 if bool(np.all(columns[:, 0] == 1.0)) else None


def _shifts(columns: np.ndarray, intercept: int | None) -> np.ndarray:
    shift = np.zeros(columns.shape[1])
    if intercept is not None and columns.shape[0]:
        shift = np.mean(columns, axis=0)
        shift[intercept] = 0.0
        shift[~np.isfinite(shift)] = 0.0
    return shift


@dataclass
class Centering:
    """Shifts of the design columns (zero where nothing is shifted).

    Attributes
    ----------
    xy_shift : ndarray (p + 1,)
        Subtracted from each column of ``[X y]`` (0 for the intercept).
    z_shift : ndarray (k_re,)
        Subtracted from each column of ``Z`` (0 for its intercept).
    x_intercept, z_intercept : int or None
        The intercept columns of ``X`` and ``Z`` (0: the first one), or None.
    """

    xy_shift: np.ndarray
    z_shift: np.ndarray
    x_intercept: int | None = None
    z_intercept: int | None = None

    @classmethod
    def none(cls, n_xy: int, k_re: int) -> Centering:
        return cls(np.zeros(n_xy), np.zeros(k_re))

    @classmethod
    def learn(cls, xy: np.ndarray, z: np.ndarray) -> Centering:
        """Shifts from a sample's design: the sample means, where an intercept allows."""
        x_int = _intercept(xy[:, :-1])
        z_int = _intercept(z)
        return cls(_shifts(xy, x_int), _shifts(z, z_int), x_int, z_int)

    @property
    def shifts_z(self) -> bool:
        return bool(np.any(self.z_shift != 0))

    def apply(self, xy: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[X y] - xy_shift`` and ``Z - z_shift`` (new arrays; the inputs are kept)."""
        return xy - self.xy_shift, z - self.z_shift

    def drop_fixed_columns(self, keep: np.ndarray) -> None:
        """Forget the shifts of fixed-effect columns that are dropped (``keep`` over X)."""
        keep = np.asarray(keep, dtype=bool)
        if self.x_intercept is not None and not keep[self.x_intercept]:
            raise ValueError("the intercept (the first column) is never dropped")
        self.xy_shift = self.xy_shift[np.append(keep, True)]
