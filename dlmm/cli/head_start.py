"""A head start for the command's forked workers: the one pass's modules and loop.

The command forks the embedded cluster's workers (:func:`.cluster.connect`): they
begin with dlmm imported. :class:`LoadThePass`, a Dask worker plugin, then has each
worker import the rest of what the one pass runs (Dask's DataFrame, pyarrow's Parquet
reader, numba) and load the pass's compiled loop, in a thread, while the driver plans
the pass: the first chunk does not wait for them (0.5-2 s on the loaded 2-core
machine). A task that needs one of the modules meanwhile waits for its import, as any
import in two threads. Spawned workers (a small memory limit, or not Linux) import
dlmm as their first task arrives, not before (a worker of a small memory limit must not
exceed it before any task: issue 21), and do not get the plugin.
"""

from __future__ import annotations

import importlib
import threading

from distributed.diagnostics.plugin import WorkerPlugin

from ..kernels.warm import warm_pass_loop

#: What a chunk's task of the one pass imports, in its order.
PASS_MODULES = ("dlmm.distributed.dask_backend", "dlmm.distributed.parquet_pieces",
                "pyarrow.parquet", "dlmm.kernels.crossprod_loops")


def load_the_pass() -> None:
    """Import :data:`PASS_MODULES` and load the pass's compiled loop; errors are left to
    the first chunk, which does the same."""
    try:
        for name in PASS_MODULES:
            importlib.import_module(name)
        warm_pass_loop()
    except Exception:  # noqa: BLE001 - a head start only
        pass


class LoadThePass(WorkerPlugin):
    """Runs :func:`load_the_pass` in a thread of its own as a worker starts (or as the
    plugin is registered on a running worker)."""

    name = "dlmm-load-pass"

    def setup(self, worker) -> None:  # noqa: ARG002 - Dask's plugin hook
        threading.Thread(target=load_the_pass, name=self.name, daemon=True).start()
