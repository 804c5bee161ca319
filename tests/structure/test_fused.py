"""The fused one pass: a plain model's per-group cross-products straight from its columns.

Checked against a brute force per group (the dense design of the usable rows, centred
as the specification says, ``A_i'A_i`` and ``A_i'[X_i y_i]`` by NumPy) on plain and
integer columns, string and float labels with missing and infinite ones, missing and
infinite values, sorted and shuffled groups, groups split across chunks, and
variance components; and for what it does not do: form a design, or factorize labels
that are already in order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlmm.distributed.local import LocalBackend
from dlmm.exceptions import InputError
from dlmm.spec.formula import FormulaSpec
from dlmm.structure.fused import fused_chunk
from dlmm.structure.grouped import chunk_crossproducts, design_crossproducts, one_pass

RTOL = 1e-12


def _frame(n: int = 1200, n_groups: int = 60, seed: int = 0) -> pd.DataFrame:
    """Rows written group by group (sorted integer labels); a response far from zero,
    a covariate of integers and one of large magnitude (so that the centring shifts and
    scales), two factors for variance components."""
    rng = np.random.default_rng(seed)
    g = np.sort(rng.integers(0, n_groups, n))
    return pd.DataFrame({
        "y": 1e4 + 50 * rng.normal(size=n) + g,
        "x1": rng.normal(size=n),
        "x2": rng.integers(-3, 4, n),
        "x3": 1e6 * rng.normal(size=n),
        "g": g,
        "c": rng.choice(["a", "b", "c", "d"], n),
        "h": rng.integers(0, 3, n),
    })


def _learned(frame: pd.DataFrame, formula: str, groups, learn_from=None, **kw) -> FormulaSpec:
    spec = FormulaSpec(formula, groups, **kw)
    source = frame if learn_from is None else learn_from
    levels = {c: sorted(source[c].dropna().unique().tolist())
              for c in spec.categorical_columns(source)}
    spec.learn_levels(source.head(400), levels)
    return spec


def _brute(frame: pd.DataFrame, spec: FormulaSpec, x_cols, z_cols, factors):
    """Per label: rows, ``G_i = A_i'A_i`` and ``H_i = A_i'[X_i y_i]`` (``A = [Z | W]``, W
    the indicators of every learned level of each factor), and ``K``, ``Z'Z``, the
    missing and infinite counts per model column, from the frame by NumPy."""
    cols = spec.columns
    na = frame[cols].isna()
    inf = pd.DataFrame({c: np.isinf(frame[c].to_numpy(dtype=float, na_value=np.nan))
                        if pd.api.types.is_float_dtype(frame[c]) else False for c in cols},
                       index=frame.index)
    used = frame[~(na | inf).any(axis=1)]
    c = spec.centering

    def design(names, shift, scale):
        raw = np.column_stack([np.ones(len(used)) if name is None else
                               used[name].to_numpy(dtype=float) for name in names])
        return (raw - shift) / scale

    xy = design(x_cols + [spec.response], c.xy_shift, c.xy_scale)
    z = design(z_cols, c.z_shift, c.z_scale) if z_cols else np.zeros((len(used), 0))
    w = [np.asarray(pd.get_dummies(pd.Categorical(used[f], categories=levels)), dtype=float)
         for f, levels in factors]
    a = np.hstack([z, *w])
    labels = used[spec.groups].to_numpy() if spec.groups else np.zeros(len(used))
    out = {}
    for label in pd.unique(labels):
        rows = labels == label
        out[label] = (rows.sum(), a[rows].T @ a[rows], a[rows].T @ xy[rows])
    return out, xy.T @ xy, z.T @ z, na.sum().to_numpy(float), inf.sum().to_numpy(float)


def _dense(keyed, k_re: int, n_slots: int):
    """Each label's dense ``G_i``, ``H_i`` from keyed cross-products."""
    cp = keyed.cp
    q, r = k_re + n_slots, cp.zr.shape[2]
    out = {}
    for i, label in enumerate(keyed.labels):
        g = np.zeros((q, q))
        h = np.zeros((q, r))
        g[:k_re, :k_re] = cp.zz[i]
        h[:k_re] = cp.zr[i]
        at = cp.wz_group == i
        pos = k_re + cp.wz_slot[at]
        g[pos, :k_re] = cp.wz[at]
        g[:k_re, pos] = cp.wz[at].T
        h[pos] = cp.wr[at]
        at = cp.ww_group == i
        g[k_re + cp.ww_slot_a[at], k_re + cp.ww_slot_b[at]] = cp.ww[at]
        out[label] = (cp.n[i], g, h)
    return out


