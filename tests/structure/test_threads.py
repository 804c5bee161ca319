"""The crossed engine's dense algebra runs on one BLAS thread below the threshold."""

import numpy as np  # noqa: F401  (loads NumPy's BLAS)
import scipy.linalg  # noqa: F401  (and SciPy's)
from threadpoolctl import threadpool_info

import dlmm.structure.threads as threads
from dlmm.structure.threads import THREADED_DENSE_MIN, dense_threads


def _blas_threads():
    return sorted(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")


def test_small_dense_part_one_thread_then_restored():
    before = _blas_threads()
    assert before
    with dense_threads(THREADED_DENSE_MIN - 1):
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


def test_large_dense_part_keeps_the_setting_when_cores_are_free(monkeypatch):
    before = _blas_threads()
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    with dense_threads(THREADED_DENSE_MIN):
        assert _blas_threads() == before


def test_large_dense_part_one_thread_when_the_cores_are_busy(monkeypatch):
    before = _blas_threads()
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    with dense_threads(THREADED_DENSE_MIN):
        assert _blas_threads() == [1] * len(before)
