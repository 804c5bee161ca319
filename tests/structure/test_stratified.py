"""The grouped engine kept by stratum (``residual_by``): the profiled (RE)ML and its
gradient against a dense brute-force computation, the same fit for every
partitioning, and the one-line refusals.

The brute force builds ``V = σ² (Z Ψ Z' + diag(δ_s² / w_i))`` of every group and
evaluates the profiled criterion (GLS β, σ² profiled out, REML's ``log|X'V⁻¹X|``)
densely; the gradient along θ and log δ is checked against its central differences.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy import linalg

import dlmm
from dlmm.exceptions import InputError
from dlmm.objective.residual_map import with_residual_strata


def _design(seed: int = 4) -> pd.DataFrame:
    """40 unbalanced groups (1-7 rows; one row only in some), three strata of which
    one is rare, a precision weight per row."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 8, 40)
    g = np.repeat([f"g{j:02d}" for j in range(40)], sizes)
    n = g.size
    s = rng.choice(["lo", "mid", "zz"], n, p=[0.5, 0.4, 0.1])
    x = rng.normal(size=n)
    b = rng.normal(size=(40, 2)) * [1.0, 0.5]
    code = np.repeat(np.arange(40), sizes)
    sd = pd.Series(s).map({"lo": 1.0, "mid": 0.4, "zz": 2.5}).to_numpy()
    y = 1 + 0.5 * x + b[code, 0] + b[code, 1] * x + sd * rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n).round(3)
    return pd.DataFrame({"y": y, "x": x, "g": g, "s": s, "w": w})


def _dense_llf(frame, theta, reml, weighted):
    """The profiled (RE)ML at θ = [tril L (row by row), log δ of the later strata]."""
    chol = np.zeros((2, 2))
    chol[np.tril_indices(2)] = theta[:3]
    psi = chol @ chol.T
    levels = sorted(frame["s"].unique())
    delta = dict(zip(levels, np.exp(np.concatenate([[0.0], theta[3:]]))))
    blocks, xs, ys = [], [], []
    for _, part in frame.groupby("g", sort=True):
        z = np.column_stack([np.ones(len(part)), part["x"]])
        r = part["s"].map(delta).to_numpy() ** 2
        if weighted:
            r = r / part["w"].to_numpy()
        blocks.append(z @ psi @ z.T + np.diag(r))
        xs.append(z)
        ys.append(part["y"].to_numpy())
    v = linalg.block_diag(*blocks)
    x, y = np.vstack(xs), np.concatenate(ys)
    n, p = x.shape
    vi_x, vi_y = np.linalg.solve(v, x), np.linalg.solve(v, y)
    xvx = x.T @ vi_x
    beta = np.linalg.solve(xvx, x.T @ vi_y)
    qf = y @ vi_y - (x.T @ vi_y) @ beta
    fac = n - p if reml else n
    llf = -0.5 * np.linalg.slogdet(v)[1] - 0.5 * fac * np.log(qf) \
        - 0.5 * fac * (1 + np.log(2 * np.pi) - np.log(fac))
    if reml:
        llf -= 0.5 * np.linalg.slogdet(xvx)[1]
    return llf  # with precision weights, log|V| holds lme4's Σ log w


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weights"])
@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_objective_equals_the_dense_likelihood(reml, weighted):
    frame = _design()
    model = dlmm.mixedlm("y ~ x", frame, groups="g", re_formula="~x", residual_by="s",
                         weights="w" if weighted else None)
    objective = with_residual_strata(model.objective(reml=reml))
    rng = np.random.default_rng(9)
    for _ in range(3):
        theta = np.concatenate([rng.normal(size=3) * 0.7, rng.normal(size=2) * 0.5])
        llf, grad = objective(theta)
        np.testing.assert_allclose(llf, _dense_llf(frame, theta, reml, weighted), rtol=1e-10)
        h = 1e-5
        numeric = [(_dense_llf(frame, theta + h * e, reml, weighted)
                    - _dense_llf(frame, theta - h * e, reml, weighted)) / (2 * h)
                   for e in np.eye(theta.size)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


@pytest.fixture(scope="module")
def reference():
    frame = _design(5)
    result = dlmm.mixedlm("y ~ x", frame, groups="g", re_formula="~x",
                          residual_by="s").fit()
    assert result.backend == "local" and result.converged
    return frame, result


def _same(result, ref) -> None:
    assert result.converged
    np.testing.assert_allclose(result.llf, ref.llf, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(result.fe_params), np.asarray(ref.fe_params),
                               rtol=1e-8)
    np.testing.assert_allclose(np.asarray(result.cov_re), np.asarray(ref.cov_re), rtol=1e-6)
    np.testing.assert_allclose(result.residual_strata.delta, ref.residual_strata.delta,
                               rtol=1e-7)
    assert result.residual_strata.levels == ref.residual_strata.levels


@pytest.mark.parametrize("npartitions", [1, 3, 17])
def test_dask_partitions(reference, dask_client, npartitions):
    frame, ref = reference
    shuffled = frame.sample(frac=1.0, random_state=2)  # groups span partitions
    ddf = dd.from_pandas(shuffled, npartitions=npartitions, sort=False)
    result = dlmm.mixedlm("y ~ x", ddf, groups="g", re_formula="~x",
                          residual_by="s").fit(client=dask_client)
    assert result.backend != "local"
    _same(result, ref)


def test_parquet_files(reference, dask_client, tmp_path):
    frame, ref = reference
    for j, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(tmp_path / f"part-{j}.parquet", index=False)
    result = dlmm.mixedlm("y ~ x", str(tmp_path), groups="g", re_formula="~x",
                          residual_by="s", client=dask_client).fit()
    _same(result, ref)


def test_missing_strata_named_or_dropped():
    frame = _design()
    frame.loc[[3, 8], "s"] = None
    with pytest.raises(InputError, match="'s'"):
        dlmm.mixedlm("y ~ x", frame, groups="g", re_formula="~x", residual_by="s").fit()
    with pytest.warns(Warning, match="dropped 2 rows"):
        result = dlmm.mixedlm("y ~ x", frame, groups="g", re_formula="~x", residual_by="s",
                              missing="drop").fit()
    assert result.nobs == len(frame) - 2 and result.n_dropped == 2
    kept = dlmm.mixedlm("y ~ x", frame.drop(index=[3, 8]), groups="g", re_formula="~x",
                        residual_by="s").fit()
    np.testing.assert_allclose(result.llf, kept.llf, rtol=1e-10)


@pytest.mark.parametrize("options, message", [
    ({"residual_by": "nope"}, "residual_by column 'nope' is not in the data"),
    ({"residual_by": "w", "weights": "w"}, "both the weights and residual_by"),
    ({"residual_by": "s", "vc_formula": {"c": "0 + C(s)"}}, "variance components"),
])
def test_refusals(options, message):
    frame = _design()
    options = {"groups": "g", "re_formula": "~x", **options}
    with pytest.raises(InputError, match=message):
        dlmm.mixedlm("y ~ x", frame, **options).fit()


def test_lmer_terms_beyond_one_factor_refused():
    frame = _design().assign(h=lambda f: f["g"].str[:2])
    with pytest.raises(InputError, match="residual_by needs random effects of one"):
        dlmm.lmer("y ~ x + (x | g) + (1 | h)", frame, residual_by="s")
    result = dlmm.lmer("y ~ x + (x | g)", frame, residual_by="s")
    assert result.residual_strata.levels == ["lo", "mid", "zz"]
