"""Which optimizer methods a fit tries, in order, when none is given."""

from __future__ import annotations


def default_methods(stats) -> list[str]:
    """The methods ``fit`` tries in order when none is given: trust-region Newton
    first where the engine has Hessian pieces (the grouped engine), else L-BFGS-B
    on the analytic gradient, by measurement (crossed REML fits from the engine's
    start, evaluations of value and gradient, the polish's included): InstEval
    14 (two factors) and 19 (three), Penicillin 20, four simulated designs 18-23;
    BFGS 14, 22, 22, 23-33; Newton on gradient differences 16 and 43; Nelder-Mead
    48 and 96, Powell 38 and 56 (the data of ``tests/structure``; a value alone
    costs about a quarter of one with its gradient)."""
    if stats.has_newton_pieces:
        return ["newton", "bfgs", "lbfgs", "nelder-mead"]
    return ["lbfgs", "bfgs", "nelder-mead"]
