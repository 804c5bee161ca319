"""The term model (``dlmm.spec.terms``): both spellings compiled to one list of terms,
lme4's θ layout, names and VarCorr rows, and the Λ maps the engines read.

lme4's numbers: ``tests/reference/lmer_cases.json`` and ``lme4_features.json`` (read
here), and lme4 1.1-31's fits of the nested designs of issue 22 (``LME4_NESTED``
below: ``getME(m, "theta")`` with its names and lower bounds, ``getME(m, "cnms")``,
``ngrps(m)``, ``sigma(m)^2`` and ``as.data.frame(VarCorr(m))``, copied from
``tests/reference/nested/lme4_nested.json``, made by ``lme4_nested.R`` there).
statsmodels' own likelihood checks that the statsmodels view means statsmodels' model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlmm.exceptions import InputError
from dlmm.spec.lme4_terms import translate
from dlmm.spec.terms import (
    RandomTerm,
    RandomTerms,
    canonical_formula,
    from_lmer,
    from_statsmodels,
    r_make_names,
)

REFERENCE = Path(__file__).resolve().parents[1] / "reference"

#: lme4's numbers of the nested cases (tests/reference/nested/lme4_nested.json), as
#: these tests read them: the term names and columns in θ's order, VarCorr's rows.
LME4_NESTED = {
    key: dict(lmer=case["lmer"], ngroups=case["ngroups"],
              factors=[t["factor"] for t in case["terms"]],
              columns=[t["columns"] for t in case["terms"]],
              theta_names=case["theta_names"], theta_lower=case["theta_lower"],
              theta=case["theta"], scale=case["scale"],
              varcorr=[(r["grp"], r["var1"], r["var2"] or "", r["vcov"], r["sdcor"])
                       for r in case["varcorr"]])
    for key, case in json.loads(
        (REFERENCE / "nested" / "lme4_nested.json").read_text())["cases"].items()}


def _terms(terms) -> list:
    return [(t.factor, t.formula, t.structure, t.name) for t in terms]


U, S = "unstructured", "scalar"


# -- lme4's spelling -------------------------------------------------------------------

#: lme4 formulas: the terms each reads to, and whether statsmodels' options can state
#: it (``translate``: then its statsmodels view is the restatement's; else it is a model
#: of terms only, with no statsmodels view). The one table of lme4 spellings below.
LME4_FORMULAS = {
    "y ~ x + (x | g)": ([(("g",), "1 + x", U, "g")], True),
    "y ~ x + (1 + x | g)": ([(("g",), "1 + x", U, "g")], True),
    "y ~ x + (0 + x | g)": ([(("g",), "0 + x", U, "g")], True),
    "y ~ x + (x - 1 | g)": ([(("g",), "0 + x", U, "g")], True),
    # lme4 expands || into one term per effect, all on g
    "y ~ x + (x || g)": ([(("g",), "1", U, "g"), (("g",), "0 + x", U, "g")], True),
    "y ~ x + (x + z || g)": (
        [(("g",), "1", U, "g"), (("g",), "0 + x", U, "g"), (("g",), "0 + z", U, "g")], True),
    "y ~ x + (0 + x + z | g) + (1 | g)": (
        [(("g",), "0 + x + z", U, "g"), (("g",), "1", U, "g")], True),
    "y ~ 1 + (1 | g1/g2)": (
        [(("g1",), "1", U, "g1"), (("g1", "g2"), "1", U, "g2:g1")], True),
    "y ~ 1 + (1 | batch/cask)": (
        [(("batch",), "1", U, "batch"), (("batch", "cask"), "1", U, "cask:batch")], True),
    "y ~ 1 + (1 | g1:g2)": ([(("g1", "g2"), "1", U, "g1:g2")], True),
    "y ~ x + (x | dept:service)": ([(("dept", "service"), "1 + x", U, "dept:service")], True),
    "y ~ x + (x | g) + (1 | g:h)": (
        [(("g",), "1 + x", U, "g"), (("g", "h"), "1", U, "g:h")], True),
    "y ~ 1 + (1 | a/b/c)": ([(("a",), "1", U, "a"), (("a", "b"), "1", U, "b:a"),
                             (("a", "b", "c"), "1", U, "c:b:a")], True),
    "y ~ 1 + (1 | g/h) + (1 | s)": (
        [(("g",), "1", U, "g"), (("g", "h"), "1", U, "h:g"), (("s",), "1", U, "s")], True),
    "y ~ x + (x || g) + (1 | g:h)": (
        [(("g",), "1", U, "g"), (("g",), "0 + x", U, "g"), (("g", "h"), "1", U, "g:h")],
        True),
    "y ~ service + (1 | s) + (1 | d)": ([(("s",), "1", U, "s"), (("d",), "1", U, "d")], True),
    # columns in backticks stay formulas; R's ^ in a call is a power
    "y ~ 1 + (`my x` | `my g`)": ([(("my g",), "1 + `my x`", U, "my g")], True),
    "y ~ 1 + (I(x^2) || g)": (
        [(("g",), "1", U, "g"), (("g",), "0 + I(x ** 2)", U, "g")], True),
    # beyond statsmodels' shape: several blocks on a factor, slopes at a nested level,
    # three levels, a slope beside a crossed factor
    "y ~ x + (x | g) + (0 + z + w | g)": (
        [(("g",), "1 + x", U, "g"), (("g",), "0 + z + w", U, "g")], False),
    "y ~ x + (x | school) + (x | school:class)": (
        [(("school",), "1 + x", U, "school"),
         (("school", "class"), "1 + x", U, "school:class")], False),
    "y ~ x + (1 | g) + (x | g:h)": (
        [(("g",), "1", U, "g"), (("g", "h"), "1 + x", U, "g:h")], False),
    "y ~ x + (1 | a) + (x | a:b) + (1 | a:b:c)": (
        [(("a",), "1", U, "a"), (("a", "b"), "1 + x", U, "a:b"),
         (("a", "b", "c"), "1", U, "a:b:c")], False),
    "y ~ x + (x | s) + (1 | d)": ([(("s",), "1 + x", U, "s"), (("d",), "1", U, "d")], False),
}
COLUMNS = ["y", "x", "z", "w", "g", "h", "g1", "g2", "school", "class", "a", "b", "c", "s",
           "d", "service", "my x", "my g", "batch", "cask", "dept"]
STATSMODELS_SHAPED = [f for f, (_, shaped) in LME4_FORMULAS.items() if shaped]
TERMS_ONLY = [f for f, (_, shaped) in LME4_FORMULAS.items() if not shaped]
#: (the restatement of a backticked column names it bare, '1 + my x', which only the
#: data's columns let formulaic read: its view is checked by the lmer tests instead)
VIEWED = [f for f in STATSMODELS_SHAPED if "`" not in f]


@pytest.mark.parametrize("formula", sorted(LME4_FORMULAS))
def test_lme4_spellings(formula):
    fixed, terms = from_lmer(formula, COLUMNS)
    assert fixed == formula.split(" + (")[0]
    assert _terms(terms) == LME4_FORMULAS[formula][0]
    assert all(t.source in formula for t in terms)


def test_the_fixed_part_is_lme4s():
    assert from_lmer("y ~ I(x^2) + (1 | g) - 1")[0] == "y ~ I(x**2) - 1"
    assert from_lmer("y ~ (1 | g)")[0] == "y ~ 1"


@pytest.mark.parametrize("formula, words", [
    ("y ~ x", ["no random-effect term"]),
    ("y ~ x + offset(z) + (1 | g)", ["offset() terms are not supported"]),
    ("y ~ x - (1 | g)", ["(1 | g)", "added with '+'"]),
    ("y ~ x + (0 | g)", ["(0 | g)", "no effects"]),
    ("y ~ x + (1 | g + h)", ["(1 | g + h)", "column names joined by ':' or '/'"]),
    ("y ~ x + (1 | nope)", ["(1 | nope)", "'nope' is not in the data"]),
    # the same effect twice on one factor: only the sum of the variances is identified
    ("y ~ x + (1 | g) + (1 | g)", ["(1 | g)", "'(Intercept)' on g appears twice"]),
    ("y ~ x + (x | g) + (z | g)", ["(z | g)", "'(Intercept)' on g appears twice"]),
    ("y ~ x + (x || g) + (0 + x | g)", ["(0 + x | g)", "'x' on g appears twice"]),
    ("y ~ x + (1 | g:h) + (1 | h:g)", ["(1 | h:g)", "appears twice"]),
])
def test_lme4_refusals_name_the_term(formula, words):
    with pytest.raises(InputError) as info:
        from_lmer(formula, ["y", "x", "z", "g", "h"])
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("formula", TERMS_ONLY)
def test_what_the_restatement_refused_is_a_model_of_terms(formula):
    with pytest.raises(InputError):
        translate(formula, COLUMNS)
    assert len(from_lmer(formula)[1]) == len(LME4_FORMULAS[formula][0])


# -- statsmodels' spelling -------------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, expected", [
    (("g",), {}, [(("g",), "1", U, "g")]),
    (("g", "1+x"), {}, [(("g",), "1 + x", U, "g")]),
    (("g", "~ 0 + x"), {}, [(("g",), "0 + x", U, "g")]),
    (("g", "0"), {}, []),
    # an indicator component: an intercept per level of h within each group
    (("g", "1+x", {"h": "0 + C(h)"}), {},
     [(("g",), "1 + x", U, "g"), (("g", "h"), "1", S, "h")]),
    (("g", None, {"h": "C(h) - 1"}), {}, [(("g", "h"), "1", S, "h")]),
    (("g", "1", {"h": "0 + h"}), {"categorical": ["h"]},
     [(("g",), "1", U, "g"), (("g", "h"), "1", S, "h")]),
    (("g", "1", {"h": "0 + h"}), {}, [(("g",), "1", U, "g"), (("g",), "0 + h", S, "h")]),
    (("g", "1", {"c": "0 + C(h):C(c)", "hx": "0 + C(h):x"}), {},
     [(("g",), "1", U, "g"), (("g", "h", "c"), "1", S, "c"), (("g", "h"), "0 + x", S, "hx")]),
    # any other component: one variance shared by its columns within each group
    (("g", "1", {"xz": "0 + x + z"}), {},
     [(("g",), "1", U, "g"), (("g",), "0 + x + z", S, "xz")]),
    (("g", "1", {"one": "1"}), {}, [(("g",), "1", U, "g"), (("g",), "1", S, "one")]),
    # crossed: groups=None, one group holding every row; components in name order
    ((None, "0", {"s": "0 + C(s)", "d": "0 + C(d)"}), {},
     [(("d",), "1", S, "d"), (("s",), "1", S, "s")]),
])
def test_statsmodels_spellings(args, kwargs, expected):
    assert _terms(from_statsmodels(*args, **kwargs)) == expected


def test_statsmodels_arrays_are_terms_of_named_columns():
    terms = from_statsmodels("g", exog_re_names=["const", "x"],
                             exog_vc_names={"b": ["b[0]", "b[1]"], "a": ["a[0]"]},
                             group_name="Group")
    assert [(t.factor, t.formula, t.columns, t.structure, t.name) for t in terms] == [
        (("g",), None, ("const", "x"), U, "Group"), (("g",), None, ("a[0]",), S, "a"),
        (("g",), None, ("b[0]", "b[1]"), S, "b")]
    layout = terms.layout()
    assert layout.q == (5,) and layout.n_theta == 5
    assert layout.names == ("Group.const", "Group.x.const", "Group.x", "a.a[0]", "b.(sd)")
    # statsmodels' exog_re=None with components: no standard random effects
    assert _terms(from_statsmodels("g", exog_re_names=[], exog_vc_names={"a": ["a[0]"]})) \
        == [(("g",), None, S, "a")]


@pytest.mark.parametrize("statsmodels, lme4", [
    (("g", "1+x", {"h": "0 + C(h)"}), "y ~ (x | g) + (1 | g:h)"),
    (("batch", "1", {"cask": "0 + C(cask)"}), "y ~ (1 | batch/cask)"),
    ((None, "0", {"d": "0 + C(d)", "s": "0 + C(s)"}), "y ~ (1 | d) + (1 | s)"),
    (("g", "1", {"x": "0 + x"}), "y ~ (x || g)"),
    (("g", "0 + x", {"h": "0 + C(h)", "hx": "0 + C(h):x"}),
     "y ~ (0 + x | g) + (1 | g:h) + (0 + x | g:h)"),
])
def test_both_spellings_give_the_same_model(statsmodels, lme4):
    a, b = from_statsmodels(*statsmodels), from_lmer(lme4)[1]
    assert a.layout().signature() == b.layout().signature()
    assert a.nesting() == b.nesting()
    assert a.layout().n_theta == b.layout().n_theta


def test_canonical_formulas():
    assert canonical_formula("~ 1+x") == "1 + x"
    assert canonical_formula("x") == "1 + x"
    assert canonical_formula("-1 + x*z") == "0 + x + z + x:z"
    assert canonical_formula("0") is None
    with pytest.raises(ValueError):
        RandomTerm(("g",), "1", "compound")


# -- factors and nesting ---------------------------------------------------------------

@pytest.mark.parametrize("formula, chain", [
    ("y ~ (x | school) + (x | school:class)", (("school",), ("school", "class"))),
    ("y ~ (1 | h:g) + (1 | g)", (("g",), ("g", "h"))),
    ("y ~ (1 | a/b/c)", (("a",), ("a", "b"), ("a", "b", "c"))),
    ("y ~ (1 | a:b:c) + (x | a)", (("a",), ("a", "b", "c"))),
    ("y ~ (x || g) + (0 + z | g)", (("g",),)),
    ("y ~ (1 | s) + (1 | d)", None),
    ("y ~ (1 | g/h) + (1 | s)", None),
    ("y ~ (1 | g:h) + (1 | g:k)", None),
])
def test_nesting_as_written(formula, chain):
    assert from_lmer(formula)[1].nesting() == chain


def test_a_nesting_only_the_data_shows_is_a_candidate_ordered_by_levels():
    # mlmRev::egsingle: childid labels are unique across schools (lme4 found them nested)
    terms = from_lmer(LME4_NESTED["egsingle_reml"]["lmer"])[1]
    assert terms.nesting() is None
    assert terms.factors == (("childid",), ("schoolid",))
    ngroups = LME4_NESTED["egsingle_reml"]["ngroups"]
    assert terms.nesting_candidate(ngroups) == (("schoolid",), ("childid",))
    layout = terms.layout(levels=terms.nesting_candidate(ngroups))
    assert layout.term_level == (1, 0) and not layout.nested
    sim = from_lmer("y ~ (x | g) + (x | g:h)")[1]
    assert sim.nesting_candidate({"g": 40, "g:h": 200}) == sim.nesting()


def test_r_make_names():
    assert r_make_names(["g:h", "g", "g"]) == ["g.h", "g", "g.1"]
    assert r_make_names(["1a", "_b", "if"]) == ["X1a", "X_b", "if."]
    # R 4 (Debian): make.names(c("repeat", "None", "NA", "g:h", "g", "g", "g.1", "if",
    # "1a", "_b"), unique = TRUE): R's reserved words, not Python's keywords
    assert r_make_names(["repeat", "None", "NA", "g:h", "g", "g", "g.1", "if", "1a", "_b"]) == [
        "repeat.", "None", "NA.", "g.h", "g", "g.2", "g.1", "if.", "X1a", "X_b"]


# -- lme4's θ: layout, names, VarCorr --------------------------------------------------

def _lme4_layout(case):
    terms = from_lmer(case["lmer"])[1].lme4_order(case["ngroups"])
    return terms, terms.layout(case["columns"])


def _rows(varcorr) -> list:
    return [(r["grp"], r["var1"] or "", r["var2"] or "") for r in varcorr]


def _close(a, b, rtol=1e-10, atol=1e-13) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


@pytest.mark.parametrize("name", sorted(LME4_NESTED))
def test_theta_layout_is_lme4s(name):
    case = LME4_NESTED[name]
    terms, layout = _lme4_layout(case)
    assert [t.name for t in terms] == case["factors"]
    assert [list(c) for c in layout.columns] == case["columns"]
    assert terms.layout().columns == layout.columns  # the formula's own column names
    assert layout.names == tuple(case["theta_names"])
    lower = [-np.inf if v is None else v for v in case["theta_lower"]]
    assert layout.lower.tolist() == lower
    assert layout.start.tolist() == [1.0 if v == 0 else 0.0 for v in lower]
    assert layout.n_theta == len(case["theta"])


@pytest.mark.parametrize("name", sorted(LME4_NESTED))
def test_varcorr_is_lme4s_at_lme4s_theta(name):
    case = LME4_NESTED[name]
    _, layout = _lme4_layout(case)
    got = layout.covariances(case["theta"], case["scale"]).varcorr
    assert _rows(got) == [r[:3] for r in case["varcorr"]]
    for mine, theirs in zip(got, case["varcorr"]):
        assert _close(mine["vcov"], theirs[3]) and _close(mine["sdcor"], theirs[4])


def _matrices_from_varcorr(layout, rows):
    """Per term, the covariance matrix lme4's VarCorr rows give."""
    out = []
    for grp, cols in zip(layout.terms.varcorr_names, layout.columns):
        m = np.zeros((len(cols), len(cols)))
        for g, v1, v2, vcov, *_ in rows:
            if g == grp:
                i = cols.index(v1)
                j = cols.index(v2) if v2 else i
                m[i, j] = m[j, i] = vcov
        out.append(m)
    return out


