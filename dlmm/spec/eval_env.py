"""The names a formula takes from the caller's code (statsmodels' ``eval_env``).

statsmodels evaluates formulas in the namespace of the code that builds the
model: ``y ~ times_two(x)`` with ``def times_two`` in the calling function or
module. dlmm does the same, but keeps only what the formulas name and the data
do not have: a formula's names are looked up in the data first (as formulaic
does), then in this context. The context travels with the specification to
every chunk, on Dask workers too, where it arrives pickled (by Dask's pickle,
cloudpickle where needed): a function defined in a module travels by its name
and the workers must be able to import that module; one defined in a script,
a notebook or inside a function travels by value, with what it refers to. Only
the named objects are shipped, never the rest of the caller's namespace.

``eval_env`` takes statsmodels' values: None or an int ``k`` (the namespace of
the code ``k`` frames above the one that called dlmm, 0 that caller; frames
inside dlmm do not count, so ``mixedlm``, ``MixedLM.from_formula`` and
``lmer`` see the same caller), -1 (no names but the data's and formulaic's own
transforms), or a mapping of names to values.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from formulaic import Formula
from formulaic.errors import FormulaicError

from ..exceptions import InputError


def formula_names(texts: Iterable[str]) -> set[str]:
    """The names the formulas read (columns, functions, modules), as formulaic finds
    them; a formula that does not parse gives none (its error comes later, in words)."""
    out: set[str] = set()
    for text in texts:
        try:
            out |= set(Formula(text).required_variables)
        except (FormulaicError, SyntaxError, ValueError):
            continue
    return out


def _outside_dlmm(frame):
    """The first frame, from ``frame`` up, whose code is not dlmm's own."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != "dlmm" and not name.startswith("dlmm."):
            return frame
        frame = frame.f_back
    return None


def capture(texts: Iterable[str], eval_env=None) -> dict:
    """``{name: value}`` of the names the formulas ``texts`` read that the namespace of
    ``eval_env`` (see the module docstring) holds: the caller's locals, then its globals.

    Raises
    ------
    InputError
        ``eval_env`` is none of None, an int of -1 or more, a mapping; or there are
        fewer frames than it asks to go up.
    """
    if isinstance(eval_env, Mapping):
        namespaces = [eval_env]
    elif eval_env is None or (isinstance(eval_env, int) and not isinstance(eval_env, bool)):
        depth = 0 if eval_env is None else int(eval_env)
        if depth == -1:
            return {}
        if depth < -1:
            raise InputError(f"eval_env must be -1 (no names), 0 or more, got {depth}")
        frame = _outside_dlmm(sys._getframe(1))
        for _ in range(depth):
            frame = None if frame is None else frame.f_back
        if frame is None:
            raise InputError(f"eval_env={depth} goes above the outermost frame")
        namespaces = [frame.f_locals, frame.f_globals]
    else:
        raise InputError("eval_env must be None, an int (frames above the caller; -1 for "
                         f"none) or a dict of names, got {type(eval_env).__name__}")
    out = {}
    for name in formula_names(texts):
        for namespace in namespaces:
            if name in namespace:
                out[name] = namespace[name]
                break
    return out
