"""One-pass keyed sums: against dense products, chunking invariance, ``+``, purity."""

from __future__ import annotations

import ast
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

import dlmm.kernels.crossed as crossed
from dlmm.kernels.crossed import CrossedSums, combine_sums, crossed_sums

from .cases import CASES, make_case
from .helpers import dense_z


def _sums(design):
    return crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels)


def _offsets(design):
    sizes = [lv * t for lv, t in zip(design.n_levels, design.n_terms)]
    return np.concatenate([[0], np.cumsum(sizes)])


@pytest.mark.parametrize("name", sorted(CASES))
def test_sums_equal_dense_products(name):
    design = make_case(name)
    s = _sums(design)
    z = dense_z(design)
    xy = np.column_stack([design.x, design.y])
    zz, zxy = z.T @ z, z.T @ xy
    off = _offsets(design)
    for k, (lv, t) in enumerate(zip(design.n_levels, design.n_terms)):
        block = zz[off[k] : off[k + 1], off[k] : off[k + 1]].reshape(lv, t, lv, t)
        np.testing.assert_allclose(s.zz[k], block[np.arange(lv), :, np.arange(lv), :], atol=1e-12)
        # off-diagonal level blocks of Z_k'Z_k are zero
        mask = ~np.eye(lv, dtype=bool)
        assert np.all(block.transpose(0, 2, 1, 3)[mask] == 0)
        np.testing.assert_allclose(
            s.zxy[k], zxy[off[k] : off[k + 1]].reshape(lv, t, -1), rtol=1e-12, atol=1e-12
        )
    for pair, (j, k) in zip(s.pairs, combinations(range(len(design.n_levels)), 2)):
        tj, tk = design.n_terms[j], design.n_terms[k]
        full = zz[off[j] : off[j + 1], off[k] : off[k + 1]].reshape(
            design.n_levels[j], tj, design.n_levels[k], tk
        )
        rebuilt = np.zeros_like(full)
        rebuilt[pair.rows, :, pair.cols, :] = pair.values
        np.testing.assert_allclose(rebuilt, full, atol=1e-12)
        keys = pair.rows * design.n_levels[k] + pair.cols
        assert np.all(np.diff(keys) > 0)  # sorted, unique
        seen = np.zeros((design.n_levels[j], design.n_levels[k]), dtype=bool)
        seen[design.codes[j], design.codes[k]] = True
        assert keys.size == seen.sum()  # exactly the level pairs seen
    np.testing.assert_allclose(s.xy_cross, xy.T @ xy, rtol=1e-13)
    assert s.n_rows == design.y.size


def _split(design, n_chunks, rng):
    order = rng.permutation(design.y.size)
    return [design.take(part) for part in np.array_split(order, n_chunks)]


def _assert_same(a: CrossedSums, b: CrossedSums, rtol: float):
    for u, v in zip(a.zz + a.zxy, b.zz + b.zxy):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=rtol)
    for p, q in zip(a.pairs, b.pairs):
        np.testing.assert_array_equal(p.rows, q.rows)
        np.testing.assert_array_equal(p.cols, q.cols)
        np.testing.assert_allclose(p.values, q.values, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(a.xy_cross, b.xy_cross, rtol=rtol)
    assert a.n_rows == b.n_rows


@pytest.mark.parametrize("name", ["three_intercepts", "three_with_slopes", "one_level_factor"])
@pytest.mark.parametrize("n_chunks", [1, 3, 17])
def test_chunking_does_not_change_the_statistics(name, n_chunks):
    design = make_case(name)
    whole = _sums(design)
    rng = np.random.default_rng(n_chunks)
    parts = [_sums(c) for c in _split(design, n_chunks, rng)]
    combined = combine_sums(parts)
    _assert_same(combined, whole, rtol=1e-12)
    if all(t == 1 for t in design.n_terms):  # counts: exact whatever the split
        for u, v in zip(combined.zz, whole.zz):
            np.testing.assert_array_equal(u, v)
        for p, q in zip(combined.pairs, whole.pairs):
            np.testing.assert_array_equal(p.values, q.values)


def test_combining_is_deterministic_and_matches_plus():
    design = make_case("three_with_slopes")
    parts = [_sums(c) for c in _split(design, 5, np.random.default_rng(3))]
    once, again = combine_sums(parts), combine_sums(parts)
    by_plus = sum(parts)
    for other in (again, by_plus):
        for u, v in zip(once.zz + once.zxy, other.zz + other.zxy):
            np.testing.assert_array_equal(u, v)
        for p, q in zip(once.pairs, other.pairs):
            np.testing.assert_array_equal(p.values, q.values)
        np.testing.assert_array_equal(once.xy_cross, other.xy_cross)


def test_zeros_is_the_identity():
    design = make_case("three_with_slopes")
    s = _sums(design)
    zero = CrossedSums.zeros(s.n_levels, s.n_terms, s.n_columns)
    _assert_same(s + zero, s, rtol=0)
    _assert_same(zero + s, s, rtol=0)
    assert (0 + s) is s


def test_chunk_without_some_levels_combines():
    design = make_case("two_intercepts")
    rows = np.flatnonzero(design.codes[0] < 3)
    rest = np.flatnonzero(design.codes[0] >= 3)
    a, b = _sums(design.take(rows)), _sums(design.take(rest))
    assert np.all(a.zz[0][3:] == 0)
    _assert_same(a + b, _sums(design), rtol=1e-12)


def test_bad_inputs_are_rejected():
    design = make_case("two_intercepts")
    bad = [design.codes[0].copy(), design.codes[1]]
    bad[0][0] = design.n_levels[0]
    with pytest.raises(ValueError, match="level codes"):
        crossed_sums(bad, design.terms, design.x, design.y, design.n_levels)
    with pytest.raises(TypeError):
        crossed_sums(
            [c.astype(float) for c in design.codes],
            design.terms,
            design.x,
            design.y,
            design.n_levels,
        )
    other = make_case("three_intercepts")
    with pytest.raises(ValueError):
        combine_sums([_sums(design), _sums(other)])


def test_kernels_do_not_import_dask_or_the_driver():
    package = Path(crossed.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                assert node.level <= 1, f"{path.name} imports outside the package"
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                assert root not in {"dask", "distributed", "dlmm"}, f"{path.name}: {name}"


@pytest.mark.parametrize("n_chunks", [1, 3, 17])
def test_chunking_does_not_change_the_llf_or_modes(n_chunks):
    from dlmm.kernels.crossed import build_system, conditional_modes, factorize

    from .cases import thetas
    from .helpers import profiled_llf

    design = make_case("three_with_slopes")
    theta = thetas(design)["generic"]
    results = []
    for parts in (1, n_chunks):
        chunks = _split(design, parts, np.random.default_rng(parts + 100))
        system = build_system(combine_sums([_sums(c) for c in chunks]))
        fac = factorize(system, theta)
        value = profiled_llf(fac.logdet, system.xy_cross - fac.ctc, system.n_rows, True)
        results.append((value, conditional_modes(system, fac, value.beta)))
    (a, modes_a), (b, modes_b) = results
    assert b.llf == pytest.approx(a.llf, rel=1e-12)
    np.testing.assert_allclose(b.beta, a.beta, rtol=1e-10)
    for u, v in zip(modes_a, modes_b):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def test_an_empty_chunk_adds_nothing():
    design = make_case("three_with_slopes")
    empty = _sums(design.take(np.zeros(0, dtype=np.int64)))
    assert empty.n_rows == 0 and all(p.rows.size == 0 for p in empty.pairs)
    _assert_same(_sums(design) + empty, _sums(design), rtol=0)
