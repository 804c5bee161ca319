"""lme4's random-effect terms restated as groups, re_formula and vc_formula.

Each lme4 form against the statsmodels spelling of the same model (the
equivalences of lme4's documentation: ``||`` and ``/`` are shorthand for sums
of bar terms), and every form the engines cannot fit refused by name.
"""

from __future__ import annotations

import pytest

from dlmm.exceptions import InputError
from dlmm.spec.lme4_terms import (
    LmerTranslation,
    multi_column_terms,
    parse_bar,
    split_formula,
    split_outside,
    translate,
)


def _form(t: LmerTranslation) -> tuple:
    return t.formula, t.groups, t.re_formula, t.vc_formula, t.interactions


@pytest.mark.parametrize("formula, fixed, bars", [
    ("y ~ x + (1 | g)", "y ~ x", ["(1 | g)"]),
    ("y ~ (1|g) + x", "y ~ x", ["(1|g)"]),
    ("y ~ x + (1 | g) - 1", "y ~ x - 1", ["(1 | g)"]),
    ("y ~ (x || g) + (1 | h)", "y ~ 1", ["(x || g)", "(1 | h)"]),
    ("y ~ I((x + 1) ** 2) + (log(x) | g)", "y ~ I((x + 1) ** 2)", ["(log(x) | g)"]),
    ("Reaction ~ Days + (Days | Subject)", "Reaction ~ Days", ["(Days | Subject)"]),
])
def test_split_formula(formula, fixed, bars):
    assert split_formula(formula) == (fixed, bars)


@pytest.mark.parametrize("term, expected", [
    ("(1 | g)", [(("g",), True, (), "g")]),
    ("(x | g)", [(("g",), True, ("x",), "g")]),
    ("(1 + x | g)", [(("g",), True, ("x",), "g")]),
    ("(0 + x | g)", [(("g",), False, ("x",), "g")]),
    ("(x - 1 | g)", [(("g",), False, ("x",), "g")]),
    ("(-1 + x | g)", [(("g",), False, ("x",), "g")]),
    ("(x || g)", [(("g",), True, (), "g"), (("g",), False, ("x",), "g")]),
    ("(x + z || g)", [(("g",), True, (), "g"), (("g",), False, ("x",), "g"),
                      (("g",), False, ("z",), "g")]),
    ("(0 + x || g)", [(("g",), False, ("x",), "g")]),
    ("(1 | g1/g2)", [(("g1",), True, (), "g1"), (("g1", "g2"), True, (), "g2:g1")]),
    ("(1 | a/b/c)", [(("a",), True, (), "a"), (("a", "b"), True, (), "b:a"),
                     (("a", "b", "c"), True, (), "c:b:a")]),
    ("(1 | dept:service)", [(("dept", "service"), True, (), "dept:service")]),
    ("(x*z | g)", [(("g",), True, ("x", "z", "x:z"), "g")]),
])
def test_parse_bar(term, expected):
    blocks = parse_bar(term)
    assert [(b.factors, b.intercept, b.terms, b.name) for b in blocks] == expected
    assert all(b.source == term for b in blocks)


COLUMNS = ["y", "x", "z", "g", "h", "s", "d", "dept", "service", "batch", "cask", "f"]


