"""The options of a ``dlmm fit`` run: defaults < a ``--config`` TOML file < flags.

A config file's keys are the long options of ``dlmm fit`` (with ``-`` or
``_``) and ``data``; a ``[fit]`` table holding them is accepted too. Each
value is checked by its option's own definition in :mod:`dlmm.cli.parser`:
its argparse ``type`` (applied to the TOML value) and ``choices``, and
the kind of value that type returns (:func:`dlmm.cli.parser.value_type`):

* a boolean for a switch (``ml = true``, ``reml = true``, ``overwrite = false``);
* an integer for an integer option (``workers = 4``), a number for a
  numeric one (``scheduler-timeout = 60``): not a string;
* a string for the others (``memory-limit`` also takes a number);
* a list where the flag repeats or takes a comma list (``data``, ``vc``,
  ``method = ["lbfgs", "bfgs"]``), and for ``vc`` a table ``{name = "formula"}``.

Errors name the file and the key.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from pathlib import Path
from typing import Any

from .cluster import cluster_options
from .errors import UsageError
from .parser import METHODS, fit_parser, parse_pairs, value_type
from .suggest import did_you_mean

#: Options of ``dlmm fit`` and their defaults (the keys a ``--config`` file sets).
FIT_DEFAULTS: dict[str, Any] = {
    "data": None,
    "formula": None,
    "groups": None,
    "re_formula": None,
    "vc": {},
    "weights": None,
    "residual_by": None,
    "residual_ar1": None,
    "ml": False,
    "missing": "none",
    "drop_collinear": False,
    "scheduler": None,
    "scheduler_timeout": 30.0,
    "workers": None,
    "threads_per_worker": None,
    "memory_limit": None,
    "output": None,
    "overwrite": False,
    "fitted": False,
    "cache": None,
    "start_from": None,
    "skip_unchanged": False,
    "method": None,
    "max_iter": None,
    "newton_steps": None,
    "driver_memory": None,
    "quiet": False,
    "verbose": False,
    "log_format": "text",
}


def _config_keys() -> dict[str, argparse.Action]:
    """The keys a config file may use and the ``fit`` options they set: ``data`` and
    each long option but ``--config`` and ``--help``; a switch's own spelling only
    (not ``--no-overwrite``, nor ``--no-newton``, whose key is ``newton-steps``)."""
    keys: dict[str, argparse.Action] = {}
    for action in fit_parser()._actions:
        if action.dest == "config":
            continue
        if action.nargs == 0 and not (isinstance(action.const, bool)
                                      or isinstance(action, argparse.BooleanOptionalAction)):
            continue  # --help, store_const (--no-newton)
        names = [s for s in action.option_strings if s.startswith("--")]
        keys[(names[0][2:] if names else action.dest).replace("-", "_")] = action
    return keys


def _repeats(action: argparse.Action) -> bool:
    """Whether the option takes several values (``--vc`` repeated, ``DATA ...``)."""
    return isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+")


def _toml_types(kind: Any) -> tuple[type, ...]:
    """The TOML value types standing for one value of ``kind``: an int for a float too."""
    if typing.get_origin(kind) is list:
        kind = typing.get_args(kind)[0]
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    kinds = typing.get_args(kind) if union else (kind,)
    return (int, *kinds) if float in kinds and int not in kinds else kinds


def _config_value(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """A config file's ``key = value``, checked and converted by the option's own type
    and choices, as its flags would give it."""
    kind = value_type(action)
    if kind is bool:  # a switch; --reml (store_false) sets ml to the opposite
        if not isinstance(value, bool):
            raise UsageError(f"{where}: {key} must be bool, got {value!r}")
        return value if action.const is not False else not value
    repeats = _repeats(action)
    joins = typing.get_origin(kind) is list  # a comma list: method = ["lbfgs", "bfgs"]
    one = _toml_types(kind)
    items = value if (repeats or joins) and isinstance(value, list) else [value]
    if any(isinstance(v, bool) or not isinstance(v, one) for v in items) \
            or (isinstance(value, list) and items is not value):
        expected = " or ".join(t.__name__ for t in one) + (" or list" if repeats or joins
                                                            else "")
        raise UsageError(f"{where}: {key} must be {expected}, got {value!r}")
    parsed = []
    for item in items:
        try:
            v = action.type(item) if action.type is not None else item
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"{where}: {key}: {exc}") from None
        if action.choices is not None and v not in action.choices:
            raise UsageError(f"{where}: {key}: invalid choice: {item!r} "
                             f"(choose from {', '.join(map(repr, action.choices))})")
        parsed.append(v)
    if joins:
        return [v for part in parsed for v in part]
    return parsed if repeats else parsed[0]


def _load_toml(file: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise UsageError("--config needs Python 3.11+ or the tomli package") from None
    try:
        with open(file, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"--config file {str(file)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config file {str(file)!r} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"--config file {str(file)!r} cannot be read: {exc}") from None


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The options of a ``--config`` TOML file, keys normalized to ``snake_case``.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    dict
        ``fit`` option names (as in :data:`FIT_DEFAULTS`) and values, ``vc`` a dict.

    Raises
    ------
    UsageError
        The file is missing or not TOML, or a key or value is not a ``fit`` option.
    """
    file = Path(path)
    where = f"--config file {str(file)!r}"
    raw = _load_toml(file)
    if isinstance(raw.get("fit"), dict) and len(raw) == 1:
        raw = raw["fit"]  # a [fit] table is accepted too
    keys = _config_keys()
    out: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    for key, value in raw.items():
        action = keys.get(key.replace("-", "_"))
        if action is None:
            hint = did_you_mean(key.replace("-", "_"), keys)
            raise UsageError(f"{where}: unknown option {key!r}{hint} "
                             f"(options: {', '.join(keys)})")
        if action.dest == "vc" and isinstance(value, dict):
            value = {str(k): v for k, v in value.items()}
            for k, v in value.items():
                if not isinstance(v, str):
                    raise UsageError(f"{where}: vc.{k} must be a formula string, got {v!r}")
        else:
            value = _config_value(action, key, value, where)
            if action.dest == "vc":
                value = parse_pairs(value, "NAME=FORMULA", f"{where}: {key}")
        if action.dest in out and out[action.dest] != value:
            raise UsageError(f"{where}: {set_by[action.dest]} and {key} disagree")
        out[action.dest], set_by[action.dest] = value, key
    return out


