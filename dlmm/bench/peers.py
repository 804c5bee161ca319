"""The benchmark's peers: statsmodels in this process, lme4 through ``Rscript``, gpboost
through a Python the user names.

All are peers, never dependencies: statsmodels is imported only when it is
installed, and lme4 runs only when ``Rscript`` finds it (Debian:
``apt-get install r-cran-lme4``, with ``r-cran-data.table`` for a fast CSV
reader). lme4 reads a CSV copy of the data (written once beside the Parquet
files), and only its ``lmer`` call is timed, inside R. gpboost (crossed random
intercepts, :func:`gpboost_fit`) runs in a child process of a Python that has it
(``--gpboost-python``, e.g. a venv of its own: ``python3 -m venv peers &&
peers/bin/pip install gpboost pandas pyarrow``), reading the Parquet data; only its
``fit`` is timed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import warnings
from pathlib import Path


def statsmodels_fit(path: Path, formula: str, groups: str | None, re_formula: str | None = None,
                    vc_formula: dict | None = None, reml: bool = True) -> dict:
    """statsmodels' REML (or ML) fit of the Parquet data at ``path``: seconds, llf,
    converged."""
    import pandas as pd
    import statsmodels.formula.api as smf

    frame = pd.read_parquet(path)
    if groups is None:
        frame = frame.assign(__one=1)
        groups = "__one"
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = smf.mixedlm(formula, frame, groups=groups, re_formula=re_formula,
                          vc_formula=vc_formula).fit(reml=reml)
    return {"seconds": time.perf_counter() - start, "llf": float(res.llf),
            "converged": bool(res.converged)}


def statsmodels_fit_within(path: Path, formula: str, groups: str | None, budget: float,
                           re_formula: str | None = None, vc_formula: dict | None = None,
                           reml: bool = True) -> dict:
    """:func:`statsmodels_fit` in a child process that is stopped after ``budget``
    seconds (``subprocess.TimeoutExpired``): a peer over its budget is not waited for."""
    import sys

    args = json.dumps([str(path), formula, groups, re_formula, vc_formula, reml])
    code = ("import json, sys; from dlmm.bench.peers import statsmodels_fit; "
            f"a = json.loads({json.dumps(args)}); "
            "print('SM-FIT ' + json.dumps(statsmodels_fit(__import__('pathlib').Path(a[0]), "
            "*a[1:])))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=budget)
    for line in done.stdout.splitlines():
        if line.startswith("SM-FIT "):
            return json.loads(line[len("SM-FIT "):])
    raise RuntimeError(" ".join(done.stderr.split())[-300:])


def over_budget(budget: float) -> dict:
    """The result of a peer stopped at its budget."""
    return {"timed_out": f"stopped after {budget:.0f} s (the peer budget)", "budget": budget}


def lme4_available(package: str = "lme4") -> bool:
    """Whether ``Rscript`` runs and has lme4 (or another R ``package``)."""
    if shutil.which("Rscript") is None:
        return False
    try:
        done = subprocess.run(["Rscript", "-e", f"suppressMessages(library({package}))"],
                              capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def csv_copy(path: Path) -> Path:
    """A CSV copy beside the Parquet data (``NAME.csv`` for a file or folder ``NAME``),
    written once; never inside a Parquet folder, whose readers would trip on it."""
    import pandas as pd

    target = path.with_name(path.name + ".csv") if path.is_dir() else path.with_suffix(".csv")
    if not target.exists():
        tmp = target.with_name(target.name + ".tmp")
        pd.read_parquet(path).to_csv(tmp, index=False)
        tmp.replace(target)
    return target


def _rscript_fit(path: Path, library: str, call: str, warned: str,
                 timeout: float) -> tuple[float, float, bool]:
    """``m <- CALL`` of R's ``library`` on the data at ``path`` (Parquet, read through a
    CSV copy into ``d``): seconds of the call alone, llf, and ``warned`` (R code: whether
    the peer warned about convergence)."""
    csv = csv_copy(Path(path))
    script = (
        f"suppressMessages(library({library}));"
        "read <- if (requireNamespace('data.table', quietly = TRUE)) "
        "function(f) as.data.frame(data.table::fread(f)) else read.csv;"
        f"d <- read({json.dumps(str(csv))});"
        f"t0 <- Sys.time(); m <- {call};"
        "secs <- as.numeric(difftime(Sys.time(), t0, units = 'secs'));"
        f"warned <- {warned};"
        "cat(sprintf('%.6f %.12g %s', secs, as.numeric(logLik(m)), warned), '\\n')"
    )
    done = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(" ".join(done.stderr.split())[-300:])
    secs, llf, flag = done.stdout.split()[:3]
    return float(secs), float(llf), flag == "TRUE"


def lme4_fit(path: Path, formula: str, timeout: float, reml: bool = True) -> dict:
    """lme4's ``lmer(formula)`` on the data at ``path``: seconds of the ``lmer`` call
    alone, llf, and whether lme4 warned about convergence."""
    secs, llf, warned = _rscript_fit(
        path, "lme4", f"lmer({formula}, data = d, REML = {'TRUE' if reml else 'FALSE'})",
        "length(m@optinfo$conv$lme4$messages) > 0", timeout)
    return {"seconds": secs, "llf": llf, "converged": not warned}


def nlme_fit(path: Path, fixed: str, random: str, timeout: float, reml: bool = True,
             weights: str | None = None, correlation: str | None = None) -> dict:
    """nlme's ``lme`` on the data at ``path``, with a variance function and a correlation
    structure (R code): seconds of the ``lme`` call alone and llf (``lme`` stops with an
    error where it does not converge)."""
    extra = "".join(f", {name} = {code}" for name, code in
                    (("weights", weights), ("correlation", correlation)) if code)
    secs, llf, _ = _rscript_fit(
        path, "nlme", f"lme({fixed}, random = {random}, data = d, "
        f"method = '{'REML' if reml else 'ML'}'{extra})", "FALSE", timeout)
    return {"seconds": secs, "llf": llf, "converged": True}


#: The gpboost child: reads the Parquet data, fits crossed random intercepts, prints
#: one ``GPBOOST-FIT`` JSON line (only ``fit`` timed).
GPBOOST_SCRIPT = """
import json, sys, time
import numpy as np, pandas as pd
import gpboost as gpb
a = json.loads(sys.argv[1])
d = pd.read_parquet(a["path"])
X = np.column_stack([np.ones(len(d))] + [d[c].to_numpy(float) for c in a["covariates"]])
model = gpb.GPModel(group_data=d[a["factors"]].to_numpy(), likelihood="gaussian")
t0 = time.perf_counter()
model.fit(y=d[a["response"]].to_numpy(float), X=X)
secs = time.perf_counter() - t0
cov = np.asarray(model.get_cov_pars()).ravel().tolist()
coef = np.asarray(model.get_coef()).ravel().tolist()
print("GPBOOST-FIT " + json.dumps({"seconds": secs,
      "llf": -float(model.get_current_neg_log_likelihood()),
      "cov_pars": cov, "coef": coef, "version": gpb.__version__,
      "settings": str(model.get_optim_params() if hasattr(model, "get_optim_params") else "")}))
