"""A dense ``G21`` (dense products in place of the Schur pairs) against the stored pairs
and the dense brute force, and the default choice between them (issue 23)."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import (
    build_system,
    conditional_modes,
    conditional_variances,
    crossed_pieces,
    crossed_sums,
    factorize,
)
from dlmm.kernels.crossed import counts as system_module

from .cases import make_case, thetas
from .helpers import brute_force, profiled_grad, profiled_llf, random_design

#: The shipped ratio (read at import, before conftest's fixture sets it per path).
RATIO = system_module.DENSE_G21_RATIO

NAMES = ["two_intercepts", "three_intercepts", "slope_factor_first", "slope_factor_dense",
         "three_with_slopes", "one_level_factor"]


def _sums(design):
    return crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels)


def _values(system, theta, n):
    pieces = crossed_pieces(system, theta, gradient=True)
    prof = profiled_llf(pieces.logdet, system.xy_cross - pieces.hmh, n, reml=True)
    grad = profiled_grad(prof, pieces.dlogdet, pieces.dhmh, n, reml=True)
    return pieces, prof, grad


@pytest.mark.parametrize("which", ["generic", "singular"])
@pytest.mark.parametrize("name", NAMES)
def test_dense_g21_gives_the_stored_pairs_answer(name, which):
    design = make_case(name)
    theta = thetas(design)[which]
    sums = _sums(design)
    dense = build_system(sums, dense=True)
    stored = build_system(sums, dense=False, streamed=False, sparse=False)
    assert dense.dense_g21 is not None and dense.schur is None and not dense.streamed
    assert stored.dense_g21 is None and stored.schur is not None
    n = design.y.size
    got, got_llf, got_grad = _values(dense, theta, n)
    ref, ref_llf, ref_grad = _values(stored, theta, n)
    assert abs(got.logdet - ref.logdet) < 1e-10
    np.testing.assert_allclose(got_llf.beta, ref_llf.beta, rtol=0, atol=1e-10)
    assert abs(got_llf.llf - ref_llf.llf) < 1e-10
    np.testing.assert_allclose(got_grad, ref_grad, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.dlogdet, ref.dlogdet, rtol=0, atol=1e-10)
    # and both are the model's: the brute force on V
    brute = brute_force(design, theta)
    np.testing.assert_allclose(got.logdet, brute.logdet, rtol=1e-10)
    np.testing.assert_allclose(got_llf.llf, brute.reml.llf, rtol=1e-10)
    np.testing.assert_allclose(got_llf.beta, brute.reml.beta, rtol=1e-8, atol=1e-10)
    fac = factorize(dense, theta)
    for mode, ref_mode in zip(conditional_modes(dense, fac, brute.reml.beta), brute.modes):
        np.testing.assert_allclose(mode, ref_mode, rtol=1e-8, atol=1e-10)
    for var, ref_var in zip(conditional_variances(dense, fac, brute.reml.scale),
                            brute.variances):
        np.testing.assert_allclose(var, ref_var, rtol=1e-8, atol=1e-10)


def test_default_is_dense_when_every_level_meets_every_other(monkeypatch):
    """kb07's shape in small (every subject sees every item, slopes): the pairs cost
    ``t_1^2 l_1 Q2 (Q2 + 1) / 2``, the dense products ``Q2^2 l_1 t_1``: dense."""
    monkeypatch.setattr(system_module, "DENSE_G21_RATIO", RATIO)
    rng = np.random.default_rng(11)
    subj, item = np.meshgrid(np.arange(12), np.arange(8), indexing="ij")
    codes = [subj.ravel(), item.ravel()]
    n = codes[0].size
    z = np.column_stack([np.ones(n), rng.normal(size=n)])
    design = random_design(rng, n, [12, 8], [2, 2])
    sums = crossed_sums(codes, [z, z], design.x, design.y, [12, 8])
    assert build_system(sums).dense_g21 is not None
    assert build_system(sums, streamed=True).dense_g21 is None  # forcing a path wins
    assert build_system(sums, sparse=True, streamed=False).dense_g21 is None


def test_default_keeps_the_pairs_when_g21_is_sparse(monkeypatch):
    """Many levels of factor 1 each meeting few of the dense part (InstEval's shape):
    the pairs are far fewer than the dense products' multiply-adds."""
    monkeypatch.setattr(system_module, "DENSE_G21_RATIO", RATIO)
    rng = np.random.default_rng(12)
    n_first, n_rest = 400, 100
    first = np.repeat(np.arange(n_first), 3)
    rest = rng.integers(0, n_rest, size=first.size)
    rest[:n_rest] = np.arange(n_rest)
    design = random_design(rng, first.size, [n_first, n_rest], [1, 1])
    sums = crossed_sums([first, rest], [None, None], design.x, design.y, [n_first, n_rest])
    system = build_system(sums)
    assert system.dense_g21 is None  # stored or streamed, as conftest's path says


def test_forcing_dense_with_another_path_is_refused():
    sums = _sums(make_case("two_intercepts"))
    with pytest.raises(ValueError, match="dense G21"):
        build_system(sums, dense=True, streamed=True)
    with pytest.raises(ValueError, match="dense G21"):
        build_system(sums, dense=True, sparse=True)


def test_insteval_keeps_its_pairs(monkeypatch):
    """InstEval (students x instructors, ~25 instructors per student) keeps the stored
    pairs: a dense G21 would cost hundreds of times more per step."""
    import pandas as pd

    from .test_insteval import DATA

    monkeypatch.setattr(system_module, "DENSE_G21_RATIO", RATIO)
    data = pd.read_csv(DATA / "insteval.csv.gz", usecols=["s", "d", "y"])
    codes = [pd.factorize(data[f], sort=True)[0].astype(np.int64) for f in ("s", "d")]
    levels = [int(c.max()) + 1 for c in codes]
    y = data["y"].to_numpy(float)
    sums = crossed_sums(codes, [None, None], np.ones((y.size, 1)), y, levels)
    pairs = system_module.schur_pair_count(sums)
    assert not system_module.uses_dense_g21(levels[1], levels[0], 1, pairs)
    assert levels[1] ** 2 * levels[0] > 100 * pairs
    assert build_system(sums, streamed=False).dense_g21 is None
