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
    c.strategy = "select"
    c.log_every_seconds = 0.0
    return c


def test_launcher_writes_outputs_and_resumes(tmp_path):
    c = tiny_config()
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
    # A second run on the same workdir resumes: the finished experiment is not repeated.
    c.max_experiments = 2
    again = search.run_experiments(c, str(tmp_path))
    lines = (tmp_path / "experiments.jsonl").read_text().splitlines()
    assert [json.loads(line)["experiment"] for line in lines] == [0, 1]
    assert again["experiments"] == 2


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


def test_main_module_runs(tmp_path):
    args = [sys.executable, "-m", "experiments.automl_zero.main",
            "--config=experiments/automl_zero/configs/linear_quick.py", f"--workdir={tmp_path}",
            "--config.population_size=20", "--config.tournament_size=4", "--config.batch_size=10",
            "--config.max_train_steps=3000", "--config.max_experiments=1", "--config.strategy=select"]
    for t in ("search_tasks", "select_tasks", "final_tasks"):
        args += [f"--config.{t}.num_tasks=2", f"--config.{t}.num_train=20", f"--config.{t}.num_valid=10"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Best program" in out.stdout and "def Predict():" in out.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["experiments"] == 1