@pytest.mark.parametrize("name", sorted(LME4_NESTED))
def test_lme4s_covariances_give_lme4s_theta(name):
    case = LME4_NESTED[name]
    _, layout = _lme4_layout(case)
    theta = layout.theta_from_covariances(_matrices_from_varcorr(layout, case["varcorr"]),
                                          case["scale"])
    np.testing.assert_allclose(theta, case["theta"], rtol=1e-8, atol=1e-10)


def _levels(frame: pd.DataFrame, factor: tuple) -> int:
    return len(frame[list(factor)].drop_duplicates())


@pytest.mark.parametrize("case", sorted(json.loads(
    (REFERENCE / "lmer_cases.json").read_text())))
def test_lme4_order_and_names_of_the_lmer_cases(case):
    ref = json.loads((REFERENCE / "lmer_cases.json").read_text())[case]
    frame = pd.read_csv(REFERENCE / "data" / ref["data"])
    terms = from_lmer(ref["lmer"], frame.columns)[1]
    ordered = terms.lme4_order([_levels(frame, t.factor) for t in terms])
    layout = ordered.layout()
    rows = [r for r in ref["varcorr"] if r["grp"] != "Residual"]
    assert [(r["grp"], r["var1"]) for r in rows] == [
        (g, c) for g, cols in zip(ordered.varcorr_names, layout.columns) for c in cols]
    theta = layout.theta_from_covariances(
        _matrices_from_varcorr(layout, [(r["grp"], r["var1"], r["var2"], r["vcov"])
                                        for r in rows]), ref["scale"])
    got = layout.covariances(theta, ref["scale"]).varcorr
    assert [_close(a["vcov"], b["vcov"], 1e-12) for a, b in zip(got, ref["varcorr"])] == \
        [True] * len(ref["varcorr"])


