"""A model of random-effects terms, learned once and applied to every chunk of rows.

:class:`TermsSpec` is the fixed part of :class:`~dlmm.spec.formula.FormulaSpec`
(response and fixed effects, their levels, shifts and scales, missing values) plus
the list of random-effects terms (:mod:`dlmm.spec.terms`): each term's design is a
formula that formulaic learns once from the same prototype, and each grouping column's
values are learned over the whole data set like a factor's levels, so that a chunk's
rows get global codes. :meth:`TermsSpec.term_rows` gives, for the complete rows of a
chunk, the codes of every grouping column and each term's columns.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from formulaic import model_matrix
from formulaic.errors import FormulaicError

from ..exceptions import InputError
from .checks import formula_error
from .formula import FormulaSpec
from .residual import ResidualModel
from .term_order import patsy_ordered
from .terms import RandomTerms


class TermsSpec(FormulaSpec):
    """The fixed part of ``formula`` and the random-effects ``terms``.

    Parameters
    ----------
    formula : str
        ``"y ~ x1 + x2"``: response and fixed effects (lme4's formula without its bars).
    terms : RandomTerms
        The random-effects terms, each with a formula (lme4's spelling gives them).
    residual : ResidualModel, optional
        Precision weights (:mod:`dlmm.spec.residual`); default none.
    """

    def __init__(self, formula: str, terms: RandomTerms,
                 residual: ResidualModel | None = None):
        super().__init__(formula, None, re_formula="0", residual=residual)
        if any(t.formula is None for t in terms):
            raise InputError("a random-effects term of array columns needs the statsmodels "
                             "spelling (exog_re, exog_vc)")
        self.terms = terms

    @property
    def grouping_columns(self) -> list[str]:
        """Every column of a grouping factor, in order of first appearance."""
        out: list[str] = []
        for t in self.terms:
            out += [c for c in t.factor if c not in out]
        return out

    def _texts(self) -> list[tuple[str, str]]:
        return super()._texts() + [(f"the term {t.source or t.group!r}", "~ " + t.formula)
                                   for t in self.terms]

    def required_columns(self, available) -> list[str]:
        used = set(super().required_columns(available))
        avail = [str(c) for c in available]
        missing = [c for c in self.grouping_columns if c not in avail]
        if missing:
            raise InputError(f"grouping column {missing[0]!r} is not in the data "
                             f"(columns: {', '.join(avail[:20])})")
        used |= set(self.grouping_columns)
        return [c for c in avail if c in used]

    def categorical_columns(self, sample: pd.DataFrame) -> list[str]:
        """The fixed part's factors, and every grouping column: their values over the
        whole data set make the rows' global codes."""
        return sorted(set(super().categorical_columns(sample)) | set(self.grouping_columns))

    def learn(self, prototype: pd.DataFrame) -> TermsSpec:
        super().learn(prototype)
        self._term_specs = []
        self.term_column_names = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t in self.terms:
                try:
                    mm = model_matrix(patsy_ordered("~ " + t.formula, prototype), prototype,
                                      na_action="ignore", output="numpy")
                except FormulaicError as exc:
                    raise InputError(f"the term {t.source or t.group!r} failed: "
                                     f"{formula_error(exc, t.formula, self.columns)}") from None
                self._term_specs.append(mm.model_spec)
                self.term_column_names.append(list(mm.model_spec.column_names))
        return self

    def n_levels(self) -> dict[tuple, int]:
        """Each grouping factor's number of possible levels (the product over its
        columns: an upper bound for an interaction)."""
        return {t.factor: int(np.prod([len(self.levels[c]) for c in t.factor]))
                for t in self.terms}

    def term_rows(self, frame: pd.DataFrame, kept: np.ndarray
                  ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        """For the rows ``kept`` of a chunk (``ChunkDesign.kept``): each grouping
        column's codes (positions among its learned values) and each term's columns."""
        rows = self._factor_frame(frame.loc[kept]) if not kept.all() else \
            self._factor_frame(frame)
        codes = {}
        for c in self.grouping_columns:
            values = rows[c]
            if isinstance(values.dtype, pd.CategoricalDtype) and \
                    list(values.cat.categories) == self.levels[c]:
                codes[c] = values.cat.codes.to_numpy().astype(np.int64)
            else:
                codes[c] = pd.Categorical(values, categories=self.levels[c]).codes.astype(
                    np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            columns = [np.asarray(s.get_model_matrix(rows), dtype=float).reshape(
                len(rows), len(names)) for s, names in zip(self._term_specs,
                                                          self.term_column_names)]
        return codes, columns


def product_codes(codes: dict[str, np.ndarray], radix: list[tuple[str, int]],
                  n: int) -> np.ndarray:
    """One code per row for an interaction factor: the mixed-radix number whose digits
    are its columns' codes, ``code = (...(c_1 l_2 + c_2) l_3 + ...) + c_k`` for the
    ``radix`` ``[(column, levels), ...]`` (an empty ``radix``: 0 for every row)."""
    code = np.zeros(n, dtype=np.int64)
    for column, size in radix:
        code = code * size + codes[column]
    return code


def product_values(code: np.ndarray, radix: list[tuple[str, int]],
                   levels: dict[str, list]) -> dict[str, np.ndarray]:
    """The inverse of :func:`product_codes`: each column's value (among ``levels``) for
    every product code."""
    code = np.asarray(code, dtype=np.int64)
    values = {}
    for column, size in reversed(radix):
        values[column] = np.asarray(levels[column], dtype=object)[code % size]
        code = code // size
    return values

