"""The effects tables of a fit on the embedded cluster, written as ``dlmm fit -o`` writes
them (issue 27: outputs in a time proportional to their size).

A lazy effects table of the embedded cluster carries its data in its graph; the
writer makes it in the writing process from the gathered parts: the cluster runs
the effects' own tasks (predicting, changing coordinates, making the frames) and no
task of the table itself (sending it there and back made the outputs of 500,000
groups take 4.8-6.7 s instead of 3.7-4.2 s, at a load of 20). The files are the
ones the cluster's computation of the lazy tables wrote before, byte for byte
(columns, Dask's dtypes, values), and their numbers are lme4's.

A script with a ``__main__`` guard (worker processes) fits sleepstudy with text
group labels on the embedded cluster, once as lme4 did and once with a variance
component (of a response with such effects), and writes each fit's folder both ways.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REFERENCE

SCRIPT = textwrap.dedent('''
    import json
    import sys

    import dask
    from distributed import get_task_stream
    from distributed.utils import key_split

    import dlmm
    from dlmm.distributed.embedded import _EMBEDDED
    from dlmm.io import result_folder


    def write_both(result, out):
        """The folder as the writer makes it (tasks seen on the cluster), and as the
        cluster computed the tables before."""
        client = _EMBEDDED["client"]
        with get_task_stream(client) as stream:
            result_folder.write_outputs(result, f"{out}/now", client=client)
        def on_the_cluster(context, vc=False):  # the tables as the cluster computed them
            table = (context.result.vc_effects_table() if vc
                     else context.result.random_effects_table(with_se=True))
            return [client.compute(table).result()]  # the whole table, one part

        today = result_folder.effects_parts
        result_folder.effects_parts = on_the_cluster
        try:
            result_folder.write_outputs(result, f"{out}/before", client=client)
        finally:
            result_folder.effects_parts = today
        return sorted({key_split(t["key"]) for t in stream.data})


    def main(data, out):
        with dask.config.set({"dlmm.in-process-max-bytes": 0}):  # the embedded cluster
            plain = dlmm.mixedlm("Reaction ~ Days", data, groups="Subject",
                                 re_formula="~Days").fit()
            with_vc = dlmm.mixedlm("y2 ~ Days", data, groups="Subject",
                                   re_formula="~Days", vc_formula={"c": "0 + C(c)"}).fit()
        tasks = {"plain": write_both(plain, f"{out}/plain"),
                 "vc": write_both(with_vc, f"{out}/vc")}
        json.dump({"backend": [plain.backend, with_vc.backend],
                   "engine": [plain.engine, with_vc.engine], "tasks": tasks}, sys.stdout)


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2])
''')


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    case = json.loads((REFERENCE / "cases.json").read_text())["sleepstudy_reml"]
    data = pd.read_csv(REFERENCE / "data" / "sleepstudy.csv")
    data["Subject"] = "S" + data["Subject"].astype(str)  # text labels
    data["c"] = np.arange(len(data)) % 3  # a component of three levels in each group
    rng = np.random.default_rng(27)  # and a response with effects of it
    data["y2"] = data["Reaction"] + rng.normal(scale=12.0, size=(18, 3))[
        pd.factorize(data["Subject"])[0], data["c"]]
    folder = tmp_path_factory.mktemp("effects_tables")
    data.to_parquet(folder / "sleep.parquet", index=False)
    (folder / "script.py").write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(folder / "script.py"),
                           str(folder / "sleep.parquet"), str(folder)],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), folder, case, data


def test_the_cluster_runs_only_the_effects_tasks(run):
    out = run[0]
    assert out["backend"] == ["dask", "dask"] and out["engine"] == ["grouped", "grouped"]
    assert out["tasks"]["plain"] == ["block_effects", "re_frame", "transform_effects"]
    assert out["tasks"]["vc"] == ["block_effects", "re_frame", "transform_effects",
                                  "vc_frame"]


@pytest.mark.parametrize("fit", ["plain", "vc"])
def test_files_are_the_ones_written_before(run, fit):
    folder = run[1] / fit
    names = ["random_effects.parquet"] + (["vc_effects.parquet"] if fit == "vc" else [])
    for name in names:
        now = (folder / "now" / name).read_bytes()
        assert now == (folder / "before" / name).read_bytes(), name
    table = pd.read_parquet(folder / "now" / "random_effects.parquet")
    assert list(table.columns) == ["Subject", "Days", "Subject SE", "Days SE"]
    assert table.index.name == "group" and str(table.index.dtype) == "str"
    assert (table.dtypes == np.float64).all()
    if fit == "vc":
        vc = pd.read_parquet(folder / "now" / "vc_effects.parquet")
        assert list(vc.columns) == ["Subject", "component", "column", "effect", "variance"]
        assert len(vc) == 18 * 3 and set(vc["column"]) == {"C(c)[0]", "C(c)[1]", "C(c)[2]"}


def test_written_effects_are_lme4s(run):
    """The modes are lme4's; the SEs are lme4's conditional SDs, formed from its
    estimates as in ``tests/distributed/test_embedded.py``."""
    _, folder, case, data = run
    table = pd.read_parquet(folder / "plain" / "now" / "random_effects.parquet")
    scale = case["expected"]["scale"]
    psi = np.array(case["expected"]["cov_re"]) / scale
    assert sorted(table.index) == sorted(f"S{r['level']}"
                                         for r in case["random_effects"]["Subject"])
    for r in case["random_effects"]["Subject"]:
        row = table.loc[f"S{r['level']}"]
        np.testing.assert_allclose(row[["Subject", "Days"]], [r["(Intercept)"], r["Days"]],
                                   atol=2e-3)
        days = data.loc[data["Subject"] == f"S{r['level']}", "Days"].to_numpy()
        z = np.column_stack([np.ones(days.size), days])
        se = np.sqrt(np.diag(scale * np.linalg.inv(np.linalg.inv(psi) + z.T @ z)))
        np.testing.assert_allclose(row[["Subject SE", "Days SE"]], se, rtol=1e-4)
