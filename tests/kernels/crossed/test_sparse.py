"""The sparse Schur factorization (:mod:`dlmm.kernels.crossed.sparse`) against dense
brute force on ``V = I + Z Lambda Lambda' Z'``: log|V|, S (so the GLS solution), the
gradient, the conditional modes and variances; forced on the small random designs
of every shape (slopes included) and chosen by itself on a students x teachers x
schools design (teachers nested in schools)."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import (
    build_system,
    combine_sums,
    conditional_modes,
    conditional_variances,
    crossed_pieces,
    crossed_sums,
    factorize,
    sparse,
)
from dlmm.kernels.crossed.sparse import SparseSchurFactor

from .cases import CASES, make_case, thetas
from .helpers import Design, brute_force, dense_lambda, dense_z, profiled_llf

TOL = 1e-10


@pytest.fixture
def pair_path():
    """Stored pairs only here (the sparse path needs the Schur targets): overrides the
    directory's stored/streamed parametrization."""
    return "stored"


def _sums(design: Design):
    return crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels)


def brute_gradient(design: Design, theta: np.ndarray):
    """``d log|V| / d theta_j = tr(V^{-1} dV_j)`` and ``d(c'c) = [Xy]'V^{-1} dV_j
    V^{-1}[Xy]`` with ``dV_j = Z (E_j Lambda' + Lambda E_j') Z'`` (``Lambda`` is
    linear in theta: ``E_j`` is ``Lambda`` at the unit vector ``e_j``)."""
    z = dense_z(design)
    lam = dense_lambda(theta, design)
    v = np.eye(design.y.size) + z @ lam @ lam.T @ z.T
    vinv = np.linalg.inv(v)
    ztvz = z.T @ vinv @ z
    ztw = z.T @ (vinv @ np.column_stack([design.x, design.y]))
    dlogdet, dctc = [], []
    for e in np.eye(theta.size):
        ej = dense_lambda(e, design)
        dlogdet.append(2.0 * np.sum((ztvz @ lam) * ej))  # tr(V^-1 Z (E L' + L E') Z')
        half = ztw.T @ ej @ lam.T @ ztw
        dctc.append(half + half.T)
    return np.array(dlogdet), np.array(dctc)


