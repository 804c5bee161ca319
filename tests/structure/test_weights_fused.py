"""The fused one pass with precision weights (:mod:`dlmm.structure.fused`): the same
sums as the formula path, which scales the design's rows by √w (a brute-force check:
the sums are recomputed here from the weighted design with NumPy), Σ log w and the
count of zero or negative weights; models with components and weights take the
formula path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import dlmm
from dlmm.spec.plain_columns import plain_layout
from dlmm.structure.fused import fused_chunk

HERE = Path(__file__).resolve().parents[1] / "reference" / "weights"


def _model(frame, **kw):
    model = dlmm.mixedlm("Reaction ~ Days", frame, groups="Subject", re_formula="~Days",
                         weights="w", **kw)
    model.exog_names  # noqa: B018 -- learns the specification
    return model


def test_fused_sums_are_the_weighted_design_sums():
    frame = pd.read_csv(HERE / "sleepstudy_w.csv", dtype={"Subject": str})
    frame.loc[[2, 50], "w"] = [0.0, -1.0]  # left out and counted
    spec = _model(frame).spec
    keyed, totals = fused_chunk(frame, spec)
    assert (totals.bad_weights, totals.n_rows, totals.n_dropped) == (2, 178, 0)
    keep = frame["w"] > 0
    w = frame.loc[keep, "w"].to_numpy()
    np.testing.assert_allclose(totals.log_weights, np.log(w).sum(), rtol=1e-14)
    # brute force: the centred design times sqrt(w), then its cross-products per group
    c = spec.centering
    x = np.column_stack([np.ones(keep.sum()), frame.loc[keep, "Days"],
                         frame.loc[keep, "Reaction"]])
    xy = (x - c.xy_shift) / c.xy_scale * np.sqrt(w)[:, None]
    z = (x[:, :2] - c.z_shift) / c.z_scale * np.sqrt(w)[:, None]
    np.testing.assert_allclose(totals.xy_cross, xy.T @ xy, rtol=1e-12)
    groups = frame.loc[keep, "Subject"].to_numpy()
    for g, label in enumerate(keyed.labels):
        rows = groups == label
        np.testing.assert_allclose(keyed.cp.zz[g], z[rows].T @ z[rows], rtol=1e-12,
                                   atol=1e-12)
        np.testing.assert_allclose(keyed.cp.zr[g], z[rows].T @ xy[rows], rtol=1e-12,
                                   atol=1e-12)
        assert keyed.cp.n[g] == rows.sum()


def test_fused_component_sums_are_the_weighted_design_sums():
    """Components with weights: the indicator and the row are each times √w, so
    ``W'[Z X y]`` sums w times the centred row and ``W'W`` sums w; rows shuffled, so
    the loop orders them by group first."""
    frame = pd.read_csv(HERE / "pastes_w.csv").sample(frac=1.0, random_state=3)
    model = dlmm.mixedlm("strength ~ 1", frame, groups="batch", re_formula="1", weights="w",
                         vc_formula={"cask": "0 + C(cask)"})
    model.exog_names  # noqa: B018 -- learns the specification
    spec = model.spec
    assert plain_layout(spec) is not None
    keyed, totals = fused_chunk(frame, spec)
    c = spec.centering
    y = ((frame["strength"].to_numpy() - c.xy_shift[1]) / c.xy_scale[1])
    w = frame["w"].to_numpy()
    casks = list(spec.vc_column_names[0])
    for g, batch in enumerate(keyed.labels):
        rows = (frame["batch"] == batch).to_numpy()
        at = keyed.cp.wz_group == g
        slots = keyed.cp.wz_slot[at]
        for slot, wz, wr in zip(slots, keyed.cp.wz[at], keyed.cp.wr[at]):
            level = casks[slot].split("[")[1].rstrip("]")
            cell = rows & (frame["cask"] == level).to_numpy()
            np.testing.assert_allclose(wz, [w[cell].sum()], rtol=1e-12)  # Z: the intercept
            np.testing.assert_allclose(wr, [w[cell].sum(), (w[cell] * y[cell]).sum()],
                                       rtol=1e-12, atol=1e-12)
        pairs = keyed.cp.ww_group == g
        diagonal = keyed.cp.ww_slot_a[pairs] == keyed.cp.ww_slot_b[pairs]
        np.testing.assert_allclose(np.sort(keyed.cp.ww[pairs][diagonal]),
                                   np.sort([w[rows & (frame["cask"] == casks[s].split("[")[1]
                                            .rstrip("]")).to_numpy()].sum() for s in slots]),
                                   rtol=1e-12)
    np.testing.assert_allclose(totals.log_weights, np.log(w).sum(), rtol=1e-13)
