"""lme4's random-effect terms, read and restated as the model statsmodels' spelling fits.

lme4 writes the random effects inside the formula, one parenthesised bar term
each: ``(x | g)`` correlated effects (intercept and slope on ``x``) per level of
``g``; ``(0 + x | g)`` or ``(x - 1 | g)`` without the intercept; ``(x || g)``
the same effects uncorrelated, lme4's shorthand for ``(1 | g) + (0 + x | g)``;
``(1 | g1/g2)`` nested factors, shorthand for ``(1 | g1) + (1 | g1:g2)``; and
``(1 | g1:g2)`` one effect per level of the interaction. statsmodels (and dlmm)
state the same models with ``groups``, ``re_formula`` and ``vc_formula``;
:func:`translate` restates one in the other:

* one grouping factor ``g``, every other factor nested in it (``g:h``): the
  grouped form, ``groups=g``; ``g``'s one correlated block is ``re_formula``,
  its other one-column terms (``(0 + x | g)``, the pieces of ``||``) are
  variance components, and each nested ``(1 | g:h)`` is the component
  ``0 + C(h)`` (an intercept per level of ``h`` within each level of ``g``);
* factors that do not nest in one (``(1 | s) + (1 | d)``): the crossed form,
  ``groups=None``, ``re_formula="0"`` and a component ``0 + C(f)`` per factor,
  which the crossed engine takes (:mod:`dlmm.spec.crossed`). An interaction
  factor ``g1:g2`` there needs a column of its own: :attr:`LmerTranslation.interactions`
  names the columns to add (values ``"a:b"``, as lme4 labels them).

What neither form holds (two correlated blocks on one factor, a slope on a
nested or crossed factor) is refused with an :class:`~dlmm.exceptions.InputError`
that names the term and says what is supported; never a different model.
Component names follow lme4's ``VarCorr``: the grouping factor (``"plate"``,
``"dept:service"``, ``"cask:batch"`` for ``batch/cask``), and ``"x|g"`` for
a one-column slope ``x`` on ``g``.

A grouping column is a name of any alphabet (``élève``, ``グループ``; dots as in
R, ``my.group``) or any name in backticks (``"`my g`"``); formulas made here
put it in backticks where formulaic needs them. R's ``^`` inside a call
(``I(x^2)``) is a power, written ``**`` for formulaic, which evaluates a call's
arguments as Python (where ``^`` is the exclusive or). ``offset()`` is
refused: dlmm fits no offsets. This module only reads text; no data.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from ..exceptions import InputError

#: a grouping column written without backticks: a word of any alphabet, dots allowed as in R
_NAME = re.compile(r"^(?:[^\W\d]|\.(?!\d))[\w.]*$")


@dataclass(frozen=True)
class RandomBlock:
    """One covariance block of lme4 random effects: terms correlated among themselves.

    Attributes
    ----------
    source : str
        The bar term as written, ``"(Days || Subject)"``.
    factors : tuple of str
        The grouping factor, as the columns of its interaction (``("g1", "g2")``
        for ``g1:g2``).
    intercept : bool
        Whether the block has a random intercept.
    terms : tuple of str
        Its other effects, as formula terms (``("Days",)``).
    name : str
        lme4's name of the grouping factor (``"cask:batch"`` for ``batch/cask``).
    labelled : tuple of str
        The factors in the order of lme4's name and level labels (``("cask", "batch")``).
    formula_terms : tuple of str
        ``terms`` as a formula writes them: a column whose name is not a Python
        identifier in backticks (``"`my x`"``, where ``terms`` has ``"my x"``).
    """

    source: str
    factors: tuple
    intercept: bool
    terms: tuple
    name: str
    labelled: tuple = ()
    formula_terms: tuple = ()

    def scalar(self, multi_column=()) -> bool:
        """One effect per level: an intercept, or one term that is neither a ``C()``
        factor nor in ``multi_column`` (terms known to make several columns)."""
        return (self.intercept + len(self.terms)) == 1 and not any(
            "C(" in t or t in multi_column for t in self.terms)

    @property
    def re_formula(self) -> str:
        """The block's effects as a statsmodels ``re_formula``."""
        return " + ".join(["1" if self.intercept else "0", *self.terms])

    @property
    def formula(self) -> str:
        """The block's effects as a formula (``"1 + x"``, ``"0 + `my x`"``): the
        ``re_formula`` with columns quoted where formulaic needs backticks."""
        return " + ".join(["1" if self.intercept else "0",
                           *(self.formula_terms or self.terms)])


