"""θ: lme4's parameters of a model's random-effects terms, and the maps the engines read.

Per term (:class:`~dlmm.spec.terms.RandomTerm`) with k columns, the covariance of
its effects in each level of its factor is σ² Λ_t Λ_t', Λ_t lower triangular:

* unstructured: Λ_t's lower triangle, k(k+1)/2 entries of θ filled column by
  column (lme4's ``getME(m, "theta")``);
* diagonal: its diagonal, k entries;
* scalar: one sd, Λ_t = sd · I (statsmodels' variance component).

θ is the terms' entries in term order; lme4's bounds (0 on diagonal entries,
-inf elsewhere), start (1 on the diagonal, 0 off it) and names
(``"Subject.(Intercept)"``, ``"Subject.Days.(Intercept)"``: factor, row column,
column column). An engine sees levels: one per grouping factor (the nesting chain
outermost first when the factors nest), level l holding the q_l columns of
all terms on its factor in term order, Λ_l block diagonal over those terms.
:meth:`ThetaLayout.to_lambdas` gives Λ_l for θ, :meth:`ThetaLayout.dlambdas`
the constant dΛ_l/dθ_j (Λ is linear in θ). Covariances on the user's scale and
lme4's VarCorr rows come from :meth:`ThetaLayout.covariances`; where the model has
statsmodels' shape, :meth:`ThetaLayout.statsmodels_view` gives statsmodels'
``cov_re`` and ``vcomp``. Small per-term arrays only: nothing here reads data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class TermCovariances(NamedTuple):
    """Covariances of a model's random effects at one θ.

    Attributes
    ----------
    matrices : tuple of ndarray
        Per term, the (k, k) covariance of its effects on the user's scale,
        ``scale * Λ_t Λ_t'``.
    varcorr : list of dict
        lme4's ``as.data.frame(VarCorr(m))`` rows: ``grp``, ``var1``, ``var2``,
        ``vcov``, ``sdcor``; per term its variances, then (unstructured terms) the
        covariances of each column pair, column by column; last the residual.
    """

    matrices: tuple
    varcorr: list


class StatsmodelsView(NamedTuple):
    """A model of statsmodels' shape in statsmodels' parameters.

    Attributes
    ----------
    cov_re : ndarray (k_re, k_re)
        The standard random effects' covariance (user scale).
    vcomp : ndarray (k_vc,)
        The variance components (user scale), in the order of ``vc_names``.
    vc_names : tuple of str
        The components' names, sorted (statsmodels' and dlmm's order).
    groups : tuple of str
        The group factor: the factor of a term that every other term's factor
        extends (``()`` when there is none: one group holding every row,
        ``groups=None``, as for crossed factors).
    re_term : int or None
        The index of the term that is the standard random effects.
    vc_terms : tuple of int
        The index of each component's term.
    """

    cov_re: np.ndarray
    vcomp: np.ndarray
    vc_names: tuple
    groups: tuple
    re_term: int | None
    vc_terms: tuple


def _term_entries(structure: str, q: int) -> list[tuple[int, int, int]]:
    """``(theta offset, row, column)`` of each entry of a term's Λ_t that θ sets."""
    if structure == "unstructured":
        pairs = [(i, j) for j in range(q) for i in range(j, q)]
        return [(k, i, j) for k, (i, j) in enumerate(pairs)]
    if structure == "diagonal":
        return [(i, i, i) for i in range(q)]
    return [(0, i, i) for i in range(q)]


def _n_theta(structure: str, q: int) -> int:
    if structure == "unstructured":
        return q * (q + 1) // 2
    if structure == "diagonal":
        return q
    return 1 if q else 0


def psd_cholesky(a: np.ndarray) -> np.ndarray:
    """The lower factor L of a positive semidefinite ``a`` (L L' = a) with a
    non-negative diagonal; a zero pivot gives a zero column (a singular covariance)."""
    a = np.asarray(a, dtype=float)
    k = a.shape[0]
    out = np.zeros_like(a)
    tol = 1e-12 * max(float(np.max(np.abs(np.diag(a)), initial=0.0)), 1e-300)
    for j in range(k):
        d = a[j, j] - out[j, :j] @ out[j, :j]
        if d <= tol:
            continue
        out[j, j] = np.sqrt(d)
        out[j + 1:, j] = (a[j + 1:, j] - out[j + 1:, :j] @ out[j, :j]) / out[j, j]
    return out


