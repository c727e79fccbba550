"""The AutoML-Zero launcher end to end with a tiny config: outputs, resume, bad configs."""
import json
import os
import subprocess
import sys

import pytest

from azjax import zero
from experiments.automl_zero import search
from experiments.automl_zero.configs import linear_quick

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_config():
    c = linear_quick.get_config()
    c.population_size, c.tournament_size, c.batch_size = 20, 4, 10
    for t in (c.search_tasks, c.select_tasks, c.final_tasks):
        t.num_tasks, t.num_train, t.num_valid = 2, 20, 10
    c.max_train_steps = 6000
    c.max_experiments = 1
    c.stop_search_at_fitness = None
    c.backend = "select"
    c.log_every_seconds = 0.0
    c.metrics_every = 1
    return c


def _rows(workdir, experiment):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("experiment") == experiment]


@pytest.mark.slow
def test_launcher_writes_outputs_and_resumes(tmp_path, monkeypatch):
    c = tiny_config()
    c.checkpoint_every_seconds = 0.0  # every iteration: the kill below lands between two checkpoints
    summary = search.run_experiments(c, str(tmp_path))
    assert summary["experiments"] == 1
    for key in ("search_fitness", "select_fitness", "final_fitness"):
        assert 0.0 <= summary[key] <= 1.0
    cfg = search.program_config(c)
    program = zero.parse_program((tmp_path / "best_program.txt").read_text(), cfg)
    assert zero.format_program(program, cfg) == summary["program"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows and {"evaluations", "best_fitness", "train_steps"} <= set(rows[0])
    assert rows[-2]["train_steps"] >= c.max_train_steps
    assert os.listdir(tmp_path / "experiment_0")  # checkpoints
    full_rows = _rows(tmp_path, "0")

    # A kill -9 after the last metrics row but before the newest checkpoint and the record of the
    # experiment: the rerun resumes from the previous checkpoint and writes no row twice. The select and
    # final task sets, which do not shape the search, may change meanwhile.
    from azjax.search import checkpoint as ckpt
    exp_dir = tmp_path / "experiment_0"
    newest = ckpt.latest_step(exp_dir)
    ckpt.checkpoint_path(exp_dir, newest).unlink()
    for name in ("experiments.jsonl", "summary.json", "best_program.txt"):
        (tmp_path / name).unlink()
    kept = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
            if "experiment_index" not in line]
    (tmp_path / "metrics.jsonl").write_text("\n".join(kept) + "\n")
    c.select_tasks.num_tasks = c.final_tasks.num_tasks = 3
    logged = []
    resumed = search.run_experiments(c, str(tmp_path), log_fn=logged.append)
    assert any(f"resumed from checkpoint {ckpt.checkpoint_path(exp_dir, ckpt.latest_step(exp_dir) - 1)}" in m
               for m in logged), logged
    assert any("select_tasks.num_tasks changed from 2 to 3" in m for m in logged), logged
    assert [r["iteration"] for r in _rows(tmp_path, "0")] == [r["iteration"] for r in full_rows]
    assert _rows(tmp_path, "0") != [] and resumed["search_fitness"] == summary["search_fitness"]

    # A second run on the same workdir resumes: the finished experiment is not repeated. A Ctrl-C in
    # the middle of experiment 1 saves a checkpoint and says how to resume.
    c.max_experiments = 2
    calls = [0]
    real_progress = search.ProgressBar.__call__

    def interrupt_once(self, m):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return real_progress(self, m)

    monkeypatch.setattr(search.ProgressBar, "__call__", interrupt_once)
    logged = []
    with pytest.raises(KeyboardInterrupt):
        search.run_experiments(c, str(tmp_path), log_fn=logged.append)
    assert any("experiment 1: interrupted; saved checkpoint 3" in m and f"--workdir={tmp_path}" in m
               for m in logged), logged
    again = search.run_experiments(c, str(tmp_path))
    lines = (tmp_path / "experiments.jsonl").read_text().splitlines()
    assert [json.loads(line)["experiment"] for line in lines] == [0, 1]
    assert again["experiments"] == 2
    iterations = [r["iteration"] for r in _rows(tmp_path, "1")]
    assert iterations == sorted(set(iterations))


@pytest.mark.parametrize("field, value, match", [
    ("tournament_size", 50, "tournament_size"),
    ("batch_size", 0, "batch_size"),
    ("combine", "max", "combine"),
])
def test_bad_config_fails_before_compiling(tmp_path, field, value, match):
    c = tiny_config()
    c[field] = value
    with pytest.raises(ValueError, match=match):
        search.run_experiments(c, str(tmp_path))


def test_unknown_op_name_fails_naming_the_field(tmp_path):
    c = tiny_config()
    c.program.learn_ops = ("SCALAR_DIFF", "SCALAR_FROBNICATE")
    with pytest.raises(ValueError, match="learn_ops"):
        search.run_experiments(c, str(tmp_path))


def test_corrupt_experiments_record_is_an_error_and_kept(tmp_path):
    (tmp_path / "experiments.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="experiments.jsonl"):
        search.run_experiments(tiny_config(), str(tmp_path))
    assert (tmp_path / "experiments.jsonl").read_text() == "{not json\n"


@pytest.mark.slow
def test_main_module_runs(tmp_path):
    args = [sys.executable, "-m", "experiments.automl_zero.main",
            "--config=experiments/automl_zero/configs/linear_quick.py", f"--workdir={tmp_path}",
            "--config.population_size=20", "--config.tournament_size=4", "--config.batch_size=10",
            "--config.max_train_steps=3000", "--config.max_experiments=1", "--config.backend=select"]
    for t in ("search_tasks", "select_tasks", "final_tasks"):
        args += [f"--config.{t}.num_tasks=2", f"--config.{t}.num_train=20", f"--config.{t}.num_valid=10"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Best program" in out.stdout and "def Predict():" in out.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["experiments"] == 1


@pytest.mark.parametrize("backend", ["native", pytest.param("select", marks=pytest.mark.slow),
                                     pytest.param("cond", marks=pytest.mark.slow)])
def test_launcher_runs_in_float64_on_every_backend(tmp_path, backend):
    c = tiny_config()
    c.program.dtype = "float64"
    c.backend = backend
    c.max_train_steps = 2000
    summary = search.run_experiments(c, str(tmp_path))
    assert summary["experiments"] == 1 and 0.0 <= summary["final_fitness"] <= 1.0
    cfg = search.program_config(c)
    assert cfg.dtype == "float64"
    zero.parse_program((tmp_path / "best_program.txt").read_text(), cfg)
