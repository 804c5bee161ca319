"""The effects tables of a fit on the embedded cluster, written as ``dlmm fit -o`` writes
them (issue 27: outputs in a time proportional to their size).

A lazy effects table of the embedded cluster carries its data in its graph; the
writer makes it in the writing process from the gathered parts: the cluster runs
the effects' own tasks (predicting, changing coordinates, making the frames) and no
task of the table itself (sending it there and back made the outputs of 500,000
groups take 4.8-6.7 s instead of 3.7-4.2 s, at a load of 20). The files are the
ones the cluster's computation of the lazy tables wrote before, byte for byte
(columns, Dask's dtypes, values), and their numbers are lme4's.

A script with a ``__main__`` guard (worker processes) fits sleepstudy (three files,
each with rows of every subject: two blocks of groups on two workers) on the embedded
cluster, with text group labels once as lme4 did and once with a variance component
(of a response with such effects), and with number labels as lme4 did, and writes each
fit's folder both ways. The parts the writer gets (one per block) are checked against
the lazy tables computed on the cluster, with and without SEs.
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


    def parts_against_the_cluster(result, vc):
        """The parts the writer writes, their concatenation against the lazy tables
        computed on the cluster (with and without SEs): how many parts, and what
        differs (None: nothing)."""
        import pandas as pd

        client = _EMBEDDED["client"]
        out = {}
        for what in ("vc",) if vc else ("re", "re_se"):
            parts = (list(result.effects.gathered_vc_parts()) if what == "vc" else
                     list(result.effects.gathered_parts(with_se=what == "re_se")))
            lazy = (result.vc_effects_table() if what == "vc" else
                    result.random_effects_table(with_se=what == "re_se"))
            whole = client.compute(lazy).result()
            try:
                pd.testing.assert_frame_equal(pd.concat(parts), whole, check_exact=True)
                differs = None
            except AssertionError as exc:
                differs = str(exc)
            out[what] = [len(parts), differs]
        return out


    def main(data, out):
        from dlmm.distributed.embedded import embedded_client

        embedded_client(n_workers=2)  # two blocks of groups, whatever the cores
        with dask.config.set({"dlmm.in-process-max-bytes": 0}):  # the embedded cluster
            plain = dlmm.mixedlm("Reaction ~ Days", data, groups="Subject",
                                 re_formula="~Days").fit()
            with_vc = dlmm.mixedlm("y2 ~ Days", data, groups="Subject",
                                   re_formula="~Days", vc_formula={"c": "0 + C(c)"}).fit()
            numeric = dlmm.mixedlm("Reaction ~ Days", data, groups="code",
                                   re_formula="~Days").fit()
        tasks = {"plain": write_both(plain, f"{out}/plain"),
                 "vc": write_both(with_vc, f"{out}/vc"),
                 "numeric": write_both(numeric, f"{out}/numeric")}
        parts = {"plain": parts_against_the_cluster(plain, False),
                 "vc": parts_against_the_cluster(with_vc, True),
                 "numeric": parts_against_the_cluster(numeric, False)}
        json.dump({"backend": [plain.backend, with_vc.backend, numeric.backend],
                   "engine": [plain.engine, with_vc.engine, numeric.engine], "tasks": tasks,
                   "parts": parts}, sys.stdout)


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2])
''')


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    case = json.loads((REFERENCE / "cases.json").read_text())["sleepstudy_reml"]
    data = pd.read_csv(REFERENCE / "data" / "sleepstudy.csv")
    data["code"] = data["Subject"] * 7 - 2000  # number labels (not sorted as the text)
    data["Subject"] = "S" + data["Subject"].astype(str)  # text labels
    data["c"] = np.arange(len(data)) % 3  # a component of three levels in each group
    rng = np.random.default_rng(27)  # and a response with effects of it
    data["y2"] = data["Reaction"] + rng.normal(scale=12.0, size=(18, 3))[
        pd.factorize(data["Subject"])[0], data["c"]]
    folder = tmp_path_factory.mktemp("effects_tables")
    (folder / "sleep").mkdir()  # three files, each with rows of every subject
    for j in range(3):
        data.iloc[j::3].to_parquet(folder / "sleep" / f"part-{j}.parquet", index=False)
    (folder / "script.py").write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(folder / "script.py"),
                           str(folder / "sleep"), str(folder)],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), folder, case, data


def test_the_cluster_runs_only_the_effects_tasks(run):
    out = run[0]
    assert out["backend"] == ["dask"] * 3 and out["engine"] == ["grouped"] * 3
    assert out["tasks"]["plain"] == ["block_effects", "re_frame", "transform_effects"]
    assert out["tasks"]["numeric"] == ["block_effects", "re_frame", "transform_effects"]
    assert out["tasks"]["vc"] == ["block_effects", "re_frame", "transform_effects",
                                  "vc_frame"]


@pytest.mark.parametrize("fit", ["plain", "vc", "numeric"])
def test_files_are_the_ones_written_before(run, fit):
    folder = run[1] / fit
    names = ["random_effects.parquet"] + (["vc_effects.parquet"] if fit == "vc" else [])
    for name in names:
        now = (folder / "now" / name).read_bytes()
        assert now == (folder / "before" / name).read_bytes(), name
    table = pd.read_parquet(folder / "now" / "random_effects.parquet")
    group = "code" if fit == "numeric" else "Subject"
    assert list(table.columns) == [group, "Days", f"{group} SE", "Days SE"]
    assert table.index.name == "group"
    assert str(table.index.dtype) == ("int64" if fit == "numeric" else "str")
    assert (table.dtypes == np.float64).all()
    if fit == "vc":
        vc = pd.read_parquet(folder / "now" / "vc_effects.parquet")
        assert list(vc.columns) == ["Subject", "component", "column", "effect", "variance"]
        assert len(vc) == 18 * 3 and set(vc["column"]) == {"C(c)[0]", "C(c)[1]", "C(c)[2]"}


@pytest.mark.parametrize("fit", ["plain", "vc", "numeric"])
def test_parts_are_the_tables_the_cluster_computes(run, fit):
    """The parts the writer gets, one per block (several), concatenated: the lazy
    tables as the cluster computes them (values, dtypes, index), with and without SEs."""
    parts = run[0]["parts"][fit]
    assert set(parts) == ({"vc"} if fit == "vc" else {"re", "re_se"})
    for what, (count, differs) in parts.items():
        assert count > 1, (what, count)
        assert differs is None, (what, differs)


@pytest.mark.parametrize("fit", ["plain", "numeric"])
def test_written_effects_are_lme4s(run, fit):
    """The modes are lme4's; the SEs are lme4's conditional SDs, formed from its
    estimates as in ``tests/distributed/test_embedded.py``."""
    _, folder, case, data = run
    table = pd.read_parquet(folder / fit / "now" / "random_effects.parquet")
    scale = case["expected"]["scale"]
    psi = np.array(case["expected"]["cov_re"]) / scale
    group = "code" if fit == "numeric" else "Subject"

    def label(level):
        return int(level) * 7 - 2000 if fit == "numeric" else f"S{level}"

    assert sorted(table.index) == sorted(label(r["level"])
                                         for r in case["random_effects"]["Subject"])
    for r in case["random_effects"]["Subject"]:
        row = table.loc[label(r["level"])]
        np.testing.assert_allclose(row[[group, "Days"]], [r["(Intercept)"], r["Days"]],
                                   atol=2e-3)
        days = data.loc[data[group] == label(r["level"]), "Days"].to_numpy()
        z = np.column_stack([np.ones(days.size), days])
        se = np.sqrt(np.diag(scale * np.linalg.inv(np.linalg.inv(psi) + z.T @ z)))
        np.testing.assert_allclose(row[[f"{group} SE", "Days SE"]], se, rtol=1e-4)
