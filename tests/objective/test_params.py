"""``MixedLMParams`` packing against statsmodels' ``MixedLMParams`` on the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.regression.mixed_linear_model import MixedLMParams as SmParams

import dlmm
from dlmm.objective.params import MixedLMParams, packed_names
from tests.simulate import grouped_data


def _random_sqrt_vector(rng, k_fe, k_re, k_vc, has_fe):
    """Packed sqrt parameters with a positive diagonal of L (the Cholesky convention)."""
    low = np.tril(rng.normal(size=(k_re, k_re)))
    low[np.diag_indices(k_re)] = rng.uniform(0.3, 2.0, size=k_re)
    parts = [rng.normal(size=k_fe)] if has_fe else []
    return np.concatenate(parts + [low[np.tril_indices(k_re)], rng.uniform(0.1, 2, k_vc)])


def _random_profile_vector(rng, k_fe, k_re, k_vc, has_fe):
    a = rng.normal(size=(k_re, k_re + 2))
    psi = a @ a.T / (k_re + 2)  # positive definite
    parts = [rng.normal(size=k_fe)] if has_fe else []
    return np.concatenate(parts + [psi[np.tril_indices(k_re)], rng.uniform(0.1, 2, k_vc)])


SHAPES = [(3, 2, 2), (1, 1, 0), (2, 3, 1), (2, 0, 2), (4, 2, 0)]


@pytest.mark.parametrize("k_fe, k_re, k_vc", SHAPES)
@pytest.mark.parametrize("has_fe", [True, False])
@pytest.mark.parametrize("use_sqrt", [True, False])
def test_packing_matches_statsmodels(k_fe, k_re, k_vc, has_fe, use_sqrt):
    rng = np.random.default_rng(k_fe * 100 + k_re * 10 + k_vc)
    make = _random_sqrt_vector if use_sqrt else _random_profile_vector
    vec = make(rng, k_fe, k_re, k_vc, has_fe)

    ours = MixedLMParams.from_packed(vec, k_fe, k_re, use_sqrt, has_fe)
    ref = SmParams.from_packed(vec, k_fe, k_re, use_sqrt, has_fe)
    assert (ours.k_fe, ours.k_re, ours.k_vc) == (k_fe, k_re, k_vc)
    assert ours.k_tot == ref.k_tot
    np.testing.assert_allclose(ours.fe_params, ref.fe_params, rtol=0, atol=0)
    np.testing.assert_allclose(ours.cov_re, ref.cov_re, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(ours.vcomp, ref.vcomp, rtol=1e-15, atol=0)
    # the square root factor is a lower-triangular factor of cov_re
    np.testing.assert_array_equal(ours.cov_re_sqrt, np.tril(ours.cov_re_sqrt))
    np.testing.assert_allclose(ours.cov_re_sqrt @ ours.cov_re_sqrt.T, ours.cov_re,
                               rtol=1e-12, atol=1e-14)

    for out_sqrt in (True, False):
        for out_fe in (True, False):
            np.testing.assert_allclose(
                ours.get_packed(out_sqrt, out_fe), ref.get_packed(out_sqrt, out_fe),
                rtol=1e-12, atol=1e-14, err_msg=f"use_sqrt={out_sqrt} has_fe={out_fe}",
            )
    # round trip in the same parameterization gives the vector back
    np.testing.assert_allclose(ours.get_packed(use_sqrt, has_fe), vec, rtol=1e-12, atol=1e-15)
    # and through the other parameterization
    other = MixedLMParams.from_packed(ours.get_packed(not use_sqrt, has_fe), k_fe, k_re,
                                      not use_sqrt, has_fe)
    np.testing.assert_allclose(other.get_packed(use_sqrt, has_fe), vec, rtol=1e-10,
                               atol=1e-12)


def test_from_components_matches_statsmodels():
    rng = np.random.default_rng(4)
    low = np.tril(rng.normal(size=(3, 3)))
    fe, vc = rng.normal(size=2), np.array([0.4, 1.7])
    for kwargs in ({"cov_re_sqrt": low}, {"cov_re": low @ low.T}):
        ours = MixedLMParams.from_components(fe_params=fe, vcomp=vc, **kwargs)
        ref = SmParams.from_components(fe_params=fe, vcomp=vc, **kwargs)
        np.testing.assert_allclose(ours.cov_re, ref.cov_re, rtol=1e-14, atol=1e-14)
        np.testing.assert_array_equal(ours.vcomp, ref.vcomp)
        np.testing.assert_array_equal(ours.fe_params, ref.fe_params)
        np.testing.assert_allclose(ours.get_packed(False, True), ref.get_packed(False, True),
                                   rtol=1e-14, atol=1e-14)
    empty = MixedLMParams.from_components()
    assert (empty.k_fe, empty.k_re, empty.k_vc) == (0, 0, 0)
    assert empty.get_packed(True).size == 0


@pytest.mark.parametrize(
    "cov",
    [
        np.array([[0.0, 0.0], [0.0, 1.5]]),  # a zero variance
        np.outer([1.0, -2.0], [1.0, -2.0]),  # rank one
        np.outer([0.5, 1.0, 2.0], [0.5, 1.0, 2.0]) + np.diag([0.0, 0.0, 0.0]),
        np.zeros((2, 2)),
    ],
)
def test_singular_profile_to_sqrt(cov):
    """A singular Psi still has a lower-triangular factor: the round trip keeps Psi.

    (statsmodels' ``get_packed(use_sqrt=True)`` falls back to the square root of the
    diagonal there, which loses the covariances; only Psi itself is compared.)
    """
    k = cov.shape[0]
    vec = np.concatenate([cov[np.tril_indices(k)], [0.0, 0.3]])
    ours = MixedLMParams.from_packed(vec, 0, k, use_sqrt=False, has_fe=False)
    low = ours.cov_re_sqrt
    np.testing.assert_array_equal(low, np.tril(low))
    np.testing.assert_allclose(low @ low.T, cov, rtol=1e-10, atol=1e-12)
    back = MixedLMParams.from_packed(ours.get_packed(True), 0, k, use_sqrt=True, has_fe=False)
    np.testing.assert_allclose(back.cov_re, cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(back.vcomp, [0.0, 0.3], rtol=1e-15)
    np.testing.assert_allclose(back.get_packed(False), vec, rtol=1e-10, atol=1e-12)


def test_from_packed_rejects_short_vectors():
    with pytest.raises(ValueError):
        MixedLMParams.from_packed(np.zeros(4), 2, 2, use_sqrt=True, has_fe=True)


def test_packed_names_match_statsmodels():
    from statsmodels.regression.mixed_linear_model import MixedLM as SmMixedLM

    data = grouped_data(n_groups=8, per_group=6, k_fe=3, re_cov=np.eye(2),
                        vc_sd={"c": 0.5, "b": 0.5}, seed=1)
    vc_formula = {"c": "0 + C(c)", "b": "0 + C(b)"}
    sm_model = SmMixedLM.from_formula("y ~ x1 + x2", data, groups="g", re_formula="~x1",
                                      vc_formula=vc_formula)
    sm_names = list(sm_model.data.param_names)
    names = packed_names(list(sm_model.data.exog_re_names), list(sm_model.exog_vc.names))
    assert names == sm_names[sm_model.k_fe:]
    assert names == ["g Var", "g x x1 Cov", "x1 Var", "b Var", "c Var"]
    # and the whole model's names, through the public API
    model = dlmm.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1",
                         vc_formula=vc_formula)
    assert model.param_names == sm_names


def test_packed_names_three_by_three():
    names = packed_names(["a", "b", "c"], ["v"])
    assert names == ["a Var", "a x b Cov", "b Var", "a x c Cov", "b x c Cov", "c Var",
                     "v Var"]
    assert packed_names([], []) == []
