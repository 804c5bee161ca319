"""Input files and their identities from metadata alone; the fingerprint changes with them."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from dlmm import InputError
from dlmm.io.fingerprint import FileIdentity, digest, fingerprint, input_files


def _parquet(path, value=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"y": [value]}).to_parquet(path)


def test_files_of_a_folder_as_readers_see_them(tmp_path):
    _parquet(tmp_path / "d" / "b.parquet")
    _parquet(tmp_path / "d" / "sub" / "a.pq")
    _parquet(tmp_path / "d" / "_hidden" / "x.parquet")
    _parquet(tmp_path / "d" / ".x.parquet")
    (tmp_path / "d" / "README.txt").write_text("notes")
    (tmp_path / "d" / "_SUCCESS").write_text("")
    files = input_files(tmp_path / "d")
    assert [os.path.relpath(f.path, tmp_path / "d") for f in files] == ["b.parquet",
                                                                       "sub/a.pq"]
    st = os.stat(tmp_path / "d" / "b.parquet")
    assert files[0] == FileIdentity(str(tmp_path / "d" / "b.parquet"), st.st_size,
                                    str(st.st_mtime_ns))
    assert input_files([str(tmp_path / "d" / "*.parquet")]) == files[:1]


def test_fingerprint_follows_changes_not_order(tmp_path):
    for name in "abc":
        _parquet(tmp_path / f"{name}.parquet")
    files = input_files(str(tmp_path))
    assert fingerprint(files) == fingerprint(files[::-1])
    before = fingerprint(files)
    _parquet(tmp_path / "b.parquet", 2.0)  # rewritten: size or mtime differ
    assert fingerprint(input_files(str(tmp_path))) != before
    (tmp_path / "c.parquet").unlink()
    assert len(input_files(str(tmp_path))) == 2
    assert digest({"a": 1, "b": [2]}) == digest({"b": [2], "a": 1})
    assert FileIdentity.from_dict(files[0].to_dict()) == files[0]


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(InputError, match=r"does not exist"):
        input_files(str(tmp_path / "nope.parquet"))
    with pytest.raises(InputError, match=r"matches no file"):
        input_files(str(tmp_path / "*.parquet"))
    with pytest.raises(InputError, match=r"need Parquet path"):
        input_files(pd.DataFrame({"y": [1.0]}))