@pytest.mark.parametrize("formula, expected", [
    # one factor, correlated: the standard random effects
    ("y ~ x + (x | g)", ("y ~ x", "g", "1 + x", {}, {})),
    ("y ~ x + (1 | g)", ("y ~ x", "g", "1", {}, {})),
    ("y ~ x + (0 + x | g)", ("y ~ x", "g", "0 + x", {}, {})),
    # || : the intercept stays standard, each slope its own component
    ("y ~ x + (x || g)", ("y ~ x", "g", "1", {"x|g": "0 + x"}, {})),
    ("y ~ x + (x + z || g)", ("y ~ x", "g", "1", {"x|g": "0 + x", "z|g": "0 + z"}, {})),
    ("y ~ x + (1 | g) + (0 + x | g)", ("y ~ x", "g", "1", {"x|g": "0 + x"}, {})),
    # a correlated block keeps the re_formula; a lone intercept becomes a component
    ("y ~ x + (0 + x + z | g) + (1 | g)",
     ("y ~ x", "g", "0 + x + z", {"g": "1"}, {})),
    # nested: components within the outer factor's groups
    ("y ~ 1 + (1 | batch/cask)", ("y ~ 1", "batch", "1", {"cask:batch": "0 + C(cask)"}, {})),
    ("y ~ 1 + (1 | batch) + (1 | batch:cask)",
     ("y ~ 1", "batch", "1", {"batch:cask": "0 + C(cask)"}, {})),
    ("y ~ x + (x | g) + (1 | g:h)", ("y ~ x", "g", "1 + x", {"g:h": "0 + C(h)"}, {})),
    ("y ~ 1 + (1 | g/h/s)",
     ("y ~ 1", "g", "1", {"h:g": "0 + C(h)", "s:h:g": "0 + C(h):C(s)"}, {})),
    # crossed: one indicator component per factor, interaction factors as columns
    ("y ~ service + (1 | s) + (1 | d)",
     ("y ~ service", None, "0", {"s": "0 + C(s)", "d": "0 + C(d)"}, {})),
    ("y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
     ("y ~ service", None, "0",
      {"s": "0 + C(s)", "d": "0 + C(d)", "dept:service": "0 + C(dept_service)"},
      {"dept_service": ("dept", "service")})),
    # nested and crossed together: the crossed form
    ("y ~ 1 + (1 | g/h) + (1 | s)",
     ("y ~ 1", None, "0", {"g": "0 + C(g)", "h:g": "0 + C(h_g)", "s": "0 + C(s)"},
      {"h_g": ("h", "g")})),
    # an interaction as the one grouping factor: an added group column
    ("y ~ x + (x | dept:service)",
     ("y ~ x", "dept_service", "1 + x", {}, {"dept_service": ("dept", "service")})),
])
def test_translate(formula, expected):
    assert _form(translate(formula, COLUMNS)) == expected


def test_an_added_column_does_not_shadow_one_of_the_data():
    t = translate("y ~ 1 + (1 | s) + (1 | dept:service)", COLUMNS + ["dept_service"])
    assert t.vc_formula["dept:service"] == "0 + C(dept_service_1)"
    assert t.interactions == {"dept_service_1": ("dept", "service")}


def test_group_name_is_lme4s():
    assert translate("y ~ x + (x | dept:service)", COLUMNS).group_name == "dept:service"
    assert translate("y ~ x + (1 | s) + (1 | d)", COLUMNS).group_name is None


def test_a_categorical_term_alone_is_a_block_not_a_component():
    # lme4: (f || g) is (1 | g) + (0 + f | g), the second correlated across f's levels
    first = translate("y ~ x + (f || g)", COLUMNS)
    assert first.vc_formula == {"f|g": "0 + f"} and first.scalar_components == ("f|g",)
    multi = multi_column_terms(first, ["f|g"], [["f[a]", "f[b]", "f[c]"]])
    assert multi == {"f"}
    again = translate("y ~ x + (f || g)", COLUMNS, multi_column=multi)
    assert (again.re_formula, again.vc_formula, again.scalar_components) == ("0 + f",
                                                                            {"g": "1"}, ())
    assert multi_column_terms(first, ["f|g"], [["f"]]) == set()
    assert translate("y ~ x + (0 + C(f) | g) + (1 | g)", COLUMNS).re_formula == "0 + C(f)"


@pytest.mark.parametrize("formula, columns, expected", [
    # any alphabet, R's dotted names, anything in backticks: put in formulas in backticks
    ("y ~ x + (x | élève)", ["y", "x", "élève"], ("y ~ x", "élève", "1 + x", {}, {})),
    ("y ~ x + (1 | グループ/`my c`)", ["y", "x", "グループ", "my c"],
     ("y ~ x", "グループ", "1", {"my c:グループ": "0 + C(`my c`)"}, {})),
    ("y ~ x + (1 | my.group) + (1 | `a:b`)", ["y", "x", "my.group", "a:b"],
     ("y ~ x", None, "0", {"my.group": "0 + C(`my.group`)", "a:b": "0 + C(`a:b`)"}, {})),
    ("y ~ x + (1 | `a|b`:c) + (1 | d)", ["y", "x", "a|b", "c", "d"],
     ("y ~ x", None, "0", {"a|b:c": "0 + C(`a|b_c`)", "d": "0 + C(d)"},
      {"a|b_c": ("a|b", "c")})),
    ("y ~ x + (1 | class)", ["y", "x", "class"], ("y ~ x", "class", "1", {}, {})),
    ("y ~ x + (1 | class) + (1 | d)", ["y", "x", "class", "d"],
     ("y ~ x", None, "0", {"class": "0 + C(`class`)", "d": "0 + C(d)"}, {})),
])
def test_grouping_columns_of_any_name(formula, columns, expected):
    assert _form(translate(formula, columns)) == expected


