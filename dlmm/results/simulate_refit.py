"""lme4's ``simulate``, ``refit`` and ``update`` for a fit, where its rows live.

:func:`simulate` draws new responses from the fitted model, unconditionally
(new random effects, lme4's ``use.u = FALSE``)::

    y* = X beta + Z b*_g + W v*_g + sigma e*,  b*_g ~ N(0, cov_re),
    v*_gk ~ N(0, vcomp_k),  e* ~ N(0, 1)

It runs on every chunk of the fitted rows (the map the fitted values use), so
a Dask fit gets a lazy Dask frame with one column per simulation and no row
leaves its worker. A group's effects must be the same on every partition that
holds its rows, so they are not drawn from a stream but computed from the
group label: ``z = Phi^{-1}(u)`` with ``u`` a 64-bit hash of (label, seed,
simulation, effect or variance-component column) — a counter-based generator,
vectorized over rows and independent of the partitioning. The residual noise
(sd ``sqrt(scale / w)`` with precision weights ``w``, times δ of the row's stratum
with ``residual_by``) comes from NumPy's generator seeded with (seed, partition
number): the same seed and partitioning give the same responses. With AR(1) errors
(``residual_ar1``) a group's errors must agree across partitions too, so they are
hashed as well: the stationary AR(1) at integer time t is
``e_t = sqrt(1 - ρ²) Σ_k ρ^k u_{t-k}`` with ``u`` hashed from (label, seed,
simulation, time), summed while ``|ρ|^k`` exceeds 1e-12 (and scaled to unit
variance), so that each row computes its own error from its time alone.

:func:`refit` fits the same model to a new response (a column of the data, or
values aligned with the fitted rows: a pandas Series for in-memory data, a
Dask Series built from the same frame — such as a column of :func:`simulate`'s
output — for Dask data); :func:`update` refits with changed formulas
(``". ~ . + x"`` as lme4's, ``.`` standing for the old side). Both make a new
pass over the rows where they are, never collect them.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pandas.util import hash_array
from scipy import special

from ..exceptions import InputError

NEW_RESPONSE = "__dlmm_new_response__"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 that scatters nearby inputs."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hashed_normals(label_hash: np.ndarray, *keys) -> np.ndarray:
    """Standard normal deviates, one per entry of ``label_hash`` (uint64), a
    deterministic function of it and of the integer ``keys`` (arrays broadcast)."""
    with np.errstate(over="ignore"):
        x = label_hash.astype(np.uint64)
        for key in keys:
            x = _mix(x + _GOLDEN + np.asarray(key).astype(np.uint64) * np.uint64(0x632BE5AB))
    u = ((x >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53  # (0, 1)
    return special.ndtri(u)


#: The key that sets AR(1) innovations apart from the random effects' deviates.
_AR1_KEY = 1 << 40
#: Terms of the AR(1) sum beyond which simulate refuses (|ρ| above about 0.9986).
AR1_MAX_TERMS = 20_000


def ar1_normals(label_hash: np.ndarray, times: np.ndarray, seed: int, sims: np.ndarray,
                rho: float) -> np.ndarray:
    """Unit-variance stationary AR(1) deviates (rows, simulations) at the integer
    ``times`` of each row's group (see the module docstring)."""
    rho = float(rho)
    terms = 1 if rho == 0 else int(np.ceil(np.log(1e-12) / np.log(abs(rho))))
    if terms > AR1_MAX_TERMS:
        raise InputError(f"simulate: the AR(1) correlation {rho:.6g} is too close to ±1 to "
                         "draw its errors exactly")
    out = np.zeros((times.shape[0], sims.shape[0]))
    weight = 1.0
    for k in range(terms):  # a loop over lags, each vectorized over rows
        out += weight * hashed_normals(label_hash[:, None], seed, sims[None, :], _AR1_KEY,
                                       (times - k)[:, None])
        weight *= rho
    return out * np.sqrt((1.0 - rho * rho) / (1.0 - rho ** (2 * terms)))


def _label_hash(groups: np.ndarray) -> np.ndarray:
    return hash_array(np.asarray(groups, dtype=object).astype(str))


