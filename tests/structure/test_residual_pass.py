"""The grouped engine kept by residual component (``residual_by``, ``residual_ar1``):
the profiled (RE)ML and its gradient against a dense brute-force computation, the
same fit for every partitioning, and the one-line refusals.

The brute force builds ``V = σ² (Z Ψ Z' + D C D)`` of every group, ``D`` the rows'
``δ_s / √w_i`` and ``C`` the AR(1) correlation ``ρ^|t - t'|``, and evaluates the
profiled criterion (GLS β, σ² profiled out, REML's ``log|X'V⁻¹X|``) densely; the
gradient along θ, log δ and atanh ρ is checked against its central differences.
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy import linalg

import dlmm
from dlmm.exceptions import InputError
from dlmm.objective.residual_map import with_residual_model


def _design(seed: int = 4) -> pd.DataFrame:
    """40 unbalanced groups (1-7 rows; one row only in some) at consecutive times from a
    random start, in shuffled order; three strata of which one is rare, a precision
    weight per row."""
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
    start = np.repeat(rng.integers(0, 5, 40), sizes)
    t = start + np.concatenate([np.arange(m) for m in sizes])
    frame = pd.DataFrame({"y": y, "x": x, "g": g, "s": s, "w": w, "t": t})
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _dense_llf(frame, theta, reml, weighted, strata=True, ar1=False):
    """The profiled (RE)ML at θ = [tril L (row by row), log δ of the later strata,
    atanh ρ]."""
    chol = np.zeros((2, 2))
    chol[np.tril_indices(2)] = theta[:3]
    psi = chol @ chol.T
    levels = sorted(frame["s"].unique())
    eta = theta[3:5] if strata else np.zeros(2)
    delta = dict(zip(levels, np.exp(np.concatenate([[0.0], eta]))))
    rho = np.tanh(theta[-1]) if ar1 else 0.0
    blocks, xs, ys = [], [], []
    for _, part in frame.sort_values(["g", "t"]).groupby("g", sort=True):
        z = np.column_stack([np.ones(len(part)), part["x"]])
        d = part["s"].map(delta).to_numpy()
        if weighted:
            d = d / np.sqrt(part["w"].to_numpy())
        t = part["t"].to_numpy()
        corr = rho ** np.abs(t[:, None] - t[None, :])
        blocks.append(z @ psi @ z.T + d[:, None] * corr * d[None, :])
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


def _dense_groups(frame):
    """Each group's ``(Z, y, stratum codes, w, t)`` in time order, for :func:`_dense_sum`."""
    levels = sorted(frame["s"].unique())
    out = []
    for _, part in frame.sort_values(["g", "t"]).groupby("g", sort=True):
        z = np.column_stack([np.ones(len(part)), part["x"]])
        out.append((z, part["y"].to_numpy(), part["s"].map(levels.index).to_numpy(),
                    part["w"].to_numpy(), part["t"].to_numpy()))
    return out


def _dense_sum(groups, theta, reml):
    """:func:`_dense_llf` of the model with weights, strata and AR(1) (θ of 6 entries),
    summed group by group: each group's dense ``V_i``, ``log|V_i|``, ``X_i'V_i⁻¹X_i``..."""
    chol = np.zeros((2, 2))
    chol[np.tril_indices(2)] = theta[:3]
    psi = chol @ chol.T
    delta = np.exp(np.concatenate([[0.0], theta[3:5]]))
    rho = np.tanh(theta[5])
    logdet, xvx, xvy, yvy, n = 0.0, np.zeros((2, 2)), np.zeros(2), 0.0, 0
    for z, y, s, w, t in groups:
        d = delta[s] / np.sqrt(w)
        v = z @ psi @ z.T + d[:, None] * rho ** np.abs(t[:, None] - t[None, :]) * d[None, :]
        logdet += np.linalg.slogdet(v)[1]
        vi_z, vi_y = np.linalg.solve(v, z), np.linalg.solve(v, y)
        xvx += z.T @ vi_z
        xvy += z.T @ vi_y
        yvy += y @ vi_y
        n += y.size
    beta = np.linalg.solve(xvx, xvy)
    qf = yvy - xvy @ beta
    fac = n - 2 if reml else n
    llf = -0.5 * logdet - 0.5 * fac * np.log(qf) - 0.5 * fac * (1 + np.log(2 * np.pi)
                                                                   - np.log(fac))
    return llf - 0.5 * np.linalg.slogdet(xvx)[1] if reml else llf


