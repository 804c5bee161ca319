"""Errors and warnings that dlmm raises.

``ConvergenceWarning`` subclasses statsmodels' ``ConvergenceWarning`` when
statsmodels is importable, so that warning filters written for statsmodels
(``warnings.simplefilter("ignore", ConvergenceWarning)``) also catch dlmm's.
statsmodels is not a dependency: the class is made on first use (a module
``__getattr__``), and importing dlmm never imports statsmodels.
"""

from __future__ import annotations

import importlib.util

import numpy as np


class InputError(ValueError):
    """Bad input: the message names the column, value, file or option at fault."""


class CollinearityWarning(UserWarning):
    """Collinear fixed-effect columns were dropped (``drop_collinear=True``)."""


_MADE: dict[str, type] = {}

_CONVERGENCE_DOC = """The optimizer stopped before its convergence test passed (the Newton
    decrement, or the gradient where the Hessian is not negative definite; see
    :mod:`dlmm.optimize.driver`). A subclass of statsmodels' ``ConvergenceWarning``
    when statsmodels is installed."""


def _statsmodels_convergence_warning() -> type:
    """statsmodels' ``ConvergenceWarning`` if statsmodels can be imported, else ``UserWarning``."""
    if importlib.util.find_spec("statsmodels") is None:
        return UserWarning
    try:
        from statsmodels.tools.sm_exceptions import ConvergenceWarning as base
    except Exception:  # a broken statsmodels installation is not our failure
        return UserWarning
    return base


def convergence_warning() -> type:
    """The one ``ConvergenceWarning`` class of this process (made on first call)."""
    cls = _MADE.get("ConvergenceWarning")
    if cls is None:
        base = _statsmodels_convergence_warning()
        cls = type("ConvergenceWarning", (base,),
                   {"__doc__": _CONVERGENCE_DOC, "__module__": __name__})
        _MADE["ConvergenceWarning"] = cls
    return cls


def __getattr__(name: str):
    if name == "ConvergenceWarning":
        return convergence_warning()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class InfeasiblePoint(np.linalg.LinAlgError):
    """The profiled likelihood is not defined at a trial point: ``X'V^{-1}X`` is not
    positive definite, or the residual quadratic form ``qf`` is not positive (a fit that
    is exact to rounding). The optimizer treats the point as ``llf = -inf``."""
