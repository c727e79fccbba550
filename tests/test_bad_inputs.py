"""Bad inputs to the launchers fail early and clearly, in-process and without compiling anything.

The AutoML-Zero sweep makes building tasks, building the evaluator and searching raise, so a bad
config that is not caught by the up-front checks fails these tests instead of being found late.
"""
import json
import os
import subprocess
import sys

import pytest

from azjax import nas
from azjax.nas.train import CHECKPOINT_NAME
from experiments import common
from experiments.automl_zero import search as zero_search
from experiments.automl_zero.configs import linear_quick
from tests.experiments.test_automl_zero_launcher import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def nothing_runs(monkeypatch):
    """Anything past the up-front checks (building tasks or the evaluator, searching) is a failure."""
    def reached(*args, **kwargs):
        raise AssertionError("reached work that should come after the config checks")

    monkeypatch.setattr(zero_search, "make_tasks", reached)
    monkeypatch.setattr(zero_search, "ProgramEvaluator", reached)
    monkeypatch.setattr(zero_search.search, "run", reached)


BAD_CONFIGS = [
    ("seed", -1, "seed"),
    ("population_size", 1, "population_size"),
    ("tournament_size", 50, "tournament_size"),
    ("batch_size", 0, "batch_size"),
    ("mutate_prob", 1.5, "mutate_prob"),
    ("max_train_steps", 0, "max_train_steps"),
    ("combine", "max", "combine"),
    ("initial", "NOPE", "initial"),
    ("num_islands", 0, "num_islands"),
    ("max_experiments", -1, "max_experiments"),
    ("max_seconds", 0.0, "max_seconds"),
    ("checkpoint_every_seconds", -1.0, "checkpoint_every_seconds"),
    ("metrics_every", 0, "metrics_every"),
    ("sufficient_fitness", float("nan"), "sufficient_fitness"),
    ("train_budget_factor", -1.0, "train_budget_factor"),
    ("hurdle_tasks", 2, "hurdle_tasks"),
    ("num_devices", -1, "num_devices"),
    ("program.dtype", "float16", "dtype"),
    ("program.learn_ops", ("SCALAR_DIFF", "SCALAR_FROBNICATE"), "learn_ops"),
    ("program.features", 0, "features"),
    ("mutation.types", ("NOPE",), "NOPE"),
    ("fec.num_train", 0, "fec"),
    ("search_tasks.kind", "quadratic", "search_tasks.kind"),
    ("search_tasks.num_train", 0, "search_tasks.num_train"),
    ("select_tasks.num_tasks", 0, "select_tasks.num_tasks"),
    ("select_tasks.num_valid", 0, "select_tasks.num_valid"),
    ("final_tasks.num_tasks", 0, "final_tasks.num_tasks"),
    ("final_tasks.num_epochs", 0, "final_tasks.num_epochs"),
    ("final_tasks.kind", "projected_binary", None),  # with source cifar10 below
]


