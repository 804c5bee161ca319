"""Which column a variance-component formula is the indicators of: ``0 + C(f)``.

statsmodels states a random intercept per level of a factor ``f`` as the variance
component ``0 + C(f)`` (also ``C(f) - 1``, ``-1 + C(f)``, and ``0 + f`` for a
column learned as categorical). Compiling statsmodels' spelling into terms
(:func:`dlmm.spec.terms.from_statsmodels`) reads formulas with it, and the choice
of engine then reads the terms (:func:`dlmm.spec.crossed.crossed_layout`).
"""

from __future__ import annotations

import re

#: a column: a word of any alphabet (dots allowed), any name in backticks, or Q('name')
_NAME = r"([^\W\d][\w.]*|`[^`]+`|Q\(\s*'[^']+'\s*\)|Q\(\s*\"[^\"]+\"\s*\))"
_INDICATOR = [
    re.compile(r"^(?:0|-\s*1)\s*\+\s*C\(\s*" + _NAME + r"\s*\)$"),
    re.compile(r"^C\(\s*" + _NAME + r"\s*\)\s*(?:\+\s*0|-\s*1)$"),
    re.compile(r"^(?:0|-\s*1)\s*\+\s*" + _NAME + r"$"),
    re.compile(r"^" + _NAME + r"\s*(?:\+\s*0|-\s*1)$"),
]


def indicator_factor(text: str) -> str | None:
    """The column ``f`` of a variance-component formula ``0 + C(f)`` (and its
    spellings), or None for any other formula."""
    body = " ".join(str(text).split())
    if body.startswith("~"):
        body = body[1:].strip()
    for pattern in _INDICATOR:
        match = pattern.match(body)
        if match:
            name = match.group(1)
            quoted = re.fullmatch(r"Q\(\s*(['\"])(.+)\1\s*\)", name)
            return quoted.group(2) if quoted else name.strip("`")
    return None
