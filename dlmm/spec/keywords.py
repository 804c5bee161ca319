"""Columns named with a Python keyword (``class``, ``in``, ``global``) inside a
formula's Python code.

formulaic evaluates the Python pieces of a formula (``C(class)``, ``I(x + 1)``)
as Python, where a keyword is not a name: ``C(class)`` and even ``C(`class`)``
(formulaic's backticks rename only names that are not identifiers) are syntax
errors, although lme4 reads ``(1 | class)`` and formulaic reads `` `class` `` as
a term. :func:`quote_keyword_columns` rewrites them, before formulaic sees the
text, into the spelling that Python code reads, ``Q('class')`` (statsmodels' and
formulaic's lookup of a column by its name).
"""

from __future__ import annotations

import keyword
import re

#: A keyword in backticks, or alone as the first argument of ``C( )``.
_BACKTICKED = re.compile(r"`([^`]+)`")
_BARE_IN_C = re.compile(r"(\bC\(\s*)([A-Za-z_]\w*)(\s*[,)])")


def quote_keyword_columns(text: str) -> str:
    """``text`` with each column named by a Python keyword inside parentheses written
    ``Q('name')``.

    Inside parentheses (Python code), `` `kw` `` becomes ``Q('kw')``, and so does a
    bare keyword that is the column of ``C()`` (``C(class)``: nothing else can be
    meant there). Backticks outside parentheses (a term) are formulaic's and stay.
    Any other text is returned unchanged.

    >>> quote_keyword_columns("0 + C(class)")
    "0 + C(Q('class'))"
    >>> quote_keyword_columns("y ~ `class` + I(`in` * 2)")
    "y ~ `class` + I(Q('in') * 2)"
    """
    if not isinstance(text, str) or not any(keyword.iskeyword(w)
                                            for w in re.findall(r"\w+", text)):
        return text
    text = _BARE_IN_C.sub(
        lambda m: m.group(1) + (f"Q({m.group(2)!r})" if keyword.iskeyword(m.group(2))
                                else m.group(2)) + m.group(3), text)
    out, depth, i = [], 0, 0
    while i < len(text):
        char = text[i]
        if char == "`":
            match = _BACKTICKED.match(text, i)
            if match is None:
                out.append(text[i:])
                break
            name = match.group(1)
            out.append(f"Q({name!r})" if depth and keyword.iskeyword(name) else match.group(0))
            i = match.end()
            continue
        depth += (char == "(") - (char == ")")
        out.append(char)
        i += 1
    return "".join(out)
