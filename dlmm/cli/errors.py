"""Exit codes, the exceptions that choose them, and error text on one line."""

from __future__ import annotations

import re

from ..exceptions import InputError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_CONVERGED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class UsageError(InputError):
    """A bad option or option value (exit code 2)."""


class Terminated(BaseException):
    """SIGTERM (a batch system or Kubernetes stopping the job): unwind and clean up."""


def one_line(text: str) -> str:
    """``text`` with its line breaks (and the blanks around them) replaced by one space."""
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()
