"""The crossed benchmark: InstEval and simulated users x items, dlmm beside lme4.

Cases are ``"insteval"`` (lme4's InstEval, ``y ~ service + (1|s) + (1|d)``, from
a CSV path) or ``"ROWSxUSERSxITEMS"`` (:func:`movielens_like`: Zipf-like item
popularity, gamma-distributed user activity, ``y ~ x + (1|user) + (1|item)``).
For each case dlmm fits the data twice, each time in a fresh process so that
its peak memory is its own: from pandas in process, and from Parquet on a
local cluster (whose start-up, the workers' imports of dlmm, pyarrow and
dask.dataframe included, is reported apart). lme4 fits the same data
through ``Rscript`` in the same run; statsmodels only where its dense algebra
on one group of all levels fits in memory (at most ``STATSMODELS_MAX_LEVELS``).
Each peer runs in a child process stopped after ``peer_budget`` seconds: a peer
over its budget is reported as timed out, not waited for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .peers import lme4_available, lme4_fit, over_budget, statsmodels_fit_within
from .report import machine

#: statsmodels holds the one group's levels as dense squares (InstEval's 4,100
#: levels: 6 GB resident): beyond this many it would exhaust the memory before its
#: budget ran out.
STATSMODELS_MAX_LEVELS = 5_000
INSTEVAL_DEFAULT = Path(__file__).resolve().parents[2] / "tests" / "kernels" / "crossed" / \
    "data" / "insteval.csv.gz"


def movielens_like(n_rows: int, n_users: int, n_items: int, seed: int = 0):
    """Ratings-shaped crossed data: ``user``, ``item``, a covariate ``x`` and ``y``.

    Item popularity is Zipf-like (weight of the item of rank r proportional to
    ``1 / r``), user activity gamma-distributed (shape 0.6), so a few items and
    users hold most rows and many are seen once or never. The response is
    ``y = 3.5 + 0.3 x + u_user + v_item + e`` with standard deviations 0.5, 0.4
    and 1 for ``u``, ``v``, ``e``.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    item_w = 1.0 / np.arange(1, n_items + 1)
    user_w = rng.gamma(0.6, size=n_users)
    users = rng.choice(n_users, size=n_rows, p=user_w / user_w.sum())
    items = rng.permutation(n_items)[rng.choice(n_items, size=n_rows, p=item_w / item_w.sum())]
    x = rng.normal(size=n_rows)
    y = (3.5 + 0.3 * x + rng.normal(0, 0.5, n_users)[users] + rng.normal(0, 0.4, n_items)[items]
         + rng.normal(size=n_rows))
    return pd.DataFrame({"user": users.astype(np.int64), "item": items.astype(np.int64),
                         "x": x, "y": y})


def _case(name: str) -> dict[str, Any]:
    if name == "insteval":
        return {"name": name, "formula": "y ~ service", "factors": ["s", "d"]}
    try:
        rows, users, items = (int(float(v)) for v in name.lower().split("x"))
    except ValueError:
        raise ValueError(f"crossed case {name!r} is neither 'insteval' nor ROWSxUSERSxITEMS")\
            from None
    return {"name": name, "formula": "y ~ x", "factors": ["user", "item"], "rows": rows,
            "users": users, "items": items}


def check_cases(cases: list[str]) -> None:
    """Raise ``ValueError`` naming the first case that is neither ``insteval`` nor
    ``ROWSxUSERSxITEMS`` with positive sizes (before any work)."""
    if not cases:
        raise ValueError("no crossed case given")
    for name in cases:
        case = _case(name)
        if name != "insteval" and min(case["rows"], case["users"], case["items"]) < 1:
            raise ValueError(f"crossed case {name!r} needs positive ROWS, USERS and ITEMS")


def _write_data(case: dict, data_dir: Path, insteval: Path, partitions: int, seed: int) -> Path:
    """The case's data as Parquet files in their own folder (written once)."""
    import pandas as pd

    folder = data_dir / f"crossed_{case['name']}_p{partitions}_s{seed}"
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if case["name"] == "insteval":
        frame = pd.read_csv(insteval)[["s", "d", "service", "y"]]
    else:
        frame = movielens_like(case["rows"], case["users"], case["items"], seed)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), partitions)):
        frame.iloc[part].to_parquet(folder / f"part-{k:03d}.parquet", index=False)
    (folder / "_done").write_text("")
    return folder


def _import_on_worker() -> bool:
    import dask.dataframe  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import dlmm.structure.crossed  # noqa: F401

    return True


