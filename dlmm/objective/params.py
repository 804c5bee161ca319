"""The three parameterizations of the covariance parameters (as statsmodels).

* user:    ``cov_re``, ``vcomp`` and ``scale`` on the data's scale;
* profile: ``Psi = cov_re / scale`` and ``vcomp / scale`` (scale profiled out);
* sqrt:    the lower Cholesky factor ``L`` of ``Psi`` and ``sqrt(vcomp / scale)``;
  every real vector is a valid covariance, and a singular one is an
  ordinary point.

Packed vectors hold (optionally) the fixed effects, then the lower triangle of
the ``Psi`` matrix (or of ``L``) row by row (``numpy.tril_indices``), then the
variance components, exactly as statsmodels' ``MixedLMParams``.
"""

from __future__ import annotations

import numpy as np


class MixedLMParams:
    """Fixed effects, ``cov_re`` and ``vcomp`` in the profile parameterization.

    Parameters
    ----------
    k_fe, k_re, k_vc : int
        Numbers of fixed effects, standard random effects and variance
        components.
    """

    def __init__(self, k_fe: int, k_re: int, k_vc: int):
        self.k_fe = k_fe
        self.k_re = k_re
        self.k_vc = k_vc
        self.k_re2 = k_re * (k_re + 1) // 2
        self.k_tot = k_fe + self.k_re2 + k_vc
        self._ix = np.tril_indices(k_re)
        self.fe_params = np.zeros(k_fe)
        self.cov_re = np.zeros((k_re, k_re))
        self.vcomp = np.zeros(k_vc)
        self.cov_re_sqrt = np.zeros((k_re, k_re))

    @classmethod
    def from_packed(
        cls, params, k_fe: int, k_re: int, use_sqrt: bool, has_fe: bool
    ) -> MixedLMParams:
        """Unpack a vector in the profile (``use_sqrt=False``) or sqrt scale."""
        params = np.asarray(params, dtype=float)
        k_re2 = k_re * (k_re + 1) // 2
        n_fe = k_fe if has_fe else 0
        k_vc = params.shape[0] - n_fe - k_re2
        if k_vc < 0:
            raise ValueError(
                f"packed parameters have length {params.shape[0]}, expected at least "
                f"{n_fe + k_re2} for k_fe={k_fe}, k_re={k_re}"
            )
        out = cls(k_fe, k_re, k_vc)
        if has_fe:
            out.fe_params = params[:k_fe].copy()
        tri = np.zeros((k_re, k_re))
        tri[out._ix] = params[n_fe:n_fe + k_re2]
        vc = params[n_fe + k_re2:]
        if use_sqrt:
            out.cov_re_sqrt = tri
            out.cov_re = tri @ tri.T
            out.vcomp = vc**2
        else:
            out.cov_re = tri + tri.T - np.diag(np.diag(tri))
            out.cov_re_sqrt = _psd_factor(out.cov_re)
            out.vcomp = vc.copy()
        return out

    @classmethod
    def from_components(
        cls, fe_params=None, cov_re=None, cov_re_sqrt=None, vcomp=None
    ) -> MixedLMParams:
        """Build from the pieces (profile scale); ``cov_re_sqrt`` wins over ``cov_re``."""
        fe = np.zeros(0) if fe_params is None else np.asarray(fe_params, dtype=float)
        if cov_re_sqrt is not None:
            sq = np.atleast_2d(np.asarray(cov_re_sqrt, dtype=float))
            cov = sq @ sq.T
        elif cov_re is not None:
            cov = np.atleast_2d(np.asarray(cov_re, dtype=float))
            sq = _psd_factor(cov)
        else:
            cov = sq = np.zeros((0, 0))
        vc = np.zeros(0) if vcomp is None else np.asarray(vcomp, dtype=float)
        out = cls(fe.shape[0], cov.shape[0], vc.shape[0])
        out.fe_params, out.cov_re, out.cov_re_sqrt, out.vcomp = fe, cov, sq, vc
        return out

    def get_packed(self, use_sqrt: bool, has_fe: bool = False) -> np.ndarray:
        """Pack into a vector in the profile or sqrt scale."""
        if use_sqrt:
            cov = np.tril(self.cov_re_sqrt)[self._ix]
            vc = np.sqrt(np.maximum(self.vcomp, 0.0))
        else:
            cov = self.cov_re[self._ix]
            vc = self.vcomp
        parts = [self.fe_params] if has_fe else []
        return np.concatenate(parts + [cov, vc])


def _psd_factor(cov: np.ndarray) -> np.ndarray:
    """A lower-triangular ``L`` with ``L L' = cov``, also for a singular ``cov``."""
    if cov.size == 0:
        return cov.copy()
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        pass
    # Positive semidefinite: a pivot-free LDL' would fail; use a QR of the
    # symmetric square root, which keeps L lower triangular.
    w, v = np.linalg.eigh(cov)
    if w.min() < -1e-8 * max(1.0, abs(w).max()):
        raise ValueError("covariance matrix is not positive semidefinite")
    root = v * np.sqrt(np.clip(w, 0, None))  # root root' = cov
    _, rr = np.linalg.qr(root.T)  # root' = Q R  ->  cov = R' R
    lower = rr.T
    signs = np.where(np.diag(lower) < 0, -1.0, 1.0)
    return lower * signs[None, :]


def packed_names(exog_re_names: list[str], vc_names: list[str]) -> list[str]:
    """statsmodels' names of the covariance parameters, in packed order."""
    names = []
    for i in range(len(exog_re_names)):
        for j in range(i + 1):
            if i == j:
                names.append(f"{exog_re_names[i]} Var")
            else:
                names.append(f"{exog_re_names[j]} x {exog_re_names[i]} Cov")
    return names + [f"{v} Var" for v in vc_names]
