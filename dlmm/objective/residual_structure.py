"""The residual covariance of a group as a weighted sum of fixed cross-product components.

A group's residual covariance is ``σ² R_i`` with ``R_i = D_i C_i D_i``: ``D_i`` the
residual standard deviations of its rows relative to the reference stratum (nlme's
``varIdent``: ``δ_s``, ``δ_0 = 1``) and ``C_i`` the AR(1) correlation of rows at
consecutive integer times (nlme's ``corAR1``; the identity without it). Its
precision is tridiagonal in time order,

    C⁻¹ = ((1 + ρ²) I - ρ² E - ρ L) / (1 - ρ²),

``E`` the first and last rows, ``L`` the pairs of consecutive rows; so every
cross-product the engine needs, ``A_i' R_i⁻¹ B_i``, is ``Σ_k c_k(φ) P_{i,k}`` over
components ``P_{i,k}`` the one pass sums once (:mod:`dlmm.structure.residual_pass`):

* ``lag0_s``: the rows of stratum s, coefficient ``w_s (1 + ρ²)/(1 - ρ²)``;
* ``ends_s``: the first and last rows of a group in stratum s, ``-w_s ρ²/(1 - ρ²)``;
* ``lag1_{s,t}``: consecutive rows in strata s and t (both orders),
  ``-√(w_s w_t) ρ/(1 - ρ²)``,

with ``w_s = 1/δ_s²``. The parameters the optimizer moves are
``φ = [η_1 .. η_{S-1}, a]``, ``η_s = log δ_s`` and ``ρ = tanh a``: every real vector
is valid. The log-determinant ``log|R| = 2 Σ_s n_s η_s + (N - G) log(1 - ρ²)`` (N rows,
G groups with rows) enters ``log|V|`` beside the groups' ``log|C_i|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ResidualStructure:
    """The components and coefficients of a residual model.

    Parameters
    ----------
    n_strata : int
        Strata of the residual variance (1: one variance).
    ar1 : bool
        AR(1) correlation within groups.
    """

    n_strata: int = 1
    ar1: bool = False

    @property
    def n_params(self) -> int:
        """Parameters φ: the strata's log δ (but the first's), then atanh ρ."""
        return self.n_strata - 1 + int(self.ar1)

    @property
    def components(self) -> list[tuple[str, int, int]]:
        """``(kind, s, t)`` of every component, in the engine's order: ``lag0`` of each
        stratum, then with AR(1) ``ends`` of each stratum and ``lag1`` of each pair
        ``s <= t``."""
        out = [("lag0", s, s) for s in range(self.n_strata)]
        if self.ar1:
            out += [("ends", s, s) for s in range(self.n_strata)]
            out += [("lag1", s, t) for s in range(self.n_strata)
                    for t in range(s, self.n_strata)]
        return out

    def lag1_index(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The component of consecutive rows in strata ``s`` and ``t`` (either order)."""
        lo, hi = np.minimum(s, t), np.maximum(s, t)
        n = self.n_strata
        before = lo * n - lo * (lo - 1) // 2  # pairs (a, b), a < lo
        return 2 * n + before + (hi - lo)

    def split(self, phi) -> tuple[np.ndarray, float]:
        """``(η of every stratum (0 for the first), ρ)``."""
        phi = np.asarray(phi, dtype=float)
        eta = np.concatenate([[0.0], phi[: self.n_strata - 1]])
        rho = float(np.tanh(phi[-1])) if self.ar1 else 0.0
        return eta, rho

    def coefficients(self, phi) -> tuple[np.ndarray, np.ndarray]:
        """``(c, J)``: each component's coefficient ``c_k(φ)`` and ``J = ∂c/∂φ``
        (components × parameters)."""
        eta, rho = self.split(phi)
        w = np.exp(-2.0 * eta)
        f, df, _ = _ar1_factors(rho)
        comps = self.components
        c = np.zeros(len(comps))
        jac = np.zeros((len(comps), self.n_params))
        for k, (kind, s, t) in enumerate(comps):  # a handful of components
            scale = np.sqrt(w[s] * w[t])
            c[k] = scale * f[kind]
            for j in {s, t}:  # ∂√(w_s w_t)/∂η_j: -1 per appearance
                if j > 0:
                    jac[k, j - 1] += -(1.0 + (s == t)) * c[k]
            if self.ar1:
                jac[k, -1] = scale * df[kind]
        return c, jac

    def second(self, phi) -> np.ndarray:
        """``∂²c/∂φ²`` (components × parameters × parameters): with ``c_k = √(w_s w_t)
        f(ρ)``, ``∂/∂η_j`` multiplies by ``-n_j`` (``n_j`` the appearances of stratum j in
        ``s, t``) and ``f`` has ``∂²/∂a²`` ``4(1 + ρ²)/(1 - ρ²)`` (``lag0``),
        ``-2(1 + ρ²)/(1 - ρ²)`` (``ends``), ``-4ρ/(1 - ρ²)`` (``lag1``)."""
        eta, rho = self.split(phi)
        w = np.exp(-2.0 * eta)
        f, df, d2f = _ar1_factors(rho)
        n_eta = self.n_strata - 1
        out = np.zeros((len(self.components), self.n_params, self.n_params))
        for k, (kind, s, t) in enumerate(self.components):  # a handful of components
            scale = np.sqrt(w[s] * w[t])
            count = np.zeros(n_eta)
            for j in (s, t):
                if j > 0:
                    count[j - 1] += 1.0
            out[k, :n_eta, :n_eta] = np.outer(count, count) * scale * f[kind]
            if self.ar1:
                out[k, :n_eta, -1] = out[k, -1, :n_eta] = -count * scale * df[kind]
                out[k, -1, -1] = scale * d2f[kind]
        return out

    def logdet_hessian(self, phi, rows_by_stratum: np.ndarray, n_groups: float) -> np.ndarray:
        """``∂²log|R|/∂φ²``: ``-2 (1 - ρ²)(N - G)`` along atanh ρ, 0 elsewhere."""
        out = np.zeros((self.n_params, self.n_params))
        if self.ar1:
            rho = self.split(phi)[1]
            out[-1, -1] = -2.0 * (1.0 - rho * rho) * float(
                np.sum(rows_by_stratum) - n_groups)
        return out

    def logdet(self, phi, rows_by_stratum: np.ndarray, n_groups: float
               ) -> tuple[float, np.ndarray]:
        """``(log|R|, ∂log|R|/∂φ)`` over the data (see the module docstring)."""
        eta, rho = self.split(phi)
        n_s = np.asarray(rows_by_stratum, dtype=float)
        value = 2.0 * float(n_s @ eta)
        grad = np.zeros(self.n_params)
        grad[: self.n_strata - 1] = 2.0 * n_s[1:]
        if self.ar1:
            pairs = float(n_s.sum() - n_groups)
            value += pairs * np.log1p(-rho * rho)
            grad[-1] = -2.0 * rho * pairs
        return value, grad


def _ar1_factors(rho: float) -> tuple[dict, dict, dict]:
    """The AR(1) factor ``f(ρ)`` of each kind of component and its first and second
    derivatives along ``a = atanh ρ`` (``dρ/da = 1 - ρ²``):

        lag0: (1 + ρ²)/(1 - ρ²),  4ρ/(1 - ρ²),          4(1 + ρ²)/(1 - ρ²)
        ends: -ρ²/(1 - ρ²),       -2ρ/(1 - ρ²),         -2(1 + ρ²)/(1 - ρ²)
        lag1: -ρ/(1 - ρ²),        -(1 + ρ²)/(1 - ρ²),   -4ρ/(1 - ρ²)
    """
    one = 1.0 - rho * rho
    f = {"lag0": (1.0 + rho * rho) / one, "ends": -rho * rho / one, "lag1": -rho / one}
    df = {"lag0": 4.0 * rho / one, "ends": -2.0 * rho / one, "lag1": -(1.0 + rho * rho) / one}
    d2f = {"lag0": 4.0 * (1.0 + rho * rho) / one, "ends": -2.0 * (1.0 + rho * rho) / one,
           "lag1": -4.0 * rho / one}
    return f, df, d2f
