"""``dlmm predict``: predictions of a saved fit for new Parquet data, written as Parquet
(to a local folder, or published at a URL: :mod:`dlmm.io.store`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..exceptions import InputError
from . import cluster
from .errors import EXIT_OK
from .log import event

PREDICTIONS_MARKER = "_predictions.json"
PREDICTIONS_SCHEMA = "dlmm.predictions/1"


def run(args: argparse.Namespace) -> int:
    """Predict ``args.data`` with the fit in ``args.result_dir``; write ``args.output``.

    ``RESULT_DIR`` is a result folder (``dlmm fit -o`` or ``result.save``: one
    format, :mod:`dlmm.io.result_folder`) or a URL where one was published. The
    Parquet folder written (at a URL: the run prefix its manifest names) holds the
    ``--keep`` columns (checked before any cluster starts), the model's columns
    found in the data (not the response) and ``predicted``, and
    the marker ``_predictions.json`` (schema ``dlmm.predictions/1``: the result
    folder, the data, the columns; Parquet readers skip it), by which
    ``--overwrite`` knows the folder as predictions. The output may not be, hold
    or lie inside DATA or RESULT_DIR.

    Returns
    -------
    int
        0.
    """
    from ..distributed.sources import read_parquet
    from ..io.folders import PREDICTIONS
    from ..io.publish import staged_output
    from ..io.store import check_input_urls, check_output, is_url, local_path
    from ..results.loaded import load_result

    inputs = {"DATA": args.data, "RESULT_DIR": args.result_dir}
    for name, value in inputs.items():
        check_input_urls(value, name)
    check_output(args.output, args.overwrite, kind=PREDICTIONS, inputs=inputs)
    opts = cluster.cluster_options(vars(args))
    folder = args.result_dir if is_url(args.result_dir) else Path(local_path(args.result_dir))
    result = load_result(folder)
    spec = result.model.spec
    if spec is None:
        raise InputError(f"{str(folder)!r} was fitted from arrays and cannot predict data")
    # Fail on a missing or unreadable input before any cluster starts.
    frame = read_parquet(args.data)
    spec.check_prediction_columns(frame.columns, args.random_effects, repr(args.data))
    columns = output_columns(spec, frame.columns, args.keep, repr(args.data))
    with cluster.connected(opts) as (client, _):
        frame = frame[columns]
        predicted = result.predict(frame, random_effects=args.random_effects, client=client)
        out = frame.assign(predicted=predicted)
        start = time.perf_counter()
        with staged_output(args.output, overwrite=args.overwrite, kind=PREDICTIONS,
                           inputs=inputs) as tmp:
            client.compute(out.to_parquet(str(tmp), write_index=False, compute=False)).result()
            _write_marker(tmp, folder, args.data, list(out.columns))
        event("done", "wrote predictions to %s in %.2f s", args.output,
              time.perf_counter() - start, output=args.output)
    return EXIT_OK


def output_columns(spec, available, keep: list[str], source: str) -> list[str]:
    """The columns of DATA written beside ``predicted``: the ``--keep`` columns in the
    order given, then the model's columns found in the data (not the response).

    Raises
    ------
    InputError
        A ``--keep`` column is not in the data, or is named ``predicted``.
    """
    available = [str(c) for c in available]
    for name in keep:
        if name == "predicted":
            raise InputError("--keep 'predicted': that is the name of the output's "
                             "predictions column")
        if name not in available:
            raise InputError(f"--keep column {name!r} is not in DATA {source} (columns: "
                             f"{', '.join(available[:20])}"
                             f"{', ...' if len(available) > 20 else ''})")
    kept = list(dict.fromkeys(keep))
    model = [c for c in spec.columns
             if c in available and c != spec.response and c not in kept]
    return kept + model


def _write_marker(folder, result_dir: Path | str, data: str, columns: list[str]) -> None:
    """``_predictions.json``: what the folder is and where it came from."""
    import datetime as dt

    doc = {
        "schema": PREDICTIONS_SCHEMA,
        "result": str(result_dir.resolve() if isinstance(result_dir, Path) else result_dir),
        "data": str(data),
        "columns": [str(c) for c in columns],
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (folder / PREDICTIONS_MARKER).write_text(json.dumps(doc, indent=2) + "\n",
                                             encoding="utf-8")
