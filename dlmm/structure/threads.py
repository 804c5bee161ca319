"""How many BLAS threads the driver's dense algebra runs on, per crossed evaluation.

NumPy and SciPy each load their own OpenBLAS, each with a pool of threads that
spin while they wait for work. A crossed evaluation on a modest dense part
(InstEval: a 1,128 x 1,128 Schur complement) is a stream of small and
mid-sized BLAS and LAPACK calls; on a machine whose cores are busy with other
processes, the pools' wake-ups and spinning cost more than the arithmetic they
share. Measured on the 2-core development machine under a load of about 5:
the InstEval fit's 14 evaluations took 9.1-9.7 s with both pools at 2 threads
and 0.74-1.46 s at 1 thread (one evaluation alone, best of 5 on a quieter
machine: 33 ms at 2 threads against 48 ms at 1 for the factor and its selected
inverse). Only when the dense part is large does its cubic work (``Q2^3`` flops)
outweigh that, and only when the cores are free: a 5,000 x 5,000 factor and
inverse took 2.7 s at 1 thread and 1.4 s at 2 under a load of 2, but one
evaluation of the 10^6-row ratings benchmark (the same dense order) took
4.3-8.3 s at 1 thread and 9.7-14.0 s at 2 under a load of 5. So evaluations run
on one BLAS thread unless the dense part has at least :data:`THREADED_DENSE_MIN`
rows and the one-minute load average leaves a core free (``os.getloadavg()``
below the number of cores minus one); then the libraries' own setting is kept.

threadpoolctl (a runtime dependency for this) sets the limit for the duration
of a ``with`` block only, so nothing outside the crossed engine changes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: Order of the dense part (``Q2``) from which the dense algebra uses every
#: BLAS thread the libraries were started with.
THREADED_DENSE_MIN = 2500

_controller = None


def _blas_controller():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def cores_free() -> bool:
    """Whether the one-minute load average leaves at least one core idle."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # not on every platform
        return False
    return load < (os.cpu_count() or 1) - 1


@contextlib.contextmanager
def dense_threads(dense_size: int) -> Iterator[None]:
    """One BLAS thread for the block unless the dense part is large and cores are free."""
    if dense_size >= THREADED_DENSE_MIN and cores_free():
        yield
        return
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield
