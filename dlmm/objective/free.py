"""statsmodels' ``free``: which covariance parameters a fit estimates."""

from __future__ import annotations

import numpy as np

from ..exceptions import InputError
from ..spec.statsmodels_inputs import is_params_object


def free_mask(free, k_fe: int, k_re: int, k_vc: int, names: list[str]) -> np.ndarray:
    """0/1 over the packed covariance parameters from statsmodels' ``free``.

    Parameters
    ----------
    free : MixedLMParams, array_like or None
        A MixedLMParams (dlmm's or statsmodels') whose ``cov_re`` and ``vcomp``
        hold the pattern, or a
        packed vector over the covariance parameters (optionally with the
        fixed effects first); None frees every parameter.
    k_fe, k_re, k_vc : int
    names : list of str
        Names of the covariance parameters, for the error message.
    """
    m = k_re * (k_re + 1) // 2 + k_vc
    if free is None:
        return np.ones(m)
    if is_params_object(free):
        mask = np.concatenate([np.asarray(free.cov_re, dtype=float)[np.tril_indices(k_re)],
                               np.asarray(free.vcomp, dtype=float)])
    else:
        mask = np.asarray(free, dtype=float).ravel()
        if mask.shape[0] == k_fe + m:
            mask = mask[k_fe:]
    if mask.shape[0] != m or not np.all(np.isin(mask, (0.0, 1.0))):
        raise InputError(
            f"free must be a 0/1 pattern over the {m} covariance parameters "
            f"({', '.join(names)})"
        )
    return mask


def restricted(fun, x0: np.ndarray, mask: np.ndarray):
    """``fun`` of the free entries only: ``x`` fills ``x0`` where ``mask`` is 1, and
    every output after the first (gradient, Hessian) is cut to those entries."""
    idx = np.flatnonzero(mask)

    def wrapped(x):
        theta = x0.copy()
        theta[idx] = x
        out = fun(theta)
        cut = [out[0]]
        for extra in out[1:]:
            cut.append(extra[idx] if extra.ndim == 1 else extra[np.ix_(idx, idx)])
        return tuple(cut)

    return wrapped


def free_matrix(matrix_of, x0: np.ndarray, mask: np.ndarray):
    """``matrix_of`` (a function of the packed parameters giving a square matrix over
    them, or None) of the free entries: ``x`` fills ``x0`` where ``mask`` is 1, and the
    matrix is cut to the free rows and columns."""
    idx = np.flatnonzero(mask)

    def cut(x):
        theta = x0.copy()
        theta[idx] = x
        matrix = matrix_of(theta)
        return None if matrix is None else matrix[np.ix_(idx, idx)]

    return cut
