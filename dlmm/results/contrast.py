"""Tests of linear hypotheses on the fixed effects, with statsmodels' result objects.

For ``R beta = q`` with ``C = R cov(beta) R'``:

* ``t_test``: one z (or t) test per row, ``t = (R beta - q) / sqrt(diag C)``;
* ``wald_test``: ``W = (R beta - q)' C^{-1} (R beta - q)``, chi-square with
  ``rank(R)`` degrees of freedom;
* ``f_test``: ``F = W / rank(R)`` on ``(rank(R), df_resid)`` degrees of freedom.

:class:`ContrastResults` carries statsmodels' attribute names (``effect``,
``sd``, ``tvalue``, ``pvalue``, ``statistic``, ``df_num``, ``df_denom``,
``conf_int()``, ``summary()``, ``summary_frame()``), so code written for
statsmodels' ``ContrastResults`` reads it unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .distributions import chi2_sf, f_sf, normal_quantile, normal_sf, t_quantile, t_sf


def constraint_matrix(r_matrix, q, exog_names: list[str], n_params: int):
    """``(R, q)`` over the fixed effects from statsmodels' forms of a hypothesis.

    ``r_matrix`` is a string (``"x1 = x2, x3 = 0"``), a tuple ``(R, q)``, or an
    array whose rows run over the fixed effects, or over all ``n_params``
    parameters with zeros beyond the fixed effects.
    """
    k_fe = len(exog_names)
    if isinstance(r_matrix, tuple) and len(r_matrix) == 2 and q is None:
        r_matrix, q = r_matrix
    if isinstance(r_matrix, str):
        from formulaic.utils.constraints import LinearConstraints

        lc = LinearConstraints.from_spec(r_matrix, variable_names=list(exog_names))
        return (np.asarray(lc.constraint_matrix, dtype=float),
                np.asarray(lc.constraint_values, dtype=float))
    r = np.atleast_2d(np.asarray(r_matrix, dtype=float))
    # statsmodels' words ("should have k_fe columns", a ValueError) in both refusals
    if r.shape[1] == n_params and n_params != k_fe:
        if np.any(r[:, k_fe:] != 0):
            raise InputError(f"r_matrix should have {k_fe} columns (the fixed effects "
                             f"{', '.join(exog_names)}): t_test, wald_test and f_test apply "
                             "to the fixed effects only, and this one has nonzero entries "
                             "on covariance parameters")
        r = r[:, :k_fe]
    if r.shape[1] != k_fe:
        raise InputError(f"r_matrix should have {k_fe} columns (the fixed effects "
                         f"{', '.join(exog_names)}), or {n_params} (all of params, zero "
                         f"beyond the fixed effects); it has {r.shape[1]}")
    q = np.zeros(r.shape[0]) if q is None else np.atleast_1d(np.asarray(q, dtype=float))
    if q.shape != (r.shape[0],):
        raise InputError(f"q has {q.size} values for {r.shape[0]} constraints")
    return r, q


class ContrastResults:
    """The outcome of a test of ``R beta = q`` (statsmodels' ``ContrastResults``).

    For a t (or z) test: ``effect`` (``R beta``), ``sd``, ``tvalue``,
    ``pvalue`` (arrays, one entry per row of ``R``) and ``conf_int``; for a
    Wald (chi2) or F test: ``statistic`` (a float; ``fvalue`` for F),
    ``df_num``, ``df_denom`` and ``pvalue``. ``distribution`` is ``"norm"``,
    ``"t"``, ``"chi2"`` or ``"F"``.
    """

    def __init__(self, distribution: str, statistic, pvalue, effect=None, sd=None,
                 df_num=None, df_denom=None, names=None):
        self.distribution = distribution
        self.statistic = statistic
        self.pvalue = pvalue
        self.effect = effect
        self.sd = sd
        self.df_num = df_num
        self.df_denom = df_denom
        if distribution in ("norm", "t"):
            self.tvalue = statistic
        if distribution == "F":
            self.fvalue = statistic
        self.c_names = names if names is not None or effect is None else \
            [f"c{i}" for i in range(len(effect))]

    def _critical(self, alpha: float) -> float:
        if self.distribution == "t":
            return float(t_quantile(1 - alpha / 2, self.df_denom))
        return float(normal_quantile(1 - alpha / 2))

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """``effect -/+ crit * sd``, one row per constraint (t and z tests)."""
        if self.effect is None:
            raise InputError(f"a {self.distribution} test has no confidence interval; "
                             "use t_test for per-constraint intervals")
        crit = self._critical(alpha)
        return np.column_stack([self.effect - crit * self.sd, self.effect + crit * self.sd])

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """One row per constraint: coef, std err, z (or t), P>|z|, interval bounds."""
        if self.effect is None:
            return pd.DataFrame({"statistic": [self.statistic], "pvalue": [self.pvalue],
                                 "df_num": [self.df_num], "df_denom": [self.df_denom]})
        stat = "t" if self.distribution == "t" else "z"
        ci = self.conf_int(alpha)
        return pd.DataFrame({
            "coef": self.effect, "std err": self.sd, stat: self.tvalue,
            f"P>|{stat}|": np.atleast_1d(self.pvalue),
            "Conf. Int. Low": ci[:, 0], "Conf. Int. Upp.": ci[:, 1],
        }, index=self.c_names)

    def summary(self, alpha: float = 0.05) -> str:
        """statsmodels' "Test for Constraints" table (t and z tests), or one line."""
        if self.effect is None:
            return str(self)
        frame = self.summary_frame(alpha)
        stat = frame.columns[2]
        lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
        head = f"{'':10}{'coef':>12}{'std err':>11}{stat:>11}{f'P>|{stat}|':>11}" \
               f"{lo:>12}{hi:>12}"
        rows = [f"{name:<10}{r['coef']:>12.4f}{r['std err']:>11.3f}{r[stat]:>11.3f}"
                f"{r[f'P>|{stat}|']:>11.3f}{r['Conf. Int. Low']:>12.3f}"
                f"{r['Conf. Int. Upp.']:>12.3f}" for name, r in frame.iterrows()]
        width = len(head)
        return "\n".join(["Test for Constraints".center(width), "=" * width, head,
                          "-" * width, *rows, "=" * width])

    def __str__(self) -> str:
        if self.effect is not None:
            return self.summary()
        name = {"chi2": "Wald test (chi2)", "F": "F test"}.get(self.distribution,
                                                              self.distribution)
        return (f"<{name}: statistic={self.statistic:.6g}, p-value={self.pvalue:.6g}, "
                f"df_num={self.df_num}, df_denom={self.df_denom}>")

    def __repr__(self) -> str:
        return str(self)


def t_test(fe_params: np.ndarray, cov_fe: np.ndarray, r: np.ndarray, q: np.ndarray,
           df_resid: float | None = None) -> ContrastResults:
    """One test per row of ``R``: ``(R beta - q) / sqrt(diag(R C R'))`` against the
    normal distribution, or Student's t on ``df_resid`` degrees of freedom when given."""
    effect = r @ fe_params
    sd = np.sqrt(np.diag(r @ cov_fe @ r.T))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (effect - q) / sd
    if df_resid is None:
        pvalue = 2 * normal_sf(np.abs(stat))
        return ContrastResults("norm", stat, pvalue, effect=effect, sd=sd)
    pvalue = 2 * t_sf(np.abs(stat), df_resid)
    return ContrastResults("t", stat, pvalue, effect=effect, sd=sd, df_denom=df_resid)


def wald_test(fe_params: np.ndarray, cov_fe: np.ndarray, r: np.ndarray, q: np.ndarray,
              df_resid: float | None = None) -> ContrastResults:
    """The joint test of ``R beta = q``: chi-square on ``rank(R)`` degrees of freedom,
    or, with ``df_resid``, ``F = W / rank(R)`` on ``(rank(R), df_resid)``."""
    d = r @ fe_params - q
    cov = r @ cov_fe @ r.T
    df_num = int(np.linalg.matrix_rank(r))
    stat = float(d @ np.linalg.pinv(cov) @ d)
    if df_resid is None:
        return ContrastResults("chi2", stat, float(chi2_sf(stat, df_num)),
                               df_num=df_num, df_denom=df_num)
    fvalue = stat / df_num
    return ContrastResults("F", fvalue, float(f_sf(fvalue, df_num, df_resid)),
                           df_num=df_num, df_denom=df_resid)


def holm_sidak(pvalues: np.ndarray) -> np.ndarray:
    """Holm-Sidak step-down adjusted p-values (statsmodels' ``method="hs"``):
    sorted ascending, ``p_(i) -> max_{j<=i} 1 - (1 - p_(j))^(m - j + 1)``."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p)
    stepped = 1 - (1 - p[order]) ** (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(stepped), 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out
