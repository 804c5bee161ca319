"""The top-down passes against the dense C = I + Lambda'Z'Z Lambda: C^{-1} c by back
substitution, and C^{-1} between every node and itself or an ancestor."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.nested import back_solve, factorize, selected_inverse

from .cases import Case
from .helpers import dense, dense_stats


def _offsets(design) -> list:
    return np.cumsum([0] + [k * q for k, q in zip(design.n_nodes, design.q)]).tolist()


@pytest.mark.parametrize("which", ["generic", "singular"])
@pytest.mark.parametrize("name", ["three_levels_q123", "three_levels_q101", "two_levels_q02"])
def test_solution_and_selected_inverse_match_dense(name, which):
    case = Case(name)
    design = case.design
    lambdas = case.lambdas(case.thetas[which])
    brute = dense(design, lambdas)
    zl = brute.z @ brute.lam
    c = np.eye(zl.shape[1]) + zl.T @ zl
    c_inv = np.linalg.inv(c)
    xy = np.column_stack([design.x, design.y])
    solution = np.linalg.solve(c, zl.T @ xy)

    factor = factorize(dense_stats(design), lambdas)
    b = back_solve(factor)
    inv = selected_inverse(factor)
    off = _offsets(design)
    active = [lv for lv, q in enumerate(design.q) if q]
    assert sorted(b) == active and sorted(inv.diag) == active
    for lv in active:
        n_l, q_l = design.n_nodes[lv], design.q[lv]
        rows = slice(off[lv], off[lv + 1])
        np.testing.assert_allclose(b[lv].reshape(-1, xy.shape[1]), solution[rows],
                                   rtol=1e-9, atol=1e-11)
        block = c_inv[rows, rows].reshape(n_l, q_l, n_l, q_l)
        np.testing.assert_allclose(inv.diag[lv], block[np.arange(n_l), :, np.arange(n_l)],
                                   rtol=1e-9, atol=1e-12)
        for above in (m for m in active if m < lv):
            n_m, q_m = design.n_nodes[above], design.q[above]
            anc = factor.tree.ancestor(lv, above)
            cross = c_inv[off[above]:off[above + 1], rows].reshape(n_m, q_m, n_l, q_l)
            np.testing.assert_allclose(inv.up[lv, above], cross[anc, :, np.arange(n_l)],
                                       rtol=1e-9, atol=1e-12)