def fit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a ``fit`` run: defaults < ``--config`` file < command-line flags.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``dlmm fit`` arguments (unset flags absent).

    Returns
    -------
    dict
        Every key of :data:`FIT_DEFAULTS` plus ``config``, validated.

    Raises
    ------
    UsageError
    """
    given = {k: v for k, v in vars(args).items() if k != "command"}
    if given.get("data") == []:
        del given["data"]
    opts = dict(FIT_DEFAULTS)
    opts["config"] = given.pop("config", None)
    if opts["config"] is not None:
        opts.update(read_config(opts["config"]))
    if "vc" in given:
        given["vc"] = parse_pairs(given["vc"], "NAME=FORMULA, e.g. 'school=0 + C(school)'",
                                  "--vc")
    opts.update(given)

    data = opts["data"]
    if isinstance(data, list):
        data = data[0] if len(data) == 1 else (data or None)
    if not data:
        raise UsageError("no DATA: give a Parquet path (or 'data' in --config)")
    opts["data"] = data
    if not opts["formula"]:
        raise UsageError("--formula is required (e.g. --formula 'y ~ x1 + x2')")
    lme4_spelling(opts)
    if opts["method"] is not None:
        methods = opts["method"]
        bad = [m for m in methods if m.lower() not in METHODS]
        if bad or not methods:
            raise UsageError(
                f"--method {bad[0] if bad else methods!r} is not one of {', '.join(METHODS)}"
            )
        opts["method"] = [m.lower() for m in methods]
    cluster_options(opts)
    if opts["quiet"] and opts["verbose"]:
        raise UsageError("--quiet and --verbose exclude each other")
    if opts["fitted"] and opts["output"] is None:
        raise UsageError("--fitted writes fitted.parquet into --output DIR: give --output")
    if opts["skip_unchanged"] and opts["output"] is None and opts["start_from"] is None:
        raise UsageError("--skip-unchanged compares with a previous output: give --output "
                         "or --start-from")
    return opts


def lme4_spelling(opts: dict[str, Any]) -> None:
    """A ``--formula`` in lme4's spelling (``'y ~ x + (x | school) + (1 | school:class)'``)
    restated in place.

    A model of statsmodels' shape becomes the ``formula``, ``groups``, ``re_formula``
    and ``vc`` options (:func:`dlmm.spec.lme4_terms.translate`, as :func:`dlmm.lmer`
    does); a model beyond it (slopes at a nested level, several blocks on a factor,
    three levels) or one whose factors are interactions that nest as written
    (``(x || g) + (1 | g:h)``) keeps its formula and sets ``opts["terms"]``: ``dlmm
    fit`` fits it as :func:`dlmm.lmer` does, with
    :class:`~dlmm.terms_model.TermsMixedLM` (the term list and the nested engine). A
    formula without random-effect terms is left as it is. Bars beside ``--groups``,
    ``--re-formula`` or ``--vc``, what lme4 refuses, a crossed factor that is an
    interaction (which needs a column of its own in the data), and ``--cache`` for a
    model of terms are usage errors."""
    from ..exceptions import InputError
    from ..spec.lme4_terms import split_formula, translate
    from ..spec.terms import from_lmer

    if "|" not in opts["formula"] or "~" not in opts["formula"]:
        return  # no lme4 bars (a formula without '~' is refused as it is, later)
    _, bars = split_formula(opts["formula"])
    if not bars:
        return
    given = [flag for flag, key in (("--groups", "groups"), ("--re-formula", "re_formula"),
                                    ("--vc", "vc")) if opts.get(key)]
    if given:
        raise UsageError(f"--formula {opts['formula']!r} states its random effects in lme4's "
                         f"spelling: leave out {', '.join(given)}")
    try:
        translation = translate(opts["formula"])
    except InputError:
        from_lmer(opts["formula"])  # what lme4 itself refuses, said as it is
        _terms_model(opts)
        return
    if translation.interactions:
        if from_lmer(opts["formula"])[1].nesting() is not None:
            _terms_model(opts)  # g:h inside g: the term list reads the factors as written
            return
        factors = next(iter(translation.interactions.values()))
        raise UsageError(f"--formula: the factor {':'.join(factors)!r} needs a column of its "
                         "own here: add one to the data (values 'a:b', as lme4 labels them) "
                         "and name it in the formula, or fit with dlmm.lmer in Python")
    opts.update(formula=translation.formula, groups=translation.groups,
                re_formula=translation.re_formula, vc=translation.vc_formula or None)


def _terms_model(opts: dict[str, Any]) -> None:
    """Mark ``opts`` as a model of random-effects terms (its lme4 formula kept)."""
    if opts.get("cache") is not None:
        raise UsageError(f"--cache: the statistics cache holds sums of statsmodels-shaped "
                         f"models; --formula {opts['formula']!r} is a model of terms (leave "
                         "out --cache)")
    opts["terms"] = True
