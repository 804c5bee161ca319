"""`make demo`: fit a mixed model to the Parquet data shipped in examples/data.

Scores of pupils in 120 schools (three Parquet files): fixed effects of study
hours and track, a random intercept and hours slope per school, and a
classroom variance component within schools. The Parquet input runs on the
embedded local Dask cluster (worker processes on 127.0.0.1).
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
    print(
        f"\n{result.nobs} rows, {result.n_groups} groups on the {result.backend} backend: "
        f"data pass {result.timings['data_pass']:.2f} s, optimizer "
        f"{result.timings['optimizer']:.2f} s ({result.timings['evaluations']} evaluations), "
        f"total {time.perf_counter() - start:.2f} s"
    )


if __name__ == "__main__":
    main()
