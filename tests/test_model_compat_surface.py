"""statsmodels' model surface that issue 25 found missing, checked against statsmodels.

Each test runs the same call on statsmodels' ``MixedLM`` and on dlmm's, on small
in-memory data, and compares what statsmodels gives: the warning, the value,
the shape of the answer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.regression.mixed_linear_model import VCSpec

import dlmm


def _arrays(seed: int = 4279, n_groups: int = 12, size: int = 5):
    rs = np.random.RandomState(seed)
    n = n_groups * size
    exog = np.column_stack([np.ones(n), rs.normal(size=n)])
    exog_re = rs.normal(size=(n, 2))
    groups = np.repeat(np.arange(n_groups), size)
    effects = np.repeat(rs.normal(size=(n_groups, 2)), size, axis=0)
    endog = exog.sum(1) + (effects * exog_re).sum(1) + rs.normal(size=n)
    return endog, exog, groups, exog_re


def _vc_dict(exog_re, groups):
    return {name: {g: exog_re[groups == g, j:j + 1] for g in np.unique(groups)}
            for j, name in enumerate(("a", "b"))}


# -- item 3: the dict form of exog_vc is deprecated, with statsmodels' FutureWarning --


def test_exog_vc_dict_of_groups_warns_as_statsmodels():
    endog, exog, groups, exog_re = _arrays()
    vc = _vc_dict(exog_re, groups)
    with pytest.warns(FutureWarning, match="Using deprecated variance components format"):
        sm.MixedLM(endog, exog, groups, exog_vc=vc)
    with pytest.warns(FutureWarning, match="Using deprecated variance components format") as got:
        dlmm.MixedLM(endog, exog, groups, exog_vc=vc)
    assert got[0].filename == __file__  # attributed to the caller, as statsmodels' is


def test_exog_vc_as_vcspec_or_row_aligned_arrays_does_not_warn():
    endog, exog, groups, exog_re = _arrays()
    labels = np.unique(groups)
    spec = VCSpec(["a"], [[["a"]] * len(labels)],
                  [[exog_re[groups == g, :1] for g in labels]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        dlmm.MixedLM(endog, exog, groups, exog_vc=spec)
        dlmm.MixedLM(endog, exog, groups, exog_vc={"a": exog_re[:, :1]})  # dlmm's own form


# -- item 5: row_indices ---------------------------------------------------------------


def test_row_indices_are_statsmodels():
    endog, exog, groups, exog_re = _arrays()
    shuffled = np.random.RandomState(1).permutation(len(groups))
    args = (endog[shuffled], exog[shuffled], groups[shuffled].astype(float))
    want = sm.MixedLM(*args).row_indices
    got = dlmm.MixedLM(*args).row_indices
    assert list(got) == list(want)
    assert all(got[k] == want[k] for k in want)
    frame = pd.DataFrame({"y": endog, "x": exog[:, 1], "g": [f"g{v:02d}" for v in groups]})
    frame = frame.iloc[shuffled].reset_index(drop=True)
    want = sm.MixedLM.from_formula("y ~ x", frame, groups="g").row_indices
    got = dlmm.mixedlm("y ~ x", frame, groups="g").row_indices
    assert list(got) == list(want) and all(got[k] == want[k] for k in want)


def _frame(seed: int = 123, n_groups: int = 10, size: int = 10) -> pd.DataFrame:
    rs = np.random.RandomState(seed)
    n = n_groups * size
    groups = np.repeat(np.arange(n_groups), size)
    x = rs.normal(size=n)
    y = x + rs.normal(size=n_groups)[groups] + rs.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": groups})


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


# -- item 7: fit(full_output=True) keeps a history ------------------------------------


def test_full_output_gives_hist_as_statsmodels(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm_full = sm.MixedLM.from_formula("y ~ x", frame, groups="g").fit(full_output=True)
        sm_plain = sm.MixedLM.from_formula("y ~ x", frame, groups="g").fit()
    model = dlmm.mixedlm("y ~ x", frame, groups="g")
    full, plain = model.fit(full_output=True), model.fit()
    assert sm_plain.hist is None and plain.hist is None
    assert isinstance(sm_full.hist, list) and len(sm_full.hist) == 1
    assert isinstance(full.hist, list) and len(full.hist) == 1
    assert full.hist[0]["converged"] is True and sm_full.hist[0]["converged"] is True
    np.testing.assert_allclose(full.params, sm_full.params, rtol=1e-4)


# -- item 9: fit options statsmodels ignores are ignored, with its warning ---------------


def test_statsmodels_ignored_fit_options_warn_and_leave_the_fit_unchanged(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.warns(FutureWarning, match="Argument cov_type not used by MixedLM.fit"):
            sm_result = sm.MixedLM.from_formula("y ~ x", frame, groups="g").fit(cov_type="hc1")
    model = dlmm.mixedlm("y ~ x", frame, groups="g")
    with pytest.warns(FutureWarning, match="Argument cov_type not used by MixedLM.fit") as got:
        result = model.fit(cov_type="hc1")
    assert got[0].filename == __file__
    with pytest.warns(FutureWarning, match="Arguments cov_type, use_t not used"):
        model.fit(cov_type="hc1", use_t=True)
    with pytest.warns(UserWarning, match="niter_sa is currently ignored"):
        model.fit(niter_sa=2, do_cg=True)
    with pytest.warns(UserWarning, match="fit options ftol, maxcor tune scipy's optimizers"):
        model.fit(ftol=1e-3, maxcor=3)
    np.testing.assert_allclose(result.params, sm_result.params, rtol=1e-4)
    np.testing.assert_allclose(result.bse, sm_result.bse, rtol=1e-3)


@pytest.mark.parametrize(("option", "message"), [
    ({"newton_step": 0}, "unknown option 'newton_step' for fit; did you mean newton_steps?"),
    ({"foo": 1}, "unknown option 'foo' for fit"),
    ({"do_cg": False}, "fit(do_cg=False) (statsmodels' result at the start values"),
])
def test_misspelt_or_unsupported_fit_options_are_refused_in_one_line(frame, option, message):
    model = dlmm.mixedlm("y ~ x", frame, groups="g")
    with pytest.raises(dlmm.InputError) as info:
        model.fit(**option)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
