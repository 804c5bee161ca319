"""The crossed engine's driver memory (issue 24, item 1): the dense part of ``Q2``
effects is held once, ``8 Q2^2`` bytes, and the estimate that refuses a design before
any work (:func:`dlmm.structure.crossed.driver_bytes`) counts what the driver holds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from dlmm.kernels.crossed import crossed_sums, row_entry_count, schur_pair_count
from dlmm.structure.crossed import driver_bytes


def _ratings(n_rows, n_users, n_items, seed=5):
    """Heavy-tailed users (lognormal activity, as ``movielens_like(users="lognormal")``)
    over Zipf-like items: the sums of ``y ~ x + (1 | user) + (1 | item)``."""
    from dlmm.bench.crossed import movielens_like

    frame = movielens_like(n_rows, n_users, n_items, seed, users="lognormal")
    x = np.column_stack([np.ones(n_rows), frame["x"].to_numpy()])
    return crossed_sums([frame["user"].to_numpy(), frame["item"].to_numpy()], [None, None],
                        x, frame["y"].to_numpy(), [n_users, n_items])


#: The measurement, in a process of its own: tracemalloc counts every thread's
#: allocations, and the suite's background threads (a Dask client's, a warm-up's) would
#: be counted with the driver's.
MEASURE = textwrap.dedent('''
    import json, sys, tracemalloc
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_crossed_memory import _ratings
    from dlmm.kernels.crossed import (build_system, conditional_modes,
                                      conditional_variances, crossed_pieces, factorize)

    sums = _ratings(4_000, 1_000, 600)
    theta = np.array([0.8, 1.1])
    warm = build_system(sums, streamed=True)
    crossed_pieces(warm, theta, gradient=True)  # compiled loops: not counted
    del warm
    tracemalloc.start()
    system = build_system(sums, streamed=True)
    dense = [int(system.dense_size), int(system.stream.dense_levels.size)]
    crossed_pieces(system, theta, gradient=True)
    fit_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    factor = factorize(system, theta)
    conditional_modes(system, factor, np.zeros(2))
    conditional_variances(system, factor, 1.0, consume=True)
    effects_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"dense": dense, "fit": fit_peak, "effects": effects_peak}))
''')


def test_the_driver_holds_the_dense_part_once():
    """Heavy-tailed ratings (600 items: the dense part), the Schur pairs streamed: from
    the reduced sums to one evaluation with its gradient, then the random effects, the
    driver's peak is at most 1.3 dense parts of 8 Q2^2 bytes (G22 kept by its
    nonzeros, the Schur complement made, factored and inverted in one array; with
    G22 dense beside its working copy it was over 2), within the refusal's estimate."""
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    size, streamed_dense = out["dense"]
    assert size == 600 and streamed_dense > 0
    fit_peak, effects_peak = out["fit"], out["effects"]
    unit = 8.0 * 600**2
    assert fit_peak <= 1.3 * unit, fit_peak / unit
    assert effects_peak <= 1.3 * unit, effects_peak / unit
    # the refusal's estimate covers it: the dense part once and ENTRY_BYTES a level pair
    sums = _ratings(4_000, 1_000, 600)
    need = driver_bytes(600, schur_pair_count(sums), row_entry_count(sums))
    assert fit_peak <= need and effects_peak <= need, (fit_peak, effects_peak, need)
