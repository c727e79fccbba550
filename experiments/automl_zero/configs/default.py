"""Defaults shared by the AutoML-Zero configs (the reference demo).

Every field can be overridden on the command line, e.g. `--config.population_size=100`.
"""
import ml_collections
from ml_collections import config_dict

from azjax.zero import algorithms

DEMO_OPS = algorithms.LINEAR_OPS  # the six ops of the reference demo


def tasks(kind="linear", num_tasks=10, num_train=100, num_valid=100, num_epochs=1, source="digits",
          data_dir="", held_out_pairs=False):
    return ml_collections.ConfigDict(dict(kind=kind, num_tasks=num_tasks, num_train=num_train,
                                          num_valid=num_valid, num_epochs=num_epochs, source=source,
                                          data_dir=data_dir, held_out_pairs=held_out_pairs))


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.program = ml_collections.ConfigDict(dict(
        num_scalars=4, num_vectors=3, num_matrices=1, features=4,
        setup_ops=DEMO_OPS, predict_ops=DEMO_OPS, learn_ops=DEMO_OPS,
        setup_size=10, predict_size=2, learn_size=8, dtype="float32"))
    # Size bounds: -1 means "the component's array length" (fixed sizes: no insert/remove).
    c.mutation = ml_collections.ConfigDict(dict(
        types=("ALTER_PARAM", "RANDOMIZE_INSTRUCTION", "RANDOMIZE_COMPONENT_FUNCTION"), paper_variant=False,
        setup_size_min=-1, predict_size_min=-1, learn_size_min=-1,
        setup_size_max=-1, predict_size_max=-1, learn_size_max=-1))
    c.initial = "RANDOM"
    c.sizes_init = ()
    c.search_tasks = tasks(num_train=100, num_valid=100)
    c.select_tasks = tasks(num_tasks=100, num_train=1000, num_valid=100)
    c.final_tasks = tasks(num_tasks=100, num_train=1000, num_valid=100)
    c.randomize_task_seeds = True
    c.population_size = 1000
    c.tournament_size = 10
    c.mutate_prob = 0.9
    c.batch_size = 100          # children per ask (independent tournaments); 1 is the reference's loop
    # Islands (paper §4.2): > 1 runs num_islands populations of population_size each (batch_size
    # children per island per ask) exchanging num_migrants members every migrate_every evaluations
    # per island.
    c.num_islands = 1
    c.migrate_every = 10_000
    c.num_migrants = config_dict.placeholder(int)  # None: half the population (paper: 50 of 100)
    c.migration_topology = "ring"  # or "random" (immigrants drawn from all other islands)
    c.combine = "mean"
    c.fec = ml_collections.ConfigDict(dict(enabled=True, num_train=10, num_valid=10, cache_size=100_000,
                                           forget_every=100))
    c.train_budget_factor = config_dict.placeholder(float)  # e.g. 2.0: the reference's op-cost budget
    c.hurdle_tasks = 0          # > 0: hurdles (paper §3.2) after this many search tasks
    c.hurdle_percentile = 75.0
    c.max_train_steps = 2e8     # per experiment, in training examples (the reference's budget unit)
    c.max_experiments = 0       # 0: until sufficient_fitness
    c.sufficient_fitness = 0.9999
    c.stop_search_at_fitness = config_dict.placeholder(float)  # None: the reference (run the budget)
    c.max_seconds = config_dict.placeholder(float)
    c.backend = ""              # interpreter: "" = native on CPU, select on accelerators; or native/select/cond
    c.strategy = ""             # deprecated alias of backend
    c.num_devices = config_dict.placeholder(int)  # local devices the population is sharded over (None/0: all)
    c.checkpoint_every_seconds = 60.0
    c.log_every_seconds = 5.0
    c.metrics_every = 10        # iterations between metrics rows (each one reads the population back to the host)
    # Constant tuning (paper S7) of the final program: > 0 trials of log-uniform factors in [0.001, 1000] on
    # tuning tasks built like select_tasks (their own seed); tuned vs untuned fitness on the final tasks.
    c.tune_constants = ml_collections.ConfigDict(dict(num_trials=0))
    return c
