"""ENAS shared weights learn: a fixed genome trained through SharedWeightsTrainer follows the
NASNet-mode child of that genome, and with sampled genomes the shared loss falls below ln 10.

Digits, a tiny space (B=2, two ops, add) and a tiny child (one normal cell per stack, 8 filters).
"""
import math

import jax
import numpy as np
import pytest

from azjax import data as azdata
from azjax import nas

SPACE = nas.CellSpace(ops=("sep_conv_3x3", "max_pool_3x3"), combiners=("add",), num_blocks=2)


def _data():
    k_test, k_valid = jax.random.split(jax.random.key(0))
    d = azdata.load_digits_split(k_test, num_test=297)
    return azdata.split_train_valid(d["train_images"], d["train_labels"], num_valid=300,
                                    key=k_valid)


def _config(steps):
    return nas.TrainConfig(num_cells=1, filters=8, batch_size=32, num_steps=steps,
                           learning_rate=0.05, pad_crop=1, flip=False, eval_batch_size=100,
                           depthwise_impl="dense")


@pytest.mark.slow
def test_fixed_genome_learns_as_fast_as_the_nasnet_child():
    steps, data = 60, _data()
    genome = np.asarray(SPACE.sample(jax.random.key(3)))
    child = nas.ChildTrainer(SPACE, _config(steps), data)
    child_loss, shared_loss = [], []
    for seed in range(3):
        # The NASNet-mode child: fresh weights, `steps` SGD steps, last-step training loss.
        child_loss.append(child.train_child(jax.random.key(seed), genome)["train_loss"])
        # The same genome for every shared minibatch, same steps and cosine schedule, same
        # network (no output BN).
        shared = nas.SharedWeightsTrainer(SPACE, _config(steps), data, steps_per_call=10,
                                          total_steps=steps, seed=seed, output_bn=False)
        for call in range(steps // 10):
            _, info = shared(jax.random.key(100 * seed + call), genome[None])
        shared_loss.append(info["shared_train_loss_sum"])  # mean over the last 10 steps
    child_loss, shared_loss = np.mean(child_loss), np.mean(shared_loss)
    assert child_loss < 0.8 * math.log(10) and shared_loss < 0.8 * math.log(10)
    # Equal within noise (one minibatch's loss vs a 10-step mean; three seeds each).
    assert abs(shared_loss - child_loss) < 0.35, (shared_loss, child_loss)


@pytest.mark.slow
def test_sampled_genomes_shared_loss_falls_below_ln10():
    calls, per_call, data = 40, 20, _data()
    shared = nas.SharedWeightsTrainer(SPACE, _config(1), data, steps_per_call=per_call,
                                      total_steps=calls * per_call, seed=0)
    losses, rewards = [], []
    for call in range(calls):
        genomes = jax.vmap(SPACE.sample)(jax.random.split(jax.random.key(1000 + call), 10))
        fitness, info = shared(jax.random.key(call), genomes)
        losses.append(info["shared_train_loss_sum"])
        rewards.append(float(np.mean(fitness)))
    assert np.mean(losses[-5:]) < 0.6 * math.log(10), losses
    assert np.mean(rewards[-5:]) > 0.5, rewards  # random genomes, chance is 0.1
