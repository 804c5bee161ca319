"""Formulas to a model specification, learned once, applied to every chunk.

The fixed-effects formula, the random-effects formula and each variance
component formula are parsed by formulaic. Categorical levels are learned once
over the whole data set (the caller passes a prototype frame that carries
every level as a ``pandas.Categorical``), and the learned formulaic
``ModelSpec`` objects are then applied unchanged to every chunk, so that each
partition produces the same columns in the same order.

Names follow statsmodels: ``Intercept``, ``C(c)[T.b]``; random-effect names
with ``Intercept`` replaced by the group column's name (``Subject``,
``Days``); variance components sorted by name.
"""

from __future__ import annotations

import copy
import logging
import re
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError

from ..exceptions import InputError
from .centering import Centering
from .checks import (
    check_design_size,
    check_magnitude,
    check_text_column,
    check_text_levels,
    check_time_column,
    formula_error,
    mentioned,
    repeated_names,
)
from .design import ChunkDesign, ModelNames, rows_all, scan_rows
from .indicator_text import indicator_factor
from .indicators import IndicatorSpec, indicator_spec
from .keywords import quote_keyword_columns
from .residual import ResidualModel
from .term_order import patsy_ordered

logger = logging.getLogger("dlmm")

#: The column that holds group labels given as values (``groups=array``).
GROUP_VALUES_COLUMN = "__dlmm_groups__"

_NO_RE = {"0", "-1", "0 +", "~0", "~ 0", "~-1", "~ -1", "0+", "~0+"}

#: ``C(column`` or ``C(`column`` followed by ``,`` or ``)``: a column the formula reads.
_FACTOR_COLUMN = re.compile(r"(?<![\w.])C\(\s*(?:`([^`]+)`|([A-Za-z_]\w*))(?=\s*[,)])")


def _rhs_text(formula: str) -> str:
    text = formula.strip()
    return text[1:].strip() if text.startswith("~") else text


def _is_time(kind) -> bool:
    """Whether a column type holds times, durations or periods."""
    return (pd.api.types.is_datetime64_any_dtype(kind) or pd.api.types.is_timedelta64_dtype(kind)
            or isinstance(kind, pd.PeriodDtype))


def _plain_columns(model_spec) -> list[str | None] | None:
    """The data columns of a learned spec made only of an intercept and plain
    numeric columns (None stands for the intercept); None for any other spec."""
    from formulaic.parser.types.factor import Factor

    state = model_spec.encoder_state
    out: list[str | None] = []
    for part in model_spec.structure:
        factors = part.term.factors
        if len(part.columns) != 1 or len(factors) != 1:
            return None
        factor = factors[0]
        if factor.eval_method == Factor.EvalMethod.LITERAL and str(factor) == "1":
            out.append(None)
        elif (factor.eval_method == Factor.EvalMethod.LOOKUP
              and state.get(str(factor), (None,))[0] == Factor.Kind.NUMERICAL):
            out.append(str(factor))
        else:
            return None
    return out


def _fill(out: np.ndarray, model_spec, plain: list[str | None] | None,
          df: pd.DataFrame, context: dict) -> None:
    """Write the model matrix of ``df`` into ``out`` (n, k): straight from the
    columns for a plain spec, else through formulaic."""
    if plain is not None:
        for j, col in enumerate(plain):
            out[:, j] = 1.0 if col is None else df[col].to_numpy(dtype=float)
    else:
        out[:] = np.asarray(model_spec.get_model_matrix(df, context=context),
                            dtype=float).reshape(out.shape)


