"""scipy optimizers with method fall-back, Newton polish and an optimization log."""

from .driver import LogEntry, OptimizationLog, OptimizeResult, maximize

__all__ = ["LogEntry", "OptimizationLog", "OptimizeResult", "maximize"]
