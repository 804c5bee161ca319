"""The crossed engine's BLAS threads: one for a small dense part, chosen by measurement above."""

import numpy as np  # noqa: F401  (loads NumPy's BLAS)
import pytest
import scipy.linalg  # noqa: F401  (and SciPy's)
from threadpoolctl import threadpool_info, threadpool_limits

from dlmm.structure import threads
from dlmm.structure.threads import MEASURED_DENSE_MIN, THREADED_WARMUP_MIN, DenseThreads


class _Clock:
    """A clock the evaluations advance by the seconds they 'take' (no sleep, so the
    timings hold on a busy machine)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(threads, "time", fake)
    return fake


def _blas_threads():
    return sorted(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")


def _run(choice: DenseThreads, seconds_at: dict) -> list:
    """One evaluation under ``choice``; it 'takes' ``seconds_at[threads seen]``."""
    with choice.evaluation():
        seen = max(_blas_threads())
        threads.time.now += seconds_at.get(seen, 0.0)
    return seen


@pytest.fixture
def two_threads():
    with threadpool_limits(limits=2, user_api="blas"):
        yield _blas_threads()


def test_small_dense_part_one_thread_then_restored(two_threads):
    choice = DenseThreads(MEASURED_DENSE_MIN - 1)
    assert [_run(choice, {}) for _ in range(4)] == [1, 1, 1, 1]
    assert _blas_threads() == two_threads
    with choice.chosen():
        assert max(_blas_threads()) == 1
    assert choice.choice == "one" and choice.seconds == {}


def test_large_dense_part_keeps_the_faster_of_one_and_all_threads(two_threads):
    """First evaluation with the libraries' setting (untimed warm-up), then one thread,
    then all again; the rest of the fit keeps the faster: here all threads."""
    choice = DenseThreads(THREADED_WARMUP_MIN)
    slow_on_one = {1: 0.05, 2: 0.0}
    seen = [_run(choice, slow_on_one) for _ in range(5)]
    assert seen == [2, 1, 2, 2, 2]
    assert choice.choice == "all"
    assert choice.seconds["one"] > choice.seconds["all"]
    assert _blas_threads() == two_threads


@pytest.mark.parametrize("faster", ["all", "one"])
def test_mid_sized_dense_part_warms_up_on_one_thread(two_threads, faster):
    """Below THREADED_WARMUP_MIN (InstEval's 1,128) the untimed warm-up runs on one
    thread, so a busy machine pays for at most one evaluation on all threads."""
    choice = DenseThreads(MEASURED_DENSE_MIN)
    slow = {1: 0.05, 2: 0.0} if faster == "all" else {1: 0.0, 2: 0.05}
    seen = [_run(choice, slow) for _ in range(5)]
    assert seen == [1, 1, 2] + ([2, 2] if faster == "all" else [1, 1])
    assert choice.choice == faster
    assert _blas_threads() == two_threads


def test_large_dense_part_on_busy_cores_settles_on_one_thread(two_threads):
    choice = DenseThreads(THREADED_WARMUP_MIN)
    slow_on_all = {1: 0.0, 2: 0.05}
    seen = [_run(choice, slow_on_all) for _ in range(5)]
    assert seen == [2, 1, 2, 1, 1]
    assert choice.choice == "one"
    with choice.chosen():
        assert max(_blas_threads()) == 1
    assert _blas_threads() == two_threads


def test_libraries_on_one_thread_need_no_trial():
    with threadpool_limits(limits=1, user_api="blas"):
        choice = DenseThreads(10 * THREADED_WARMUP_MIN)
        assert [_run(choice, {}) for _ in range(3)] == [1, 1, 1]
        assert choice.choice == "one" and choice.seconds == {}


def test_a_failed_evaluation_is_not_measured(two_threads):
    choice = DenseThreads(THREADED_WARMUP_MIN)
    _run(choice, {})
    with pytest.raises(np.linalg.LinAlgError):
        with choice.evaluation():
            raise np.linalg.LinAlgError("not positive definite")
    assert choice.seconds == {}
    assert _blas_threads() == two_threads


def test_all_threads_keeps_numpys_own_blas_on_one_thread(two_threads):
    """The libraries' setting gives SciPy's LAPACK its threads and NumPy's own BLAS
    (a separate library in the wheels) one: its spinning threads would hold the core
    LAPACK waits for."""
    from dlmm.structure.threads import dense_blas_threads, numpy_own_blas

    own = numpy_own_blas()
    with dense_blas_threads():
        threads = {p["filepath"]: p["num_threads"] for p in threadpool_info()
                   if p["user_api"] == "blas"}
    assert all(threads[path] == 1 for path in own)
    assert all(n == 2 for path, n in threads.items() if path not in own)
    assert _blas_threads() == two_threads


def test_one_thread_kept_only_when_clearly_faster():
    """Within ONE_THREAD_MARGIN of each other the libraries' setting is kept (its first
    evaluation also wakes the pools); one thread must be clearly faster."""
    from dlmm.structure.threads import ONE_THREAD_MARGIN, choose

    assert choose({"one": 0.050, "all": 0.050}) == "all"
    assert choose({"one": 0.050, "all": 0.050 / ONE_THREAD_MARGIN * 0.99}) == "all"
    assert choose({"one": 0.050, "all": 0.050 / ONE_THREAD_MARGIN * 1.01}) == "one"
    assert choose({"one": 0.050, "all": 0.100}) == "one"
    assert choose({"one": 0.100, "all": 0.050}) == "all"


def _numba_threads() -> int:
    import numba

    return numba.get_num_threads()


def test_one_thread_holds_numbas_parallel_loops_too(two_threads):
    """A small dense part's evaluation runs numba's ``prange`` loops on one thread, as
    its BLAS: their pool's wake-ups cost more than the work on busy cores."""
    import numba

    numba.set_num_threads(2)
    seen = []
    choice = DenseThreads(MEASURED_DENSE_MIN - 1)
    with choice.evaluation():
        seen.append((_numba_threads(), max(_blas_threads())))
    assert seen == [(1, 1)]
    assert _numba_threads() == 2 and _blas_threads() == two_threads


def test_crossed_optimizer_on_one_thread_its_evaluations_on_their_choice(two_threads):
    """Inside the crossed engine's optimizer its own algebra (L-BFGS-B's) runs on one
    BLAS thread; an evaluation that chose all threads takes back the counts in force
    where the optimizer began (SciPy's LAPACK two here, NumPy's own BLAS one), a small
    one runs on one; on leaving, the setting before."""
    from dlmm.structure.threads import numpy_own_blas, optimizer_threads

    own = numpy_own_blas()
    large, small = DenseThreads(THREADED_WARMUP_MIN), DenseThreads(MEASURED_DENSE_MIN - 1)
    with optimizer_threads("crossed"):
        assert max(_blas_threads()) == 1
        with large.evaluation():  # the untimed warm-up: the libraries' setting
            inside = {p["filepath"]: p["num_threads"] for p in threadpool_info()
                      if p["user_api"] == "blas"}
        with small.evaluation():
            small_seen = max(_blas_threads())
        assert max(_blas_threads()) == 1
    assert all(inside[path] == 1 for path in own)
    assert [n for path, n in inside.items() if path not in own] == [2] * (len(inside) - len(own))
    assert small_seen == 1
    assert _blas_threads() == two_threads
    with optimizer_threads("grouped"):  # the grouped engine sums data in its process
        assert _blas_threads() == two_threads
