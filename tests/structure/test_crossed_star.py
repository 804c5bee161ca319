"""lme4's fit of Tennessee STAR (students x teachers x schools) through the crossed engine.

mlmRev's ``star`` (``tests/kernels/crossed/data/star.csv.gz``: the rows with every
model column, 24,578 rows; 10,732 students x 1,374 teachers x 80 schools, teachers
nested in schools) and lme4 1.1-31's REML fit of ``math ~ gr + sx + eth + cltype +
(1 | id) + (1 | tch) + (1 | sch)`` (``star_lme4.json``, from ``star_lme4.R``). The
Schur complement of teachers and schools (1,454 rows) is factored sparse: this is
the sparse path end to end (value, gradient, modes, their variances).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.bench.crossed import STAR_FORMULA

DATA = Path(__file__).resolve().parents[1] / "kernels" / "crossed" / "data"
VC = {"id": "0 + C(id)", "tch": "0 + C(tch)", "sch": "0 + C(sch)"}


@functools.cache
def _lme4() -> dict:
    return json.loads((DATA / "star_lme4.json").read_text())


@functools.cache
def _model():
    data = pd.read_csv(DATA / "star.csv.gz", dtype={"gr": str})
    model = dlmm.mixedlm(STAR_FORMULA, data, groups=None, re_formula="0", vc_formula=VC)
    return model, model.fit(reml=True)


def test_star_is_factored_sparse_and_converges():
    model, result = _model()
    assert result.engine == "crossed" and result.converged is True
    system = model._stats.system
    assert system.dense_size == 1374 + 80
    assert system.sparse is not None
    assert system.sparse.nnz < 0.05 * system.dense_size ** 2 / 2
    assert result.nobs == _lme4()["nobs"]


def test_star_llf_estimates_and_errors_match_lme4():
    _, result = _model()
    ref = _lme4()
    assert result.llf == pytest.approx(ref["llf"], rel=1e-6)
    assert result.llf >= ref["llf"] - 1e-7 * abs(ref["llf"])
    for j, comp in enumerate(result.vc_names):
        assert result.vcomp[j] == pytest.approx(ref["vcomp"][comp], rel=1e-4), comp
    assert result.scale == pytest.approx(ref["scale"], rel=1e-4)
    names = list(ref["fe_params"])
    fe = result.fe_params.rename(
        lambda c: "(Intercept)" if c == "Intercept" else c.replace("[T.", "").replace("]", ""))
    for coef in names:  # 1e-6 relative, or of its standard error for one near zero
        assert fe[coef] == pytest.approx(ref["fe_params"][coef], rel=1e-6,
                                         abs=1e-6 * ref["bse_fe"][coef]), coef
    # lme4's vcov (scale * S_XX^{-1}) from the exact fixed-effects block of the Hessian
    p = len(names)
    order = [list(fe.index).index(c) for c in names]
    vcov = np.linalg.inv(-np.asarray(result.hessian)[:p, :p])[np.ix_(order, order)]
    np.testing.assert_allclose(np.sqrt(np.diag(vcov)), [ref["bse_fe"][c] for c in names],
                               rtol=1e-4)


def test_star_conditional_modes_and_variances_match_lme4():
    _, result = _model()
    ref = _lme4()
    table = result.vc_effects_table()
    for comp in result.vc_names:
        rows = table[table["component"] == comp]
        levels = rows["column"].str.extract(r"^C\(\w+\)\[(.*)\]$")[0]
        keep = levels.isin(list(ref["modes"][comp])).to_numpy()
        assert keep.sum() == len(ref["modes"][comp])
        want = levels[keep].map(ref["modes"][comp]).to_numpy(dtype=float)
        np.testing.assert_allclose(rows["effect"].to_numpy()[keep], want, rtol=0, atol=1e-3)
        var = levels[keep].map(ref["postvar"][comp]).to_numpy(dtype=float)
        np.testing.assert_allclose(rows["variance"].to_numpy()[keep], var, rtol=1e-3)
