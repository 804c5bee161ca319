"""The nested benchmark: its simulated data have Chem97's shape, and a tiny run's llf is
statsmodels' likelihood at dlmm's estimates, never below statsmodels' own fit."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from dlmm.bench.nested import chem97_like, run_nested_bench


def test_chem97_like_nests_schools_in_authorities_with_the_stated_variances():
    frame = chem97_like(400, 10, 8, seed=2)
    assert list(frame.columns) == ["lea", "school", "gcsecnt", "gender", "score"]
    assert len(frame) == 400 * 10 * 8
    assert frame.groupby(["lea", "school"]).size().eq(8).all()
    assert frame["school"].nunique() == 10  # numbered within each authority
    resid = frame["score"] - 5.5 - 2.5 * frame["gcsecnt"] - 0.3 * frame["gender"]
    # Var = 0.3^2 + 0.75^2 + 2.1^2 (authority, school, pupil)
    np.testing.assert_allclose(resid.var(), 0.09 + 0.5625 + 4.41, rtol=0.05)
    school_means = resid.groupby([frame["lea"], frame["school"]]).mean()
    # a school mean's variance: 0.09 + 0.5625 + 4.41 / 8
    np.testing.assert_allclose(school_means.var(), 0.09 + 0.5625 + 4.41 / 8, rtol=0.15)


def test_a_tiny_nested_run_is_statsmodels_likelihood_at_its_estimates(tmp_path,
                                                                    dlmm_children_in_process):
    """On this seed statsmodels' own optimizer stops 0.875 below the optimum (lme4 1.1-31
    reaches -628.8461, dlmm's value); its likelihood function at dlmm's estimates is the
    check, and dlmm's llf may not be below statsmodels' fit."""
    import statsmodels.formula.api as smf
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    doc = run_nested_bench(["12x4x6"], workers=1, data_dir=tmp_path,
                           peers=("statsmodels",), log=lambda line: None)
    assert doc["schema"] == "dlmm.bench-nested/1"
    (row,) = doc["results"]
    assert row["rows"] == 12 * 4 * 6 and row["levels"] == {"lea": 12, "lea:school": 48}
    (folder,) = [p for p in tmp_path.glob("nested_12x4x6_*") if p.is_dir()]
    frame = pd.read_parquet(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smf.mixedlm("score ~ gcsecnt + gender", frame, groups="lea", re_formula="1",
                            vc_formula={"school": "0 + C(school)"})
    for mode in ("dlmm_pandas", "dlmm_parquet"):
        fit = row[mode]
        assert fit["converged"], fit
        params = MixedLMParams.from_components(
            cov_re=np.asarray(fit["cov_re"]) / fit["scale"],
            vcomp=np.array([fit["vcomp"]["school"]]) / fit["scale"])
        model.reml, model.cov_pen = True, None  # what statsmodels' fit sets first
        np.testing.assert_allclose(fit["llf"], model.loglike(params, profile_fe=True),
                                   rtol=1e-9)
        assert fit["llf"] >= row["statsmodels"]["llf"] - 1e-9 * abs(fit["llf"])
    np.testing.assert_allclose(row["dlmm_pandas"]["llf"], -628.8461, atol=1e-4)  # lme4
