"""The AR(1) loops over a chunk of plain columns (dlmm.kernels.ar1_columns), compiled for
each model's sizes (a row's values and design columns as tuples in registers), against
sums written out row by row in NumPy: q = 1, 2, 3 random-effect columns, p = 1..4 fixed
columns, 1-4 strata, sources mapped in any order (the intercept among them), with
weights or without, rows left out for a missing, infinite or non-positive value."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.ar1_columns import ar1_columns_loop, ar1_read_loop
from dlmm.kernels.crossprod import _padded
from dlmm.kernels.residual_loops import sizes
from dlmm.structure.residual_parts import component_keys

#: (q, p, strata, weighted): every q and p, strata 1-4
CASES = [(1, 1, 1, True), (2, 4, 3, False), (3, 3, 4, True), (3, 2, 2, False)]


def _case(q, p, n_strata, weighted, seed):
    """Groups of 1-7 rows written group by group in time order (a gap now and then),
    ``p - 1`` covariates, y and maybe w as sources (in shuffled order), ``Z`` and ``X``
    drawn from the covariates and the intercept."""
    rng = np.random.default_rng(seed)
    n_groups = 40
    per = rng.integers(1, 8, n_groups)
    g = np.repeat(np.arange(n_groups), per)
    rows = g.size
    t = np.concatenate([np.cumsum(rng.choice([1, 1, 1, 2], m)) for m in per])
    s = rng.integers(0, n_strata, rows)
    n_cov = max(p - 1, q - 1)
    names = [f"x{i}" for i in range(n_cov)] + ["y"] + (["w"] if weighted else [])
    order = rng.permutation(len(names))
    values = {"y": rng.normal(size=rows) * 3.0 + 1.0}
    for i in range(n_cov):
        values[f"x{i}"] = rng.normal(size=rows) * (i + 1) - i
    if weighted:
        values["w"] = rng.uniform(0.2, 3.0, rows)
        values["w"][rng.random(rows) < 0.04] = rng.choice([0.0, -1.0])
    bad = rng.random((rows, len(names))) < 0.02
    cols = []
    for j, name in enumerate(np.array(names)[order]):
        col = values[name].copy()
        col[bad[:, j] & (rng.random(rows) < 0.5)] = np.nan
        col[bad[:, j] & ~np.isnan(col)] = np.inf * rng.choice([-1, 1])
        cols.append(col)
    where = {name: int(np.flatnonzero(np.array(names)[order] == name)[0]) for name in names}
    xs = [-1] + [where[f"x{i}"] for i in range(p - 1)]
    zs = [-1] + [where[f"x{i}"] for i in rng.permutation(n_cov)[: q - 1]]
    xy_src = np.array(xs + [where["y"]], dtype=np.int64)
    z_src = np.array(zs, dtype=np.int64)[rng.permutation(q)]
    w_src = where["w"] if weighted else -1
    shifts = (rng.normal(size=q) * 0.3, 2.0 ** rng.integers(-2, 3, q),
              rng.normal(size=p + 1) * 0.3, 2.0 ** rng.integers(-2, 3, p + 1))
    ok = np.ones(rows, dtype=np.uint8)
    ok[rng.random(rows) < 0.03] = 0  # a group, stratum or time missing
    return cols, xy_src, z_src, w_src, shifts, g, t, s, ok


def _dense(cols, xy_src, z_src, w_src, shifts, g, t, s, ok, n_strata):
    """The sums written out row by row."""
    src = np.column_stack(cols)
    finite = np.isfinite(src).all(axis=1) & (ok == 1)
    w = src[:, w_src] if w_src >= 0 else np.ones(g.size)
    use = finite & (w > 0)
    full = np.column_stack([src, np.ones(g.size)])  # the intercept: source -1
    z = (full[:, z_src] - shifts[0]) / shifts[1] * np.sqrt(np.where(use, w, 1.0))[:, None]
    xy = (full[:, xy_src] - shifts[2]) / shifts[3] * np.sqrt(np.where(use, w, 1.0))[:, None]
    keys, lag1_of = component_keys(n_strata)
    q, r, n_groups = z.shape[1], xy.shape[1], g.max() + 1
    gz, hz = np.zeros((len(keys), n_groups, q, q)), np.zeros((len(keys), n_groups, q, r))
    n, kk = np.zeros((len(keys), n_groups)), np.zeros((len(keys), r, r))
    rows = np.flatnonzero(use)
    paired = np.zeros(g.size, dtype=np.uint8)
    for m, j in enumerate(rows):
        k, i = s[j], g[j]
        gz[k, i] += np.outer(z[j], z[j])
        hz[k, i] += np.outer(z[j], xy[j])
        kk[k] += np.outer(xy[j], xy[j])
        n[k, i] += 1
        if m and g[rows[m - 1]] == i and t[j] == t[rows[m - 1]] + 1:
            jp = rows[m - 1]
            k = lag1_of[s[jp], s[j]]
            paired[j] = 1
            gz[k, i] += np.outer(z[jp], z[j]) + np.outer(z[j], z[jp])
            hz[k, i] += np.outer(z[jp], xy[j]) + np.outer(z[j], xy[jp])
            kk[k] += np.outer(xy[jp], xy[j]) + np.outer(xy[j], xy[jp])
            n[k, i] += 1
    good = np.where((ok == 1)[:, None], src, 0.0)
    peak = np.abs(np.where(np.isfinite(src).all(axis=1)[:, None], good, 0.0)).max(axis=0)
    return dict(gz=gz, hz=hz, n=n, kk=np.triu(kk), paired=paired, use=use,
                missing=np.isnan(src).sum(axis=0), infinite=np.isinf(src).sum(axis=0),
                peak=peak,
                log_w=np.log(w[use]).sum() if w_src >= 0 else 0.0,
                bad_w=((w <= 0) & finite).sum() if w_src >= 0 else 0, lag1_of=lag1_of)


def _empty(ref):
    return (np.zeros_like(ref["gz"]), np.zeros_like(ref["hz"]), np.zeros_like(ref["n"]),
            np.zeros_like(ref["kk"]))


def _close(ours, ref):
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max(initial=1.0))


@pytest.mark.parametrize("q, p, n_strata, weighted", CASES)
def test_read_loop_is_the_dense_sums(q, p, n_strata, weighted):
    cols, xy_src, z_src, w_src, shifts, g, t, s, ok = _case(q, p, n_strata, weighted, q * 7 + p)
    ref = _dense(cols, xy_src, z_src, w_src, shifts, g, t, s, ok, n_strata)
    gz, hz, n, kk = _empty(ref)
    n_src = len(cols)
    paired = np.zeros(g.size, dtype=np.uint8)
    missing, infinite = np.zeros(n_src, dtype=np.int64), np.zeros(n_src, dtype=np.int64)
    peak, wstats = np.zeros(n_src), np.zeros(2)
    ordered, repeat = ar1_read_loop(
        _padded(tuple(cols))[:n_src], xy_src, z_src, shifts, w_src, g, t, s, ok,
        ref["lag1_of"], gz, hz, n, kk, paired, missing, infinite, peak, wstats,
        *sizes(q, p + 1, n_src))
    assert (ordered, repeat) == (True, -1)
    np.testing.assert_array_equal(ok.astype(bool), ref["use"])
    np.testing.assert_array_equal(n, ref["n"])
    np.testing.assert_array_equal(paired, ref["paired"])
    np.testing.assert_array_equal(missing, ref["missing"])
    np.testing.assert_array_equal(infinite, ref["infinite"])
    np.testing.assert_array_equal(peak, ref["peak"])
    assert wstats[1] == ref["bad_w"]
    assert wstats[0] == pytest.approx(ref["log_w"], rel=1e-13, abs=1e-13)
    for name, ours in (("gz", gz), ("hz", hz), ("kk", kk)):
        _close(ours, ref[name])


@pytest.mark.parametrize("q, p, n_strata, weighted", CASES)
def test_sorted_rows_loop_is_the_dense_sums(q, p, n_strata, weighted):
    """Rows not written in (group, time) order: the read loop says so, and the loop
    over the usable rows sorted sums them."""
    cols, xy_src, z_src, w_src, shifts, g, t, s, ok = _case(q, p, n_strata, weighted, q + p)
    ref = _dense(cols, xy_src, z_src, w_src, shifts, g, t, s, ok, n_strata)
    shuffle = np.random.default_rng(q).permutation(g.size)
    cols = tuple(c[shuffle] for c in cols)
    g, t, s, ok = g[shuffle], t[shuffle], s[shuffle], ok[shuffle]
    n_src = len(cols)
    src = _padded(cols)[:n_src]
    gz, hz, n, kk = _empty(ref)
    missing, infinite = np.zeros(n_src, dtype=np.int64), np.zeros(n_src, dtype=np.int64)
    ordered, _ = ar1_read_loop(src, xy_src, z_src, shifts, w_src, g, t, s, ok, ref["lag1_of"],
                               gz, hz, n, kk, np.zeros(g.size, dtype=np.uint8), missing,
                               infinite, np.zeros(n_src), np.zeros(2), *sizes(q, p + 1, n_src))
    assert not ordered
    rows = np.flatnonzero(ok)
    rows = rows[np.lexsort((t[rows], g[rows]))]
    gz, hz, n, kk = _empty(ref)
    pair = np.zeros(rows.size - 1, dtype=bool)
    ar1_columns_loop(src, xy_src, z_src, shifts, w_src, rows, g, t, s, ref["lag1_of"], gz, hz,
                     n, kk, pair, *sizes(q, p + 1, n_src))
    np.testing.assert_array_equal(n, ref["n"])
    np.testing.assert_array_equal(pair, ref["paired"][ref["use"]][1:].astype(bool))
    for name, ours in (("gz", gz), ("hz", hz), ("kk", kk)):
        _close(ours, ref[name])
