"""The residual model: how the rows' errors vary, beside the random-effects terms.

Today it holds precision weights (lme4's ``weights=``): row i's residual variance is
σ²/w_i. The one pass multiplies each row of the centred ``[Z | W | X y]`` by
√w_i before its cross-products, so weights enter the per-group sums of every
engine in the same pass (no row is read twice); the model's log-likelihood is
that of the scaled rows plus ½ Σ log w_i (the Jacobian of the scaling; lme4's
``logLik`` and REML criterion include it the same way), which the engines fold
into ``log|V|`` (:func:`residual_logdet`).

Weights must be positive and finite: a missing or infinite weight is counted and
named as any model column's value is; a zero or negative weight is refused in one
line naming the column and the count (lme4 accepts zero weights, and then reports
a log-likelihood of −∞; leave those rows out instead).

A residual variance per stratum (``strata``; nlme's ``varIdent(form = ~ 1 | s)``): row
i of stratum s has the residual variance σ² δ_s² (δ = 1 for the first stratum in
sorted order, the reference). AR(1) errors within groups (``ar1``, the time column;
nlme's ``corAR1(form = ~ time | g)`` with g the model's grouping factor): rows of a
group at consecutive integer times are correlated ρ^|t - t'|. Both make the
residual covariance a function of parameters φ fitted with the rest; the one pass
keeps each group's cross-products by component (:mod:`dlmm.structure.residual_pass`,
:mod:`dlmm.objective.residual_structure`), still reading each row once. Precision
weights combine with either.

The dataclass is frozen and small: the layers that need the residual model read
``spec.residual``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .checks import mentioned


@dataclass(frozen=True)
class ResidualModel:
    """The residual part of a model.

    Attributes
    ----------
    weights : str or None
        The column of precision weights (row i's residual variance is
        ``scale / w_i``); None: every row has the residual variance ``scale``.
    strata : str or None
        The column whose levels have residual variances of their own
        (``scale * delta_s**2``, delta 1 for the first level in sorted order);
        None: one residual variance.
    ar1 : str or None
        The time column of AR(1) errors within the model's groups (consecutive
        integers within a group); None: independent errors.
    """

    weights: str | None = None
    strata: str | None = None
    ar1: str | None = None

    def __post_init__(self):
        for option, value in (("weights", self.weights), ("residual_by", self.strata),
                              ("residual_ar1", self.ar1)):
            if value is not None and not isinstance(value, str):
                raise InputError(f"{option} must be a column name, got {type(value).__name__}")
            if value == "":
                raise InputError(f"{option} must be a column name, got ''")
        if self.weights is not None and self.weights == self.strata:
            raise InputError(f"column {self.weights!r} cannot be both the weights and "
                             "residual_by")

    @property
    def parametric(self) -> bool:
        """Whether the residual covariance has parameters of its own (strata, AR(1))."""
        return self.strata is not None or self.ar1 is not None

    @property
    def plain(self) -> bool:
        """Whether every row has the residual variance ``scale``, independently."""
        return self.weights is None and not self.parametric

    @property
    def weighted(self) -> bool:
        """Whether rows carry precision weights."""
        return self.weights is not None

    @property
    def columns(self) -> list[str]:
        """The data columns the residual model reads."""
        return [c for c in (self.weights, self.strata, self.ar1) if c is not None]

    @property
    def display_name(self) -> str | None:
        """The weights as the user named them (the arrays API's column is ``weights``)."""
        return "weights" if self.weights == "__weights" else self.weights

    def to_dict(self) -> dict:
        """The JSON form (a saved result's ``state``; the statistics cache key)."""
        out = {"weights": self.weights}
        if self.strata is not None:
            out["strata"] = self.strata
        if self.ar1 is not None:
            out["ar1"] = self.ar1
        return out

    @classmethod
    def from_dict(cls, state: dict | None) -> ResidualModel:
        """Rebuild from :meth:`to_dict` (None or ``{}``: unweighted)."""
        state = state or {}
        return cls(weights=state.get("weights"), strata=state.get("strata"),
                   ar1=state.get("ar1"))

    def formula_columns(self, columns, texts) -> list[str]:
        """``columns`` without those only the residual model reads (no formula of
        ``texts`` names them): their levels are not learned over the data, the residual
        pass finds the strata itself (a string stratum column would cost a pass)."""
        own = {c for c in self.columns if not any(mentioned(t, [c]) for t in texts)}
        return [c for c in columns if c not in own]

    def checked_columns(self, available) -> list[str]:
        """:attr:`columns`, each checked to be among the data's ``available`` columns
        (else one line naming it)."""
        available = list(available)
        if self.weights is not None and self.weights not in available:
            raise InputError(f"weights column {self.weights!r} is not in the data")
        if self.strata is not None and self.strata not in available:
            raise InputError(f"residual_by column {self.strata!r} is not in the data")
        if self.ar1 is not None and self.ar1 not in available:
            raise InputError(f"residual_ar1 time column {self.ar1!r} is not in the data")
        return self.columns

    def row_weights(self, df: pd.DataFrame) -> np.ndarray | None:
        """The weights of the rows of ``df`` as float64 (None when unweighted)."""
        if self.weights is None:
            return None
        values = df[self.weights]
        if not (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)):
            raise InputError(f"weights column {self.weights!r} is not numeric "
                             f"(dtype {values.dtype})")
        return values.to_numpy(dtype=float, na_value=np.nan)


def weights_error(column: str, bad: int) -> InputError:
    """The one-line refusal of zero or negative weights."""
    return InputError(
        f"weights column {column!r} has {bad} zero or negative value(s); precision weights "
        "must be positive (leave those rows out)")


def residual_logdet(pieces, log_weights: float):
    """``pieces`` with ``logdet`` = log|V| of the weighted model: the scaled rows'
    log|C| minus Σ log w (a new object; the same one when unweighted). Works for any
    engine's pieces (a ``logdet`` field) and for Newton pieces (their ``value``)."""
    if not log_weights:
        return pieces
    if hasattr(pieces, "value") and not hasattr(pieces, "logdet"):
        return replace(pieces, value=residual_logdet(pieces.value, log_weights))
    return replace(pieces, logdet=pieces.logdet - log_weights)
