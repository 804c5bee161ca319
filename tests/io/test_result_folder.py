"""``dlmm.io``: the result.json schema and the all-or-nothing output folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.io.folders import check_output_folder
from dlmm.io.jsonable import jsonable
from dlmm.io.result_folder import (
    ARTIFACTS,
    RESULT_FILE,
    SCHEMA,
    SUMMARY_FILE,
    read_result,
    result_document,
    write_outputs,
)
from tests.simulate import grouped_data


@pytest.fixture(scope="module")
def result():
    data = grouped_data(n_groups=40, per_group=8, re_cov=np.diag([0.6, 0.3]),
                        vc_sd={"c": 0.5}, seed=5)
    model = dlmm.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1",
                         vc_formula={"c": "0 + C(c)"})
    return model.fit()


class _WithoutInference:
    """A result as the core engine made it before inference (no bse, aic, bic)."""

    def __init__(self, result):
        self._result = result

    def __getattr__(self, name):
        if name in ("bse", "aic", "bic"):
            raise AttributeError(name)
        return getattr(self._result, name)


def test_jsonable():
    value = {"a": np.float64(np.nan), "b": np.arange(3), "c": (np.int32(2), np.bool_(True)),
             "d": pd.Series([1.0, np.inf], index=["x", "y"]), "e": float("-inf"), 1: None}
    assert jsonable(value) == {"a": None, "b": [0, 1, 2], "c": [2, True],
                               "d": {"x": 1.0, "y": None}, "e": None, "1": None}
    json.dumps(jsonable(value), allow_nan=False)


def test_document_schema(result):
    doc = result_document(result, options={"data": "d/", "formula": "y ~ x1 + x2"},
                          cluster={"kind": "embedded", "workers": 2},
                          timings={"total": 1.5}, files=[SUMMARY_FILE])
    json.dumps(doc, allow_nan=False)
    assert doc["schema"] == SCHEMA == "dlmm.result/2"
    assert doc["status"] == "converged" and doc["converged"] is True
    assert doc["model"]["formula"] == "y ~ x1 + x2" and doc["model"]["groups"] == "g"
    assert doc["model"]["vc_formula"] == {"c": "0 + C(c)"} and doc["model"]["method"] == "REML"
    assert doc["nobs"] == result.nobs and doc["n_groups"] == 40
    est = doc["estimates"]
    assert est["fe_params"] == pytest.approx(result.fe_params.to_dict())
    assert est["cov_re"]["names"] == ["g", "x1"]
    np.testing.assert_allclose(est["cov_re"]["matrix"], result.cov_re.to_numpy())
    assert est["vcomp"] == pytest.approx({"c": result.vcomp[0]})
    assert est["scale"] == pytest.approx(result.scale)
    assert est["llf"] == pytest.approx(result.llf)
    assert list(est["params"]) == list(result.params.index)
    if hasattr(result, "bse"):
        assert list(est["bse"]) == list(result.bse.index)
    assert doc["optimizer"]["evaluations"] == result.mle_retvals["evaluations"]
    assert isinstance(doc["optimizer"]["grad"], list)
    assert doc["timings"]["total"] == 1.5 and "data_pass" in doc["timings"]
    assert doc["options"]["data"] == "d/" and doc["cluster"]["workers"] == 2
    assert doc["versions"]["dlmm"] == dlmm.__version__ and doc["versions"]["dask"]
    assert doc["files"] == [SUMMARY_FILE]


def test_without_inference_bse_is_null(result):
    doc = result_document(_WithoutInference(result))
    assert doc["estimates"]["bse"] is None and doc["estimates"]["aic"] is None
    assert doc["estimates"]["llf"] == pytest.approx(result.llf)


FILES = [SUMMARY_FILE, "random_effects.parquet", "vc_effects.parquet"]


def test_folder_written_whole(tmp_path, result):
    out = tmp_path / "fit"
    doc = write_outputs(result, out, options={"data": "x", "fitted": True})
    assert doc["files"] == [*FILES, "fitted.parquet"]
    assert sorted(p.name for p in out.iterdir()) == sorted([RESULT_FILE, *doc["files"]])
    assert read_result(out) == json.loads(json.dumps(doc))
    assert (out / SUMMARY_FILE).read_text() == str(result.summary()) + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]

    effects = pd.read_parquet(out / "random_effects.parquet")
    expected = result.random_effects_table(with_se=True)
    pd.testing.assert_frame_equal(effects, expected)
    assert list(effects.columns) == ["g", "x1", "g SE", "x1 SE"] and len(effects) == 40
    vc = pd.read_parquet(out / "vc_effects.parquet")
    assert set(vc["component"]) == {"c"} and len(vc) == len(result.vc_effects_table())
    fitted = pd.read_parquet(out / "fitted.parquet")
    assert list(fitted.columns) == ["fitted"] and len(fitted) == result.nobs
    np.testing.assert_allclose(fitted["fitted"], np.asarray(result.fittedvalues))
    loaded = dlmm.load_result(out)
    assert loaded.llf == result.llf
    pd.testing.assert_series_equal(loaded.fe_params, result.fe_params)


def test_existing_folder_refused_then_replaced(tmp_path, result):
    out = tmp_path / "fit"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(dlmm.InputError, match="exists; pass --overwrite"):
        write_outputs(result, out)
    assert (out / "old.txt").read_text() == "keep me"
    # Not a result folder: even --overwrite does not delete it.
    with pytest.raises(dlmm.InputError, match="--overwrite refused: .* is not a dlmm result "
                                              "folder"):
        write_outputs(result, out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    (out / "old.txt").unlink()
    with pytest.raises(dlmm.InputError, match="exists; pass --overwrite"):
        write_outputs(result, out)  # empty, but it exists
    write_outputs(result, out, overwrite=True)  # empty: nothing to lose
    assert sorted(p.name for p in out.iterdir()) == sorted([RESULT_FILE, *FILES])
    write_outputs(result, out, overwrite=True)  # a result folder: replaced
    assert sorted(p.name for p in out.iterdir()) == sorted([RESULT_FILE, *FILES])
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]
    # The input data is never the output, nor around it.
    with pytest.raises(dlmm.InputError, match="lies inside the input DATA"):
        write_outputs(result, tmp_path / "fit" / "inner", options={"data": str(tmp_path)})
    (tmp_path / "file").write_text("")
    with pytest.raises(dlmm.InputError, match="is not a folder"):
        check_output_folder(tmp_path / "file", overwrite=True)


def test_failed_writer_leaves_nothing(tmp_path, result):
    def broken(context, folder):
        (folder / "partial.parquet").write_text("half")
        raise RuntimeError("disk full")

    out = tmp_path / "deep" / "er" / "fit"
    with pytest.raises(RuntimeError, match="disk full"):
        write_outputs(result, out, artifacts=[*ARTIFACTS, broken])
    assert not (tmp_path / "deep").exists()  # nor the parents it made
    # An old folder survives a failed overwrite untouched.
    keep = tmp_path / "keep"
    write_outputs(result, keep)
    before = (keep / RESULT_FILE).read_text()
    with pytest.raises(RuntimeError):
        write_outputs(result, keep, overwrite=True, artifacts=[broken])
    assert (keep / RESULT_FILE).read_text() == before


def test_extra_artifact_is_one_function(tmp_path, result):
    def write_params_csv(context, folder):
        context.result.params.to_csv(folder / "params.csv")
        return "params.csv"

    doc = write_outputs(result, tmp_path / "fit", artifacts=[*ARTIFACTS, write_params_csv])
    assert doc["files"] == [*FILES, "params.csv"]
    assert (tmp_path / "fit" / "params.csv").exists()


def test_read_result_checks_schema(tmp_path):
    with pytest.raises(dlmm.InputError, match="not an output folder of dlmm fit"):
        read_result(tmp_path)
    (tmp_path / RESULT_FILE).write_text(json.dumps({"schema": "dlmm.result/9"}))
    with pytest.raises(dlmm.InputError, match="this dlmm reads 'dlmm.result/2'"):
        read_result(tmp_path)
    (tmp_path / RESULT_FILE).write_text("{not json")
    with pytest.raises(dlmm.InputError, match="cannot read"):
        read_result(tmp_path)


def test_effects_tables_have_dictionaries_only_for_labels(tmp_path, result):
    """The effects and variances are distinct numbers: written without dictionary pages
    (pyarrow would build each and drop it, half the time of writing the effects of 10^6
    groups); the group labels and component names keep theirs (issue 27)."""
    import pyarrow.parquet as pq

    out = tmp_path / "fit"
    write_outputs(result, out, options={"data": "x"})
    import pyarrow as pa

    for name in ["random_effects.parquet", "vc_effects.parquet"]:
        handle = pq.ParquetFile(out / name)
        floats = {f.name for f in handle.schema_arrow if pa.types.is_floating(f.type)}
        chunks = {handle.metadata.schema.column(j).name: handle.metadata.row_group(0).column(j)
                  for j in range(handle.metadata.num_columns)}
        assert floats and set(chunks) - floats, name
        with_dictionary = {c for c, chunk in chunks.items() if chunk.has_dictionary_page}
        assert with_dictionary == set(chunks) - floats, (name, with_dictionary)
    effects = pd.read_parquet(out / "random_effects.parquet")
    pd.testing.assert_frame_equal(effects, result.random_effects_table(with_se=True))


@pytest.mark.parametrize("labels", ["int", "str"])
def test_effects_files_on_a_users_cluster_are_the_tables_it_computes(labels, dask_client,
                                                                    tmp_path):
    """On a client of the user's the lazy tables' partitions are computed there and
    written as they arrive (``computed_parts``): the files read back as the tables
    computed whole on that client (values, dtypes, index), the effects as statsmodels
    predicts them at the same optimum."""
    import warnings

    import dask.dataframe as dd
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    data = grouped_data(n_groups=40, per_group=8, re_cov=np.diag([0.6, 0.3]),
                        vc_sd={"c": 0.5}, seed=5)
    if labels == "str":
        data["g"] = "grp" + data["g"].astype(str)
    kwargs = dict(groups="g", re_formula="~x1", vc_formula={"c": "0 + C(c)"})
    result = dlmm.mixedlm("y ~ x1 + x2", dd.from_pandas(data, npartitions=4, sort=False),
                          **kwargs).fit(client=dask_client)
    out = tmp_path / "fit"
    write_outputs(result, out, options={"data": "x"}, client=dask_client)
    lazy_re, lazy_vc = result.random_effects_table(with_se=True), result.vc_effects_table()
    assert lazy_re.npartitions > 1 and lazy_vc.npartitions > 1
    effects = pd.read_parquet(out / "random_effects.parquet")
    pd.testing.assert_frame_equal(effects, dask_client.compute(lazy_re).result(),
                                  check_exact=True)
    vc = pd.read_parquet(out / "vc_effects.parquet")
    pd.testing.assert_frame_equal(
        vc, dask_client.compute(lazy_vc).result().reset_index(drop=True), check_exact=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # gtol, for the methods that take it
        sm = smf.mixedlm("y ~ x1 + x2", data, **kwargs).fit(reml=True, gtol=1e-10)
    assert sm.llf == pytest.approx(result.llf, rel=1e-8)  # the same optimum
    expected = np.array([sm.random_effects[g].iloc[:2].to_numpy() for g in effects.index])
    np.testing.assert_allclose(effects[["g", "x1"]].to_numpy(), expected,
                               rtol=1e-4, atol=1e-6)
