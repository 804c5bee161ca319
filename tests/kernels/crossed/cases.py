"""Small random crossed designs shared by the tests (unbalanced; some levels seen once)."""

from __future__ import annotations

import numpy as np

from dlmm.kernels.crossed import theta_index, theta_sizes

from .helpers import Design, random_design

# name: (rows, levels, terms, p, unseen levels per factor)
CASES = {
    "two_intercepts": (80, [9, 5], [1, 1], 2, 0),
    "three_intercepts": (90, [4, 11, 6], [1, 1, 1], 3, 0),
    "slope_factor_first": (70, [7, 5], [1, 2], 2, 1),
    "slope_factor_dense": (90, [12, 4], [1, 2], 2, 0),
    "three_with_slopes": (110, [12, 5, 3], [2, 1, 2], 2, 1),
    "one_level_factor": (60, [6, 9, 1], [1, 2, 1], 2, 0),
    "single_factor": (40, [5], [2], 2, 0),
    "no_fixed_effects": (50, [8, 5], [1, 1], 0, 0),
}


def make_case(name: str, seed: int = 0) -> Design:
    n, levels, terms, p, unseen = CASES[name]
    rng = np.random.default_rng([seed, len(name), sum(map(ord, name))])
    return random_design(rng, n, levels, terms, p=p, once=2, unseen=unseen)


def thetas(design: Design, seed: int = 0) -> dict:
    """A generic theta, one with an intercept's entry 0, one with a singular ``T_k``."""
    rng = np.random.default_rng(seed + 7)
    size = sum(theta_sizes(design.n_terms))
    generic = rng.uniform(0.3, 1.4, size=size)
    index = theta_index(design.n_terms)
    off_diag = [j for j, (_, a, b) in enumerate(index) if a != b]
    generic[off_diag] = rng.uniform(-0.8, 0.8, size=len(off_diag))
    zero_first = generic.copy()
    zero_first[0] = 0.0
    singular = generic.copy()
    last_diag = [j for j, (k, a, b) in enumerate(index) if a == b and a > 0]
    singular[last_diag[-1] if last_diag else -1] = 0.0
    return {"generic": generic, "zero_entry": zero_first, "singular": singular}
