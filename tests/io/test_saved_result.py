"""save -> load keeps every estimate bit for bit; the files hold no pickle."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm import InputError
from tests.simulate import grouped_data


@pytest.fixture(scope="module")
def fitted():
    data = grouped_data(n_groups=40, per_group=(4, 12), re_cov=np.array([[1.0, 0.3], [0.3, 0.5]]),
                        vc_sd={"c": 0.6}, seed=31)
    data["kind"] = np.where(data["x2"] > 0, "hi", "lo")
    model = dlmm.mixedlm("y ~ x1 + C(kind)", data, groups="g", re_formula="~x1",
                         vc_formula={"c": "0 + C(c)"})
    return data, model.fit()


def test_round_trip_is_bit_for_bit(fitted, tmp_path):
    data, result = fitted
    result.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    for name in ("fe_params", "params", "bse", "tvalues", "pvalues"):
        pd.testing.assert_series_equal(getattr(loaded, name), getattr(result, name),
                                       check_exact=True)
    pd.testing.assert_frame_equal(loaded.cov_re, result.cov_re, check_exact=True)
    pd.testing.assert_frame_equal(loaded.cov_params(), result.cov_params(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.conf_int(), result.conf_int(), check_exact=True)
    np.testing.assert_array_equal(loaded.vcomp, result.vcomp)
    assert (loaded.scale, loaded.llf, loaded.converged) == (result.scale, result.llf, True)
    assert (loaded.nobs, loaded.n_groups) == (result.nobs, result.n_groups)
    assert str(loaded.summary()) == str(result.summary())
    for label, effects in result.random_effects.items():
        pd.testing.assert_series_equal(loaded.random_effects[label], effects,
                                       check_exact=True, check_names=False)


def test_loaded_result_predicts_like_the_fit(fitted, tmp_path):
    data, result = fitted
    result.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    new = data.drop(columns="y").sample(30, random_state=1)
    new.loc[new.index[:3], "g"] = 999  # unseen group
    np.testing.assert_array_equal(loaded.predict(new, random_effects=True).to_numpy(),
                                  result.predict(new, random_effects=True).to_numpy())


def test_files_are_json_and_parquet_without_pickle(fitted, tmp_path):
    _, result = fitted
    result.save(tmp_path / "fit")
    files = sorted(p.name for p in (tmp_path / "fit").iterdir())
    assert files == ["random_effects.parquet", "result.json", "summary.txt", "vc_effects.parquet"]
    for path in (tmp_path / "fit").iterdir():
        raw = path.read_bytes()
        assert not raw.startswith((b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"))
        assert b"cnumpy" not in raw and b"c__builtin__" not in raw
        if path.suffix == ".parquet":  # (summary.txt and result.json are text)
            assert raw[:4] == b"PAR1" and raw[-4:] == b"PAR1"
    doc = json.loads((tmp_path / "fit" / "result.json").read_text())
    assert doc["schema"] == "dlmm.result/2" and doc["state"]["spec"]["kind"] == "formula"


def test_refuses_a_non_empty_folder_and_a_foreign_file(fitted, tmp_path):
    _, result = fitted
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("keep me")
    with pytest.raises(InputError, match="exists and is not empty"):
        result.save(tmp_path / "busy")
    assert (tmp_path / "busy" / "x.txt").read_text() == "keep me"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "result.json").write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="not a dlmm result"):
        dlmm.load_result(tmp_path / "other")
    with pytest.raises(InputError, match="no dlmm result"):
        dlmm.load_result(tmp_path / "nothing-here")


def test_loaded_result_says_what_it_cannot_do(fitted, tmp_path):
    _, result = fitted
    result.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="needs the fitted data"):
            loaded.fittedvalues  # noqa: B018
