"""Profile likelihoods: statsmodels' ``profile_re`` and lme4's profile intervals.

Profile intervals follow lme4's ``confint(method="profile")``: for each
parameter of interest (random-effect standard deviations and correlations,
variance-component standard deviations, the residual standard deviation,
the fixed effects) the ML log-likelihood is maximized over all the other
parameters at each trial value, and the interval holds the values whose
deviance ``2 (llf_max - llf_profile)`` is at most the chi-square(1) quantile.
As lme4, the ML likelihood is profiled for REML fits too.

Every profile point maximizes over the relative covariance factor (the sqrt
parameterization ``theta``) with the analytic gradient; the fixed effects
and, unless profiled, the scale have closed forms. A standard deviation is
held fixed through the scale it implies (``sigma^2 = sd^2 / Psi_aa``), a
correlation by an equality constraint (SLSQP).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize

from ..exceptions import InputError
from ..objective.params import MixedLMParams
from ..objective.profiled import constrained_gls
from ..objective.residual_map import with_residual_model
from ..objective.shift import fixed_effects_map, log_jacobian
from .distributions import chi2_quantile
from .llf_maximize import maximize_llf


class ProfileLikelihood:
    """ML profile likelihood of a fit, evaluated from its persisted blocks."""

    def __init__(self, result):
        if result._stats is None:
            raise InputError("profiling needs the fitted data; a loaded result cannot profile")
        if result.freepat is not None:
            raise InputError("profile intervals are not available for fits with free=")
        self.result = result
        self.model = result.model
        # Hundreds of evaluations in a row: on the driver when the statistics fit.
        self.stats = result._stats.on_driver()
        # residual parameters (residual_by, residual_ar1), if any, are maximized over too
        self.objective = with_residual_model(self.model.objective(self.stats, reml=False))
        self.n = float(self.stats.totals.n_rows)
        self.k_fe, self.k_re, self.k_vc = result.k_fe, result.k_re, result.k_vc
        self.k_re2 = self.k_re * (self.k_re + 1) // 2
        ml = result if not result.reml else self._ml_fit()
        self.ml = ml
        self.theta_hat = np.concatenate([ml._chol[np.tril_indices(self.k_re)], ml._sd,
                                         [] if ml.residual is None else ml.residual.phi])
        centering = self.model.spec.centering
        self._a_mat, self._offset = fixed_effects_map(centering.xy_shift,
                                                      centering.x_intercept,
                                                      centering.xy_scale)
        # The statistics' response is y / d_y (dlmm.spec.centering): an ML llf of
        # theirs plus this is the model's; a scale of the model's over d_y^2 theirs.
        self._llf_shift = log_jacobian(centering.xy_scale, self.n, False)
        self._scale_unit = centering.y_scale ** 2
        self.llf_hat = ml.llf

    def _ml_fit(self):
        """The ML fit of the same model, leaving the model as it was (REML)."""
        reml = self.model.reml
        try:
            return self.model.fit(reml=False, progress=False)
        finally:
            self.model.reml = reml

    # -- evaluation ---------------------------------------------------------------

    def _terms(self, theta):
        """The pieces at θ and ``S = [X y]'V⁻¹[X y]``."""
        pieces = self.objective.pieces(theta)
        return pieces, self.objective.statistics(theta).totals.xy_cross - pieces.hmh

    def llf_profiled_scale(self, theta, constraint=None):
        """ML llf with the scale (and the fixed effects, under ``constraint`` on the
        centred coefficients if given) at their optimum."""
        pieces, s = self._terms(theta)
        c, q = constrained_gls(s, constraint)
        n = self.n
        grad = self.objective.gradient(theta, pieces, c, 0.5 * n / q)
        llf = -0.5 * pieces.logdet - 0.5 * n * np.log(2 * np.pi * q / n) - 0.5 * n
        return llf + self._llf_shift, grad

    def llf_fixed_scale(self, theta, scale_of):
        """ML llf with ``sigma^2 = scale_of(Psi, v)`` and GLS fixed effects.

        ``scale_of(psi, v)`` returns ``(sigma^2, d sigma^2 / d Psi, d sigma^2 / d v)``.
        """
        pieces, s = self._terms(theta)
        c, q = constrained_gls(s)
        args = self.objective.theta_map.engine_args(theta)
        chol, sd = args[:2]
        s2, ds_psi, ds_vc = (x / self._scale_unit for x in scale_of(chol @ chol.T, sd**2))
        n = self.n
        grad = self.objective.gradient(theta, pieces, c, 0.5 / s2)
        llf = -0.5 * pieces.logdet - 0.5 * n * np.log(2 * np.pi * s2) - 0.5 * q / s2
        d_s2 = -0.5 * n / s2 + 0.5 * q / s2**2
        # the fixed scale's own terms, through Psi and v
        grad = grad + self.objective.theta_map.from_profile(
            0.5 * d_s2 * (ds_psi + np.transpose(ds_psi)), d_s2 * np.asarray(ds_vc), args)
        return llf + self._llf_shift, grad

    # -- maximization -------------------------------------------------------------

    def _maximize(self, fun, start, constraint=None):
        return maximize_llf(fun, start, self.n, constraint, maxiter=500)

    # -- one parameter ------------------------------------------------------------

    def parameters(self) -> list[tuple[str, str, tuple]]:
        """(name, kind, index) of every parameter lme4 profiles, in lme4's order."""
        r = self.result
        out = []
        names = r.exog_re_names
        for i in range(self.k_re):
            for j in range(i + 1):
                if i == j:
                    out.append((f"{names[i]} SD", "re_sd", (i,)))
                else:
                    out.append((f"{names[j]} x {names[i]} Corr", "re_cor", (i, j)))
        for k, name in enumerate(r.vc_names):
            out.append((f"{name} SD", "vc_sd", (k,)))
        out.append(("Residual SD", "sigma", ()))
        for j, name in enumerate(r.exog_names):
            out.append((name, "fe", (j,)))
        return out

    def estimate(self, kind: str, index: tuple) -> float:
        """The ML estimate of a profiled parameter (data scale)."""
        ml = self.ml
        cov = np.asarray(ml.cov_re, dtype=float)
        if kind == "re_sd":
            return float(np.sqrt(cov[index[0], index[0]]))
        if kind == "re_cor":
            i, j = index
            return float(cov[i, j] / np.sqrt(cov[i, i] * cov[j, j]))
        if kind == "vc_sd":
            return float(np.sqrt(ml.vcomp[index[0]]))
        if kind == "sigma":
            return float(np.sqrt(ml.scale))
        return float(np.asarray(ml.fe_params)[index[0]])

    def profile_llf(self, kind: str, index: tuple, value: float, start):
        """Maximized ML llf with the parameter held at ``value``; also the argmax."""
        if kind == "fe":
            # beta = A beta_c + a (dlmm.objective.shift): beta_j = value is a linear
            # constraint on the centred coefficients the statistics give.
            j = index[0]
            constraint = (self._a_mat[j], value - self._offset[j])
            fun = lambda th: self.llf_profiled_scale(th, constraint)  # noqa: E731
            return self._maximize(fun, start)
        if kind == "sigma":
            s2 = value**2
            zp, zv = np.zeros((self.k_re, self.k_re)), np.zeros(self.k_vc)
            return self._maximize(lambda th: self.llf_fixed_scale(
                th, lambda psi, v: (s2, zp, zv)), start)
        if kind == "re_sd":
            a = index[0]

            def scale_of(psi, v):
                d = np.zeros((self.k_re, self.k_re))
                s2 = value**2 / psi[a, a]
                d[a, a] = -s2 / psi[a, a]
                return s2, d, np.zeros(self.k_vc)

            return self._maximize(lambda th: self.llf_fixed_scale(th, scale_of), start)
        if kind == "vc_sd":
            k = index[0]

            def scale_of(psi, v):
                d = np.zeros(self.k_vc)
                s2 = value**2 / v[k]
                d[k] = -s2 / v[k]
                return s2, np.zeros((self.k_re, self.k_re)), d

            return self._maximize(lambda th: self.llf_fixed_scale(th, scale_of), start)
        if kind == "re_cor":
            i, j = index

            def corr(th):
                chol = self.objective.theta_map.engine_args(th)[0]
                psi = chol @ chol.T
                return psi[i, j] / np.sqrt(psi[i, i] * psi[j, j]) - value

            constraint = {"type": "eq", "fun": corr}
            return self._maximize(self.llf_profiled_scale, start, constraint)
        raise InputError(f"unknown parameter kind {kind!r}")

    def interval(self, kind: str, index: tuple, alpha: float = 0.05) -> tuple[float, float]:
        """Profile interval of one parameter (see the module docstring)."""
        crit = chi2_quantile(1 - alpha, 1)
        est = self.estimate(kind, index)
        bounds = {"re_sd": (0.0, np.inf), "vc_sd": (0.0, np.inf), "sigma": (0.0, np.inf),
                  "re_cor": (-1.0, 1.0), "fe": (-np.inf, np.inf)}[kind]
        step = self._step(kind, index, est)
        out = []
        for direction in (-1.0, 1.0):
            start = self.theta_hat.copy()
            prev_v = est
            v = est
            limit = bounds[0] if direction < 0 else bounds[1]
            found = None
            for _ in range(60):
                v_next = v + direction * step
                if (direction < 0 and v_next <= limit) or (direction > 0 and v_next >= limit):
                    v_next = limit - direction * 1e-9 * max(1.0, abs(limit)) \
                        if np.isfinite(limit) else v_next
                theta, llf = self.profile_llf(kind, index, v_next, start)
                f = 2 * (self.llf_hat - llf) - crit
                if f >= 0:
                    found = (prev_v, v_next, theta)
                    break
                if np.isfinite(limit) and abs(v_next - limit) <= 1e-8 * max(1.0, abs(limit)):
                    break
                prev_v, start, v = v_next, theta, v_next
                step *= 1.5
            if found is None:
                out.append(limit if np.isfinite(limit) else direction * np.inf)
                continue
            lo, hi, _ = found
            holder = {"start": start}

            def g(x, holder=holder):
                theta, llf = self.profile_llf(kind, index, x, holder["start"])
                holder["start"] = theta
                return 2 * (self.llf_hat - llf) - crit

            out.append(optimize.brentq(g, min(lo, hi), max(lo, hi), xtol=1e-10, rtol=1e-10))
        return out[0], out[1]

    def _step(self, kind, index, est) -> float:
        ml = self.ml
        if kind == "fe":
            return float(np.asarray(ml.bse_fe)[index[0]])
        if kind == "sigma":
            return 0.1 * est
        if kind == "re_cor":
            return 0.1
        return max(0.2 * est, 1e-3 * np.sqrt(ml.scale))


