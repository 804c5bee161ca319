"""Random unbalanced nested designs as rows, and their per-node sums by brute force.

Shared by the one-pass tests (``tests/kernels/nested/test_sums.py``) and the engine's
(``tests/structure/test_nested.py``). A level's code tells apart the children of one
parent only (it restarts at 0 under each parent, as school numbers that repeat across
authorities), so a node is the tuple of its codes from the outermost level down.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def random_tree_rows(rng: np.random.Generator, q: tuple[int, ...], r: int = 3,
                     n_outer: int = 5, max_children: int = 4, max_rows: int = 4,
                     integer: bool = False) -> tuple[list[np.ndarray], list[np.ndarray],
                                                     np.ndarray]:
    """Rows of a random tree with ``len(q)`` levels, shuffled.

    Returns ``codes`` (per level, int64 (n,)), ``z`` (per level, (n, q_l)) and ``xy``
    (n, r). With ``integer`` the values are small integers, so that every sum is exact
    in floating point whatever its order.
    """
    n_levels = len(q)
    paths = [[k] for k in rng.permutation(n_outer * 3)[:n_outer]]  # outer codes, sparse
    for _ in range(1, n_levels):
        deeper = []
        for path in paths:
            for c in rng.permutation(max_children + 2)[:int(rng.integers(1, max_children + 1))]:
                deeper.append(path + [int(c)])
        paths = deeper
    per_leaf = rng.integers(1, max_rows + 1, size=len(paths))
    leaf_rows = np.repeat(np.asarray(paths, dtype=np.int64), per_leaf, axis=0)
    n = leaf_rows.shape[0]
    order = rng.permutation(n)
    leaf_rows = leaf_rows[order]
    codes = [np.ascontiguousarray(leaf_rows[:, l]) for l in range(n_levels)]

    def draw(shape):
        if integer:
            return rng.integers(-3, 4, size=shape).astype(float)
        return rng.standard_normal(shape)

    z = [draw((n, ql)) for ql in q]
    xy = draw((n, r))
    return codes, z, xy


def dense_node_sums(codes: list[np.ndarray], z: list[np.ndarray], xy: np.ndarray) -> list[dict]:
    """Per level, ``{node codes: (n_rows, zz, zxy, [za to each level above])}``, by a loop
    over the nodes (brute force)."""
    n_levels = len(codes)
    table = np.stack(codes, axis=1)
    out = []
    for l in range(n_levels):
        nodes = {}
        for key in sorted({tuple(int(v) for v in row[:l + 1]) for row in table}):
            rows = np.all(table[:, :l + 1] == np.asarray(key), axis=1)
            zl = z[l][rows]
            nodes[key] = (
                float(rows.sum()),
                zl.T @ zl,
                zl.T @ xy[rows],
                [zl.T @ z[m][rows] for m in range(l)],
            )
        out.append(nodes)
    return out


class FrameDesign:
    """The nested engine's design protocol (:class:`dlmm.structure.nested.NestedDesign`)
    over a plain frame: codes ``c0, c1, …``, random-effect columns ``z{l}_{a}`` and
    ``[X y]`` columns ``xy{j}``. It lives here, in a module that imports little, because
    Dask workers import it to run the engine's chunk function."""

    def __init__(self, q, r, own_codes=None, factor_names=None):
        self.q, self.r = tuple(q), r
        self.own_codes = own_codes
        self.factor_names = factor_names

    def level_codes(self, frame):
        return [frame[f"c{l}"].to_numpy(np.int64) for l in range(len(self.q))]

    def level_designs(self, frame):
        return [frame[[f"z{l}_{a}" for a in range(ql)]].to_numpy(float)
                for l, ql in enumerate(self.q)]

    def xy(self, frame):
        return frame[[f"xy{j}" for j in range(self.r)]].to_numpy(float)


def tree_frame(codes, z, xy) -> pd.DataFrame:
    """The rows of :func:`random_tree_rows` as the frame :class:`FrameDesign` reads."""
    cols = {f"c{l}": c for l, c in enumerate(codes)}
    for l, zl in enumerate(z):
        cols.update({f"z{l}_{a}": zl[:, a] for a in range(zl.shape[1])})
    cols.update({f"xy{j}": xy[:, j] for j in range(xy.shape[1])})
    return pd.DataFrame(cols)
