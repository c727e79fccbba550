"""Compile seconds and training images/s of NASNet-A children.

    python benchmarks/nasnet_child.py [--impl=auto|shift|grouped|dense] [--steps=5]

CPU: N=2 (num_cells 6), F=16, 32x32x3, batch 64. With a GPU also CIFAR 6@768 (num_cells 18,
F=32, aux head, drop-path 0.6) at batch 128. Compile time (first step) is reported apart from
steady-state throughput.
"""
import argparse
import time

import jax
import numpy as np

from azjax import nas


def bench(name, num_cells, filters, batch, steps, impl, aux=False, keep=1.0):
    cfg = nas.TrainConfig(num_cells=num_cells, filters=filters, batch_size=batch,
                          num_steps=1000, aux_head=aux, drop_path_keep_prob=keep,
                          depthwise_impl=impl)
    model = nas.make_model(nas.NASNET_A, cfg)
    opt = nas.make_optimizer(cfg, cfg.num_steps)
    t = time.perf_counter()
    state = nas.create_train_state(model, opt, jax.random.key(0), (32, 32, 3))
    jax.block_until_ready(state.params)
    init_s = time.perf_counter() - t
    step = nas.make_train_step(model, opt, cfg, cfg.num_steps)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    t = time.perf_counter()
    state, m = step(state, x, y, jax.random.key(0))
    jax.block_until_ready(m["loss"])
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(steps):
        state, m = step(state, x, y, jax.random.key(i + 1))
    jax.block_until_ready(m["loss"])
    dt = (time.perf_counter() - t) / steps
    print(f"{name}: backend={jax.default_backend()} impl={impl} "
          f"params={nas.count_params(state.params):,} init {init_s:.1f}s, "
          f"compile+first step {compile_s:.1f}s, steady {dt * 1000:.0f} ms/step, "
          f"{batch / dt:.1f} images/s (batch {batch}, {steps} steps)", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--impl", default="auto")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--skip_small", action="store_true")
    a = p.parse_args()
    if not a.skip_small:
        bench("NASNet-A N=2 F=16 32x32", 6, 16, 64, a.steps, a.impl)
    if jax.default_backend() == "gpu":
        bench("NASNet-A CIFAR 6@768 (aux, drop-path)", 18, 32, 128, max(a.steps, 20), a.impl,
              aux=True, keep=0.6)


if __name__ == "__main__":
    main()