@pytest.mark.parametrize("case, lmer", [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("chickweight", "weight ~ Time + Diet + (1 + Time | Chick)"),
    ("pastes", "strength ~ 1 + (1 | batch) + (1 | sample)"),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
])
def test_varcorr_rows_of_lme4_features(case, lmer):
    ref = json.loads((REFERENCE / "lme4_features.json").read_text())[case]["varcorr"]
    frame = pd.read_csv(REFERENCE / "data" / f"{case}.csv")
    terms = from_lmer(lmer, frame.columns)[1]
    layout = terms.lme4_order([_levels(frame, t.factor) for t in terms]).layout()
    scale = ref[-1]["vcov"]
    rows = [(r["grp"], r["var1"], r["var2"], r["vcov"]) for r in ref[:-1]]
    theta = layout.theta_from_covariances(_matrices_from_varcorr(layout, rows), scale)
    got = layout.covariances(theta, scale).varcorr
    assert _rows(got) == _rows(ref)
    for mine, theirs in zip(got, ref):  # lme4's sds and correlations from its variances
        assert _close(mine["vcov"], theirs["vcov"], 1e-12)
        assert _close(mine["sdcor"], theirs["sdcor"], 1e-12)


def test_lme4_order_reverses_ties_as_rev_order_does():
    terms = from_lmer("y ~ x + (x || g) + (1 | g:h)")[1]
    assert terms.lme4_order([40, 40, 240]).varcorr_names == ("g.h", "g", "g.1")
    assert [t.formula for t in terms.lme4_order([40, 40, 240])] == ["1", "0 + x", "1"]
    assert terms.lme4_order([40, 40, 40]) is terms  # nothing moves without an increase
    assert terms.lme4_order({"g": 40, "g:h": 240}).terms == terms.lme4_order(
        [40, 40, 240]).terms


