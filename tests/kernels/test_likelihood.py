"""Likelihood pieces, profiled llf and BLUPs against dense ``V_i = I + A_i B A_i'``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dlmm.kernels import (
    batch_pieces,
    block_pieces,
    build_block,
    conditional_modes,
    group_crossproducts,
    relative_factor,
)
from dlmm.kernels.block import KeyedCrossProducts
from dlmm.objective import profiled_value


def _problem(rng, n_groups, k_re, p, comp_levels, sizes=(3, 9), extra=0.25, skip=0.0):
    """Random rows in random group order (codes are the labels), and their block.

    Each row has one nonzero per component plus, with probability ``extra`` per
    column, further nonzeros; so groups use different numbers of component columns.
    With probability ``skip`` a group does not use a component at all (width 0).
    """
    n_i = rng.integers(sizes[0], sizes[1] + 1, size=n_groups)
    codes = rng.permutation(np.repeat(np.arange(n_groups), n_i))
    n = codes.size
    z = rng.normal(size=(n, k_re))
    x = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))]) if p else np.zeros((n, 0))
    y = rng.normal(size=n) + z.sum(axis=1) + x.sum(axis=1)
    xy = np.column_stack([x, y])
    slot_component = np.repeat(np.arange(len(comp_levels)), comp_levels).astype(np.int64)
    w = np.zeros((n, slot_component.size))
    start = 0
    for levels in comp_levels:
        level = rng.integers(0, levels, size=n)
        w[np.arange(n), start + level] = rng.uniform(0.5, 1.5, size=n)
        if extra:
            more = rng.random((n, levels)) < extra
            w[:, start:start + levels] += more * rng.uniform(-1, 1, size=(n, levels))
        if skip:
            dropped = rng.random(n_groups) < skip
            w[dropped[codes], start:start + levels] = 0.0
        start += levels
    cp = group_crossproducts(codes, n_groups, z, xy, sp.csr_array(w) if w.size else None)
    block = build_block([KeyedCrossProducts(np.arange(n_groups), cp)], slot_component)
    return codes, z, xy, w, slot_component, block


def _dense(codes, z, xy, w, slot_component, chol_re, sd_vc):
    """Brute force: every V_i formed, inverted and its log-determinant taken."""
    k_re, r, k_vc = z.shape[1], xy.shape[1], len(sd_vc)
    out = {
        "logdet": 0.0, "s": np.zeros((r, r)), "p_re": np.zeros((k_re, k_re)),
        "p_vc": np.zeros(k_vc), "t_re": np.zeros((k_re, k_re, r, r)),
        "t_vc": np.zeros((k_vc, r, r)),
    }
    for i in np.unique(codes):
        rows = codes == i
        used = np.flatnonzero((w[rows] != 0).any(axis=0))
        a = np.hstack([z[rows], w[rows][:, used]])
        comp = slot_component[used]
        b = np.zeros((a.shape[1], a.shape[1]))
        b[:k_re, :k_re] = chol_re @ chol_re.T
        b[k_re:, k_re:] = np.diag(np.asarray(sd_vc)[comp] ** 2)
        v = np.eye(rows.sum()) + a @ b @ a.T
        v_inv = np.linalg.inv(v)
        sign, logdet = np.linalg.slogdet(v)
        assert sign > 0
        out["logdet"] += logdet
        out["s"] += xy[rows].T @ v_inv @ xy[rows]
        pm = a.T @ v_inv @ a
        rm = a.T @ v_inv @ xy[rows]
        out["p_re"] += pm[:k_re, :k_re]
        out["t_re"] += np.einsum("ai,bj->abij", rm[:k_re], rm[:k_re])
        for k in range(k_vc):
            idx = k_re + np.flatnonzero(comp == k)
            out["p_vc"][k] += np.trace(pm[np.ix_(idx, idx)])
            out["t_vc"][k] += rm[idx].T @ rm[idx]
    return out


def _dense_llf(s, logdet, n, reml):
    """The profiled llf of ARCHITECTURE.md from S = sum [Xy]'V^-1[Xy]."""
    p = s.shape[0] - 1
    beta = np.linalg.solve(s[:p, :p], s[:p, p]) if p else np.zeros(0)
    qf = s[p, p] - s[:p, p] @ beta
    fac = n - p if reml else n
    llf = -0.5 * logdet - 0.5 * fac * np.log(qf) - 0.5 * fac * (1 + np.log(2 * np.pi)
                                                                 - np.log(fac))
    if reml and p:
        llf -= 0.5 * np.linalg.slogdet(s[:p, :p])[1]
    return llf, beta, qf / fac


