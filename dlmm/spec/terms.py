"""The one model of random-effects terms, and both spellings compiled to it.

A random-effects term is a grouping factor (a column, or the interaction of
several: ``g:h``), the columns of its design (a formula, ``"1 + x"``) and a
covariance structure: ``"unstructured"`` (correlated effects, lme4's
``(x | g)``), ``"diagonal"`` (independent effects, each its own variance) or
``"scalar"`` (one variance shared by all the term's columns: statsmodels'
variance component). The model is an ordered list of terms,
:class:`RandomTerms`; its parameters (lme4's θ: per term the lower-triangular
factor Λ of the covariance over σ², column-major) and the maps the engines
need are :class:`~dlmm.spec.theta_layout.ThetaLayout`, made by
:meth:`RandomTerms.layout` once the number of columns of each term is known.

Both spellings compile to it:

* :func:`from_lmer`: lme4's, ``y ~ x + (x | school) + (x | school:class)``;
  ``(x || g)`` is lme4's ``(1 | g) + (0 + x | g)``, ``(1 | a/b)`` its
  ``(1 | a) + (1 | a:b)`` (:mod:`dlmm.spec.lme4_terms` reads the bars);
* :func:`from_statsmodels`: ``groups`` + ``re_formula`` is one unstructured
  term on the group factor; each ``vc_formula`` entry a scalar term: a
  categorical factor's indicators ``0 + C(h)`` an intercept per level of
  ``h`` within each group, a term on the factor ``(groups, h)``; any other
  formula a term on the group factor. Array designs (``exog_re``,
  ``exog_vc``) are terms with ``formula=None`` and their column names.

lme4 orders its terms by decreasing number of levels of their factors (a fact
of the data): :meth:`RandomTerms.lme4_order` applies that order once the
levels are counted, which fixes θ's order, its names and VarCorr's group names
as lme4 prints them. Text and specification only: no data, no Dask.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..exceptions import InputError
from .indicator_text import indicator_factor
from .lme4_terms import (
    formula_term_text,
    parse_bar,
    r_arithmetic,
    refuse_offsets,
    split_formula,
    split_outside,
)

#: the covariance structures a term may have
STRUCTURES = ("unstructured", "diagonal", "scalar")


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term: effects per level of a grouping factor.

    Attributes
    ----------
    factor : tuple of str
        The grouping factor as the columns of its interaction (``("g", "h")`` for
        ``g:h``); the empty tuple is one group holding every row (statsmodels'
        ``groups=None``).
    formula : str or None
        The design of the term's columns, in formulaic's syntax (``"1 + x"``,
        ``"0 + z + w"``, ``"1"``); None for columns given as arrays (``columns``).
    structure : str
        ``"unstructured"``, ``"diagonal"`` or ``"scalar"`` (one sd for all columns).
    name : str
        lme4's name of the grouping factor (``names(cnms)``: ``"school"``,
        ``"g:h"``, ``"cask:batch"`` for ``batch/cask``); for a statsmodels
        variance component its name in ``vc_formula``, for statsmodels' standard
        random effects the group column. VarCorr's group names, unique over the
        model (``"g"``, ``"g.1"``), are :attr:`RandomTerms.varcorr_names`.
    source : str
        The text the term came from (``"(x || g)"``, ``"vc_formula['h']"``).
    columns : tuple of str or None
        The names of the term's columns when they are arrays (``formula`` None).
    component : str or None
        statsmodels' name of the variance component this term is when the model
        has statsmodels' shape (``"x|g"``, ``"g:h"``, the ``vc_formula`` key); None
        for statsmodels' standard random effects (``re_formula``).
    """

    factor: tuple
    formula: str | None
    structure: str = "unstructured"
    name: str = ""
    source: str = ""
    columns: tuple | None = None
    component: str | None = None

    def __post_init__(self):
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")
        if not isinstance(self.factor, tuple) or not all(isinstance(f, str)
                                                         for f in self.factor):
            raise ValueError(f"factor must be a tuple of column names, got {self.factor!r}")
        if (self.formula is None) == (self.columns is None):
            raise ValueError("a term has a formula or array columns, exactly one of them")

    @property
    def group(self) -> str:
        """The factor as lme4 writes an interaction, ``"g:h"`` (``""`` for one group)."""
        return ":".join(self.factor)

    def default_columns(self) -> tuple:
        """The term's column names as lme4 names them when each formula term is one
        column (``("(Intercept)", "x")``), or the array columns."""
        if self.columns is not None:
            return tuple(self.columns)
        intercept, terms = formula_parts(self.formula)
        return (("(Intercept)",) if intercept else ()) + tuple(_unquoted(t) for t in terms)