# -- Λ: the engines' maps --------------------------------------------------------------

def _mixed_terms() -> RandomTerms:
    """Every structure on a three-level chain: correlated blocks, lme4's ||, a
    diagonal term and statsmodels' scalar components of one and of three columns."""
    lme4 = from_lmer("y ~ (x | g) + (0 + z + w | g) + (x || g:h) + (1 | g:h:c)")[1]
    extra = (RandomTerm(("g", "h"), "0 + z + w", "diagonal", "g:h", "diag(z + w | g:h)"),
             RandomTerm(("g",), "0 + a + b + d", "scalar", "abd", "vc", component="abd"),
             RandomTerm(("g", "h", "c"), "0 + z", "scalar", "zc", "vc", component="zc"))
    return RandomTerms(lme4.terms + extra)


def _random_theta(layout, rng) -> np.ndarray:
    theta = rng.normal(size=layout.n_theta)
    return np.where(layout.lower == 0, np.abs(theta) + 0.1, theta)


def test_lambdas_are_block_diagonal_over_the_terms_of_each_level():
    layout = _mixed_terms().layout()
    assert layout.levels == (("g",), ("g", "h"), ("g", "h", "c")) and layout.nested
    assert layout.q == (2 + 2 + 3, 1 + 1 + 2, 1 + 1)
    assert layout.term_level == (0, 0, 1, 1, 2, 1, 0, 2)
    assert layout.n_theta == 3 + 3 + 1 + 1 + 1 + 2 + 1 + 1
    theta = _random_theta(layout, np.random.default_rng(1))
    lambdas = layout.to_lambdas(theta)
    blocks = np.zeros_like(lambdas[0])
    for lam, q in zip(lambdas, layout.q):
        assert lam.shape == (q, q) and np.all(np.triu(lam, 1) == 0)
    for t, level, cols, sl, lam_t in zip(layout.terms, layout.term_level, layout.term_columns,
                                         layout.theta_slices, layout.term_factors(theta)):
        k = cols.stop - cols.start
        values = theta[sl]
        if t.structure == "unstructured":  # lme4: the lower triangle, column by column
            expected = np.zeros((k, k))
            pairs = [(i, j) for j in range(k) for i in range(j, k)]
            for (i, j), value in zip(pairs, values):
                expected[i, j] = value
        elif t.structure == "diagonal":
            expected = np.diag(values)
        else:
            expected = values[0] * np.eye(k)
        np.testing.assert_array_equal(lam_t, expected)
        if level == 0:
            blocks[cols, cols] = 1
    np.testing.assert_array_equal(lambdas[0][blocks == 0], 0.0)


