"""How the command's embedded cluster starts its workers (issue 27: the one pass's first
chunk waited 1.5-4 s for each spawned worker to import dlmm, numba and pyarrow).

The command forks its workers on Linux when each may use 1 GiB or more: they begin with
the driver's modules, and with the one pass's compiled loop, which the driver loads just
before it forks. As it starts (from its preload, before it joins the scheduler), a
worker touches the pages of pyarrow's memory pool its first chunk's read fills, in a
thread of its own, before its first chunk arrives.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlmm.cli.cluster import FORK_MIN_MEMORY, _start_method

# A fresh process (not the suite's Dask client): the command's connect(), then what
# its worker has. A module only the driver imports (dlmm.cli.cluster) is on a forked
# worker, not on a spawned one; the worker's head-start thread is waited for (joined),
# then the pass's loop must have its one specialization loaded, its BLAS pools one
# thread, and pyarrow's pool must have held the pages it touched (and hold none now);
# then what the driver has: the loop, loaded before it forked.
_PROBE = r"""
import json, sys, threading
from dlmm.cli.cluster import connected

def probe(dask_worker):
    import sys, threading
    for t in threading.enumerate():
        if t.name == "dlmm-load-pass":
            t.join()
    import pyarrow as pa
    import threadpoolctl
    loops = sys.modules.get("dlmm.kernels.crossprod_loops")
    return {"forked": "dlmm.cli.cluster" in sys.modules,
            "pass_loop": None if loops is None else len(loops.fused_loop.signatures),
            "blas_threads": sorted({p["num_threads"]
                                    for p in threadpoolctl.threadpool_info()}),
            "pool_peak": pa.default_memory_pool().max_memory(),
            "pool_held": pa.default_memory_pool().bytes_allocated(),
            "stack_sampling": "profile" in dask_worker.periodic_callbacks}

with connected({"workers": 1, "threads_per_worker": 1}) as (client, info):
    print(json.dumps(list(client.run(probe).values())))
    loops = sys.modules.get("dlmm.kernels.crossprod_loops")  # this process: the driver
    print(json.dumps({"driver_pass_loop": None if loops is None
                      else len(loops.fused_loop.signatures)}))
from dlmm.cli import head_start
assert not head_start.ARMED  # only while the cluster starts
"""

# The worker's preload (dask_setup) as a forked worker runs it: the head start's thread
# starts there when the driver armed it before forking, and not otherwise (a spawned
# worker, or a program's own cluster).
_PRELOAD = r"""
import json, threading, types
from dlmm.cli import head_start
from dlmm.distributed import worker_setup

def started(armed):
    head_start.arm(armed)
    before = {t.ident for t in threading.enumerate()}
    worker_setup.dask_setup(types.SimpleNamespace())
    new = [t for t in threading.enumerate()
           if t.ident not in before and t.name == "dlmm-load-pass"]
    for t in new:
        t.join()
    loops = __import__("sys").modules.get("dlmm.kernels.crossprod_loops")
    return [len(new), 0 if loops is None else len(loops.fused_loop.signatures)]

print(json.dumps([started(False), started(True)]))
"""


@pytest.fixture(scope="module")
def probed() -> tuple[dict, dict]:
    """What the forked worker had (after its head start) and what the driver had."""
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    worker, driver = proc.stdout.strip().splitlines()[-2:]
    (worker,) = json.loads(worker)
    return worker, json.loads(driver)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked on Linux only")
def test_command_workers_start_forked_with_the_pass_loop_loaded(probed):
    worker, _ = probed
    # one BLAS thread, as a spawned Dask worker (pre-spawn-environ), not the driver's pools
    assert {k: worker[k] for k in ("forked", "pass_loop", "blas_threads")} == \
        {"forked": True, "pass_loop": 1, "blas_threads": [1]}, worker


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked on Linux only")
def test_the_driver_loads_the_pass_loop_before_it_forks(probed):
    """Loaded by each worker as it started, the loop's load (numba's start) still ran
    when the first chunks arrived; the driver loads it once, before the fork."""
    _, driver = probed
    assert driver == {"driver_pass_loop": 1}, driver


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked on Linux only")
def test_a_forked_worker_touches_the_pool_its_first_read_fills(probed):
    """The head start allocated (and wrote) POOL_BYTES of pyarrow's pool, then freed it:
    the first chunk's read finds pages the kernel has given the process already."""
    from dlmm.cli.head_start import POOL_BYTES

    worker, _ = probed
    assert worker["pool_peak"] >= POOL_BYTES, worker
    assert worker["pool_held"] < 1 << 20, worker


def test_command_workers_do_not_sample_their_stacks(probed):
    """Dask's profiler (every 10 ms in the worker's event loop, for the dashboard) took
    CPU from the one pass's reads on the busy 2-core machine: off on dlmm's own cluster."""
    worker, _ = probed
    assert worker["stack_sampling"] is False, worker


def test_the_preload_starts_the_head_start_only_when_armed():
    proc = subprocess.run([sys.executable, "-c", _PRELOAD], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[[0, 0], [1, 1]]", proc.stdout


@pytest.mark.parametrize("memory, workers, expected", [
    ("auto", 2, "fork"),
    (0, 2, "fork"),  # no limit
    ("2GiB", 1, "fork"),
    ("200MiB", 1, None),  # a forked worker would begin paused at its limit
    (FORK_MIN_MEMORY - 1, 1, None),
])
def test_start_method_by_memory_limit(memory, workers, expected):
    if not sys.platform.startswith("linux"):
        expected = None
    assert _start_method(memory, workers, 1) == expected


def test_a_start_method_the_user_set_is_kept(monkeypatch):
    """``DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD=spawn``: the user's choice, not
    the command's fork."""
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD", "spawn")
    assert _start_method("auto", 2, 1) is None
