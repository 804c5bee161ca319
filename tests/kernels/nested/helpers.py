"""Small random nested designs and a dense brute force that shares no code with the kernels.

A design is rows with one node per level (node ids numbered so that a node's children
are contiguous), per-level random-effect columns ``z_l`` (an intercept first, then
normal covariates), ``X`` with an intercept, and ``y``. :func:`dense_stats` makes the
kernels' input by plain dense sums over one-hot node indicators; :func:`brute_force`
builds ``Z``, ``Lambda`` and the ``n x n`` matrix ``V = I + Z Lambda Lambda'Z'``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from dlmm.kernels.nested import NestedStats


@dataclass
class Design:
    node: list  # node[l] (n,) int: each row's node at level l
    parent: list  # parent[l] (n_l,) int
    z: list  # z[l] (n, q_l)
    x: np.ndarray
    y: np.ndarray

    @property
    def q(self) -> tuple:
        return tuple(z.shape[1] for z in self.z)

    @property
    def n_nodes(self) -> list:
        return [p.size for p in self.parent]

    def take_outer(self, outer: np.ndarray) -> Design:
        """The rows of some outer groups, nodes renumbered in order."""
        rows = np.isin(self.node[0], outer)
        node, parent = [], []
        for lv in range(len(self.node)):
            keep, codes = np.unique(self.node[lv][rows], return_inverse=True)
            node.append(codes)
            if lv == 0:
                parent.append(np.zeros(keep.size, dtype=np.int64))
            else:
                old_parent = self.parent[lv][keep]
                parent.append(np.searchsorted(np.unique(self.node[lv - 1][rows]), old_parent))
        return Design(node, parent, [z[rows] for z in self.z], self.x[rows], self.y[rows])


def random_design(rng: np.random.Generator, n_outer: int, children: list, q: tuple,
                  p: int = 2) -> Design:
    """``children[l - 1]``: the largest number of children of a level-``(l-1)`` node (each
    gets 1 to that many, unbalanced); leaves get 1 to 5 rows (one row often). The first
    outer group is one row: a one-row node at every level."""
    parent = [np.zeros(n_outer, dtype=np.int64)]
    for most in children:
        counts = rng.integers(1, most + 1, size=parent[-1].size)
        counts[0] = 1
        parent.append(np.repeat(np.arange(parent[-1].size), counts))
    leaf_rows = rng.choice([1, 1, 2, 3, 5], size=parent[-1].size)
    leaf_rows[0] = 1
    leaf = np.repeat(np.arange(parent[-1].size), leaf_rows)
    n = leaf.size
    node = [leaf]
    for lv in range(len(parent) - 1, 0, -1):
        node.insert(0, parent[lv][node[0]])
    z = [np.column_stack([np.ones(n), rng.normal(size=(n, ql - 1))]) if ql else np.zeros((n, 0))
         for ql in q]
    x = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))]) if p else np.zeros((n, 0))
    y = x.sum(axis=1) + rng.normal(size=n)
    for lv, zl in enumerate(z):
        y += (rng.normal(size=(parent[lv].size, zl.shape[1]))[node[lv]] * zl).sum(axis=1)
    return Design(node, parent, z, x, y)


def _onehot(codes: np.ndarray, n_levels: int) -> np.ndarray:
    e = np.zeros((codes.size, n_levels))
    e[np.arange(codes.size), codes] = 1.0
    return e


def dense_stats(design: Design) -> NestedStats:
    """``NestedStats`` by dense sums: ``sum_i e_ik z_il z_im'`` with one-hot ``e``."""
    xy = np.column_stack([design.x, design.y])
    onehot = [_onehot(c, k) for c, k in zip(design.node, design.n_nodes)]
    zz, zxy, za = [], [], []
    for lv, (e, zl) in enumerate(zip(onehot, design.z)):
        zz.append(np.einsum("ik,ia,ib->kab", e, zl, zl))
        zxy.append(np.einsum("ik,ia,ib->kab", e, zl, xy))
        za.append([np.einsum("ik,ia,ib->kab", e, zl, design.z[m]) for m in range(lv)])
    parent = [np.zeros(0, dtype=np.int64)] + [p.astype(np.int64) for p in design.parent[1:]]
    return NestedStats(design.q, parent, zz, zxy, za, [e.sum(axis=0) for e in onehot])


def dense_z(design: Design) -> np.ndarray:
    """``Z``: per level, per node, the level's columns on the node's rows."""
    blocks = []
    for codes, k, zl in zip(design.node, design.n_nodes, design.z):
        e = _onehot(codes, k)
        blocks.append((e[:, :, None] * zl[:, None, :]).reshape(codes.size, -1))
    return np.hstack(blocks)


def dense_lambda(design: Design, lambdas: list) -> np.ndarray:
    blocks = [np.kron(np.eye(k), lam) for k, lam in zip(design.n_nodes, lambdas)]
    size = sum(b.shape[0] for b in blocks)
    out = np.zeros((size, size))
    start = 0
    for b in blocks:
        out[start:start + b.shape[0], start:start + b.shape[0]] = b
        start += b.shape[0]
    return out