# -- formulas ------------------------------------------------------------------------

@lru_cache(maxsize=512)
def formula_parts(text: str) -> tuple[bool, tuple]:
    """Whether a one-sided formula has an intercept, and its other terms as a
    formula writes them (formulaic's reading: ``"x*z"`` is ``x``, ``z``, ``x:z``)."""
    from formulaic import Formula

    body = str(text).strip()
    body = body[1:].strip() if body.startswith("~") else body
    try:
        parsed = Formula(body or "0")
    except Exception as exc:
        raise InputError(f"cannot read the random-effects formula {text!r}: {exc}") from None
    rhs = list(getattr(parsed, "rhs", parsed))
    return (any(str(t) == "1" for t in rhs),
            tuple(formula_term_text(t) for t in rhs if str(t) != "1"))


def canonical_formula(text: str) -> str | None:
    """``text`` as ``"1 + x"`` / ``"0 + x + z"`` (None when it has no columns)."""
    intercept, terms = formula_parts(text)
    if not intercept and not terms:
        return None
    return " + ".join(["1" if intercept else "0", *terms])


def _unquoted(term: str) -> str:
    return term.replace("`", "")


# -- the model -----------------------------------------------------------------------

def _key(factor) -> frozenset:
    return frozenset(factor)


#: R's reserved words (``?Reserved``): ``make.names`` puts a dot after them
R_RESERVED = frozenset({
    "if", "else", "repeat", "while", "function", "for", "next", "break", "TRUE", "FALSE",
    "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_", "NA_character_", "NA_complex_",
    "in"})


def r_make_names(names: Sequence[str]) -> list[str]:
    """R's ``make.names(names, unique = TRUE)``: characters that are not letters,
    digits, ``.`` or ``_`` become ``.``, ``X`` first where a name may not start (not a
    letter, nor a dot without a digit after it), a dot after a reserved word, then
    duplicates numbered ``.1``, ``.2`` (``make.unique``: never a name already there)."""
    valid = []
    for name in names:
        out = "".join(ch if ch.isalnum() or ch in "._" else "." for ch in name)
        if not out or not (out[0].isalpha() or (out[0] == "." and not out[1:2].isdigit())):
            out = "X" + out
        valid.append(out + "." if out in R_RESERVED else out)
    taken, used, counter, unique = set(valid), set(), {}, []
    for name in valid:
        if name not in used:
            unique.append(name)
            used.add(name)
            continue
        k = counter.get(name, 0)
        while True:
            k += 1
            candidate = f"{name}.{k}"
            if candidate not in used and candidate not in taken:
                break
        counter[name] = k
        unique.append(candidate)
        used.add(candidate)
    return unique


def lme4_group_names(factors: Sequence[str]) -> list[str]:
    """lme4's VarCorr group names of terms on ``factors`` (``mkVarCorr``): the names as
    they are, unless one repeats; then :func:`r_make_names` of them all (``"Subject"``,
    ``"Subject.1"`` for ``(Days || Subject)``; ``g:h`` becomes ``g.h``)."""
    return list(factors) if len(set(factors)) == len(factors) else r_make_names(factors)