@dataclass(frozen=True)
class LmerTranslation:
    """An lme4 formula restated in statsmodels' spelling.

    Attributes
    ----------
    formula : str
        The fixed part, ``"y ~ service"``.
    groups : str or None
        The group column (None: the crossed form, every row in one group).
    re_formula : str
        Standard random effects of each group (``"0"`` for none).
    vc_formula : dict
        Variance components, ``{name: formula}``.
    interactions : dict
        Columns to add to the data before fitting, ``{column: (factor, ...)}``:
        each row's levels joined by ``":"`` (missing if any is missing).
    group_name : str or None
        lme4's name of the grouping factor (differs from ``groups`` when that is
        an added interaction column).
    scalar_components : tuple of str
        Components that must have one column per group (slopes ``"x|g"``);
        :func:`multi_column_terms` finds those that do not once the levels are learned.
    blocks : tuple of RandomBlock
    """

    formula: str
    groups: str | None
    re_formula: str
    vc_formula: dict
    interactions: dict = field(default_factory=dict)
    group_name: str | None = None
    scalar_components: tuple = ()
    blocks: tuple = ()

    @property
    def crossed(self) -> bool:
        return self.groups is None


# -- reading the formula ---------------------------------------------------------

def _unquoted(text: str, start: int = 0):
    """``(index, character)`` of ``text`` from ``start``, skipping backticked names
    (a column such as ``"`a (b)`"`` holds no formula syntax)."""
    quoted = False
    for i in range(start, len(text)):
        if text[i] == "`":
            quoted = not quoted
        elif not quoted:
            yield i, text[i]


def _matching(text: str, start: int) -> int:
    """Index of the parenthesis closing the one opened at ``text[start]``."""
    depth = 0
    for i, ch in _unquoted(text, start):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return i
    raise InputError(f"unbalanced parentheses in formula {text!r}")


def _top_level_bar(body: str) -> int:
    """Index of the first ``|`` of ``body`` outside parentheses, or -1."""
    depth = 0
    for i, ch in _unquoted(body):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "|" and depth == 0:
            return i
    return -1


def split_formula(formula: str) -> tuple[str, list[str]]:
    """The fixed-effects formula and the bar terms of an lme4 formula.

    ``"y ~ x + (1 | g) + (x || h)"`` gives ``("y ~ x", ["(1 | g)", "(x || h)"])``.
    A bar term must be parenthesised and added (``+``); an empty fixed part is
    the intercept, ``y ~ 1``.
    """
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise InputError(f"an lme4 formula has one '~' (response ~ terms), got {formula!r}")
    if formula.count("`") % 2:
        raise InputError(f"formula {formula!r} has a backtick that is not closed")
    lhs, rhs = formula.split("~")
    if not lhs.strip():
        raise InputError(f"formula {formula!r} has no response before '~'")
    kept, bars, i = [], [], 0
    while i < len(rhs):
        if rhs[i] == "`":  # a backticked name, kept as written
            end = rhs.find("`", i + 1)
            end = len(rhs) - 1 if end < 0 else end
            kept.append(rhs[i:end + 1])
            i = end + 1
            continue
        if rhs[i] == "(":
            end = _matching(rhs, i)
            body = rhs[i + 1:end]
            if _top_level_bar(body) >= 0:
                before = "".join(kept).rstrip()
                if before and before[-1] not in "+":
                    raise InputError(f"random-effect term {rhs[i:end + 1].strip()!r} must be "
                                     f"added with '+' in formula {formula!r}")
                if before:
                    kept = [before[:-1]]
                bars.append(" ".join(rhs[i:end + 1].split()))
                i = end + 1
                continue
            kept.append(rhs[i:end + 1])
            i = end + 1
            continue
        kept.append(rhs[i])
        i += 1
    fixed = " ".join("".join(kept).split()).strip()
    fixed = fixed.lstrip("+").strip() if fixed.startswith("+") else fixed
    if any(ch == "|" for _, ch in _unquoted(fixed)):
        raise InputError(f"a random-effect term in formula {formula!r} is not in parentheses; "
                         "write it as (terms | factor)")
    return f"{lhs.strip()} ~ {fixed or '1'}", bars


