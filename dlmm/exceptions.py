"""Errors and warnings that dlmm raises."""


class InputError(ValueError):
    """Bad input: the message names the column, value, file or option at fault."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped before the convergence test on the gradient passed."""


class CollinearityWarning(UserWarning):
    """Collinear fixed-effect columns were dropped (``drop_collinear=True``)."""
