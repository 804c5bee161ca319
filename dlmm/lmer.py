"""lme4's spelling: ``dlmm.lmer("y ~ x + (x | g)", data)``, the same model as ``mixedlm``.

:func:`lmer` reads the random-effect terms (:mod:`dlmm.spec.lme4_terms`),
restates them with ``groups``, ``re_formula`` and ``vc_formula``, adds the
columns an interaction grouping factor needs, and fits, REML by default as
lme4's ``lmer``. ``fit=False`` returns the unfitted :class:`~dlmm.model.MixedLM`
(for ``prepare``, ``loglike``, or a fit with other options later).
``result.varcorr(long=True)`` gives a fit's variances in the layout of lme4's
``as.data.frame(VarCorr(fit))``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .distributed.sources import is_path_like, read_parquet
from .exceptions import InputError
from .model import MixedLM
from .spec.lme4_terms import LmerTranslation, multi_column_terms, translate

if TYPE_CHECKING:
    from .results import MixedLMResults

#: Options of the model (``MixedLM.from_formula``); every other option goes to ``fit``.
_MODEL_OPTIONS = ("missing", "client", "drop_collinear", "subset", "use_sparse", "weights",
                  "residual_by", "residual_ar1")


def _columns(data) -> list[str]:
    if is_path_like(data):
        return list(read_parquet(data).columns)
    return [str(c) for c in getattr(data, "columns", [])]


def _interaction(frame, factors: tuple):
    """``"a:b"`` per row (lme4's labels of an interaction factor); missing where any
    factor is missing."""
    parts = [frame[f] for f in factors]
    value, present = parts[0].astype(str), ~parts[0].isna()
    for part in parts[1:]:
        value = value + ":" + part.astype(str)
        present = present & ~part.isna()
    return value.where(present)


def with_interactions(data, translation: LmerTranslation):
    """``data`` with the translation's interaction columns added (a new frame; the
    input is not modified). Parquet paths become a lazy Dask frame."""
    if not translation.interactions:
        return data
    if is_path_like(data):
        data = read_parquet(data)
    if not hasattr(data, "assign"):
        raise InputError("data must be a pandas DataFrame, a Dask DataFrame or a Parquet path")
    added = {c: _interaction(data, f) for c, f in translation.interactions.items()}
    return data.assign(**added)


def _model(translation: LmerTranslation, data, options: dict) -> MixedLM:
    model = MixedLM.from_formula(
        translation.formula, with_interactions(data, translation),
        re_formula=translation.re_formula, vc_formula=translation.vc_formula or None,
        groups=translation.groups, **options)
    if translation.group_name is not None:
        model.spec.group_name = translation.group_name
    return model


def _terms_model(formula: str, data, columns, options: dict):
    """:class:`~dlmm.terms_model.TermsMixedLM` of ``formula`` (lme4's spelling)."""
    from .terms_model import TermsMixedLM

    options = dict(options)
    options.pop("use_sparse", None)  # accepted either way, as from_formula does
    if options.pop("residual_by", None) is not None or \
            options.pop("residual_ar1", None) is not None:
        raise InputError(f"residual_by and residual_ar1 need random effects of one grouping "
                         f"factor; {formula!r} has terms beyond that shape")
    subset = options.pop("subset", None)
    if subset is not None:
        if is_path_like(data):
            raise InputError("subset needs a DataFrame; filter the Parquet data instead")
        data = data[subset]
    return TermsMixedLM.from_lmer(formula, data, columns, **options)


def lmer(formula: str, data, REML: bool = True, fit: bool = True,  # noqa: N803
         **kwargs) -> MixedLMResults | MixedLM:
    """Fit a linear mixed model written in lme4's formula language.

    Parameters
    ----------
    formula : str
        Fixed effects and random-effect terms, as lme4: ``(x | g)`` correlated
        intercept and slope per level of ``g``, ``(0 + x | g)`` no intercept,
        ``(x || g)`` uncorrelated, ``(1 | g1/g2)`` nested, ``(1 | g1:g2)`` per
        level of the interaction, ``(1 | s) + (1 | d)`` crossed. A grouping
        column is a name of any alphabet (``élève``, ``my.group``) or any name
        in backticks (``"`my g`"``). R's ``^`` inside a call is a power
        (``I(x^2)``, as lme4); ``offset()`` is not supported.
    data : pandas.DataFrame, dask DataFrame, or Parquet path(s) / URL
    REML : bool
        REML (lme4's default) or ML.
    fit : bool
        False returns the unfitted :class:`~dlmm.model.MixedLM`.
    **kwargs
        ``missing``, ``client``, ``drop_collinear``, ``subset``, ``use_sparse``,
        ``weights`` (lme4's precision weights: a column name), ``residual_by`` (a
        residual variance per level of a column, nlme's ``varIdent``), ``residual_ar1``
        (a time column: AR(1) errors within groups, nlme's ``corAR1``) go to
        :meth:`MixedLM.from_formula`; the rest (``method``, ``maxiter``,
        ``start_params``...) to :meth:`MixedLM.fit`.

    Returns
    -------
    MixedLMResults, or MixedLM with ``fit=False``
        Variance components are named as lme4's ``VarCorr`` groups
        (``"plate"``, ``"cask:batch"``, ``"dept:service"``; ``"x|g"`` for an
        uncorrelated slope); ``result.varcorr()`` prints lme4's table
        (``Subject.1  Days`` for the slope of ``(Days || Subject)``).

    Raises
    ------
    InputError
        A term the engines cannot fit (the message names it and says what is
        supported), an offset, or ``reml=`` given instead of lme4's ``REML=``.
    """
    if "reml" in kwargs:
        raise InputError("lmer takes lme4's REML=True/False, not reml=")
    if "offset" in kwargs:
        raise InputError("lmer: offset= is not supported; fit the response minus the offset "
                         "(a new column) instead")
    if not isinstance(REML, (bool, np.bool_)):
        raise InputError(f"REML must be True or False, got {REML!r}")
    model_options = {k: kwargs.pop(k) for k in _MODEL_OPTIONS if k in kwargs}
    columns = _columns(data)
    try:
        translation = translate(formula, columns)
    except InputError:
        # Beyond statsmodels' shape (slopes at a nested level, several blocks on a
        # factor): the model of terms, which refuses only what lme4 refuses.
        model = _terms_model(formula, data, columns, model_options)
        return model.fit(reml=bool(REML), **kwargs) if fit else model
    model = _model(translation, data, model_options)
    if translation.scalar_components:
        # A lone categorical term ((f || g)) is a block of several columns, which
        # only the learned levels tell: restate it as such.
        model.exog_re_names  # noqa: B018 -- learns the levels
        multi = multi_column_terms(translation, model.spec.vc_names, model.spec.vc_column_names)
        if multi:
            translation = translate(formula, columns, multi_column=multi)
            model = _model(translation, data, model_options)
    if not fit:
        return model
    return model.fit(reml=bool(REML), **kwargs)