def r_arithmetic(text: str) -> str:
    """``text`` with R's power ``^`` inside a function call (``I(x^2)``, ``log(x^2)``)
    written as Python's ``**``: formulaic evaluates a call's arguments as Python, where
    ``^`` is the bitwise exclusive or (``I(Days^2)`` would be ``Days`` xor 2). A ``^``
    between terms (``(a + b)^2``: main effects and interactions) is formulaic's as R's
    and stays."""
    out, calls, prev = [], [], ""
    quoted = False
    for ch in text:
        if ch == "`":
            quoted = not quoted
        if quoted or ch == "`":
            out.append(ch)
            continue
        if ch == "(":
            calls.append(bool(re.match(r"[\w.]", prev)))
        elif ch == ")" and calls:
            calls.pop()
        out.append("**" if ch == "^" and any(calls) else ch)
        if not ch.isspace():
            prev = ch
    return "".join(out)


def refuse_offsets(text: str, formula: str) -> None:
    """An ``offset(...)`` term is refused in one line: dlmm fits no offsets."""
    if any(ch == "o" and re.match(r"offset\s*\(", text[i:]) and
           not re.match(r"[\w.]", text[i - 1:i] or " ") for i, ch in _unquoted(text)):
        raise InputError(f"formula {formula!r}: offset() terms are not supported; fit the "
                         "response minus the offset (a new column) instead")


def formula_term_text(term) -> str:
    """A formulaic term as a formula writes it: its factors joined by ``:``, a
    looked-up column whose name is not a Python identifier in backticks."""
    parts = []
    for factor in term.factors:
        text = str(factor.expr)
        if getattr(factor.eval_method, "value", "") == "lookup" and not (
                text.isidentifier() and not keyword.iskeyword(text)):
            text = f"`{text}`"
        parts.append(text)
    return ":".join(parts)


def _effects(text: str, source: str) -> tuple[bool, tuple, tuple]:
    """Whether the left of a bar has an intercept, its other terms (formulaic's
    expansion: ``x*z`` is ``x``, ``z``, ``x:z``) and the same terms as a formula
    writes them (:func:`formula_term_text`)."""
    from formulaic import Formula

    if not text.strip():
        raise InputError(f"random-effect term {source!r} has nothing before the '|'")
    try:
        parsed = Formula(r_arithmetic(text))
    except Exception as exc:
        raise InputError(f"cannot read the effects of random-effect term {source!r}: "
                         f"{exc}") from None
    rhs = [t for t in getattr(parsed, "rhs", parsed) if str(t) != "1"]
    names = [str(t) for t in getattr(parsed, "rhs", parsed)]
    return ("1" in names, tuple(str(t) for t in rhs),
            tuple(formula_term_text(t) for t in rhs))