MODELS = {  # name: (weights, residual_by, residual_ar1)
    "strata": (False, True, False),
    "strata-weights": (True, True, False),
    "ar1": (False, False, True),
    "strata-ar1-weights": (True, True, True),
}


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("name", list(MODELS))
def test_objective_equals_the_dense_likelihood(name, reml):
    weighted, strata, ar1 = MODELS[name]
    frame = _design()
    model = dlmm.mixedlm("y ~ x", frame, groups="g", re_formula="~x",
                         residual_by="s" if strata else None,
                         residual_ar1="t" if ar1 else None, weights="w" if weighted else None)
    objective = with_residual_model(model.objective(reml=reml))
    rng = np.random.default_rng(9)

    def dense(theta):
        return _dense_llf(frame, theta, reml, weighted, strata, ar1)

    for _ in range(3):
        theta = np.concatenate([rng.normal(size=3) * 0.7, rng.normal(size=2 * strata) * 0.5,
                                rng.normal(size=int(ar1)) * 0.6])
        llf, grad = objective(theta)
        np.testing.assert_allclose(llf, dense(theta), rtol=1e-10)
        h = 1e-5
        numeric = [(dense(theta + h * e) - dense(theta - h * e)) / (2 * h)
                   for e in np.eye(theta.size)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_hessian_equals_differences_of_the_dense_likelihood(reml):
    """The exact Hessian over θ, log δ and atanh ρ (one sweep's pieces, what the
    optimizer's Newton steps and the standard errors use) against second central
    differences of the dense brute force (the model with weights, strata and AR(1))."""
    frame = _design()
    model = dlmm.mixedlm("y ~ x", frame, groups="g", re_formula="~x", residual_by="s",
                         residual_ar1="t", weights="w")
    objective = with_residual_model(model.objective(reml=reml))
    assert objective.has_hessian
    groups = _dense_groups(frame)
    theta = np.array([0.8, -0.3, 0.5, -0.4, 0.6, 0.5])
    llf, grad, hess = objective.with_hessian(theta)
    np.testing.assert_allclose(llf, _dense_sum(groups, theta, reml), rtol=1e-10)
    np.testing.assert_allclose((llf, *grad), (*objective(theta)[:1], *objective(theta)[1]),
                               rtol=1e-12)
    h, eye = 1e-4, np.eye(theta.size)
    numeric = np.zeros((theta.size, theta.size))
    for a in range(theta.size):
        for b in range(a, theta.size):
            numeric[a, b] = numeric[b, a] = sum(
                sa * sb * _dense_sum(groups, theta + h * (sa * eye[a] + sb * eye[b]), reml)
                for sa in (1, -1) for sb in (1, -1)) / (4 * h * h)
    np.testing.assert_allclose(hess, numeric, rtol=1e-4, atol=1e-5 * np.abs(numeric).max())


BOTH = {"groups": "g", "re_formula": "~x", "residual_by": "s", "residual_ar1": "t"}


@pytest.fixture(scope="module")
def reference():
    frame = _design(5)
    result = dlmm.mixedlm("y ~ x", frame, **BOTH).fit()
    assert result.backend == "local" and result.converged
    return frame, result


def _same(result, ref) -> None:
    assert result.converged
    np.testing.assert_allclose(result.llf, ref.llf, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(result.fe_params), np.asarray(ref.fe_params),
                               rtol=1e-8)
    np.testing.assert_allclose(np.asarray(result.cov_re), np.asarray(ref.cov_re), rtol=1e-6)
    np.testing.assert_allclose(result.residual.delta, ref.residual.delta,
                               rtol=1e-7)
    np.testing.assert_allclose(result.residual.rho, ref.residual.rho, rtol=1e-7)
    assert result.residual.levels == ref.residual.levels


@pytest.mark.parametrize("npartitions", [1, 3, 17])
def test_dask_partitions(reference, dask_client, npartitions):
    frame, ref = reference
    shuffled = frame.sample(frac=1.0, random_state=2)  # groups span partitions
    ddf = dd.from_pandas(shuffled, npartitions=npartitions, sort=False)
    result = dlmm.mixedlm("y ~ x", ddf, **BOTH).fit(client=dask_client)
    assert result.backend != "local"
    _same(result, ref)


def test_parquet_files(reference, dask_client, tmp_path):
    frame, ref = reference
    for j, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(tmp_path / f"part-{j}.parquet", index=False)
    result = dlmm.mixedlm("y ~ x", str(tmp_path), client=dask_client, **BOTH).fit()
    _same(result, ref)


def test_groups_in_time_order_within_one_partition_each(reference, dask_client):
    """Data written group by group in time order: no group spans partitions."""
    frame, ref = reference
    ordered = frame.sort_values(["g", "t"]).reset_index(drop=True)
    ddf = dd.from_pandas(ordered, npartitions=4, sort=False)
    _same(dlmm.mixedlm("y ~ x", ddf, **BOTH).fit(client=dask_client), ref)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.assign(t=f["t"] + 3 * ((f["g"] == "g03")
                                       & (f["t"] > f.loc[f["g"] == "g03", "t"].min()))),
     "the times of group 'g03' are not consecutive integers"),
    (lambda f: f.assign(t=f["t"].where(f.index != f.index[(f["g"] == "g05")].max(),
                                      f.loc[(f["g"] == "g05"), "t"].min())),
     "group 'g05' (has two rows at time|are not consecutive integers, each once)"),
    (lambda f: f.assign(t=f["t"] + 0.5), "not an integer"),
])
def test_ar1_times_refused(change, message, dask_client):
    frame = change(_design())
    for data in (frame, dd.from_pandas(frame, npartitions=3, sort=False)):
        with pytest.raises(InputError, match=message):
            dlmm.mixedlm("y ~ x", data, groups="g", re_formula="~x", residual_ar1="t").fit(
                client=dask_client if isinstance(data, dd.DataFrame) else None)


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
    with pytest.raises(InputError, match="residual_by and residual_ar1 need random effects of one"):
        dlmm.lmer("y ~ x + (x | g) + (1 | h)", frame, residual_by="s")
    result = dlmm.lmer("y ~ x + (x | g)", frame, residual_by="s")
    assert result.residual.levels == ["lo", "mid", "zz"]


