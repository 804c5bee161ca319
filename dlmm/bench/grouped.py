"""The grouped benchmark: dlmm beside statsmodels (and lme4) on the same Parquet data.

For each size (number of groups) the benchmark

1. writes (or reuses) a synthetic Parquet data set with :mod:`dlmm.simulate`;
2. measures the floor: a bare read of the model's columns with pyarrow plus
   the per-group cross-products in this process;
3. fits it with dlmm from Parquet on a local Dask cluster started once for
   the whole run (its start-up is reported apart), and records the wall time
   split into data pass / optimizer / Hessian / random effects, the number of
   evaluations, the time per evaluation, and the peak memory (RSS) of the
   driver and of the busiest worker;
4. fits the same data with statsmodels (and with lme4 through ``Rscript``
   when R and lme4 are installed) while its predicted time stays within
   ``peer_budget`` seconds (predicted from the previous size, linearly in
   rows), and reports the ratio of times and the llf difference.

The report (:mod:`dlmm.bench.report`) is a table on the terminal, a JSON
document, and a log-log PNG of time against rows (when matplotlib is installed).
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .peers import lme4_available, lme4_fit, statsmodels_fit
from .report import BENCH_SCHEMA, machine, row_line


def _peak_rss_mb() -> float:
    """Peak resident memory of this process, MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _formula(k_fe: int) -> str:
    terms = [f"x{j}" for j in range(1, k_fe)]
    return "y ~ " + (" + ".join(terms) if terms else "1")


def _dataset(data_dir: Path, n_groups: int, per_group: int, k_fe: int, re_formula: str,
             partitions: int, seed: int) -> Path:
    from ..simulate import read_truth, simulate_parquet

    tag = re_formula.replace("~", "").replace(" ", "").replace("+", "_") or "1"
    path = data_dir / f"g{n_groups}_m{per_group}_k{k_fe}_re{tag}_p{partitions}_s{seed}"
    if path.exists():
        try:
            read_truth(path)
            return path
        except Exception:  # an incomplete folder: write it again
            shutil.rmtree(path)
    simulate_parquet(path, n_groups, per_group, k_fe=k_fe, re_formula=re_formula,
                     partitions=partitions, seed=seed)
    return path


def _floor_seconds(path: Path, formula: str, re_formula: str) -> float:
    """Bare pyarrow read of the model's columns plus the per-group cross-products."""
    import pyarrow.parquet as pq

    from ..spec.formula import FormulaSpec
    from ..structure.grouped import chunk_crossproducts

    spec = FormulaSpec(formula, "g", re_formula=re_formula)
    start = time.perf_counter()
    files = sorted(p for p in path.glob("*.parquet"))
    columns = None
    for f in files:
        table = pq.read_table(f, columns=columns)
        frame = table.to_pandas()
        if columns is None:
            columns = spec.required_columns(frame.columns)
            spec.learn_levels(frame.head(100), {})
            frame = frame[columns]
        chunk_crossproducts(frame, spec)
    return time.perf_counter() - start


def _worker_peak_mb(client) -> float:
    def peak():
        import resource as res

        return res.getrusage(res.RUSAGE_SELF).ru_maxrss / 1024.0

    return float(max(client.run(peak).values()))


