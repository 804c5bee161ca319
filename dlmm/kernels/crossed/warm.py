"""Load the sparse Schur factorization's compiled loops before they are timed.

numba loads each cached loop once per process on its first call (a few tenths
of a second on two busy cores). :func:`warm_up` runs the sparse path once on a
tiny students x teachers x schools design, with the argument types real
designs give, so that a benchmark pays that load apart from the fit (as
:func:`dlmm.kernels.nested.warm.warm_up` does for the nested kernels).
"""

from __future__ import annotations

import time

import numpy as np


def warm_up() -> float:
    """Factor, solve, invert on the pattern and differentiate once, sparse; the seconds
    it took."""
    from .evaluate import crossed_pieces
    from .factor import factorize
    from .modes import conditional_variances
    from .sums import crossed_sums
    from .system import build_system

    start = time.perf_counter()
    students = np.array([0, 0, 1, 1, 2, 3, 3, 4], dtype=np.int64)
    teachers = np.array([0, 2, 0, 3, 1, 1, 3, 2], dtype=np.int64)
    schools = teachers // 2
    x = np.column_stack([np.ones(8), np.arange(8.0)])
    y = np.sin(np.arange(8.0))
    sums = crossed_sums([students, teachers, schools], [None] * 3, x, y, [5, 4, 2])
    system = build_system(sums, streamed=False, sparse=True)
    theta = np.array([0.7, 0.5, 0.3])
    crossed_pieces(system, theta, gradient=True)
    conditional_variances(system, factorize(system, theta), 1.0)
    return time.perf_counter() - start
