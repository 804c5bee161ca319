"""Convergence diagnostics (issue 5, item 5): ``result.mle_retvals`` (which statsmodels'
MixedLM lacks, its issue #4508), ``result.diagnostics`` (lme4-style checks) and the
optimization log, on a regular fit, a singular fit and a fit stopped early.

The gradient dlmm reports is checked against central differences of statsmodels' own
profiled log-likelihood, so the diagnostics are not only self-consistent but true.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm import ConvergenceWarning
from dlmm.io.jsonable import jsonable
from dlmm.io.result_folder import result_document
from tests.reliability.helpers import sm_profile_loglike, sqrt_params, statsmodels_fit
from tests.simulate import grouped_data

RETVAL_KEYS = {"converged", "method", "message", "methods", "evaluations", "newton_steps",
               "grad", "grad_norm", "decrement", "diagnostics"}
DIAGNOSTIC_KEYS = {"grad_max", "scaled_grad_max", "hessian_negative_definite", "singular",
                   "newton_decrement"}
FORMULA = "y ~ x1 + x2"
RE = "~x1"


@pytest.fixture(scope="module")
def regular_data() -> pd.DataFrame:
    return grouped_data(n_groups=40, per_group=(5, 15), k_fe=3,
                        re_cov=np.array([[1.0, 0.3], [0.3, 0.5]]), seed=7)


@pytest.fixture(scope="module")
def singular_data() -> pd.DataFrame:
    """No group effect at all: the random intercept and slope covariance is singular."""
    return grouped_data(n_groups=40, per_group=6, k_fe=3, seed=2)


def _fd_gradient(sm_model, chol: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of statsmodels' profiled REML llf in the packed sqrt parameters."""
    k = chol.shape[0]
    idx = np.tril_indices(k)
    theta = chol[idx]
    grad = np.zeros_like(theta)
    for j in range(theta.shape[0]):
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        cu, cd = np.zeros((k, k)), np.zeros((k, k))
        cu[idx], cd[idx] = up, down
        grad[j] = (sm_profile_loglike(sm_model, cu) - sm_profile_loglike(sm_model, cd)) / (2 * h)
    return grad


def _check_consistent(result) -> dict:
    """Invariants that hold for every fit; returns mle_retvals."""
    ret = result.mle_retvals
    assert set(ret) >= RETVAL_KEYS
    assert set(result.diagnostics) >= DIAGNOSTIC_KEYS
    assert ret["diagnostics"] == result.diagnostics
    assert ret["converged"] is result.converged
    assert isinstance(ret["method"], str) and isinstance(ret["message"], str)
    assert ret["methods"] and ret["methods"][-1]["method"] == ret["method"]
    assert ret["methods"][-1]["message"] == ret["message"]
    # Every evaluation is in the log, numbered 1..n.
    log = result.optimization_log
    assert ret["evaluations"] == log.evaluations == len(log.entries)
    assert [e.evaluation for e in log.entries] == list(range(1, ret["evaluations"] + 1))
    assert ret["newton_steps"] >= 0
    grad = np.asarray(ret["grad"], dtype=float)
    assert grad.shape == (result.k_re2 + result.k_vc,)
    np.testing.assert_allclose(ret["grad_norm"], np.sqrt(np.sum(grad**2)), rtol=1e-12)
    diag = result.diagnostics
    np.testing.assert_allclose(diag["grad_max"], np.max(np.abs(grad)), rtol=1e-12)
    assert diag["singular"] is result.singular
    assert diag["newton_decrement"] == ret["decrement"]
    # The reported optimum is an evaluated point: the log has an entry with its llf and
    # gradient norm.
    match = [e for e in log.entries if e.llf == pytest.approx(result.llf, rel=1e-13, abs=0)]
    assert match, "no logged evaluation has the result's llf"
    assert any(e.grad_norm == pytest.approx(ret["grad_norm"], rel=1e-6, abs=1e-12)
               for e in match)
    # JSON-safe, as result.json writes it.
    doc = result_document(result)
    assert doc["status"] == ("converged" if result.converged else "not_converged")
    assert doc["optimizer"]["evaluations"] == ret["evaluations"]
    json.dumps(jsonable(ret), allow_nan=False)
    return ret