def test_one_read_of_each_file(reference, tmp_path, monkeypatch):
    """Weights, strata and AR(1) on Parquet files on a local cluster (threads, so that
    the reads can be counted here): every file is read once, by the one pass."""
    from distributed import Client, LocalCluster

    import dlmm.distributed.parquet_pieces as pieces

    frame, _ = reference
    for j, part in enumerate(np.array_split(np.arange(len(frame)), 4)):
        frame.iloc[part].to_parquet(tmp_path / f"part-{j}.parquet", index=False)
    reads: list[str] = []
    read = pieces.read_piece

    def counted(piece, columns, strings):
        reads.append(str(piece.path))
        assert piece.row_groups is None  # whole files
        return read(piece, columns, strings)

    monkeypatch.setattr(pieces, "read_piece", counted)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        result = dlmm.mixedlm("y ~ x", str(tmp_path), client=client, weights="w",
                              **BOTH).fit()
    assert result.converged and result.residual.time_column == "t"
    assert sorted(reads) == sorted(str(p) for p in tmp_path.glob("*.parquet"))
    plain = dlmm.mixedlm("y ~ x", frame, weights="w", **BOTH).fit()
    np.testing.assert_allclose(result.llf, plain.llf, rtol=1e-8)


def test_partitions_that_hold_different_strata(dask_client):
    """A partition of males only beside one of both sexes (Orthodont written subject by
    subject): each partition codes its own strata, and the AR(1) ends and pairs of every
    group keep the strata they are in (nlme's numbers: tests/reference/residual/
    nlme_ar1.R)."""
    import json
    from pathlib import Path

    here = Path(__file__).resolve().parents[1] / "reference" / "residual"
    ref = json.loads((here / "nlme_ar1.json").read_text())["orthodont_ar1"]["REML"]
    frame = pd.read_csv(here / "orthodont.csv").assign(t=lambda f: f["age"] // 2)
    males = frame[frame["Subject"].isin(["M01", "M02"])]
    rest = frame.drop(index=males.index).sample(frac=1.0, random_state=1)
    ddf = dd.concat([dd.from_pandas(males, npartitions=1, sort=False),
                     dd.from_pandas(rest, npartitions=1, sort=False)])
    result = dlmm.mixedlm("distance ~ age", ddf, groups="Subject", re_formula="1",
                          residual_by="Sex", residual_ar1="t").fit(client=dask_client)
    assert result.converged
    np.testing.assert_allclose(result.llf, ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(result.residual.rho, ref["rho"], rtol=1e-4)


def test_a_stratum_of_one_row_and_text_times_refused():
    frame = _design()
    lone = frame.assign(s=np.where(frame.index == 7, "lone", frame["s"]))
    with pytest.raises(InputError, match="level 'lone' has 1 usable row"):
        dlmm.mixedlm("y ~ x", lone, groups="g", re_formula="~x", residual_by="s").fit()
    with pytest.raises(InputError, match="time column 't' is not numeric"):
        dlmm.mixedlm("y ~ x", frame.assign(t=frame["t"].astype(str)), groups="g",
                     re_formula="~x", residual_ar1="t").fit()


def test_strata_levels_are_not_learned_by_a_pass_of_their_own():
    """The columns only the residual model reads are not categorical columns of the
    formula (whose levels a pass over the data learns before the one pass); a stratum
    column the formula also names is."""
    from dlmm.spec.formula import FormulaSpec
    from dlmm.spec.residual import ResidualModel

    frame = _design()
    residual = ResidualModel(weights="w", strata="s", ar1="t")
    assert FormulaSpec("y ~ x", "g", re_formula="~x",
                       residual=residual).categorical_columns(frame) == []
    assert FormulaSpec("y ~ x + s", "g", re_formula="~x",
                       residual=residual).categorical_columns(frame) == ["s"]


def test_the_optimum_value_is_the_last_steps_pieces():
    """The fit's value at the optimum comes from the pieces of its last Newton step (no
    sweep of its own): one engine evaluation per optimizer evaluation, and the dense
    likelihood at the estimates."""
    frame = _design()
    result = dlmm.mixedlm("y ~ x", frame, groups="g", re_formula="~x", residual_by="s",
                          residual_ar1="t", weights="w").fit()
    assert result.converged
    assert result.timings["engine_evaluations"] == result.timings["evaluations"]
    chol = np.linalg.cholesky(np.asarray(result.cov_re) / result.scale)
    theta = np.concatenate([chol[np.tril_indices(2)], np.log(result.residual.delta[1:]),
                            [np.arctanh(result.residual.rho)]])
    np.testing.assert_allclose(result.llf, _dense_llf(frame, theta, True, True, True, True),
                               rtol=1e-10)
