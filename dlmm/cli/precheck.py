"""Checks of ``dlmm fit``'s model against the data's schema, before any cluster starts.

A formula that does not parse, or names a column (or a ``--groups`` column) the
data do not have, fails in about a second with one line naming it, instead of
after an embedded cluster has started or a scheduler has been reached. Only
Parquet footers are read (:func:`dlmm.distributed.sources.check_parquet_columns`),
no rows.
"""

from __future__ import annotations

from typing import Any


def check_model_columns(opts: dict[str, Any]) -> None:
    """The model of the ``fit`` options ``opts`` reads only columns of its data's
    schema, and every local Parquet file has them, of one kind of type.

    Not with a statistics cache (``opts["cache"]``): such a run opens only the files
    the cache lacks, and its columns are checked as those are read.

    Raises
    ------
    InputError
        A formula that cannot be parsed, a column not in the data or not in one of
        its files (named), a column repeated in the data.
    """
    from ..distributed.sources import check_parquet_columns

    if opts.get("cache") is not None:
        return
    check_parquet_columns(opts["data"], model_columns(opts))


def model_columns(opts: dict[str, Any]) -> list[str]:
    """The data's columns the model of the ``fit`` options reads (from the schema: no
    rows are read), as :class:`dlmm.MixedLM` finds them."""
    from ..distributed.sources import read_parquet
    from ..spec.formula import FormulaSpec
    from ..spec.residual import ResidualModel

    columns = read_parquet(opts["data"]).columns
    if opts.get("terms"):  # lme4's formula, beyond statsmodels' shape
        from ..spec.terms import from_lmer
        from ..spec.terms_spec import TermsSpec

        fixed, terms = from_lmer(opts["formula"], [str(c) for c in columns])
        return TermsSpec(fixed, terms).required_columns(columns)
    spec = FormulaSpec(opts["formula"], opts["groups"], re_formula=opts["re_formula"],
                       vc_formula=opts["vc"] or None,
                       residual=ResidualModel(weights=opts.get("weights"),
                                              strata=opts.get("residual_by"),
                                              ar1=opts.get("residual_ar1")))
    return spec.required_columns(columns)
