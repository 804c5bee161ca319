"""One evaluation for the driver: theta -> ``log|V|``, ``c'c`` and, optionally, their gradient.

A small result (``O(n_theta r^2)`` numbers), the crossed counterpart of the
grouped engine's likelihood pieces; the driver forms ``S = xy_cross - hmh`` and
the profiled llf exactly as for the nested engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .factor import factorize
from .gradient import gradient_pieces
from .system import CrossedSystem


@dataclass(eq=False)
class CrossedPieces:
    """What the profiled objective needs at one theta.

    Attributes
    ----------
    logdet : float
        ``log|V| = log|C|``.
    hmh : ndarray (r, r)
        ``c'c = [X y]'Z Lambda C^{-1} Lambda'Z'[X y]``; ``S = xy_cross - hmh``.
    dlogdet : ndarray (n_theta,) or None
        ``d logdet / d theta``.
    dhmh : ndarray (n_theta, r, r) or None
        ``d hmh / d theta``.
    information : tuple or None
        ``(F, J)`` of :mod:`.information` where asked for (intercepts only).
    pair_hessian : tuple or None
        ``(d2 logdet, d2 hmh)`` along the dense part's factor pairs, NaN elsewhere
        (:mod:`.dense_hessian`), where asked for.
    directions : str
        ``"sqrt"``: the derivatives are along the entries of packed theta (the
        square-root parameterization), for :mod:`dlmm.objective.profiled`.
    """

    directions: ClassVar[str] = "sqrt"

    logdet: float
    hmh: np.ndarray
    dlogdet: np.ndarray | None = None
    dhmh: np.ndarray | None = None
    information: tuple | None = None
    pair_hessian: tuple | None = None


def crossed_pieces(
    system: CrossedSystem, theta: np.ndarray, gradient: bool = False, single: bool = False,
    information: bool = False, pair_hessian: bool = False,
) -> CrossedPieces:
    """``log|C|`` and ``c'c`` at ``theta`` (and their derivatives if ``gradient``);
    ``single``: the dense Schur complement in float32 (:mod:`.single`);
    ``information``: with the gradient, the average-information pieces
    (:mod:`.information`; intercepts only); ``pair_hessian``: with the gradient, the exact
    second derivatives along the dense part's factors (:mod:`.dense_hessian`)."""
    fac = factorize(system, theta, single)
    if not gradient:
        return CrossedPieces(fac.logdet, fac.ctc)
    # fac is this evaluation's own
    grad = gradient_pieces(system, fac, consume=True, information=information,
                           pair_hessian=pair_hessian)
    return CrossedPieces(fac.logdet, fac.ctc, grad.dlogdet, grad.dctc, grad.information,
                         grad.pair_hessian)
