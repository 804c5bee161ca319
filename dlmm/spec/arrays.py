"""Model specification from arrays (statsmodels' ``MixedLM(endog, exog, groups)``).

The arrays are put side by side in one pandas frame with reserved column
names, so that the one pass is the same code as for formulas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import InputError
from .centering import Centering
from .design import ChunkDesign, ModelNames, scan_rows
from .residual import ResidualModel

_Y, _G, _W = "__y", "__group", "__weights"
CENTERING_SAMPLE_ROWS = 2000  # rows the shifts are learned from (see dlmm.spec.centering)


def _names(obj, default_prefix: str, k: int) -> list[str]:
    if isinstance(obj, pd.DataFrame):
        return [str(c) for c in obj.columns]
    if isinstance(obj, pd.Series) and obj.name is not None:
        return [str(obj.name)]
    return [f"{default_prefix}{i + 1}" for i in range(k)]


def _is_frame(obj) -> bool:
    """A pandas or Dask DataFrame or Series."""
    if isinstance(obj, (pd.Series, pd.DataFrame)):
        return True
    return type(obj).__module__.startswith(("dask.dataframe", "dask_expr")) \
        and hasattr(obj, "index")


def _as_2d(obj, what: str) -> np.ndarray:
    arr = np.asarray(obj)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputError(f"{what} must be 1- or 2-dimensional, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what} is not numeric (dtype {arr.dtype})")
    return arr.astype(float)


def _vc_row_aligned(exog_vc, groups: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Variance-component designs as one (n, L) array per component.

    Accepts statsmodels' ``{name: {group: matrix}}`` (rows of each group in
    data order) or ``{name: (n, L) array}`` with rows aligned to the data. A
    group's component effects are its nonzero columns; equal column numbers in
    different groups are different random effects.
    """
    out = {}
    for name in sorted(exog_vc):
        value = exog_vc[name]
        if isinstance(value, dict):
            width = max((np.atleast_2d(np.asarray(m)).shape[1] for m in value.values()),
                        default=0)
            mat = np.zeros((n, width))
            order = np.argsort(groups, kind="stable")
            sorted_groups = groups[order]
            for label, m in value.items():  # one entry per group of the user's dict
                m = np.asarray(m, dtype=float)
                m = m[:, None] if m.ndim == 1 else m
                lo = np.searchsorted(sorted_groups, label, side="left")
                hi = np.searchsorted(sorted_groups, label, side="right")
                if hi - lo != m.shape[0]:
                    raise InputError(
                        f"exog_vc[{name!r}][{label!r}] has {m.shape[0]} rows, "
                        f"group {label!r} has {hi - lo}"
                    )
                mat[np.sort(order[lo:hi]), : m.shape[1]] = m
            out[name] = mat
        else:
            mat = _as_2d(value, f"exog_vc[{name!r}]")
            if mat.shape[0] != n:
                raise InputError(f"exog_vc[{name!r}] has {mat.shape[0]} rows, endog has {n}")
            out[name] = mat
    return out


