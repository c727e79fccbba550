"""ENAS-style search on digits: shared supernet weights trained with a fresh controller sample per
minibatch, controller rewarded on validation minibatches. CPU: a few minutes."""
from experiments.nas_search.configs import digits_smoke


def get_config():
    c = digits_smoke.get_config()
    c.mode = "enas"
    c.strategy = "reinforce"  # ENAS trains its controller with REINFORCE
    c.batch_children = 10  # architectures rewarded per call
    # Shared-weight SGD steps per call (one sample per minibatch). Shared weights need far more
    # steps than one child: 60 calls x 50 = 3,000 steps (about 80 epochs of the 1,200 images).
    c.shared_steps_per_call = 50
    c.max_children = 600
    c.controller_lr = 3.5e-3  # the released ENAS script's lr (paper text: 3.5e-4)
    c.child.learning_rate = 0.05
    c.child.eval_batch_size = 100
    return c
