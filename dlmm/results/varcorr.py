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
residual's ``sqrt(scale)``. A random intercept is named ``(Intercept)`` (as
lme4; statsmodels names it after the group column). A variance component
that is one factor's indicators (``0 + C(f)``) is lme4's ``(1 | f)``, named
``f`` for a crossed fit (one group) and ``f:group`` when nested in the group.

:func:`varcorr_long` is lme4's ``as.data.frame(VarCorr(fit))``: one row per
variance and covariance (``grp``, ``var1``, ``var2``, ``vcov``, ``sdcor``).

:func:`coefficients` is lme4's ``coef``: per group, the fixed effects plus the
group's predicted random effects, column by column (a random effect without
a fixed counterpart adds its own column, with fixed part 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputError
from ..spec.crossed import indicator_factor

INTERCEPT = "(Intercept)"
FIXED_INTERCEPTS = ("Intercept", "const", INTERCEPT)


def is_random_intercept(result, index: int) -> bool:
    """Whether random effect ``index`` is the intercept (statsmodels names it
    after the group column, formulas may say ``Intercept``)."""
    name = result.exog_re_names[index]
    return name in (result.group_name, "Group", *FIXED_INTERCEPTS)


def lme4_re_names(result) -> list[str]:
    """The random-effect names as lme4 prints them (``(Intercept)`` for the intercept)."""
    return [INTERCEPT if is_random_intercept(result, i) else name
            for i, name in enumerate(result.exog_re_names)]


def _component_label(result, k: int) -> tuple[str, str]:
    """(Groups, Name) of variance component ``k``."""
    name = result.vc_names[k]
    spec = getattr(result.model, "spec", None)
    formula = None if spec is None else (getattr(spec, "vc_formula", None) or {}).get(name)
    factor = None if formula is None else indicator_factor(formula)
    if factor is None:
        return name, "" if formula is None else str(formula)
    one_group = result.n_groups <= 1
    return (factor if one_group else f"{factor}:{result.group_name}"), INTERCEPT


def varcorr(result) -> pd.DataFrame:
    """lme4's ``VarCorr`` as a frame: columns ``Groups``, ``Name``, ``Variance``,
    ``Std.Dev.`` and, with two or more correlated random effects, ``Corr``
    (correlation with the first effect), ``Corr.2`` (with the second)...; NaN
    where lme4 prints nothing. See the module docstring."""
    cov = np.asarray(result.cov_re, dtype=float)
    k = cov.shape[0]
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    corr_cols = ["Corr"] + [f"Corr.{j + 1}" for j in range(1, k - 1)] if k > 1 else []
    rows = []
    names = lme4_re_names(result)
    for i in range(k):
        row = {"Groups": str(result.group_name), "Name": names[i], "Variance": cov[i, i],
               "Std.Dev.": sd[i]}
        for j, col in enumerate(corr_cols):
            with np.errstate(divide="ignore", invalid="ignore"):
                row[col] = cov[i, j] / (sd[i] * sd[j]) if j < i else np.nan
        rows.append(row)
    for c, v in enumerate(np.asarray(result.vcomp, dtype=float)):
        groups, name = _component_label(result, c)
        rows.append({"Groups": groups, "Name": name, "Variance": v,
                     "Std.Dev.": np.sqrt(max(v, 0.0))})
    rows.append({"Groups": "Residual", "Name": "", "Variance": result.scale,
                 "Std.Dev.": np.sqrt(result.scale)})
    return pd.DataFrame(rows, columns=["Groups", "Name", "Variance", "Std.Dev.", *corr_cols])


def varcorr_long(result) -> pd.DataFrame:
    """A fit's variances as lme4's ``as.data.frame(VarCorr(fit))``.

    Columns ``grp``, ``var1``, ``var2`` (empty but for a covariance), ``vcov``
    (variance or covariance) and ``sdcor`` (standard deviation or correlation):
    the covariance of the standard random effects under the group's name, each
    variance component under its lme4 name (``"x|g"`` is slope ``x`` on ``g``),
    then the residual.
    """
    rows = []
    cov = np.asarray(result.cov_re, dtype=float)
    names = ["(Intercept)" if n in (result.group_name, "Intercept") else n
             for n in result.exog_re_names]
    sd = np.sqrt(np.diag(cov)) if cov.size else np.zeros(0)
    for i, name in enumerate(names):
        rows.append((result.group_name, name, "", cov[i, i], sd[i]))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            denom = sd[i] * sd[j]
            rows.append((result.group_name, names[i], names[j], cov[i, j],
                         cov[i, j] / denom if denom > 0 else np.nan))
    for name, value in zip(result.vc_names, np.asarray(result.vcomp, dtype=float)):
        term, _, group = name.rpartition("|")
        rows.append((group, term or "(Intercept)", "", value, np.sqrt(value)))
    rows.append(("Residual", "", "", float(result.scale), np.sqrt(float(result.scale))))
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])


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
    fe = result.fe_params
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
