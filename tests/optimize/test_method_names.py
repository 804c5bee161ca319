"""Method names are normalised: every spelling gets its method's tolerances and, for the
derivative-free ones, no gradient (issue 10, item 7)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dlmm
from tests.conftest import reference_data


@pytest.mark.parametrize("method, scipy_name", [
    ("nelder-mead", "Nelder-Mead"), ("Nelder-Mead", "Nelder-Mead"), ("nm", "Nelder-Mead"),
    ("powell", "Powell"), ("l-bfgs-b", "L-BFGS-B"), ("L-BFGS-B", "L-BFGS-B"),
    ("lbfgs", "L-BFGS-B"), ("bfgs", "BFGS"),
])
def test_every_spelling_runs_its_method_quietly(reference_cases, method, scipy_name):
    exp = reference_cases["sleepstudy_ml"]["expected"]
    model = dlmm.mixedlm("Reaction ~ Days", reference_data("sleepstudy.csv"),
                         groups="Subject", re_formula="~Days")
    with warnings.catch_warnings():
        # scipy warns when a derivative-free method is handed jac= or a method gets
        # options it does not know: those are the symptoms of a name not recognised.
        warnings.simplefilter("error")
        result = model.fit(reml=False, method=method)
    assert result.mle_retvals["methods"][0]["method"] == scipy_name
    assert result.converged
    np.testing.assert_allclose(result.llf, exp["llf"], rtol=1e-8)
