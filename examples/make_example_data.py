"""Write the example data set shipped in ``examples/data/classrooms``.

Pupils' test scores in 120 schools: a random intercept and a random slope of
study hours per school, and a classroom variance component within schools.
Written as three Parquet files, schools split across files at random, so that
the demo also shows groups that span partitions. Run from the repository root:

    python examples/make_example_data.py
"""

from pathlib import Path

import numpy as np
import pandas as pd


def make(seed: int = 20261125) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_schools, classes = 120, 4
    sizes = rng.integers(15, 60, size=n_schools)
    school = np.repeat(np.arange(n_schools), sizes)
    n = school.shape[0]
    hours = rng.gamma(4.0, 1.5, size=n)
    track = rng.choice(["academic", "general", "vocational"], size=n, p=[0.4, 0.4, 0.2])
    classroom = rng.integers(0, classes, size=n)
    u = rng.multivariate_normal([0, 0], [[16.0, 1.2], [1.2, 0.5]], size=n_schools)
    c = rng.normal(scale=2.0, size=(n_schools, classes))
    effect = {"academic": 4.0, "general": 0.0, "vocational": -2.5}
    score = (
        50 + 1.8 * hours + np.vectorize(effect.get)(track)
        + u[school, 0] + u[school, 1] * hours + c[school, classroom]
        + rng.normal(scale=5.0, size=n)
    )
    return pd.DataFrame({
        "score": score.round(2),
        "hours": hours.round(2),
        "track": track,
        "classroom": np.array(["A", "B", "C", "D"])[classroom],
        "school": np.char.add("s", school.astype(str).astype("U4")),
    })


if __name__ == "__main__":
    frame = make().sample(frac=1.0, random_state=1).reset_index(drop=True)
    out = Path(__file__).parent / "data" / "classrooms"
    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(frame), 4).astype(int)
    for i in range(3):
        part = frame.iloc[bounds[i]:bounds[i + 1]]
        part.to_parquet(out / f"part-{i}.parquet", index=False)
    print(f"wrote {len(frame)} rows to {out}")
