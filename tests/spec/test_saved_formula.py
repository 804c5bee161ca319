"""Saved formulas: what dlmm writes is accepted, anything that would run code is refused."""

from __future__ import annotations

import pytest

from dlmm import InputError
from dlmm.spec.saved_formula import check_saved_formula, check_saved_spec

COLUMNS = ["y", "x", "x 1", "c", "g"]


@pytest.mark.parametrize("text", [
    "y ~ x + C(c)",
    "y ~ x*c - 1",
    "y ~ (x + c):g",
    "y ~ x / c",
    "y ~ x ** 2",
    "~x",
    "1",
    "0",
    "0 + C(c)",
    "y ~ np.log(x) + I(x**2) + I(x / 2 - 1.5e-3) + center(x) + scale(x) + log(x)",
    "y ~ np.exp(x) + np.sqrt(x)",
    "y ~ `x 1` + `x 1`:c + np.log(`x 1`)",
    "y ~ {x + 1}",
    "y ~ C(c, Treatment('b')) + C(g, levels=['a', 'b'])",
    "y ~ C(c, contr.sum)",
    "y ~ x | g",
])
def test_what_dlmm_writes_is_accepted(text):
    assert check_saved_formula(text, "formula", "f.json", COLUMNS) == text


@pytest.mark.parametrize(("text", "piece"), [
    ("y ~ I(np.__builtins__['exec']('1'))", "np.__builtins__['exec']"),
    ("y ~ I(x.__class__)", "attribute access 'x.__class__'"),
    ("y ~ I(x.real)", "attribute access 'x.real'"),
    ("y ~ I(__import__('os'))", "call of '__import__'"),
    ("y ~ open(x)", "call of 'open'"),
    ("y ~ np.load(x)", "call of 'np.load'"),
    ("y ~ x[0]", "subscript 'x[0]'"),
    ("y ~ I(lambda: 1)", "Lambda"),
    ("y ~ {print(1)}", "call of 'print'"),
    ("y ~ C(c, eval('1'))", "contrast \"eval('1')\""),
    ("y ~ C(c, levels=[x for x in c])", "levels="),
    ("y ~ C(c, spans_intercept=True)", "keyword argument 'spans_intercept'"),
    ("y ~ np.log(x, out=x)", "keyword argument 'out'"),
    ("y ~ I('text')", "constant 'text'"),
    ("y ~ z", "name 'z' (not a column"),
    ("y ~ I(z + 1)", "name 'z' (not a column"),
    ("y ~ I(_x)", "name '_x'"),
    ("y ~ `nope`", "name 'nope'"),
    ("y ~ x %in% g", "operator 'in'"),
    ("y ~ .", "value '.'"),
    ("y ~ 'text'", "value \"'text'\""),
    ("y ~ I(x", "cannot be"),
])
def test_anything_else_is_refused_naming_the_piece(text, piece):
    with pytest.raises(InputError) as err:
        check_saved_formula(text, "formula", "'/f/result.json'", COLUMNS)
    message = str(err.value)
    assert message.startswith("'/f/result.json': refusing to evaluate formula ")
    assert piece in message and "\n" not in message


def test_spec_checks_every_formula_and_entry():
    spec = {"kind": "formula", "formula": "y ~ x", "groups": "g", "re_formula": "~x",
            "vc_formula": {"c": "0 + C(c)"}, "columns": COLUMNS}
    check_saved_spec(spec, "f")
    for key, value, fault in [
        ("re_formula", "~I(open('p'))", "re_formula"),
        ("vc_formula", {"c": "0 + C(c) + I(exec('1'))"}, "vc_formula['c']"),
        ("vc_formula", ["0 + C(c)"], "vc_formula must be an object"),
        ("formula", 3, "formula must be a formula string"),
        ("groups", ["g"], "groups must be a column name"),
        ("columns", "y", "columns must be a list"),
    ]:
        with pytest.raises(InputError, match=fault.replace("[", r"\[").replace("(", r"\(")):
            check_saved_spec({**spec, key: value}, "f")
    with pytest.raises(InputError, match="state.spec must be an object"):
        check_saved_spec(None, "f")
    check_saved_spec({"kind": "arrays", "columns": []}, "f")
