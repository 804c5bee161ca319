"""The model API: bad input gets an error naming the fault; honest convergence."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import dlmm
from dlmm import ConvergenceWarning, InputError, MissingDataWarning
from tests.simulate import grouped_data


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return grouped_data(n_groups=30, per_group=8, re_cov=np.diag([0.5, 0.2]), seed=11)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"formula": "y ~ x1 + nope"}, "column 'nope' used in formula 'y ~ x1 + nope'"),
        ({"groups": "gg"}, "groups column 'gg' is not in the data"),
        ({"re_formula": "~zz"}, "column 'zz' used in re_formula '~zz'"),
        ({"vc_formula": {"a": "0 + C(q)"}}, "column 'q' used in vc_formula['a']"),
        ({"missing": "omit"}, "missing must be one of none, drop, raise, got 'omit'"),
        ({"formula": "y x1"}, "formula must look like 'y ~ x1 + x2'"),
    ],
)
def test_bad_specification_names_the_fault(data, kwargs, message):
    args = {"formula": "y ~ x1", "groups": "g", **kwargs}
    formula = args.pop("formula")
    with pytest.raises(InputError) as err:
        dlmm.mixedlm(formula, data, **args).fit()
    assert message in str(err.value)


def test_non_numeric_response(data):
    frame = data.assign(y=data["y"].astype(str))
    with pytest.raises(InputError, match="response column 'y' is not numeric"):
        dlmm.mixedlm("y ~ x1", frame, groups="g").fit()


@pytest.mark.parametrize("missing", ["none", "raise"])
def test_missing_values_stop_with_column_and_count(data, missing):
    frame = data.copy()
    frame.loc[[3, 7, 9], "x1"] = np.nan
    frame.loc[[1], "y"] = np.nan
    with pytest.raises(InputError) as err:
        dlmm.mixedlm("y ~ x1", frame, groups="g", missing=missing).fit()
    text = str(err.value)
    assert "column 'x1' has 3 missing values" in text
    assert "'y': 1" in text
    assert 'missing="drop"' in text


def test_missing_drop_drops_and_says_how_many(data):
    frame = data.copy()
    frame.loc[[3, 7, 9], "x1"] = np.nan
    frame.loc[[1, 3], "y"] = np.nan  # row 3 counted once
    with pytest.warns(MissingDataWarning, match="dropped 4 rows with missing values"):
        result = dlmm.mixedlm("y ~ x1", frame, groups="g", missing="drop").fit()
    assert result.n_dropped == 4
    assert result.nobs == len(frame) - 4
    complete = frame.dropna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = smf.mixedlm("y ~ x1", complete, groups="g").fit()
    np.testing.assert_allclose(result.llf, expected.llf, rtol=1e-6)


def test_nan_group_label_is_missing(data):
    frame = data.astype({"g": float})
    frame.loc[[5], "g"] = np.nan
    with pytest.raises(InputError, match="column 'g' has 1 missing values"):
        dlmm.mixedlm("y ~ x1", frame, groups="g").fit()


def test_empty_data(data):
    with pytest.raises(InputError, match="the data have no rows"):
        dlmm.mixedlm("y ~ x1", data.iloc[:0], groups="g").fit()


def test_no_rows_left_after_dropping(data):
    with pytest.raises(InputError, match=f"no rows left after dropping {len(data)} rows"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingDataWarning)
            dlmm.mixedlm("y ~ x1", data.assign(y=np.nan), groups="g", missing="drop").fit()


def test_collinear_fixed_effects_named(data):
    frame = data.assign(x3=2 * data["x1"] - data["x2"])
    with pytest.raises(InputError) as err:
        dlmm.mixedlm("y ~ x1 + x2 + x3", frame, groups="g").fit()
    text = str(err.value)
    assert "collinear (rank 3 of 4)" in text
    assert "'x1', 'x2', 'x3'" in text
    assert "Intercept" not in text


def test_missing_parquet_path():
    with pytest.raises(InputError, match="Parquet path '/nonexistent/x.parquet' does not exist"):
        dlmm.mixedlm("y ~ x1", "/nonexistent/x.parquet", groups="g").fit()


def test_unreadable_parquet(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(InputError, match="cannot read Parquet data"):
        dlmm.mixedlm("y ~ x1", str(bad), groups="g").fit()
    assert bad.read_bytes() == b"this is not parquet"  # input never modified


def test_input_frame_is_not_modified(data):
    before = data.copy()
    dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit()
    pd.testing.assert_frame_equal(data, before)


def test_subset_is_applied(data):
    keep = data["g"] < 20
    got = dlmm.mixedlm("y ~ x1", data, groups="g", subset=keep).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = smf.mixedlm("y ~ x1", data[keep], groups="g").fit()
    assert got.nobs == int(keep.sum())
    np.testing.assert_allclose(got.llf, expected.llf, rtol=1e-6)


def test_not_converged_is_reported_honestly(data):
    model = dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1")
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        result = model.fit(method="cg", maxiter=1, newton_steps=0)
    assert result.converged is False
    assert result.mle_retvals["converged"] is False
    full = model.fit()
    assert full.converged is True
    assert full.llf > result.llf


def test_results_core_attributes(data):
    result = dlmm.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1").fit(reml=False)
    assert (result.k_fe, result.k_re, result.k_vc) == (3, 2, 0)
    assert result.method == "ML" and result.reml is False
    assert result.nobs == len(data) and result.n_groups == data["g"].nunique()
    np.testing.assert_allclose(result.cov_re.to_numpy(),
                               result.cov_re_unscaled * result.scale, rtol=1e-12)
    log = result.optimization_log
    assert log.evaluations == result.mle_retvals["evaluations"] > 0
    assert log.entries[-1].seconds <= result.timings["optimizer"] + 1e-9
    assert result.timings["data_pass"] > 0
    assert result.mle_retvals["grad_norm"] < 1e-3
    text = str(result.summary())
    assert f"{result.llf:.4f}" in text and "x1 Var" in text and "g x x1 Cov" in text


def test_arrays_api_names_like_statsmodels(data):
    import statsmodels.api as sm

    exog = np.column_stack([np.ones(len(data)), data["x1"], data["x2"]])
    exog_re = np.column_stack([np.ones(len(data)), data["x1"]])
    got = dlmm.MixedLM(data["y"].to_numpy(), exog, data["g"].to_numpy(), exog_re=exog_re).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sm.MixedLM(data["y"].to_numpy(), exog, data["g"].to_numpy(),
                              exog_re=exog_re).fit()
    assert got.param_names == list(expected.model.data.param_names)
    assert isinstance(got.params, np.ndarray)  # arrays in, arrays out (statsmodels' wrapper)
    assert got.llf >= expected.llf - 1e-6 * abs(expected.llf)


def test_free_diagonal_pattern_matches_statsmodels_independent_fit(data):
    from statsmodels.regression.mixed_linear_model import MixedLMParams as SMParams

    for reml in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            free = SMParams.from_components(fe_params=np.ones(2), cov_re=np.eye(2))
            expected = smf.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit(
                free=free, reml=reml)
        got = dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit(
            free=dlmm.MixedLMParams.from_components(cov_re=np.eye(2)), reml=reml)
        assert got.llf == pytest.approx(expected.llf, rel=1e-6)
        assert got.llf >= expected.llf - 1e-8 * abs(expected.llf)
        assert got.cov_re.iloc[0, 1] == 0.0  # held at its start value
        assert got.bse["g x x1 Cov"] == 0.0  # not estimated, so no standard error
        assert got.df_modelwc == 4
        np.testing.assert_allclose(np.diag(got.cov_re), np.diag(expected.cov_re), rtol=1e-3)


def test_free_pattern_with_wrong_length_is_refused(data):
    with pytest.raises(InputError, match="free must be a 0/1 pattern over the 3"):
        dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit(free=[1, 0])


@pytest.mark.parametrize("missing", ["none", "drop", "raise"])
def test_infinite_values_are_an_error_in_every_missing_mode(data, missing):
    frame = data.copy()
    frame.loc[[2, 5], "x1"] = np.inf
    frame.loc[[7], "y"] = -np.inf
    with pytest.raises(InputError) as err:
        dlmm.mixedlm("y ~ x1", frame, groups="g", missing=missing).fit()
    assert "column 'x1' has 2 infinite values" in str(err.value)
    assert "not a missing value" in str(err.value)


def test_drop_collinear_drops_later_dependent_columns_like_lme4(data, tmp_path):
    frame = data.assign(x3=2 * data["x1"] - data["x2"], x4=data["x1"])
    with pytest.warns(dlmm.CollinearityWarning, match="dropped 2 column\\(s\\) 'x3', 'x4'"):
        got = dlmm.mixedlm("y ~ x1 + x2 + x3 + x4", frame, groups="g", re_formula="~x1",
                           drop_collinear=True).fit()
    expected = dlmm.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1").fit()
    assert got.fe_params.index.tolist() == ["Intercept", "x1", "x2"]
    np.testing.assert_allclose(got.fe_params.to_numpy(), expected.fe_params.to_numpy(),
                               rtol=1e-9)
    assert got.llf == pytest.approx(expected.llf, rel=1e-12)
    # Predictions use the kept columns, also after a save/load round trip.
    new = frame.drop(columns="y").head(10)
    np.testing.assert_allclose(got.predict(new, random_effects=True).to_numpy(),
                               expected.predict(new.drop(columns=["x3", "x4"]),
                                                random_effects=True).to_numpy(),
                               rtol=1e-9)
    got.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    np.testing.assert_array_equal(loaded.predict(new, random_effects=True).to_numpy(),
                                  got.predict(new, random_effects=True).to_numpy())


def test_drop_collinear_in_the_arrays_form(data):
    exog = np.column_stack([np.ones(len(data)), data["x1"], data["x1"] * 3.0, data["x2"]])
    with pytest.warns(dlmm.CollinearityWarning, match="'x2'"):
        got = dlmm.MixedLM(data["y"].to_numpy(), exog, data["g"].to_numpy(),
                           drop_collinear=True).fit()
    assert got.exog_names == ["const", "x1", "x3"]
    with pytest.raises(InputError, match="collinear"):
        dlmm.MixedLM(data["y"].to_numpy(), exog, data["g"].to_numpy()).fit()


def test_groups_given_as_labels_like_statsmodels(data):
    by_name = dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit()
    by_values = dlmm.mixedlm("y ~ x1", data, groups=data["g"].to_numpy(),
                             re_formula="~x1").fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = smf.mixedlm("y ~ x1", data, groups=data["g"].to_numpy(),
                               re_formula="~x1").fit()
    assert by_values.params.index.tolist() == expected.params.index.tolist()  # "Group Var"
    assert by_values.llf == pytest.approx(by_name.llf, rel=1e-12)
    np.testing.assert_allclose(by_values.params.to_numpy(), by_name.params.to_numpy(),
                               rtol=1e-10)
    assert "__dlmm_groups__" not in data.columns  # the caller's frame is untouched
    with pytest.raises(InputError, match="one label per row"):
        dlmm.mixedlm("y ~ x1", data, groups=np.arange(3)).fit()


def test_diagnostics_are_logged(data, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="dlmm"):
        result = dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("diagnostics")]
    assert len(lines) == 1
    assert f"max|grad| {result.diagnostics['grad_max']:.3g}" in lines[0]
    assert "Hessian negative definite: True" in lines[0]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_statsmodels_fit_options_are_honoured_or_refused(data, monkeypatch, capsys):
    """``disp`` prints the evaluations, ``gtol`` reaches the convergence test,
    ``full_output`` is accepted, statsmodels-only stages are refused by name, and stray
    positional arguments are refused (they used to be ignored silently)."""
    import dlmm.model as model_module

    seen = {}
    real = model_module.maximize

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(model_module, "maximize", spy)
    model = dlmm.mixedlm("y ~ x1", data, groups="g")
    result = model.fit(disp=True, gtol=1e-6, full_output=True)
    assert seen["tol_grad"] == 1e-6 and result.converged
    assert "llf" in capsys.readouterr().err
    # statsmodels ignores niter_sa (and so does dlmm, with its warning); do_cg=False,
    # its unfitted result at the start values, is refused
    with pytest.warns(UserWarning, match="niter_sa is currently ignored"):
        model.fit(niter_sa=1)
    with pytest.raises(InputError, match=r"fit\(do_cg=False\)"):
        model.fit(do_cg=False)
    with pytest.raises(InputError, match="no positional arguments after missing"):
        dlmm.mixedlm("y ~ x1", data, None, None, None, False, "none", "g")
