"""Checks of bad input that the specification makes before and during the pass.

Each raises an :class:`~dlmm.InputError` whose one line names the column,
value or size at fault: text mixed with numbers, numbers with missing-value
markers, times used as numbers, repeated column names, values too large for
the sums of products, a dense fixed-effects design too large to hold, and
formulaic's errors made plain. No math, no Dask.
"""

from __future__ import annotations

import keyword
import re

import numpy as np
import pandas as pd
from formulaic import Formula

from ..exceptions import InputError

#: Largest magnitude of a design value: the kernels form fourth powers of the
#: values (the Hessian pieces), which must not overflow a float64.
MAX_ABS_VALUE = 1e64

#: Largest dense fixed-effects design, in bytes of its cross-product ``[X y]'[X y]``
#: (kept per partition, on the driver, and in the Hessian): about 16,000 columns.
MAX_CROSS_BYTES = 2 * 1024**3

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


#: Text that stands for a missing value in files written by other tools (pandas'
#: ``read_csv`` defaults and the usual spellings), compared without case and blanks.
MISSING_MARKERS = frozenset({
    "", "-", "--", ".", "?", "na", "n/a", "n.a.", "nan", "-nan", "null", "none", "nil",
    "missing", "#n/a", "#n/a n/a", "#na", "<na>", "-1.#ind", "-1.#qnan", "1.#ind",
    "1.#qnan",
})


def formula_error(exc: Exception, text: str = "", columns=()) -> str:
    """formulaic's error (or the ``SyntaxError`` of a formula's Python code) as one
    plain line: no ANSI colour codes, the marked place of the fault in quotes, and
    a hint for a column name that needs backticks (such as `x 1`) or is a Python
    keyword (such as ``class``, which :mod:`dlmm.spec.keywords` rewrites as
    ``Q('class')`` inside ``C()`` and in backticks)."""
    if isinstance(exc, SyntaxError):
        code = " ".join(str(exc.text or "").split())
        out = f"invalid Python code {code!r}" if code else "invalid Python code"
    else:
        message = _ANSI.sub("", str(exc))
        first, _, rest = message.partition("\n")
        out = " ".join(first.split()).rstrip(".")
        marked = re.search("\u29db(.*?)\u29da", rest)
        if marked:
            out += f" (at {marked.group(1)!r})"
    word = next((str(c) for c in columns if keyword.iskeyword(str(c)) and re.search(
        r"(?<![\w.'\"])" + re.escape(str(c)) + r"(?![\w'\"])", text)), None)
    if word is not None:
        return (out + f"; column {word!r} is named with a Python keyword: in Python code "
                f"such as I() write it `{word}` or Q({word!r})")
    odd = [str(c) for c in columns if not str(c).isidentifier() and str(c) in text
           and f"`{c}`" not in text]
    if odd:
        out += (f"; a column name that is not a Python identifier needs backticks, "
                f"e.g. `{odd[0]}`")
    return out


def repeated_names(columns: list[str]) -> dict[str, int]:
    """Column names that occur more than once, with their counts."""
    counts = pd.Series(columns, dtype=object).value_counts()
    return {str(k): int(v) for k, v in counts[counts > 1].items()}


def check_text_column(name: str, values: pd.Series) -> None:
    """Refuse an object column that mixes text and numbers: it cannot be sorted
    into levels (and means something went wrong upstream)."""
    values = values.dropna()
    if not len(values):
        return
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("mixed", "mixed-integer"):
        is_text = values.map(lambda v: isinstance(v, (str, bytes)))
        text, number = values[is_text], values[~is_text]
        raise InputError(
            f"column {name!r} mixes text and numbers (e.g. {text.iloc[0]!r} and "
            f"{number.iloc[0]!r}); make it numeric (text such as 'n/a' as missing) or "
            "text throughout"
        )


def check_text_levels(name: str, levels: list) -> str | None:
    """Whether the text column ``name``, used as a term (not in ``C()``), with
    the distinct values ``levels`` (over the whole data set) may be a factor.

    Text columns are factors, as in formulaic, statsmodels and lme4, also when
    some or all of their values look like numbers (grades ``K, 1, 2, 3``). The
    one exception is a numeric column damaged on its way: numbers whose only
    other values are missing-value markers (:data:`MISSING_MARKERS`, such as
    ``'n/a'``) would silently become a factor with a level per number.

    Returns
    -------
    str or None
        A message for the log when the values look like numbers (the column is
        fitted as a factor all the same), else None.

    Raises
    ------
    InputError
        Numbers and missing-value markers only.
    """
    values = pd.Series([v for v in levels if isinstance(v, str)], dtype=object)
    if not len(values):
        return None
    numeric = pd.to_numeric(values, errors="coerce").notna()
    if not numeric.any():
        return None
    words = values[~numeric]
    if len(words) and words.map(lambda v: " ".join(v.split()).lower() in MISSING_MARKERS).all():
        raise InputError(
            f"column {name!r} is text, but its values are numbers (e.g. "
            f"{values[numeric].iloc[0]!r}) except {words.iloc[0]!r}, a missing-value marker; "
            "make it numeric (text such as 'n/a' as missing), or write "
            f"C({name}) to use it as a factor"
        )
    example = f"{values[numeric].iloc[0]!r}" + (f" and {words.iloc[0]!r}" if len(words) else "")
    return (f"column {name!r} is text (values such as {example}): fitted as a factor of "
            f"{len(levels)} levels, as statsmodels does; make it numeric to fit it as a number")


