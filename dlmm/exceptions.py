"""Errors and warnings that dlmm raises."""


class InputError(ValueError):
    """Bad input: the message names the column, value, file or option at fault."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped before its convergence test passed (the Newton decrement,
    or the gradient where the Hessian is not negative definite; see
    :mod:`dlmm.optimize.driver`)."""


class CollinearityWarning(UserWarning):
    """Collinear fixed-effect columns were dropped (``drop_collinear=True``)."""
