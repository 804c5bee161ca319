"""Errors and warnings that dlmm raises."""

import numpy as np


class InputError(ValueError):
    """Bad input: the message names the column, value, file or option at fault."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped before its convergence test passed (the Newton decrement,
    or the gradient where the Hessian is not negative definite; see
    :mod:`dlmm.optimize.driver`)."""


class CollinearityWarning(UserWarning):
    """Collinear fixed-effect columns were dropped (``drop_collinear=True``)."""


class InfeasiblePoint(np.linalg.LinAlgError):
    """The profiled likelihood is not defined at a trial point: ``X'V^{-1}X`` is not
    positive definite, or the residual quadratic form ``qf`` is not positive (a fit that
    is exact to rounding). The optimizer treats the point as ``llf = -inf``."""
