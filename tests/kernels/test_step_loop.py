"""The compiled step (``dlmm/kernels/step_loop.py``) against the NumPy batch code.

The NumPy forms (:func:`numpy_batch_pieces`, :func:`numpy_batch_newton_pieces`) are
checked against dense brute force in ``test_likelihood.py``; the compiled loop must
give the same sums, to 1e-12 relative (each array against its largest entry), on
blocks of every kind: one to six random-effect columns, variance components of
different widths padded to the batching grid, groups that use no component column,
groups whose random-effect design is all zero, one-row groups, singular covariance
factors; both the small-layout loop (one or two standard columns: BLAS tiles) and
the general one; lower-triangular factors ``L`` and the full ``U L`` of shifted
columns. Then a fit made through the compiled loop against statsmodels.
"""

from __future__ import annotations

import warnings
from dataclasses import fields

import numpy as np
import pytest
import scipy.sparse as sp

from dlmm.kernels import build_block, group_crossproducts
from dlmm.kernels.block import KeyedCrossProducts
from dlmm.kernels.hessian import (
    compiled_batch_newton_pieces,
    numpy_batch_newton_pieces,
)
from dlmm.kernels.layout import GroupBatch
from dlmm.kernels.likelihood import compiled_batch_pieces, numpy_batch_pieces

RTOL = 1e-12


def _block(rng, n_groups, k_re, p, comp_levels, sizes, extra=0.3, skip=0.3, zero_z=0.0):
    """Rows in random group order and their block: component columns used by a varying
    number per group (padded widths), some groups using no component (``skip``), some
    with an all-zero standard design (``zero_z``)."""
    n_i = rng.integers(sizes[0], sizes[1] + 1, size=n_groups)
    codes = rng.permutation(np.repeat(np.arange(n_groups), n_i))
    n = codes.size
    z = rng.normal(size=(n, k_re))
    if k_re:
        z[:, 0] = 1.0
    z[(rng.random(n_groups) < zero_z)[codes]] = 0.0
    x = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    xy = np.column_stack([x, rng.normal(size=n) + x.sum(axis=1) + z.sum(axis=1)])
    slot_component = np.repeat(np.arange(len(comp_levels)), comp_levels).astype(np.int64)
    w = np.zeros((n, slot_component.size))
    start = 0
    for levels in comp_levels:
        w[np.arange(n), start + rng.integers(0, levels, size=n)] = rng.uniform(0.5, 1.5, n)
        w[:, start:start + levels] += (rng.random((n, levels)) < extra) * rng.uniform(
            -1, 1, size=(n, levels))
        w[(rng.random(n_groups) < skip)[codes], start:start + levels] = 0.0
        start += levels
    cp = group_crossproducts(codes, n_groups, z, xy, sp.csr_array(w) if w.size else None)
    return build_block([KeyedCrossProducts(np.arange(n_groups), cp)], slot_component)


#: ``L``: a lower-triangular factor; one with a zero variance (a singular ``Psi``) and a
#: zero component; and ``U L`` of shifted random-effect columns
#: (``dlmm/structure/shifted.py``), which is not triangular.
FACTORS = ["regular", "singular", "shifted"]


def _factor(rng, k_re, k_vc, kind="regular"):
    chol = np.tril(rng.normal(size=(k_re, k_re)))
    sd = rng.uniform(0.3, 1.5, size=k_vc)
    if kind == "singular" and k_re:
        chol[-1, -1] = 0.0  # a rank-deficient Psi
    if kind == "singular" and k_vc:
        sd[0] = 0.0  # a zero variance component
    if kind == "shifted":
        u = np.triu(rng.normal(scale=0.5, size=(k_re, k_re)), 1) + np.eye(k_re)
        chol = u @ chol
    return chol, sd


def _same(a, b, what):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if b.shape == () and b == 0.0:  # NumPy's empty sum over no columns (q = 0): 0
        b = np.zeros(a.shape)
    assert a.shape == b.shape, what
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def _check_batch(batch, chol, sd):
    value = compiled_batch_pieces(batch, chol, sd)
    ref = numpy_batch_pieces(batch, chol, sd)
    for f in fields(ref):
        _same(getattr(value, f.name), getattr(ref, f.name), f"pieces.{f.name} q={batch.q}")
    newton = compiled_batch_newton_pieces(batch, chol, sd)
    ref_newton = numpy_batch_newton_pieces(batch, chol, sd)
    for part in ("value", "hess"):
        for f in fields(getattr(ref_newton, part)):
            _same(getattr(getattr(newton, part), f.name),
                  getattr(getattr(ref_newton, part), f.name),
                  f"newton.{part}.{f.name} q={batch.q} widths={list(batch.widths)}")


# (k_re, component levels, rows per group, p)
LAYOUTS = {
    "intercept": (1, (), (1, 6), 3),
    "slope": (2, (), (1, 6), 5),
    "slope_one_row_groups": (2, (), (1, 1), 4),
    "three_re": (3, (), (2, 8), 3),
    "six_re": (6, (), (4, 12), 2),
    "intercept_one_vc": (1, (5,), (2, 9), 3),
    "slope_two_vc": (2, (3, 2), (2, 9), 3),
    "vc_only": (0, (4,), (1, 7), 2),
    "vc_only_two": (0, (2, 3), (1, 7), 2),
}


