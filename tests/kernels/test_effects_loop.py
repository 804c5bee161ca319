"""The compiled conditional modes and covariances (``dlmm/kernels/effects_loop.py``)
against the NumPy code and against dense brute force.

:func:`compiled_conditional_modes` must give the NumPy :func:`conditional_modes` to
1e-12 relative on blocks of every layout (``test_step_loop.LAYOUTS``), and both
``B A'V^{-1}(y - X beta)`` and ``B - B A'V^{-1}A B`` formed densely; a block's
effects and their change of coordinates (:func:`transform_effects`) are the same
whichever path a block of many groups takes.
"""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels import block as block_kernels
from dlmm.kernels import likelihood
from dlmm.kernels.layout import GroupBatch
from dlmm.kernels.likelihood import compiled_conditional_modes, conditional_modes
from tests.kernels.test_step_loop import FACTORS, LAYOUTS, _block, _factor, _same


@pytest.mark.parametrize("kind", FACTORS)
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_compiled_modes_equal_numpy(name, kind):
    k_re, levels, sizes, p = LAYOUTS[name]
    rng = np.random.default_rng(sorted(LAYOUTS).index(name) + 50)
    block = _block(rng, 30, k_re, p, levels, sizes, zero_z=0.15)
    chol, sd = _factor(rng, k_re, len(levels), kind)
    coef = np.concatenate([-rng.normal(size=p), [1.0]])
    for batch in block.batches:
        modes, cov = compiled_conditional_modes(batch, chol, sd, coef, 1.7)
        ref_modes, ref_cov = conditional_modes(batch, chol, sd, coef)
        _same(modes, ref_modes, f"modes q={batch.q}")
        _same(cov, 1.7 * ref_cov, f"cov q={batch.q}")


def test_compiled_modes_match_dense():
    """One group of two standard columns and a component of two columns, formed densely:
    ``b = B A'V^{-1} r`` and ``Var(b | y) = B - B A'V^{-1}A B`` (relative to the scale)."""
    rng = np.random.default_rng(4)
    n = 7
    a = np.column_stack([np.ones(n), rng.normal(size=n), rng.random(n) < 0.5,
                         rng.normal(size=n)])
    xy = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    chol = np.array([[0.9, 0.2], [0.4, 0.3]])  # not triangular (shifted columns)
    sd = np.array([0.7])
    lam = np.zeros((4, 4))
    lam[:2, :2] = chol
    lam[2, 2] = lam[3, 3] = 0.7
    b = lam @ lam.T
    v_inv = np.linalg.inv(np.eye(n) + a @ b @ a.T)
    coef = np.array([-0.3, -1.1, 1.0])
    batch = GroupBatch(np.zeros(1, dtype=np.int64), (a.T @ a)[None],
                                  (a.T @ xy)[None], 2, np.array([2]),
                                  np.array([[0, 1]]))
    modes, cov = compiled_conditional_modes(batch, chol, sd, coef)
    np.testing.assert_allclose(modes[0], b @ a.T @ v_inv @ (xy @ coef), rtol=1e-12)
    np.testing.assert_allclose(cov[0], b - b @ a.T @ v_inv @ a @ b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["slope", "slope_two_vc", "intercept_one_vc"])
def test_block_effects_and_transform_either_path(name, monkeypatch):
    """:func:`block_effects` then :func:`transform_effects` (shifted random-effect columns,
    a scaled response) by the compiled loops equal the NumPy ones to 1e-12."""
    k_re, levels, sizes, p = LAYOUTS[name]
    rng = np.random.default_rng(8)
    block = _block(rng, 50, k_re, p, levels, sizes, zero_z=0.1)
    chol, sd = _factor(rng, k_re, len(levels), "shifted")
    coef = np.concatenate([-rng.normal(size=p), [1.0]])
    u_inv = np.triu(rng.normal(size=(k_re, k_re))) + 2 * np.eye(k_re)
    out = {}
    for path, threshold in (("compiled", 1), ("numpy", 10**9)):
        monkeypatch.setattr(likelihood, "COMPILED_MIN_GROUPS", threshold)
        effects = block_kernels.block_effects(block, chol, sd, coef, 1.3)
        out[path] = block_kernels.transform_effects(effects, u_inv, 0.25)
    got, ref = out["compiled"], out["numpy"]
    for field in ("re_modes", "re_cov", "vc_modes", "vc_var"):
        _same(getattr(got, field), getattr(ref, field), field)
    np.testing.assert_array_equal(got.vc_slot, ref.vc_slot)
    for (index, slots, cov), (ref_index, ref_slots, ref_cov) in zip(got.batches, ref.batches):
        np.testing.assert_array_equal(index, ref_index)
        np.testing.assert_array_equal(slots, ref_slots)
        _same(cov, ref_cov, "batch covariance")
