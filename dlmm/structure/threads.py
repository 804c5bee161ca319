"""How many BLAS threads the driver's dense algebra runs on, per crossed evaluation.

NumPy and SciPy each load their own OpenBLAS, each with a pool of threads that
spin while they wait for work. On free cores the cubic work of a crossed
evaluation (``dpotrf`` and ``dpotri`` on the ``Q2 x Q2`` Schur complement) is
faster on two threads from ``Q2`` of about 600 (measured on the idle 2-core
machine, the pair of calls: ``Q2`` = 400, 5.0 ms at 1 thread and 4.7 at 2; 600,
11.4 and 7.0; 1,128 (InstEval), 51 and 38; 5,000, 2.9 s and 1.6 s; 10,000, 22 s
and 11 s; the InstEval fit's optimizer, median of 6, 0.83 s at 1 thread and
0.68 s at 2). On cores busy with other processes it is the opposite: the pools'
wake-ups and spinning cost more than the arithmetic they share (under a load of
about 5, the InstEval fit's 14 evaluations took 9.1-9.7 s with both pools at 2
threads and 0.74-1.46 s at 1; one evaluation of the 10^6-row ratings benchmark
4.3-8.3 s at 1 thread, 9.7-14.0 s at 2). The load average cannot tell the two
apart (the fit's own threads count in it), so :class:`DenseThreads` measures:
the first evaluation is an untimed warm-up (it pays one-off costs: numba's
compilation, first touches of memory), the second runs on one thread, the third
with the libraries' setting, and the rest of the fit (and later fits on the
same statistics) keeps all threads unless one thread was clearly faster
(:data:`ONE_THREAD_MARGIN`).

In the libraries' setting NumPy's own BLAS (the one its wheel ships, apart from
SciPy's) stays on one thread: it runs only an evaluation's small products, and
its idle threads spin for a while after each call, on the core SciPy's LAPACK
threads then wait for (measured, InstEval from a fresh process, four fits each:
evaluations after the third took 0.09-0.15 s with NumPy's pool at two threads
and 0.04-0.07 s with it at one; the optimizer 1.2-1.3 s against 0.60-0.82 s).

The warm-up runs on one thread below :data:`THREADED_WARMUP_MIN`, where a busy
machine's penalty on an untimed evaluation would outweigh what threads save on
an idle one, and with the libraries' setting above it, where one thread would
double the largest evaluation of all. Below :data:`MEASURED_DENSE_MIN`
evaluations run on one thread without a trial. Thread counts change LAPACK's
rounding in the last bits (4e-16 at most over a 3,000 x 3,000 Cholesky factor,
measured), not the estimates to any digit a fit reports.

"One thread" holds numba's parallel loops (``prange``, the streamed Schur
kernels) as well as BLAS, and the optimizer of a nested or crossed fit runs its own
algebra (L-BFGS-B's, on a few dozen parameters) on one BLAS thread, each crossed
evaluation then on the threads chosen for it (:func:`optimizer_threads`). On busy
cores the pools' wake-ups were most of a small crossed fit: the kb07-shaped maximal
model (56 x 32 levels, four effects on each) took 2.1 s at a load of 4 with the pools
free, 0.25 s on one thread (``mirror_lower`` alone 16 ms an evaluation; L-BFGS-B 9 ms
a step).

threadpoolctl and numba set their limits for the duration of a ``with`` block only,
so nothing outside the crossed engine changes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

#: Order of the dense part (``Q2``) from which the thread count is measured in the
#: fit's first evaluations; below, one BLAS thread (chosen by measurement).
MEASURED_DENSE_MIN = 500

#: Order of the dense part from which the untimed first evaluation runs with the
#: libraries' thread setting instead of one thread.
THREADED_WARMUP_MIN = 2500

#: One thread is kept only when its evaluation took less than this fraction of the one
#: on all threads: the first evaluation on all threads also wakes the pools (InstEval,
#: measured: 0.052-0.076 s against 0.040-0.060 s for the later ones), while on busy
#: cores all threads cost twice as much or more.
ONE_THREAD_MARGIN = 0.9

_controller = None
_numpy_own: list[str] | None = None

#: The BLAS libraries' thread counts where the optimizer of a crossed fit began (the
#: libraries' own setting, or a user's ``threadpool_limits``): the optimizer's own
#: algebra runs on one thread (:func:`optimizer_threads`), and an evaluation on all
#: threads (:func:`dense_blas_threads`) takes these counts back.
_outside: ContextVar[dict[str, int] | None] = ContextVar("dlmm_blas_outside", default=None)


def _blas_controller():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def blas_threads() -> int:
    """The most threads any loaded BLAS library is set to use (inside
    :func:`optimizer_threads`, where the optimizer's own algebra runs on one, as set
    where it began)."""
    outside = _outside.get()
    if outside is not None:
        return max(outside.values(), default=1)
    info = _blas_controller().select(user_api="blas").info()
    return max((int(lib["num_threads"]) for lib in info), default=1)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Every loaded BLAS library on one thread for the block."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Every loaded BLAS library and numba's parallel loops (``prange``) on one thread
    for the block: a small evaluation's kernels, whose thread pools' wake-ups cost more
    than the work they share on busy cores."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with one_blas_thread():
            yield
    finally:
        numba.set_num_threads(before)


def numpy_own_blas() -> list[str]:
    """Paths of the BLAS libraries NumPy ships for itself (in its package directory or
    the wheel's ``numpy.libs`` beside it): not the one SciPy's LAPACK calls, unless both
    packages share one system library (which is then not listed)."""
    global _numpy_own
    if _numpy_own is not None:
        return _numpy_own
    import numpy

    package = Path(numpy.__file__).resolve().parent
    own = (package, package.parent / "numpy.libs")
    found = []
    for lib in _blas_controller().select(user_api="blas").lib_controllers:
        path = Path(lib.filepath).resolve()
        if any(folder == path.parent or folder in path.parents for folder in own):
            found.append(lib.filepath)
    _numpy_own = found  # loaded with NumPy itself: found once
    return found


@contextlib.contextmanager
def dense_blas_threads() -> Iterator[None]:
    """The libraries' thread setting for SciPy's LAPACK (the one in force where the
    optimizer began, inside :func:`optimizer_threads`), NumPy's own BLAS on one thread."""
    own = numpy_own_blas()
    outside = _outside.get() or {}
    controller = _blas_controller()
    with contextlib.ExitStack() as stack:
        if own:
            stack.enter_context(controller.select(filepath=own).limit(limits=1))
        for path, count in outside.items():
            if path not in own:
                stack.enter_context(controller.select(filepath=path).limit(limits=count))
        yield


def _blas_setting(setting: str) -> contextlib.AbstractContextManager:
    """The context of a setting: ``"one"`` thread (BLAS and numba's, :func:`one_thread`),
    or ``"all"`` (the libraries' own for the dense algebra, :func:`dense_blas_threads`)."""
    return one_thread() if setting == "one" else dense_blas_threads()


def choose(seconds: dict[str, float]) -> str:
    """``"one"`` if the evaluation on one thread took less than
    :data:`ONE_THREAD_MARGIN` of the one on all threads, else ``"all"``."""
    return "one" if seconds["one"] < ONE_THREAD_MARGIN * seconds["all"] else "all"


class DenseThreads:
    """The BLAS thread choice of one crossed system's evaluations, made in its first
    three (see the module docstring).

    Parameters
    ----------
    dense_size : int
        ``Q2``, the order of the dense part.

    Attributes
    ----------
    seconds : dict
        Measured evaluation seconds by setting (``"one"``, ``"all"``).
    choice : str or None
        ``"one"`` or ``"all"`` once measured; ``"one"`` throughout for a small dense
        part or when the libraries have one thread anyway.
    """

    def __init__(self, dense_size: int):
        self.dense_size = int(dense_size)
        self.seconds: dict[str, float] = {}
        self.choice: str | None = None
        self._evaluations = 0
        if self.dense_size < MEASURED_DENSE_MIN:
            self.choice = "one"

    def _setting(self) -> str:
        if self.choice is not None:
            return self.choice
        if blas_threads() <= 1:
            self.choice = "one"
            return "one"
        warmup = "all" if self.dense_size >= THREADED_WARMUP_MIN else "one"
        return {0: warmup, 1: "one"}.get(self._evaluations, "all")

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[None]:
        """The block runs one evaluation with this fit's setting (measuring it while the
        choice is open)."""
        setting = self._setting()
        measured = self.choice is None and self._evaluations > 0
        start = time.perf_counter()
        with _blas_setting(setting):
            yield
        if measured:
            self.seconds[setting] = time.perf_counter() - start
            if len(self.seconds) == 2:
                self.choice = choose(self.seconds)
        self._evaluations += 1

    @contextlib.contextmanager
    def chosen(self) -> Iterator[None]:
        """The block runs with the choice made (the libraries' setting if none yet):
        for work after the fit, which is not measured."""
        with _blas_setting(self.choice or "all"):
            yield


@contextlib.contextmanager
def optimizer_threads(engine_name: str) -> Iterator[None]:
    """The driver's BLAS threads while the optimizer runs: one for the nested and the
    crossed engines, whose optimizer steps on a few dozen parameters (scipy's L-BFGS-B
    spent 4 ms a call waking BLAS threads on two cores, more than the step; on busy
    cores 9 ms, a third of a kb07-shaped crossed fit), with each crossed evaluation on
    the threads :class:`DenseThreads` chose for it (all of them: the counts in force
    here, kept in :data:`_outside`); the grouped engine's as they are (its local
    backend sums the data in the optimizer's process)."""
    if engine_name not in ("nested", "crossed"):
        yield
        return
    libs = _blas_controller().select(user_api="blas").lib_controllers
    token = _outside.set({lib.filepath: int(lib.num_threads) for lib in libs})
    try:
        with one_blas_thread():
            yield
    finally:
        _outside.reset(token)