def _check_against_brute(design: Design, system, theta: np.ndarray) -> None:
    ref = brute_force(design, theta)
    fac = factorize(system, theta)
    assert isinstance(fac.l22, SparseSchurFactor)
    assert fac.logdet == pytest.approx(ref.logdet, rel=TOL, abs=TOL)
    s = system.xy_cross - fac.ctc
    np.testing.assert_allclose(s, ref.s, rtol=TOL, atol=TOL * np.abs(ref.s).max())
    got = profiled_llf(fac.logdet, s, system.n_rows, True)
    assert got.llf == pytest.approx(ref.reml.llf, rel=TOL)
    np.testing.assert_allclose(got.beta, ref.reml.beta, rtol=1e-9, atol=1e-10)
    pieces = crossed_pieces(system, theta, gradient=True)
    dlogdet, dctc = brute_gradient(design, theta)
    np.testing.assert_allclose(pieces.dlogdet, dlogdet, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pieces.dhmh, dctc, rtol=1e-9, atol=1e-9 * np.abs(dctc).max())
    modes = conditional_modes(system, fac, ref.reml.beta)
    variances = conditional_variances(system, fac, ref.reml.scale)
    for k in range(len(design.n_levels)):
        np.testing.assert_allclose(modes[k], ref.modes[k], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(variances[k], ref.variances[k], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("which", ["generic", "zero_entry", "singular"])
@pytest.mark.parametrize("name", sorted(set(CASES) - {"single_factor"}))
def test_forced_sparse_matches_dense_brute_force(name, which):
    design = make_case(name)
    system = build_system(_sums(design), sparse=True)
    assert system.sparse is not None
    _check_against_brute(design, system, thetas(design)[which])


def star_design(seed: int = 0, n_schools: int = 14, per_school: int = 25,
                slopes: bool = False) -> Design:
    """Students x teachers x schools as in Tennessee STAR: each school has four grades
    of three to five classes, a student is in one class per grade for one to four
    consecutive grades (a few change school), so teachers nest in schools and two
    teachers share students only across grades of one school."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(3, 6, size=(n_schools, 4))
    first = np.concatenate([[0], np.cumsum(classes.ravel())])[:-1].reshape(n_schools, 4)
    n_teachers = int(classes.sum())
    students, teachers, schools = [], [], []
    n_students = n_schools * per_school
    for st in range(n_students):
        school = st % n_schools
        start = rng.integers(0, 4)
        for grade in range(start, min(4, start + rng.integers(1, 5))):
            if rng.random() < 0.05:
                school = rng.integers(n_schools)
            students.append(st)
            teachers.append(first[school, grade] + rng.integers(classes[school, grade]))
            schools.append(school)
    codes = [np.array(c, dtype=np.int64) for c in (students, teachers, schools)]
    n = codes[0].size
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = x @ [1.0, 0.5] + rng.normal(size=n)
    terms = [None, None, None]
    if slopes:
        terms[1] = np.column_stack([np.ones(n), x[:, 1]])
    for c, lv, sd in zip(codes, [n_students, n_teachers, n_schools], [1.0, 0.7, 0.5]):
        y += rng.normal(0, sd, size=lv)[c]
    return Design(codes, terms, x, y, [n_students, n_teachers, n_schools])


def test_students_teachers_schools_goes_sparse_by_itself(monkeypatch):
    """The layout chooses the sparse factor (its factor has a small part of the dense
    triangle's entries, by the minimum degree order) and gives the brute-force answer.
    The size floor is lowered to this small design's (it is there for the compiled
    loops' load time, not for the answer); under the floor the part stays dense."""
    design = star_design()
    q2 = design.n_levels[1] + design.n_levels[2]
    assert build_system(_sums(design)).sparse is None  # under SPARSE_MIN_SIZE
    monkeypatch.setattr(sparse, "SPARSE_MIN_SIZE", q2)
    system = build_system(_sums(design))
    assert system.dense_size == q2
    assert system.sparse is not None and system.sparse.ordering == "mmd"
    assert system.sparse.nnz < 0.2 * q2 * (q2 + 1) / 2
    _check_against_brute(design, system, np.array([0.9, 0.6, 0.4]))


def test_students_teachers_schools_with_teacher_slopes():
    design = star_design(seed=1, n_schools=8, per_school=30, slopes=True)
    system = build_system(_sums(design), sparse=True)
    assert system.n_terms == [1, 2, 1]
    _check_against_brute(design, system, np.array([0.9, 0.6, -0.2, 0.3, 0.4]))


def test_dense_rows_of_the_sparse_factor_are_the_cholesky_factor():
    """``P A P' = L L'`` entry by entry, with ``A`` the dense path's Schur complement."""
    design = star_design(seed=2, n_schools=6, per_school=20)
    theta = np.array([0.8, 1.1, 0.5])
    sparse = factorize(build_system(_sums(design), sparse=True), theta)
    dense = factorize(build_system(_sums(design), sparse=False), theta)
    a = np.tril(dense.l22) @ np.tril(dense.l22).T
    pat = sparse.l22.pattern
    lower = np.zeros((pat.n, pat.n))
    cols = np.repeat(np.arange(pat.n), np.diff(pat.lp))
    lower[pat.li, cols] = sparse.l22.lx
    np.testing.assert_allclose(lower @ lower.T, a[np.ix_(pat.perm, pat.perm)],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_chunks", [3, 17])
def test_sparse_order_and_answer_do_not_depend_on_the_chunks(monkeypatch, n_chunks):
    """The order and pattern come from the reduced sums only: rows read in 1, 3 or 17
    chunks give the same permutation and the same value and gradient."""
    design = star_design(seed=3)
    monkeypatch.setattr(sparse, "SPARSE_MIN_SIZE", 0)
    whole = build_system(_sums(design))
    bounds = np.linspace(0, design.y.size, n_chunks + 1).astype(int)
    parts = [_sums(design.take(np.arange(a, b))) for a, b in zip(bounds[:-1], bounds[1:])]
    chunked = build_system(combine_sums(parts))
    assert whole.sparse is not None and chunked.sparse is not None
    np.testing.assert_array_equal(chunked.sparse.perm, whole.sparse.perm)
    np.testing.assert_array_equal(chunked.sparse.li, whole.sparse.li)
    theta = np.array([0.9, 0.6, 0.4])
    a = crossed_pieces(whole, theta, gradient=True)
    b = crossed_pieces(chunked, theta, gradient=True)
    assert b.logdet == pytest.approx(a.logdet, rel=1e-12)
    np.testing.assert_allclose(b.hmh, a.hmh, rtol=1e-10)
    np.testing.assert_allclose(b.dlogdet, a.dlogdet, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b.dhmh, a.dhmh, rtol=1e-9, atol=1e-9 * np.abs(a.dhmh).max())
