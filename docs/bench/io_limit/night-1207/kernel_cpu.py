"""Thread CPU of the step's compiled loop for one worker's share at 10^8 rows.

``small_step_loop`` of the tree on PYTHONPATH over 2.5·10^6 groups of q = 2 random
effects and r = 6 columns of [X y], with the Hessian: the best and the median of
REPS runs after one to load it. Usage (other jobs stopped: ``paused.sh``):

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=<tree> python kernel_cpu.py
"""
import os
import time

import numpy as np

from dlmm.kernels.step_loop import small_step_loop

n, k, r, m = 2_500_000, 2, 6, 3
rng = np.random.default_rng(0)
z = rng.standard_normal((n, 20, k))
z[:, :, 0] = 1.0
g = np.einsum("nia,nib->nab", z, z)
h = rng.standard_normal((n, k, r))
chol = np.array([[0.8, 0.0], [0.3, 0.5]])


def once() -> float:
    outs = (np.zeros((r, r)), np.zeros((k * r, k * r)), np.zeros((k * r, m * k * r)),
            np.zeros((k, k)), np.zeros((m, m)))
    start = time.thread_time()
    small_step_loop(g, h, chol, True, *outs)
    return time.thread_time() - start


once()
runs = sorted(once() for _ in range(int(os.environ.get("REPS", 7))))
print(f"{os.environ.get('PYTHONPATH', '')}: best {runs[0] * 1000:.0f} ms, "
      f"median {runs[len(runs) // 2] * 1000:.0f} ms")