@dataclass
class Dense:
    v: np.ndarray
    logdet: float
    s: np.ndarray  # [X y]'V^{-1}[X y]
    z: np.ndarray
    lam: np.ndarray


def dense(design: Design, lambdas: list) -> Dense:
    z = dense_z(design)
    lam = dense_lambda(design, lambdas)
    zl = z @ lam
    v = np.eye(design.y.size) + zl @ zl.T
    xy = np.column_stack([design.x, design.y])
    return Dense(v, np.linalg.slogdet(v)[1], xy.T @ np.linalg.solve(v, xy), z, lam)


def dense_llf(design: Design, lambdas: list, reml: bool) -> tuple[float, np.ndarray]:
    """The (RE)ML log-likelihood with beta (GLS) and sigma^2 profiled, and beta.

    ML: the Gaussian log density of ``y`` (mean ``X beta``, covariance ``sigma^2 V``,
    ``sigma^2 = qf / n``). REML (Harville): that density at ``sigma^2 = qf / (n - p)``
    plus ``p/2 log(2 pi) - 1/2 log|X'V^{-1}X / sigma^2|``.
    """
    x, y = design.x, design.y
    n, p = x.shape
    d = dense(design, lambdas)
    vinv_x = np.linalg.solve(d.v, x)
    xvx = x.T @ vinv_x
    beta = np.linalg.solve(xvx, vinv_x.T @ y) if p else np.zeros(0)
    resid = y - x @ beta
    qf = resid @ np.linalg.solve(d.v, resid)
    sigma2 = qf / (n - p if reml else n)
    llf = sps.multivariate_normal(x @ beta, sigma2 * d.v).logpdf(y)
    if reml:
        llf += 0.5 * p * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(xvx / sigma2)[1]
    return float(llf), beta


def dense_effects(design: Design, lambdas: list, beta: np.ndarray) -> list:
    """Per level: BLUPs ``B Z'V^{-1}(y - X beta)`` (n_l, q_l) and the diagonal blocks of
    ``B - B Z'V^{-1}Z B`` (n_l, q_l, q_l), ``B = Lambda Lambda'``."""
    d = dense(design, lambdas)
    b = d.lam @ d.lam.T
    vinv_z = np.linalg.solve(d.v, d.z)
    modes = b @ vinv_z.T @ (design.y - design.x @ beta)
    cov = b - b @ d.z.T @ vinv_z @ b
    out, start = [], 0
    for k, ql in zip(design.n_nodes, design.q):
        sl = slice(start, start + k * ql)
        block = cov[sl, sl].reshape(k, ql, k, ql)
        out.append((modes[sl].reshape(k, ql), block[np.arange(k), :, np.arange(k), :]))
        start += k * ql
    return out


# --- parameters: Lambda_l = sum_j theta_j D_j over the directions of level l


def directions(q: tuple, structure: dict) -> list:
    """``(level, D_j)`` per parameter. ``structure[l]``: a list of blocks of level ``l``'s
    columns, each ``("unstructured" | "diagonal" | "scalar", width)``; default one
    unstructured block."""
    out = []
    for lv, ql in enumerate(q):
        start = 0
        for kind, width in structure.get(lv, [("unstructured", ql)] if ql else []):
            cols = range(start, start + width)
            if kind == "scalar":
                d = np.zeros((ql, ql))
                d[cols, cols] = 1.0
                out.append((lv, d))
            else:
                for b in cols:  # lme4's order: column-major lower triangle
                    for a in cols:
                        if a == b or (kind == "unstructured" and a > b):
                            d = np.zeros((ql, ql))
                            d[a, b] = 1.0
                            out.append((lv, d))
            start += width
        assert start == ql
    return out


def to_lambdas(q: tuple, dirs: list, theta: np.ndarray) -> list:
    lambdas = [np.zeros((ql, ql)) for ql in q]
    for t, (lv, d) in zip(theta, dirs):
        lambdas[lv] = lambdas[lv] + t * d
    return lambdas


def random_theta(rng: np.random.Generator, dirs: list, singular: bool = False) -> np.ndarray:
    """Diagonal entries in (0.3, 1.4), others in (-0.8, 0.8). ``singular``: the first
    parameter (a diagonal entry) and the last diagonal one of every level that has
    several set to 0 (``Lambda`` singular, ``C`` still positive definite)."""
    diag = np.array([np.count_nonzero(np.diag(d)) > 0 for _, d in dirs])
    theta = np.where(diag, rng.uniform(0.3, 1.4, len(dirs)), rng.uniform(-0.8, 0.8, len(dirs)))
    if singular:
        levels = np.array([lv for lv, _ in dirs])
        for lv in set(levels.tolist()):
            on_diag = np.flatnonzero((levels == lv) & diag)
            if on_diag.size > 1:
                theta[on_diag[-1]] = 0.0
        theta[0] = 0.0
    return theta


def derivative(fun, theta: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Five-point central differences (``O(h^4)``) of ``fun`` along each coordinate."""
    out = []
    for e in np.eye(theta.size):
        f = [np.asarray(fun(theta + m * h * e)) for m in (-2, -1, 1, 2)]
        out.append((f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h))
    return np.array(out)
