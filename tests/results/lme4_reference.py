"""lme4/lmerTest numbers of ``tests/reference/lme4_features.json`` and the fits they
describe, for the tests of VarCorr, coef, anova and Satterthwaite's df."""

from __future__ import annotations

import json

import pandas as pd

import dlmm
from tests.conftest import REFERENCE

FEATURES = json.loads((REFERENCE / "lme4_features.json").read_text())


def sleepstudy() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / "sleepstudy.csv", dtype={"Subject": str})


def chickweight() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / "chickweight.csv",
                       dtype={"Chick": str, "Diet": str})


def fit_sleepstudy(reml: bool = True, re_formula: str = "~Days", formula="Reaction ~ Days"):
    return dlmm.mixedlm(formula, sleepstudy(), groups="Subject",
                        re_formula=re_formula).fit(reml=reml)


def fit_chickweight(formula: str = "weight ~ Time + Diet"):
    return dlmm.mixedlm(formula, chickweight(), groups="Chick", re_formula="~Time").fit()


def fit_pastes():
    data = pd.read_csv(REFERENCE / "data" / "pastes.csv")
    return dlmm.mixedlm("strength ~ 1", data, groups="batch", re_formula="1",
                        vc_formula={"cask": "0 + C(cask)"}).fit()


def fit_penicillin():
    data = pd.read_csv(REFERENCE / "data" / "penicillin.csv")
    return dlmm.mixedlm("diameter ~ 1", data, groups=None, re_formula="0",
                        vc_formula={"plate": "0 + C(plate)", "sample": "0 + C(sample)"}).fit()


#: lme4's coefficient names -> dlmm's (formulaic's treatment contrasts)
FIXED_NAMES = {"(Intercept)": "Intercept", "Diet2": "Diet[T.2]", "Diet3": "Diet[T.3]",
               "Diet4": "Diet[T.4]"}
