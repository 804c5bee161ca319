"""lme4's ``simulate`` and ``refit`` for a fit of random-effects terms, where its rows live.

:func:`simulate` draws new responses of the fitted rows from the fitted model,
unconditionally (new random effects, lme4's ``use.u = FALSE``)::

    y* = X beta + sum over factors f of Z_f b*_f + sigma e*,
    b*_f = sigma Lambda_f u*_f,   u*_f ~ N(0, I),   e* ~ N(0, I)

``Lambda_f`` is the factor's relative covariance factor (block diagonal over its
terms, from θ), so each term's effects have the fitted covariance
``sigma^2 Lambda_t Lambda_t'``, a singular one included. It runs on every chunk of
the fitted rows (the map the fitted values use): a Dask fit gets a lazy Dask frame
with one column per simulation. A level's effects must be the same on every
partition that holds its rows, so ``u*`` is not drawn from a stream but computed
from the level (the codes of its grouping values among the values learned over the
whole data), the seed, the simulation, the factor and the column by
:func:`dlmm.results.simulate_refit.hashed_normals`, a counter-based generator; the
noise comes from NumPy's generator seeded with (seed, partition number, simulation),
so ``sim_k`` does not depend on how many simulations are asked for.

:func:`refit` fits the same model (lme4's formula, REML or ML as the fit) to a new
response: a column of the data, or values aligned with its rows (a pandas Series or
array for in-memory data; a Dask Series built from the same frame, such as a column
of :func:`simulate`'s output, for Dask data), starting at the fit's θ as lme4's
``refit`` does. It makes a new pass over the rows where they are.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .simulate_refit import _mix, hashed_normals, with_new_response


def _level_keys(codes: dict[str, np.ndarray], columns) -> np.ndarray:
    """A 64-bit key per row for the level of a factor of ``columns``: a hash of the
    codes of its grouping values (the same on every partition)."""
    key = np.zeros(codes[columns[0]].shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k, column in enumerate(sorted(columns)):  # loop over the factor's columns
            salt = np.uint64(k + 1) * np.uint64(0x9E3779B97F4A7C15)
            key = _mix(key ^ _mix(codes[column].astype(np.uint64) + salt))
    return key


def simulate_chunk(frame: pd.DataFrame, spec, layout, fe: np.ndarray, lambdas: list,
                   sigma: float, n_sim: int, seed: int, partition: int) -> pd.DataFrame:
    """``n_sim`` simulated responses of the rows of a chunk used in the fit (see the
    module docstring). Holds (rows, ``n_sim``, q) arrays: one chunk at a time."""
    design = spec.design(frame)
    n = design.xy.shape[0]
    out = np.empty((n, n_sim))
    for s in range(n_sim):  # each simulation's noise its own stream: sim_k whatever n_sim
        out[:, s] = np.random.default_rng([seed, partition, s]).standard_normal(n)
    # noise sd sigma, or sigma / sqrt(w) under precision weights (lme4's simulate)
    out *= sigma if design.weights is None else sigma / np.sqrt(design.weights)[:, None]
    out += (design.xy[:, : fe.shape[0]] @ fe)[:, None]
    codes, columns = spec.term_rows(frame, design.kept)
    sims = np.arange(n_sim)
    for level, factor in enumerate(layout.levels):  # loop over the few factors
        terms = sorted((k for k, lv in enumerate(layout.term_level) if lv == level),
                       key=lambda k: layout.term_columns[k].start)
        if not terms or not n:
            continue
        z = np.hstack([columns[k] for k in terms])
        q = z.shape[1]
        keys, rows = np.unique(_level_keys(codes, factor), return_inverse=True)
        u = hashed_normals(keys[:, None, None], seed, sims[None, :, None], level,
                           np.arange(q)[None, None, :])  # (levels, simulations, q)
        b = sigma * (u @ np.asarray(lambdas[level], dtype=float).T)
        out += np.einsum("rq,rsq->rs", z, b[np.ravel(rows)])
    columns_out = [f"sim_{s + 1}" for s in range(n_sim)]
    return pd.DataFrame(out, index=frame.index[design.kept], columns=columns_out)


def _require_fitted(result, what: str):
    stats = getattr(result.model, "_stats", None)
    if stats is None:
        raise InputError(f"{what} needs the fitted model and its data; a loaded result has "
                         "neither: fit the model again")
    return stats


def simulate(result, n: int = 1, seed: int = 0):
    """``n`` simulated responses of the fitted rows: a pandas DataFrame (in-process
    fits) or a lazy Dask DataFrame (Dask fits) with columns ``sim_1 ... sim_n``,
    indexed like the data (see the module docstring)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"simulate needs n >= 1 simulations, got {n!r}")
    n, seed = int(n), int(seed)
    stats = _require_fitted(result, "simulate")
    model = result.model
    spec, layout = model.spec, model.engine_layout
    lambdas = layout.to_lambdas(model.engine_theta(result.theta.to_numpy()))
    fe = result.fe_params.to_numpy(dtype=float)
    sigma = float(np.sqrt(result.scale))

    def run(frame, partition_info=None):
        number = 0 if partition_info is None else int(partition_info["number"])
        return simulate_chunk(frame, spec, layout, fe, lambdas, sigma, n, seed, number)

    meta = pd.DataFrame(np.zeros((0, n)), columns=[f"sim_{s + 1}" for s in range(n)])
    return stats.map_rows(run, meta)


def refit(result, new_response):
    """The same model fitted (REML or ML, as ``result``) to a new response: a column
    name of the data, or values aligned with its rows (see the module docstring)."""
    stats = _require_fitted(result, "refit")
    model = result.model
    # the data as given (model.data: statsmodels' model data)
    name, data = with_new_response(model.data.frame, new_response,
                                   lambda: stats.backend.frame)
    rhs = model.lmer_formula.split("~", 1)[1]
    columns = [str(c) for c in getattr(data, "columns", [])]
    new = type(model).from_lmer(f"{name} ~{rhs}", data, columns, missing=model.missing,
                                client=model._client, drop_collinear=model.drop_collinear,
                                weights=model.spec.residual.weights)
    return new.fit(reml=result.reml, start_params=result.theta.to_numpy())