@pytest.mark.parametrize("field, value, match", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_automl_zero_bad_config_fails_before_any_work(tmp_path, nothing_runs, field, value, match):
    c = tiny_config()
    *parents, leaf = field.split(".")
    node = c
    for p in parents:
        node = node[p]
    node[leaf] = value
    if match is None:  # projected binary CIFAR-10 without its folder: named before the search
        c.final_tasks.source = "cifar10"
        match = "final_tasks.data_dir"
    with pytest.raises(ValueError, match=match):
        zero_search.run_experiments(c, str(tmp_path))


@pytest.mark.parametrize("section", ["search_tasks", "select_tasks", "final_tasks"])
def test_cifar10_tasks_with_a_missing_folder_fail_before_the_search(tmp_path, nothing_runs, section):
    c = tiny_config()
    c[section].kind, c[section].source = "projected_binary", "cifar10"
    c[section].data_dir = str(tmp_path / "no_such_dir")
    with pytest.raises(ValueError, match=f"{section}.data_dir.*not a directory"):
        zero_search.run_experiments(c, str(tmp_path / "wd"))
    c[section].source = "mnist"
    with pytest.raises(ValueError, match=f"{section}.source"):
        zero_search.run_experiments(c, str(tmp_path / "wd"))


def test_missing_sklearn_says_what_to_install(tmp_path, nothing_runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    from azjax import data
    with pytest.raises(ModuleNotFoundError, match=r'pip install -e "\.\[data\]"'):
        data.load_digits_images()
    c = tiny_config()
    c.select_tasks.kind, c.select_tasks.source = "projected_binary", "digits"
    with pytest.raises(ModuleNotFoundError, match="scikit-learn"):
        zero_search.run_experiments(c, str(tmp_path))


def test_changed_fields_of_a_started_workdir_are_named_before_any_work(tmp_path, nothing_runs):
    c = tiny_config()
    zero_search.check_stored_config(c, tmp_path, lambda m: None, writer=True)
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0
    for field, value in (("seed", 1), ("program.learn_ops", ("SCALAR_DIFF",)),
                         ("search_tasks.num_tasks", 3)):
        changed = tiny_config()
        *parents, leaf = field.split(".")
        node = changed
        for p in parents:
            node = node[p]
        node[leaf] = value
        with pytest.raises(ValueError, match=rf"config differs .* in \['{field}'\]"):
            zero_search.run_experiments(changed, str(tmp_path))
    # Fields that do not shape the search may change; the change is logged.
    changed = tiny_config()
    changed.select_tasks.num_tasks, changed.max_seconds, changed.max_experiments = 5, 60.0, 3
    logged = []
    zero_search.check_stored_config(changed, tmp_path, logged.append, writer=True)
    assert "select_tasks.num_tasks changed from 2 to 5" in logged[0]
    assert "max_experiments changed from 1 to 3" in logged[0]
    assert zero_search.search_config_dict(changed) == zero_search.search_config_dict(tiny_config())


def test_read_only_workdir_fails_before_any_work(tmp_path, nothing_runs, monkeypatch):
    real_mkstemp = zero_search.tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(zero_search.tempfile, "mkstemp", read_only)
    with pytest.raises(ValueError, match="workdir .* is not writable"):
        zero_search.run_experiments(tiny_config(), str(tmp_path / "wd"))


def test_none_from_the_command_line(tmp_path):
    argv, fields = common.pop_none_overrides(
        ["main", "--config=x.py", "--config.max_seconds=None", "--config.stop_search_at_fitness=None",
         "--workdir=None"])
    assert argv == ["main", "--config=x.py", "--workdir=None"]
    c = linear_quick.get_config()
    c.lock()
    common.apply_none_overrides(c, fields)
    assert c.max_seconds is None and c.stop_search_at_fitness is None
    with pytest.raises(ValueError, match="population_size is not optional"):
        common.apply_none_overrides(c, ["population_size"])
    # End to end through absl's flag parsing: the run gets past the flags and stops at the bad field.
    args = [sys.executable, "-m", "experiments.automl_zero.main",
            "--config=experiments/automl_zero/configs/linear_quick.py", f"--workdir={tmp_path}",
            "--config.max_seconds=None", "--config.stop_search_at_fitness=None", "--config.tournament_size=0"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode != 0
    assert "tournament_size" in out.stderr and "could not convert" not in out.stderr, out.stderr[-2000:]


def test_nasnet_wrong_genotype_on_resume_keeps_the_workdir(tmp_path):
    from experiments.nasnet import train
    from experiments.nasnet.configs import digits_tiny
    workdir = tmp_path / "wd"
    workdir.mkdir()
    nas.save_genotype(nas.NASNET_A, workdir / "genotype.json")
    (workdir / CHECKPOINT_NAME).write_bytes(b"a checkpoint of NASNet-A")
    saved = (workdir / "genotype.json").read_bytes()
    other = tmp_path / "other.json"
    nas.save_genotype(nas.NASNET_A_LOOSE_ENDS, other)
    with pytest.raises(ValueError, match="--genotype_json.*differs from the genotype"):
        train.run(digits_tiny.get_config(), str(workdir), str(other))
    assert (workdir / "genotype.json").read_bytes() == saved, "the workdir's genotype is kept"
    # The same genotype given again is fine (it gets as far as the corrupt checkpoint here).
    nas.save_genotype(nas.NASNET_A, other)
    train.check_genotype(str(workdir), nas.load_genotype(other))


def test_nas_search_max_children_zero_is_named(tmp_path):
    from experiments.nas_search import search as nas_search_launcher
    from experiments.nas_search.configs import digits_smoke
    c = digits_smoke.get_config()
    c.max_children = 0
    with pytest.raises(ValueError, match="max_children"):
        nas_search_launcher.run(c, str(tmp_path))


def test_docs_do_not_claim_identical_interpreter_results():
    text = open(os.path.join(ROOT, "docs", "automl_zero.md")).read()
    row = next(line for line in text.splitlines() if line.startswith("| `backend`"))
    assert "identical" not in row and "last bit" in row
