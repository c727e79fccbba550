"""The §4.3 adaptation configs (docs/automl_zero.md §10) run end to end through the launcher with tiny
overrides, in both variants, and their variants differ only where the paper's settings say."""
import jax
import numpy as np
import pytest

from azjax import zero
from experiments.automl_zero import search
from experiments.automl_zero.configs import adapt_fast_training, adapt_few_examples, adapt_multiclass, adaptations

pytest.importorskip("sklearn")

CONFIGS = {"adapt_few_examples": adapt_few_examples, "adapt_fast_training": adapt_fast_training,
           "adapt_multiclass": adapt_multiclass}


def tiny(c):
    c.population_size, c.tournament_size, c.batch_size = 4, 2, 2
    for t in (c.search_tasks, c.select_tasks, c.final_tasks):
        t.num_tasks, t.num_train, t.num_valid, t.num_epochs = 1, 20, 10, 2
    c.max_train_steps = 400
    c.log_every_seconds = 0.0
    c.checkpoint_every_seconds = 1e9
    return c


def test_variants_follow_the_paper():
    shape = lambda c: (c.search_tasks.kind, c.search_tasks.num_train, c.search_tasks.num_epochs,  # noqa: E731
                       c.program.num_classes)
    assert shape(adapt_few_examples.get_config()) == ("projected_binary", 25, 100, 0)
    assert shape(adapt_few_examples.get_config("control")) == ("projected_binary", 250, 100, 0)
    assert shape(adapt_fast_training.get_config()) == ("projected_binary", 250, 10, 0)
    assert shape(adapt_fast_training.get_config("control")) == ("projected_binary", 250, 100, 0)
    assert shape(adapt_multiclass.get_config()) == ("projected_multiclass", 250, 10, 10)
    assert shape(adapt_multiclass.get_config("control")) == ("projected_binary", 250, 10, 0)
    c = adapt_multiclass.get_config()
    cfg = search.program_config(c)
    assert (cfg.num_scalars, cfg.num_vectors, cfg.num_matrices, cfg.features) == (10, 16, 4, 16)
    assert (cfg.setup_size, cfg.predict_size, cfg.learn_size) == (21, 21, 45)
    assert len(cfg.setup_ops) == 9 and len(cfg.predict_ops) == len(cfg.learn_ops) == 57
    with pytest.raises(ValueError, match="variant must be one of"):
        adapt_multiclass.get_config("controll")
    # The initial population is the hand-written network, at its own size.
    prog = search.make_space(c).sample(jax.random.key(0))
    assert "v2 = dot(m1, v5)" in zero.format_program(jax.tree_util.tree_map(np.asarray, prog), cfg)
    assert adaptations.VARIANTS == ("experiment", "control")


# Each run compiles the §4.3 space's mutations and evaluators (64 ops at F=16: minutes on the 2-core CPU);
# the default suite runs one binary variant, and the multi-class one with the network's ops only.
DEFAULT_RUNS = {("adapt_fast_training", "experiment")}


@pytest.mark.parametrize("name,variant", [(n, v) if (n, v) in DEFAULT_RUNS else
                                          pytest.param(n, v, marks=pytest.mark.slow)
                                          for n in CONFIGS for v in adaptations.VARIANTS])
@pytest.mark.slow
def test_config_runs_end_to_end(name, variant, tmp_path):
    c = tiny(CONFIGS[name].get_config(variant))
    summary = search.run_experiments(c, str(tmp_path))
    assert 0.0 <= summary["final_fitness"] <= 1.0
    cfg = search.program_config(c)
    zero.parse_program((tmp_path / "best_program.txt").read_text(), cfg)


def test_multiclass_config_runs_with_the_network_ops(tmp_path):
    from azjax.zero import algorithms

    c = tiny(adapt_multiclass.get_config())
    c.program.setup_ops = algorithms.MULTICLASS_NETWORK_SETUP_OPS
    c.program.predict_ops = algorithms.MULTICLASS_NETWORK_PREDICT_OPS
    c.program.learn_ops = algorithms.MULTICLASS_NETWORK_LEARN_OPS
    summary = search.run_experiments(c, str(tmp_path))
    assert 0.0 <= summary["final_fitness"] <= 1.0
    zero.parse_program(summary["program"], search.program_config(c))  # a multi-class program: v1 never written


def test_multiclass_tasks_need_the_multiclass_layout():
    c = tiny(adapt_multiclass.get_config())
    c.program.num_classes = 0
    with pytest.raises(ValueError, match="need config.program.num_classes=10"):
        search.validate_config(c)
