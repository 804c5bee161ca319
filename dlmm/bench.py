"""``dlmm bench``: dlmm beside statsmodels (and lme4) on the same Parquet data.

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

The report is a table on the terminal, a JSON document, and a log-log PNG of
time against rows (when matplotlib is installed).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

BENCH_SCHEMA = "dlmm.bench/1"


def _peak_rss_mb() -> float:
    """Peak resident memory of this process, MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _formula(k_fe: int) -> str:
    terms = [f"x{j}" for j in range(1, k_fe)]
    return "y ~ " + (" + ".join(terms) if terms else "1")


def _dataset(data_dir: Path, n_groups: int, per_group: int, k_fe: int, re_formula: str,
             partitions: int, seed: int) -> Path:
    from .simulate import read_truth, simulate_parquet

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

    from .spec.formula import FormulaSpec
    from .structure.grouped import chunk_crossproducts

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


def _statsmodels_fit(path: Path, formula: str, re_formula: str) -> dict:
    import pandas as pd
    import statsmodels.formula.api as smf

    frame = pd.read_parquet(path)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = smf.mixedlm(formula, frame, groups="g", re_formula=re_formula).fit(reml=True)
    return {"seconds": time.perf_counter() - start, "llf": float(res.llf),
            "converged": bool(res.converged)}


def lme4_available() -> bool:
    """Whether ``Rscript`` runs and has lme4 and arrow."""
    if shutil.which("Rscript") is None:
        return False
    try:
        done = subprocess.run(
            ["Rscript", "-e", "suppressMessages({library(lme4); library(arrow)})"],
            capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _lme4_fit(path: Path, formula: str, re_formula: str, timeout: float) -> dict:
    re_terms = re_formula.replace("~", "").strip() or "1"
    script = (
        "suppressMessages({library(lme4); library(arrow)});"
        f"d <- as.data.frame(open_dataset('{path}'));"
        "t0 <- Sys.time();"
        f"m <- lmer({formula} + ({re_terms} | g), data = d, REML = TRUE);"
        "cat(as.numeric(difftime(Sys.time(), t0, units = 'secs')), logLik(m), '\\n')"
    )
    done = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                          timeout=timeout)
    secs, llf = (float(v) for v in done.stdout.split()[:2])
    return {"seconds": secs, "llf": llf, "converged": True}


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
        log("lme4: Rscript with lme4 and arrow not found; skipped")
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
                        out = _statsmodels_fit(path, formula, re_formula)
                    else:
                        out = _lme4_fit(path, formula, re_formula, timeout=4 * peer_budget)
                except Exception as exc:  # a peer failing is a result, not a crash
                    row[peer] = {"failed": f"{type(exc).__name__}: {exc}"}
                    continue
                out["ratio"] = out["seconds"] / row["dlmm_seconds"]
                out["llf_rel_diff"] = (row["llf"] - out["llf"]) / abs(out["llf"])
                row[peer] = out
                predicted[peer] = out["seconds"] / n_rows
            rows_out.append(row)
            log(_row_line(row))
    finally:
        client.close()
        cluster.close()
    return {
        "schema": BENCH_SCHEMA,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "memory_gb": _memory_gb()},
        "settings": {"per_group": per_group, "k_fe": k_fe, "re_formula": re_formula,
                     "formula": formula, "workers": n_workers,
                     "threads_per_worker": threads_per_worker, "peer_budget": peer_budget,
                     "cluster_startup_seconds": startup, "warmup_seconds": warmup,
                     "dlmm_version": dlmm.__version__},
        "results": rows_out,
    }


def _memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _row_line(row: dict) -> str:
    peers = []
    for peer in ("statsmodels", "lme4"):
        if isinstance(row.get(peer), dict) and "seconds" in row[peer]:
            peers.append(f"{peer} {row[peer]['seconds']:.2f} s ({row[peer]['ratio']:.0f}x, "
                         f"llf rel diff {row[peer]['llf_rel_diff']:.1e})")
    return (f"{row['n_groups']:>9,} groups {row['rows']:>11,} rows: "
            f"dlmm {row['dlmm_seconds']:.2f} s "
            f"(pass {row['data_pass_seconds']:.2f}, optimizer {row['optimizer_seconds']:.2f} / "
            f"{row['evaluations']} evals, hessian {row['hessian_seconds']:.2f}, "
            f"random effects {row['random_effects_seconds']:.2f}); floor "
            f"{row['floor_seconds']:.2f} s; " + "; ".join(peers))


def format_table(doc: dict) -> str:
    """The benchmark as a fixed-width text table."""
    head = (f"{'groups':>10} {'rows':>12} {'dlmm s':>8} {'pass':>6} {'optim':>6} {'evals':>5} "
            f"{'s/eval':>7} {'hess':>6} {'ranef':>6} {'floor':>6} {'x floor':>7} "
            f"{'wrk MB':>7} {'sm s':>8} {'sm x':>6} {'lme4 s':>7}")
    lines = [head, "-" * len(head)]
    for r in doc["results"]:
        sm = r.get("statsmodels", {})
        lm = r.get("lme4", {})
        lines.append(
            f"{r['n_groups']:>10,} {r['rows']:>12,} {r['dlmm_seconds']:>8.2f} "
            f"{r['data_pass_seconds']:>6.2f} {r['optimizer_seconds']:>6.2f} "
            f"{r['evaluations']:>5} {r['seconds_per_evaluation']:>7.3f} "
            f"{r['hessian_seconds']:>6.2f} {r['random_effects_seconds']:>6.2f} "
            f"{r['floor_seconds']:>6.2f} {r['dlmm_vs_floor']:>7.2f} "
            f"{r['worker_peak_mb']:>7.0f} "
            f"{sm.get('seconds', float('nan')):>8.2f} {sm.get('ratio', float('nan')):>6.1f} "
            f"{lm.get('seconds', float('nan')):>7.2f}"
        )
    return "\n".join(lines)


def plot(doc: dict, path: str | os.PathLike) -> bool:
    """Log-log PNG of time against rows for dlmm, the floor and each peer."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    results = doc["results"]
    rows = np.array([r["rows"] for r in results], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(rows, [r["dlmm_seconds"] for r in results], "o-", label="dlmm (end to end)")
    ax.loglog(rows, [r["floor_seconds"] for r in results], "s--",
              label="floor: read + cross-products")
    for peer in ("statsmodels", "lme4"):
        pts = [(r["rows"], r[peer]["seconds"]) for r in results
               if isinstance(r.get(peer), dict) and "seconds" in r[peer]]
        if pts:
            x, y = zip(*pts)
            ax.loglog(x, y, "^-", label=peer)
    ax.set_xlabel("rows")
    ax.set_ylabel("seconds")
    ax.set_title(f"dlmm bench ({doc['settings']['workers']} workers, {doc['date']})")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(doc: dict, output: str | os.PathLike) -> dict[str, str]:
    """Write ``bench.json``, ``bench.txt`` and ``bench.png`` into ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "bench.json"), "table": str(out / "bench.txt")}
    from .io.jsonable import jsonable

    (out / "bench.json").write_text(json.dumps(jsonable(doc), indent=1, allow_nan=False))
    (out / "bench.txt").write_text(format_table(doc) + "\n")
    if plot(doc, out / "bench.png"):
        files["plot"] = str(out / "bench.png")
    return files
