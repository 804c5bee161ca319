"""statsmodels.formula.api's spelling: :func:`mixedlm`, a :class:`~dlmm.model.MixedLM`
from formulas."""

from __future__ import annotations

from .model import MixedLM


def mixedlm(formula: str, data, re_formula: str | None = None, vc_formula: dict | None = None,
            subset=None, use_sparse=False, missing: str = "none", *args,
            groups: str | None = None, client=None, drop_collinear: bool = False,
            cache=None, eval_env=None, weights: str | None = None, **kwargs) -> MixedLM:
    """A linear mixed model from formulas, as ``statsmodels.formula.api.mixedlm``.

    The same as :meth:`MixedLM.from_formula`; nothing is read until a call needs
    numbers (``fit``, ``loglike``, ``nobs``...), which makes the one pass over the
    data. For lme4's formula language (``y ~ x + (x | g)``) see :func:`dlmm.lmer`.

    Parameters
    ----------
    formula : str
        Fixed effects, ``"y ~ x1 + C(f)"`` (formulaic's language; a column name
        that is not a Python identifier in backticks, ``"y ~ `x 1`"``).
    data : pandas.DataFrame, dask DataFrame, or Parquet path(s) / URL
        The rows; Parquet is read on the cluster's workers, never on the driver.
    re_formula : str, optional
        Standard random effects of each group, correlated: ``"~x1"`` (intercept
        and slope), ``"0 + x1"`` (slope only), ``"0"`` for none. Default: a
        random intercept when ``vc_formula`` is None, else none (statsmodels').
    vc_formula : dict, optional
        Variance components, ``{name: formula}``: ``{"cask": "0 + C(cask)"}`` (an
        intercept per level of ``cask`` within each group, one variance). With
        ``groups=None`` and ``re_formula="0"``, components ``0 + C(f)`` of
        crossed factors take the crossed engine.
    subset : array_like of bool, optional
        Rows to use (pandas or Dask input). statsmodels ignores it; dlmm applies it.
    use_sparse : bool
        statsmodels' switch to sparse random-effects matrices; accepted either way.
    missing : {"none", "drop", "raise"}
        Rows with a missing value in a model column: refused with the column
        named (``"none"``, ``"raise"``), or dropped with a
        :class:`MissingDataWarning` (``"drop"``).
    groups : str, array_like or None
        The group column's name, or one label per row (statsmodels'
        ``groups=data["g"]``); None: one group for all rows.
    client : distributed.Client, optional
        Cluster for Dask or Parquet input (else the current client, else an
        embedded local cluster).
    drop_collinear : bool
        Drop fixed-effect columns that are linear combinations of earlier ones,
        lme4-style, with a :class:`CollinearityWarning`, instead of refusing them.
    cache : str or PathLike, optional
        Statistics cache folder for Parquet input: a refit reads only new or
        changed files.
    eval_env : int, dict or None
        Where the formulas find names the data do not have, such as functions
        (``y ~ f(x)``): None or 0 the calling code, ``k`` frames above it, -1 none,
        a dict of names (statsmodels'; see :mod:`dlmm.spec.eval_env`).
    weights : str, optional
        The column of precision weights (lme4's ``weights=``): row i's residual
        variance is ``scale / w_i``; the weights must be positive. statsmodels'
        MixedLM has none.

    Returns
    -------
    MixedLM
        The model; ``model.fit(reml=True)`` gives a :class:`MixedLMResults`.

    Raises
    ------
    InputError
        An unknown option or a bad argument, named (most data errors are found
        by the first call that reads the data).

    See Also
    --------
    MixedLM.from_formula, MixedLM.fit, dlmm.lmer

    Examples
    --------
    >>> import dlmm, pandas as pd
    >>> sleep = pd.read_csv("tests/reference/data/sleepstudy.csv")
    >>> model = dlmm.mixedlm("Reaction ~ Days", sleep, groups="Subject", re_formula="~Days")
    >>> result = model.fit(reml=True)
    >>> round(result.llf, 2)
    -871.81
    """
    return MixedLM.from_formula(formula, data, re_formula, vc_formula, subset, use_sparse,
                                missing, *args, groups=groups, client=client,
                                drop_collinear=drop_collinear, cache=cache,
                                eval_env=eval_env, weights=weights, **kwargs)