def simulate_chunk(frame: pd.DataFrame, spec, fe: np.ndarray, chol_re: np.ndarray,
                   sd_vc_slot: np.ndarray, sigma: float, n_sim: int, seed: int,
                   partition: int, strata: tuple[str, dict] | None = None,
                   ar1: tuple[str, float] | None = None) -> pd.DataFrame:
    """``n_sim`` simulated responses for the rows of a chunk used in the fit (see
    the module docstring); ``sd_vc_slot`` is ``sqrt(vcomp)`` of each global
    variance-component column; ``strata = (column, {level: δ})`` scales each row's
    residual sd by its stratum's δ (``residual_by``); ``ar1 = (time column, ρ)`` draws
    AR(1) errors within groups (``residual_ar1``). Holds (rows, ``n_sim``) arrays: one
    chunk at a time."""
    design = spec.design(frame)
    n, p = design.xy.shape[0], fe.shape[0]
    fixed = design.xy[:, :p] @ fe
    labels = _label_hash(design.groups)
    k_re = design.z.shape[1]
    rng = np.random.default_rng([seed, partition])
    sims = np.arange(n_sim)
    noise = sigma if design.weights is None else sigma / np.sqrt(design.weights)[:, None]
    if strata is not None:
        column, delta = strata
        noise = noise * frame[column][design.kept].map(delta).to_numpy(dtype=float)[:, None]
    if ar1 is None:
        errors = rng.standard_normal((n, n_sim))
    else:
        times = frame[ar1[0]][design.kept].to_numpy().astype(np.int64)
        errors = ar1_normals(labels, times, seed, sims, ar1[1])
    out = fixed[:, None] + noise * errors  # (rows, simulations)
    if k_re:
        z = hashed_normals(labels[:, None, None], seed, sims[None, :, None],
                           np.arange(k_re)[None, None, :])
        out += np.einsum("rk,rsk->rs", design.z, z @ chol_re.T)
    if design.w is not None and design.w.nnz:
        w = design.w.tocsr()
        entry_row = np.repeat(np.arange(n), np.diff(w.indptr))
        v = hashed_normals(labels[entry_row][:, None], seed, sims[None, :],
                           (k_re + w.indices)[:, None]) * sd_vc_slot[w.indices][:, None]
        by_row = sp.csr_array((np.ones(w.nnz), (entry_row, np.arange(w.nnz))),
                              shape=(n, w.nnz))
        out += by_row @ (w.data[:, None] * v)
    columns = [f"sim_{s + 1}" for s in range(n_sim)]
    return pd.DataFrame(out, index=frame.index[design.kept], columns=columns)


def simulate(result, n: int = 1, seed: int = 0):
    """``n`` simulated responses of the fitted rows: a pandas DataFrame (in-process
    fits) or a lazy Dask DataFrame (Dask fits) with columns ``sim_1 ... sim_n``,
    indexed like the data (see the module docstring)."""
    if int(n) != n or n < 1:
        raise InputError(f"simulate needs n >= 1 simulations, got {n!r}")
    n = int(n)
    stats = result._require_stats("simulate")
    spec = result.model.spec
    fe = np.asarray(result.fe_params, dtype=float)
    cov = np.asarray(result.cov_re, dtype=float)
    chol = np.linalg.cholesky(cov + 1e-300 * np.eye(cov.shape[0])) if cov.size else cov
    slot_component = np.asarray(getattr(spec, "slot_component", []), dtype=np.int64)
    sd_slot = np.sqrt(np.clip(np.asarray(result.vcomp, dtype=float), 0, None))[slot_component] \
        if slot_component.size else np.zeros(0)
    sigma = float(np.sqrt(result.scale))
    seed = int(seed)
    by = getattr(result, "residual", None)
    strata = None if by is None or by.column is None else \
        (by.column, dict(zip(by.levels, by.delta)))
    ar1 = None if by is None or by.time_column is None else (by.time_column, by.rho)

    def run(frame, partition_info=None):
        number = 0 if partition_info is None else int(partition_info["number"])
        return simulate_chunk(frame, spec, fe, chol, sd_slot, sigma, n, seed, number, strata,
                              ar1)

    meta = pd.DataFrame(np.zeros((0, n)), columns=[f"sim_{s + 1}" for s in range(n)])
    return stats.map_rows(run, meta)


# -- refit and update ---------------------------------------------------------------


def _formula_spec(result):
    model = result.model
    if not hasattr(type(model), "from_formula") or not hasattr(model, "data"):
        raise InputError("refit and update need the fitted model and its data; a loaded "
                         "result has neither: fit the model again")
    spec = model.spec
    if not hasattr(spec, "formula"):
        raise InputError("refit and update need a model made from a formula "
                         "(dlmm.mixedlm); refit array models with MixedLM(...)")
    return spec


