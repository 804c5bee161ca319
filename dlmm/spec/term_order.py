"""A formula's terms in patsy's order, which statsmodels' column names follow."""

from __future__ import annotations

import pandas as pd
from formulaic import Formula, model_matrix


def patsy_ordered(text: str, prototype: pd.DataFrame, context=None):
    """The formula with its terms in patsy's (and so statsmodels') order.

    formulaic orders terms by degree; patsy, and statsmodels' column names
    after it, put the intercept first, then the terms made only of
    categorical factors (by degree), then the other terms grouped by their
    numeric factors in order of appearance (each group by degree). ``context``:
    names the data do not have (:class:`~dlmm.spec.formula.FormulaSpec`'s).
    """
    parsed = Formula(text, _ordering="none")
    structured = hasattr(parsed, "rhs")
    rhs_terms = list(parsed.rhs if structured else parsed)
    # The terms themselves, not their text: a column named with a space (`x 1`)
    # prints without its backticks and would not parse again.
    probe = model_matrix(Formula(rhs_terms or ["0"], _ordering="none"), prototype,
                         na_action="ignore", context=context or {})
    categorical = set(probe.model_spec.factor_contrasts)
    first = [t for t in rhs_terms if t.degree == 0]
    rest = [t for t in rhs_terms if t.degree > 0]
    cats = sorted((t for t in rest if all(f in categorical for f in t.factors)),
                  key=lambda t: t.degree)
    by_numeric: dict[tuple, list] = {}
    for term in rest:
        if term in cats:
            continue
        key = tuple(sorted(str(f) for f in term.factors if f not in categorical))
        by_numeric.setdefault(key, []).append(term)
    ordered = first + cats + [t for group in by_numeric.values()
                              for t in sorted(group, key=lambda t: t.degree)]
    rhs = Formula(ordered, _ordering="none")
    if structured:
        return Formula(lhs=Formula(list(parsed.lhs), _ordering="none"), rhs=rhs,
                       _ordering="none")
    return rhs
