"""lme4's ``VarCorr`` and ``coef`` of a fit.

:func:`varcorr` is the table lme4's ``summary`` prints under "Random effects":
one row per random effect (standard deviation, and its correlations with
the effects before it), one per variance component, then the residual::

    Groups    Name         Variance  Std.Dev.  Corr
    Subject   (Intercept)  612.09    24.740
    Subject   Days          35.07     5.922    0.066
    Residual               654.94    25.592

Standard deviations are ``sqrt(diag(cov_re))``, correlations
``cov_re[i, j] / (sd_i sd_j)``, a component's ``sqrt(vcomp_k)`` and the
residual's ``sqrt(scale)``. Each block is named as lme4 names its term
(:func:`component_label`, from the model's compiled terms,
:func:`dlmm.spec.terms.learned_terms`): a random intercept ``(Intercept)`` (statsmodels
names it after the group column); a component that is one factor's
indicators (``0 + C(f)``) lme4's ``(1 | f)``, Groups ``f`` in a crossed fit
(one group) and ``f:group`` when nested in the group (or the component's own
name where it is already lme4's, as ``dlmm.lmer`` names them); a component of
one numeric column (``0 + x``, ``dlmm.lmer``'s ``"x|g"`` of ``(x || g)``)
lme4's ``(0 + x | g)``, Groups ``g`` and Name ``x``; a component ``1`` the
group's intercept.

The terms are in lme4's order: lme4 sorts them by decreasing number of levels
when a later one has more (``rev(order(nl))``, which also reverses terms of
equal levels), so nested factors come before the group's own terms, and
crossed factors by their levels. A fit does not keep the order the terms were
written in: the group's own terms are taken as lme4's ``||`` writes them, the
intercept first. Where several terms share a factor (``(Days || Subject)``),
lme4 makes the names unique as R's ``make.names(unique = TRUE)``: ``Subject``,
``Subject.1``; :func:`lme4_group_names` does the same.

:func:`varcorr_long` is lme4's ``as.data.frame(VarCorr(fit))``: one row per
variance and covariance (``grp``, ``var1``, ``var2``, ``vcov``, ``sdcor``),
with the same names and order.

:func:`coefficients` is lme4's ``coef``: per group, the fixed effects plus the
group's predicted random effects, column by column (a random effect without
a fixed counterpart adds its own column, with fixed part 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import InputError
from ..spec.terms import lme4_group_names
from ..spec.theta_layout import psd_cholesky

INTERCEPT = "(Intercept)"
FIXED_INTERCEPTS = ("Intercept", "const", INTERCEPT)

#: R's reserved words, which ``make.names`` follows with a dot
def is_random_intercept(result, index: int) -> bool:
    """Whether random effect ``index`` is the intercept (statsmodels names it
    after the group column, formulas may say ``Intercept``)."""
    name = result.exog_re_names[index]
    return name in (result.group_name, "Group", *FIXED_INTERCEPTS)


def lme4_re_names(result) -> list[str]:
    """The random-effect names as lme4 prints them (``(Intercept)`` for the intercept)."""
    return [INTERCEPT if is_random_intercept(result, i) else name
            for i, name in enumerate(result.exog_re_names)]


def _component_columns(result, name: str) -> list | None:
    spec = getattr(result.model, "spec", None)
    names, columns = getattr(spec, "vc_names", None), getattr(spec, "vc_column_names", None)
    if not names or columns is None or len(columns) != len(names):
        return None
    return list(dict(zip(names, columns)).get(name, [])) or None


def _indicator_groups(name: str, factors: list, group: str | None) -> str:
    """lme4's name of the factor whose indicators a component is: its own ``name``
    where that is one already (``dlmm.lmer``'s ``"cask:batch"``, and ``"dept:service"``
    of its added column ``dept_service``), else ``f:group`` (``f`` in a crossed fit)."""
    parts = name.split(":")
    if len(parts) > 1:
        if set(parts) == set(factors) | ({group} if group is not None else set()):
            return name
        if len(factors) == 1 and re.fullmatch(re.escape("_".join(parts)) + r"(?:_\d+)?",
                                              factors[0]):
            return name
    return ":".join([*reversed(factors), *([group] if group is not None else [])])


def component_label(result, k: int) -> tuple[str, str]:
    """lme4's (Groups, Name) of variance component ``k``, before names shared by
    several terms are made unique: see the module docstring. A component lme4
    has no term for (arrays, several columns sharing one variance) keeps its own
    name, with its formula (or nothing) as Name."""
    return _component_label(result, k)[:2]


def _component_term(result, name: str):
    """The model's term (:func:`dlmm.spec.terms.learned_terms`) that is variance
    component ``name``, or None (arrays, a loaded fit without its specification)."""
    spec = getattr(result.model, "spec", None)
    if spec is None or not hasattr(spec, "vc_formula"):
        return None
    from ..spec.terms import learned_terms

    return next((t for t in learned_terms(spec) if t.component == name), None)


def _component_label(result, k: int) -> tuple[str, str, bool]:
    """(Groups, Name, whether lme4 has such a term) of variance component ``k``, from
    the model's term: an intercept per level of factors within the group (lme4's
    ``(1 | f:g)``), the group's intercept, one numeric column (``(0 + x | g)``), or a
    component lme4 has no term for (its own name, its formula)."""
    name = result.vc_names[k]
    term = _component_term(result, name)
    if term is None:
        return name, "", False
    spec = result.model.spec
    outer = () if spec.groups is None else (spec.groups,)
    inner = term.factor[len(outer):] if term.factor[:len(outer)] == outer else None
    group = None if result.n_groups <= 1 else str(result.group_name)
    columns = _component_columns(result, name)
    if inner and term.formula == "1":  # indicators of factors within the group
        return _indicator_groups(name, list(inner), group), INTERCEPT, True
    if inner == () and term.formula == "1":
        return str(result.group_name), INTERCEPT, True
    if inner == () and columns is not None and len(columns) == 1:  # (0 + x | g)
        _, bar, factor_name = name.rpartition("|")
        return (factor_name if bar else str(result.group_name)), str(columns[0]), True
    return name, str(spec.vc_formula.get(name, term.formula)), False


@dataclass(frozen=True)
class _Term:
    """One lme4 random-effect term of a fit: its factor, effects and covariance."""

    factor: str
    names: tuple
    cov: np.ndarray
    kind: str  # "own" (the group's), "nested", "crossed" or "other"
    levels: int | None = None


def _terms(result) -> list[_Term]:
    """The fit's random-effect terms in lme4's order (see the module docstring)."""
    group = str(result.group_name)
    grouped = result.n_groups > 1
    own, others = [], []
    cov = np.asarray(result.cov_re, dtype=float)
    if cov.size:
        own.append(_Term(group, tuple(lme4_re_names(result)), cov, "own",
                         result.n_groups))
    for k, v in enumerate(np.asarray(result.vcomp, dtype=float)):
        factor, name = component_label(result, k)
        term = np.array([[v]])
        columns = _component_columns(result, result.vc_names[k])
        if factor == group and grouped:
            own.append(_Term(factor, (name,), term, "own", result.n_groups))
        elif name == INTERCEPT and grouped:
            others.append(_Term(factor, (name,), term, "nested"))
        elif name == INTERCEPT and columns is not None:
            others.append(_Term(factor, (name,), term, "crossed", len(columns)))
        else:
            others.append(_Term(factor, (name,), term, "other"))
    # the group's terms as lme4 writes (x || g): (1 | g) first
    own.sort(key=lambda t: INTERCEPT not in t.names)
    written = own + others
    levels = [t.levels for t in written]
    if any(t.kind == "other" for t in written) or not written:
        return written
    if any(t.kind == "nested" for t in written):  # more levels than the group
        return others + own[::-1]
    if all(n is not None for n in levels) and any(np.diff(levels) > 0):
        ascending = sorted(range(len(written)), key=lambda i: levels[i])  # stable, as R
        return [written[i] for i in ascending[::-1]]
    return written


def _labelled_terms(result) -> list[tuple[str, _Term]]:
    terms = _terms(result)
    return list(zip(lme4_group_names([t.factor for t in terms]), terms))


def varcorr(result) -> pd.DataFrame:
    """lme4's ``VarCorr`` as a frame: columns ``Groups``, ``Name``, ``Variance``,
    ``Std.Dev.`` and, with two or more correlated random effects, ``Corr``
    (correlation with the first effect), ``Corr.2`` (with the second)...; NaN
    where lme4 prints nothing. Terms and names as lme4's (see the module docstring)."""
    labelled = _labelled_terms(result)
    k = max([len(t.names) for _, t in labelled], default=0)
    corr_cols = ["Corr"] + [f"Corr.{j + 1}" for j in range(1, k - 1)] if k > 1 else []
    rows = []
    for groups, term in labelled:
        sd = np.sqrt(np.clip(np.diag(term.cov), 0, None))
        for i, name in enumerate(term.names):
            row = {"Groups": groups, "Name": name, "Variance": term.cov[i, i],
                   "Std.Dev.": sd[i]}
            for j, col in enumerate(corr_cols):
                with np.errstate(divide="ignore", invalid="ignore"):
                    row[col] = term.cov[i, j] / (sd[i] * sd[j]) if j < i else np.nan
            rows.append(row)
    rows += [{"Groups": "Residual", "Name": name, "Variance": v, "Std.Dev.": np.sqrt(v)}
             for name, v in _residual_rows(result)]
    return pd.DataFrame(rows, columns=["Groups", "Name", "Variance", "Std.Dev.", *corr_cols])