def split_outside(text: str, sep: str, parentheses: bool = False) -> list[str]:
    """``text`` split at each ``sep`` that is not inside a backticked name (nor, with
    ``parentheses``, inside parentheses): ``"C(h):x"`` into ``["C(h)", "x"]``."""
    parts, current, quoted, depth = [], [], False, 0
    for ch in text:
        if ch == "`":
            quoted = not quoted
        elif parentheses and not quoted:
            depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == sep and not quoted and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _column(token: str, text: str, source: str) -> str:
    """The data column a grouping name stands for: a name (a letter, ``_`` or ``.``
    first, then letters, digits, ``_`` and ``.``; any alphabet, as R and Python read
    names) or any text in backticks, ``"`my g`"``."""
    name = token.strip()
    if len(name) > 2 and name[0] == name[-1] == "`" and "`" not in name[1:-1]:
        return name[1:-1]
    if _NAME.match(name):
        return name
    raise InputError(f"random-effect term {source!r}: the grouping factor must be column "
                     f"names joined by ':' or '/' (a name that is not one word in "
                     f"backticks, `my g`), got {text.strip()!r}")


def _grouping(text: str, source: str) -> list[tuple[tuple, str, tuple]]:
    """The grouping factors after a bar, with lme4's name and the factors in its order:
    ``g1/g2`` is ``g1`` and ``g1:g2`` (lme4 names it ``g2:g1``), ``g1:g2`` one
    interaction factor. Columns are named as in the data (backticks removed)."""
    out, outer = [], []
    for k, part in enumerate(split_outside(text, "/")):
        names = [_column(n, text, source) for n in split_outside(part, ":")]
        factors = tuple(outer + names)
        if len(set(factors)) != len(factors):
            raise InputError(f"random-effect term {source!r} repeats a grouping column")
        labelled = tuple(names) if k == 0 else tuple(names) + out[-1][2]
        out.append((factors, ":".join(labelled), labelled))
        outer = list(factors)
    return out


def parse_bar(text: str) -> list[RandomBlock]:
    """The covariance blocks of one bar term (``||`` and ``/`` expanded as lme4 does)."""
    body = text.strip()
    if not (body.startswith("(") and body.endswith(")")):
        raise InputError(f"random-effect term {text!r} must be in parentheses")
    inner = body[1:-1]
    bar = _top_level_bar(inner)
    independent = inner[bar:bar + 2] == "||"
    left, right = inner[:bar], inner[bar + (2 if independent else 1):]
    if _top_level_bar(right) >= 0:
        raise InputError(f"random-effect term {text!r} has more than one bar")
    intercept, terms, written = _effects(left, text)
    if not intercept and not terms:
        raise InputError(f"random-effect term {text!r} has no effects")
    blocks = []
    for factors, name, labelled in _grouping(right, text):
        if independent:
            pieces = [(True, (), ())] if intercept else []
            pieces += [(False, (t,), (w,)) for t, w in zip(terms, written)]
        else:
            pieces = [(intercept, terms, written)]
        blocks += [RandomBlock(text, factors, a, b, name, labelled, w) for a, b, w in pieces]
    return blocks


# -- restating ---------------------------------------------------------------------

def _column_name(factors: tuple, taken: set) -> str:
    """A column for an interaction factor: ``a_b``, made unique against ``taken``."""
    base = "_".join(factors)
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def _quoted(column: str) -> str:
    """``column`` as a formula names it: in backticks unless a Python identifier."""
    return column if column.isidentifier() and not keyword.iskeyword(column) else f"`{column}`"


def _refuse(block: RandomBlock, why: str) -> InputError:
    return InputError(f"random-effect term {block.source}: {why}")