def test_covariances_and_theta_round_trip():
    layout = _mixed_terms().layout()
    rng = np.random.default_rng(2)
    theta = _random_theta(layout, rng)
    scale = 2.5
    cov = layout.covariances(theta, scale)
    for lam, m in zip(layout.term_factors(theta), cov.matrices):
        np.testing.assert_allclose(m, scale * lam @ lam.T, rtol=1e-14)
    np.testing.assert_allclose(layout.theta_from_covariances(cov.matrices, scale), theta,
                               rtol=1e-12, atol=1e-14)
    # a singular covariance (a zero sd) is an ordinary point
    theta[layout.theta_slices[0]] = [1.0, 0.5, 0.0]
    back = layout.theta_from_covariances(layout.covariances(theta, scale).matrices, scale)
    np.testing.assert_allclose(back, theta, rtol=1e-12, atol=1e-14)
    rows = layout.covariances(theta, scale).varcorr
    assert rows[-1] == {"grp": "Residual", "var1": "", "var2": "", "vcov": scale,
                        "sdcor": math.sqrt(scale)}
    assert [r["grp"] for r in rows if r["var2"]] == ["g", "g.1"]  # correlations: blocks only


def test_dlambdas_are_finite_differences_of_to_lambdas():
    layout = _mixed_terms().layout()
    theta = _random_theta(layout, np.random.default_rng(3))
    derivatives = layout.dlambdas()
    assert len(derivatives) == layout.n_theta
    h = 1e-3  # Λ is linear in θ: central differences are exact up to rounding
    for j, (level, d) in enumerate(derivatives):
        step = np.zeros(layout.n_theta)
        step[j] = h
        up, down = layout.to_lambdas(theta + step), layout.to_lambdas(theta - step)
        for lv in range(len(layout.q)):
            diff = (up[lv] - down[lv]) / (2 * h)
            np.testing.assert_allclose(diff, d if lv == level else 0.0, atol=1e-12)


