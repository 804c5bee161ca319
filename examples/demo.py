"""`make demo`: fit a mixed model to the Parquet data shipped in examples/data.

Scores of pupils in 120 schools (three Parquet files): fixed effects of study
hours and track, a random intercept and hours slope per school, and a
classroom variance component within schools. Parquet input this small is read
into pandas and fitted in this process; larger input (or `client=`) runs on a
Dask cluster, and the line below then says how long the cluster took to start.
"""

import time
from pathlib import Path

import dlmm

DATA = Path(__file__).parent / "data" / "classrooms"


def main() -> None:
    start = time.perf_counter()
    model = dlmm.mixedlm(
        "score ~ hours + C(track)",
        str(DATA),
        groups="school",
        re_formula="~hours",
        vc_formula={"classroom": "0 + C(classroom)"},
    )
    result = model.fit(reml=True)
    print(result.summary())
    timings = result.timings
    where = "in process" if result.backend == "local" else \
        f"on the {result.backend} backend (cluster start {timings['cluster_start']:.2f} s)"
    print(
        f"\n{result.nobs} rows, {result.n_groups} groups, {where}: data pass "
        f"{timings['data_pass']:.2f} s, optimizer {timings['optimizer']:.2f} s "
        f"({timings['evaluations']} evaluations), total {time.perf_counter() - start:.2f} s"
    )


if __name__ == "__main__":
    main()
