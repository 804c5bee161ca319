"""Indicator columns of one categorical factor, without formulaic's per-level cost.

A variance component ``0 + C(f)`` (and its spellings, see
:func:`dlmm.spec.crossed.indicator_factor`) is the indicator matrix of the
levels of ``f``: row ``i`` has a single 1 in the column of its level. formulaic
builds it through dense per-level encoding whose cost grows with the number of
levels (InstEval's 2,972 students: about a third of a second for a sample of
2,000 rows, once when learning and again for each design of a sample), where
the whole matrix is one ``pandas.Categorical`` away. :class:`IndicatorSpec`
stands in for formulaic's learned ``ModelSpec`` of such a component: the same
column names (checked against formulaic itself on two levels), the same matrix
(a level the fit never saw gives a row of zeros, as formulaic does).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp


class IndicatorSpec:
    """The learned spec of the component ``0 + C(factor)`` over fixed ``levels``.

    Attributes
    ----------
    factor : str
        The data column.
    levels : pandas.Index
        Its learned levels, in column order.
    column_names : tuple of str
        formulaic's names, ``C(f)[level]`` (or ``f[level]`` for ``0 + f``).
    transform_state : dict
        Empty: nothing is learned from the data (the ``stateful`` test reads it).
    """

    transform_state: dict = {}

    def __init__(self, factor: str, levels, column_names) -> None:
        self.factor = factor
        self.levels = pd.Index(levels)
        self.column_names = tuple(column_names)

    def get_model_matrix(self, frame: pd.DataFrame, context=None) -> sp.csr_array:
        """``W`` (n x levels, CSR): ``W[i, code_i] = 1``; unseen levels give zero rows.
        ``context`` (formulaic's argument) is not needed."""
        values = frame[self.factor]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object)
        codes = self.levels.get_indexer(values).astype(np.int64)
        n = codes.shape[0]
        rows = np.flatnonzero(codes >= 0)
        return sp.csr_array((np.ones(rows.size), (rows, codes[rows])),
                            shape=(n, len(self.levels)))


def indicator_spec(text: str, factor: str | None, prototype: pd.DataFrame):
    """An :class:`IndicatorSpec` for the component formula ``text`` of ``factor``, or
    None when the fast path does not apply (then formulaic learns the component).

    It applies when ``factor`` (from :func:`~dlmm.spec.crossed.indicator_factor`) is a
    ``pandas.Categorical`` column of the prototype (its levels learned over the whole
    data) with at least two levels, and formulaic names its first two levels as this
    module does.
    """
    from formulaic import model_matrix

    if factor is None or factor not in prototype.columns:
        return None
    column = prototype[factor]
    if not isinstance(column.dtype, pd.CategoricalDtype) or len(column.cat.categories) < 2:
        return None
    levels = column.cat.categories
    stem = f"C({factor})" if "C(" in text else factor
    names = [f"{stem}[{level}]" for level in levels]
    probe = pd.DataFrame({factor: pd.Categorical(levels[:1], categories=levels[:2])})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = model_matrix("~ " + text.strip().lstrip("~"), probe, output="sparse")
        except Exception:  # formulaic's own error is raised by its own path
            return None
    if list(expected.model_spec.column_names) != names[:2]:
        return None
    return IndicatorSpec(factor, levels, names)