def run_bench(
    sizes: list[int],
    per_group: int = 20,
    k_fe: int = 5,
    re_formula: str = "~x1",
    partitions: int | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    data_dir: str | os.PathLike | None = None,
    peers: tuple[str, ...] = ("statsmodels", "lme4"),
    peer_budget: float = 120.0,
    seed: int = 0,
    log=print,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring) and return its JSON document."""
    from distributed import Client, LocalCluster

    import dlmm

    data_root = Path(data_dir) if data_dir else Path(tempfile.gettempdir()) / "dlmm-bench-data"
    data_root.mkdir(parents=True, exist_ok=True)
    formula = _formula(k_fe)
    n_workers = workers or max(1, min(os.cpu_count() or 1, 8))
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                           processes=True, host="127.0.0.1", dashboard_address=None)
    client = Client(cluster)
    startup = time.perf_counter() - start
    log(f"local cluster: {n_workers} workers x {threads_per_worker} threads, "
        f"started in {startup:.2f} s")
    # One small fit first, so that imports and the workers' first tasks are not
    # charged to the first size (reported as warm-up).
    t_warm = time.perf_counter()
    warm = _dataset(data_root, 200, 5, k_fe, re_formula, n_workers, seed)
    dlmm.mixedlm(formula, str(warm), groups="g", re_formula=re_formula).fit(client=client)
    warmup = time.perf_counter() - t_warm
    have_lme4 = "lme4" in peers and lme4_available()
    if "lme4" in peers and not have_lme4:
        log("lme4: Rscript with lme4 not found; skipped")
    if "statsmodels" in peers:
        import importlib.util

        if importlib.util.find_spec("statsmodels") is None:  # a peer, not a dependency
            log("statsmodels: not installed (pip install statsmodels); skipped")
            peers = tuple(p for p in peers if p != "statsmodels")
    rows_out = []
    predicted: dict[str, float] = {}
    try:
        for n_groups in sizes:
            n_rows = n_groups * per_group
            parts = partitions or max(n_workers, min(64, -(-n_rows // 2_000_000)))
            path = _dataset(data_root, n_groups, per_group, k_fe, re_formula, parts, seed)
            row: dict[str, Any] = {"n_groups": n_groups, "per_group": per_group,
                                   "rows": n_rows, "partitions": parts, "data": str(path)}
            row["floor_seconds"] = _floor_seconds(path, formula, re_formula)
            t0 = time.perf_counter()
            result = dlmm.mixedlm(formula, str(path), groups="g",
                                  re_formula=re_formula).fit(client=client)
            fit_seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            table = client.persist(result.random_effects_table())
            from distributed import wait

            wait(table)
            re_seconds = time.perf_counter() - t1
            del table
            timings = result.timings
            row.update({
                "dlmm_seconds": fit_seconds + re_seconds,
                "fit_seconds": fit_seconds,
                "data_pass_seconds": timings["data_pass"],
                "optimizer_seconds": timings["optimizer"],
                "hessian_seconds": timings["hessian"],
                "random_effects_seconds": re_seconds,
                "evaluations": timings["evaluations"],
                "seconds_per_evaluation": timings["optimizer"] / max(timings["evaluations"], 1),
                "llf": result.llf,
                "converged": result.converged,
                "driver_peak_mb": _peak_rss_mb(),
                "worker_peak_mb": _worker_peak_mb(client),
            })
            row["dlmm_vs_floor"] = row["fit_seconds"] / row["floor_seconds"]
            for peer in peers:
                if peer == "lme4" and not have_lme4:
                    continue
                guess = predicted.get(peer)
                if guess is not None and guess * n_rows > peer_budget:
                    row[peer] = {"skipped": f"predicted {guess * n_rows:.0f} s > budget"}
                    continue
                try:
                    if peer == "statsmodels":
                        out = statsmodels_fit(path, formula, groups="g",
                                              re_formula=re_formula)
                    else:
                        re_terms = re_formula.replace("~", "").strip() or "1"
                        out = lme4_fit(path, f"{formula} + ({re_terms} | g)",
                                       timeout=4 * peer_budget)
                except Exception as exc:  # a peer failing is a result, not a crash
                    row[peer] = {"failed": f"{type(exc).__name__}: {exc}"}
                    continue
                out["ratio"] = out["seconds"] / row["dlmm_seconds"]
                out["llf_rel_diff"] = (row["llf"] - out["llf"]) / abs(out["llf"])
                row[peer] = out
                predicted[peer] = out["seconds"] / n_rows
            rows_out.append(row)
            log(row_line(row))
    finally:
        client.close()
        cluster.close()
    return {
        "schema": BENCH_SCHEMA,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "settings": {"per_group": per_group, "k_fe": k_fe, "re_formula": re_formula,
                     "formula": formula, "workers": n_workers,
                     "threads_per_worker": threads_per_worker, "peer_budget": peer_budget,
                     "cluster_startup_seconds": startup, "warmup_seconds": warmup,
                     "dlmm_version": dlmm.__version__},
        "results": rows_out,
    }


