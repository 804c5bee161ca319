"""The grouped engine against the I/O limit: one fit beside the bare read of its columns.

The floor of a fit is reading the model's columns. For each size (number of groups)
the case

1. writes (or reuses) a synthetic Parquet data set with :mod:`dlmm.simulate`, one file
   per started million rows (as large data are written);
2. measures the floor: a bare ``pyarrow.parquet.read_table`` of the model's columns,
   the files dealt round-robin to as many processes as the fit has workers (started,
   and pyarrow imported, before the clock starts);
3. right after, runs ``dlmm fit`` on a local cluster of those workers as a user runs
   it (a child process, JSON log; the largest resident memory of its worker processes
   polled every 0.1 s), and reads from its ``result.json`` and log the data
   pass, the optimizer's steps (and seconds per step), the outputs (from the fit's
   result to the outputs written), the cluster's start, the command's own start (to
   its first log line) and end (from the outputs written: the cluster's close), and
   the whole command;
4. reports each as a ratio to the floor, with the load average before and after:
   on a shared machine only ratios measured in the same minute compare.

The report is a table on the terminal and, with ``-o``, ``bench-io.json`` and
``bench-io.txt`` (schema ``dlmm.bench-io/1``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .grouped import _dataset, _formula
from .report import machine

SCHEMA = "dlmm.bench-io/1"

#: Rows per Parquet file of the simulated data sets.
ROWS_PER_FILE = 1_000_000


def _ready(barrier) -> None:
    """A reader process's start: pyarrow imported, then wait for the others."""
    import pyarrow.parquet  # noqa: F401

    barrier.wait()


def _read_files(job: tuple[list[str], list[str]]) -> int:
    """Read ``columns`` of each file with pyarrow; the rows read."""
    import pyarrow.parquet as pq

    files, columns = job
    return sum(pq.read_table(f, columns=columns).num_rows for f in files)


def bare_read_seconds(files: list[str], columns: list[str], processes: int) -> tuple[float, int]:
    """Seconds to read ``columns`` of ``files`` with pyarrow in ``processes`` processes
    (file ``j`` in process ``j mod processes``), and the rows read."""
    processes = max(1, min(processes, len(files)))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    with context.Pool(processes, initializer=_ready, initargs=(barrier,)) as pool:
        barrier.wait()  # every reader started, pyarrow imported
        start = time.perf_counter()
        rows = pool.map(_read_files, [(files[j::processes], columns)
                                      for j in range(processes)], chunksize=1)
        seconds = time.perf_counter() - start
    return seconds, int(sum(rows))


def _event_times(stderr: str) -> dict[str, float]:
    """The time (seconds since the epoch) of the last log line of each event, and of the
    first log line (``"first"``)."""
    out: dict[str, float] = {}
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "time" in record:
            when = datetime.fromisoformat(record["time"]).timestamp()
            out.setdefault("first", when)
            if "event" in record:
                out[record["event"]] = when
    return out