@dataclass(frozen=True)
class RandomTerms:
    """The random effects of a model: an ordered tuple of :class:`RandomTerm`.

    Iterating gives the terms; ``len`` their number.
    """

    terms: tuple

    def __post_init__(self):
        object.__setattr__(self, "terms", tuple(self.terms))
        if not all(isinstance(t, RandomTerm) for t in self.terms):
            raise ValueError("RandomTerms holds RandomTerm objects")

    def __iter__(self):
        return iter(self.terms)

    def __len__(self) -> int:
        return len(self.terms)

    def __getitem__(self, i) -> RandomTerm:
        return self.terms[i]

    @property
    def factors(self) -> tuple:
        """The distinct grouping factors, in order of first appearance (``g:h`` and
        ``h:g`` are one factor, named as first written)."""
        seen, out = set(), []
        for t in self.terms:
            if _key(t.factor) not in seen:
                seen.add(_key(t.factor))
                out.append(t.factor)
        return tuple(out)

    def nesting(self) -> tuple | None:
        """The chain of factors, outermost first, when each factor's columns extend
        the previous one's (``g`` ⊂ ``g:h`` ⊂ ``g:h:c``), else None (crossed or
        mixed as written). Each factor of the chain lists its outer factor's columns
        first (``(1 | h:g)`` beside ``(1 | g)`` is ``("g", "h")``). Factors nested in
        the data but not in the formula (labels unique across schools) are not
        found here: :meth:`nesting_candidate` orders them for the data to check."""
        factors = sorted(self.factors, key=len)
        chain: list[tuple] = []
        for f in factors:
            if chain and not set(chain[-1]) < set(f):
                return None
            outer = chain[-1] if chain else ()
            chain.append(outer + tuple(c for c in f if c not in outer))
        return tuple(chain)

    def nesting_candidate(self, n_levels: Mapping) -> tuple:
        """The factors ordered as they would nest: the chain of :meth:`nesting` when
        the formula has one, else by increasing number of levels (``n_levels``:
        factor tuple, or its ``":"``-joined name, to count; ties in order of
        appearance). Only the data can confirm the nesting (every level of each
        factor within one level of the one before)."""
        chain = self.nesting()
        if chain is not None:
            return chain
        counts = {_key(k.split(":") if isinstance(k, str) else k): int(v)
                  for k, v in n_levels.items()}
        missing = [":".join(f) for f in self.factors if _key(f) not in counts]
        if missing:
            raise ValueError(f"no number of levels for factor {missing[0]!r}")
        return tuple(sorted(self.factors, key=lambda f: counts[_key(f)]))

    @property
    def varcorr_names(self) -> tuple:
        """lme4's VarCorr group names, one per term: the factors' names, made unique
        as R's ``make.names`` does when a factor has several terms (``"Subject"``,
        ``"Subject.1"`` for ``(Days || Subject)``; then every name is R-syntactic,
        ``g:h`` becomes ``g.h``)."""
        return tuple(lme4_group_names([t.name for t in self.terms]))

    def lme4_order(self, n_levels) -> RandomTerms:
        """The terms in lme4's order: by decreasing number of levels of their factor
        (``mkReTrms``: ``rev(order(nl))``, so terms with as many levels end up in
        reverse; nothing moves when no term has more levels than the one before).

        Parameters
        ----------
        n_levels : sequence of int, one per term, or mapping
            Levels of each term's factor (a mapping: factor tuple or ``":"``-joined
            name to count).
        """
        if isinstance(n_levels, Mapping):
            counts = {_key(k.split(":") if isinstance(k, str) else k): int(v)
                      for k, v in n_levels.items()}
            nl = [counts[_key(t.factor)] for t in self.terms]
        else:
            nl = [int(v) for v in n_levels]
        if len(nl) != len(self.terms):
            raise ValueError(f"{len(nl)} level counts for {len(self.terms)} terms")
        if not any(b > a for a, b in zip(nl, nl[1:])):
            return self
        ascending = sorted(range(len(nl)), key=lambda i: (nl[i], i))
        return RandomTerms(tuple(self.terms[i] for i in reversed(ascending)))

    def layout(self, columns_per_term=None, levels=None):
        """The θ layout once each term's columns are known
        (:class:`~dlmm.spec.theta_layout.ThetaLayout`).

        Parameters
        ----------
        columns_per_term : sequence, optional
            Per term, its number of columns or their names; default: one column
            per formula term (:meth:`RandomTerm.default_columns`).
        levels : sequence of factor tuples, optional
            The order of the factors (the engine's levels); default
            :meth:`nesting`, else :attr:`factors`.
        """
        from .theta_layout import ThetaLayout

        return ThetaLayout.build(self, columns_per_term, levels)


# -- lme4's spelling -----------------------------------------------------------------