def test_a_theta_of_the_wrong_length_is_refused():
    layout = _mixed_terms().layout()
    with pytest.raises(ValueError, match="parameters"):
        layout.to_lambdas(np.zeros(layout.n_theta + 1))


# -- statsmodels' view -----------------------------------------------------------------

@pytest.mark.parametrize("formula", VIEWED)
def test_the_statsmodels_view_of_lme4s_spelling_is_the_restatements(formula):
    sm = translate(formula, COLUMNS)
    layout = from_lmer(formula)[1].layout()
    theta = _random_theta(layout, np.random.default_rng(4))
    view = layout.statsmodels_view(theta, 1.5)
    assert view.vc_names == tuple(sorted(sm.vc_formula))
    re_formula = canonical_formula(sm.re_formula)
    k_re = 0 if re_formula is None else len(RandomTerm((), re_formula).default_columns())
    assert view.cov_re.shape == (k_re, k_re)
    np.testing.assert_allclose(layout.theta_from_statsmodels(view.cov_re, view.vcomp, 1.5),
                               theta, rtol=1e-12)


@pytest.mark.parametrize("formula", TERMS_ONLY)
def test_other_models_have_no_statsmodels_view(formula):
    layout = from_lmer(formula)[1].layout()
    assert layout.statsmodels_view(layout.start, 1.0) is None
    with pytest.raises(ValueError, match="statsmodels' shape"):
        layout.theta_from_statsmodels(np.eye(2), [], 1.0)


