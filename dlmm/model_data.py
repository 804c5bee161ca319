"""``model.data``: statsmodels' model-data object for a dlmm model.

statsmodels keeps a model's names and arrays in ``model.data`` (a
``statsmodels.base.data.ModelData``, ``PandasData`` for pandas input), and code
around models reads it: ``summary_col`` reads ``param_names``, users read
``xnames``, ``ynames``, ``exog_re_names``, ``frame``. :class:`ModelDataView`
gives those from the dlmm model, lazily (nothing is read before a name or an
array is asked for; the names of a formula model are learned on first use).

When statsmodels is installed, ``model.data`` is an instance of a class made
of :class:`ModelDataView` and statsmodels' own ``PandasData`` (pandas, Dask or
Parquet input, and formulas) or ``ModelData`` (arrays), so ``isinstance`` and
statsmodels' ``wrap_output`` / ``attach_*`` work; those classes are made on
first use (``import dlmm`` does not import statsmodels) and are module
attributes, so they pickle by name. Without statsmodels it is a
:class:`ModelDataView` itself, with the same attributes.

The arrays (``endog``, ``exog``, ``exog_re``, ``groups``, ``orig_endog``,
``orig_exog``, ``row_labels``) are those of the rows the fit uses and exist for
in-memory data only, as the model's (for Dask or Parquet data they would bring
every row to the driver, and say so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .objective.params import packed_names


class ModelDataView:
    """statsmodels' ``model.data`` attributes, read from a dlmm model.

    Attributes
    ----------
    frame
        The data as given (a pandas or Dask frame, Parquet path(s)), for models made
        from formulas (statsmodels' ``data.frame``); a model from arrays has none.
    formula : str or None
    xnames, ynames, param_names, cov_names : names as statsmodels has them
        (``param_names`` and ``cov_names`` can be set, as there).
    exog_re_names, exog_re_names_full, vcomp_names : statsmodels' ``MixedLM`` names:
        random-effect columns, their variance and covariance parameters, components.
    k_constant, const_idx : the intercept (``Intercept`` or ``const``), if any.
    wraps_pandas : bool
        Whether statsmodels would give pandas outputs for this input (its
        ``PandasData``): pandas, Dask or Parquet data and formulas, not ndarrays.
    """

    def __init__(self, model, wraps_pandas: bool):
        self._model = model
        self.wraps_pandas = bool(wraps_pandas)
        self._param_names = None
        self._cov_names = None
        self._cache = {}  # statsmodels' cached attributes live here

    # -- the data as given -------------------------------------------------------------

    @property
    def frame(self):
        source = self._model._source
        if getattr(self._model.spec, "formula", None) is None:
            raise AttributeError("a model made from arrays has no data frame "
                                 "(statsmodels' data.frame is that of formula models)")
        return source

    @property
    def formula(self) -> str | None:
        return getattr(self._model.spec, "formula", None)

    # -- names ---------------------------------------------------------------------------

    @property
    def xnames(self) -> list[str]:
        return list(self._model.exog_names)

    @property
    def ynames(self) -> str:
        return self._model.endog_names

    @property
    def param_names(self) -> list[str]:
        return list(self._param_names or self._model.param_names)

    @param_names.setter
    def param_names(self, values) -> None:
        self._param_names = values

    @property
    def cov_names(self) -> list[str]:
        return list(self._cov_names or self.param_names)

    @cov_names.setter
    def cov_names(self, values) -> None:
        self._cov_names = values

    def _default_intercept(self) -> bool:
        """statsmodels' arrays form with no exog_re and no components: its names are
        ``"Group Var"`` for the column and the parameter alike."""
        return bool(getattr(self._model, "_default_re", False))

    @property
    def exog_re_names(self) -> list[str]:
        if self._default_intercept():
            return ["Group Var"]
        return list(self._model.exog_re_names)

    @property
    def exog_re_names_full(self) -> list[str]:
        if self._default_intercept():
            return ["Group Var"]
        return packed_names(list(self._model.exog_re_names), [])

    @property
    def vcomp_names(self) -> list[str]:
        return list(self._model.spec.vc_names)

    @property
    def k_constant(self) -> int:
        return int(self.const_idx is not None)

    @property
    def const_idx(self) -> int | None:
        names = self.xnames
        for name in ("Intercept", "const"):
            if name in names:
                return names.index(name)
        return None

    # -- the rows (in-memory data only) ----------------------------------------------------

    @property
    def row_labels(self):
        """The index of the rows the fit uses (pandas input), else None."""
        if not self.wraps_pandas:
            return None
        return self._model._row_labels()

    @property
    def endog(self) -> np.ndarray:
        return self._model.endog

    @property
    def exog(self) -> np.ndarray:
        return self._model.exog

    @property
    def exog_re(self) -> np.ndarray:
        return self._model.exog_re

    @property
    def groups(self) -> np.ndarray:
        return self._model.groups

    @property
    def orig_endog(self):
        """The response as statsmodels keeps it: a Series for pandas input."""
        if not self.wraps_pandas:
            return self.endog
        return pd.Series(self.endog, index=self.row_labels, name=self.ynames)

    @property
    def orig_exog(self):
        """The fixed-effects design as statsmodels keeps it: a DataFrame for pandas input."""
        if not self.wraps_pandas:
            return self.exog
        return pd.DataFrame(self.exog, index=self.row_labels, columns=self.xnames)


def _statsmodels_class(name: str):
    """``ModelDataView`` joined with statsmodels' class of that name (made once)."""
    from statsmodels.base import data as sm_data

    return type(f"Statsmodels{name}", (ModelDataView, getattr(sm_data, name)), {
        "__module__": __name__,
        "__doc__": f"dlmm's model data as statsmodels' ``{name}`` (see :mod:`{__name__}`)."})


_CLASSES: dict[str, type] = {}


def __getattr__(name: str):
    # StatsmodelsModelData and StatsmodelsPandasData, made on first use (they import
    # statsmodels); as module attributes they pickle by name.
    if name in ("StatsmodelsModelData", "StatsmodelsPandasData"):
        base = name.removeprefix("Statsmodels")
        if base not in _CLASSES:
            _CLASSES[base] = _statsmodels_class(base)
        return _CLASSES[base]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_data(model, wraps_pandas: bool) -> ModelDataView:
    """The model's ``data``: statsmodels' class when statsmodels is installed."""
    try:
        import statsmodels.base.data  # noqa: F401
    except ImportError:
        return ModelDataView(model, wraps_pandas)
    cls = __getattr__("StatsmodelsPandasData" if wraps_pandas else "StatsmodelsModelData")
    out = cls.__new__(cls)
    ModelDataView.__init__(out, model, wraps_pandas)
    return out
