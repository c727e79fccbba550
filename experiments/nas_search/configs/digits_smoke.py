"""A few-minute CPU smoke search on scikit-learn's 8x8 digits: PPO controller, NASNet-style
children (fresh supernet weights per child, 30 SGD steps each), ENAS op set, add combiner.

Most of the time is the one supernet compile (about 1-2 min on 2 CPU cores); every child after
that takes well under a second of training.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = "digits"
    c.num_test = 297
    c.num_valid = 300  # the reward set, carved from the training part
    c.random_split = True
    c.seed = 0
    # Space.
    c.ops = "enas"  # "all" (13 ops), "enas" (5), "amoeba" (8)
    c.combiners = ("add",)
    c.num_blocks = 5
    # Strategy.
    c.strategy = "ppo"  # ppo | reinforce | evolution | random
    c.batch_children = 4
    c.controller_lr = 3.5e-4
    c.controller_hidden = 100
    c.entropy_weight = 1e-5
    c.ppo_epochs = 4
    c.population_size = 8
    c.tournament_size = 3
    c.mutate_prob = 1.0
    # Search mode and budget.
    c.mode = "nasnet"  # nasnet (train each child) | enas (shared weights)
    c.child_backend = "supernet"  # or "static" (train.py's static network; a compile per child)
    c.shared_steps_per_call = 20
    c.max_children = 12
    c.max_seconds = 0.0  # 0: no time limit
    c.checkpoint_every_seconds = 30.0
    c.leaderboard_size = 10
    # Devices: 0 = all local devices. NASNet mode, supernet backend: the children of a batch train
    # at once, sharded over the devices; static backend: each child trains data-parallel.
    c.num_devices = 0
    # Child (the proxy network and recipe; keys of nas.TrainConfig).
    c.child = ml_collections.ConfigDict()
    c.child.num_cells = 1  # N=1 per stack would be 3; 1 keeps the CPU compile short
    c.child.filters = 8
    c.child.stem_multiplier = 3.0
    c.child.num_classes = 10
    c.child.depthwise_impl = "dense"
    c.child.batch_size = 32
    c.child.num_epochs = 1
    c.child.num_steps = 30
    c.child.learning_rate = 0.05
    c.child.momentum = 0.9
    c.child.weight_decay = 5e-4
    c.child.clip_norm = 5.0
    c.child.pad_crop = 1
    c.child.flip = False
    c.child.cutout = 0
    c.child.eval_batch_size = 100
    return c