class _PeakWatch:
    """The largest resident memory of any child process of ``pid`` (the embedded
    cluster's workers), read in a thread until :meth:`stop`.

    Each child's peak is the kernel's own high-water mark (``VmHWM`` of
    ``/proc/<pid>/status``, kept until the process ends), so a read every
    :data:`PEAK_POLL_SECONDS` misses no peak of a process that lives past it; where
    there is no such file, the resident size at each read. The watch costs the
    measured command little CPU: it shares the machine's two cores with the workers.
    """

    def __init__(self, pid: int):
        import threading

        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(pid,), daemon=True)
        self._thread.start()

    @staticmethod
    def _high_water(child) -> int:
        try:
            with open(f"/proc/{child.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return child.memory_info().rss

    def _watch(self, pid: int) -> None:
        import psutil

        try:
            parent = psutil.Process(pid)
        except psutil.Error:
            return
        while True:
            done = self._done.wait(PEAK_POLL_SECONDS)
            try:
                children = parent.children(recursive=True)
            except psutil.Error:
                return
            for child in children:
                try:
                    self.peak = max(self.peak, self._high_water(child))
                except psutil.Error:
                    pass
            if done:
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


#: Seconds between two reads of the workers' memory peaks (:class:`_PeakWatch`).
PEAK_POLL_SECONDS = 0.5


def fit_command(path: Path, formula: str, re_formula: str, workers: int,
                timeout: float = 3600.0) -> dict[str, Any]:
    """``dlmm fit`` of the data set in a child process: its timings, llf and estimates.

    Raises
    ------
    RuntimeError
        The command failed (its last error lines).
    """
    out = Path(tempfile.mkdtemp(prefix="dlmm-bench-io-")) / "fit"
    args = [sys.executable, "-m", "dlmm.cli", "fit", str(path), "-f", formula, "-g", "g",
            "--re-formula", re_formula, "--workers", str(workers),
            "--threads-per-worker", "1", "-o", str(out), "--log-format", "json"]
    try:
        start, started = time.perf_counter(), time.time()
        with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as proc:
            peak = _PeakWatch(proc.pid)
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            finally:
                peak.stop()
        done = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
        command, ended = time.perf_counter() - start, time.time()
        if done.returncode not in (0, 3):
            raise RuntimeError(f"dlmm fit exited {done.returncode}: "
                               + " ".join(done.stderr.split())[-400:])
        result = json.loads((out / "result.json").read_text())
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    events = _event_times(done.stderr)
    timings = result["timings"]
    steps = int(timings["evaluations"])
    return {
        "command_seconds": command,
        "pass_seconds": timings["data_pass"],
        "optimizer_seconds": timings["optimizer"],
        "steps": steps,
        "step_seconds": timings["optimizer"] / max(steps, 1),
        "outputs_seconds": events["output"] - events["result"],
        # Python's start and dlmm's imports, to the first log line (the cluster's start);
        # the outputs written to the command's end (the cluster's close).
        "start_seconds": events["first"] - started,
        "close_seconds": ended - events["output"],
        "cluster_seconds": timings.get("cluster"),
        "worker_peak_bytes": peak.peak,
        "llf": result["estimates"]["llf"],
        "converged": bool(result["converged"]),
        "estimates": {k: result["estimates"][k] for k in ("fe_params", "cov_re", "scale")},
    }


def run_io_bench(sizes: list[int], per_group: int = 20, k_fe: int = 5,
                 re_formula: str = "~x1", partitions: int | None = None, workers: int = 2,
                 data_dir=None, seed: int = 0, log=print) -> dict[str, Any]:
    """Run the I/O-limit case (see the module docstring) on each size; its JSON document."""
    import dlmm

    root = Path(data_dir) if data_dir else Path(tempfile.gettempdir()) / "dlmm-bench-data"
    root.mkdir(parents=True, exist_ok=True)
    formula = _formula(k_fe)
    columns = ["y"] + [f"x{j}" for j in range(1, k_fe)] + ["g"]
    rows_out = []
    for n_groups in sizes:
        n_rows = n_groups * per_group
        parts = partitions or max(workers, -(-n_rows // ROWS_PER_FILE))
        path = _dataset(root, n_groups, per_group, k_fe, re_formula, parts, seed)
        files = [str(p) for p in sorted(path.glob("*.parquet"))]
        load_before = os.getloadavg()[0]
        floor, read_rows = bare_read_seconds(files, columns, workers)
        row: dict[str, Any] = {"n_groups": n_groups, "per_group": per_group, "rows": read_rows,
                               "files": len(files), "data": str(path),
                               "floor_seconds": floor, "load_before": load_before}
        row.update(fit_command(path, formula, re_formula, workers))
        row["load_after"] = os.getloadavg()[0]
        for key in ("pass", "outputs", "command"):
            row[f"{key}_vs_floor"] = row[f"{key}_seconds"] / floor
        rows_out.append(row)
        log(io_line(row))
    return {"schema": SCHEMA, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine(),
            "settings": {"per_group": per_group, "k_fe": k_fe, "formula": formula,
                         "re_formula": re_formula, "columns": columns, "workers": workers,
                         "threads_per_worker": 1, "seed": seed,
                         "dlmm_version": dlmm.__version__},
            "results": rows_out}


def io_line(row: dict) -> str:
    """One size of the I/O-limit case, as a log line."""
    return (f"{row['n_groups']:,} groups, {row['rows']:,} rows in {row['files']} files: "
            f"bare read {row['floor_seconds']:.2f} s; data pass {row['pass_seconds']:.2f} s "
            f"({row['pass_vs_floor']:.1f}x); {row['steps']} steps of "
            f"{row['step_seconds']:.2f} s; outputs {row['outputs_seconds']:.2f} s "
            f"({row['outputs_vs_floor']:.1f}x); start {row['start_seconds']:.2f} s, cluster "
            f"{row['cluster_seconds'] or 0:.2f} s, close {row['close_seconds']:.2f} s; "
            f"worker peak {row.get('worker_peak_bytes', 0) / 2**30:.2f} GiB; "
            f"command {row['command_seconds']:.2f} s "
            f"({row['command_vs_floor']:.1f}x); load {row['load_before']:.1f}-"
            f"{row['load_after']:.1f}")


def format_io_table(doc: dict) -> str:
    """The I/O-limit case as a fixed-width table (seconds; ``x`` columns: times the
    floor)."""
    head = (f"{'groups':>10} {'rows':>12} {'files':>5} {'read':>6} {'pass':>6} {'x':>5} "
            f"{'steps':>5} {'s/step':>6} {'out':>6} {'x':>5} {'command':>7} {'x':>5} "
            f"{'load':>9}")
    lines = [head, "-" * len(head)]
    for r in doc["results"]:
        lines.append(
            f"{r['n_groups']:>10,} {r['rows']:>12,} {r['files']:>5} {r['floor_seconds']:>6.2f} "
            f"{r['pass_seconds']:>6.2f} {r['pass_vs_floor']:>5.1f} {r['steps']:>5} "
            f"{r['step_seconds']:>6.2f} {r['outputs_seconds']:>6.2f} "
            f"{r['outputs_vs_floor']:>5.1f} {r['command_seconds']:>7.2f} "
            f"{r['command_vs_floor']:>5.1f} {r['load_before']:>4.1f}-{r['load_after']:<4.1f}")
    return "\n".join(lines)


def write_io_report(doc: dict, output) -> dict[str, str]:
    """Write ``bench-io.json`` and ``bench-io.txt`` into ``output``."""
    from ..io.jsonable import jsonable

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "bench-io.json"), "table": str(out / "bench-io.txt")}
    Path(files["json"]).write_text(json.dumps(jsonable(doc), indent=1, allow_nan=False))
    Path(files["table"]).write_text(format_io_table(doc) + "\n")
    return files