"""


def gpboost_python(given: str | None) -> str | None:
    """The Python that runs gpboost: ``given`` (``--gpboost-python``) when it imports
    gpboost, else this Python when it does, else None."""
    import sys

    for python in ([given] if given else []) + [sys.executable]:
        try:
            done = subprocess.run([python, "-c", "import gpboost"], capture_output=True,
                                  timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return python
    return None


def gpboost_fit(python: str, path: Path, response: str, covariates: list[str],
                factors: list[str], timeout: float, script: str = GPBOOST_SCRIPT) -> dict:
    """gpboost's ML fit of ``response ~ covariates`` with an intercept per level of each
    of ``factors`` (crossed), with its default settings, by ``python`` on the Parquet
    data at ``path``: seconds of ``fit``, llf (minus its negative log-likelihood),
    ``cov_pars`` (error, then one variance per factor), ``coef``; ``converged`` is not
    reported by gpboost."""
    args = json.dumps({"path": str(path), "response": response, "covariates": covariates,
                       "factors": factors})
    done = subprocess.run([python, "-c", script, args], capture_output=True, text=True,
                          timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith("GPBOOST-FIT "):
            return json.loads(line[len("GPBOOST-FIT "):])
    raise RuntimeError(" ".join(done.stderr.split())[-300:] or "gpboost printed no result")