def _lme4_component(intercept: bool, terms: tuple, name: str) -> str | None:
    """statsmodels' name of an lme4 term as a variance component
    (:func:`dlmm.spec.lme4_terms.translate`'s): the factor for an intercept,
    ``"x|g"`` for one slope; None for a block of several effects."""
    if intercept and not terms:
        return name
    if not intercept and len(terms) == 1:
        return f"{terms[0]}|{name}"
    return None


def from_lmer(formula: str, columns=()) -> tuple[str, RandomTerms]:
    """The fixed-effects formula and the random-effects terms of an lme4 formula.

    Every bar term is one or more terms (``||`` and ``/`` expanded as lme4 does),
    unstructured, in the order written (:meth:`RandomTerms.lme4_order` gives
    lme4's). Refused, with the term named: what lme4 refuses to read (no bar
    term, a bar term not added, a grouping factor that is not column names), a
    grouping column not in ``columns`` (when given), and an effect that appears
    twice on one factor (lme4 fits it, but only the sum of the two variances is
    identified).

    Parameters
    ----------
    formula : str
        ``"y ~ x + (x | school) + (x | school:class)"``.
    columns : iterable of str
        The data's columns, to check the grouping factors against (empty: no check).

    Returns
    -------
    fixed : str
        ``"y ~ x"`` (R's ``^`` in a call written ``**``).
    terms : RandomTerms
    """
    fixed, bars = split_formula(formula)
    refuse_offsets(formula, formula)
    if not bars:
        raise InputError(f"formula {formula!r} has no random-effect term (terms | factor); "
                         "lmer needs at least one")
    columns = set(columns)
    seen: dict = {}
    out = []
    for bar in bars:
        for b in parse_bar(bar):
            missing = [f for f in b.factors if columns and f not in columns]
            if missing:
                raise InputError(f"random-effect term {b.source}: grouping column "
                                 f"{missing[0]!r} is not in the data")
            effects = (["(Intercept)"] if b.intercept else []) + list(b.terms)
            key = _key(b.factors)
            for effect in effects:
                if (key, effect) in seen:
                    raise InputError(
                        f"random-effect term {b.source}: the effect {effect!r} on {b.name} "
                        f"appears twice (also in {seen[key, effect]}); only the sum of its "
                        "variances is identified")
                seen[key, effect] = b.source
            out.append(RandomTerm(b.factors, b.formula, "unstructured", b.name, b.source,
                                  component=_lme4_component(b.intercept, b.terms, b.name)))
    return r_arithmetic(fixed), RandomTerms(tuple(out))


# -- statsmodels' spelling -----------------------------------------------------------

_NO_EFFECTS = re.compile(r"^~?\s*(?:0|-\s*1)\s*\+?\s*$")


def _indicator_term(text: str, categorical) -> tuple[tuple, str] | None:
    """A component that is one categorical factor's indicators (``0 + C(h)``, the
    spellings :func:`~dlmm.spec.crossed.indicator_factor` knows, ``0 + h`` for a
    column in ``categorical``), or their interaction (``0 + C(h):C(c)``), possibly
    times one numeric term (``0 + C(h):x``): the factor's columns and the formula
    of the term per level (``"1"`` or ``"0 + x"``). None for any other formula."""
    single = indicator_factor(text)
    if single is not None:
        plain = re.sub(r"\s", "", str(text)).lstrip("~")
        if "C(" in plain or single in categorical:
            return (single,), "1"
        return None
    body = " ".join(str(text).split()).lstrip("~").strip()
    match = re.match(r"^(?:0|-\s*1)\s*\+\s*(.+)$", body) or re.match(
        r"^(.+?)\s*(?:\+\s*0|-\s*1)$", body)
    if match is None:
        return None
    try:
        intercept, terms = formula_parts("0 + " + match.group(1))
    except InputError:
        return None
    if intercept or len(terms) != 1:
        return None
    factors, rest = [], []
    for part in split_outside(terms[0], ":", parentheses=True):
        column = indicator_factor(f"0 + {part}")
        if column is not None and ("C(" in part or column in categorical):
            factors.append(column)
        else:
            rest.append(part)
    if not factors or len(rest) > 1:
        return None
    return tuple(factors), ("0 + " + rest[0]) if rest else "1"