class FormulaSpec(ModelNames):
    """A mixed-model specification from formulas (statsmodels' ``from_formula``).

    Parameters
    ----------
    formula : str
        ``"y ~ x1 + x2"``: response and fixed effects.
    groups : str or None
        Column of the group labels; None puts all rows in one group.
    re_formula : str, optional
        Standard random effects (``"~x1"``, ``"1"``, ``"0"``). Default: a random
        intercept when ``vc_formula`` is also None, else none.
    vc_formula : dict, optional
        Variance components, name -> formula (``{"c": "0 + C(c)"}``).
    context : mapping, optional
        Names the formulas take from the caller's code (:mod:`dlmm.spec.eval_env`).
    """

    def __init__(self, formula: str, groups: str | None, re_formula=None, vc_formula=None,
                 context=None, residual: ResidualModel | None = None):
        if not isinstance(formula, str) or "~" not in formula:
            raise InputError(f"formula must look like 'y ~ x1 + x2', got {formula!r}")
        lhs, rhs = formula.split("~", 1)
        if not lhs.strip():
            raise InputError(f"formula {formula!r} has no response on the left of '~'")
        # A column named with a Python keyword is read in code as Q('class').
        self.formula = quote_keyword_columns(formula)
        self.groups = groups
        self.group_name = groups if isinstance(groups, str) else "Group"
        self.re_formula = quote_keyword_columns(re_formula)
        self.vc_formula = dict(sorted((vc_formula or {}).items()))
        for name, text in self.vc_formula.items():
            if not isinstance(text, str):
                raise InputError(f"vc_formula[{name!r}] must be a formula string, got {text!r}")
            self.vc_formula[name] = quote_keyword_columns(text)
        self.vc_names = list(self.vc_formula)
        self.context = dict(context or {})
        self.residual = residual or ResidualModel()  # precision weights (dlmm.spec.residual)
        self._learned = False

    # -- which columns --------------------------------------------------------

    def _texts(self) -> list[tuple[str, str]]:
        out = [("formula", self.formula)]
        if self.re_formula is not None:
            out.append(("re_formula", self.re_formula))
        out += [(f"vc_formula[{k!r}]", v) for k, v in self.vc_formula.items()]
        return out

    def required_columns(self, available) -> list[str]:
        """The data columns the model reads, in a fixed order.

        Raises
        ------
        InputError
            A formula or ``groups`` names a column the data does not have.
        """
        available = [str(c) for c in available]
        avail = set(available)
        repeated = repeated_names(available)
        used: set[str] = set()
        for where, text in self._texts():
            try:
                needed = set(Formula(text).required_variables)
            except (FormulaicError, SyntaxError) as exc:
                raise InputError(f"{where} {text!r} cannot be parsed: "
                                 f"{formula_error(exc, text, available)}") from None
            needed = {v for v in needed if v not in {"np", "C"}
                      and (v in avail or v not in self.context)}
            # formulaic does not always report the column of C(column): taken from the text
            needed |= {m.group(1) or m.group(2) for m in _FACTOR_COLUMN.finditer(text)}
            missing = sorted(v for v in needed if v not in avail)
            if missing:
                raise InputError(
                    f"column {missing[0]!r} used in {where} {text!r} is not in the data "
                    f"(columns: {', '.join(available[:20])}"
                    f"{', ...' if len(available) > 20 else ''})")
            used |= needed | mentioned(text, available)
        twice = [c for c in available if c in used and c in repeated]
        if twice:
            raise InputError(
                f"column {twice[0]!r} appears {repeated[twice[0]]} times in the data; give "
                "the columns unique names")
        if self.groups is not None:
            if self.groups not in avail:
                raise InputError(
                    f"groups column {self.groups!r} is not in the data "
                    f"(columns: {', '.join(available[:20])})")
            if self.groups in repeated:
                raise InputError(
                    f"groups column {self.groups!r} appears {repeated[self.groups]} times in "
                    "the data; give the columns unique names")
            used.add(self.groups)
        used |= set(self.residual.checked_columns(available))
        return [c for c in available if c in used]

    @property
    def response(self) -> str:
        return self.formula.split("~", 1)[0].strip()

    # -- learning -------------------------------------------------------------

    def _factor_columns(self, columns) -> set[str]:
        """The ``columns`` that a formula names in ``C()``: factors by request."""
        out = set()
        for _, text in self._texts():
            for match in re.finditer(r"C\(\s*(?:`([^`]+)`|([A-Za-z_][\w.]*))", text):
                name = match.group(1) or match.group(2)
                if name in columns:
                    out.add(name)
        return out

    def _term_columns(self, texts=None) -> set[str]:
        """The columns that the formulas' right-hand sides (all, or those of ``texts``)
        take as they are, as a term or in an interaction (``x``, ``x:z``), not through
        Python code (``C(x)``, ``I(x.dt.day)``): those that formulaic encodes by their
        type."""
        from formulaic.parser.types.factor import Factor

        out = set()
        for text in (texts if texts is not None else [t for _, t in self._texts()]):
            parsed = Formula(text, _ordering="none")
            for term in (parsed.rhs if hasattr(parsed, "rhs") else parsed):
                out |= {f.expr for f in term.factors if f.eval_method == Factor.EvalMethod.LOOKUP}
        return out

    def categorical_columns(self, sample: pd.DataFrame) -> list[str]:
        """Columns whose levels must be learned over the whole data set.

        Raises
        ------
        InputError
            A column of times used as a term (not in ``C()``), or an object column
            that mixes text and numbers.
        """
        cols = self.residual.formula_columns([c for c in self.required_columns(sample.columns)
                                              if c != self.groups], [t for _, t in self._texts()])
        factors, terms, cats = self._factor_columns(cols), self._term_columns(), set()
        for c in cols:
            kind = sample[c].dtype
            if pd.api.types.is_bool_dtype(kind) or _is_time(kind):
                # Booleans are factors (statsmodels' b[T.True]) as a term or in C(),
                # times in C() (as a term they are refused below); in other code
                # (I(1 * b), I(t.dt.day_of_year)) they are values.
                if c in terms or c in factors:
                    cats.add(c)
            elif not pd.api.types.is_numeric_dtype(kind):
                cats.add(c)
        for c in sorted(cats):
            if c != self.response:
                check_text_column(c, sample[c])
                if c in terms and c not in factors:
                    check_time_column(c, sample[c])
        if self.groups is not None and self.groups in sample.columns:
            check_text_column(self.groups, sample[self.groups])
        return sorted(cats | factors)

    def _check_text_levels(self, levels: dict[str, list]) -> None:
        """Refuse or log the text columns used as terms (not in ``C()``) whose values
        look like numbers (:func:`~dlmm.spec.checks.check_text_levels`), from their
        levels over the whole data set."""
        factors = self._factor_columns(levels)
        for c in sorted(levels):
            if c != self.response and c not in factors:
                message = check_text_levels(c, levels[c])
                if message is not None:
                    logger.info(message)

    def check_response(self, sample: pd.DataFrame) -> None:
        """Raise unless the response is a numeric (not boolean) column."""
        y = sample[self.response] if self.response in sample.columns else None
        if y is not None and not (
            pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
        ):
            raise InputError(
                f"response column {self.response!r} is not numeric (dtype {y.dtype})")

    def learn_levels(self, sample: pd.DataFrame, levels: dict[str, list]) -> FormulaSpec:
        """Learn from a sample of rows plus every level of the categorical columns.

        The prototype frame is the sample's complete rows with each categorical
        column made a ``pandas.Categorical`` over all its levels, so the learned
        columns do not depend on which levels the sample happened to contain.
        """
        columns = self.required_columns(sample.columns)
        self._check_text_levels(levels)
        proto = sample.dropna(subset=columns)
        if len(proto) == 0:
            proto = sample.head(1).copy()
            for c in columns:  # keep dtypes, fill so formulaic can learn names
                if proto[c].isna().any() and pd.api.types.is_numeric_dtype(proto[c]):
                    proto[c] = 0.0
        proto = proto.copy()
        for c, values in levels.items():
            proto[c] = pd.Categorical(proto[c], categories=values)
        check_design_size(self.formula, levels)
        self.levels = {c: list(v) for c, v in levels.items()}
        self.learn(proto)
        light = copy.copy(self)
        light._vc_specs = []  # the shifts need X, y and Z only, not the components
        design = light.design(proto)
        self.centering = Centering.learn(design.xy, design.z)
        return self

    def to_dict(self) -> dict:
        """JSON-safe description from which :meth:`from_dict` rebuilds the same spec."""
        def plain(v):
            return v.item() if hasattr(v, "item") else v

        return {
            "kind": "formula",
            "formula": self.formula,
            "groups": self.groups,
            "re_formula": self.re_formula,
            "vc_formula": self.vc_formula,
            "columns": list(self.columns),
            "levels": {c: [plain(v) for v in vals] for c, vals in self.levels.items()},
            "stateful": bool(self.stateful),
            "fe_keep": None if self._fe_keep is None else [bool(k) for k in self._fe_keep],
            **({"residual": self.residual.to_dict()} if not self.residual.plain else {}),
        }

    @classmethod
    def from_dict(cls, state: dict) -> FormulaSpec:
        """Rebuild a learned spec from :meth:`to_dict` (no data needed)."""
        spec = cls(state["formula"], state["groups"], re_formula=state["re_formula"],
                   vc_formula=state["vc_formula"],
                   residual=ResidualModel.from_dict(state.get("residual")))
        row = {}
        for c in state["columns"]:
            values = state["levels"].get(c)
            if values is not None:
                row[c] = pd.Categorical(values[:1], categories=values)
            else:
                row[c] = [1.0]
        spec.learn_levels(pd.DataFrame(row), {})
        spec.levels = dict(state["levels"])
        spec.stateful = bool(state["stateful"])
        if state.get("fe_keep") is not None:
            spec.drop_fixed_columns(np.asarray(state["fe_keep"], dtype=bool))
        return spec

    def learn(self, prototype: pd.DataFrame) -> FormulaSpec:
        """Learn the formulaic specs (levels, column names) from a prototype frame.

        ``prototype`` holds complete rows; columns whose levels matter should
        be ``pandas.Categorical`` with every level of the whole data set.
        """
        self.columns = self.required_columns(prototype.columns)
        self.column_labels = list(self.columns)
        # the data's columns win over the caller's names, and are not shipped with it
        context = self.context = {k: v for k, v in self.context.items() if k not in prototype}
        self.check_response(prototype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mm = model_matrix(patsy_ordered(self.formula, prototype, context), prototype,
                                  na_action="ignore", output="numpy", context=context)
            except FormulaicError as exc:
                raise InputError(f"formula {self.formula!r} failed: "
                                 f"{formula_error(exc, self.formula, self.columns)}") from None
            self._fe_spec = mm.model_spec
            lhs_names = list(self._fe_spec.lhs.column_names)
            if len(lhs_names) != 1:
                raise InputError(
                    f"the response of {self.formula!r} must be one numeric column, "
                    f"it gives {len(lhs_names)} columns"
                )
            self.exog_names = list(self._fe_spec.rhs.column_names)
            self._check_unique(self.exog_names, "fixed-effect", f"formula {self.formula!r}")
            self._fe_keep = None

            self._re_spec = None
            if self.re_formula is None:
                self.exog_re_names = [] if self.vc_formula else [self.group_name]
                self._re_intercept_only = not self.vc_formula
            elif _rhs_text(self.re_formula) in _NO_RE:
                self.exog_re_names = []
                self._re_intercept_only = False
            elif _rhs_text(self.re_formula) == "1":
                self.exog_re_names = [self.group_name]
                self._re_intercept_only = True
            else:
                self._re_intercept_only = False
                try:
                    re_mm = model_matrix(
                        patsy_ordered("~ " + _rhs_text(self.re_formula), prototype, context),
                        prototype, na_action="ignore", output="numpy", context=context,
                    )
                except FormulaicError as exc:
                    raise InputError(
                        f"re_formula {self.re_formula!r} failed: "
                        f"{formula_error(exc, self.re_formula, self.columns)}") from None
                self._re_spec = re_mm.model_spec
                self.exog_re_names = [
                    n.replace("Intercept", self.group_name) for n in self._re_spec.column_names
                ]
                self._check_unique(self.exog_re_names, "random-effect",
                                   f"re_formula {self.re_formula!r}")

            self._vc_specs = []
            self.vc_column_names = []
            for name, text in self.vc_formula.items():
                fast = indicator_spec(text, indicator_factor(text), prototype)
                if fast is not None:  # plain indicators: no per-level formulaic work
                    self._vc_specs.append(fast)
                    self.vc_column_names.append(list(fast.column_names))
                    continue
                try:
                    vc_mm = model_matrix(
                        "~ " + _rhs_text(text), prototype, na_action="ignore", output="sparse",
                        context=context,
                    )
                except FormulaicError as exc:
                    raise InputError(f"vc_formula[{name!r}] {text!r} failed: "
                                     f"{formula_error(exc, text, self.columns)}") from None
                self._vc_specs.append(vc_mm.model_spec)
                self.vc_column_names.append(list(vc_mm.model_spec.column_names))
        # Columns formulaic encodes by their type (indicator components read their own).
        typed = [self.formula] + ([self.re_formula] if self.re_formula is not None else [])
        typed += [t for t, s in zip(self.vc_formula.values(), self._vc_specs)
                  if not isinstance(s, IndicatorSpec)]
        self._typed_terms = sorted(self._term_columns(typed))
        self._plain = (
            _plain_columns(self._fe_spec.lhs), _plain_columns(self._fe_spec.rhs),
            _plain_columns(self._re_spec) if self._re_spec is not None else None,
        )
        self.slot_component = np.concatenate(
            [np.full(len(c), k, dtype=np.int64) for k, c in enumerate(self.vc_column_names)]
            or [np.zeros(0, dtype=np.int64)]
        )
        # A transform with state learned from the data (center, scale...); Q() and
        # the like record an empty state.
        self.stateful = any(
            any(bool(state) for state in (getattr(s, "transform_state", None) or {}).values())
            for s in [self._fe_spec.rhs, self._fe_spec.lhs, self._re_spec, *self._vc_specs]
            if s is not None
        )
        self.centering = Centering.none(len(self.exog_names) + 1, len(self.exog_re_names))
        self._learned = True
        return self

    def _check_unique(self, names: list[str], kind: str, where: str) -> None:
        """Refuse a design with two columns of one name (a data column named
        ``Intercept`` beside the intercept): their estimates could not be told apart."""
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is None:
            return
        if "Intercept" in self.columns and (twice == "Intercept" or (
                kind == "random-effect" and twice == self.group_name)):
            raise InputError(
                f"{where} has the data column 'Intercept' beside the intercept, and both "
                f"would be the {kind} {twice!r}; rename the column, or leave out the "
                "intercept with '0 + Intercept + ...'")
        raise InputError(f"{where} gives two {kind} columns named {twice!r}; rename the "
                         "data column")

    # -- applying -------------------------------------------------------------

    def _factor_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with the factor columns that formulaic would encode wrongly by their
        type made ``pandas.Categorical`` over their learned levels.

        formulaic encodes a boolean term as a number (the learned specification has
        its levels, statsmodels' ``b[T.True]``) and a term of pandas' ``string`` type
        with ``pd.NA`` (``string[pyarrow]``, as Dask reads Parquet text) as its raw
        values. Object and ``str`` (NaN) text and categoricals are left as they are.
        """
        cast = {}
        levels = getattr(self, "levels", {})
        for col in getattr(self, "_typed_terms", ()):
            if col not in df.columns or not levels.get(col):
                continue
            kind = df[col].dtype
            if isinstance(kind, pd.CategoricalDtype) or pd.api.types.is_object_dtype(kind) or (
                    isinstance(kind, pd.StringDtype) and kind.na_value is not pd.NA):
                continue
            cast[col] = pd.Categorical(df[col].astype(object), categories=levels[col])
        return df.assign(**cast) if cast else df

    def check_prediction_columns(self, available, random_effects: bool = True,
                                 where: str = "the data") -> None:
        """Raise unless new data have every column a prediction reads (the response
        is not needed; the group column only with ``random_effects``)."""
        names = {str(c) for c in available}
        missing = [c for c in self.columns if c != self.response and c not in names
                   and (random_effects or c != self.groups)
                   and c not in self.residual.columns]  # weights do not change predictions
        if not missing:
            return
        if missing[0] == self.groups and self.groups == GROUP_VALUES_COLUMN:
            raise InputError(
                "the fit took its group labels as values, not a column: add them to the "
                f"new data as column {GROUP_VALUES_COLUMN!r}, or pass random_effects=False")
        raise InputError(f"column {missing[0]!r} needed for prediction is not in {where}")

    def drop_fixed_columns(self, keep: np.ndarray) -> None:
        """Leave out fixed-effect columns (``keep`` over the current ones)."""
        keep = np.asarray(keep, dtype=bool)
        full = np.flatnonzero(self._fe_keep) if self._fe_keep is not None else \
            np.arange(len(self.exog_names))
        mask = np.zeros(len(self._fe_spec.rhs.column_names), dtype=bool)
        mask[full[keep]] = True
        self._fe_keep = mask
        self.exog_names = [n for n, k in zip(self.exog_names, keep) if k]
        self.centering.drop_fixed_columns(keep)

    def _check_levels(self, df: pd.DataFrame) -> None:
        """Refuse levels of categorical columns that the fit never saw (new data)."""
        for col, levels in getattr(self, "levels", {}).items():
            if col not in df.columns:
                continue
            values = df[col].dropna()
            unseen = values[~values.isin(levels)]
            if len(unseen):
                raise InputError(
                    f"column {col!r} has level {unseen.iloc[0]!r} that the fitted data did not "
                    f"have (levels: {', '.join(map(repr, levels[:10]))}"
                    f"{', ...' if len(levels) > 10 else ''})")

    def design(self, df: pd.DataFrame, response: bool = True) -> ChunkDesign:
        """The model arrays of a chunk's complete rows (NaN rows counted, dropped).

        With ``response=False`` (prediction on new data) the response column is
        neither needed nor read, and the last column of ``xy`` is zero.
        """
        columns = self.columns if response else [
            c for c in self.columns if c != self.response and c in df.columns
            and c not in self.residual.columns]
        if not response:
            self._check_levels(df)
        missing, infinite, usable = scan_rows(df, columns)
        n_dropped = int((~usable).sum())
        if not usable.all():
            df = df.loc[usable]
        n = len(df)
        df = self._factor_frame(df)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k_all = len(self._fe_spec.rhs.column_names)
            xy = np.empty((n, k_all + 1))  # one allocation: X, then y
            context = getattr(self, "context", {})
            _fill(xy[:, :k_all], self._fe_spec.rhs, self._plain[1], df, context)
            if response:
                _fill(xy[:, k_all:], self._fe_spec.lhs, self._plain[0], df, context)
            else:
                xy[:, k_all] = 0.0
            if self._fe_keep is not None:  # collinear columns dropped after the fit's pass
                xy = np.ascontiguousarray(xy[:, np.append(self._fe_keep, True)])
            if self._re_spec is not None:
                z = np.empty((n, self.k_re))
                _fill(z, self._re_spec, self._plain[2], df, context)
            elif self._re_intercept_only:
                z = np.ones((n, 1))
            else:
                z = np.zeros((n, 0))
            w = None
            if self._vc_specs:
                mats = [sp.csr_array(s.get_model_matrix(df, context=context), dtype=float)
                        for s in self._vc_specs]
                w = sp.csr_array(sp.hstack(mats, format="csr"))
        finite = rows_all(np.isfinite(xy)) & rows_all(np.isfinite(z))
        if w is not None and w.nnz:
            bad_rows = np.repeat(np.arange(n), np.diff(w.indptr))[~np.isfinite(w.data)]
            finite[bad_rows] = False
        if not finite.all():
            if response:
                names = self.exog_names + [self.response] + self.exog_re_names
                values = np.concatenate([xy, z], axis=1)
                counts = (~np.isfinite(values)).sum(axis=0)
                j = int(np.argmax(counts)) if counts.any() else None
                where = f"design column {names[j]!r}" if j is not None else "a component column"
                raise InputError(
                    f"{where} has {int(counts[j]) if j is not None else int((~finite).sum())} "
                    "non-finite values computed from the data (check its transform, e.g. the "
                    "log of zero)")
            # New data: such rows predict NaN.
            rows = np.flatnonzero(usable)
            usable = usable.copy()
            usable[rows[~finite]] = False
            xy, z = xy[finite], z[finite]
            w = None if w is None else sp.csr_array(w[finite])
            df = df.loc[finite]
            n = len(df)
        if response and n:
            check_magnitude(xy, z, w, self.exog_names + [self.response] + self.exog_re_names)
        if self.groups is None:
            groups = np.zeros(n, dtype=np.int64)
        elif self.groups in df.columns:
            groups = df[self.groups].to_numpy()
        else:
            groups = np.full(n, None, dtype=object)  # new data without groups: unseen
        return ChunkDesign(
            xy=xy, z=z, w=w, groups=groups,
            missing_by_column=missing, n_dropped=n_dropped, kept=usable,
            infinite_by_column=infinite,
        ).with_weights(self.residual.row_weights(df) if response else None)
