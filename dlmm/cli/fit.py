"""``dlmm fit``: fit a model on a Dask cluster and write its output folder (or print it)."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..progress import data_pass_progress
from ..structure.driver_memory import driver_memory
from . import cluster, interrupts, nightly
from .errors import EXIT_NOT_CONVERGED, EXIT_OK, one_line
from .log import event
from .precheck import check_model_columns, model_columns


def run(opts: dict[str, Any]) -> int:
    """Fit with the options of :func:`dlmm.cli.config.fit_options`, write the outputs.

    Returns
    -------
    int
        0 converged, 3 not converged (the outputs are written either way); with
        ``--skip-unchanged`` over an unchanged previous output, that output's.
    """
    from ..distributed.sources import read_parquet
    from ..io.folders import RESULT_FOLDER
    from ..io.result_folder import write_outputs
    from ..io.stats_cache import check_cache_folder
    from ..io.store import check_input_urls, check_output
    from ..results.terms_saved import write_outputs as terms_outputs

    t0 = time.perf_counter()
    check_input_urls(opts["data"])  # an unknown scheme or a missing backend, in one line
    files = None
    if opts["skip_unchanged"]:
        files = nightly.list_inputs(opts["data"])  # listings and stat calls: no file opened
        previous, why = nightly.unchanged(opts, files)
        if previous is not None:
            converged, reasons = nightly.previous_status(previous)
            event("result", "unchanged: the %d input files and the specification are those "
                  "of %s: no data read, nothing written%s", len(files), previous,
                  "" if converged else "; it did not converge (" + "; ".join(reasons) + ")",
                  level=logging.INFO if converged else logging.WARNING,
                  status="unchanged", previous=previous, files=len(files),
                  converged=converged, reasons=[] if converged else reasons,
                  fingerprint=nightly.inputs_section(opts, files)["fingerprint"])
            return EXIT_OK if converged else EXIT_NOT_CONVERGED
        event("skip_unchanged", "not skipped: %s", why, reason=why)
    start = start_doc = None
    start_section: dict[str, Any] | None = None
    if opts["start_from"] is not None:
        start_doc = nightly.previous_document(opts["start_from"])
        if start_doc is None:  # the first night: nothing to start from yet
            why = f"no previous output in {str(opts['start_from'])!r} yet"
            event("start_from", "cold start: %s", why, start_from=str(opts["start_from"]),
                  used=False, reason=why)
            start_section = {"path": str(opts["start_from"]), "used": False, "reason": why}
        else:
            start = nightly.start_params(opts["start_from"], opts, start_doc)
    if opts["output"] is not None:  # not an input, not a folder that is not a result
        check_output(opts["output"], opts["overwrite"], kind=RESULT_FOLDER,
                            inputs={"DATA": opts["data"]})
    if opts["cache"] is None:  # (with a cache, only new or changed files are opened)
        read_parquet(opts["data"])  # a missing or unreadable file fails before any cluster
    else:  # not a cache, or one that cannot be written: before any cluster or data
        check_cache_folder(opts["cache"], inputs={"DATA": opts["data"]})
        # Imported here as read_parquet does above without a cache (0.4 s), so that the
        # data_pass timings of runs with and without a cache compare the passes alone.
        import dask.dataframe  # noqa: F401
    if files is None:
        files = nightly.list_inputs(opts["data"])

    check_model_columns(opts)  # a bad formula or a missing column: before any cluster too
    local = cluster.runs_in_process(opts, model_columns(opts) if opts["cache"] is None else [])
    t_cluster = time.perf_counter()
    with cluster.in_process() if local else cluster.connected(opts) as (client, info):
        cluster_seconds = time.perf_counter() - t_cluster
        if local:
            event("cluster", "no Dask cluster: the data are small enough to fit in this "
                  "process (--workers or --scheduler to use a cluster)", **info)
        else:
            event("cluster", "Dask cluster %s: %s workers, %s threads", info.get("address"),
                  info.get("workers"), info.get("threads"), **info)
        if info.get("dashboard"):
            event("dashboard", "Dask dashboard: %s", info["dashboard"],
                  dashboard=info["dashboard"])
        model = _model(opts, client)
        event("data_pass", "data pass: reading %s", opts["data"], stage="start",
              data=opts["data"])
        t_pass = time.perf_counter()
        with _pass_progress(opts) as progress, _cli_option_names(), \
                driver_memory(opts.get("driver_memory")):  # the pass is made here
            model.prepare(client=client, progress=progress)
        interrupts.checkpoint()  # a Ctrl-C some library swallowed still stops the run
        nobs, n_groups = model.nobs, model.n_groups
        pass_seconds = time.perf_counter() - t_pass
        event("data_pass", "data pass: done in %.2f s: %d rows, %d groups",
              time.perf_counter() - t_pass, nobs, n_groups, stage="end", nobs=nobs,
              n_groups=n_groups, seconds=round(time.perf_counter() - t_pass, 6))
        report = model.cache_report
        if report is not None:
            note = (f"; rebuilt: {report.rebuilt}" if report.rebuilt else "") + (
                "" if report.used else f"; {report.decision}")
            event("cache", "statistics cache %s: read %d of %d files (%d reused, %d dropped)%s",
                  report.cache, len(report.read), report.files, report.reused,
                  len(report.dropped), note, **report.to_dict())
        if start is not None:
            nightly.check_start(opts["start_from"], start_doc, start, model)
            event("start_from", "starting at the optimum of %s", opts["start_from"],
                  start_from=str(opts["start_from"]), used=True)
            start_section = {"path": str(opts["start_from"]), "used": True, "reason": None}
        event("fit", "fitting by %s", "ML" if opts["ml"] else "REML",
              method="ML" if opts["ml"] else "REML")
        result, why = _fit_from(model, opts, start, client)
        if why is not None:  # the fit a run without --start-from makes, said so
            event("start_from", "cold start: %s", why, level=logging.WARNING,
                  start_from=str(opts["start_from"]), used=False, reason=why)
            start_section = {"path": str(opts["start_from"]), "used": False, "reason": why}
            result = model.fit(**_fit_kwargs(opts), client=client, callback=_log_step)
        failures = result.mle_retvals.get("convergence_failures", [])
        if opts.get("terms") and not result.converged:  # the optimizer's message
            failures = [str(result.mle_retvals.get("message", ""))]
        status = "converged" if result.converged else \
            "not converged (" + "; ".join(failures) + ")"
        level = logging.INFO if result.converged else logging.WARNING
        event("result", "%s: llf %.10g after %d evaluations", status, result.llf,
              result.mle_retvals.get("evaluations", 0), level=level,
              converged=bool(result.converged), llf=result.llf, reasons=failures)
        timings = {"cluster": cluster_seconds, "total": time.perf_counter() - t0}
        if opts.get("terms"):  # (a grouped fit's result carries its own timings)
            timings = {"data_pass": pass_seconds,
                       "optimizer": result.mle_retvals.get("seconds"),
                       "evaluations": result.mle_retvals.get("evaluations"), **timings}
        interrupts.checkpoint()  # nothing is written after a Ctrl-C
        if opts["output"] is not None:
            sections = {"inputs": nightly.inputs_section(opts, files)}
            if report is not None:
                sections["cache"] = report.to_dict()
            if start_section is not None:
                sections["start"] = start_section
            write = terms_outputs if opts.get("terms") else write_outputs
            write(result, opts["output"], overwrite=opts["overwrite"],
                  options=dict(opts), cluster=info, timings=timings, client=client,
                  sections=sections)
            event("output", "wrote %s", opts["output"], output=str(opts["output"]))
        else:
            print(result.summary())
    return EXIT_OK if result.converged else EXIT_NOT_CONVERGED


def _model(opts: dict[str, Any], client):
    """The unfitted model of the options: :class:`~dlmm.model.MixedLM` (statsmodels'
    shape, as :func:`dlmm.mixedlm`), or for lme4's formulas beyond it (``opts["terms"]``,
    :func:`dlmm.cli.config.lme4_spelling`) :class:`~dlmm.terms_model.TermsMixedLM`, as
    :func:`dlmm.lmer` makes it."""
    if opts.get("terms"):
        from ..distributed.sources import read_parquet
        from ..terms_model import TermsMixedLM

        columns = [str(c) for c in read_parquet(opts["data"]).columns]
        return TermsMixedLM.from_lmer(opts["formula"], opts["data"], columns,
                                      missing=opts["missing"], client=client,
                                      drop_collinear=opts["drop_collinear"],
                                      weights=opts.get("weights"),
                                      residual_by=opts.get("residual_by"),
                                      residual_ar1=opts.get("residual_ar1"))
    import dlmm

    return dlmm.mixedlm(opts["formula"], opts["data"], groups=opts["groups"],
                        re_formula=opts["re_formula"], vc_formula=opts["vc"] or None,
                        missing=opts["missing"], client=client,
                        drop_collinear=opts["drop_collinear"], cache=opts["cache"],
                        weights=opts.get("weights"), residual_by=opts.get("residual_by"),
                        residual_ar1=opts.get("residual_ar1"))


def _fit_from(model, opts: dict[str, Any], start, client) -> tuple[Any, str | None]:
    """``(result, None)``: the fit from ``start`` (None: the default start); or
    ``(None, why)`` when the likelihood cannot be evaluated from a previous optimum
    (``InfeasiblePoint``, a ``LinAlgError``; overflow), whose warnings are then
    dropped: that attempt is not the run's fit."""
    if start is None:
        return model.fit(**_fit_kwargs(opts), client=client, callback=_log_step), None
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            result = model.fit(**_fit_kwargs(opts), start_params=start, client=client,
                               callback=_log_step)
    except (np.linalg.LinAlgError, OverflowError, FloatingPointError) as exc:
        return None, (f"the likelihood cannot be evaluated at the optimum of "
                      f"{str(opts['start_from'])!r} ({type(exc).__name__}: "
                      f"{one_line(str(exc))})")
    except BaseException:
        _show(caught)
        raise
    _show(caught)  # the run's own warnings, shown as usual
    return result, None