def _check_pieces(pieces, ref, xy, rtol=1e-9):
    def close(a, b, what):
        scale = max(1.0, float(np.max(np.abs(b))) if np.size(b) else 1.0)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=what)

    close(pieces.logdet, ref["logdet"], "logdet")
    close(xy.T @ xy - pieces.hmh, ref["s"], "S")
    close(pieces.p_re, ref["p_re"], "p_re")
    close(pieces.p_vc, ref["p_vc"], "p_vc")
    close(pieces.t_re, ref["t_re"], "t_re")
    close(pieces.t_vc, ref["t_vc"], "t_vc")


PARAMS = {
    "regular": (np.array([[0.8, 0.0], [0.3, 0.5]]), np.array([0.6, 1.2])),
    "zero_variance": (np.array([[0.0, 0.0], [0.4, 0.7]]), np.array([0.0, 0.9])),
    "rank_one_psi": (np.array([[0.8, 0.0], [-0.5, 0.0]]), np.array([0.5, 0.0])),
    "all_zero": (np.zeros((2, 2)), np.zeros(2)),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("reml", [True, False])
def test_pieces_and_llf_match_dense(name, reml):
    chol_re, sd_vc = PARAMS[name]
    rng = np.random.default_rng(7)
    codes, z, xy, w, slot_component, block = _problem(rng, 12, 2, 3, (3, 5))
    assert len(block.batches) > 1  # groups of several padded layouts
    ref = _dense(codes, z, xy, w, slot_component, chol_re, sd_vc)

    pieces = block_pieces(block, chol_re, sd_vc)
    _check_pieces(pieces, ref, xy)
    assert pieces.n_groups == 12
    by_batch = sum(batch_pieces(b, chol_re, sd_vc) for b in block.batches)
    np.testing.assert_allclose(by_batch.hmh, pieces.hmh, rtol=1e-14)

    value = profiled_value(pieces, xy.T @ xy, float(codes.size), reml)
    llf, beta, scale = _dense_llf(ref["s"], ref["logdet"], codes.size, reml)
    np.testing.assert_allclose(value.llf, llf, rtol=1e-10)
    np.testing.assert_allclose(value.fe_params, beta, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(value.scale, scale, rtol=1e-9)
    np.testing.assert_allclose(value.xvx, ref["s"][:3, :3], rtol=1e-9, atol=1e-9)


def test_zero_covariance_is_ols():
    """With B = 0, V = I and the ML profiled llf is the OLS log-likelihood."""
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    codes, z, xy, w, _, block = _problem(rng, 10, 2, 3, (2, 4))
    pieces = block_pieces(block, np.zeros((2, 2)), np.zeros(2))
    assert pieces.logdet == pytest.approx(0.0, abs=1e-12)
    value = profiled_value(pieces, xy.T @ xy, float(codes.size), reml=False)
    ols = sm.OLS(xy[:, -1], xy[:, :-1]).fit()
    np.testing.assert_allclose(value.llf, ols.llf, rtol=1e-11)
    np.testing.assert_allclose(value.fe_params, ols.params, rtol=1e-9)
    np.testing.assert_allclose(value.scale, ols.ssr / codes.size, rtol=1e-9)


def test_relative_factor():
    chol = np.array([[1.0, 0.0], [2.0, 3.0]])
    lam = relative_factor(chol, np.array([0.5, 0.0, 2.0]), np.array([2, 1, 3]))
    expected = np.zeros((8, 8))
    expected[:2, :2] = chol
    expected[np.arange(2, 8), np.arange(2, 8)] = [0.5, 0.5, 0.0, 2.0, 2.0, 2.0]
    np.testing.assert_array_equal(lam, expected)


def _dense_modes(codes, z, xy, w, slot_component, block, chol_re, sd_vc, beta):
    """B A'V^-1(y - X beta) and B - B A'V^-1 A B in each batch's padded layout."""
    out = []
    k_re = z.shape[1]
    for batch in block.batches:
        comp_of_pos = np.repeat(np.arange(batch.widths.size), batch.widths)
        q = batch.q
        b = np.zeros((q, q))
        b[:k_re, :k_re] = chol_re @ chol_re.T
        b[k_re:, k_re:] = np.diag(np.asarray(sd_vc)[comp_of_pos] ** 2)
        modes = np.zeros((batch.index.size, q))
        cov = np.zeros((batch.index.size, q, q))
        for j, gi in enumerate(batch.index):
            rows = codes == block.labels[gi]
            w_pad = np.hstack([w[rows], np.zeros((rows.sum(), 1))])[:, batch.slots[j]]
            a = np.hstack([z[rows], w_pad])
            v_inv = np.linalg.inv(np.eye(rows.sum()) + a @ b @ a.T)
            resid = xy[rows, -1] - xy[rows, :-1] @ beta
            modes[j] = b @ a.T @ v_inv @ resid
            cov[j] = b - b @ a.T @ v_inv @ a @ b
        out.append((modes, cov))
    return out


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_conditional_modes_match_dense(name):
    chol_re, sd_vc = PARAMS[name]
    rng = np.random.default_rng(21)
    codes, z, xy, w, slot_component, block = _problem(rng, 9, 2, 2, (2, 5))
    beta = np.array([0.7, -0.3])
    coef = np.concatenate([-beta, [1.0]])
    ref = _dense_modes(codes, z, xy, w, slot_component, block, chol_re, sd_vc, beta)
    for batch, (modes_ref, cov_ref) in zip(block.batches, ref):
        modes, cov = conditional_modes(batch, chol_re, sd_vc, coef)
        np.testing.assert_allclose(modes, modes_ref, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(cov, cov_ref, rtol=1e-9, atol=1e-11)
        if name == "all_zero":
            assert np.all(modes == 0) and np.all(cov == 0)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_groups=st.integers(1, 5),
    k_re=st.integers(0, 3),
    comp_levels=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    p=st.integers(0, 3),
    skip=st.sampled_from([0.0, 0.4]),
    zero_mask=st.integers(0, 255),
    reml=st.booleans(),
)
def test_random_shapes_match_dense(seed, n_groups, k_re, comp_levels, p, skip, zero_mask,
                                   reml):
    assume(k_re + len(comp_levels) >= 1)
    rng = np.random.default_rng(seed)
    codes, z, xy, w, slot_component, block = _problem(
        rng, n_groups, k_re, p, tuple(comp_levels), sizes=(1, 6), extra=0.3, skip=skip
    )
    assume(codes.size >= p + 2)
    # Some parameters set to exactly zero (bits of zero_mask): singular factors.
    chol_re = np.tril(rng.uniform(-1.2, 1.2, size=(k_re, k_re)))
    chol_re[np.diag_indices(k_re)] *= np.array([(zero_mask >> j) & 1 for j in range(k_re)])
    sd_vc = rng.uniform(0.1, 1.5, size=len(comp_levels))
    sd_vc *= np.array([(zero_mask >> (4 + k)) & 1 for k in range(len(comp_levels))])

    ref = _dense(codes, z, xy, w, slot_component, chol_re, sd_vc)
    pieces = block_pieces(block, chol_re, sd_vc)
    _check_pieces(pieces, ref, xy, rtol=1e-8)

    value = profiled_value(pieces, xy.T @ xy, float(codes.size), reml)
    llf, beta, scale = _dense_llf(ref["s"], ref["logdet"], codes.size, reml)
    np.testing.assert_allclose(value.llf, llf, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(value.scale, scale, rtol=1e-7)

    coef = np.concatenate([-beta, [1.0]])
    modes_ref = _dense_modes(codes, z, xy, w, slot_component, block, chol_re, sd_vc, beta)
    for batch, (m_ref, c_ref) in zip(block.batches, modes_ref):
        modes, cov = conditional_modes(batch, chol_re, sd_vc, coef)
        np.testing.assert_allclose(modes, m_ref, rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(cov, c_ref, rtol=1e-7, atol=1e-8)
