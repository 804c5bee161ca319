"""The compiled per-node loops against NumPy: products (transposed, read at an index,
added at an index) and Cholesky inverses, for block orders 0 to 5 and empty stacks."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.nested.small import cholesky_inverse, product


@pytest.mark.parametrize("q", [0, 1, 2, 3, 5])
def test_product_matches_numpy(q):
    rng = np.random.default_rng(q)
    n, m, r = 7, 3, 4
    a = rng.normal(size=(n, q, q))
    b = rng.normal(size=(n, q, r))
    up = rng.normal(size=(m, q, r))
    idx = np.array([0, 0, 1, 1, 1, 2, 2])
    lam = rng.normal(size=(q, q))
    at = np.swapaxes(a, 1, 2)
    np.testing.assert_allclose(product(a, b), a @ b, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(product(a, b, trans_a=True), at @ b, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(product(lam, a, trans_a=True, trans_b=True), lam.T @ at,
                               rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(product(a, up, rows_b=idx), a @ up[idx], rtol=1e-14, atol=1e-14)
    out = up.copy()
    product(a, b, out=out, into=idx, sign=-1.0)
    want = up.copy()
    np.subtract.at(want, idx, a @ b)
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-13)
    assert product(a[:0], b[:0]).shape == (0, q, r)
    assert product(lam, b[:0]).shape == (0, q, r)


def test_product_refuses_mismatched_stacks():
    with pytest.raises(ValueError, match="stacks of"):
        product(np.ones((3, 2, 2)), np.ones((4, 2, 2)))
    with pytest.raises(ValueError, match="output"):
        product(np.ones((3, 2, 2)), np.ones((3, 2, 2)), out=np.zeros((3, 2, 3)))


@pytest.mark.parametrize("q", [0, 1, 2, 3, 5])
def test_cholesky_inverse_matches_numpy(q):
    rng = np.random.default_rng(q)
    x = rng.normal(size=(6, q, q + 2))
    d = x @ np.swapaxes(x, 1, 2) + 0.1 * np.eye(q)
    logdet, ti = cholesky_inverse(d)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(d)[1].sum(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ti, np.linalg.inv(np.linalg.cholesky(d)), rtol=1e-10,
                               atol=1e-12)
    bad = d.copy()
    if q:
        bad[3] = -np.eye(q)
        with pytest.raises(np.linalg.LinAlgError):
            cholesky_inverse(bad)