def check_time_column(name: str, values: pd.Series) -> None:
    """Refuse a column of times or durations used as a term (not in ``C()``): a
    number needs a unit and an origin that the data do not give."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("datetime64", "datetime", "date", "timedelta64", "timedelta", "time",
                "period"):
        raise InputError(
            f"column {name!r} holds times ({values.dtype}), which dlmm does not turn into "
            "numbers: add a numeric column in the unit you mean (e.g. days since a date), "
            f"or write C({name}) to use it as a factor"
        )


def size_text(n_bytes: float) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes:.0f} bytes"


def mentioned(text: str, columns) -> set[str]:
    """Data columns that appear as whole identifiers in a formula text."""
    found = set()
    for col in columns:
        name = str(col)
        if re.search(r"(?<![\w.])" + re.escape(name) + r"(?![\w])", text):
            found.add(name)
    return found


def check_design_size(formula: str, levels: dict[str, list]) -> None:
    """Refuse, from the learned levels and before any design is built, a dense
    fixed-effects design too large to hold: a factor of many levels belongs in
    a random effect (the groups, or a variance component).

    The columns are counted term by term: a term has the product of the level
    counts of the factors it names (an upper bound that ignores the one level
    a contrast drops).
    """
    counts = {c: max(1, len(v)) for c, v in levels.items()}
    if not counts or max(counts.values()) < 1000:
        return
    parsed = Formula(formula, _ordering="none")
    terms = list(parsed.rhs) if hasattr(parsed, "rhs") else list(parsed)
    n_columns, worst, worst_levels = 0, None, 0
    for term in terms:
        size = 1
        for factor in term.factors:
            for col in mentioned(str(factor), counts) | (
                    {str(factor)} & set(counts)):
                size *= counts[col]
                if counts[col] > worst_levels:
                    worst, worst_levels = col, counts[col]
        n_columns += size
    need = 8.0 * (n_columns + 1) ** 2  # [X y]'[X y]
    if need > MAX_CROSS_BYTES:
        raise InputError(
            f"the fixed effects of {formula!r} would have about {n_columns:,} columns "
            f"(column {worst!r} has {worst_levels:,} levels): their cross-product alone "
            f"needs {size_text(need)} (at most {size_text(MAX_CROSS_BYTES)}); model a factor with "
            f"that many levels as a random effect (groups={worst!r}, or a variance "
            f"component vc_formula={{{worst!r}: '0 + C({worst})'}})"
        )


def check_magnitude(xy: np.ndarray, z: np.ndarray, w, names: list[str]) -> None:
    """Refuse values beyond :data:`MAX_ABS_VALUE` (their cross-products and the
    Hessian's products of them overflow), naming the design column (``names``:
    those of ``xy``, then of ``z``)."""
    def column_peaks(a: np.ndarray) -> np.ndarray:
        # column by column: NumPy's reduction over axis 0 of a row-major (n, k) array
        # took 20 ms per 500,000 rows, a column's own max and min 0.3 ms
        if not a.size:
            return np.zeros(a.shape[1])
        return np.array([max(a[:, j].max(), -a[:, j].min()) for j in range(a.shape[1])])

    peak = np.concatenate([column_peaks(xy), column_peaks(z)])
    if peak.size and peak.max() > MAX_ABS_VALUE:
        j = int(np.argmax(peak))
        raise InputError(
            f"design column {names[j]!r} has values as large as {peak[j]:.3g} in magnitude "
            f"(at most {MAX_ABS_VALUE:.0e}: the likelihood's sums of their products "
            "would overflow); rescale the column (e.g. change its units)"
        )
    if w is not None and w.nnz and np.max(np.abs(w.data)) > MAX_ABS_VALUE:
        raise InputError(
            f"a variance-component column has values as large as "
            f"{np.max(np.abs(w.data)):.3g} in magnitude (at most {MAX_ABS_VALUE:.0e}); "
            "rescale it"
        )