@pytest.mark.parametrize("kind", FACTORS)
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_compiled_step_equals_numpy(name, kind):
    k_re, levels, sizes, p = LAYOUTS[name]
    rng = np.random.default_rng(sorted(LAYOUTS).index(name) + 100 * FACTORS.index(kind))
    block = _block(rng, 40, k_re, p, levels, sizes, zero_z=0.15)
    if levels:  # several padded layouts, one of them with unused (zero) columns
        assert len(block.batches) > 1
    chol, sd = _factor(rng, k_re, len(levels), kind)
    if kind == "shifted" and k_re > 1:
        assert np.triu(chol, 1).any()
    for batch in block.batches:
        _check_batch(batch, chol, sd)


def test_compiled_step_covers_q_one_to_six():
    """Batches of every q from 1 to 6 went through both loops above."""
    seen = set()
    for name, (k_re, levels, sizes, p) in LAYOUTS.items():
        rng = np.random.default_rng(sorted(LAYOUTS).index(name))
        seen |= {b.q for b in _block(rng, 40, k_re, p, levels, sizes, zero_z=0.15).batches}
    assert set(range(1, 7)) <= seen


def test_small_layout_batch_with_unused_components():
    """A batch of standard columns only whose groups use none of the model's component
    columns (widths 0) takes the small-layout loop and has zero component pieces."""
    rng = np.random.default_rng(5)
    block = _block(rng, 60, 2, 3, (3,), (2, 6), skip=0.5)
    unused = [b for b in block.batches if b.q == b.k_re]
    assert unused and unused[0].widths.tolist() == [0]
    chol, sd = _factor(rng, 2, 1, "shifted")
    _check_batch(unused[0], chol, sd)
    assert not compiled_batch_newton_pieces(unused[0], chol, sd).hess.d2[3].any()


@pytest.mark.parametrize("k_re, widths", [(2, []), (1, [2])], ids=["small", "general"])
def test_compiled_step_of_no_groups_is_zero(k_re, widths):
    q = k_re + sum(widths)
    batch = GroupBatch(np.zeros(0, dtype=np.int64), np.zeros((0, q, q)), np.zeros((0, q, 4)),
                       k_re, np.array(widths, dtype=np.int64),
                       np.zeros((0, q - k_re), dtype=np.int64))
    chol, sd = np.eye(k_re), np.ones(len(widths))
    newton = compiled_batch_newton_pieces(batch, chol, sd)
    assert newton.value.logdet == 0.0 and newton.value.n_groups == 0.0
    assert not newton.value.hmh.any() and not newton.hess.d2.any()
    assert newton.hess.d2.shape == (k_re * (k_re + 1) // 2 + len(widths),) * 2 + (4, 4)


def test_many_groups_sum_in_tiles_and_chunks():
    """More groups than a tile (256) and a chunk (64), not a multiple of either: the
    partial sums add up to the NumPy sums."""
    rng = np.random.default_rng(9)
    for k_re, levels in ((2, ()), (1, (3,))):
        block = _block(rng, 1100, k_re, 4, levels, (2, 5), skip=0.0, extra=0.0)
        chol, sd = _factor(rng, k_re, len(levels), "shifted")
        for batch in block.batches:
            _check_batch(batch, chol, sd)


def test_fit_through_compiled_step_matches_statsmodels(monkeypatch):
    """A REML fit (random intercept and slope, the slope's column far from zero, so
    that the statistics are of shifted columns) whose every step runs the compiled
    loop: converged, at least statsmodels' llf, and each program's likelihood at the
    other's estimates is the other's llf (dlmm's asked in the model's coordinates:
    a factor ``U L`` that is not triangular)."""
    import statsmodels.formula.api as smf
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    import dlmm
    from dlmm.kernels import hessian, likelihood
    from tests.simulate import grouped_data

    calls = []
    real = likelihood.sweep_batch

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(likelihood, "COMPILED_MIN_GROUPS", 1)
    monkeypatch.setattr(likelihood, "sweep_batch", counted)
    monkeypatch.setattr(hessian, "sweep_batch", counted)
    data = grouped_data(n_groups=60, per_group=(5, 15), re_cov=[[1.0, 0.3], [0.3, 0.5]],
                        seed=12)
    data["x1"] += 3.0
    model = dlmm.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1")
    fit = model.fit()
    assert calls and fit.converged  # the steps ran the compiled loop
    sm_model = smf.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels stops short here, and says so
        ref = sm_model.fit(method="bfgs", gtol=1e-8)
    assert fit.llf >= ref.llf - 1e-9 * abs(ref.llf)
    at_dlmm = MixedLMParams.from_components(fe_params=fit.fe_params.to_numpy(),
                                            cov_re=fit.cov_re_unscaled, vcomp=np.zeros(0))
    np.testing.assert_allclose(sm_model.loglike(at_dlmm, profile_fe=True), fit.llf,
                               rtol=1e-9)
    calls.clear()
    packed = ref.params_object.get_packed(use_sqrt=True, has_fe=True)
    np.testing.assert_allclose(model.loglike(packed), ref.llf, rtol=1e-9)
    assert calls
