"""Logging of the ``dlmm`` command: stderr set-up, the JSON format, events, error lines.

Every progress line is an *event*: a message for people plus, in
``--log-format json``, the event's name and fields for machines (see the
package docstring). Python warnings are logged as ``"warning"`` events.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import one_line

logger = logging.getLogger("dlmm")

_TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_SILENT = logging.CRITICAL + 10


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        from ..io.jsonable import jsonable

        obj: dict[str, Any] = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        obj.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            obj["traceback"] = self.formatException(record.exc_info)
        return json.dumps(jsonable(obj), allow_nan=False)


class _Recent(logging.Filter):
    """Remembers the last messages logged, so that a warning that repeats one is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages = [*self.messages[-9:], record.getMessage()]
        return True


_RECENT = _Recent()
_WORKER_LOG_LEVEL = "warning"


def configure_logging(quiet: bool = False, verbose: bool = False,
                      log_format: str = "text", stream=None) -> Callable[[], None]:
    """Send the ``dlmm`` logger (and Dask's warnings) to stderr.

    Parameters
    ----------
    quiet : bool
        Nothing below CRITICAL (silent).
    verbose : bool
        DEBUG for dlmm, INFO for Dask.
    log_format : {"text", "json"}
    stream : file, optional
        Default ``sys.stderr``.

    Returns
    -------
    callable
        Undoes the configuration (for callers of :func:`dlmm.cli.main` in process).
    """
    global _WORKER_LOG_LEVEL
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S"))
    level = _SILENT if quiet else logging.DEBUG if verbose else logging.INFO
    dask_level = _SILENT if quiet else logging.INFO if verbose else logging.WARNING
    handler.addFilter(_RECENT)
    try:  # distributed sets its loggers' levels when first imported: before ours
        import distributed  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency
        pass
    # Dask's config gives some loggers below "distributed" levels of their own
    # (distributed.client): those are set too.
    own = sorted(n for n, lg in logging.root.manager.loggerDict.items()
                 if n.startswith("distributed.") and isinstance(lg, logging.Logger)
                 and lg.level != logging.NOTSET)
    loggers = [logger, logging.getLogger("distributed"), logging.getLogger("dask"),
               *map(logging.getLogger, own)]
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    for lg in loggers[1:]:
        lg.setLevel(dask_level)
    # Worker processes of an embedded cluster take Dask's logging config from the
    # environment when they start (see dask_worker_logging).
    _WORKER_LOG_LEVEL = logging.getLevelName(min(dask_level, logging.CRITICAL)).lower()

    def restore() -> None:
        logger.removeHandler(handler)
        for lg, lvl, propagate in saved:
            lg.setLevel(lvl)
            lg.propagate = propagate

    return restore


@contextmanager
def dask_worker_logging() -> Iterator[None]:
    """Worker processes started inside log at the CLI's level for Dask."""
    key = "DASK_LOGGING__DISTRIBUTED"
    old = os.environ.get(key)
    os.environ[key] = _WORKER_LOG_LEVEL
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def event(name: str, message: str, *args, level: int = logging.INFO, **fields) -> None:
    """Log ``message % args`` as the event ``name`` with ``fields`` (the JSON log's keys)."""
    logger.log(level, message, *args, extra={"fields": {"event": name, **fields}})


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A ``warnings.showwarning`` that logs a ``"warning"`` event, once."""
    text = one_line(str(message))
    if text in _RECENT.messages:  # dlmm logged it already (e.g. rows dropped)
        return
    event("warning", "%s: %s", category.__name__, text, level=logging.WARNING,
          category=category.__name__)


def report_error(message: str, code: int, log_format: str) -> None:
    """The one stderr line of a failed run, whatever ``--quiet`` says: ``dlmm: error:
    MESSAGE``, or in ``json`` an ``"error"`` event with ``exit_code``."""
    message = one_line(message)
    if log_format == "json":
        record = logging.LogRecord(logger.name, logging.ERROR, "", 0, message, None, None)
        record.fields = {"event": "error", "exit_code": code}
        sys.stderr.write(JsonFormatter().format(record) + "\n")
    else:
        sys.stderr.write(f"dlmm: error: {message}\n")
    sys.stderr.flush()