class ArraySpec(ModelNames):
    """A mixed-model specification from arrays; ``frame`` holds the data."""

    #: The residual model (precision weights; :mod:`dlmm.spec.residual`).
    residual: ResidualModel = ResidualModel()

    def __init__(self, endog, exog, groups, exog_re=None, exog_vc=None, weights=None):
        # statsmodels' wrapper convention: pandas results when endog or exog is a pandas
        # (or Dask) object, ndarrays otherwise (groups and exog_re do not count).
        self.pandas_input = _is_frame(endog) or _is_frame(exog)
        y = np.asarray(endog)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise InputError(f"endog must be one column, got shape {y.shape}")
        if y.dtype.kind not in "biuf":
            raise InputError(f"endog is not numeric (dtype {y.dtype})")
        n = y.shape[0]
        x = _as_2d(exog, "exog")
        if x.shape[0] != n:
            raise InputError(f"exog has {x.shape[0]} rows, endog has {n}")
        if isinstance(exog, (pd.DataFrame, pd.Series)):
            self.exog_names = _names(exog, "x", x.shape[1])
        else:
            # statsmodels: one zero-variance column is "const", the others x1, x2, ...
            names = [f"x{i + 1}" for i in range(x.shape[1])]
            with np.errstate(invalid="ignore", divide="ignore"):
                variance = np.nanvar(x, axis=0) if n else np.ones(x.shape[1])
            constant = np.flatnonzero(variance == 0)  # NaN-safe: a missing value is not 0
            if x.shape[1] and constant.size:
                names = names[:-1]
                names.insert(int(constant[0]), "const")
            self.exog_names = names
        self.response = str(endog.name) if isinstance(endog, pd.Series) and endog.name else "y"

        if groups is None:
            g = np.zeros(n, dtype=np.int64)
        else:
            g = np.asarray(groups)
            if g.ndim != 1 or g.shape[0] != n:
                raise InputError(f"groups must have one label per row ({n}), got shape {g.shape}")
        self.group_name = "Group"  # statsmodels' name in the arrays form, whatever groups is

        vc = _vc_row_aligned(exog_vc or {}, g, n)
        if exog_re is None:
            z = np.ones((n, 1)) if not vc else np.zeros((n, 0))
            self.exog_re_names = [self.group_name] if not vc else []
        else:
            z = _as_2d(exog_re, "exog_re")
            if z.shape[0] != n:
                raise InputError(f"exog_re has {z.shape[0]} rows, endog has {n}")
            self.exog_re_names = _names(exog_re, "x_re", z.shape[1])
        self.vc_names = list(vc)
        self.vc_column_names = [
            [f"{name}[{j}]" for j in range(mat.shape[1])] for name, mat in vc.items()
        ]

        cols = {_Y: y.astype(float)}
        self._x_cols = [f"__x{j}" for j in range(x.shape[1])]
        self._z_cols = [f"__z{j}" for j in range(z.shape[1])]
        self._vc_cols = [
            [f"__vc{k}_{j}" for j in range(mat.shape[1])] for k, mat in enumerate(vc.values())
        ]
        cols.update(zip(self._x_cols, x.T))
        cols.update(zip(self._z_cols, z.T))
        for names, mat in zip(self._vc_cols, vc.values()):
            cols.update(zip(names, mat.T))
        if weights is not None:
            wts = np.asarray(weights)
            if wts.ndim != 1 or wts.shape[0] != n:
                raise InputError(f"weights must have one value per row ({n}), got shape "
                                 f"{wts.shape}")
            if wts.dtype.kind not in "biuf":
                raise InputError(f"weights is not numeric (dtype {wts.dtype})")
            cols[_W] = wts.astype(float)
            self.residual = ResidualModel(weights=_W)
        cols[_G] = g
        self.frame = pd.DataFrame(cols)
        self.columns = [c for c in self.frame.columns]
        self._value_columns = [c for c in self.columns if c not in (_G, _W)]
        self.groups = _G
        self.slot_component = np.concatenate(
            [np.full(len(c), k, dtype=np.int64) for k, c in enumerate(self._vc_cols)]
            or [np.zeros(0, dtype=np.int64)]
        )
        self.stateful = False
        self.column_labels = (
            [self.response] + self.exog_names + self.exog_re_names
            + [n for names in self.vc_column_names for n in names]
            + (["weights"] if weights is not None else []) + [self.group_name]
        )

        sample = self.design(self.frame.head(CENTERING_SAMPLE_ROWS))
        self.centering = Centering.learn(sample.xy, sample.z)

    def drop_fixed_columns(self, keep: np.ndarray) -> None:
        """Leave out fixed-effect columns (``keep`` over the current ones)."""
        keep = np.asarray(keep, dtype=bool)
        self._x_cols = [c for c, k in zip(self._x_cols, keep) if k]
        self.exog_names = [n for n, k in zip(self.exog_names, keep) if k]
        self.centering.drop_fixed_columns(keep)

    def design(self, df: pd.DataFrame) -> ChunkDesign:
        missing, infinite, usable = scan_rows(df, self.columns)
        n_dropped = int((~usable).sum())
        if not usable.all():
            df = df.loc[usable]
        xy = df[self._x_cols + [_Y]].to_numpy(dtype=float)
        z = df[self._z_cols].to_numpy(dtype=float)
        w = None
        flat_vc = [c for names in self._vc_cols for c in names]
        if flat_vc:
            w = sp.csr_array(df[flat_vc].to_numpy(dtype=float))
        return ChunkDesign(
            xy=xy, z=z, w=w, groups=df[_G].to_numpy(), missing_by_column=missing,
            n_dropped=n_dropped, kept=usable, infinite_by_column=infinite,
        ).with_weights(self.residual.row_weights(df))
