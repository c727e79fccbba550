"""The NASNet paper's proxy search on CIFAR-10: PPO controller, batches of 20,
children N=2 (num_cells 6) trained 20 epochs with cosine decay on a random 45k/5k split,
reward = validation accuracy, 13 ops and add/concat combiners. An accelerator (many) job.

Needs the extracted ``cifar-10-batches-py`` directory: ``--config.data_dir=...``. The paper
trained 20,000 children; set ``max_children`` / ``max_seconds`` to your budget.
"""
from experiments.nas_search.configs import digits_smoke


def get_config():
    c = digits_smoke.get_config()
    c.dataset = "cifar10"
    c.data_dir = ""
    c.num_valid = 5000
    c.random_split = True  # NASNet: a random 5k
    c.ops = "all"
    c.combiners = ("add", "concat")
    c.strategy = "ppo"
    c.batch_children = 20
    c.controller_lr = 3.5e-4
    c.population_size = 100  # for --config.strategy=evolution (AmoebaNet P=100, S=25)
    c.tournament_size = 25
    c.mutate_prob = 0.95
    c.max_children = 20000
    c.checkpoint_every_seconds = 600.0
    c.leaderboard_size = 250  # the paper retrained the top 250
    c.child.num_cells = 6  # N = 2
    c.child.filters = 16  # unstated in the paper
    c.child.depthwise_impl = "auto"
    c.child.batch_size = 32
    c.child.num_epochs = 20
    c.child.num_steps = 0
    c.child.learning_rate = 0.025
    c.child.pad_crop = 4
    c.child.flip = True
    c.child.eval_batch_size = 500
    return c
