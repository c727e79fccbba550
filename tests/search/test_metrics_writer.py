"""search.MetricsWriter: numeric rows, prefixes, and dropping rows past a resumed checkpoint."""
import json

import jax.numpy as jnp
import numpy as np

from azjax import search


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_keep_numeric_scalars_only(tmp_path):
    w = search.MetricsWriter(tmp_path / "m.jsonl")
    w({"iteration": 3, "best_fitness": np.float32(0.5), "count": jnp.int32(7), "flag": True,
       "population": np.zeros(3), "name": "x", "nan": float("nan")})
    (row,) = _rows(tmp_path / "m.jsonl")
    assert row == {"iteration": 3, "best_fitness": 0.5, "count": 7, "flag": True,
                   "nan": row["nan"]} and np.isnan(row["nan"])
    assert isinstance(row["iteration"], int)
    search.MetricsWriter(tmp_path / "off.jsonl", enabled=False)({"iteration": 1})
    assert not (tmp_path / "off.jsonl").exists()


def test_start_drops_only_its_own_rows_past_the_resumed_iteration(tmp_path):
    path = tmp_path / "m.jsonl"
    plain, first, second = (search.MetricsWriter(path), search.MetricsWriter(path, prefix="0"),
                            search.MetricsWriter(path, prefix="1"))
    for i in (1, 2, 3):
        plain({"iteration": i})
        first({"iteration": i})
        second({"iteration": i})
    with open(path, "a") as f:
        f.write('{"iteration": 4, "exper')  # a line cut short by a kill
    first.start({"iteration": 1, "evaluations": 4, "resumed_from": 1})
    rows = _rows(path)
    assert [r["iteration"] for r in rows if r.get("experiment") == "0"] == [1]
    assert [r["iteration"] for r in rows if r.get("experiment") == "1"] == [1, 2, 3]
    assert [r["iteration"] for r in rows if "experiment" not in r] == [1, 2, 3]
    plain.start({"iteration": 2, "evaluations": 4, "resumed_from": 2})
    assert [r["iteration"] for r in _rows(path) if "experiment" not in r] == [1, 2]
