"""Blocks kept by residual component: the compiled sweep equals the batched NumPy one,
its value pieces those of the grouped engine on the combined block, its derivatives
along directions over the components' coefficients central differences of those
pieces, and its second-derivative sums central differences of its derivatives (a
block of 1,500 groups: the compiled path; and of 40: the NumPy one)."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels import residual_blocks
from dlmm.kernels.block import block_pieces
from dlmm.kernels.hessian import directions
from dlmm.kernels.residual_blocks import (
    COMPILED_MIN_GROUPS,
    ComponentBlock,
    component_newton_pieces,
    component_pieces,
    numpy_sweep,
    sweep,
)


def _block(b: int, seed: int = 5) -> ComponentBlock:
    """Random positive semidefinite components (K = 4, q = 2, r = 3)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(4, b, 5, 5))
    gram = a @ np.swapaxes(a, 2, 3)  # the Gram matrix of [Z | X y] rows
    return ComponentBlock(np.arange(b), np.full(b, 5.0), np.ascontiguousarray(gram[..., :2, :2]),
                          np.ascontiguousarray(gram[..., :2, 2:]))


LAM = np.array([[0.9, 0.0], [-0.4, 0.6]])
C = np.array([1.3, 0.4, 0.7, 0.2])
#: two directions over the components with second-derivative sums, then one without
DIRS = np.array([[0.5, -1.0, 0.2, 0.0], [0.1, 0.3, -0.7, 1.1], [1.0, 0.0, 0.5, -0.3]])
E = directions(2, np.zeros(0, dtype=np.int64))  # each entry of Psi


def test_compiled_sweep_is_numpys():
    block = _block(1500)
    assert block.n_groups >= COMPILED_MIN_GROUPS
    coef = np.vstack([C, DIRS])
    for lam in (LAM, np.array([[0.8, 0.0], [0.5, 0.0]])):  # the second singular
        for n_hess in (0, 2):
            for ours, ref in zip(sweep(block, lam, coef, E, n_hess),
                                 numpy_sweep(block, lam, coef, E, n_hess)):
                np.testing.assert_allclose(ours, ref, rtol=1e-12,
                                           atol=1e-12 * max(1.0, np.abs(ref).max(initial=0.0)))


def test_sweep_by_slices_of_groups_is_numpys(monkeypatch):
    """A block swept in slices of groups (three of 400 and one of 300) sums as a whole."""
    monkeypatch.setattr(residual_blocks, "SWEEP_GROUPS", 400)
    block = _block(1500)
    coef = np.vstack([C, DIRS])
    for ours, ref in zip(sweep(block, LAM, coef, E, 2), numpy_sweep(block, LAM, coef, E, 2)):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("groups", [1500, 40])
def test_directions_are_differences_of_the_pieces(groups):
    block = _block(groups)
    pieces = component_pieces(block, LAM, np.zeros(0), C, DIRS)
    plain = block_pieces(block.at(C), LAM, np.zeros(0))
    for name in ("logdet", "hmh", "p_re", "t_re"):
        np.testing.assert_allclose(getattr(pieces, name), getattr(plain, name), rtol=1e-12)
    h = 1e-6
    for k, v in enumerate(DIRS):
        hi = block_pieces(block.at(C + h * v), LAM, np.zeros(0))
        lo = block_pieces(block.at(C - h * v), LAM, np.zeros(0))
        np.testing.assert_allclose(pieces.p_res[k], (hi.logdet - lo.logdet) / (2 * h),
                                   rtol=1e-6)
        np.testing.assert_allclose(pieces.t_res[k], (hi.hmh - lo.hmh) / (2 * h),
                                   rtol=1e-5, atol=1e-6 * np.abs(hi.hmh).max())


