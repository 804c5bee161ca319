"""The parameterizations of the covariance parameters, and the maps between them.

statsmodels' three (:class:`MixedLMParams`):

* user:    ``cov_re``, ``vcomp`` and ``scale`` on the data's scale;
* profile: ``Psi = cov_re / scale`` and ``vcomp / scale`` (scale profiled out);
* sqrt:    the lower Cholesky factor ``L`` of ``Psi`` and ``sqrt(vcomp / scale)``;
  every real vector is a valid covariance, and a singular one is an
  ordinary point.

Packed vectors hold (optionally) the fixed effects, then the lower triangle of
the ``Psi`` matrix (or of ``L``) row by row (``numpy.tril_indices``), then the
variance components, exactly as statsmodels' ``MixedLMParams``.

The objective (:class:`~dlmm.objective.objective.ProfiledObjective`) is a function
of θ, the vector its optimizer moves; a *θ map* says what θ is to the engine and
turns the engine's derivatives into derivatives along θ:

* :class:`SqrtMap`: θ is statsmodels' packed sqrt vector (a model of statsmodels'
  shape on the grouped, nested-grouped or crossed engine, which take
  ``(chol_re, sd_vc)``);
* :class:`TermsMap`: θ is lme4's θ of a list of random-effects terms
  (:mod:`dlmm.spec.theta_layout`) in the engine's order of the terms, which the
  nested and crossed terms engines take as it is; :meth:`TermsMap.to_lme4` and
  :meth:`TermsMap.from_lme4` reorder it as lme4 orders its terms.
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
        #: a fit's residual parameters φ (``residual_by``, ``residual_ar1``), or None:
        #: where ``start_params`` carries them, a fit starts there
        #: (:func:`dlmm.objective.residual_map.residual_start`)
        self.residual = None
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


# -- θ maps -------------------------------------------------------------------------


class SqrtMap:
    """θ = statsmodels' packed sqrt vector ``[tril(L) row by row, sd_vc]``, for engines
    taking ``(chol_re, sd_vc)``.

    Parameters
    ----------
    k_re : int
        Standard random effects (``L`` is ``k_re x k_re``).
    """

    kind = "sqrt"

    def __init__(self, k_re: int):
        self.k_re = int(k_re)
        self._tril = np.tril_indices(self.k_re)
        self.k_re2 = self._tril[0].size

    def engine_args(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """``(chol_re, sd_vc)`` of θ."""
        theta = np.asarray(theta, dtype=float)
        chol = np.zeros((self.k_re, self.k_re))
        chol[self._tril] = theta[: self.k_re2]
        return chol, theta[self.k_re2:]

    def pack(self, chol_re, sd_vc) -> np.ndarray:
        """θ of ``(chol_re, sd_vc)`` (the lower triangle of ``chol_re``)."""
        return np.concatenate([np.asarray(chol_re, dtype=float).reshape(
            self.k_re, self.k_re)[self._tril], np.asarray(sd_vc, dtype=float).ravel()])

    def sqrt_point(self, args) -> tuple[np.ndarray, np.ndarray]:
        """The point ``(chol_re, sd_vc)`` a gradient along sqrt directions needs to
        give its profile form (:func:`dlmm.objective.profiled.profile_from_sqrt`)."""
        return args

    def from_profile(self, grad_psi, grad_vc, args) -> np.ndarray:
        """d/dθ from ``d/dPsi`` (each entry free, symmetric) and ``d/d(vcomp/scale)``:
        ``Psi = L L'`` gives ``d/dL = 2 G L``; ``v = sd^2`` gives ``d/dsd = 2 sd d/dv``."""
        chol, sd = args
        d_l = 2.0 * np.asarray(grad_psi, dtype=float).reshape(self.k_re, self.k_re) @ chol
        return np.concatenate([d_l[self._tril], 2.0 * np.asarray(sd) * np.asarray(grad_vc)])

    def along_theta(self, gradient, args) -> np.ndarray:
        """A :class:`~dlmm.objective.profiled.CovarianceGradient` along θ: the engine's
        own when its pieces were along sqrt directions, else by :meth:`from_profile`."""
        if gradient.grad_theta is not None:
            return np.asarray(gradient.grad_theta, dtype=float)
        return self.from_profile(gradient.grad_psi, gradient.grad_vc, args)


class TermsMap:
    """θ = lme4's θ of a list of terms in the engine's order of the terms, which the
    terms engines take as it is.

    Parameters
    ----------
    layout : ThetaLayout
        The terms in lme4's order (θ's order and names as lme4 gives them).
    engine_layout : ThetaLayout
        The same terms in the engine's order.
    term_order : sequence of int
        For each of ``layout``'s terms, its index in ``engine_layout``.
    """

    kind = "terms"

    def __init__(self, layout, engine_layout, term_order):
        self.layout, self.engine_layout = layout, engine_layout
        self.term_order = tuple(int(t) for t in term_order)

    def engine_args(self, theta) -> tuple[np.ndarray]:
        return (np.asarray(theta, dtype=float),)

    def sqrt_point(self, args) -> None:
        return None  # the terms engines' pieces are along θ already

    def along_theta(self, gradient, args) -> np.ndarray:
        return np.asarray(gradient.grad_theta, dtype=float)

    def from_lme4(self, theta) -> np.ndarray:
        """θ in lme4's order (``layout``) as the engine orders it."""
        theta = np.asarray(theta, dtype=float)
        out = np.zeros(self.layout.n_theta)
        for k, engine_term in enumerate(self.term_order):
            out[self.engine_layout.theta_slices[engine_term]] = \
                theta[self.layout.theta_slices[k]]
        return out

    def to_lme4(self, engine_theta) -> np.ndarray:
        """θ in the engine's order as lme4 orders it."""
        engine_theta = np.asarray(engine_theta, dtype=float)
        out = np.zeros(self.layout.n_theta)
        for k, engine_term in enumerate(self.term_order):
            out[self.layout.theta_slices[k]] = \
                engine_theta[self.engine_layout.theta_slices[engine_term]]
        return out
