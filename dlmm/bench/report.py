"""The benchmark's report: a text table, a JSON document and a log-log plot."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

BENCH_SCHEMA = "dlmm.bench/1"


def machine() -> dict:
    """CPUs, platform, Python and memory of this machine."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "memory_gb": _memory_gb()}


def _memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def row_line(row: dict) -> str:
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
    from ..io.jsonable import jsonable

    (out / "bench.json").write_text(json.dumps(jsonable(doc), indent=1, allow_nan=False))
    (out / "bench.txt").write_text(format_table(doc) + "\n")
    if plot(doc, out / "bench.png"):
        files["plot"] = str(out / "bench.png")
    return files
