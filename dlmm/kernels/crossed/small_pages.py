"""Large arrays written once and then streamed, backed by small (4 KB) pages.

NumPy asks Linux for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every
large array. A huge page the process touches for the first time is cheap on a
machine whose free memory is its own, but on a virtual machine whose host takes
back free memory (free page reporting hands back free blocks of huge-page size)
every fresh 2 MB page costs the host's faults: measured on the 2-core build
machine, 2.3-3 ms per MB written the first time, against 0.55 ms per MB in small
pages (190 MB: 0.4-0.6 s against 0.11 s). Huge pages pay off for arrays read at
random (the dense Schur part that LAPACK factors: its float32 factor and inverse
took three times as long in small pages); the Schur operator's pairs are written
once and then read in order, so they are better off in small pages
(:func:`empty_small_pages`: the same NumPy array, its pages advised back to small
before anything touches them). Elsewhere than on Linux, a plain ``np.empty``.
"""

from __future__ import annotations

import sys

import numpy as np

#: Arrays of at least this many bytes are advised to small pages (a smaller one fits
#: in a few huge pages: nothing to gain).
SMALL_PAGES_MIN_BYTES = 32 * 2**20

_MADV_NOHUGEPAGE = 15  # Linux's value (asm-generic/mman-common.h)
_PAGE = 4096
_madvise = None


def _libc_madvise():
    """libc's ``madvise`` (None where there is none to call)."""
    global _madvise
    if _madvise is None:
        _madvise = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                func = ctypes.CDLL(None, use_errno=True).madvise
                func.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                func.restype = ctypes.c_int
                _madvise = func
            except (OSError, AttributeError):
                pass
    return _madvise or None


def empty_small_pages(size: int, dtype) -> np.ndarray:
    """``np.empty(size, dtype)``, its pages (when large, on Linux) advised to be small
    ones before the first write; an advice that fails leaves the array as it is."""
    out = np.empty(size, dtype=dtype)
    madvise = _libc_madvise() if out.nbytes >= SMALL_PAGES_MIN_BYTES else None
    if madvise is not None:
        address = out.ctypes.data
        start = -(-address // _PAGE) * _PAGE
        end = (address + out.nbytes) // _PAGE * _PAGE
        if end > start:
            madvise(start, end - start, _MADV_NOHUGEPAGE)
    return out