def _residual_rows(result) -> list[tuple[str, float]]:
    """The residual's rows: one variance, or one per stratum (``residual_by``: named
    ``column=level``, nlme's strata of ``varIdent``)."""
    res = getattr(result, "residual", None)
    if res is None or res.column is None:
        return [("", float(result.scale))]
    return [(f"{res.column}={level}", float(v)) for level, v in zip(res.levels, res.variances)]


def varcorr_long(result) -> pd.DataFrame:
    """A fit's variances as lme4's ``as.data.frame(VarCorr(fit))``.

    Columns ``grp``, ``var1``, ``var2`` (empty but for a covariance), ``vcov``
    (variance or covariance) and ``sdcor`` (standard deviation or correlation):
    per term in lme4's order, under lme4's name (``"Subject.1"`` for the slope of
    ``(Days || Subject)``), its variances then its covariances; then the residual.
    """
    rows = []
    for groups, term in _labelled_terms(result):
        cov, names = term.cov, term.names
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
        for i, name in enumerate(names):
            rows.append((groups, name, "", cov[i, i], sd[i]))
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                denom = sd[i] * sd[j]
                rows.append((groups, names[i], names[j], cov[i, j],
                             cov[i, j] / denom if denom > 0 else np.nan))
    rows += [("Residual", name, "", v, np.sqrt(v)) for name, v in _residual_rows(result)]
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])


