"""Test helpers: random crossed designs, a dense brute-force model, the profiled llf.

The brute force builds ``Z``, ``Lambda`` and the ``n x n`` matrix
``V = I + Z Lambda Lambda' Z'`` explicitly; it shares no code with the kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlmm.kernels.crossed import counts, unpack_theta


@dataclass
class Design:
    codes: list
    terms: list
    x: np.ndarray
    y: np.ndarray
    n_levels: list

    @property
    def n_terms(self) -> list:
        return [1 if t is None else t.shape[1] for t in self.terms]

    def take(self, rows: np.ndarray) -> Design:
        return Design(
            [c[rows] for c in self.codes],
            [None if t is None else t[rows] for t in self.terms],
            self.x[rows],
            self.y[rows],
            self.n_levels,
        )


def random_design(
    rng: np.random.Generator,
    n: int,
    n_levels: list,
    n_terms: list,
    p: int = 2,
    once: int = 2,
    unseen: int = 0,
) -> Design:
    """Unbalanced crossed rows: every level seen, the last ``once`` levels exactly once.

    Level frequencies are Dirichlet(0.7); ``unseen`` extra levels (never in the data)
    are appended to each factor with more than one level. A factor with two terms gets
    an intercept and a slope on a per-row covariate.
    """
    codes, terms, levels = [], [], []
    for lv, t in zip(n_levels, n_terms):
        k_once = min(once, lv - 1) if lv > 1 else 0
        frequent = lv - k_once
        prob = rng.dirichlet(np.full(frequent, 0.7))
        c = np.concatenate([np.arange(lv), rng.choice(frequent, size=n - lv, p=prob)])
        codes.append(rng.permutation(c).astype(np.int64))
        levels.append(lv + (unseen if lv > 1 else 0))
        terms.append(None if t == 1 else np.column_stack([np.ones(n), rng.normal(size=n)]))
    x = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))]) if p else np.zeros((n, 0))
    y = x.sum(axis=1) + rng.normal(size=n)
    for c, z, lv in zip(codes, terms, levels):
        effect = rng.normal(size=(lv, 1 if z is None else z.shape[1]))
        y += (effect[c] * (1.0 if z is None else z)).sum(axis=1)
    return Design(codes, terms, x, y, levels)


def dense_z(design: Design) -> np.ndarray:
    """``Z = [Z_1 | ... | Z_K]`` (caller's order), each factor's columns level-major."""
    n = design.y.size
    blocks = []
    for c, z, lv in zip(design.codes, design.terms, design.n_levels):
        zk = np.ones((n, 1)) if z is None else z
        t = zk.shape[1]
        block = np.zeros((n, lv * t))
        for a in range(t):
            block[np.arange(n), c * t + a] = zk[:, a]
        blocks.append(block)
    return np.hstack(blocks)


def dense_lambda(theta: np.ndarray, design: Design) -> np.ndarray:
    factors = unpack_theta(theta, design.n_terms)
    blocks = [np.kron(np.eye(lv), t) for t, lv in zip(factors, design.n_levels)]
    q = sum(b.shape[0] for b in blocks)
    lam = np.zeros((q, q))
    start = 0
    for b in blocks:
        lam[start : start + b.shape[0], start : start + b.shape[0]] = b
        start += b.shape[0]
    return lam


@dataclass
class Profiled:
    llf: float
    beta: np.ndarray
    scale: float
    qf: float
    s_xx: np.ndarray


def profiled_llf(logdet: float, s: np.ndarray, n: float, reml: bool) -> Profiled:
    """The profiled llf of dlmm's nested engine from ``log|V|`` and ``S = [Xy]'V^{-1}[Xy]``.

    ``beta = S_XX^{-1} S_Xy``, ``qf = S_yy - S_yX beta``, ``fac = n - p`` (REML) or ``n``,
    ``llf = -logdet/2 - fac/2 log qf - fac/2 (1 + log 2 pi - log fac) [- log|S_XX|/2]``.
    """
    p = s.shape[0] - 1
    s_xx, s_xy = s[:p, :p], s[:p, p]
    beta = np.linalg.solve(s_xx, s_xy) if p else np.zeros(0)
    qf = float(s[p, p] - s_xy @ beta)
    fac = n - p if reml else n
    llf = -0.5 * logdet - 0.5 * fac * np.log(qf) - 0.5 * fac * (1 + np.log(2 * np.pi) - np.log(fac))
    if reml and p:
        llf -= 0.5 * np.linalg.slogdet(s_xx)[1]
    return Profiled(float(llf), beta, qf / fac, qf, s_xx)


def profiled_grad(
    value: Profiled, dlogdet: np.ndarray, dctc: np.ndarray, n: float, reml: bool
) -> np.ndarray:
    """``d llf / d theta`` from the kernels' ``d log|C|`` and ``d (c'c)`` (``dS = -d(c'c)``)."""
    p = value.beta.size
    fac = n - p if reml else n
    cvec = np.concatenate([-value.beta, [1.0]])
    grad = -0.5 * dlogdet + 0.5 * fac / value.qf * np.einsum("jab,a,b->j", dctc, cvec, cvec)
    if reml and p:
        grad += 0.5 * np.einsum("jab,ab->j", dctc[:, :p, :p], np.linalg.inv(value.s_xx))
    return grad


@dataclass
class Brute:
    logdet: float
    s: np.ndarray
    reml: Profiled
    ml: Profiled
    modes: list
    variances: list


def brute_force(design: Design, theta: np.ndarray) -> Brute:
    """Everything by dense algebra on ``V`` (``n x n``)."""
    z = dense_z(design)
    lam = dense_lambda(theta, design)
    n = design.y.size
    zl = z @ lam
    v = np.eye(n) + zl @ zl.T
    logdet = np.linalg.slogdet(v)[1]
    xy = np.column_stack([design.x, design.y])
    vinv = np.linalg.inv(v)
    s = xy.T @ vinv @ xy
    reml = profiled_llf(logdet, s, n, True)
    ml = profiled_llf(logdet, s, n, False)
    psi = lam @ lam.T
    b = psi @ z.T @ vinv @ (design.y - design.x @ reml.beta)
    cov = reml.scale * (psi - psi @ z.T @ vinv @ z @ psi)
    modes, variances, start = [], [], 0
    for lv, t in zip(design.n_levels, design.n_terms):
        sl = slice(start, start + lv * t)
        modes.append(b[sl].reshape(lv, t))
        block = cov[sl, sl].reshape(lv, t, lv, t)
        variances.append(block[np.arange(lv), :, np.arange(lv), :])
        start += lv * t
    return Brute(logdet, s, reml, ml, modes, variances)


ALL_PATHS = ["stored", "streamed", "dense"]


def set_pair_path(path: str, monkeypatch) -> str:
    """``build_system``'s default path: stored pairs, (limit -1) always streamed, or
    (ratio infinite) always a dense ``G21``; the first two never choose it."""
    monkeypatch.setattr(counts, "DENSE_G21_RATIO", float("inf") if path == "dense" else 0.0)
    if path == "streamed":
        monkeypatch.setattr(counts, "STORED_PAIRS_MAX", -1)
    return path


def central_derivative(fun, theta: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Five-point central differences (``O(h^4)``) of ``fun`` along each entry of
    ``theta``; smooth in theta, also at 0."""
    out = []
    for e in np.eye(theta.size):
        f = [np.asarray(fun(theta + m * h * e)) for m in (-2, -1, 1, 2)]
        out.append((f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h))
    return np.array(out)