def _show(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _fit_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    """``MixedLM.fit`` arguments from the options (the optimizer's defaults where unset)."""
    kwargs: dict[str, Any] = {"reml": not opts["ml"]}
    for option, name in (("method", "method"), ("max_iter", "maxiter"),
                         ("newton_steps", "newton_steps"), ("driver_memory", "driver_memory")):
        if opts.get(option) is not None:
            kwargs[name] = opts[option]
    return kwargs


def _log_step(entry) -> None:
    event("evaluation", "step %d  llf %.10g  |grad| %.3g  [%s]", entry.evaluation, entry.llf,
          entry.grad_norm, entry.stage, step=entry.evaluation, llf=entry.llf,
          grad_norm=entry.grad_norm, seconds=round(entry.seconds, 6), stage=entry.stage)


@contextlib.contextmanager
def _cli_option_names() -> Iterator[None]:
    """Errors of the data pass that name a Python option, with the CLI's flag instead."""
    from ..exceptions import InputError
    from ..objective.totals import MISSING_DROP_HINT

    try:
        yield
    except InputError as exc:
        if MISSING_DROP_HINT not in str(exc) and "driver_memory" not in str(exc):
            raise
        raise InputError(str(exc).replace(MISSING_DROP_HINT, "--missing drop")
                         .replace("driver_memory", "--driver-memory")) from None


@contextlib.contextmanager
def _pass_progress(opts: dict[str, Any]) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar over the data pass on an interactive stderr (text logs), else a
    log line at every tenth of the partitions; nothing with --quiet."""
    if opts.get("quiet"):
        yield None
        return
    last = [-1]

    def log(done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if tenth != last[0]:
            last[0] = tenth
            event("data_pass", "data pass: %d/%d partitions", done, total,
                  stage="progress", done=done, total=total)

    if opts.get("log_format", "text") != "text":
        yield log
        return
    with data_pass_progress(log) as callback:
        yield callback
