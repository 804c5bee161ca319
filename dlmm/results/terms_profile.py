"""Profile confidence intervals of a fit of random-effects terms (lme4's
``confint(fit, method = "profile")``).

As lme4 (``profile.merMod``), the ML deviance is profiled, for REML fits too (they
are refitted by ML first), over lme4's parameters: per term in θ's order its
standard deviations and correlations (``sd_(Intercept)|g``, ``cor_x.(Intercept)|g``),
the residual standard deviation ``sigma``, and the fixed effects. An interval holds
the values whose signed root deviance ``zeta = sign(v - v_hat) sqrt(2 (llf_hat -
llf_v))`` lies within ``+-sqrt(chi2_1(1 - alpha))``; its ends are found by secants on
``zeta`` (of log sds, atanh correlations, fixed effects as they are), each point
maximizing the ML log-likelihood over every other parameter, with the analytic
gradient of the nested engine:

* a fixed effect ``beta_j = v``: θ free, ``beta`` the GLS under the linear
  constraint, ``sigma^2`` at its optimum;
* ``sigma = v``: θ free at that scale;
* a standard deviation ``sigma sqrt(Psi_aa) = v`` (``Psi = Lambda Lambda'`` of the
  term's level): the scale it implies, ``sigma^2 = v^2 / Psi_aa``, θ free;
* a correlation: an equality constraint on θ (SLSQP), the scale at its optimum.

The statistics are in the units the pass summed (``y / d_y``, :mod:`dlmm.spec.centering`):
the scale there is ``sigma^2 / d_y^2``, a fixed effect ``A beta_c + a``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputError
from ..objective.profiled import constrained_gls
from ..objective.shift import fixed_effects_map
from ..structure.threads import one_blas_thread
from .distributions import chi2_quantile
from .llf_maximize import maximize_llf


def _ml_fit(result):
    """The ML fit of a REML result's model, leaving the model as it was."""
    model = result.model
    reml = model.reml
    try:
        return model.fit(reml=False, start_params=result.theta.to_numpy())
    finally:
        model.reml = reml


