"""Blocks kept by residual component: the compiled per-group solves equal the batched
NumPy ones, and the derivatives along the components' coefficients equal central
differences of the grouped engine's pieces of the combined block (a block of 1,500
groups: the compiled path; and of 40: the NumPy one)."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.block import block_pieces
from dlmm.kernels.residual_blocks import (
    COMPILED_MIN_GROUPS,
    ComponentBlock,
    component_pieces,
    group_solves,
    numpy_solves,
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


def test_compiled_solves_are_numpys():
    block = _block(1500)
    assert block.n_groups >= COMPILED_MIN_GROUPS
    for lam in (LAM, np.array([[0.8, 0.0], [0.5, 0.0]])):  # the second singular
        for ours, ref in zip(group_solves(block, lam, C), numpy_solves(block, lam, C)):
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("groups", [1500, 40])
def test_directions_are_differences_of_the_pieces(groups):
    block = _block(groups)
    pieces = component_pieces(block, LAM, np.zeros(0), C)
    h = 1e-6
    for k in range(C.size):
        up, down = C.copy(), C.copy()
        up[k] += h
        down[k] -= h
        hi = block_pieces(block.at(up), LAM, np.zeros(0))
        lo = block_pieces(block.at(down), LAM, np.zeros(0))
        np.testing.assert_allclose(pieces.p_res[k], (hi.logdet - lo.logdet) / (2 * h),
                                   rtol=1e-6)
        np.testing.assert_allclose(pieces.t_res[k], (hi.hmh - lo.hmh) / (2 * h),
                                   rtol=1e-5, atol=1e-6 * np.abs(hi.hmh).max())