def from_statsmodels(groups: str | None, re_formula: str | None = None,
                     vc_formula: Mapping | None = None, *, exog_re_names=None,
                     exog_vc_names: Mapping | None = None, categorical=(),
                     group_name: str | None = None) -> RandomTerms:
    """The random-effects terms of statsmodels' spelling of a model.

    Parameters
    ----------
    groups : str or None
        The group column; None: one group holding every row (the factor ``()``).
    re_formula : str, optional
        The standard random effects: one unstructured term on the group factor.
        None: a random intercept when there are no variance components, else none;
        ``"0"``: none.
    vc_formula : mapping, optional
        Variance components, name to formula, each one scalar term (one variance):
        ``0 + C(h)`` (an intercept per level of ``h`` within each group) a term
        ``"1"`` on ``(groups, h)``; ``0 + C(h):x`` a term ``"0 + x"`` there; any
        other formula a term on the group factor with that formula's columns.
        Taken in the order of their names (statsmodels' and dlmm's order).
    exog_re_names : sequence of str, optional
        The columns of ``exog_re`` (arrays): the standard random effects are one
        term of these columns (``formula=None``), instead of ``re_formula``.
    exog_vc_names : mapping, optional
        Name to the column names of each ``exog_vc`` component (arrays, ``VCSpec``):
        one scalar term on the group factor each.
    categorical : iterable of str
        Columns known to be categorical: ``0 + h`` is then ``h``'s indicators.
    group_name : str, optional
        The name of the group factor in names (default ``groups``, or ``"Group"``).
    """
    factor = () if groups is None else (groups,)
    label = group_name or (groups if groups is not None else "Group")
    vc_formula = dict(vc_formula or {})
    exog_vc_names = dict(exog_vc_names or {})
    categorical = set(categorical)
    out = []
    if exog_re_names is not None:
        if len(exog_re_names):
            out.append(RandomTerm(factor, None, "unstructured", label, "exog_re",
                                  columns=tuple(exog_re_names)))
    else:
        text = re_formula
        if text is None:
            text = "0" if (vc_formula or exog_vc_names) else "1"
        formula = None if _NO_EFFECTS.match(str(text).strip()) else canonical_formula(text)
        if formula is not None:
            out.append(RandomTerm(factor, formula, "unstructured", label,
                                  f"re_formula={text!r}"))
    for name in sorted(vc_formula):
        text = vc_formula[name]
        if not isinstance(text, str):
            raise InputError(f"vc_formula[{name!r}] must be a formula string, got {text!r}")
        source = f"vc_formula[{name!r}]={text!r}"
        found = _indicator_term(text, categorical)
        if found is not None:
            inner, formula = found
            full = factor + tuple(c for c in inner if c not in factor)
            out.append(RandomTerm(full, formula, "scalar", name, source, component=name))
            continue
        formula = canonical_formula(text)
        if formula is None:
            raise InputError(f"vc_formula[{name!r}] {text!r} has no columns")
        out.append(RandomTerm(factor, formula, "scalar", name, source, component=name))
    for name in sorted(exog_vc_names):
        out.append(RandomTerm(factor, None, "scalar", name, f"exog_vc[{name!r}]",
                              columns=tuple(exog_vc_names[name]), component=name))
    return RandomTerms(tuple(out))


def learned_terms(spec) -> RandomTerms:
    """The terms of a learned statsmodels-spelled specification: a
    :class:`~dlmm.spec.formula.FormulaSpec`'s formulas (``0 + h`` an indicator term
    when ``h`` was learned categorical), or an :class:`~dlmm.spec.arrays.ArraySpec`'s
    named columns (see :func:`from_statsmodels`)."""
    if hasattr(spec, "vc_formula"):
        return from_statsmodels(spec.groups, spec.re_formula, spec.vc_formula,
                                categorical=getattr(spec, "levels", {}),
                                group_name=spec.group_name)
    return from_statsmodels(spec.groups, exog_re_names=spec.exog_re_names,
                            exog_vc_names=dict(zip(spec.vc_names, spec.vc_column_names)),
                            group_name=spec.group_name)
