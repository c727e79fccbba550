"""Every launcher also runs as a plain script (``python experiments/<name>/main.py``), from any
working directory and without the repository on PYTHONPATH, as the Flax examples do."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _script(name, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", name, "main.py"),
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name, config", [("automl_zero", "linear_quick"),
                                          ("nas_search", "digits_smoke"),
                                          ("nasnet", "digits_tiny")])
def test_script_loads_its_config_and_reaches_main(tmp_path, name, config):
    # A surplus argument stops main() after the flags, the config file (which imports
    # experiments.*) and every launcher module have loaded, before any work.
    out = _script(name, f"--config={ROOT}/experiments/{name}/configs/{config}.py",
                  f"--workdir={tmp_path}", "surplus", cwd=tmp_path)
    assert "ModuleNotFoundError" not in out.stderr, out.stderr[-3000:]
    assert out.returncode == 1 and "Unexpected arguments: ['surplus']" in out.stderr, \
        out.stderr[-3000:]


def test_automl_zero_script_runs_a_tiny_search(tmp_path):
    args = [f"--config={ROOT}/experiments/automl_zero/configs/linear_quick.py",
            f"--workdir={tmp_path / 'wd'}", "--config.population_size=20",
            "--config.tournament_size=4", "--config.batch_size=10",
            "--config.max_train_steps=3000", "--config.max_experiments=1",
            "--config.backend=native"]
    for t in ("search_tasks", "select_tasks", "final_tasks"):
        args += [f"--config.{t}.num_tasks=2", f"--config.{t}.num_train=20",
                 f"--config.{t}.num_valid=10"]
    out = _script("automl_zero", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Best program" in out.stdout and "def Predict():" in out.stdout
    assert json.loads((tmp_path / "wd" / "summary.json").read_text())["experiments"] == 1
