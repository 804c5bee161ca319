"""nested_effects against dense BLUPs: B Z'V^-1(y - X beta) and the diagonal blocks of
B - B Z'V^-1 Z B (B = Lambda Lambda'), per level and node."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.nested import nested_effects

from .cases import CASES, Case
from .helpers import dense_effects, dense_llf, dense_stats


@pytest.mark.parametrize("which", ["generic", "singular"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_effects_match_dense_blups(name, which):
    case = Case(name)
    design = case.design
    lambdas = case.lambdas(case.thetas[which])
    _, beta = dense_llf(design, lambdas, reml=True)
    got = nested_effects(dense_stats(design), lambdas, np.concatenate([-beta, [1.0]]))
    want = dense_effects(design, lambdas, beta)
    assert len(got) == len(design.q)
    for (modes, cov), (want_modes, want_cov), n_l, q_l in zip(got, want, design.n_nodes,
                                                              design.q):
        assert modes.shape == (n_l, q_l) and cov.shape == (n_l, q_l, q_l)
        np.testing.assert_allclose(modes, want_modes, rtol=1e-9,
                                   atol=1e-10 * max(1.0, np.abs(want_modes).max(initial=0)))
        np.testing.assert_allclose(cov, want_cov, rtol=1e-9, atol=1e-12)
