"""Dropping [X y] columns from a built system, and the moment start values."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import (
    build_system,
    crossed_pieces,
    crossed_sums,
    moment_theta,
    schur_pair_count,
    select_columns,
)

from .cases import make_case, thetas
from .helpers import Design, brute_force


@pytest.mark.parametrize("name", ["three_intercepts", "three_with_slopes"])
def test_select_columns_is_the_system_of_fewer_columns(name):
    design = make_case(name)
    x = np.column_stack([design.x, design.x[:, -1] * 2.0 + 1.0])  # one more column
    system = build_system(crossed_sums(design.codes, design.terms, x, design.y,
                                       design.n_levels))
    keep = np.ones(x.shape[1] + 1, dtype=bool)
    keep[x.shape[1] - 1] = False  # drop the added column (the response stays last)
    reduced = select_columns(system, keep)
    theta = thetas(design)["generic"]
    pieces = crossed_pieces(reduced, theta, gradient=True)
    ref = brute_force(Design(design.codes, design.terms, design.x, design.y,
                             design.n_levels), theta)
    assert pieces.logdet == pytest.approx(ref.logdet, rel=1e-10)
    s = reduced.xy_cross - pieces.hmh
    np.testing.assert_allclose(s, ref.s, rtol=1e-10, atol=1e-10 * np.abs(ref.s).max())
    assert pieces.dhmh.shape[1:] == (design.x.shape[1] + 1,) * 2
    assert reduced._cache is system._cache  # the pair structure is shared, not rebuilt


def test_moment_theta_recovers_a_one_way_design():
    """One factor, 400 levels of 25 rows, sd 0.8 against a residual sd 1: the one-way
    analysis of variance estimates theta = 0.8 to its sampling error (~5%)."""
    rng = np.random.default_rng(3)
    levels, per = 400, 25
    codes = np.repeat(np.arange(levels), per)
    x = np.column_stack([np.ones(codes.size), rng.normal(size=codes.size)])
    y = x @ [1.0, 0.5] + rng.normal(scale=0.8, size=levels)[codes] + rng.normal(size=codes.size)
    system = build_system(crossed_sums([codes], [None], x, y, [levels]))
    theta = moment_theta(system)
    assert theta.shape == (1,)
    assert theta[0] == pytest.approx(0.8, rel=0.1)


def test_moment_theta_floor_and_slopes():
    design = make_case("two_intercepts")
    system = build_system(crossed_sums(design.codes, design.terms, design.x,
                                       np.zeros_like(design.y) + design.x[:, 0],
                                       design.n_levels))
    np.testing.assert_array_equal(moment_theta(system), [1.0, 1.0])  # y = X b: no residual
    slopes = make_case("slope_factor_first")
    system = build_system(crossed_sums(slopes.codes, slopes.terms, slopes.x, slopes.y,
                                       slopes.n_levels))
    np.testing.assert_array_equal(moment_theta(system), [1.0, 1.0, 0.0, 1.0])  # identity


@pytest.mark.parametrize("name", ["three_intercepts", "three_with_slopes"])
def test_schur_pair_count_is_the_operator_built(name):
    """The count the driver checks before building is the size of what it builds."""
    design = make_case(name)
    sums = crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels)
    system = build_system(sums)
    assert schur_pair_count(sums) == system.cost().schur_pairs
    if system.streamed:  # the pairs the kernels walk, times t_1^2
        t1 = design.n_terms[system.first]
        assert schur_pair_count(sums) == system.stream.pairs * t1 * t1
    elif system.dense_g21 is None:
        assert schur_pair_count(sums) == system.schur.nnz


@pytest.mark.parametrize("name", ["three_intercepts", "three_with_slopes"])
def test_default_path_follows_the_pair_count(name, monkeypatch):
    """Stored up to STORED_PAIRS_MAX pairs, streamed beyond; forcing either works
    (G21 not dense)."""
    from dlmm.kernels.crossed import counts as system_module

    design = make_case(name)
    sums = crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels)
    count = schur_pair_count(sums)
    monkeypatch.setattr(system_module, "STORED_PAIRS_MAX", count)
    assert not build_system(sums, dense=False).streamed
    monkeypatch.setattr(system_module, "STORED_PAIRS_MAX", count - 1)
    assert build_system(sums, dense=False).streamed
    assert not build_system(sums, streamed=False).streamed
    assert build_system(sums, streamed=True).schur is None
