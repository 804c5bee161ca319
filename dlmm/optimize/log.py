"""The optimizer's log: every evaluation of the objective and each method's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The stage of the log entries of a coarse phase (:func:`maximize`'s ``coarse``).
COARSE_STAGE = "qnewton-single"
#: The stage of the Newton polish's evaluations after a coarse phase (the same precision).
COARSE_POLISH_STAGE = "newton-single"


@dataclass
class LogEntry:
    """One evaluation of the objective."""

    evaluation: int
    llf: float
    grad_norm: float
    seconds: float
    stage: str


@dataclass
class OptimizationLog:
    """What the optimizer did: every evaluation, each method's outcome."""

    entries: list[LogEntry] = field(default_factory=list)
    methods: list[dict] = field(default_factory=list)
    newton_steps: int = 0
    seconds: float = 0.0
    #: Evaluations of a coarse polish's Hessian by differences (not in ``entries``), less
    #: its first point's (in ``entries`` twice).
    coarse_differences: int = 0

    @property
    def evaluations(self) -> int:
        return len(self.entries)

    @property
    def coarse_evaluations(self) -> int:
        """Evaluations at reduced precision (``maximize(coarse=...)``): the coarse phase's
        and its polish's, the polish Hessian's differences included."""
        return self.coarse_differences + sum(
            e.stage in (COARSE_STAGE, COARSE_POLISH_STAGE) for e in self.entries)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([e.__dict__ for e in self.entries])
