"""The Schur complement in float32 (:mod:`dlmm.kernels.crossed.single`) against the dense
brute force and the float64 kernels: ``log|C|`` and its gradient to float32's accuracy,
``c'c`` (refined) and its gradient to float64's."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import (
    SingleSchurFactor,
    build_system,
    crossed_pieces,
    crossed_sums,
    factorize,
    single_supported,
)
from dlmm.kernels.crossed import single as single_module

from .helpers import brute_force, random_design, set_pair_path


@pytest.fixture(autouse=True)
def pair_path(monkeypatch):
    """Stored pairs only: the one path that factors in float32 (:func:`single_supported`)."""
    return set_pair_path("stored", monkeypatch)


@pytest.fixture(scope="module")
def design():
    """Users x items, intercepts, unbalanced; enough items (150) that float32's rounding
    shows in ``log|C|``."""
    return random_design(np.random.default_rng(23), 900, [240, 150], [1, 1], p=3, once=3)


@pytest.fixture
def system(design):
    return build_system(crossed_sums(design.codes, design.terms, design.x, design.y,
                                     design.n_levels), sparse=False)


THETA = np.array([0.8, 0.55])


def test_the_factor_is_float32(system):
    fac = factorize(system, THETA, single=True)
    assert isinstance(fac.l22, SingleSchurFactor) and fac.l22.l.dtype == np.float32
    assert fac.c2 is None and fac.b2.dtype == np.float64


def test_value_against_brute_force(design, system):
    brute = brute_force(design, THETA)
    pieces = crossed_pieces(system, THETA, single=True)
    exact = crossed_pieces(system, THETA)
    assert exact.logdet == pytest.approx(brute.logdet, rel=1e-12)
    # log|C| from the float32 factor: float32's error, not float64's
    err = abs(pieces.logdet - brute.logdet)
    assert 1e-12 * abs(brute.logdet) < err < 1e-6 * abs(brute.logdet)
    # S = [X y]'V^{-1}[X y] refined to float64's accuracy
    s = system.xy_cross - pieces.hmh
    np.testing.assert_allclose(s, brute.s, rtol=1e-11, atol=1e-11 * np.abs(brute.s).max())


def test_gradient_against_float64(system):
    pieces = crossed_pieces(system, THETA, gradient=True, single=True)
    exact = crossed_pieces(system, THETA, gradient=True)
    np.testing.assert_allclose(pieces.dlogdet, exact.dlogdet, rtol=1e-5)
    assert np.abs(pieces.dlogdet - exact.dlogdet).max() > 1e-13 * np.abs(exact.dlogdet).max()
    scale = np.abs(exact.dhmh).max()
    np.testing.assert_allclose(pieces.dhmh, exact.dhmh, rtol=0, atol=1e-11 * scale)


def test_refinement_that_does_not_converge_raises(system, monkeypatch):
    """An ``A`` too ill-conditioned for float32 (here: no rounds allowed) is an error the
    statistics answer in float64 (:meth:`CrossedStatistics._evaluate`)."""
    monkeypatch.setattr(single_module, "REFINE_ROUNDS", 0)
    with pytest.raises(np.linalg.LinAlgError, match="refinement"):
        factorize(system, THETA, single=True)


def test_supported_only_for_a_large_dense_schur_part(system, monkeypatch):
    assert not single_supported(system)  # 150 < SINGLE_DENSE_MIN: float64 throughout
    monkeypatch.setattr(single_module, "SINGLE_DENSE_MIN", 100)
    assert single_supported(system)