@pytest.mark.parametrize("formula, fixed", [
    # R's ^ in a call is a power (formulaic would read Python's exclusive or)
    ("y ~ I(x^2) + log(x^2 + 1) + (1 | g)", "y ~ I(x**2) + log(x**2 + 1)"),
    ("y ~ I((x + 1)^2) + (1 | g)", "y ~ I((x + 1)**2)"),
    # between terms it is formulaic's and R's crossing, kept
    ("y ~ (x + z)^2 + (1 | g)", "y ~ (x + z)^2"),
    ("y ~ `x^z` + I(`x^z`^2) + (1 | g)", "y ~ `x^z` + I(`x^z`**2)"),
])
def test_r_powers(formula, fixed):
    assert translate(formula, COLUMNS + ["x^z"]).formula == fixed
    assert translate("y ~ 1 + (I(x^2) || g)", COLUMNS).vc_formula == {"I(x ** 2)|g":
                                                                        "0 + I(x ** 2)"}


@pytest.mark.parametrize("formula, words", [
    ("y ~ x", ["no random-effect term"]),
    ("y ~ x + offset(z) + (1 | g)", ["offset() terms are not supported"]),
    ("y ~ x + 1 | g", ["not in parentheses"]),
    ("y ~ x - (1 | g)", ["(1 | g)", "added with '+'"]),
    ("y x (1 | g)", ["one '~'"]),
    (" ~ x + (1 | g)", ["no response"]),
    ("y ~ x + (1 | g", ["unbalanced"]),
    ("y ~ x + (0 | g)", ["(0 | g)", "no effects"]),
    ("y ~ x + ( | g)", ["nothing before"]),
    ("y ~ x + (1 | g + h)", ["(1 | g + h)", "column names joined by ':' or '/'"]),
    ("y ~ x + (1 | g | h)", ["more than one bar"]),
    ("y ~ x + (1 | `g)", ["backtick that is not closed"]),
    ("y ~ x + (1 | g h)", ["(1 | g h)", "column names joined by ':' or '/'", "backticks"]),
    ("y ~ x + (1 | 2g)", ["(1 | 2g)", "column names joined by ':' or '/'"]),
    ("y ~ x + (1 | g:g)", ["repeats a grouping column"]),
    ("y ~ x + (1 | nope)", ["(1 | nope)", "'nope' is not in the data"]),
    ("y ~ x + (x | g) + (0 + z + h | g)",
     ["(0 + z + h | g)", "one correlated block per grouping factor"]),
    ("y ~ x + (x | g) + (z | g)", ["(z | g)", "'(Intercept)' on g appears twice"]),
    ("y ~ x + (1 | g) + (1 | g)", ["(1 | g)", "appears twice"]),
    ("y ~ x + (x || g) + (0 + x | g)", ["(0 + x | g)", "'x' on g appears twice"]),
    ("y ~ x + (1 | g) + (x | g:h)",
     ["(x | g:h)", "random intercept (1 | g:h)", "slopes are supported on g"]),
    ("y ~ x + (x | s) + (1 | d)",
     ["(x | s)", "crossed grouping factors (d, s)", "random intercept (1 | factor)"]),
    ("y ~ x + (1 | s) + (0 + x | d)", ["(0 + x | d)", "crossed"]),
])
def test_refused_with_the_term_named(formula, words):
    with pytest.raises(InputError) as info:
        translate(formula, COLUMNS)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("text, sep, parentheses, parts", [
    ("g/h:k", "/", False, ["g", "h:k"]),
    ("`a/b`/c", "/", False, ["`a/b`", "c"]),
    ("`a:b`:c", ":", False, ["`a:b`", "c"]),
    ("C(h):x", ":", True, ["C(h)", "x"]),
    ("C(h, Treatment(reference='a:b')):`x:y`:z", ":", True,
     ["C(h, Treatment(reference='a:b'))", "`x:y`", "z"]),
    ("f(a:b)", ":", False, ["f(a", "b)"]),
])
def test_split_outside_keeps_what_backticks_and_parentheses_hold(text, sep, parentheses, parts):
    assert split_outside(text, sep, parentheses) == parts