@dataclass(frozen=True, eq=False)
class ThetaLayout:
    """Where each term's parameters sit in θ, and the maps the engines need.

    Made by :meth:`dlmm.spec.terms.RandomTerms.layout`.

    Attributes
    ----------
    terms : RandomTerms
    columns : tuple of tuple of str
        Each term's column names (lme4's: ``"(Intercept)"``, ``"Days"``).
    levels : tuple of tuple of str
        The grouping factors in the engine's order (the nesting chain when the
        factors nest as written, outermost first; else in order of appearance).
    nested : bool
        Whether ``levels`` is a nesting chain.
    q : tuple of int
        Columns per level (all its terms').
    term_level : tuple of int
        Each term's level.
    term_columns : tuple of slice
        Each term's columns within its level's q columns.
    theta_slices : tuple of slice
        Each term's entries of θ.
    n_theta : int
    lower, start : ndarray (n_theta,)
        lme4's bounds and start values.
    names : tuple of str
        lme4's names of θ (``names(getME(m, "theta"))``).
    """

    terms: object
    columns: tuple
    levels: tuple
    nested: bool
    q: tuple
    term_level: tuple
    term_columns: tuple
    theta_slices: tuple
    n_theta: int
    lower: np.ndarray
    start: np.ndarray
    names: tuple
    _entries: tuple = ()

    @classmethod
    def build(cls, terms, columns_per_term=None, levels=None) -> ThetaLayout:
        """The layout of ``terms`` (see :meth:`RandomTerms.layout`)."""
        columns = []
        for k, t in enumerate(terms):
            given = None if columns_per_term is None else columns_per_term[k]
            default = t.default_columns()
            if given is None:
                names = default
            elif isinstance(given, (int, np.integer)):
                names = default if len(default) == int(given) else tuple(
                    f"{t.formula or t.name}[{j}]" for j in range(int(given)))
            else:
                names = tuple("(Intercept)" if str(c) == "Intercept" else str(c)
                              for c in given)
            columns.append(tuple(names))
        chain = terms.nesting()
        if levels is None:
            levels, nested = (chain, True) if chain is not None else (terms.factors, False)
        else:
            levels, nested = tuple(tuple(f) for f in levels), chain is not None
        index = {frozenset(f): i for i, f in enumerate(levels)}
        missing = [t.group for t in terms if frozenset(t.factor) not in index]
        if missing or len(index) != len(levels):
            raise ValueError(f"levels {levels!r} do not list each factor of the terms once"
                             + (f" (missing {missing[0]!r})" if missing else ""))
        q = [0] * len(levels)
        term_level, term_columns, theta_slices = [], [], []
        lower, start, names = [], [], []
        entries: list[list[tuple[int, int, int]]] = [[] for _ in levels]
        pos = 0
        for t, cols in zip(terms, columns):
            level, k = index[frozenset(t.factor)], len(cols)
            offset = q[level]
            q[level] += k
            n = _n_theta(t.structure, k)
            placed = _term_entries(t.structure, k)
            for j, row, col in placed:
                entries[level].append((pos + j, offset + row, offset + col))
            term_level.append(level)
            term_columns.append(slice(offset, offset + k))
            theta_slices.append(slice(pos, pos + n))
            for _, row, col in placed[:n]:  # one entry per parameter (scalar: the first)
                on_diagonal = row == col
                lower.append(0.0 if on_diagonal else -np.inf)
                start.append(1.0 if on_diagonal else 0.0)
                if t.structure == "scalar" and k > 1:
                    names.append(f"{t.name}.(sd)")
                elif on_diagonal:
                    names.append(f"{t.name}.{cols[row]}")
                else:
                    names.append(f"{t.name}.{cols[row]}.{cols[col]}")
            pos += n
        packed = tuple(tuple(np.asarray(v, dtype=np.int64) for v in zip(*e)) if e else
                       (np.zeros(0, np.int64),) * 3 for e in entries)
        return cls(terms, tuple(columns), tuple(levels), nested, tuple(q), tuple(term_level),
                   tuple(term_columns), tuple(theta_slices), pos,
                   np.asarray(lower, dtype=float), np.asarray(start, dtype=float),
                   tuple(names), packed)

    # -- Λ ---------------------------------------------------------------------------

    def _theta(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.n_theta,):
            raise ValueError(f"theta has shape {theta.shape}, the terms have {self.n_theta} "
                             "parameters")
        return theta

    def to_lambdas(self, theta) -> list[np.ndarray]:
        """Λ_l (q_l, q_l) of each level: block diagonal over its terms."""
        theta = self._theta(theta)
        out = []
        for q, (idx, rows, cols) in zip(self.q, self._entries):
            lam = np.zeros((q, q))
            lam[rows, cols] = theta[idx]
            out.append(lam)
        return out

    def dlambdas(self) -> list[tuple[int, np.ndarray]]:
        """``(level, D)`` per entry j of θ: D = dΛ_level/dθ_j (constant)."""
        out = []
        for t_index, sl in enumerate(self.theta_slices):
            level = self.term_level[t_index]
            idx, rows, cols = self._entries[level]
            for j in range(sl.start, sl.stop):
                d = np.zeros((self.q[level], self.q[level]))
                hit = idx == j
                d[rows[hit], cols[hit]] = 1.0
                out.append((level, d))
        return out

    def term_factors(self, theta) -> list[np.ndarray]:
        """Λ_t (k, k) of each term."""
        lambdas = self.to_lambdas(theta)
        return [lambdas[lv][s, s] for lv, s in zip(self.term_level, self.term_columns)]

    # -- covariances -----------------------------------------------------------------

    def covariances(self, theta, scale: float) -> TermCovariances:
        """Each term's covariance ``scale * Λ_t Λ_t'`` and lme4's VarCorr rows."""
        scale = float(scale)
        mats = tuple(scale * (lam @ lam.T) for lam in self.term_factors(theta))
        rows = []
        for grp, t, cols, cov in zip(self.terms.varcorr_names, self.terms, self.columns, mats):
            sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
            for i, c in enumerate(cols):
                rows.append({"grp": grp, "var1": c, "var2": "", "vcov": float(cov[i, i]),
                             "sdcor": float(sd[i])})
            if t.structure != "unstructured":
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                for j in range(len(cols)):
                    for i in range(j + 1, len(cols)):
                        rows.append({"grp": grp, "var1": cols[j], "var2": cols[i],
                                     "vcov": float(cov[i, j]),
                                     "sdcor": float(cov[i, j] / (sd[i] * sd[j]))})
        rows.append({"grp": "Residual", "var1": "", "var2": "", "vcov": scale,
                     "sdcor": float(np.sqrt(scale))})
        return TermCovariances(mats, rows)

    def theta_from_covariances(self, matrices, scale: float) -> np.ndarray:
        """θ whose :meth:`covariances` are ``matrices`` (per term, user scale): the
        Cholesky factor of each over ``scale`` (a zero column where it is singular);
        a diagonal term reads the diagonal, a scalar one the mean variance."""
        theta = np.zeros(self.n_theta)
        for t, sl, cols, mat in zip(self.terms, self.theta_slices, self.columns, matrices):
            mat = np.atleast_2d(np.asarray(mat, dtype=float)) / float(scale)
            if mat.shape != (len(cols), len(cols)):
                raise ValueError(f"term {t.source}: covariance of shape {mat.shape}, "
                                 f"it has {len(cols)} columns")
            if t.structure == "unstructured":
                lam = psd_cholesky(mat)
                theta[sl] = [lam[i, j] for _, i, j in _term_entries(t.structure, len(cols))]
            elif t.structure == "diagonal":
                theta[sl] = np.sqrt(np.maximum(np.diag(mat), 0.0))
            elif len(cols):
                theta[sl] = np.sqrt(max(float(np.mean(np.diag(mat))), 0.0))
        return theta

    def signature(self) -> tuple:
        """The model up to names and spelling: per term its factor (as a set), design
        and θ structure (a one-column term's three structures are one)."""
        return tuple((frozenset(t.factor), t.formula if t.formula is not None else cols,
                      "unstructured" if len(cols) == 1 else t.structure, len(cols))
                     for t, cols in zip(self.terms, self.columns))

    # -- statsmodels' shape ----------------------------------------------------------

    def _statsmodels_roles(self):
        """``(groups, re term, [(name, term)...])`` when the model has statsmodels'
        shape (one group factor: at most one correlated block on it, every other term
        one variance within a level of it or of a factor nested in it), else None."""
        terms = list(self.terms)
        keys = [frozenset(t.factor) for t in terms]
        common = frozenset.intersection(*keys) if keys else frozenset()
        groups = next((t.factor for t, k in zip(terms, keys) if k == common), ())
        if not groups:
            common = frozenset()
        width = [len(c) for c in self.columns]
        candidates = [i for i, (t, k) in enumerate(zip(terms, keys))
                      if k == common and t.structure != "scalar"]
        multi = [i for i in candidates if width[i] > 1]
        if len(multi) > 1 or (multi and terms[multi[0]].structure != "unstructured"):
            return None
        re_term = next((i for i in candidates if terms[i].component is None), None)
        if re_term is None and multi:
            re_term = multi[0]
        if re_term is None:
            re_term = next((i for i in candidates if terms[i].formula == "1"),
                           candidates[0] if candidates else None)
        vcs = []
        for i, t in enumerate(terms):
            if i == re_term:
                continue
            if width[i] > 1 and t.structure != "scalar":
                return None
            vcs.append((t.component or t.name, i))
        vcs.sort(key=lambda v: v[0])
        names = [v[0] for v in vcs]
        if len(set(names)) != len(names):
            return None
        return groups, re_term, vcs

    def statsmodels_view(self, theta, scale: float) -> StatsmodelsView | None:
        """statsmodels' ``cov_re`` and ``vcomp`` at θ, or None when the model does not
        have statsmodels' shape (then VarCorr's rows, :meth:`covariances`, say it)."""
        roles = self._statsmodels_roles()
        if roles is None:
            return None
        groups, re_term, vcs = roles
        mats = self.covariances(theta, scale).matrices
        cov_re = mats[re_term] if re_term is not None else np.zeros((0, 0))
        vcomp = np.array([float(mats[i][0, 0]) if len(self.columns[i]) else 0.0
                          for _, i in vcs])
        return StatsmodelsView(cov_re, vcomp, tuple(n for n, _ in vcs), tuple(groups),
                               re_term, tuple(i for _, i in vcs))

    def theta_from_statsmodels(self, cov_re, vcomp, scale: float) -> np.ndarray:
        """θ from statsmodels' ``cov_re`` and ``vcomp`` (user scale, ``vcomp`` in the
        order of :attr:`StatsmodelsView.vc_names`); ValueError when the model does not
        have statsmodels' shape."""
        roles = self._statsmodels_roles()
        if roles is None:
            raise ValueError("the random-effects terms do not have statsmodels' shape "
                             "(one correlated block on one group factor, and variance "
                             "components)")
        _, re_term, vcs = roles
        vcomp = np.atleast_1d(np.asarray(vcomp, dtype=float))
        if vcomp.shape != (len(vcs),):
            raise ValueError(f"vcomp has {vcomp.size} entries, the model has {len(vcs)} "
                             "components")
        matrices = []
        for i, cols in enumerate(self.columns):
            if i == re_term:
                matrices.append(np.atleast_2d(np.asarray(cov_re, dtype=float)))
            else:
                k = next(v for v, (_, j) in enumerate(vcs) if j == i)
                matrices.append(vcomp[k] * np.eye(len(cols)))
        return self.theta_from_covariances(matrices, scale)
