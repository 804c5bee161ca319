"""Chunks of whole groups in order become batches of their block as they are (issue 27):
no copy of their stacked products, and the same pieces as the block of one batch."""

from __future__ import annotations

import numpy as np

from dlmm.kernels.block import (
    BATCH_MIN_GROUPS,
    KeyedCrossProducts,
    block_effects,
    block_pieces,
    build_block,
    combine_keyed,
)
from dlmm.kernels.crossprod import group_crossproducts
from dlmm.kernels.hessian import block_newton_pieces
from dlmm.kernels.layout import stack_groups


def _part(first: int, n_groups: int, seed: int) -> KeyedCrossProducts:
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(n_groups), 3)
    z = np.column_stack([np.ones(codes.shape[0]), rng.normal(size=codes.shape[0])])
    xy = np.column_stack([z, rng.normal(size=codes.shape[0])])
    cp = group_crossproducts(codes, n_groups, z, xy, None)
    return KeyedCrossProducts(np.arange(first, first + n_groups), cp)


def test_parts_in_order_are_batches_as_they_are():
    slots = np.zeros(0, dtype=np.int64)
    parts = [_part(0, BATCH_MIN_GROUPS, 1), _part(BATCH_MIN_GROUPS, BATCH_MIN_GROUPS + 7, 2)]
    block = build_block(parts, slots)
    assert len(block.batches) == 2
    for batch, part in zip(block.batches, parts):
        assert np.shares_memory(batch.g, part.cp.zz) and np.shares_memory(batch.h, part.cp.zr)
    np.testing.assert_array_equal(block.labels, np.arange(2 * BATCH_MIN_GROUPS + 7))

    keyed = combine_keyed(parts, 1)  # the same groups as one batch (a copy)
    (one,) = stack_groups(keyed.cp, keyed.labels.shape[0], slots)
    whole = type(block)(keyed.labels, keyed.cp.n, [one])
    chol, sd = np.array([[0.7, 0.0], [0.2, 0.4]]), np.zeros(0)
    got, want = block_newton_pieces(block, chol, sd), block_newton_pieces(whole, chol, sd)
    np.testing.assert_allclose(got.value.logdet, want.value.logdet, rtol=1e-12)
    np.testing.assert_allclose(got.value.hmh, want.value.hmh, rtol=1e-12)
    np.testing.assert_allclose(got.hess.trace2, want.hess.trace2, rtol=1e-12)
    np.testing.assert_allclose(block_pieces(block, chol, sd).hmh, want.value.hmh, rtol=1e-12)
    coef = np.array([-0.5, 0.1, 1.0])
    a, b = block_effects(block, chol, sd, coef, 1.3), block_effects(whole, chol, sd, coef, 1.3)
    np.testing.assert_allclose(a.re_modes, b.re_modes, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.re_cov, b.re_cov, rtol=1e-12, atol=1e-14)