class TermsProfile:
    """The ML profile likelihood of a fit of random-effects terms (see the module
    docstring), evaluated on the driver from the fit's statistics."""

    def __init__(self, result):
        stats = getattr(result.model, "_stats", None)
        if stats is None:
            raise InputError("profiling needs the fitted data; a loaded result cannot "
                             "profile: fit the model again")
        self.ml = result if not result.reml else _ml_fit(result)
        model = self.model = result.model
        self.stats = stats.on_driver()  # hundreds of evaluations in a row
        self.objective = model.objective(self.stats, reml=False)
        self.n = float(self.stats.totals.n_rows)
        self.layout = model.engine_layout
        self.directions = self.layout.dlambdas()  # (level, d Lambda / d theta_j)
        centering = model.spec.centering
        self.a_mat, self.offset = fixed_effects_map(centering.xy_shift, centering.x_intercept,
                                                    centering.xy_scale)
        self.d_y = float(centering.xy_scale[-1])
        self.theta_hat = np.asarray(self.ml.engine_theta, dtype=float)
        self.llf_hat = self.llf_free_scale(self.theta_hat)[0]

    # -- evaluation ----------------------------------------------------------------

    def _terms(self, theta):
        pieces = self.objective.pieces(theta)
        return pieces, self.stats.totals.xy_cross - pieces.hmh

    def llf_free_scale(self, theta, constraint=None):
        """ML llf (up to a constant) at θ with the scale and the fixed effects (under
        ``constraint`` on the coefficients the pass summed, if given) at their optimum,
        and its gradient along θ."""
        pieces, s = self._terms(theta)
        c, q = constrained_gls(s, constraint)
        llf = -0.5 * pieces.logdet - 0.5 * self.n * np.log(q / self.n)
        return llf, self.objective.gradient(theta, pieces, c, 0.5 * self.n / q)

    def llf_fixed_scale(self, theta, scale_of):
        """ML llf at θ with ``s2, d s2 / d theta = scale_of(theta)`` (the pass's units)
        and the fixed effects at their GLS values, and its gradient along θ."""
        pieces, s = self._terms(theta)
        c, q = constrained_gls(s)
        s2, ds2 = scale_of(theta)
        if not s2 > 0 or not np.isfinite(s2):
            return -np.inf, np.zeros_like(theta)
        n = self.n
        # the constant of llf_free_scale: equal to it at s2 = q / n
        llf = -0.5 * pieces.logdet - 0.5 * n * np.log(s2) - 0.5 * q / s2 + 0.5 * n
        grad = self.objective.gradient(theta, pieces, c, 0.5 / s2)
        grad = grad + (-0.5 * n / s2 + 0.5 * q / s2**2) * ds2
        return llf, grad

    def _psi(self, theta, level: int, a: int, b: int):
        """``Psi_ab`` of ``level`` (``Lambda Lambda'``) and its gradient along θ."""
        lam = self.layout.to_lambdas(theta)[level]
        grad = np.zeros(len(theta))
        for j, (lv, d) in enumerate(self.directions):
            if lv == level:
                grad[j] = d[a] @ lam[b] + lam[a] @ d[b]
        return float(lam[a] @ lam[b]), grad

    # -- maximization --------------------------------------------------------------

    def _maximize(self, fun, start, constraint=None):
        return maximize_llf(fun, start, self.n, constraint, gtol=1e-9,
                            ftol=1e-13 if constraint is None else 1e-15)

    # -- the parameters ------------------------------------------------------------

    def parameters(self) -> list[tuple[str, str, tuple]]:
        """(lme4's name, kind, index) of every parameter, in lme4's order: per term in
        θ's order the entries of its lower triangle column by column, a standard
        deviation on the diagonal and a correlation below it; ``sigma``; the fixed
        effects."""
        model = self.model
        out = []
        for t, (term, cols) in enumerate(zip(model.layout.terms, model.layout.columns)):
            k = model.term_order[t]
            level = self.layout.term_level[k]
            first = self.layout.term_columns[k].start
            q = len(cols)
            if term.structure == "scalar" and q > 1:
                out.append((f"sd_(sd)|{term.name}", "sd", (level, first)))
                continue
            entries = [(i, j) for j in range(q) for i in range(j, q)] \
                if term.structure == "unstructured" else [(j, j) for j in range(q)]
            for i, j in entries:
                if i == j:
                    out.append((f"sd_{cols[j]}|{term.name}", "sd", (level, first + j)))
                else:
                    out.append((f"cor_{cols[i]}.{cols[j]}|{term.name}", "cor",
                                (level, first + i, first + j)))
        out.append(("sigma", "sigma", ()))
        out += [(name, "fe", (j,)) for j, name in enumerate(self.ml.fe_params.index)]
        return out

    def estimate(self, kind: str, index: tuple) -> float:
        """The ML estimate of a parameter (the data's units)."""
        ml = self.ml
        sigma = float(np.sqrt(ml.scale))
        if kind == "fe":
            return float(ml.fe_params.iloc[index[0]])
        if kind == "sigma":
            return sigma
        if kind == "sd":
            level, a = index
            return sigma * float(np.sqrt(self._psi(self.theta_hat, level, a, a)[0]))
        level, a, b = index
        return self._correlation(self.theta_hat, level, a, b)[0]

    def _correlation(self, theta, level, a, b):
        pab, gab = self._psi(theta, level, a, b)
        paa, gaa = self._psi(theta, level, a, a)
        pbb, gbb = self._psi(theta, level, b, b)
        root = np.sqrt(max(paa * pbb, 1e-300))
        value = pab / root
        return value, gab / root - 0.5 * value * (gaa / max(paa, 1e-300)
                                                   + gbb / max(pbb, 1e-300))

    def profile_llf(self, kind: str, index: tuple, value: float, start):
        """The maximized ML llf with the parameter held at ``value``, and the argmax θ."""
        if kind == "fe":
            j = index[0]
            constraint = (self.a_mat[j], value - self.offset[j])
            return self._maximize(lambda th: self.llf_free_scale(th, constraint), start)
        if kind == "sigma":
            s2 = (value / self.d_y) ** 2
            zero = np.zeros(len(start))
            return self._maximize(lambda th: self.llf_fixed_scale(th, lambda _: (s2, zero)),
                                  start)
        if kind == "sd":
            level, a = index
            v2 = (value / self.d_y) ** 2

            def scale_of(theta):
                psi, grad = self._psi(theta, level, a, a)
                if psi <= 0:
                    return np.inf, grad
                return v2 / psi, -(v2 / psi**2) * grad

            return self._maximize(lambda th: self.llf_fixed_scale(th, scale_of), start)
        level, a, b = index
        constraint = {"type": "eq",
                      "fun": lambda th: self._correlation(th, level, a, b)[0] - value,
                      "jac": lambda th: self._correlation(th, level, a, b)[1]}
        return self._maximize(self.llf_free_scale, start, constraint)

    # -- intervals -----------------------------------------------------------------

    def zeta(self, kind: str, index: tuple, value: float, start):
        """lme4's signed root deviance at ``value``, and the argmax θ."""
        theta, llf = self.profile_llf(kind, index, value, start)
        est = self.estimate(kind, index)
        dev = max(0.0, 2.0 * (self.llf_hat - llf))
        return float(np.sign(value - est) * np.sqrt(dev)), theta

    def interval(self, kind: str, index: tuple, alpha: float = 0.05,
                 tol: float = 1e-5) -> tuple[float, float]:
        """The profile interval of one parameter (see the module docstring): each end
        where zeta is within ``tol`` of its target (1e-5: the end to about 5e-6 of the
        half-width, finer than lme4's spline of its profile)."""
        target = float(np.sqrt(chi2_quantile(1.0 - alpha, 1)))
        est = self.estimate(kind, index)
        to_u, from_u = _transforms(kind)
        u_hat = to_u(est)
        step = self._step(kind, index, est)
        out = []
        for direction in (-1.0, 1.0):
            out.append(self._end(kind, index, direction * target, u_hat, direction * step,
                                 to_u, from_u, tol))
        return out[0], out[1]

    def _end(self, kind, index, target, u_hat, step, to_u, from_u, tol):
        """One end: secants on zeta(u) from (u_hat, 0); the bound of the parameter when
        the profile does not reach ``target`` before it."""
        start = self.theta_hat.copy()
        points = [(u_hat, 0.0)]
        u = u_hat + step
        for _ in range(60):
            if not np.isfinite(u):
                break
            z, start = self.zeta(kind, index, from_u(u), start)
            points.append((u, z))
            if abs(z - target) < tol:
                return from_u(u)
            (u0, z0), (u1, z1) = points[-2], points[-1]
            if abs(z1) < abs(target) and abs(z1 - z0) < 1e-12:  # flat: walk on
                u = u1 + 2 * (u1 - u0)
                continue
            u_next = u1 + (target - z1) * (u1 - u0) / (z1 - z0) if z1 != z0 else \
                u1 + (u1 - u0)
            # keep to the side of the estimate, and within twice the last step's reach
            limit = u1 + 4 * (u1 - u0)
            if (u_next - u_hat) * (target) <= 0:
                u_next = 0.5 * (u1 + u_hat)
            elif (u_next - u1) * (limit - u1) > 0 and abs(u_next - u1) > abs(limit - u1):
                u_next = limit
            if abs(u_next - u1) <= 1e-12 * max(1.0, abs(u1)):
                return from_u(u_next)
            u = u_next
            if _at_bound(kind, from_u(u)):
                break
        return _bound(kind, target)

    def _step(self, kind, index, est) -> float:
        """A first step along the transformed parameter: about a Wald half-width."""
        if kind == "fe":
            return float(self.ml.bse_fe.iloc[index[0]])
        if kind == "cor":
            return 0.3
        return 0.2 if kind == "sd" else 0.05