def _close(got, want, scale):
    """``|got - want| <= RTOL * scale`` entry by entry (``scale``: the products' size,
    sqrt(diag) x sqrt(diag), so that sums that cancel are judged by their terms)."""
    np.testing.assert_array_less(np.abs(got - want), RTOL * scale + 1e-300)


def _check(keyed, totals, brute, k_re, n_slots, n_rows):
    per_group, k, zc, missing, infinite = brute
    dense = _dense(keyed, k_re, n_slots)
    assert sorted(dense) == sorted(per_group)
    assert list(keyed.labels) == sorted(per_group)  # labels sorted, as the blocks want
    for label, (n, g, h) in per_group.items():
        got_n, got_g, got_h = dense[label]
        assert got_n == n
        dg = np.sqrt(np.diag(g))
        _close(got_g, g, np.outer(dg, dg))
        _close(got_h, h, np.outer(dg, np.sqrt(np.diag(k))))
    dk = np.sqrt(np.diag(k))
    _close(totals.xy_cross, k, np.outer(dk, dk))
    dz = np.sqrt(np.diag(zc))
    _close(totals.z_cross, zc, np.outer(dz, dz))
    np.testing.assert_array_equal(totals.missing_by_column, missing)
    np.testing.assert_array_equal(totals.infinite_by_column, infinite)
    assert totals.n_rows == sum(v[0] for v in per_group.values())
    assert totals.n_dropped == n_rows - totals.n_rows


