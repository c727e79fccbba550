"""ENAS micro search on CIFAR-10: 5 ops, add combiner, shared weights of an N=2,
20-filter supernet, the last 5k training images as the validation set, REINFORCE controller.

ENAS trains 150 epochs of shared weights (batch 160) and 300 controller samples per epoch; here
each call trains ``shared_steps_per_call`` minibatches and rewards ``batch_children`` samples.
Needs ``--config.data_dir``; an accelerator job.
"""
from experiments.nas_search.configs import digits_smoke


def get_config():
    c = digits_smoke.get_config()
    c.dataset = "cifar10"
    c.data_dir = ""
    c.num_valid = 5000
    c.random_split = False  # ENAS: the last 5k
    c.ops = "enas"
    c.combiners = ("add",)
    c.mode = "enas"
    c.strategy = "reinforce"
    c.controller_lr = 3.5e-3
    c.batch_children = 10
    c.shared_steps_per_call = 28  # 281 steps/epoch at batch 160 ~ 10 calls per epoch
    c.max_children = 150 * 100  # ~150 epochs
    c.checkpoint_every_seconds = 600.0
    c.child.num_cells = 6
    c.child.filters = 20
    c.child.depthwise_impl = "auto"
    c.child.batch_size = 160
    c.child.num_steps = 0
    c.child.num_epochs = 1
    c.child.learning_rate = 0.05
    c.child.weight_decay = 1e-4
    c.child.pad_crop = 4
    c.child.flip = True
    c.child.eval_batch_size = 500
    return c