def _transforms(kind: str):
    """The coordinate the secants run in, and back: log for sds, atanh for correlations."""
    if kind in ("sd", "sigma"):
        return (lambda v: np.log(v) if v > 0 else -np.inf), np.exp
    if kind == "cor":
        return (lambda v: np.arctanh(np.clip(v, -1 + 1e-15, 1 - 1e-15))), np.tanh
    return (lambda v: v), (lambda u: u)


def _at_bound(kind: str, value: float) -> bool:
    if kind in ("sd", "sigma"):
        return value < 1e-12
    if kind == "cor":
        return abs(value) > 1 - 1e-12
    return False


def _bound(kind: str, target: float) -> float:
    if kind in ("sd", "sigma"):
        return 0.0 if target < 0 else np.inf
    if kind == "cor":
        return float(np.sign(target))
    return float(np.sign(target) * np.inf)


def profile_conf_int(result, alpha: float = 0.05, parameters=None) -> pd.DataFrame:
    """lme4's profile intervals of a fit of random-effects terms (see the module
    docstring): a frame indexed by lme4's parameter names (fixed effects by their
    names in ``fe_params``) with the ML ``estimate``, ``lower`` and ``upper``.

    Parameters
    ----------
    result : TermsResults
    alpha : float
        1 - the confidence level.
    parameters : list of str, optional
        The parameters to profile (lme4's ``parm``); default all.
    """
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be between 0 and 1, got {alpha!r}")
    prof = result._profile()
    every = prof.parameters()
    if parameters is not None:
        names = [p[0] for p in every]
        unknown = [p for p in parameters if p not in names]
        if unknown:
            raise InputError(f"no parameter {unknown[0]!r} to profile (parameters: "
                             f"{', '.join(names)})")
        every = [p for p in every if p[0] in set(parameters)]
    rows = []
    # Hundreds of small optimizations: the BLAS pools' spinning between SciPy's and
    # NumPy's calls would cost more than their arithmetic (5x under load, measured).
    with one_blas_thread():
        for name, kind, index in every:  # loop over the few parameters
            lo, hi = prof.interval(kind, index, alpha)
            rows.append((name, prof.estimate(kind, index), lo, hi))
    frame = pd.DataFrame(rows, columns=["parameter", "estimate", "lower", "upper"])
    return frame.set_index("parameter")