def _spoiled(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing and infinite values in the response, a covariate, a factor and the
    labels (float labels: NaN and inf), and a label whose every row is unusable."""
    out = frame.copy()
    out["g"] = out["g"].astype(float)
    out.loc[[3, 40], "y"] = np.nan
    out.loc[7, "x1"] = np.inf
    out.loc[8, "x3"] = -np.inf
    out.loc[11, "g"] = np.nan
    out.loc[12, "g"] = np.inf
    out.loc[15, "c"] = None
    lonely = out["g"].max() + 1
    out.loc[len(out)] = {"y": np.nan, "x1": 0.0, "x2": 1, "x3": 0.0, "g": lonely, "c": "a",
                         "h": 1}
    return out


CASES = {
    # name: (formula, groups, kwargs, X columns, Z columns, factors, frame transform)
    "plain_sorted": ("y ~ x1 + x2 + x3", "g", {"re_formula": "~x1"},
                     [None, "x1", "x2", "x3"], [None, "x1"], [], None),
    "plain_shuffled": ("y ~ x1 + x2 + x3", "g", {"re_formula": "~x1 + x3"},
                       [None, "x1", "x2", "x3"], [None, "x1", "x3"], [],
                       lambda f: f.sample(frac=1, random_state=1)),
    "no_intercept_random_intercept": ("y ~ 0 + x1 + x2", "g", {},
                                      ["x1", "x2"], [None], [], None),
    "missing_and_infinite": ("y ~ x1 + x2 + x3", "g", {"re_formula": "~x1"},
                             [None, "x1", "x2", "x3"], [None, "x1"], [], _spoiled),
    "string_labels_unsorted": ("y ~ x1 + x2", "g", {"re_formula": "~x1"},
                               [None, "x1", "x2"], [None, "x1"], [],
                               lambda f: f.assign(g=np.where(f["g"] == 5, None, "s" + (
                                   59 - f["g"]).astype(str)))),
    "components_sorted": ("y ~ x1", "g", {"re_formula": "~x1", "vc_formula": {"c": "0 + C(c)"}},
                          [None, "x1"], [None, "x1"], ["c"], None),
    "components_shuffled_missing": ("y ~ x1 + x3", "g",
                                    {"re_formula": "1",
                                     "vc_formula": {"c": "0 + C(c)", "h": "0 + C(h)"}},
                                    [None, "x1", "x3"], [None], ["c", "h"],
                                    lambda f: _spoiled(f).sample(frac=1, random_state=2)),
    "one_group": ("y ~ x1", None, {"re_formula": "~x1"}, [None, "x1"], [None, "x1"], [], None),
    "one_group_components": ("y ~ x1", None,
                             {"re_formula": "~x1", "vc_formula": {"h": "0 + C(h)"}},
                             [None, "x1"], [None, "x1"], ["h"], _spoiled),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_chunk_is_the_brute_force_per_group(case):
    formula, groups, kw, x_cols, z_cols, factor_cols, transform = CASES[case]
    frame = _frame()
    data = transform(frame) if transform else frame
    spec = _learned(data, formula, groups, learn_from=frame.dropna(), **kw)
    fused = fused_chunk(data, spec)
    assert fused is not None
    factors = [(f, spec.levels[f]) for f in factor_cols]
    n_slots = sum(len(levels) for _, levels in factors)
    _check(*fused, _brute(data, spec, x_cols, z_cols, factors), len(z_cols), n_slots,
           len(data))
    # and the formula path's numbers, array by array (same keys, same order)
    old = design_crossproducts(data, spec)
    keyed, totals = fused
    assert keyed.labels.dtype == old.keyed.labels.dtype
    for name in ("n", "wz_group", "wz_slot", "ww_group", "ww_slot_a", "ww_slot_b", "ww"):
        np.testing.assert_array_equal(getattr(keyed.cp, name), getattr(old.keyed.cp, name))
    for name in ("zz", "zr", "wz", "wr"):
        got, want = getattr(keyed.cp, name), getattr(old.keyed.cp, name)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.abs(want).max(initial=1.0))


def test_groups_split_across_chunks_add_up(tmp_path):
    """Chunks of 97 rows cut groups in two, in sorted and in shuffled data: the blocks
    of the one pass hold each group's whole sums."""
    frame = _spoiled(_frame(n=900, n_groups=40, seed=3))
    kw = {"re_formula": "~x1", "vc_formula": {"c": "0 + C(c)"}}
    for data in (frame, frame.sample(frac=1, random_state=4)):
        spec = _learned(data, "y ~ x1 + x2", "g", learn_from=frame.dropna(), **kw)
        stats = one_pass(spec, LocalBackend(data, chunk_rows=97))
        assert stats.shuffled
        per_group, *_ = brute = _brute(data, spec, [None, "x1", "x2"], [None, "x1"],
                                       [("c", spec.levels["c"])])
        assert stats.n_groups == len(per_group)
        got = {}
        for block in stats.blocks:
            for batch in block.batches:
                for j, i in enumerate(batch.index):
                    q = batch.g.shape[1]
                    slots = batch.slots[j]
                    g = np.zeros((2 + 4, 2 + 4))
                    h = np.zeros((2 + 4, 4))
                    at = np.r_[0, 1, 2 + slots[slots >= 0]]
                    keep = np.r_[True, True, slots >= 0][:q]
                    g[np.ix_(at, at)] = batch.g[j][np.ix_(keep, keep)]
                    h[at] = batch.h[j][keep]
                    got[block.labels[i]] = (block.n[i], g, h)
        for label, (n, g, h) in per_group.items():
            assert got[label][0] == n
            dg = np.sqrt(np.diag(g))
            _close(got[label][1], g, np.outer(dg, dg))
            _close(got[label][2], h, np.outer(dg, np.sqrt(np.diag(brute[1]))))
        dk = np.sqrt(np.diag(brute[1]))
        _close(stats.totals.xy_cross, brute[1], np.outer(dk, dk))
        np.testing.assert_array_equal(stats.totals.missing_by_column, brute[3])


def test_a_plain_model_forms_no_design_and_sorted_labels_no_factorize(monkeypatch):
    """No design matrix per chunk where the model is made of plain columns, and labels
    already in order are read as runs: neither ``spec.design`` nor
    ``pandas.factorize`` runs (the formula path calls both)."""
    frame = _frame()
    spec = _learned(frame, "y ~ x1 + x2 + x3", "g", re_formula="~x1",
                    vc_formula={"c": "0 + C(c)"})

    def refused(*args, **kwargs):
        raise AssertionError("called")

    monkeypatch.setattr(FormulaSpec, "design", refused)
    monkeypatch.setattr(pd, "factorize", refused)
    result = chunk_crossproducts(frame, spec)
    np.testing.assert_array_equal(result.keyed.labels, np.unique(frame["g"]))
    assert result.totals.n_rows == len(frame)


@pytest.mark.parametrize("formula, kw, column", [
    ("y ~ x1 + C(c)", {}, None),  # a factor in X
    ("y ~ np.log(x2 + 10) + x1", {}, None),  # a transform
    ("y ~ x1", {"vc_formula": {"c": "0 + C(c):x1"}}, None),  # not an indicator component
    ("y ~ x1 + x2", {}, "x2"),  # a nullable integer column in the chunk
])
def test_other_models_and_columns_take_the_formula_path(formula, kw, column):
    frame = _frame()
    spec = _learned(frame, formula, "g", **kw)
    data = frame.assign(**{column: frame[column].astype("Int64")}) if column else frame
    assert fused_chunk(data, spec) is None
    assert chunk_crossproducts(data, spec).totals.n_rows == len(frame)


def test_a_value_too_large_is_the_formula_paths_error():
    frame = _frame()
    spec = _learned(frame, "y ~ x1 + x3", "g", re_formula="~x1")
    frame.loc[17, "x3"] = 3e70
    with pytest.raises(InputError) as fused:
        fused_chunk(frame, spec)
    with pytest.raises(InputError) as old:
        design_crossproducts(frame, spec)
    assert str(fused.value) == str(old.value)
    assert "'x3'" in str(fused.value)
