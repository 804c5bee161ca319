"""Maximize the profiled log-likelihood: trust-region Newton or scipy methods, fall-back, polish.

The objective handed to scipy is ``-llf / n_obs`` with its analytic gradient
(one map-reduce for both). The methods are tried in order until one reports
success; the model's default is ``"newton"`` first (a trust-region Newton
method on the analytic Hessian, one map-reduce per iteration), then scipy's
quasi-Newton and simplex methods. Then a few Newton steps polish the
optimum, with the analytic Hessian (``hess_fun``) where the engine gives one
and otherwise with the Hessian by central differences of the analytic
gradient (``2 k`` evaluations for ``k`` parameters); they take the fit to the
true maximum where quasi-Newton methods stop short (statsmodels' REML fits
often do).

Where the Hessian is one of gradient differences (``hess_fun.differences``, as
:class:`~dlmm.objective.hessian.GradientHessian`: ``m`` or ``2 m`` evaluations), the
polish keeps it across its steps (a chord method: each step one evaluation of value
and gradient) while each step shrinks the next tenfold, takes a new one where they
do not, and at the end asks for the Hessian at the final point, which is the kept
one where the point is within its reuse (measured on kb07's maximal model, 20
parameters: 84 factorizations before, 64 after, the same optimum).

An engine whose evaluations cost less at reduced precision (the crossed engine's
dense Schur complement in float32, :mod:`dlmm.kernels.crossed.single`) passes
``coarse``: the quasi-Newton method (``"qnewton"``) then runs at that precision,
allowing for its error (:data:`~dlmm.optimize.qnewton.SINGLE_NOISE`), and hands its
point over where its next step is within :data:`COARSE_HANDOVER`; the polish runs at the
same precision too, on ``coarse_hessian`` (differences with steps its gradients' error
allows, kept over the polish's one or two steps), and stops within
:data:`COARSE_NEWTON_STEP` (the float32 gradient, refined, locates the optimum to
~1e-9 on the 10^6 ratings). Then one evaluation at full precision ends the fit: the
llf and every number returned are full precision's, the convergence test is taken
on it (the crossed engine makes it a float64 value alone, beside the float32
derivatives: :meth:`dlmm.structure.crossed.CrossedStatistics.pieces`); the coarse
evaluations never count as the best point seen. The 10^6 ratings (ML): 5 gradients
(2 the Hessian's) and 3 values in float32, one float64 value, where it took 4 + 3 in
float32 and 4 float64 gradients before; the same llf, the estimates within 7e-8. Since
then the start's Hessian is its own evaluation's average information (``information``,
no values) and the polish's Hessian differences only the directions the evaluation
does not know (:class:`~dlmm.objective.pair_hessian.PairGradientHessian`: two crossed
intercepts, one): 4 float32 gradients (1 the Hessian's), one float64 value, theta
within 6e-10 of the float64 optimum (within 6e-8 before).

The Newton steps go on while they do not lower the llf (beyond rounding)
and still move the parameters by more than 1e-11 relative, so that the
estimates are determined to near machine precision, not just to the
optimizer's tolerance: the same data partitioned differently give the same
estimates.

The trust-region Newton method ends at the first accepted step that passes
the convergence test below (and a method that stops with a warning after the
test already holds is not followed by the fall-back methods): scipy's own test
of the next, rounding-sized, step depends on the summation order, so without
this the same data took different paths on different partitionings.

A stationary point with a direction of positive curvature is a saddle, not
a maximum: in the square-root parameterization a zero variance is always
stationary, and the curvature there says whether the likelihood rises away
from it (under ML or REML alike). The optimizer steps off along that
direction and climbs again, trying steps from ``max(1, |x|)`` down to where
the gain the curvature promises is within the llf's rounding
(:func:`_escape_steps`), so that an interior maximum however close to the
boundary beats the boundary.

Convergence test: the Newton decrement ``g' (-H)^{-1} g / 2`` (the llf still
to gain by the quadratic model) is at most ``tol_llf``; where the Hessian is
not negative definite (a flat direction), the largest gradient component in
llf units must be at most ``tol_grad``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from ..objective.hessian import GradientHessian
from .log import COARSE_POLISH_STAGE, COARSE_STAGE, LogEntry, OptimizationLog
from .methods import CROSSED_COARSE_POLISH_DIFFERENCES
from .qnewton import SINGLE_NOISE, quasi_newton
from .steps import ESCAPE_GAIN, ascent_direction, converged_test, escape_steps, newton_decrement

#: Method names as users write them (any case; statsmodels' and scipy's spellings)
#: to scipy's names, which decide the tolerances and whether a gradient is passed.
SCIPY_NAMES = {"bfgs": "BFGS", "lbfgs": "L-BFGS-B", "l-bfgs-b": "L-BFGS-B", "cg": "CG",
               "nm": "Nelder-Mead", "nelder-mead": "Nelder-Mead", "powell": "Powell"}

#: The stage of the one full-precision evaluation that ends a fit polished coarsely.
FINAL_STAGE = "final"

#: The Newton polish stops where its next step is within this (relative to
#: ``max(1, |x|)``): full precision, so that the estimates are determined to near
#: machine precision.
NEWTON_STEP = 1e-11
#: The same after a coarse phase (its gradients locate the optimum to about 1e-9 on the
#: 10^6 ratings, :mod:`dlmm.kernels.crossed.single`): a smaller step is noise.
COARSE_NEWTON_STEP = 5e-8
#: The step (relative) within which a coarse quasi-Newton phase hands its point to the
#: polish (at the same precision), whose Hessian by differences, taken there, is kept for
#: its one or two steps (``coarse_hessian``'s reuse: the Hessian changes by about
#: 3e-4 relative over such a step on the 10^6 ratings, the standard errors by 1.5e-4).
COARSE_HANDOVER = 1e-4

ValueAndGradient = Callable[[np.ndarray], tuple[float, np.ndarray]]
ValueGradientHessian = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]


@dataclass
class OptimizeResult:
    """Outcome of :func:`maximize`."""

    x: np.ndarray
    llf: float
    grad: np.ndarray
    hessian: np.ndarray | None
    converged: bool
    decrement: float
    method: str
    message: str
    log: OptimizationLog


class _Objective:
    """Caches the last value/gradient and logs every evaluation."""

    def __init__(self, fun: ValueAndGradient, n_obs: float, log: OptimizationLog,
                 callback: Callable[[LogEntry], None] | None, hess_fun=None):
        self.fun = fun
        self.hess_fun = hess_fun
        self.use_hessian = False  # whether each evaluation also computes the Hessian
        # The last few evaluations with their Hessians, newest last: a trust-region
        # step that is rejected leaves the accepted point one evaluation back.
        self._cache: list[tuple] = []
        self.n_obs = max(float(n_obs), 1.0)
        self.log = log
        self.stage = "start"
        self.callback = callback
        self.value_fun = None  # x -> llf alone, where it is cheaper (the crossed engine)
        self.coarse = False  # evaluations at reduced precision: never the best seen
        self.best_x: np.ndarray | None = None
        self.best_llf = -np.inf
        self._start = time.perf_counter()

    def full(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Value, gradient and analytic Hessian in one evaluation (cached by x)."""
        x = np.asarray(x, dtype=float)
        hit = self._cached(x)
        if hit is not None:
            return hit[1], hit[2], hit[3]
        hess_box: list = []
        llf, grad = self.llf_grad(x, hess_box)
        return llf, grad, hess_box[0]

    def llf_grad(self, x: np.ndarray, hess_box: list | None = None) -> tuple[float, np.ndarray]:
        x = np.asarray(x, dtype=float)
        hit = self._cached(x)
        if hit is not None:
            # Already evaluated here (with the Hessian): no second map-reduce.
            if hess_box is not None:
                hess_box.append(hit[3])
            return hit[1], hit[2]
        with_hessian = hess_box is not None or (self.use_hessian and self.hess_fun is not None)
        try:
            if with_hessian:
                llf, grad, hess = self.hess_fun(x)
            else:
                llf, grad = self.fun(x)
        except (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError):
            # The likelihood is undefined here (X'V^-1 X singular, qf <= 0, a
            # covariance factor out of range): an infeasible point, never a crash,
            # wherever it is met (a scipy method, the polish, the escape step).
            llf, grad = -np.inf, np.full(x.shape, np.nan)
            hess = np.full((x.size, x.size), np.nan)
        if with_hessian:
            entry = (x.copy(), float(llf), np.asarray(grad, dtype=float),
                     np.asarray(hess, dtype=float))
            self._cache = [*self._cache[-3:], entry]
            if hess_box is not None:
                hess_box.append(entry[3])
        llf = float(llf)
        grad = np.asarray(grad, dtype=float)
        if not np.isfinite(llf):
            llf = -np.inf
        entry = LogEntry(
            evaluation=len(self.log.entries) + 1,
            llf=llf,
            grad_norm=float(np.sqrt(np.sum(grad**2))) if np.all(np.isfinite(grad)) else np.inf,
            seconds=time.perf_counter() - self._start,
            stage=self.stage,
        )
        self.log.entries.append(entry)
        if self.callback is not None:
            self.callback(entry)
        if llf > self.best_llf and not self.coarse:
            self.best_llf, self.best_x = llf, x.copy()
        return llf, grad

    def llf_only(self, x: np.ndarray) -> float:
        """The value alone from ``value_fun`` (logged; its gradient norm is NaN), or
        ``-inf`` where the likelihood is undefined."""
        x = np.asarray(x, dtype=float)
        try:
            llf = float(self.value_fun(x))
        except (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError):
            llf = -np.inf
        if not np.isfinite(llf):
            llf = -np.inf
        entry = LogEntry(evaluation=len(self.log.entries) + 1, llf=llf, grad_norm=np.nan,
                         seconds=time.perf_counter() - self._start, stage=self.stage)
        self.log.entries.append(entry)
        if self.callback is not None:
            self.callback(entry)
        return llf

    def _cached(self, x: np.ndarray) -> tuple | None:
        for entry in reversed(self._cache):
            if np.array_equal(entry[0], x):
                return entry
        return None

    def scipy_hess(self, x: np.ndarray) -> np.ndarray:
        _, _, hess = self.full(x)
        if not np.all(np.isfinite(hess)):
            return np.zeros_like(hess)
        return -hess / self.n_obs

    def scipy_fun(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        llf, grad = self.llf_grad(x)
        if not np.isfinite(llf) or not np.all(np.isfinite(grad)):
            return np.inf, np.zeros_like(x)
        return -llf / self.n_obs, -grad / self.n_obs


def fd_hessian(obj: _Objective, x: np.ndarray) -> np.ndarray:
    """Central differences of the analytic gradient, symmetrized."""
    k = x.shape[0]
    hess = np.zeros((k, k))
    for j in range(k):  # loop over parameters
        h = 1e-5 * max(1.0, abs(x[j]))
        e = np.zeros(k)
        e[j] = h
        _, gp = obj.llf_grad(x + e)
        _, gm = obj.llf_grad(x - e)
        hess[:, j] = (gp - gm) / (2 * h)
    return 0.5 * (hess + hess.T)


def _chord_stale(hess_fun, x: np.ndarray) -> bool:
    """Whether a Hessian by differences (:class:`~dlmm.objective.hessian.GradientHessian`)
    was taken farther from ``x`` than its reuse allows."""
    close = getattr(hess_fun, "_close", None)
    return close is not None and not close(np.asarray(x, dtype=float))


def maximize(
    fun: ValueAndGradient,
    x0: np.ndarray,
    n_obs: float,
    methods: tuple[str, ...] | list[str] = ("bfgs", "lbfgs", "nelder-mead"),
    maxiter: int = 2000,
    tol_llf: float = 1e-7,
    tol_grad: float = 1e-4,
    newton_steps: int = 8,
    callback: Callable[[LogEntry], None] | None = None,
    hess_fun: ValueGradientHessian | None = None,
    value_fun: Callable[[np.ndarray], float] | None = None,
    coarse: Callable[[], contextlib.AbstractContextManager] | None = None,
    coarse_hessian: ValueGradientHessian | None = None,
    information: Callable[[np.ndarray], np.ndarray | None] | None = None,
) -> OptimizeResult:
    """Maximize ``llf`` given ``fun(x) -> (llf, grad)``.

    Parameters
    ----------
    fun : callable
        Value and analytic gradient of the log-likelihood.
    x0 : ndarray
        Start (sqrt parameterization).
    n_obs : float
        Scale of the objective handed to scipy (``-llf / n_obs``).
    methods : sequence of str
        scipy methods to try in order: ``"bfgs"``, ``"lbfgs"``, ``"cg"``,
        ``"nelder-mead"``, ``"powell"`` (any ``scipy.optimize.minimize`` name).
        ``"newton"`` is a trust-region Newton method (scipy's ``trust-exact``)
        on the analytic Hessian of ``hess_fun``: one evaluation per iteration.
    tol_llf, tol_grad : float
        Convergence test (see the module docstring).
    hess_fun : callable, optional
        ``hess_fun(x) -> (llf, grad, hess)`` in one evaluation; used by
        ``"newton"`` and, in place of finite differences, by the polish.
    value_fun : callable, optional
        ``value_fun(x) -> llf`` alone, for an engine where that costs much less than
        ``fun``: ``"qnewton"`` (:mod:`dlmm.optimize.qnewton`) needs it.
    coarse : callable, optional
        ``coarse()`` is a context within which ``fun`` and ``value_fun`` evaluate at
        reduced precision for less (the crossed engine's Schur complement in float32):
        ``"qnewton"`` runs within it (allowing for its error,
        :data:`~dlmm.optimize.qnewton.SINGLE_NOISE`), and everything after it, the
        polish too when that phase succeeded (then on ``coarse_hessian``, if given),
        and one evaluation without it ends the fit: the convergence test and every
        number returned are full precision's (the coarse evaluations never count as
        the best point seen).
    coarse_hessian : callable, optional
        The polish's Hessian (as ``hess_fun``) after a coarse phase; by default forward
        differences of ``fun`` (:data:`~dlmm.optimize.methods.CROSSED_COARSE_POLISH_DIFFERENCES`).
    information : callable, optional
        ``x -> H`` or None: an approximate Hessian from the evaluation at ``x`` itself
        (the crossed engine's average information), the start of ``"qnewton"``'s steps
        in place of a Hessian of values (:func:`~dlmm.optimize.qnewton.quasi_newton`).
    """
    log = OptimizationLog()
    if coarse is not None and coarse_hessian is None:
        coarse_hessian = GradientHessian(fun, **CROSSED_COARSE_POLISH_DIFFERENCES)
    obj = _Objective(fun, n_obs, log, callback, hess_fun)
    obj.value_fun = value_fun
    t0 = time.perf_counter()
    x = np.asarray(x0, dtype=float).copy()
    names = SCIPY_NAMES
    used = "none"
    coarse_ok = [False]  # the coarse phase succeeded: the polish runs at its precision
    polished_coarse = [False]  # the last polish did
    message = ""
    if x.size == 0:
        llf, grad = obj.llf_grad(x)
        log.seconds = time.perf_counter() - t0
        return OptimizeResult(
            x, llf, grad, np.zeros((0, 0)), True, 0.0, "none", "no parameters", log
        )

    def converged_at(z) -> bool:
        """The convergence test at ``z`` (a point just evaluated with its Hessian,
        so no new evaluation)."""
        _, gradient, hessian = obj.full(z)
        return converged_test(gradient, hessian, tol_llf, tol_grad)

    def stop_when_converged(intermediate_result):
        """scipy's callback after each accepted trust-region step."""
        if converged_at(intermediate_result.x):
            raise StopIteration

    def climb(x):
        """The methods in order, then the Newton polish, from ``x``."""
        used, message = "none", ""
        for method in methods:
            if method.lower() == "qnewton":
                if value_fun is None or x.size == 0:
                    continue
                obj.stage = "qnewton"
                if coarse is None:
                    res = quasi_newton(obj.llf_grad, obj.llf_only, x, information=information)
                else:  # reduced precision: the polish (float64) takes the point on
                    obj.stage, obj.coarse = COARSE_STAGE, True
                    try:
                        with coarse():
                            res = quasi_newton(obj.llf_grad, obj.llf_only, x,
                                               noise=SINGLE_NOISE, tol_step=COARSE_HANDOVER,
                                               information=information)
                    finally:
                        obj.coarse = False
                    coarse_ok[0] = bool(res.success)
                # (a coarse phase's last point, not a float64 one seen before it)
                x = res.x if res.success or coarse is not None or obj.best_x is None \
                    else obj.best_x
                used, message = "qnewton", res.message
                log.methods.append({"method": "qnewton", "success": res.success,
                                    "message": message, "nit": res.nit, "nfev": res.nfev})
                if res.success:
                    break
                continue
            if method.lower() == "newton":
                if hess_fun is None:
                    continue
                obj.stage = "trust-newton"
                obj.use_hessian = True
                try:
                    res = optimize.minimize(obj.scipy_fun, x, jac=True, hess=obj.scipy_hess,
                                            method="trust-exact", callback=stop_when_converged,
                                            options={"maxiter": min(maxiter, 200), "gtol": 1e-9})
                except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                    log.methods.append({"method": "trust-exact", "success": False,
                                        "message": str(exc)})
                    obj.use_hessian = False
                    continue
                obj.use_hessian = False
                x = obj.best_x if obj.best_x is not None else res.x
                used, message = "trust-exact", str(res.message)
                # A Newton step that passed the convergence test ends the method, whatever
                # scipy says of its next, rounding-sized, step: the same data then take the
                # same path on any backend.
                done = converged_at(x)
                if done and not res.success:
                    message = "converged (Newton decrement within tolerance)"
                log.methods.append({"method": "trust-exact",
                                    "success": bool(res.success or done),
                                    "message": message, "nit": int(getattr(res, "nit", 0)),
                                    "nfev": int(getattr(res, "nfev", 0))})
                if res.success or done:
                    break
                continue
            scipy_name = names.get(method.lower().replace("_", "-"), method)
            obj.stage = scipy_name
            options: dict = {"maxiter": maxiter}
            if scipy_name == "BFGS":
                options["gtol"] = 1e-7
            elif scipy_name == "L-BFGS-B":
                # The Newton polish takes the fit the last digits (its one or two steps
                # from here cost an evaluation each), so the quasi-Newton method need not
                # grind them: measured on InstEval (REML, two and three factors), gtol
                # 1e-10 / ftol 1e-15 took 14 and 20 crossed evaluations, these 12 and
                # 18, to the same llf (within 1e-10 of lme4's).
                options.update(gtol=1e-7, ftol=1e-12, maxcor=20)
            elif scipy_name == "CG":
                options["gtol"] = 1e-7
            elif scipy_name == "Nelder-Mead":
                options.update(xatol=1e-10, fatol=1e-14, maxfev=20 * maxiter)
            elif scipy_name == "Powell":
                options.update(xtol=1e-10, ftol=1e-14, maxfev=20 * maxiter)
            jac = scipy_name not in ("Nelder-Mead", "Powell")
            fn = obj.scipy_fun if jac else (lambda z: obj.scipy_fun(z)[0])
            try:
                res = optimize.minimize(fn, x, jac=jac or None, method=scipy_name, options=options)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                log.methods.append({"method": scipy_name, "success": False, "message": str(exc)})
                continue
            x = obj.best_x if obj.best_x is not None else res.x
            used = scipy_name
            message = str(res.message)
            log.methods.append({
                "method": scipy_name, "success": bool(res.success), "message": message,
                "nit": int(getattr(res, "nit", 0)), "nfev": int(getattr(res, "nfev", 0)),
            })
            # Precision loss at the optimum counts as success: the Newton test decides.
            if res.success or "precision" in message.lower():
                break

        # Newton polish: the analytic Hessian when there is one, else central
        # differences of the analytic gradient; after a coarse phase that succeeded, at
        # its precision (see the module docstring), else at full precision.
        if coarse is not None and coarse_ok[0]:
            obj.stage, obj.coarse = COARSE_POLISH_STAGE, True
            try:
                obj.hess_fun = coarse_hessian
                taken = getattr(coarse_hessian, "directions", 0)
                with coarse():
                    out = polish(x, obj.hess_fun, COARSE_NEWTON_STEP, SINGLE_NOISE)
                # the Hessian's differences (not logged: they call fun, not the objective),
                # less the handover point (logged again, the engine's kept evaluation)
                log.coarse_differences += (getattr(coarse_hessian, "directions", 0) - taken) \
                    * (2 if getattr(coarse_hessian, "central", False) else 1) - 1
            finally:  # (its evaluations are not full precision: not kept for later)
                obj.coarse, obj.hess_fun, obj._cache = False, hess_fun, []
            polished_coarse[0] = True
        else:
            obj.stage = "newton"
            out = polish(x, hess_fun, NEWTON_STEP)
            polished_coarse[0] = False
        return (*out, used, message)

    def polish(x, hess_fun, floor, slack=1e-12):
        """Newton steps from ``x`` until the next is within ``floor`` (relative); a step
        may lower the llf by ``slack`` (relative) and still be taken."""
        chord = hess_fun is not None and bool(getattr(hess_fun, "differences", False))

        def at(z):
            if hess_fun is not None:
                return obj.full(z)
            value, gradient = obj.llf_grad(z)
            return value, gradient, fd_hessian(obj, z)

        llf, grad, hess = at(x)
        decrement, step = newton_decrement(grad, hess)
        size = np.inf
        for _ in range(newton_steps):
            if step is None or np.max(np.abs(step) / np.maximum(1.0, np.abs(x))) < floor:
                if not chord or not _chord_stale(hess_fun, x):
                    break
                # the chord steps have converged: the test and the results take the
                # Hessian here (a new one where the point left the old one's reach)
                hess = hess_fun.hessian(x, grad)
                decrement, step = newton_decrement(grad, hess)
                size = np.inf
                continue
            t = 1.0
            improved = False
            for _ in range(30):
                if chord:  # value and gradient: the Hessian is kept
                    cand_llf, cand_grad = obj.llf_grad(x + t * step)
                elif hess_fun is not None:  # the Hessian comes along for the next step
                    cand_llf, cand_grad, _ = obj.full(x + t * step)
                else:
                    cand_llf, cand_grad = obj.llf_grad(x + t * step)
                if cand_llf >= llf - slack * max(1.0, abs(llf)):
                    improved = cand_llf > llf or t == 1.0
                    break
                t *= 0.5
            if not improved:
                break
            x = x + t * step
            log.newton_steps += 1
            if not chord:
                llf, grad, hess = at(x)
                decrement, step = newton_decrement(grad, hess)
                continue
            llf, grad = cand_llf, cand_grad
            moved = float(np.max(np.abs(t * step) / np.maximum(1.0, np.abs(x))))
            decrement, step = newton_decrement(grad, hess)
            # A chord step that does not shrink the next one tenfold: the kept Hessian
            # is too far off here; take a new one.
            nxt = np.inf if step is None else \
                float(np.max(np.abs(step) / np.maximum(1.0, np.abs(x))))
            if (nxt > 0.1 * min(size, moved) and nxt >= floor) or t < 1.0:
                hess = hess_fun.refresh(x, grad)
                decrement, step = newton_decrement(grad, hess)
            size = moved
        if chord:  # the returned Hessian is the one at x (within its reuse)
            hess = hess_fun.hessian(x, grad)
            decrement, step = newton_decrement(grad, hess)

        if obj.best_llf > llf + 1e-12 * max(1.0, abs(llf)):  # never return worse than seen
            x = obj.best_x
            llf, grad, hess = at(x)
            decrement, step = newton_decrement(grad, hess)
        return x, llf, grad, hess, decrement

    x, llf, grad, hess, decrement, used, message = climb(x)
    # A stationary point with a direction of positive curvature is a saddle (in
    # the sqrt parameterization a zero variance is always stationary): step off
    # it along that direction and climb again.
    for _ in range(3):
        direction = ascent_direction(hess)
        if direction is None:
            break
        obj.stage = "escape"
        better = None
        for step in escape_steps(x, llf, hess):
            for sign in (1.0, -1.0):
                cand = x + sign * step * direction
                cand_llf, _ = obj.llf_grad(cand)
                if cand_llf > llf + ESCAPE_GAIN * max(1.0, abs(llf)) and (
                        better is None or cand_llf > better[1]):
                    better = (cand, cand_llf)
            if better is not None:
                break
        if better is None:
            break
        x, llf, grad, hess, decrement, used, message = climb(better[0])

    if polished_coarse[0]:
        # The one full-precision evaluation: the llf (and every number returned) at full
        # precision; the engine may keep the coarse derivatives here (the crossed engine:
        # a value alone, its float32 gradient refined). The test is taken again on it.
        obj.stage = FINAL_STAGE
        llf, grad = obj.llf_grad(x)
        decrement, _ = newton_decrement(grad, hess)
    grad_max = float(np.max(np.abs(grad))) if grad.size else 0.0
    if np.isfinite(decrement):
        converged = decrement <= tol_llf
    else:
        converged = grad_max <= tol_grad and ascent_direction(hess) is None
    log.seconds = time.perf_counter() - t0
    return OptimizeResult(
        x=x, llf=llf, grad=grad, hessian=hess, converged=bool(converged),
        decrement=decrement, method=used, message=message, log=log,
    )
