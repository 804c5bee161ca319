"""A saved result is data: an edited ``result.json`` cannot run code nor open files
outside its folder, and a normal saved result still loads."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import dlmm
from dlmm import InputError
from tests.simulate import grouped_data


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    data = grouped_data(n_groups=30, per_group=(4, 10), re_cov=np.array([[1.0]]),
                        vc_sd={"c": 0.5}, seed=7)
    result = dlmm.mixedlm("y ~ x1 + np.log(np.exp(x2)) + I(x1 ** 2)", data, groups="g",
                          vc_formula={"c": "0 + C(c)"}, re_formula="1").fit()
    folder = tmp_path_factory.mktemp("saved") / "fit"
    result.save(folder)
    return result, folder


def _edited(saved, tmp_path, edit):
    """A copy of the saved folder whose result.json went through ``edit(doc)``."""
    import shutil

    _, folder = saved
    copy = tmp_path / "fit"
    shutil.copytree(folder, copy)
    doc = json.loads((copy / "result.json").read_text())
    edit(doc)
    (copy / "result.json").write_text(json.dumps(doc))
    return copy


def test_normal_saved_result_loads(saved):
    result, folder = saved
    loaded = dlmm.load_result(folder)
    assert loaded.llf == result.llf
    assert list(loaded.fe_params.index) == list(result.fe_params.index)
    assert "I(x1 ** 2)" in loaded.fe_params.index


@pytest.mark.parametrize("where", ["formula", "re_formula", "vc_formula"])
def test_formula_that_would_run_code_is_refused_before_evaluation(saved, tmp_path, where):
    marker = tmp_path / "marker"
    payload = f"I(np.__builtins__['exec'](\"open({str(marker)!r}, 'w').close()\"))"

    def edit(doc):
        spec = doc["state"]["spec"]
        if where == "formula":
            spec["formula"] = "y ~ x1 + " + payload
        elif where == "re_formula":
            spec["re_formula"] = "~" + payload
        else:
            spec["vc_formula"]["c"] = "0 + C(c) + " + payload

    folder = _edited(saved, tmp_path, edit)
    with pytest.raises(InputError) as err:
        dlmm.load_result(folder)
    message = str(err.value)
    assert message.startswith(repr(str(folder / "result.json")))
    assert "refusing to evaluate" in message and "np.__builtins__['exec']" in message
    assert where in message
    assert not marker.exists()


def test_payload_is_live_without_the_check(saved, tmp_path):
    """The crafted formula does run code when formulaic evaluates it: the check above
    is what keeps the marker from appearing."""
    from dlmm.spec.formula import FormulaSpec

    marker = tmp_path / "marker"
    _, folder = saved
    spec = json.loads((folder / "result.json").read_text())["state"]["spec"]
    spec["formula"] = ("y ~ x1 + I(np.__builtins__['exec'](\"open("
                       f"{str(marker)!r}, 'w').close()\") or x1)")
    try:
        FormulaSpec.from_dict(spec)
    except Exception:
        pass
    assert marker.exists()


@pytest.mark.parametrize(("entry", "fault"), [
    ("../outside.parquet", "leaves the result folder"),
    ("sub/../../outside.parquet", "leaves the result folder"),
    ("/etc/passwd", "is an absolute path"),
    ("link.parquet", "leads outside the result folder"),
])
def test_files_entries_are_confined_to_the_folder(saved, tmp_path, entry, fault):
    outside = tmp_path / "outside.parquet"
    outside.write_text("not yours")

    def edit(doc):
        doc["files"].append(entry)

    folder = _edited(saved, tmp_path, edit)
    os.symlink(outside, folder / "link.parquet")
    with pytest.raises(InputError, match=fault):
        dlmm.load_result(folder)
    assert outside.read_text() == "not yours"


def test_format_files_that_are_symlinks_out_of_the_folder_are_refused(saved, tmp_path):
    folder = _edited(saved, tmp_path, lambda doc: None)
    elsewhere = tmp_path / "elsewhere.parquet"
    (folder / "random_effects.parquet").rename(elsewhere)
    os.symlink(elsewhere, folder / "random_effects.parquet")
    with pytest.raises(InputError, match="'random_effects.parquet' leads outside"):
        dlmm.load_result(folder)
    # A link inside the folder is fine.
    (folder / "random_effects.parquet").unlink()
    elsewhere.rename(folder / "re.parquet")
    os.symlink("re.parquet", folder / "random_effects.parquet")
    assert dlmm.load_result(folder).llf == saved[0].llf
