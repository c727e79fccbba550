"""Projected binary classification from scikit-learn's digits by default, or CIFAR-10 with
`--config.search_tasks.source=cifar10 --config.search_tasks.data_dir=DIR` (and the same for select/final).
Starts from the hand-written 2-layer network and evolves its initialisation and learning rules (the
reference's projected-binary integration test, widened): banks 5/9/2, F=16."""
from experiments.automl_zero.configs import default
from azjax.zero import algorithms


def get_config():
    c = default.get_config()
    c.program.num_scalars, c.program.num_vectors, c.program.num_matrices = 5, 9, 2
    c.program.features = 16
    c.program.setup_ops = algorithms.NEURAL_NETWORK_SETUP_OPS
    c.program.predict_ops = algorithms.NEURAL_NETWORK_PREDICT_OPS
    c.program.learn_ops = algorithms.NEURAL_NETWORK_LEARN_OPS
    c.program.setup_size, c.program.predict_size, c.program.learn_size = 7, 5, 11
    c.initial = "NEURAL_NET"
    c.mutation.types = ("ALTER_PARAM", "RANDOMIZE_INSTRUCTION")
    for t in (c.search_tasks, c.select_tasks, c.final_tasks):
        t.kind = "projected_binary"
        t.num_train, t.num_valid = 200, 100
    c.search_tasks.num_tasks, c.select_tasks.num_tasks, c.final_tasks.num_tasks = 10, 10, 20
    c.final_tasks.held_out_pairs = True
    c.population_size, c.batch_size = 100, 20
    c.max_train_steps = 5e7
    c.max_experiments = 1
    c.sufficient_fitness = 0.99
    return c
