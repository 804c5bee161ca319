"""Saved formulas are data: check them before formulaic evaluates any of them.

formulaic evaluates the Python pieces of a formula (``np.log(x)``, ``I(x**2)``,
``C(c)``) with ``eval``, so a formula read from a file (a saved result's
``result.json``) could run any code: ``I(np.__builtins__['exec'](...))``.
:func:`check_saved_formula` accepts only what dlmm itself writes and refuses
the rest, before formulaic sees the text.

What is accepted
----------------
The formula is cut into tokens by formulaic's own tokenizer (no evaluation),
then

* names: column names (plain or backtick-quoted, as formulaic supports);
* numbers (``0``, ``1``, ``-1``, ``2.5``);
* the operators ``~ + - * / ** : |`` and parentheses;
* Python pieces, parsed with :mod:`ast` and accepted only when every node is
  one of: a column name; a number; arithmetic (``+ - * / // % **``, unary
  ``+ -``); a call of a name in :data:`ALLOWED_CALLS` (``C``, ``I``,
  ``np.log``, ``np.exp``, ``np.sqrt``, ``log``, ``center``, ``scale``, ...)
  with such arguments; ``Q('column')`` (a column by its name, e.g. one named
  with a Python keyword); and, inside ``C()``, a contrast from
  :data:`ALLOWED_CONTRASTS` (optionally called with numbers or strings) and
  ``levels=[...]`` of numbers or strings.

No attribute access (except the dotted names of the two lists), no
subscripts, no other calls, no keyword arguments beyond ``C``'s ``levels``
and ``contr``, no names starting with an underscore.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

from ..exceptions import InputError

#: Callables a saved formula may call, by their dotted name.
ALLOWED_CALLS = frozenset({
    "C", "I", "Q", "center", "scale", "standardize", "log", "log10", "log2", "log1p", "exp",
    "sqrt", "abs",
    "np.log", "np.log10", "np.log2", "np.log1p", "np.exp", "np.expm1", "np.sqrt",
    "np.abs", "np.square",
    "numpy.log", "numpy.exp", "numpy.sqrt",
})

#: Contrasts ``C(column, CONTRAST)`` may name (optionally called: ``Treatment('b')``).
ALLOWED_CONTRASTS = frozenset({
    "Treatment", "Sum", "Helmert", "Diff", "Poly", "Deviation",
    "contr.treatment", "contr.sum", "contr.helmert", "contr.diff", "contr.poly",
})

_OPERATORS = frozenset({"~", "+", "-", "*", "/", "**", ":", "|"})
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_UNARY = (ast.UAdd, ast.USub)
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_BACKTICK = re.compile(r"`([^`]*)`")


class _Refused(Exception):
    """A piece of a formula that is not accepted (the message names it)."""


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attribute accesses on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


class _PythonChecker:
    """Walks the :mod:`ast` of one Python piece of a formula."""

    def __init__(self, columns: set[str] | None, quoted: dict[str, str]):
        self.columns = columns
        self.quoted = quoted  # placeholder identifier -> backtick-quoted column name

    def check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Expression):
            self.check(node.body)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise _Refused(f"the constant {node.value!r}")
        elif isinstance(node, ast.Name):
            self.name(node.id)
        elif isinstance(node, ast.BinOp):
            if not isinstance(node.op, _BINOPS):
                raise _Refused(f"the operator {type(node.op).__name__}")
            self.check(node.left)
            self.check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, _UNARY):
                raise _Refused(f"the operator {type(node.op).__name__}")
            self.check(node.operand)
        elif isinstance(node, ast.Call):
            self.call(node)
        elif isinstance(node, ast.Attribute):
            raise _Refused(f"the attribute access {_unparse(node)!r}")
        elif isinstance(node, ast.Subscript):
            raise _Refused(f"the subscript {_unparse(node)!r}")
        else:
            raise _Refused(f"the expression {_unparse(node)!r} ({type(node).__name__})")

    def name(self, name: str) -> None:
        if name in self.quoted:
            name = self.quoted[name]
            if self.columns is not None and name not in self.columns:
                raise _Refused(f"the name `{name}` (not a column of the model)")
            return
        if name.startswith("_"):
            raise _Refused(f"the name {name!r}")
        if self.columns is not None and name not in self.columns:
            raise _Refused(f"the name {name!r} (not a column of the model)")

    def call(self, node: ast.Call) -> None:
        func = _dotted(node.func)
        if func is None or func not in ALLOWED_CALLS:
            raise _Refused(f"the call of {_unparse(node.func)!r} (not an allowed transform)")
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
                k.arg is None for k in node.keywords):
            raise _Refused(f"the unpacking in {_unparse(node)!r}")
        if func == "C":
            self.contrast_call(node)
            return
        if func == "Q":  # a column by its name in a string: Q('class')
            if (len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Constant)
                    or not isinstance(node.args[0].value, str)):
                raise _Refused(f"{_unparse(node)!r} (Q takes a column's name)")
            self.name(node.args[0].value)
            return
        if node.keywords:
            raise _Refused(f"the keyword argument {node.keywords[0].arg!r} of {func}()")
        for arg in node.args:
            self.check(arg)

    def contrast_call(self, node: ast.Call) -> None:
        """``C(column[, contrast][, levels=[...]][, contr=contrast])``."""
        if not 1 <= len(node.args) <= 2:
            raise _Refused(f"{_unparse(node)!r} (C takes a column and an optional contrast)")
        self.check(node.args[0])
        if len(node.args) == 2:
            self.contrast(node.args[1])
        for kw in node.keywords:
            if kw.arg == "levels":
                if not isinstance(kw.value, (ast.List, ast.Tuple)):
                    raise _Refused(f"levels={_unparse(kw.value)} in C() (a list of values)")
                for elt in kw.value.elts:
                    _literal(elt)
            elif kw.arg == "contr":
                self.contrast(kw.value)
            else:
                raise _Refused(f"the keyword argument {kw.arg!r} of C()")

    def contrast(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return
        target = node.func if isinstance(node, ast.Call) else node
        name = _dotted(target)
        if name is None or name not in ALLOWED_CONTRASTS:
            raise _Refused(f"the contrast {_unparse(node)!r} (not an allowed contrast)")
        if isinstance(node, ast.Call):
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise _Refused(f"the unpacking in {_unparse(node)!r}")
            for arg in node.args:
                _literal(arg)
            for kw in node.keywords:
                if kw.arg is None or kw.arg.startswith("_"):
                    raise _Refused(f"the keyword argument in {_unparse(node)!r}")
                _literal(kw.value)


def _literal(node: ast.AST) -> None:
    """A number, a string, True/False/None, or a negated number."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, _UNARY):
        node = node.operand
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return
    elif isinstance(node, ast.Constant) and (
            node.value is None or isinstance(node.value, (bool, int, float, str))):
        return
    raise _Refused(f"the value {_unparse(node)!r} (numbers and strings only)")


