"""Arrays advised to small pages (:mod:`dlmm.kernels.crossed.small_pages`) are plain
NumPy arrays: shape, type, writes and reads, on Linux with the advice given."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dlmm.kernels.crossed import small_pages


@pytest.fixture(autouse=True)
def pair_path():
    """Once, not per pair path (the conftest's): nothing here depends on it."""
    return "stored"


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * 4096 + 5])
def test_small_pages_array_is_an_empty_array(size, monkeypatch):
    monkeypatch.setattr(small_pages, "SMALL_PAGES_MIN_BYTES", 0)
    out = small_pages.empty_small_pages(size, np.int32)
    assert out.shape == (size,) and out.dtype == np.int32 and out.flags.writeable
    out[:] = np.arange(size, dtype=np.int32)
    np.testing.assert_array_equal(out, np.arange(size))
    if sys.platform.startswith("linux") and size:
        madvise = small_pages._libc_madvise()
        assert madvise is not None
        # the advice on a page of the array itself is accepted (0), as the call made
        big = small_pages.empty_small_pages(4 * 4096, np.uint8)
        start = -(-big.ctypes.data // 4096) * 4096
        assert madvise(start, 4096, small_pages._MADV_NOHUGEPAGE) == 0