def _design(frame: pd.DataFrame, terms: RandomTerms, layout) -> list:
    """Brute force: Z_t (n, levels * k) of each term, from the frame."""
    from formulaic import model_matrix

    out = []
    for t, k in zip(terms, (len(c) for c in layout.columns)):
        codes = frame.groupby(list(t.factor), sort=True).ngroup().to_numpy()
        cols = np.asarray(model_matrix(t.formula, frame, output="numpy"))
        assert cols.shape[1] == k
        z = np.zeros((len(frame), (codes.max() + 1) * k))
        for j in range(k):
            z[np.arange(len(frame)), codes * k + j] = cols[:, j]
        out.append(z)
    return out


def _profiled_ml(frame, x, terms, layout, theta) -> float:
    """The ML log-likelihood, σ² and β profiled out, of y with V = I + Σ Z_t Σ_t Z_t'."""
    y = frame["y"].to_numpy()
    n = len(y)
    v = np.eye(n)
    for z, lam in zip(_design(frame, terms, layout), layout.term_factors(theta)):
        levels = z.shape[1] // max(lam.shape[0], 1)
        v += z @ np.kron(np.eye(levels), lam @ lam.T) @ z.T
    vi = np.linalg.inv(v)
    beta = np.linalg.solve(x.T @ vi @ x, x.T @ vi @ y)
    r = y - x @ beta
    qf = r @ vi @ r
    return float(-0.5 * np.linalg.slogdet(v)[1] - n / 2 * np.log(qf)
                 - n / 2 * (1 + np.log(2 * np.pi) - np.log(n)))


