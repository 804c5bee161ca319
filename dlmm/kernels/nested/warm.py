"""Load the nested kernels' compiled loops before they are timed or first needed.

numba compiles each loop once per machine (``cache=True``), but every new process
still loads it, once per argument types, on its first call: about a second on two
busy cores. :func:`warm_up` runs the kernels on a tiny two-level design, which uses
every loop with the argument types real designs give (numba specializes on types,
not sizes), so that a benchmark or a worker pays that load apart from the fit.
"""

from __future__ import annotations

import time

import numpy as np


def warm_up() -> float:
    """Run the value, gradient and effects kernels once on a tiny design; the seconds
    it took."""
    from .effects import nested_effects
    from .pieces import nested_pieces
    from .sums import build_stats, combine, leaf_sums

    start = time.perf_counter()
    outer = np.array([0, 0, 0, 1, 1, 1], dtype=np.int64)
    inner = np.array([0, 0, 1, 0, 1, 1], dtype=np.int64)
    z = np.ones((6, 1))
    xy = np.column_stack([np.ones(6), np.arange(6.0), np.arange(6.0) ** 2])
    stats = build_stats(combine([leaf_sums([outer, inner], [z, z], xy)]))
    lambdas = [np.ones((1, 1)), np.ones((1, 1))]
    nested_pieces(stats, lambdas, [(0, np.ones((1, 1))), (1, np.ones((1, 1)))])
    nested_effects(stats, lambdas, np.array([-1.0, 0.0, 1.0]))
    return time.perf_counter() - start
