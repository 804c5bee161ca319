"""Which optimizer methods a fit tries, in order, when none is given, and how its polish
takes a Hessian where the engine has no Hessian pieces."""

from __future__ import annotations

import numpy as np

#: The crossed engine's polish Hessian: forward differences of the analytic gradient with
#: steps of 1e-7 (``m`` evaluations, not ``2 m``), kept within 1e-6 of where it was
#: taken, as the central ones are. The crossed gradient is exact to about 1e-13
#: relative, so these differences are within about 3e-7 (relative to the largest
#: entry) of central ones with steps of 1e-5 (measured on the 10^6 ratings: 1.3e-7 and
#: 3.4e-7 on the diagonal, 1.4e-8 off it); the standard errors move by as much.
#: Measured on the 10^6 ratings (ML): 10 evaluations of value and gradient a fit, not 12.
CROSSED_POLISH_DIFFERENCES = {"rel_step": 1e-7, "central": False, "reuse": 1e-6}

#: The crossed engine's polish Hessian after its coarse phase (float32 Schur complement,
#: :mod:`dlmm.kernels.crossed.single`): the same forward differences at that precision,
#: with steps of 1e-4, where the float32 gradient's error (6e-5 in an llf whose Hessian
#: is about 5e4 on the 10^6 ratings) moves an entry by about 1e-5 relative and the
#: forward differences' own error is about 2e-4. Kept within 1e-4 of where it was
#: taken: the coarse phase hands over its point where its next step is that small
#: (:data:`~dlmm.optimize.driver.COARSE_HANDOVER`), so that the polish's Newton step
#: from there keeps it. Measured on the 10^6 ratings (ML) against the float64 polish's
#: Hessian: entries within 3.4e-4, the standard errors within 1.7e-4 (the variances'),
#: 2e-8 (the fixed effects'); the estimates within 6e-8, the llf equal. The entries
#: along pairs of the dense part's factors are since then the evaluation's own, exact
#: (:mod:`dlmm.kernels.crossed.dense_hessian`): the differences are the first factor's
#: column alone (:func:`qnewton_options`), one gradient, not two; the standard errors
#: within 1.7e-4 of the float64 polish's (the variances'), as before.
CROSSED_COARSE_POLISH_DIFFERENCES = {"rel_step": 1e-4, "central": False, "reuse": 1e-4}

#: The polish Hessian of a fit with residual parameters (``residual_by``,
#: ``residual_ar1``) where the exact one is not used (a covariance penalty): forward
#: differences (``m`` evaluations, not ``2 m``). An unpenalized fit has the exact
#: Hessian over θ and φ (:meth:`dlmm.objective.residual_map.ResidualMap.with_hessian`)
#: and starts with trust-region Newton steps (:func:`default_methods`).
RESIDUAL_POLISH_DIFFERENCES = {"central": False}


def polish_differences(stats) -> dict:
    """Options of the polish's :class:`~dlmm.objective.hessian.GradientHessian` for an
    engine without Hessian pieces: forward differences for the crossed engine, whose
    evaluations each factor a dense part (:data:`CROSSED_POLISH_DIFFERENCES`), and for
    the grouped engine with residual parameters (:data:`RESIDUAL_POLISH_DIFFERENCES`),
    central ones (the class's defaults) for the others."""
    if stats.engine_name == "crossed":
        return dict(CROSSED_POLISH_DIFFERENCES)
    if getattr(stats, "structure", None) is not None:  # a residual model's parameters
        return dict(RESIDUAL_POLISH_DIFFERENCES)
    return {}


def default_methods(stats) -> list[str]:
    """The methods ``fit`` tries in order when none is given: trust-region Newton
    first where the engine has Hessian pieces (the grouped engine), else L-BFGS-B
    on the analytic gradient, by measurement (crossed REML fits from the engine's
    start, evaluations of value and gradient, the polish's included): InstEval
    14 (two factors) and 19 (three), Penicillin 20, four simulated designs 18-23;
    BFGS 14, 22, 22, 23-33; Newton on gradient differences 16 and 43; Nelder-Mead
    48 and 96, Powell 38 and 56 (the data of ``tests/structure``; a value alone
    costs about a quarter of one with its gradient). Since then the crossed engine
    starts with ``"qnewton"`` (:mod:`dlmm.optimize.qnewton`: Newton steps from a
    Hessian of values at the start, updated by BFGS), whose gradients and values,
    with the polish's forward differences, were on InstEval 7 + 3 (two factors)
    and 12 + 6 (three) against 12 and 18 gradients, and on the 10^6 ratings (ML)
    7 + 3 against 12 (L-BFGS-B's first step, a unit step along the gradient, was
    one gradient lost there)."""
    if stats.has_newton_pieces or getattr(stats, "structure", None) is not None:
        # (a residual model's φ: exact Hessian pieces over θ and φ, residual_newton_pieces)
        return ["newton", "bfgs", "lbfgs", "nelder-mead"]
    if hasattr(stats, "value_pieces"):
        return ["qnewton", "lbfgs", "bfgs", "nelder-mead"]
    return ["lbfgs", "bfgs", "nelder-mead"]


def qnewton_options(objective, engine, fun, x0: np.ndarray, mask: np.ndarray) -> dict:
    """:func:`~dlmm.optimize.driver.maximize`'s options for an engine with values alone
    (the crossed engine's ``"qnewton"``), over the free entries (``mask``) of ``x0``:
    ``coarse`` where it factors a large dense part in float32, the start's average
    information (:meth:`~dlmm.objective.objective.ProfiledObjective.information`) and a
    coarse polish Hessian by differences of ``fun`` only where the evaluation does not
    know it (:class:`~dlmm.objective.pair_hessian.PairGradientHessian`)."""
    from ..objective.free import free_matrix
    from ..objective.pair_hessian import PairGradientHessian

    coarse = getattr(engine, "coarse_precision", None)
    out = {"coarse": coarse, "information": free_matrix(objective.information, x0, mask)}
    if coarse is not None:
        known = free_matrix(objective.pair_hessian, x0, mask)
        out["coarse_hessian"] = PairGradientHessian(fun, known,
                                                    **CROSSED_COARSE_POLISH_DIFFERENCES)
    return out