def _unparse(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every parsed node
        text = type(node).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _check_python(code: str, columns: set[str] | None) -> None:
    quoted: dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        key = f"dlmmquoted{len(quoted)}x"
        quoted[key] = match.group(1)
        return key

    text = _BACKTICK.sub(placeholder, code)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise _Refused(f"the Python expression {code!r} (cannot be parsed)") from None
    _PythonChecker(columns, quoted).check(tree)


def check_saved_formula(text: object, where: str, source: str,
                        columns: Iterable[str] | None = None) -> str:
    """Refuse a saved formula that holds anything but what dlmm writes.

    Parameters
    ----------
    text : object
        The formula read from a file (must be a string).
    where : str
        What it is, for the message (``"formula"``, ``"vc_formula['c']"``).
    source : str
        The file it came from, for the message.
    columns : iterable of str, optional
        The model's columns (the saved spec's ``columns``); when given, every
        name evaluated as Python must be one of them.

    Returns
    -------
    str
        ``text``, unchanged.

    Raises
    ------
    InputError
        Naming ``source``, ``where`` and the offending piece.
    """
    from formulaic.parser.algos.tokenize import tokenize

    if not isinstance(text, str):
        raise InputError(f"{source}: {where} must be a formula string, got {text!r}")
    cols = None if columns is None else {str(c) for c in columns}
    try:
        try:
            tokens = list(tokenize(text))
        except Exception as exc:  # formulaic's syntax errors (multi-line, with colours)
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
            raise _Refused(f"the text (cannot be tokenized: "
                           f"{first[0] if first else type(exc).__name__})") from None
        for token in tokens:
            kind, piece = token.kind.value, str(token.token)
            if kind == "operator":
                if piece not in _OPERATORS:
                    raise _Refused(f"the operator {piece!r}")
            elif kind == "context":
                if piece not in "()":
                    raise _Refused(f"{piece!r}")
            elif kind == "value":
                if not _NUMBER.match(piece):
                    raise _Refused(f"the value {piece!r} (numbers only)")
            elif kind == "name":
                if not (_NUMBER.match(piece) or (cols is None or piece in cols)):
                    raise _Refused(f"the name {piece!r} (not a column of the model)")
                if piece.startswith("_") and (cols is None or piece not in cols):
                    raise _Refused(f"the name {piece!r}")
            elif kind == "python":
                _check_python(piece, cols)
            else:
                raise _Refused(f"the token {piece!r} ({kind})")
    except _Refused as exc:
        raise InputError(f"{source}: refusing to evaluate {where} {text!r}: {exc} is not "
                         "allowed in a saved formula") from None
    return text


def check_saved_spec(spec: object, source: str) -> None:
    """Check the formulas of a saved spec (``state.spec`` of ``result.json``).

    Every formula (``formula``, ``re_formula``, each ``vc_formula`` value) goes
    through :func:`check_saved_formula` with the spec's ``columns``; the
    ``groups`` and ``columns`` entries must be strings.

    Raises
    ------
    InputError
        Naming ``source`` and the offending entry.
    """
    if not isinstance(spec, dict):
        raise InputError(f"{source}: state.spec must be an object, got {type(spec).__name__}")
    if spec.get("kind") != "formula":
        return
    columns = spec.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InputError(f"{source}: state.spec.columns must be a list of column names")
    groups = spec.get("groups")
    if groups is not None and not isinstance(groups, str):
        raise InputError(f"{source}: state.spec.groups must be a column name, got {groups!r}")
    check_saved_formula(spec.get("formula"), "formula", source, columns)
    if spec.get("re_formula") is not None:
        check_saved_formula(spec["re_formula"], "re_formula", source, columns)
    vc = spec.get("vc_formula") or {}
    if not isinstance(vc, dict):
        raise InputError(f"{source}: state.spec.vc_formula must be an object (name -> formula)")
    for name, text in vc.items():
        check_saved_formula(text, f"vc_formula[{name!r}]", source, columns)
