"""Centring and scaling of the design for the one pass: learned once, applied to every chunk.

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

Columns whose values are very large or very small (a covariate times 1e20, a
response times 1e-100) make the parameters as badly scaled: a random slope's
variance 1e-40 beside an intercept's 1e3, products of fourth order that
underflow. So, after the shift, a column (not an intercept) whose largest
magnitude in the sample is far from 1 (outside :data:`UNSCALED_RANGE`) is
divided by a power of two near it (``xy_scale``, ``z_scale``): exact in binary
floating point, and the map back is again a change of parameters (``beta_j``
times ``scale_y / scale_j``; ``Z = Z_s E U`` with ``E = diag(z_scale)``; the
scale times ``scale_y^2``; the log-likelihood plus the log-Jacobian).
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


#: Columns whose largest magnitude (after the shift) lies in this range are not scaled:
#: their parameters are within about 1e10 of each other, which the optimizer handles
#: (sleepstudy's Days times 1e-6 to 1e6 fitted lme4's estimates before columns were
#: scaled; times 1e9 did not). So ordinary data are summed exactly as before.
UNSCALED_RANGE = (2.0**-16, 2.0**16)


def _scales(columns: np.ndarray, intercept: int | None) -> np.ndarray:
    """For each column whose largest magnitude is outside :data:`UNSCALED_RANGE`, the
    power of two at or below it (the column then peaks in [1, 2)); 1 for the others,
    the intercept, and a column that is all zero or not finite in the sample."""
    scale = np.ones(columns.shape[1])
    if not columns.shape[0]:
        return scale
    peak = np.max(np.abs(columns), axis=0)
    low, high = UNSCALED_RANGE
    ok = np.isfinite(peak) & (peak > 0) & ((peak < low) | (peak >= high))
    if intercept is not None:
        ok[intercept] = False
    scale[ok] = np.ldexp(1.0, np.frexp(peak[ok])[1] - 1)
    return scale


@dataclass
class Centering:
    """Shifts and scales of the design columns (0 and 1 where nothing changes).

    Attributes
    ----------
    xy_shift : ndarray (p + 1,)
        Subtracted from each column of ``[X y]`` (0 for the intercept).
    z_shift : ndarray (k_re,)
        Subtracted from each column of ``Z`` (0 for its intercept).
    x_intercept, z_intercept : int or None
        The intercept columns of ``X`` and ``Z`` (0: the first one), or None.
    xy_scale : ndarray (p + 1,), optional
        Each shifted column of ``[X y]`` is divided by it (powers of two; 1 for the
        intercept). Default: ones.
    z_scale : ndarray (k_re,), optional
        Likewise for ``Z``. Default: ones.
    """

    xy_shift: np.ndarray
    z_shift: np.ndarray
    x_intercept: int | None = None
    z_intercept: int | None = None
    xy_scale: np.ndarray | None = None
    z_scale: np.ndarray | None = None

    def __post_init__(self):
        self.xy_shift = np.asarray(self.xy_shift, dtype=float)
        self.z_shift = np.asarray(self.z_shift, dtype=float)
        self.xy_scale = np.ones(self.xy_shift.shape[0]) if self.xy_scale is None else \
            np.asarray(self.xy_scale, dtype=float)
        self.z_scale = np.ones(self.z_shift.shape[0]) if self.z_scale is None else \
            np.asarray(self.z_scale, dtype=float)

    @classmethod
    def none(cls, n_xy: int, k_re: int) -> Centering:
        return cls(np.zeros(n_xy), np.zeros(k_re))

    @classmethod
    def learn(cls, xy: np.ndarray, z: np.ndarray) -> Centering:
        """Shifts and scales from a sample's design: the sample means, where an
        intercept allows, then a power of two near each shifted column's largest
        magnitude."""
        x_int = _intercept(xy[:, :-1])
        z_int = _intercept(z)
        xy_shift, z_shift = _shifts(xy, x_int), _shifts(z, z_int)
        return cls(xy_shift, z_shift, x_int, z_int, _scales(xy - xy_shift, x_int),
                   _scales(z - z_shift, z_int))

    def to_dict(self) -> dict:
        """The shifts and scales as plain data (:meth:`from_dict` reads them back)."""
        return {"xy_shift": self.xy_shift.tolist(), "z_shift": self.z_shift.tolist(),
                "x_intercept": self.x_intercept, "z_intercept": self.z_intercept,
                "xy_scale": self.xy_scale.tolist(), "z_scale": self.z_scale.tolist()}

    @classmethod
    def from_dict(cls, state: dict) -> Centering:
        """:meth:`to_dict`'s data (without scales, as written before columns were
        scaled: ones)."""
        return cls(state["xy_shift"], state["z_shift"], state["x_intercept"],
                   state["z_intercept"], state.get("xy_scale"), state.get("z_scale"))

    @property
    def shifts_z(self) -> bool:
        """Whether the random-effect columns change (shifted or scaled)."""
        return bool(np.any(self.z_shift != 0) or np.any(self.z_scale != 1))

    @property
    def y_scale(self) -> float:
        """The response's scale."""
        return float(self.xy_scale[-1])

    def apply(self, xy: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``([X y] - xy_shift) / xy_scale`` and ``(Z - z_shift) / z_scale`` (new arrays;
        the inputs are kept). The scales are powers of two: the division is exact."""
        return (xy - self.xy_shift) / self.xy_scale, (z - self.z_shift) / self.z_scale

    def drop_fixed_columns(self, keep: np.ndarray) -> None:
        """Forget the shifts of fixed-effect columns that are dropped (``keep`` over X)."""
        keep = np.asarray(keep, dtype=bool)
        if self.x_intercept is not None and not keep[self.x_intercept]:
            raise ValueError("the intercept (the first column) is never dropped")
        self.xy_shift = self.xy_shift[np.append(keep, True)]
        self.xy_scale = self.xy_scale[np.append(keep, True)]