def _grouped(fixed: str, blocks: list[RandomBlock], primary: tuple, columns: set,
             multi_column) -> LmerTranslation:
    own = [b for b in blocks if b.factors == primary]
    nested = [b for b in blocks if b.factors != primary]
    seen: set = set()
    for b in own:
        effects = {"(Intercept)"} if b.intercept else set()
        effects |= set(b.terms)
        if effects & seen:
            raise _refuse(b, f"the effect {sorted(effects & seen)[0]!r} on {b.name} appears twice")
        seen |= effects
    multi = [b for b in own if not b.scalar(multi_column)]
    if len(multi) > 1:
        raise _refuse(multi[1], f"dlmm fits one correlated block per grouping factor and "
                                f"{multi[0].source} already has one on {multi[0].name}; "
                                "write the effects in one term, or separate them with ||")
    re_block = multi[0] if multi else next((b for b in own if b.intercept), own[0])
    vc, scalar = {}, []
    for b in own:
        if b is re_block:
            continue
        key = b.name if b.intercept else f"{b.terms[0]}|{b.name}"
        vc[key] = "1" if b.intercept else f"0 + {b.terms[0]}"
        if not b.intercept:
            scalar.append(key)
    for b in nested:
        if b.terms or not b.intercept:
            raise _refuse(b, f"dlmm fits a random intercept (1 | {b.name}) on a factor nested "
                             f"in {':'.join(primary)}; slopes are supported on "
                             f"{':'.join(primary)} itself")
        if b.name in vc:
            raise _refuse(b, f"the factor {b.name!r} appears twice")
        inner = [f for f in b.factors if f not in primary]
        vc[b.name] = "0 + " + ":".join(f"C({_quoted(f)})" for f in inner)
    interactions, groups = {}, primary[0]
    if len(primary) > 1:
        groups = _column_name(primary, columns)
        interactions[groups] = primary
    return LmerTranslation(fixed, groups, re_block.re_formula, vc, interactions,
                           re_block.name, tuple(scalar), tuple(blocks))


def _crossed(fixed: str, blocks: list[RandomBlock], columns: set) -> LmerTranslation:
    vc, interactions = {}, {}
    taken = set(columns)
    factor_names = sorted({b.name for b in blocks})
    for b in blocks:
        if b.terms or not b.intercept:
            raise _refuse(b, f"with crossed grouping factors ({', '.join(factor_names)}) dlmm "
                             "fits a random intercept (1 | factor) per factor; random slopes "
                             "need one grouping factor that the others nest in")
        if b.name in vc:
            raise _refuse(b, f"the factor {b.name!r} appears twice")
        column = b.factors[0]
        if len(b.factors) > 1:  # levels labelled in lme4's order: "a:b" of (1 | b/a)
            parts = b.labelled
            column = _column_name(parts, taken)
            taken.add(column)
            interactions[column] = parts
        vc[b.name] = f"0 + C({_quoted(column)})"
    return LmerTranslation(fixed, None, "0", vc, interactions, None, (), tuple(blocks))


def translate(formula: str, columns=(), multi_column=()) -> LmerTranslation:
    """Restate an lme4 formula in statsmodels' spelling (see the module docstring).

    Parameters
    ----------
    formula : str
        ``"y ~ x + (x | g)"``; at least one bar term.
    columns : iterable of str
        The data's columns: an added interaction column gets a name none of them has.
    multi_column : iterable of str
        Effect terms known to make several columns (categorical columns): such a
        term alone, as in ``(f || g)``, is a correlated block, not a component.
    """
    fixed, bars = split_formula(formula)
    refuse_offsets(formula, formula)
    fixed = r_arithmetic(fixed)
    if not bars:
        raise InputError(f"formula {formula!r} has no random-effect term (terms | factor); "
                         "lmer needs at least one")
    blocks = [b for bar in bars for b in parse_bar(bar)]
    columns = set(columns)
    for b in blocks:
        missing = [f for f in b.factors if columns and f not in columns]
        if missing:
            raise _refuse(b, f"grouping column {missing[0]!r} is not in the data")
    sets = {b.factors for b in blocks}
    primary = [p for p in sets if all(set(p) <= set(q) for q in sets)]
    if primary:
        return _grouped(fixed, blocks, min(primary, key=len), columns,
                        set(multi_column))
    return _crossed(fixed, blocks, columns)


def multi_column_terms(translation: LmerTranslation, vc_names, vc_column_names) -> set:
    """The slope terms of components ``x|g`` that learned more than one column per
    group (a categorical ``x``): :func:`translate` them again as ``multi_column``."""
    counts = dict(zip(vc_names, (len(c) for c in vc_column_names)))
    return {name.split("|", 1)[0] for name in translation.scalar_components
            if counts.get(name, 1) != 1}
