"""Small random nested designs shared by the tests: 1 to 3 levels, q_l in {0, 1, 2, 3}."""

from __future__ import annotations

import numpy as np

from .helpers import Design, directions, random_design, random_theta, to_lambdas

# name: (outer groups, most children per level below the first, q per level, p, blocks)
CASES = {
    "one_level_q2": (6, [], (2,), 2, {}),
    "one_level_q3_blocks": (5, [], (3,), 2, {0: [("unstructured", 2), ("scalar", 1)]}),
    "two_levels_q11": (5, [4], (1, 1), 2, {}),
    "two_levels_q21": (4, [3], (2, 1), 3, {}),
    "two_levels_q02": (4, [3], (0, 2), 2, {}),
    "two_levels_q30_diagonal": (4, [3], (3, 0), 2, {0: [("diagonal", 3)]}),
    "three_levels_q123": (3, [3, 3], (1, 2, 3), 2, {2: [("unstructured", 2), ("scalar", 1)]}),
    "three_levels_q101": (3, [2, 4], (1, 0, 1), 2, {}),
    "three_levels_q222_scalar": (3, [2, 3], (2, 2, 2), 2, {1: [("scalar", 2)]}),
    "no_fixed_effects": (4, [3], (1, 2), 0, {}),
}


class Case:
    """A design, its parameter directions and two parameter values."""

    def __init__(self, name: str, seed: int = 0):
        n_outer, children, q, p, blocks = CASES[name]
        rng = np.random.default_rng([seed, sum(map(ord, name))])
        self.name = name
        self.design: Design = random_design(rng, n_outer, children, q, p)
        self.q = q
        self.dirs = directions(q, blocks)
        self.thetas = {"generic": random_theta(rng, self.dirs),
                       "singular": random_theta(rng, self.dirs, singular=True)}

    def lambdas(self, theta: np.ndarray) -> list:
        return to_lambdas(self.q, self.dirs, theta)