@pytest.mark.parametrize("spelling", ["statsmodels", "lme4"])
def test_the_statsmodels_view_is_statsmodels_model(spelling):
    """statsmodels' own likelihood at the view's (cov_re, vcomp) is the brute-force
    likelihood of the terms at θ."""
    from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"g": np.repeat(["a", "b", "c", "d", "e"], 12),
                          "h": np.tile(np.repeat(["u", "v", "w"], 4), 5),
                          "x": rng.normal(size=60)})
    frame["y"] = frame["x"] + rng.normal(size=60)
    if spelling == "statsmodels":
        vc = {"h": "0 + C(h)", "xh": "0 + C(h):x"}
        terms = from_statsmodels("g", "1 + x", vc)
        groups, re_formula = "g", "1 + x"
    else:
        terms = from_lmer("y ~ x + (x || g) + (1 | g:h)")[1]
        sm = translate("y ~ x + (x || g) + (1 | g:h)", frame.columns)
        groups, re_formula, vc = sm.groups, sm.re_formula, sm.vc_formula
    layout = terms.layout()
    theta = _random_theta(layout, rng)
    view = layout.statsmodels_view(theta, 1.0)
    model = MixedLM.from_formula("y ~ x", frame, groups=groups, re_formula=re_formula,
                                 vc_formula=vc)
    model.reml, model.cov_pen, model.fe_pen = False, None, None  # as fit() sets them
    assert list(model.exog_vc.names) == list(view.vc_names)
    params = MixedLMParams.from_components(np.zeros(2), cov_re=view.cov_re,
                                           vcomp=view.vcomp)
    x = np.column_stack([np.ones(60), frame["x"]])
    assert math.isclose(model.loglike(params, profile_fe=True),
                        _profiled_ml(frame, x, terms, layout, theta), rel_tol=1e-10)