def test_regular_fit_diagnostics(regular_data):
    with warnings.catch_warnings():
        # A clean fit warns of nothing (no convergence, Hessian or numerical warning).
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("error", RuntimeWarning)
        result = dlmm.mixedlm(FORMULA, regular_data, groups="g", re_formula=RE).fit()
    ret = _check_consistent(result)
    assert result.converged and not result.singular
    assert ret["methods"][-1]["success"] is True
    assert ret["grad_norm"] < 1e-6
    assert 0 <= ret["decrement"] <= 1e-7
    diag = result.diagnostics
    assert diag["hessian_negative_definite"] is True
    assert diag["scaled_grad_max"] < 2e-3  # lme4's threshold for its gradient check

    # The gradient is true: statsmodels' likelihood is flat at dlmm's optimum ...
    sm_model, sm_result, _, error = statsmodels_fit(FORMULA, regular_data, groups="g",
                                                    re_formula=RE)
    assert error is None
    chol, _ = sqrt_params(result)
    fd = _fd_gradient(sm_model, chol)
    assert np.max(np.abs(fd)) < 1e-5
    # ... at least as flat as at statsmodels' own optimum, whose fit reports no gradient
    # (no mle_retvals for MixedLM: statsmodels #4508).
    sm_chol = np.linalg.cholesky(sm_result.cov_re_unscaled)
    sm_fd = _fd_gradient(sm_model, sm_chol)
    assert np.max(np.abs(fd)) <= np.max(np.abs(sm_fd)) + 1e-6
    assert result.llf >= sm_result.llf - 1e-10 * abs(sm_result.llf)


def test_singular_fit_diagnostics(singular_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = dlmm.mixedlm(FORMULA, singular_data, groups="g", re_formula=RE).fit()
    ret = _check_consistent(result)
    assert result.converged
    assert result.singular is True and result.diagnostics["singular"] is True
    assert ret["grad_norm"] < 1e-6
    assert 0 <= ret["decrement"] <= 1e-7
    assert np.linalg.eigvalsh(result.cov_re_unscaled).min() <= 1e-8 * max(
        1.0, np.abs(result.cov_re_unscaled.to_numpy()).max())


def test_stopped_early_fit_says_so():
    """One CG iteration and no Newton polish: a ConvergenceWarning, and mle_retvals,
    diagnostics and result.json all say the fit did not converge and why."""
    data = grouped_data(n_groups=40, per_group=(5, 15), k_fe=3,
                        re_cov=np.array([[1.0, 0.3], [0.3, 0.5]]), seed=7)
    model = dlmm.mixedlm(FORMULA, data, groups="g", re_formula=RE)
    with pytest.warns(ConvergenceWarning, match=r"did not converge: \|grad\| = .*"
                      r"\(Maximum number of iterations has been exceeded\.\)") as record:
        result = model.fit(method="cg", maxiter=1, newton_steps=0)
    assert len([w for w in record if w.category is ConvergenceWarning]) == 1
    ret = _check_consistent(result)
    assert result.converged is False and ret["converged"] is False
    assert ret["method"] == "CG"
    assert ret["message"] == "Maximum number of iterations has been exceeded."
    assert ret["methods"] == [{"method": "CG", "success": False, "message": ret["message"],
                               "nit": 1, "nfev": ret["methods"][0]["nfev"]}]
    assert ret["newton_steps"] == 0
    assert ret["decrement"] > 1e-3 and ret["grad_norm"] > 1e-2
    # The full fit from the same model gets the llf the early stop left on the table.
    full = model.fit()
    assert full.converged
    assert full.llf > result.llf + 0.5 * ret["decrement"]