def lme4_theta(result) -> pd.Series:
    """lme4's θ of a fit (``getME(fit, "theta")``): per term in lme4's order (as
    :func:`varcorr`), the lower triangle of the Cholesky factor of its covariance over
    σ² (non-negative diagonal), column by column, named ``factor.column`` on the
    diagonal and ``factor.row.column`` off it (lme4's names: the factor, not VarCorr's
    unique group name). A component lme4 has no term for is one entry, its sd over σ."""
    values, names = [], []
    scale = float(result.scale)
    for term in _terms(result):
        factor = psd_cholesky(np.asarray(term.cov, dtype=float) / scale)
        k = len(term.names)
        for j in range(k):
            for i in range(j, k):
                values.append(float(factor[i, j]))
                label = term.names[i] or "(sd)"
                names.append(f"{term.factor}.{label}" if i == j else
                             f"{term.factor}.{term.names[i]}.{term.names[j]}")
    return pd.Series(values, index=names, name="theta", dtype=float)


def varcorr_text(result, digits: int = 4) -> str:
    """:func:`varcorr` laid out as lme4's ``summary`` prints it (a group's name on
    its first row only)."""
    table = varcorr(result)
    shown = table.copy()
    repeat = shown["Groups"].eq(shown["Groups"].shift()) & shown["Groups"].ne("Residual")
    shown.loc[repeat, "Groups"] = ""
    cells = [[str(v) for v in shown.columns]]
    for _, row in shown.iterrows():
        line = [row["Groups"], row["Name"]]
        for col in shown.columns[2:]:
            v = row[col]
            line.append("" if pd.isna(v) else f"{v:.{digits}g}" if col in ("Variance",
                        "Std.Dev.") else f"{v:.2f}")
        cells.append(line)
    widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if j < 2 else c.rjust(w)
                       for j, (c, w) in enumerate(zip(r, widths))).rstrip() for r in cells]
    return "Random effects (lme4's VarCorr):\n" + "\n".join(" " + s for s in lines)


def coefficients(result):
    """lme4's ``coef``: one row per group (index: group label), one column per fixed
    effect (then per random effect without a fixed counterpart): the fixed effect
    plus the group's predicted random effect.

    pandas for in-process fits; for Dask fits a lazy Dask DataFrame computed on
    the workers from the random-effects table (nothing is collected).
    """
    if not result.exog_re_names:
        raise InputError("coef() needs standard random effects (re_formula); for variance "
                         "components use vc_effects_table()")
    table = result.random_effects_table()
    fe = result.labelled().fe_params
    fixed_intercept = next((n for n in fe.index if n in FIXED_INTERCEPTS), None)
    columns = {}
    taken = set()
    for i, name in enumerate(result.exog_re_names):
        target = fixed_intercept if is_random_intercept(result, i) and fixed_intercept \
            else name
        if target in fe.index:
            columns[target] = table[name] + float(fe[target])
            taken.add(target)
        else:
            columns[name] = table[name]
    for name in fe.index:
        if name not in taken:
            columns[name] = table[result.exog_re_names[0]] * 0.0 + float(fe[name])
    order = [n for n in fe.index] + [n for n in columns if n not in fe.index]
    return table.assign(**columns)[order]
