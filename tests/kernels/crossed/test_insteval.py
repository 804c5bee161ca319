"""InstEval against lme4: the REML llf and conditional modes at lme4's estimates.

lme4 1.1-31's REML fits of ``y ~ service + (1 | s) + (1 | d)`` and
``... + (1 | dept:service)`` (``data/insteval_lme4.json``). At lme4's estimates,
``theta_k = sqrt(vcomp_k / scale)``; the profiled llf, the GLS fixed effects, the
profiled scale and lme4's conditional modes must come out of the kernels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlmm.kernels.crossed import (
    build_system,
    conditional_modes,
    conditional_variances,
    crossed_sums,
    factorize,
    gradient_pieces,
)

from .helpers import profiled_grad, profiled_llf

DATA = Path(__file__).parent / "data"
MODELS = {
    "insteval_crossed_reml": ["s", "d"],
    "insteval_three_reml": ["s", "d", "dept_service"],
}


@pytest.fixture(scope="module")
def insteval() -> pd.DataFrame:
    return pd.read_csv(DATA / "insteval.csv.gz", dtype={"dept_service": str})


@pytest.fixture(scope="module")
def lme4() -> dict:
    return json.loads((DATA / "insteval_lme4.json").read_text())


def _fit_inputs(data: pd.DataFrame, factors: list):
    codes, labels = [], []
    for f in factors:
        c, u = pd.factorize(data[f].astype(str), sort=True)
        codes.append(c.astype(np.int64))
        labels.append(list(u))
    x = np.column_stack([np.ones(len(data)), data["service"].to_numpy(float)])
    return codes, labels, x, data["y"].to_numpy(float)


@pytest.mark.parametrize("case", sorted(MODELS))
def test_llf_and_modes_at_lme4_estimates(insteval, lme4, case):
    factors = MODELS[case]
    expected = lme4[case]["expected"]
    codes, labels, x, y = _fit_inputs(insteval, factors)
    sums = crossed_sums(codes, [None] * len(factors), x, y, [len(u) for u in labels])
    system = build_system(sums)
    assert system.order[0] == 0  # students (2,972 levels) form the block-diagonal part
    assert system.dense_size == sum(len(u) for u in labels[1:])

    vcomp = np.array([expected["vcomp"][f] for f in factors])
    theta = np.sqrt(vcomp / expected["scale"])
    fac = factorize(system, theta)
    value = profiled_llf(fac.logdet, system.xy_cross - fac.ctc, system.n_rows, reml=True)
    assert system.n_rows == expected["nobs"]
    assert value.llf == pytest.approx(expected["llf"], rel=1e-9)
    assert value.scale == pytest.approx(expected["scale"], rel=1e-8)
    np.testing.assert_allclose(
        value.beta,
        [expected["fe_params"]["Intercept"], expected["fe_params"]["service"]],
        rtol=1e-7,
    )

    modes = conditional_modes(system, fac, value.beta)
    for f, mode, lab in zip(factors, modes, labels):
        ref = lme4[case]["random_effects"][f]
        want = np.array([ref[level] for level in lab])
        np.testing.assert_allclose(mode[:, 0], want, atol=1e-6)

    # lme4 stopped at an optimum: the llf gradient there is small next to its scale
    grad = gradient_pieces(system, fac)
    g = profiled_grad(value, grad.dlogdet, grad.dctc, system.n_rows, reml=True)
    assert np.all(np.abs(g) < 0.05)

    variances = conditional_variances(system, fac, value.scale)
    for v, vc in zip(variances, vcomp):
        assert np.all(v[:, 0, 0] > 0) and np.all(v[:, 0, 0] < vc)
