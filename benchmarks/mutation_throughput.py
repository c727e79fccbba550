"""Mutations per second: the XLA mutation code vs the native mutation kernel (docs/backends.md, "Native
mutations"), on a batch of random programs, with a bitwise check that both give the same children.

    python benchmarks/mutation_throughput.py [--configs=demo,every_op] [--batch=1000] [--repeats=20]

Prints, per config, the median wall time of one jitted, vmapped `mutate` over the batch for each
implementation (draws included) and mutations per second.
"""
import time

from absl import app, flags

import jax
import numpy as np

from azjax import zero
from azjax.zero import mutations, ops, random_programs

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["demo", "every_op"], "Configs to run.")
flags.DEFINE_integer("batch", 1000, "Programs mutated per call.")
flags.DEFINE_integer("repeats", 20, "Timed calls per implementation (the median is printed).")

_ALL = tuple(op.name for op in ops.OPS[1:])
CONFIGS = {
    # The reference demo's space and mutation types.
    "demo": (zero.ZeroConfig(setup_ops=zero.algorithms.LINEAR_OPS, predict_ops=zero.algorithms.LINEAR_OPS,
                             learn_ops=zero.algorithms.LINEAR_OPS), mutations.MutationConfig()),
    # Every op and every mutation type.
    "every_op": (zero.ZeroConfig(num_scalars=5, num_vectors=4, num_matrices=2, features=8, setup_ops=_ALL,
                                 predict_ops=_ALL, learn_ops=_ALL, setup_size=21, predict_size=21, learn_size=45),
                 mutations.MutationConfig(types=mutations.MUTATION_TYPES, setup_size_min=1, predict_size_min=1,
                                          learn_size_min=1)),
}


def _median_ms(fn, *args):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(FLAGS.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main(_):
    print(f"machine: {jax.devices()[0].platform}, batch {FLAGS.batch}, median of {FLAGS.repeats}")
    print(f"{'config':10s} {'impl':7s} {'ms':>8s} {'mutations/s':>12s}  bitwise")
    for name in FLAGS.configs:
        cfg, mcfg = CONFIGS[name]
        keys = jax.random.split(jax.random.key(0), FLAGS.batch)
        programs = random_programs.random_programs(jax.random.key(1), cfg, FLAGS.batch)
        outputs = {}
        for impl in ("xla", "native"):
            fn = jax.jit(jax.vmap(lambda k, p, impl=impl: mutations.mutate(k, p, cfg, mcfg, impl)))
            ms = _median_ms(fn, keys, programs)
            outputs[impl] = jax.device_get(fn(keys, programs))
            same = all(np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
                       for a, b in zip(jax.tree_util.tree_leaves(outputs["xla"]),
                                       jax.tree_util.tree_leaves(outputs[impl])))
            print(f"{name:10s} {impl:7s} {ms:8.2f} {FLAGS.batch / ms * 1e3:12.0f}  {same}")


if __name__ == "__main__":
    app.run(main)
