"""Run ``dlmm fit`` on Dask workers that are Slurm jobs (dask-jobqueue ``SLURMCluster``).

    python fit_slurm.py [cluster options] -- fit DATA --config fit.toml --output DIR

The Dask scheduler runs in this process; ``--jobs`` Slurm jobs are submitted
(``sbatch``), each running ``--cores`` single-threaded worker processes. Once
``--min-workers`` workers have joined, ``dlmm fit ... --scheduler ADDRESS`` runs
here; then the workers are retired (their jobs end; any left are cancelled) and
the script exits with dlmm's exit code (0 converged, 3 not converged, 2 bad
input, 1 unexpected; 4 when the workers did not start in time). Run it from
``dlmm-fit.sbatch`` or a login node.

Needs ``pip install "dlmm[slurm]"`` (dask-jobqueue) in an environment every node
can run (a shared file system), and the data and output folder on shared storage.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

EXIT_NO_WORKERS = 4

logger = logging.getLogger("dlmm.slurm")


def build_parser() -> argparse.ArgumentParser:
    """The options of this script; everything after ``--`` is the dlmm command."""
    p = argparse.ArgumentParser(
        prog="fit_slurm.py",
        description="Start Dask workers as Slurm jobs and run `dlmm fit` on them.",
        epilog="Example: python fit_slurm.py --jobs 8 --cores 4 --memory 16GiB "
               "--walltime 02:00:00 --queue normal -- fit /shared/data --config fit.toml "
               "--output /shared/results/fit",
    )
    p.add_argument("--jobs", type=int, default=4, help="Slurm jobs of workers (default 4)")
    p.add_argument("--cores", type=int, default=4,
                   help="cores per job = single-threaded worker processes per job (default 4)")
    p.add_argument("--memory", default="16GiB", help="memory per job (default 16GiB)")
    p.add_argument("--walltime", default="02:00:00", help="walltime of each worker job")
    p.add_argument("--queue", help="Slurm partition of the worker jobs (#SBATCH -p)")
    p.add_argument("--account", help="Slurm account of the worker jobs (#SBATCH -A)")
    p.add_argument("--job-extra", action="append", default=[], metavar="DIRECTIVE",
                   help="another #SBATCH directive for the worker jobs, e.g. "
                        "--job-extra=--qos=normal (repeatable)")
    p.add_argument("--prologue", action="append", default=[], metavar="COMMAND",
                   help="a shell command run in each worker job before the worker, e.g. "
                        "'module load python' (repeatable)")
    p.add_argument("--interface", help="network interface of scheduler and workers, e.g. ib0")
    p.add_argument("--local-directory", help="node-local scratch for the workers, e.g. $TMPDIR")
    p.add_argument("--log-directory", help="folder for the worker jobs' Slurm logs")
    p.add_argument("--min-workers", type=int,
                   help="start the fit when this many workers have joined (default: all)")
    p.add_argument("--wait", type=float, default=1800.0, metavar="SECONDS",
                   help="how long to wait for --min-workers (default 1800)")
    p.add_argument("dlmm_args", nargs=argparse.REMAINDER, metavar="-- fit DATA ...",
                   help="the dlmm command, after --")
    return p


def dlmm_command(args: argparse.Namespace) -> list[str]:
    """The ``dlmm`` arguments after ``--``, checked to be a fit without a cluster option."""
    rest = list(args.dlmm_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if not rest or rest[0] != "fit":
        raise SystemExit("fit_slurm.py: error: give the dlmm command after --: -- fit DATA ...")
    taken = {"--scheduler", "--workers", "--threads-per-worker", "--memory-limit"}
    given = [a.split("=", 1)[0] for a in rest if a.startswith("--")]
    clash = [a for a in given if a in taken]
    if clash:
        raise SystemExit(f"fit_slurm.py: error: {clash[0]} is set by this script; drop it")
    return rest


def main(argv: list[str] | None = None) -> int:
    """Start the Slurm cluster, run ``dlmm fit`` on it, stop it; return dlmm's exit code."""
    args = build_parser().parse_args(argv)
    fit_args = dlmm_command(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import dask
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    from dlmm.cli import main as dlmm_main

    cluster = SLURMCluster(
        cores=args.cores,
        processes=args.cores,  # one thread per worker process: dlmm's data pass holds the GIL
        memory=args.memory,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        job_extra_directives=args.job_extra,
        job_script_prologue=args.prologue,
        interface=args.interface,
        local_directory=args.local_directory,
        log_directory=args.log_directory,
        python=sys.executable,
        # The dashboard on port 8787 of every interface, unless Dask's configuration
        # (jobqueue.slurm.scheduler-options) says otherwise.
        scheduler_options={"dashboard_address": ":8787",
                           **(dask.config.get("jobqueue.slurm.scheduler-options") or {})},
    )
    try:
        cluster.scale(jobs=args.jobs)
        wanted = args.min_workers or args.jobs * args.cores
        logger.info("scheduler %s, dashboard %s; waiting for %d workers", cluster.scheduler_address,
                    cluster.dashboard_link, wanted)
        with Client(cluster) as client:
            try:
                client.wait_for_workers(wanted, timeout=args.wait)
            except TimeoutError:
                logger.error("only %d of %d workers joined within %g s (queue busy?)",
                             len(client.nthreads()), wanted,
                             args.wait)
                return EXIT_NO_WORKERS
        return dlmm_main([*fit_args, "--scheduler", cluster.scheduler_address])
    finally:
        stop(cluster)


def stop(cluster, timeout: float = 30.0) -> None:
    """Retire the workers, wait (at most ``timeout`` s) for their Slurm jobs to end,
    then close the scheduler and cancel what is left: workers leave cleanly, with no
    "comm closed" tracebacks in the log."""
    from distributed import Client

    jobs = [job.job_id for job in cluster.workers.values() if getattr(job, "job_id", None)]
    try:
        with Client(cluster, timeout=timeout) as client:
            client.retire_workers(close_workers=True)
    except (OSError, TimeoutError) as exc:  # the scheduler is already gone: close anyway
        logger.warning("could not retire the workers: %s", exc)
    deadline = time.monotonic() + timeout
    while jobs and time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-o", "%i", "-t", "PD,CF,R,CG,S",
                                 "-j", ",".join(jobs)],
                                capture_output=True, text=True, timeout=timeout)
        if queued.returncode != 0 or not queued.stdout.split():  # gone (or no squeue)
            break
        time.sleep(0.5)
    cluster.close()


if __name__ == "__main__":
    sys.exit(main())
