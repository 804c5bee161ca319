"""Labels of new data matched to a fit's labels by value, across numbers and text.

A fit keeps its group labels (and factor levels) as the data gave them: the
integer ``7``, or the text ``"7"``. New data may hold the same labels in the
other type (a CSV read as text, a Parquet file written from another tool), and
matching by type alone would take every group as unseen. So, where the fit's
labels are numbers and the new data's text (or the reverse), a label matches
the fit's label of equal numeric value (``"7"``, ``"7.0"`` and ``7``); labels of
one type match exactly, as before. Text that reads as no number matches nothing
(an unseen group). Where several of the fit's text labels read as one number
(``"7"`` and ``"07"``), a number of the new data that equals it is refused: it
names no single label.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd

from ..exceptions import InputError

#: ``pandas.api.types.infer_dtype`` kinds of numeric labels (booleans are not numbers).
NUMBER_KINDS = frozenset({"integer", "floating", "mixed-integer-float", "decimal"})


def label_kind(values) -> str:
    """``"text"``, ``"number"``, or pandas' inferred kind of anything else (``"empty"``,
    ``"boolean"``, ``"mixed"``...)."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "string":
        return "text"
    return "number" if kind in NUMBER_KINDS else kind


def _numbers(values) -> np.ndarray:
    """``values`` read as float numbers (NaN where text reads as no number)."""
    return pd.to_numeric(pd.Series(np.asarray(values, dtype=object)),
                         errors="coerce").to_numpy(dtype=float)


class LabelMatcher:
    """The fit's labels, matched by value (see the module docstring).

    Parameters
    ----------
    labels : array_like
        The fit's labels (group labels, or a factor's levels), unique.
    what : str
        What they are, for errors (``"group label"``).
    """

    def __init__(self, labels, what: str = "label"):
        self.labels = pd.Index(labels)
        self.what = what

    @cached_property
    def kind(self) -> str:
        return label_kind(self.labels)

    @cached_property
    def _text_as_numbers(self) -> tuple[pd.Index, np.ndarray, dict]:
        """For text labels: the numbers they read as (those only one label reads as),
        their positions, and the numbers several labels read as, with those labels."""
        values = _numbers(self.labels)
        ok = np.isfinite(values)
        numbers = pd.Series(values[ok])
        positions = np.flatnonzero(ok)
        repeated = numbers.duplicated(keep=False).to_numpy()
        ambiguous: dict = {}
        for value, pos in zip(numbers[repeated], positions[repeated]):
            ambiguous.setdefault(float(value), []).append(self.labels[pos])
        return pd.Index(numbers[~repeated]), positions[~repeated], ambiguous

    def get_indexer(self, values, column: str | None = None) -> np.ndarray:
        """Position of each value among the fit's labels, -1 where none matches.

        Raises
        ------
        InputError
            A number equal to what several of the fit's text labels read as.
        """
        values = np.asarray(values)
        index = self.labels.get_indexer(values)
        if not values.size or {self.kind, label_kind(values)} != {"number", "text"}:
            return index
        if self.kind == "number":  # text of the new data read as numbers
            by_value = self.labels.get_indexer(_numbers(values))
        else:  # numbers of the new data against what the fit's text reads as
            numbers, positions, ambiguous = self._text_as_numbers
            wanted = _numbers(values)
            for value, labels in ambiguous.items():
                if np.any(wanted == value):
                    where = f" of column {column!r}" if column else ""
                    raise InputError(
                        f"{self.what} {value:g}{where} in the new data matches the fit's "
                        f"labels {', '.join(map(repr, labels))}: give the labels as text")
            found = numbers.get_indexer(wanted)
            by_value = np.where(found >= 0, positions[np.maximum(found, 0)], -1)
        return np.where(index >= 0, index, by_value)
