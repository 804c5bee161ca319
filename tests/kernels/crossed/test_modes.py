"""Conditional modes and conditional covariance blocks against dense brute force."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import (
    build_system,
    conditional_modes,
    conditional_variances,
    crossed_sums,
    factorize,
    selected_inverse,
)

from .cases import CASES, make_case, thetas
from .helpers import ALL_PATHS, brute_force, profiled_llf, set_pair_path


@pytest.fixture(autouse=True, params=ALL_PATHS)
def pair_path(request, monkeypatch):
    """Stored pairs, streamed pairs and a dense ``G21`` (:func:`.helpers.set_pair_path`)."""
    return set_pair_path(request.param, monkeypatch)


@pytest.mark.parametrize("which", ["generic", "zero_entry", "singular"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_modes_and_variances_match_dense(name, which):
    design = make_case(name)
    theta = thetas(design)[which]
    system = build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels)
    )
    fac = factorize(system, theta)
    value = profiled_llf(fac.logdet, system.xy_cross - fac.ctc, system.n_rows, True)
    ref = brute_force(design, theta)
    modes = conditional_modes(system, fac, value.beta)
    variances = conditional_variances(system, fac, value.scale)
    assert len(modes) == len(variances) == len(design.n_levels)
    for got, want in zip(modes, ref.modes):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)
    for got, want in zip(variances, ref.variances):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_reused_inverse_gives_the_same_variances():
    design = make_case("three_with_slopes")
    system = build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels)
    )
    fac = factorize(system, thetas(design)["generic"])
    inv = selected_inverse(system, fac)
    for a, b in zip(
        conditional_variances(system, fac, 2.0, inverse=inv),
        conditional_variances(system, fac, 2.0),
    ):
        np.testing.assert_array_equal(a, b)


def test_unseen_level_has_prior_mode_and_variance():
    design = make_case("slope_factor_first")  # one unseen level appended per factor
    theta = thetas(design)["generic"]
    system = build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels)
    )
    fac = factorize(system, theta)
    modes = conditional_modes(system, fac, np.zeros(design.x.shape[1]))
    variances = conditional_variances(system, fac, 1.5)
    for k, tk in enumerate(fac.factors):
        assert np.all(modes[k][-1] == 0)
        np.testing.assert_allclose(variances[k][-1], 1.5 * tk @ tk.T, rtol=1e-12)