@pytest.mark.parametrize("groups", [1500, 40])
def test_second_derivative_sums_are_differences_of_the_first(groups):
    """``trace2 = -∂²Σlog|C|`` and ``d2[j, l] + d2[l, j] = -∂²hmh`` along the entries of
    ``Psi`` (moved by ``Λ = chol(Psi)``) and the first two directions, against central
    differences of the sweep's own first derivatives (the test above checks those)."""
    block = _block(groups)
    n_hess, m_cov = 2, E.shape[0]
    newton = component_newton_pieces(block, LAM, np.zeros(0), C, DIRS, E, n_hess)
    psi = LAM @ LAM.T

    def first(psi_at, c):
        """``(∂Σlog|C|, ∂hmh)`` along the entries of Psi, then along the directions."""
        p = component_pieces(block, np.linalg.cholesky(psi_at), np.zeros(0), c, DIRS[:n_hess])
        return (np.concatenate([np.einsum("jab,ab->j", E, p.p_re), p.p_res]),
                np.concatenate([np.einsum("jab,abrs->jrs", E, p.t_re), p.t_res]))

    h = 1e-6
    steps = [(h * e, np.zeros(4)) for e in E] + [(np.zeros((2, 2)), h * v)
                                               for v in DIRS[:n_hess]]
    scale = np.abs(newton.d2).max()
    for col, (d_psi, d_c) in enumerate(steps):
        up, down = first(psi + d_psi, C + d_c), first(psi - d_psi, C - d_c)
        np.testing.assert_allclose(newton.trace2[:, col], -(up[0] - down[0]) / (2 * h),
                                   rtol=1e-6, atol=1e-7 * np.abs(newton.trace2).max())
        d2 = newton.d2[:, col] + newton.d2[col]
        np.testing.assert_allclose(d2, -(up[1] - down[1]) / (2 * h), rtol=1e-5,
                                   atol=1e-7 * scale)
    assert m_cov + n_hess == newton.trace2.shape[0]


def test_a_block_tells_its_size():
    """Dask's scheduler sizes a block by ``sys.getsizeof`` (its ``sizeof`` fallback): a
    block of 1,500 groups of 4 components is 1,500 × 4 × (4 + 6) doubles and more, so
    that each step runs where its block is rather than moving it."""
    from dask.sizeof import sizeof

    block = _block(1500)
    assert sizeof(block) >= 1500 * 4 * 10 * 8 == block.g.nbytes + block.h.nbytes


def test_component_block_adds_pieces_by_label():
    """Pieces of runs of the block's groups (a chunk written group by group), of some
    of its groups, and pieces sharing groups (pairs joined across chunks) add into the
    block as a sum written out label by label."""
    from dlmm.kernels.residual_blocks import component_block

    rng = np.random.default_rng(3)
    labels = np.array([f"g{j:03d}" for j in range(0, 60, 2)], dtype=object)
    choices = [labels[:10], labels[10:30], labels[rng.random(30) < 0.5], labels[5:25:3]]
    pieces = [[], [], []]
    want_g, want_h, want_n = np.zeros((3, 30, 2, 2)), np.zeros((3, 30, 2, 3)), np.zeros((3, 30))
    for k, picks in ((0, (0, 1)), (2, (2, 3, 0))):
        for j in picks:
            sub = choices[j]
            zz, zr = rng.normal(size=(len(sub), 2, 2)), rng.normal(size=(len(sub), 2, 3))
            n = rng.integers(1, 5, len(sub)).astype(float)
            pieces[k].append((sub, zz, zr, n))
            for i, label in enumerate(sub):
                at = list(labels).index(label)
                want_g[k, at] += zz[i]
                want_h[k, at] += zr[i]
                want_n[k, at] += n[i]
    block, counts = component_block(labels, pieces)
    np.testing.assert_allclose(block.g, want_g, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(block.h, want_h, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(counts, want_n)
    assert list(block.labels) == list(labels) and block.g.shape == (3, 30, 2, 2)


@pytest.mark.parametrize("q, r, n_comp, n_hess", [(1, 2, 1, 2), (3, 5, 3, 3)])
def test_compiled_sweep_for_each_size_is_numpys(q, r, n_comp, n_hess, monkeypatch):
    """The sweep compiled for each model's sizes (q = 1 and 3 random effects, 1 and 4 fixed
    columns and y, 1 and 3 components; q = 2, r = 3 above; its small matrices read into
    tuples) against batched NumPy, on random components and a random Λ, along dense
    random directions ``E``."""
    monkeypatch.setattr(residual_blocks, "COMPILED_MIN_GROUPS", 1)
    rng = np.random.default_rng(q * 10 + r)
    b = 60
    a = rng.normal(size=(n_comp, b, q + r + 1, q + r))
    gram = np.swapaxes(a, 2, 3) @ a
    block = ComponentBlock(np.arange(b), np.full(b, 5.0), np.ascontiguousarray(gram[..., :q, :q]),
                           np.ascontiguousarray(gram[..., :q, q:]))
    lam = np.tril(rng.normal(size=(q, q))) + np.eye(q)
    coef = np.vstack([rng.uniform(0.5, 1.5, n_comp), rng.normal(size=(n_hess + 1, n_comp))])
    e = rng.normal(size=(q + 1, q, q))
    e = e + np.swapaxes(e, 1, 2)
    for hess in (0, n_hess):
        ours, ref = sweep(block, lam, coef, e, hess), numpy_sweep(block, lam, coef, e, hess)
        for x, y in zip(ours, ref):
            scale = max(1.0, np.abs(y).max(initial=0.0))
            np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-11 * scale)
