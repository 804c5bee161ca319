"""The fused pass's compiled loop (``fused_crossproducts``) against NumPy, per group.

The loop works :data:`~dlmm.kernels.crossprod_loops.BLOCK_ROWS` rows at a time and sums
a group's products :data:`~dlmm.kernels.crossprod_loops.LANES` design columns at a time:
the cases cut groups across blocks, have more design columns than one lane set (and
fewer), runs of a label in several places (unsorted), rows without a label, NaN and
±inf values, precision weights, and a value too large on a row that is left out (it
must not count in the column's largest magnitude).
"""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossprod import fused_crossproducts
from dlmm.kernels.crossprod_loops import BLOCK_ROWS, LANES


def _case(seed: int, n_rows: int, n_src: int, xy_src, z_src, sorted_runs: bool,
          weights: bool):
    rng = np.random.default_rng(seed)
    cols = [100.0 + rng.normal(size=n_rows) * (j + 1) for j in range(n_src)]
    w_src = -1
    if weights:
        w_src = n_src
        w = rng.uniform(0.2, 3.0, n_rows)
        w[rng.choice(n_rows, 4, replace=False)] = rng.choice([0.0, -1.0], 4)
        cols.append(w)
    # NaN and infinite values in every source but the weights (a row may have several)
    for j in range(n_src):
        cols[j][rng.choice(n_rows, 3, replace=False)] = np.nan
        cols[j][rng.choice(n_rows, 2, replace=False)] = rng.choice([np.inf, -np.inf], 2)
    # runs of labels: lengths from 1 to well over a block
    lengths = []
    while sum(lengths) < n_rows:
        lengths.append(int(rng.choice([1, 2, 7, 19, 40, BLOCK_ROWS - 1, BLOCK_ROWS + 3,
                                       3 * BLOCK_ROWS])))
    lengths[-1] -= sum(lengths) - n_rows
    lengths = [x for x in lengths if x > 0]
    n_groups = max(2, len(lengths) // 2 if not sorted_runs else len(lengths))
    if sorted_runs:
        run_code = np.arange(len(lengths)) % n_groups
    else:
        run_code = rng.integers(0, n_groups, len(lengths))
    run_code[rng.choice(len(lengths), 2, replace=False)] = -1  # labels missing
    seg_start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    shifts = (rng.normal(size=len(xy_src)) * 50, 2.0 ** rng.integers(-2, 3, len(xy_src)),
              rng.normal(size=len(z_src)) * 50, 2.0 ** rng.integers(-2, 3, len(z_src)))
    return (tuple(np.ascontiguousarray(c) for c in cols), np.array(xy_src), np.array(z_src),
            shifts, seg_start, run_code.astype(np.int64), n_groups, w_src)


def _brute(cols, xy_src, z_src, shifts, seg_start, seg_code, n_groups, w_src):
    n_rows = seg_start[-1]
    codes = np.repeat(seg_code, np.diff(seg_start))
    sources = np.column_stack(cols)  # the weights are a source too
    values = np.column_stack([sources, np.ones(n_rows)])  # source -1: the intercept
    finite = np.isfinite(sources)
    ok = finite.all(axis=1) & (codes >= 0)
    sw = np.ones(n_rows)
    if w_src >= 0:
        w = cols[w_src]
        bad_w = ok & ~(w > 0)
        ok &= w > 0
        sw = np.sqrt(np.where(ok, w, 1.0))
    xy = (values[:, xy_src] - shifts[0]) / shifts[1] * sw[:, None]
    z = (values[:, z_src] - shifts[2]) / shifts[3] * sw[:, None]
    xy, z = xy[ok], z[ok]
    c = codes[ok]
    n = np.bincount(c, minlength=n_groups).astype(float)
    zz = np.zeros((n_groups, len(z_src), len(z_src)))
    zr = np.zeros((n_groups, len(z_src), len(xy_src)))
    for g in range(n_groups):
        rows = c == g
        zz[g] = z[rows].T @ z[rows]
        zr[g] = z[rows].T @ xy[rows]
    peak = np.array([np.abs(sources[ok, j]).max() for j in range(sources.shape[1])])
    out = dict(n=n, zz=zz, zr=zr, kk=xy.T @ xy, zc=z.T @ z, peak=peak,
               missing=np.isnan(sources).sum(axis=0).astype(float),
               infinite=np.isinf(sources).sum(axis=0).astype(float), n_used=int(ok.sum()))
    if w_src >= 0:
        out["log_weights"] = float(np.log(cols[w_src][ok]).sum())
        out["bad_weights"] = int(bad_w.sum())
    return out


CASES = {
    # name: (rows, sources, xy_src, z_src, sorted runs, weights)
    "slope_sorted": (5000, 3, [-1, 0, 1, 2], [-1, 0], True, False),
    "wide_unsorted": (4000, 6, [-1, 0, 1, 2, 3, 4, 5, 1], [-1, 0, 3, 5], False, False),
    "no_intercept_weighted": (3000, 2, [0, 1], [1], False, True),
    "one_row_short_of_blocks": (2 * BLOCK_ROWS - 1, 2, [-1, 0, 1], [-1], True, True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_loop_is_the_numpy_sums(case):
    n_rows, n_src, xy_src, z_src, sorted_runs, weights = CASES[case]
    args = _case(len(case), n_rows, n_src, xy_src, z_src, sorted_runs, weights)
    cols, xy, z, shifts, seg_start, seg_code, n_groups, w_src = args
    if case == "wide_unsorted":
        assert len(xy) + len(z) > LANES  # two sets of lanes
    grouped = len(np.unique(seg_code[seg_code >= 0])) == (seg_code >= 0).sum()
    got = fused_crossproducts(cols, xy, z, shifts, seg_start, seg_code, n_groups,
                              grouped=grouped, weights_src=w_src)
    want = _brute(*args)
    np.testing.assert_array_equal(got.cp.n, want["n"])
    scale_z = np.sqrt(np.diag(want["zc"]))
    scale_xy = np.sqrt(np.diag(want["kk"]))
    for name, g, w, sa, sb in (("zz", got.cp.zz, want["zz"], scale_z, scale_z),
                               ("zr", got.cp.zr, want["zr"], scale_z, scale_xy),
                               ("kk", got.xy_cross, want["kk"], scale_xy, scale_xy),
                               ("zc", got.z_cross, want["zc"], scale_z, scale_z)):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12 * np.outer(sa, sb).max(),
                                   err_msg=name)
    np.testing.assert_array_equal(got.peak, want["peak"])
    np.testing.assert_array_equal(got.missing, want["missing"])
    np.testing.assert_array_equal(got.infinite, want["infinite"])
    assert got.n_used == want["n_used"]
    if weights:
        assert got.log_weights == pytest.approx(want["log_weights"], rel=1e-12)
        assert got.bad_weights == want["bad_weights"]


def test_a_huge_value_on_a_row_left_out_is_not_a_peak():
    """The largest magnitude is over the usable rows: 1e300 on a row whose other column
    is NaN (or whose label is missing) does not count; on a usable row it does."""
    x = np.array([1.0, -3.0, 1e300, 2.0, -1e250, 0.5])
    y = np.array([0.0, 1.0, np.nan, 1.0, 1.0, -7.0])
    seg_start = np.array([0, 4, 5, 6])
    seg_code = np.array([0, -1, 1])
    got = fused_crossproducts((x, y), np.array([-1, 1]), np.array([-1, 0]),
                              (np.zeros(2), np.ones(2), np.zeros(2), np.ones(2)),
                              seg_start, seg_code, 2)
    assert got.peak.tolist() == [3.0, 7.0]
    x[3] = -1e200
    got = fused_crossproducts((x, y), np.array([-1, 1]), np.array([-1, 0]),
                              (np.zeros(2), np.ones(2), np.zeros(2), np.ones(2)),
                              seg_start, seg_code, 2)
    assert got.peak.tolist() == [1e200, 7.0]


def test_number_runs_are_those_of_the_comparison():
    """Runs of equal numbers, a flagged row (missing, infinite) a run of its own: the
    starts NumPy's ``values[1:] != values[:-1]`` gives, for integers and floats."""
    from dlmm.kernels.crossprod_loops import number_runs

    rng = np.random.default_rng(3)
    ints = np.repeat(rng.integers(0, 5, 40), rng.integers(1, 4, 40))
    floats = ints.astype(float)
    floats[[3, 4, 10]] = [np.nan, np.nan, np.inf]
    for values in (ints, floats):
        bad = ~np.isfinite(values.astype(float))
        change = (values[1:] != values[:-1]) | bad[1:] | bad[:-1]
        want = np.concatenate([[0], np.flatnonzero(change) + 1, [len(values)]])
        np.testing.assert_array_equal(number_runs(values, bad), want)
    np.testing.assert_array_equal(number_runs(np.zeros(0), np.zeros(0, bool)), [0, 0])
