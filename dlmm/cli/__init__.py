"""The ``dlmm`` command: ``fit``, ``summary``, ``simulate``, ``predict`` and ``bench``.

Run ``dlmm COMMAND --help`` for the options of a command. ``python -m
dlmm.cli`` is the same command.

``dlmm fit DATA``
    Fits a model to Parquet data on a Dask cluster: an existing one
    (``--scheduler ADDRESS``) or an embedded local cluster on 127.0.0.1
    (``--workers``, ``--threads-per-worker``, ``--memory-limit``; by default
    one single-threaded worker process per core, at most 8). With
    ``--output DIR`` it writes the saved-result folder of
    :mod:`dlmm.io.result_folder` (``result.json``, ``summary.txt``,
    ``random_effects.parquet``, ``vc_effects.parquet`` if there are variance
    components, ``fitted.parquet/`` with ``--fitted``; what ``dlmm.load_result``,
    ``dlmm summary`` and ``dlmm predict`` read) into a temporary sibling folder
    renamed into place when complete (a failed run leaves no folder); without
    it, the summary goes to stdout. Every option can be given in a TOML file
    (``--config``; keys are the long option names, with ``-`` or ``_``, and
    ``vc`` a table ``{name = "formula"}``; see :mod:`dlmm.cli.config`);
    command-line flags override the file (``--vc`` flags replace the file's
    whole ``vc`` table). ``--formula`` may state the whole model in lme4's
    spelling: a model statsmodels can state is restated as ``--groups``,
    ``--re-formula`` and ``--vc``; one beyond it (slopes at a nested level,
    several blocks on a factor, three levels) is fitted as :func:`dlmm.lmer`
    fits it (``TermsMixedLM``, the nested engine) into the same folder
    (``"kind": "terms"``, :mod:`dlmm.results.terms_saved`), on the same
    cluster options.

``dlmm summary RESULT_DIR``
    Prints the ``summary.txt`` of a result folder (``dlmm fit -o`` or
    ``result.save``: one format) or of the folder of a ``result.json`` given.

``dlmm simulate``
    Writes a partitioned Parquet data set from a known model, out of core,
    with its true parameters in ``_truth.json`` (see :mod:`dlmm.simulate`);
    ``--seed`` defaults to 0, ``--partitions`` to one file per started million
    rows (at most one per group).

``dlmm predict RESULT_DIR DATA --output PATH``
    Predicts new Parquet data with a saved fit (an output folder of ``dlmm
    fit`` or ``result.save``) on a cluster chosen as for ``fit``: the fixed
    part plus the random effects of the groups seen in the fit
    (``--no-random-effects``: the fixed part only). Writes a Parquet folder of
    the ``--keep`` columns (IDs to pass through), the model's columns and
    ``predicted``.

``dlmm bench``
    Times dlmm beside statsmodels (and lme4) on simulated data of several
    sizes; prints a table and, with ``--output DIR``, writes ``bench.json``,
    ``bench.txt`` and ``bench.png`` (see :mod:`dlmm.bench`).

Bare ``dlmm`` prints the usage and the commands (on stderr, exit 2). Options
are spelled in full (no abbreviations); a mistyped option, command or choice is
one error line naming the closest (:mod:`dlmm.cli.suggest`). ``dlmm fit``
checks its formulas' columns against the Parquet schema before any cluster
starts (:mod:`dlmm.cli.precheck`).

Exit codes
----------
0
    Done (``fit``: converged, or with ``--skip-unchanged`` a ``result`` event with
    ``"status": "unchanged"``: inputs and specification as in the previous output,
    nothing read or written).
1
    An unexpected error (``--verbose`` shows the traceback).
2
    Bad input or usage: one line ``dlmm: error: <message>`` names the column,
    file or option at fault; no output folder is written.
3
    ``fit`` only: the fit ran but did not converge; the outputs are written
    and ``result.json`` says ``"status": "not_converged"``.
130, 143
    Interrupted (Ctrl-C) or terminated (SIGTERM); nothing half-written is left.

Logging
-------
Progress goes to stderr through the ``logging`` logger ``"dlmm"``: the
cluster and its dashboard address (an embedded cluster's start as a
``cluster_start`` event with its ``seconds``; small data fitted in process as
``no Dask cluster``), the start and end of the data pass, one
line per optimizer evaluation (step, llf, gradient norm, stage), warnings,
and the outcome; with ``--cache`` a ``cache`` event (files read, reused,
dropped), with ``--start-from`` a ``start_from`` event, with
``--skip-unchanged`` a ``skip_unchanged`` event saying why the run was not
skipped. ``--quiet`` silences it (errors are still printed);
``--verbose`` adds debug messages and Dask's own warnings and tracebacks;
``--log-format json`` writes each line as a JSON object (``time``, ``level``,
``logger``, ``message``, ``event`` and the event's fields; an error is an
object with ``"event": "error"`` and ``exit_code``).

Modules, each importing only those listed before it: ``errors`` (exit codes,
exceptions), ``log``, ``parser`` (every option), ``cluster``, ``config``
(``fit``'s options from flags and ``--config``), ``nightly`` (input
fingerprints, ``--skip-unchanged``, ``--start-from``), one per command (``fit``,
``summary``, ``simulate``, ``predict``, ``bench``), ``runner`` (:func:`main`).
Among them ``suggest`` (the closest option) comes before ``parser``, and
``precheck`` (the model against the data's schema) before ``fit``.
"""

from .config import fit_options, read_config
from .errors import UsageError
from .log import configure_logging
from .parser import build_parser
from .runner import main

__all__ = ["UsageError", "build_parser", "configure_logging", "fit_options", "main",
           "read_config"]
