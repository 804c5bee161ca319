"""save -> load keeps every estimate bit for bit; the files hold no pickle."""

from __future__ import annotations

import json
import subprocess
import sys
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


def _forge_rows(file, rows: int) -> None:
    """Rewrite the Parquet ``file`` with its own schema and ``rows`` rows of zeros, in row
    groups of 10^6: a few hundred KB that decode to ``rows`` x 8 bytes a column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(file)
    block = pa.table([pa.array(np.zeros(min(rows, 10**6))).cast(f.type) for f in schema],
                     schema=schema)
    with pq.ParquetWriter(file, schema) as writer:
        for _ in range(rows // len(block)):
            writer.write_table(block)


def test_a_table_longer_than_its_state_says_is_refused_before_it_is_decoded(tmp_path):
    data = grouped_data(n_groups=50, per_group=4, k_fe=2, re_cov=[[1.0, 0.3], [0.3, 0.5]],
                        seed=3)
    dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit().save(tmp_path / "fit")
    _forge_rows(tmp_path / "fit" / "random_effects.parquet", 10**7)
    assert (tmp_path / "fit" / "random_effects.parquet").stat().st_size < 400_000
    # dlmm.load_result in a fresh process, as a user calls it: its peak memory too.
    # The peak of this process's own memory (VmHWM): getrusage's ru_maxrss keeps the
    # peak of the process it was forked from (a busy pytest worker's) across exec.
    code = ("import re, sys, dlmm\n"
            "try:\n    dlmm.load_result(sys.argv[1])\n"
            "except dlmm.InputError as exc:\n    print(exc)\n"
            "status = open('/proc/self/status').read()\n"
            "print(int(re.search(r'VmHWM:\\s*(\\d+) kB', status).group(1)) // 1024)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "fit")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    message, peak_mib = proc.stdout.splitlines()
    assert message == (f"{str(tmp_path / 'fit' / 'result.json')!r}: random_effects.parquet "
                       "has 10000000 rows where the saved state (n_groups 50) allows 50: "
                       "not the table of this result; not reading it")
    assert int(peak_mib) < 500  # decoding it would take > 800 MiB


def test_a_vc_table_with_more_effects_than_its_groups_can_hold_is_refused(fitted, tmp_path):
    _, result = fitted  # 40 groups, one component of 3 levels: at most 120 effects
    result.save(tmp_path / "fit")
    _forge_rows(tmp_path / "fit" / "vc_effects.parquet", 121)
    with pytest.raises(InputError, match=r"vc_effects.parquet has 121 rows where the saved "
                                         r"state \(n_groups and its effects\) allows at "
                                         r"most 120"):
        dlmm.load_result(tmp_path / "fit")


def test_saving_to_a_file_is_one_clear_error_naming_it(fitted, tmp_path):
    _, result = fitted
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(InputError) as caught:
        result.save(target)
    assert str(caught.value) == (f"cannot save to {str(target)!r}: it is a file, not a "
                                 "folder (give a new or empty folder)")
    assert target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