def _refit(result, formula: str, data, re_formula, vc_formula, groups):
    model = result.model
    new = type(model).from_formula(formula, data, re_formula=re_formula, vc_formula=vc_formula,
                               missing=model.missing, groups=groups, client=model._client,
                               drop_collinear=model.drop_collinear,
                               eval_env=dict(getattr(model.spec, "context", {})),
                               weights=model.spec.residual.weights,
                               residual_by=model.spec.residual.strata,
                               residual_ar1=model.spec.residual.ar1)
    return new.fit(reml=result.reml)


def _groups_argument(spec):
    return spec.groups if isinstance(spec.groups, str) or spec.groups is None else None


def with_new_response(data, new_response, dask_frame):
    """``(name, data)``: the response ``refit`` fits and the data holding it, for both
    kinds of fit (this module's ``refit`` and :func:`dlmm.results.terms_simulate.refit`).

    Parameters
    ----------
    data : pandas or Dask DataFrame
        The data as given to the model (``model.data.frame``).
    new_response : str, pandas Series, array or Dask Series
        A column of ``data``, or values aligned with its rows (a Series by index, an
        array by position), or a Dask Series made from the same frame.
    dask_frame : callable
        The fit's rows as a Dask DataFrame (``stats.backend.frame``), for a Dask
        Series beside in-memory data; called only then.

    Raises
    ------
    InputError
        Several responses (a DataFrame), values of another length, or in-memory values
        beside Dask or Parquet data.
    """
    if isinstance(new_response, str):
        return new_response, data
    name = NEW_RESPONSE
    if isinstance(new_response, pd.DataFrame) or getattr(new_response, "ndim", 1) != 1:
        raise InputError("refit needs one new response: a column name or one Series "
                         "(for simulate()'s output, pick a column: sims['sim_1'])")
    if hasattr(new_response, "npartitions"):
        if not hasattr(data, "npartitions"):
            data = dask_frame()
        return name, data.assign(**{name: new_response})
    if not isinstance(data, pd.DataFrame):
        raise InputError("for Dask or Parquet data, give refit a column name or a Dask "
                         "Series made from the same frame (such as simulate()'s)")
    if isinstance(new_response, pd.Series):
        values = new_response
    else:
        arr = np.asarray(new_response, dtype=float)
        if arr.shape != (len(data),):
            raise InputError(f"new_response has {arr.size} values; the data have "
                             f"{len(data)} rows (or pass a Series indexed like them)")
        values = pd.Series(arr, index=data.index)
    return name, data.assign(**{name: values})


def refit(result, new_response):
    """The same model fitted (REML or ML, as ``result``) to a new response: a column
    name of the data, or values aligned with its rows (see the module docstring)."""
    spec = _formula_spec(result)
    rhs = spec.formula.split("~", 1)[1]
    name, data = with_new_response(
        result.model.data.frame, new_response,
        lambda: result._require_stats("refit").backend.frame)
    return _refit(result, f"{name} ~{rhs}", data, spec.re_formula, spec.vc_formula or None,
                  _groups_argument(spec))


def _expand(new: str, old: str) -> str:
    """``.`` in ``new`` stands for ``old`` (lme4's ``update``)."""
    if new.strip() == ".":
        return old.strip()
    return re.sub(r"(?<![\w.])\.(?![\w.])", f"({old.strip()})", new)


def update(result, formula: str | None = None, re_formula=None, vc_formula=None,
           groups=None, data=None):
    """Refit with changed formulas (each left out keeps the fit's): ``formula`` as
    ``"y ~ x"`` or lme4's ``". ~ . + x"`` / ``". ~ . - x"``; ``re_formula`` and
    ``vc_formula`` replace the old ones; ``data`` replaces the data."""
    spec = _formula_spec(result)
    new_formula = spec.formula
    if formula is not None:
        if "~" not in formula:
            raise InputError(f"formula must look like 'y ~ x' or '. ~ . + x', got {formula!r}")
        old_lhs, old_rhs = spec.formula.split("~", 1)
        lhs, rhs = formula.split("~", 1)
        lhs = old_lhs.strip() if lhs.strip() in ("", ".") else lhs.strip()
        new_formula = f"{lhs} ~ {_expand(rhs, old_rhs).strip()}"
    if re_formula is not None and "." in re_formula and spec.re_formula:
        re_formula = _expand(re_formula.lstrip("~"), spec.re_formula.lstrip("~"))
    return _refit(result, new_formula, result.model.data.frame if data is None else data,
                  spec.re_formula if re_formula is None else re_formula,
                  (spec.vc_formula or None) if vc_formula is None else vc_formula,
                  _groups_argument(spec) if groups is None else groups)