def _child(spec: str) -> None:
    """One dlmm fit in this (fresh) process; prints a JSON line with its facts."""
    import resource

    import dlmm

    args = json.loads(spec)
    vc = {f: f"0 + C({f})" for f in args["factors"]}
    out: dict[str, Any] = {}
    if args["mode"] == "pandas":
        import pandas as pd

        start = time.perf_counter()
        data = pd.read_parquet(args["path"])
        out["read_seconds"] = time.perf_counter() - start
        client = None
    else:
        from distributed import Client, LocalCluster

        start = time.perf_counter()
        cluster = LocalCluster(n_workers=args["workers"], threads_per_worker=1,
                               processes=True, host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
        # The workers' first imports (dlmm, pyarrow's Parquet reader, dask.dataframe) are
        # start-up, not fit: counted with the cluster, as a long-lived cluster has them.
        client.run(_import_on_worker)
        out["cluster_seconds"] = time.perf_counter() - start
        data = args["path"]
    start = time.perf_counter()
    try:
        result = dlmm.mixedlm(args["formula"], data, groups=None, re_formula="0",
                              vc_formula=vc).fit(client=client)
    except dlmm.InputError as exc:  # a design dlmm refuses (its limits): said in words
        out["refused"] = str(exc)
        print("DLMM-BENCH " + json.dumps(out))
        return
    out.update({
        "seconds": time.perf_counter() - start, "llf": result.llf,
        "converged": bool(result.converged), "evaluations": result.timings["evaluations"],
        # blocked factorizations: the steps' plus the polish's gradient differences
        "factorizations": result.timings["engine_evaluations"],
        "data_pass_seconds": result.timings["data_pass"],
        "optimizer_seconds": result.timings["optimizer"],
        "vcomp": dict(zip(result.vc_names, map(float, result.vcomp))),
        "scale": result.scale,
        "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    })
    out["seconds_per_factorization"] = out["optimizer_seconds"] / max(out["factorizations"], 1)
    if client is not None:
        client.close()
        cluster.close()
    print("DLMM-BENCH " + json.dumps(out))


def _dlmm_in_child(args: dict, timeout: float) -> dict:
    code = f"from dlmm.bench.crossed import _child; _child({json.dumps(json.dumps(args))})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith("DLMM-BENCH "):
            return json.loads(line[len("DLMM-BENCH "):])
    raise RuntimeError(" ".join(done.stderr.split())[-400:])


def run_crossed_bench(cases: list[str], workers: int = 2, data_dir=None,
                      insteval: str | os.PathLike | None = None,
                      peers: tuple[str, ...] = ("statsmodels", "lme4"),
                      peer_budget: float = 1200.0, timeout: float = 1800.0, seed: int = 0,
                      log=print) -> dict[str, Any]:
    """Run the crossed benchmark (see the module docstring); its JSON document."""
    import tempfile

    import dlmm

    root = Path(data_dir) if data_dir else Path(tempfile.gettempdir()) / "dlmm-bench-data"
    root.mkdir(parents=True, exist_ok=True)
    insteval_path = Path(insteval) if insteval else INSTEVAL_DEFAULT
    have_lme4 = "lme4" in peers and lme4_available()
    if "lme4" in peers and not have_lme4:
        log("lme4: Rscript with lme4 not found; skipped")
    check_cases(cases)
    rows_out = []
    for name in cases:
        case = _case(name)
        partitions = max(workers, min(64, -(-case.get("rows", 73421) // 500_000)))
        path = _write_data(case, root, insteval_path, partitions, seed)
        row: dict[str, Any] = {"case": name, "formula": case["formula"],
                               "factors": case["factors"], "partitions": partitions}
        base = {"path": str(path), "formula": case["formula"], "factors": case["factors"],
                "workers": workers}
        for mode in ("pandas", "parquet"):
            try:
                row[f"dlmm_{mode}"] = _dlmm_in_child({**base, "mode": mode}, timeout)
            except Exception as exc:  # a failure is a result of the benchmark
                row[f"dlmm_{mode}"] = {"failed": f"{type(exc).__name__}: {exc}"}
        levels = _levels(path, case["factors"])
        row["levels"] = levels
        row["rows"] = _rows(path)
        if have_lme4:
            terms = " + ".join(f"(1 | {f})" for f in case["factors"])
            try:
                row["lme4"] = lme4_fit(path, f"{case['formula']} + {terms}", timeout=peer_budget)
            except subprocess.TimeoutExpired:
                row["lme4"] = over_budget(peer_budget)
            except Exception as exc:
                row["lme4"] = {"failed": f"{type(exc).__name__}: {exc}"}
        if "statsmodels" in peers:
            if sum(levels.values()) > STATSMODELS_MAX_LEVELS:
                row["statsmodels"] = {"skipped": f"dense algebra on {sum(levels.values())} "
                                                 "levels in one group"}
            else:
                vc = {f: f"0 + C({f})" for f in case["factors"]}
                try:
                    row["statsmodels"] = statsmodels_fit_within(
                        path, case["formula"], None, peer_budget, "0", vc)
                except subprocess.TimeoutExpired:
                    row["statsmodels"] = over_budget(peer_budget)
                except Exception as exc:
                    row["statsmodels"] = {"failed": f"{type(exc).__name__}: {exc}"}
        _ratios(row)
        rows_out.append(row)
        log(crossed_line(row))
    return {"schema": "dlmm.bench-crossed/1", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine(), "settings": {"workers": workers, "seed": seed,
                                               "dlmm_version": dlmm.__version__},
            "results": rows_out}


def _levels(path: Path, factors: list[str]) -> dict[str, int]:
    import pandas as pd

    frame = pd.read_parquet(path, columns=factors)
    return {f: int(frame[f].nunique()) for f in factors}


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(path.glob("*.parquet")))


def _ratios(row: dict) -> None:
    ref = row.get("dlmm_pandas", {})
    for peer in ("lme4", "statsmodels"):
        out = row.get(peer, {})
        if "seconds" in out and "seconds" in ref:
            out["ratio"] = out["seconds"] / ref["seconds"]
            out["llf_rel_diff"] = (ref["llf"] - out["llf"]) / abs(out["llf"])


def crossed_line(row: dict) -> str:
    """One line of the crossed benchmark's log and table."""
    def fit(d: dict) -> str:
        if "seconds" not in d:
            why = d.get("refused", d.get("failed", d.get("skipped", d.get("timed_out", "-"))))
            return why[:90]
        extra = f", {d['evaluations']} steps, {d['factorizations']} factorizations" \
            if "factorizations" in d else ""
        mem = f", {d['driver_peak_mb']:.0f} MB" if "driver_peak_mb" in d else ""
        return f"{d['seconds']:.2f} s{extra}{mem}"

    levels = " x ".join(f"{v:,} {k}" for k, v in row["levels"].items())
    parts = [f"{row['case']}: {row['rows']:,} rows, {levels}",
             f"dlmm pandas {fit(row.get('dlmm_pandas', {}))}",
             f"dlmm parquet {fit(row.get('dlmm_parquet', {}))}"
             + (f" (+ cluster {row['dlmm_parquet']['cluster_seconds']:.1f} s)"
                if "cluster_seconds" in row.get("dlmm_parquet", {}) else "")]
    for peer in ("lme4", "statsmodels"):
        if peer in row:
            d = row[peer]
            ratio = f" ({d['ratio']:.1f}x dlmm, llf rel diff {d['llf_rel_diff']:.1e})" \
                if "ratio" in d else ""
            parts.append(f"{peer} {fit(d)}{ratio}")
    return "; ".join(parts)


def format_crossed_table(doc: dict) -> str:
    """The crossed benchmark as a fixed-width text table (times in seconds; a peer
    over its budget shows ``>budget``, one not run ``-``)."""
    def secs(d: dict, key: str = "seconds") -> str:
        if key in d:
            return f"{d[key]:.2f}"
        if "timed_out" in d:
            return f">{d['budget']:.0f}"
        return "refused" if "refused" in d else "fail" if "failed" in d else "-"

    head = (f"{'case':<22} {'rows':>11} {'levels':>15} {'pandas':>7} {'steps':>5} "
            f"{'facts':>5} {'s/fact':>7} {'MB':>6} {'parquet':>7} {'cluster':>7} {'lme4':>8} "
            f"{'x':>6} {'sm':>8} {'x':>6}")
    lines = [head, "-" * len(head)]
    for r in doc["results"]:
        pdx, pq = r.get("dlmm_pandas", {}), r.get("dlmm_parquet", {})
        lm, sm = r.get("lme4", {}), r.get("statsmodels", {})
        levels = "x".join(f"{v:,}" for v in r["levels"].values())
        lines.append(
            f"{r['case']:<22} {r['rows']:>11,} {levels:>15} {secs(pdx):>7} "
            f"{pdx.get('evaluations', '-'):>5} {pdx.get('factorizations', '-'):>5} "
            f"{pdx.get('seconds_per_factorization', float('nan')):>7.3f} "
            f"{pdx.get('driver_peak_mb', float('nan')):>6.0f} {secs(pq):>7} "
            f"{secs(pq, 'cluster_seconds'):>7} {secs(lm):>8} "
            f"{lm.get('ratio', float('nan')):>6.1f} {secs(sm):>8} "
            f"{sm.get('ratio', float('nan')):>6.1f}")
    return "\n".join(lines)


def write_crossed_report(doc: dict, output) -> dict[str, str]:
    """Write ``bench-crossed.json`` and ``bench-crossed.txt`` into ``output``."""
    from ..io.jsonable import jsonable

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "bench-crossed.json"), "table": str(out / "bench-crossed.txt")}
    Path(files["json"]).write_text(json.dumps(jsonable(doc), indent=1, allow_nan=False))
    Path(files["table"]).write_text(format_crossed_table(doc) + "\n")
    return files
