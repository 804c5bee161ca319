"""Is a model crossed? Its factors and global level codes, from the learned specification.

statsmodels states crossed random effects as one group that holds every row,
with one variance component per factor, each the indicator columns of the
factor's levels::

    mixedlm("y ~ service", data, groups=None, re_formula="0",
            vc_formula={"s": "0 + C(s)", "d": "0 + C(d)"})

Such a model goes to the crossed engine (:mod:`dlmm.structure.crossed`)
instead of one dense group. :func:`crossed_layout` says whether a learned
:class:`~dlmm.spec.formula.FormulaSpec` is of that form; a pure function of the
specification (its formulas and learned levels), except that whether a group
*column* is constant is a fact of the data, passed in as ``group_levels``.

A model is crossed when, in its list of terms (:func:`dlmm.spec.terms.learned_terms`),

* every row is in one group: ``groups=None``, or a group column with one value;
* it has no standard random effects (``re_formula="0"``, or none with
  variance components);
* every variance component is one intercept per level of one categorical
  factor (``0 + C(f)``, or ``C(f) - 1``, ``-1 + C(f)``, or ``0 + f`` for a column
  learned as categorical: :func:`indicator_factor` reads the spellings).

Anything else (a random slope on the one group, components that are not
plain indicators, several groups) stays with the grouped engine.

The level codes of a chunk are global (the learned levels, in order, the same
on every partition): :func:`crossed_design` reads them from the factor columns
and builds the rest of the design; :meth:`CrossedLayout.codes` reads them from
a variance-component design ``W``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .design import ChunkDesign


@dataclass(frozen=True)
class CrossedLayout:
    """The crossed factors of a model.

    Attributes
    ----------
    factors : tuple of str
        The data column of each variance component, in the specification's
        component order (``vc_names``, sorted by name).
    n_levels : tuple of int
        Learned levels of each factor (the component's number of columns).
    slot_offsets : tuple of int
        First global variance-component column (slot) of each component.
    levels : tuple of lists
        The learned levels of each factor, in column order.
    """

    factors: tuple
    n_levels: tuple
    slot_offsets: tuple
    levels: tuple = ()

    @property
    def n_factors(self) -> int:
        return len(self.factors)

    def codes(self, w) -> list[np.ndarray]:
        """Global level codes of each row, per factor, from the rows' component design.

        Parameters
        ----------
        w : sparse array (n, sum of n_levels), CSR
            The chunk's variance-component columns (``ChunkDesign.w``).

        Raises
        ------
        InputError
            If a row does not have exactly one indicator (value 1) per factor.
        """
        n = w.shape[0]
        k = self.n_factors
        w = w.tocsr()
        if not w.has_sorted_indices:
            w = w.copy()
            w.sort_indices()
        per_row = np.diff(w.indptr)
        cols = w.indices.reshape(-1, k) if per_row.size and np.all(per_row == k) else None
        if n and (cols is None or not np.all(w.data == 1.0)):
            raise InputError("a crossed variance component is not one indicator per row; "
                             "this model cannot take the crossed engine")
        if not n:
            return [np.zeros(0, dtype=np.int64) for _ in range(k)]
        offsets = np.asarray(self.slot_offsets, dtype=np.int64)
        codes = cols.astype(np.int64) - offsets[None, :]
        bad = (codes < 0) | (codes >= np.asarray(self.n_levels, dtype=np.int64)[None, :])
        if bad.any():
            raise InputError("a crossed variance component is not one indicator per row; "
                             "this model cannot take the crossed engine")
        return [np.ascontiguousarray(codes[:, j]) for j in range(k)]


def crossed_layout(spec, group_levels: list | None = None) -> CrossedLayout | None:
    """The crossed factors of a learned specification, or None if it is not crossed.

    Parameters
    ----------
    spec : FormulaSpec (learned)
        Anything else (arrays) is not crossed.
    group_levels : list, optional
        Distinct values of the group column, when the specification has one
        (``spec.groups`` not None): the model is crossed only if there is one.
    """
    if not getattr(spec, "_learned", False) or not hasattr(spec, "vc_formula"):
        return None
    if not hasattr(spec, "levels"):
        return None
    if spec.groups is not None and (group_levels is None or len(group_levels) != 1):
        return None
    if spec.k_re != 0 or spec.k_vc == 0:
        return None
    from .terms import learned_terms

    # the model's terms: each component one intercept per level of one factor
    group = () if spec.groups is None else (spec.groups,)
    by_name = {t.component: t for t in learned_terms(spec)}
    factors = []
    for name, columns in zip(spec.vc_names, spec.vc_column_names):
        term = by_name.get(name)
        if term is None or term.structure != "scalar" or term.formula != "1" \
                or term.factor[:len(group)] != group or len(term.factor) != len(group) + 1:
            return None
        factor = term.factor[-1]
        levels = spec.levels.get(factor)
        if levels is None or len(levels) != len(columns) or not len(columns):
            return None
        factors.append(factor)
    counts = [len(c) for c in spec.vc_column_names]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    return CrossedLayout(tuple(factors), tuple(counts), tuple(int(o) for o in offsets),
                         tuple(list(spec.levels[f]) for f in factors))


def crossed_design(spec, layout: CrossedLayout, frame: pd.DataFrame
                   ) -> tuple[ChunkDesign, list[np.ndarray]]:
    """A chunk's design without the variance-component columns, and the global level
    codes of its rows (those the design kept), per factor.

    The component columns are indicators whose only information is each row's
    level; building them through formulaic costs time per level (thousands of
    levels, every chunk), so the codes come from the factor columns directly
    (``pandas.Categorical`` over the learned levels) and ``ChunkDesign.w`` is None.
    Missing values in factor columns are counted and dropped (or refused) by the
    design as for any model column.
    """
    light = copy.copy(spec)
    if hasattr(light, "_vc_specs"):
        light._vc_specs = []  # the same design, without W
    design = light.design(frame)
    codes = []
    for factor, levels in zip(layout.factors, layout.levels):
        values = frame[factor].to_numpy()[design.kept]
        code = pd.Categorical(values, categories=levels).codes.astype(np.int64)
        if code.size and code.min() < 0:
            bad = values[np.flatnonzero(code < 0)[0]]
            raise InputError(f"column {factor!r} has level {bad!r} that was not learned")
        codes.append(code)
    return design, codes


def component_only_columns(spec) -> dict[str, list[int]]:
    """Categorical columns read only by variance-component formulas, and the components
    that read each (neither the fixed effects, nor ``re_formula``, nor ``groups``).

    A level of such a column that the fit never saw has no random effect: its
    effect is zero in a prediction, as for a group the fit never saw.
    """
    from formulaic import Formula

    levels = getattr(spec, "levels", None)
    if not levels or not getattr(spec, "vc_formula", None):
        return {}
    other = set(Formula(spec.formula).required_variables)
    if spec.re_formula is not None:
        other |= set(Formula(str(spec.re_formula)).required_variables)
    if spec.groups is not None:
        other.add(spec.groups)
    out: dict[str, list[int]] = {}
    for k, name in enumerate(spec.vc_names):
        for column in Formula(spec.vc_formula[name]).required_variables:
            if column in levels and column not in other:
                out.setdefault(column, []).append(k)
    return out
