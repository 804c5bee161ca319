"""statsmodels' forms of a model's inputs, turned into dlmm's.

* group labels given as values (``groups=data["Pig"]``, statsmodels' documented
  form): the data's own column when the Series is one (same name, same values),
  else a new column of the labels;
* ``exog_vc`` as statsmodels' ``VCSpec`` (duck-typed: ``names``, ``colnames``,
  ``mats``, the groups in sorted order), as the ``{name: {group: matrix}}`` dict
  :mod:`dlmm.spec.arrays` reads;
* ``free`` and ``start_params`` as statsmodels' ``MixedLMParams`` (duck-typed:
  ``cov_re``, ``vcomp`` and optionally ``fe_params``).

statsmodels is never imported: its objects are recognised by their attributes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .formula import GROUP_VALUES_COLUMN


def attach_groups(data, groups, from_path: bool) -> tuple[object, str, str | None]:
    """Group labels given as values: ``(data, group column, the labels' name)``.

    A pandas Series that is a column of ``data`` (its name, its values, its index)
    is that column; any other labels (an array, a renamed or recomputed Series, a
    Dask Series) become the column ``__dlmm_groups__``, and the Series' name, if
    any, is returned so that predictions for new data can find the labels there.
    """
    name = getattr(groups, "name", None)
    name = None if name is None else str(name)
    if from_path:  # Parquet path(s): no frame to add a column to
        raise InputError("with Parquet input, groups must name a column of the data")
    if hasattr(groups, "npartitions"):  # a Dask Series aligned with a Dask frame
        return data.assign(**{GROUP_VALUES_COLUMN: groups}), GROUP_VALUES_COLUMN, name
    if isinstance(groups, pd.Series) and isinstance(data, pd.DataFrame) \
            and name in data.columns and groups.index.equals(data.index) \
            and data[name].equals(groups):
        return data, name, name
    values = np.asarray(groups)
    if values.ndim != 1 or values.shape[0] != len(data):
        raise InputError(f"groups must be a column name or one label per row ({len(data)} "
                         f"rows), got an array of shape {values.shape}")
    if hasattr(data, "npartitions"):
        raise InputError("with a Dask DataFrame, groups must be a column name or a Dask "
                         "Series")
    return data.assign(**{GROUP_VALUES_COLUMN: values}), GROUP_VALUES_COLUMN, name


#: statsmodels' FutureWarning for ``exog_vc`` as ``{name: {group: matrix}}`` (its words first)
DEPRECATED_VC_DICT = ("Using deprecated variance components format: exog_vc as a dict of "
                      "{group: matrix} dicts; pass statsmodels' VCSpec instead")


def is_vc_dict_of_groups(exog_vc) -> bool:
    """``exog_vc`` in statsmodels' deprecated form, ``{name: {group: matrix}}`` (dlmm's
    own ``{name: (n, L) array}``, aligned with the rows, is not that form)."""
    return isinstance(exog_vc, dict) and any(isinstance(v, dict) for v in exog_vc.values())


def is_vcspec(exog_vc) -> bool:
    """statsmodels' ``VCSpec`` (or anything with its three attributes)."""
    return all(hasattr(exog_vc, a) for a in ("names", "colnames", "mats")) \
        and not isinstance(exog_vc, dict)


def vcspec_to_dict(exog_vc, groups) -> dict:
    """``VCSpec(names, colnames, mats)`` -> ``{name: {group: matrix}}``.

    ``mats[k][i]`` is the design of component ``k`` for the ``i``-th group in
    sorted order of the labels (statsmodels' convention), with that group's rows
    in data order.
    """
    labels = np.unique(np.asarray(groups))
    names = list(exog_vc.names)
    mats = list(exog_vc.mats)
    if len(mats) != len(names):
        raise InputError(f"exog_vc (a VCSpec) has {len(names)} names and {len(mats)} lists "
                         "of matrices")
    out = {}
    for name, per_group in zip(names, mats):
        per_group = list(per_group)
        if len(per_group) != len(labels):
            raise InputError(f"exog_vc component {name!r} has {len(per_group)} matrices; "
                             f"there are {len(labels)} groups (one matrix each, in sorted "
                             "order of the labels)")
        out[str(name)] = {label: np.asarray(m, dtype=float)
                          for label, m in zip(labels.tolist(), per_group)}
    return out


def vcspec_column_names(exog_vc) -> list[list[str]]:
    """Column names per component from a ``VCSpec``'s ``colnames`` (sorted by component
    name, as the components are): column ``j`` takes the name every group gives it, or
    ``name[j]`` where the groups disagree."""
    out = {}
    for name, per_group in zip(exog_vc.names, exog_vc.colnames):
        per_group = [list(map(str, c)) for c in per_group]
        width = max((len(c) for c in per_group), default=0)
        names = []
        for j in range(width):
            given = {c[j] for c in per_group if len(c) > j}
            names.append(given.pop() if len(given) == 1 else f"{name}[{j}]")
        out[str(name)] = names
    return [out[k] for k in sorted(out)]


def is_params_object(obj) -> bool:
    """A ``MixedLMParams``, dlmm's or statsmodels' (``cov_re`` and ``vcomp``)."""
    return hasattr(obj, "cov_re") and hasattr(obj, "vcomp") and not isinstance(
        obj, (np.ndarray, list, tuple, pd.Series))
