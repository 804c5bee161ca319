"""Designs whose variances cannot be identified, refused before the optimizer starts.

lme4 refuses these designs (``checkNlevels`` and ``checkZdims`` with its default
controls), and so does dlmm, with one line that names the term and says what to
change. For ``n`` rows, a random-effects term with ``L`` levels and ``q`` random
effects (``L`` times the columns per level) is refused when

* ``L < 2``: one draw of a random effect says nothing of its variance (a single
  group with a random intercept is the fixed intercept again);
* ``L >= n``: every level has one row, so the term's variance and the residual's
  are one number (lme4: "number of levels of each grouping factor must be <
  number of observations");
* ``q >= n``: as many random effects as rows (lme4: "number of observations <=
  number of random effects").

The counts come from the one pass (the number of groups, and the engine's
``vc_effect_counts``); nothing here reads rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..exceptions import InputError


def check_identifiable(n_obs: int, group_name: str | None, n_groups: int,
                       exog_re_names: Sequence[str], vc_names: Sequence[str],
                       vc_effects: np.ndarray) -> None:
    """Refuse a design with a variance that the data cannot identify (module docstring).

    Parameters
    ----------
    n_obs : int
        Rows of the fit.
    group_name : str or None
        The group column (None: every row in one group).
    n_groups : int
        Groups in the data.
    exog_re_names : sequence of str
        The standard random effects of each group (``re_formula``'s columns).
    vc_names : sequence of str
        The variance components.
    vc_effects : ndarray (k_vc,)
        Random effects of each component present in the data: (group, column)
        pairs with rows (for a crossed factor, its levels).
    """
    group = "the one group (groups=None)" if group_name is None \
        else f"group column {group_name!r}"
    k_re = len(exog_re_names)
    if k_re:
        terms = ", ".join(map(repr, exog_re_names))
        if n_groups < 2:
            raise InputError(
                f"{group} has {n_groups} level: the variance of re_formula's random "
                f"effects ({terms}) cannot be estimated from one group (lme4 refuses it "
                "too); use a group column with several levels, or re_formula='0' "
                "(crossed factors go in vc_formula)")
        if n_groups >= n_obs:
            raise InputError(
                f"{group} has {n_groups} levels for {n_obs} rows: with one row per group "
                f"the variance of re_formula's random effects ({terms}) cannot be told "
                "from the residual variance "
                "(lme4: levels of a grouping factor must be fewer than the rows)")
        if n_groups * k_re >= n_obs:
            raise InputError(
                f"{group} has {n_groups * k_re} random effects ({k_re} per group x "
                f"{n_groups} groups) for {n_obs} rows: their variances are not "
                "identified; use fewer random effects per group (re_formula)")
    for name, effects in zip(vc_names, np.asarray(vc_effects, dtype=int)):
        if effects < 2:
            raise InputError(
                f"variance component {name!r} has {effects} random effect in the data: "
                "its variance cannot be estimated from one draw (lme4 refuses it too); "
                "remove it from vc_formula")
        if effects >= n_obs:
            raise InputError(
                f"variance component {name!r} has {effects} random effects for {n_obs} "
                "rows: its variance cannot be told from the residual variance (lme4: "
                "levels of a grouping factor must be fewer than the rows)")
