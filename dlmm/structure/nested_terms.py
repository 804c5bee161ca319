"""A model of random-effects terms whose factors nest, on the nested engine.

The terms' factors, outermost first (the layout's ``levels``: the nesting chain of the
formula, ``school`` ⊂ ``school:class``, or factors the data must show nested,
``schoolid`` and ``childid``), are the engine's levels. A row's code at a level is the
code of the columns its factor adds to the one before (``class`` in ``school:class``:
the node is the tuple of codes, so class labels may repeat across schools); a factor
that is a column of its own (``childid``) is coded by itself and the pass checks that
each of its levels lies in one level of the factor before (:mod:`dlmm.structure.nested`).
A level's random-effect columns are its terms' columns side by side, in the layout's
order; ``Lambda_l`` comes from θ by the layout (:class:`~dlmm.spec.theta_layout.ThetaLayout`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec.terms_spec import product_codes, product_values
from .nested import NestedStatistics, RowsOnceDesign, nested_pass


class TermsNestedDesign(RowsOnceDesign):
    """A chunk's rows as the nested pass reads them, from a learned
    :class:`~dlmm.spec.terms_spec.TermsSpec` and its layout."""

    def __init__(self, spec, layout):
        self.spec = spec
        chain = [tuple(f) for f in layout.levels]
        self.factor_names = tuple(":".join(f) for f in chain)
        self.own_codes = []
        self._radix = []
        before: tuple = ()
        for factor in chain:
            extends = set(before) <= set(factor)
            new = [c for c in factor if c not in before] if extends else list(factor)
            self.own_codes.append(not extends or not before)
            self._radix.append([(c, len(spec.levels[c])) for c in new])
            before = factor
        self.own_codes = tuple(self.own_codes)
        self._level_terms = [[k for k, lv in enumerate(layout.term_level) if lv == level]
                             for level in range(len(chain))]
        self._order = [sorted(terms, key=lambda k: layout.term_columns[k].start)
                       for terms in self._level_terms]

    def rows(self, frame: pd.DataFrame) -> tuple:
        design = self.spec.design(frame)
        xy, _ = self.spec.centering.apply(design.xy, design.z)
        codes, columns = self.spec.term_rows(frame, design.kept)
        n = xy.shape[0]
        level_codes = [product_codes(codes, radix, n) for radix in self._radix]
        designs = [np.hstack([columns[k] for k in order]) if order else np.zeros((n, 0))
                   for order in self._order]
        if design.weights is not None:  # rows times sqrt(w) (dlmm.spec.residual)
            sw = np.sqrt(design.weights)[:, None]
            xy, designs = xy * sw, [d * sw for d in designs]
        return (level_codes, designs, xy,
                (design.n_dropped, design.missing_by_column, design.infinite_by_column,
                 design.log_weights, design.bad_weights))


    def labels(self, level: int, keys: np.ndarray, order) -> list[str]:
        """Labels of level ``level``'s nodes from their codes ``(n, level + 1)``: the
        values of the columns ``order`` (the factor's, as lme4 writes it), joined by
        ``:`` (``"1:2"``)."""
        values: dict = {}
        for radix_level in ([level] if self.own_codes[level] else range(level + 1)):
            values.update(product_values(keys[:, radix_level], self._radix[radix_level],
                                         self.spec.levels))
        return [":".join(str(v) for v in row) for row in zip(*(values[c] for c in order))]


def terms_pass(spec, layout, backend, progress=None) -> NestedStatistics:
    """The one pass of a learned terms model whose factors nest (in the order of
    ``layout.levels``) on the nested engine; θ in the layout's order."""
    directions = layout.dlambdas()
    return nested_pass(TermsNestedDesign(spec, layout), backend, layout.to_lambdas,
                       lambda theta: directions, progress)
