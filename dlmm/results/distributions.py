"""Tail areas and quantiles of the normal, t, chi-squared and F distributions.

The p-values and critical values of every summary, test and interval come from here.
They are scipy.special's functions (the ones scipy.stats' distributions call), with
scipy.stats' conventions at the edges of the support. Importing scipy.stats costs 0.4 to
0.7 s in every process (its distributions pull in scipy.ndimage, interpolate, integrate
and spatial), and every ``dlmm`` command and Dask worker would pay it; scipy.special is
already loaded by the rest of dlmm.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["chi2_quantile", "chi2_sf", "f_sf", "normal_quantile", "normal_sf", "t_quantile",
           "t_sf"]


def normal_sf(x):
    r"""Upper tail of the standard normal, :math:`1 - \Phi(x) = \Phi(-x)`."""
    return special.ndtr(np.negative(x))


def normal_quantile(q):
    r"""Quantile of the standard normal, :math:`\Phi^{-1}(q)`."""
    return special.ndtri(q)


def t_sf(x, df):
    r"""Upper tail of Student's t with ``df`` degrees of freedom, :math:`P(T > x) =
    F_{df}(-x)`; ``df = inf`` is the normal's."""
    return special.stdtr(df, np.negative(x))


def t_quantile(q, df):
    r"""Quantile of Student's t, :math:`F_{df}^{-1}(q)`, with :math:`-\infty` at ``q = 0``
    (scipy.special's inverse gives :math:`+\infty` there)."""
    q = np.asarray(q, dtype=float)
    return np.where(q == 0.0, -np.inf, special.stdtrit(df, q))[()]


def chi2_sf(x, df):
    r"""Upper tail of the chi-squared with ``df`` degrees of freedom, :math:`P(X > x)`;
    1 for :math:`x \le 0` (below the support)."""
    return special.chdtrc(df, np.maximum(x, 0.0))


def chi2_quantile(q, df):
    r"""Quantile of the chi-squared, :math:`x = 2\,P^{-1}(df/2, q)` with :math:`P` the
    regularized lower incomplete gamma function (:math:`P(X \le x) = q`)."""
    return 2.0 * special.gammaincinv(np.multiply(df, 0.5), q)


def f_sf(x, df_num, df_denom):
    r"""Upper tail of the F distribution with ``(df_num, df_denom)`` degrees of freedom,
    :math:`P(F > x)`; 1 for :math:`x \le 0`."""
    return special.fdtrc(df_num, df_denom, np.maximum(x, 0.0))