def profile_conf_int(result, alpha: float = 0.05) -> pd.DataFrame:
    """lme4-style profile intervals for every parameter (see the module docstring)."""
    prof = ProfileLikelihood(result)
    rows = []
    for name, kind, index in prof.parameters():
        lo, hi = prof.interval(kind, index, alpha)
        rows.append((name, prof.estimate(kind, index), lo, hi))
    frame = pd.DataFrame(rows, columns=["parameter", "estimate", "lower", "upper"])
    return frame.set_index("parameter")


def profile_re(result, re_ix, vtype: str, num_low: int = 5, dist_low: float = 1.0,
               num_high: int = 5, dist_high: float = 1.0) -> np.ndarray:
    """statsmodels' ``profile_re``: the fit's (REML or ML) likelihood with one
    variance held fixed, the other covariance parameters re-estimated.

    Parameters
    ----------
    re_ix : int or str
        Index of the random effect (``vtype="re"``) or name of the variance
        component (``vtype="vc"``).
    vtype : {"re", "vc"}
    num_low, dist_low, num_high, dist_high
        ``num_low`` points from ``variance - dist_low`` up to the estimate and
        ``num_high`` beyond it up to ``variance + dist_high`` (data scale).

    Returns
    -------
    ndarray (num_low + num_high + 1, 2)
        The fixed variance on the data scale (times the constrained fit's
        scale, as statsmodels) and the maximized log-likelihood.
    """
    if vtype not in ("re", "vc"):
        raise InputError(f"vtype must be 're' or 'vc', got {vtype!r}")
    if result._stats is None:
        raise InputError("profiling needs the fitted data; a loaded result cannot profile")
    objective = with_residual_model(result.model.objective(result._stats.on_driver(),
                                                           result.reml))
    phi = np.zeros(0) if result.residual is None else result.residual.phi
    k_re = result.k_re
    if vtype == "re":
        if not 0 <= int(re_ix) < k_re:
            raise InputError(f"re_ix must be in 0..{k_re - 1}, got {re_ix!r}")
        a = int(re_ix)
        order = np.array([a] + [i for i in range(k_re) if i != a])
        current = result.estimates.cov_re_unscaled[a, a]
    else:
        if re_ix not in result.vc_names:
            raise InputError(f"no variance component named {re_ix!r} ({result.vc_names})")
        k = result.vc_names.index(re_ix)
        order = np.arange(k_re)
        current = np.asarray(result.params)[result.k_fe + result.k_re2 + k]
    perm = np.eye(k_re)[order]  # perm @ Psi @ perm.T puts the profiled effect first
    low = current - dist_low / result.scale
    high = current + dist_high / result.scale
    if low <= 0:
        raise InputError("dist_low is too large and would give a negative variance; "
                         "use a smaller value")
    values = np.concatenate([np.linspace(low, current, num_low + 1),
                             np.linspace(current, high, num_high + 1)[1:]])
    n = objective.n_rows
    tri = np.tril_indices(k_re)
    k_re2 = tri[0].shape[0]
    psi_perm = perm @ result.estimates.cov_re_unscaled @ perm.T
    start_l = np.linalg.cholesky(psi_perm + 1e-12 * np.eye(k_re)) if k_re else np.zeros((0, 0))
    start = np.concatenate([start_l[tri], result._sd, phi])
    fixed_pos = 0 if vtype == "re" else k_re2 + k
    # Integer positions also when the profiled variance is the only one (none free).
    free_pos = np.array([i for i in range(start.shape[0]) if i != fixed_pos], dtype=np.int64)
    out = []
    for x in values:
        theta0 = start.copy()
        theta0[fixed_pos] = np.sqrt(x)

        def fun(z, theta0=theta0):
            theta = theta0.copy()
            theta[free_pos] = z
            l_perm = np.zeros((k_re, k_re))
            l_perm[tri] = theta[:k_re2]
            sd = theta[k_re2: theta.shape[0] - phi.shape[0]]
            res = (theta[theta.shape[0] - phi.shape[0]:],) if phi.size else ()
            if not k_re:
                value = objective.value(theta)
                grad = value.grad_theta
            else:  # Psi = perm' L L' perm, through its own triangular factor
                psi = perm.T @ l_perm @ l_perm.T @ perm
                value = objective.value_at(
                    (MixedLMParams.from_components(cov_re=psi).cov_re_sqrt, sd, *res))
                g_perm = perm @ value.grad_psi @ perm.T
                d_l = 2.0 * g_perm @ l_perm
                grad = np.concatenate([d_l[tri], 2.0 * sd * value.grad_vc,
                                       value.grad_theta[value.grad_theta.shape[0]
                                                        - phi.shape[0]:]])
            return value.llf, grad[free_pos], value.scale

        def neg(z):
            llf, grad, _ = fun(z)
            return -llf / n, -grad / n

        z = start[free_pos]
        if free_pos.size:  # else the fixed variance is the whole covariance
            z = optimize.minimize(neg, z, jac=True, method="L-BFGS-B",
                                  options={"maxiter": 500, "gtol": 1e-10, "ftol": 1e-15}).x
        llf, _, scale = fun(z)
        out.append([x * scale, llf])
        start[free_pos] = z
    return np.asarray(out)
