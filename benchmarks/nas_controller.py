"""Controller cost: sample + update time per batch of 20 architectures (NASNet: 50 decisions,
LSTM 100 units), REINFORCE and PPO, compile time reported apart from steady state.

    python benchmarks/nas_controller.py [--iters 50] [--hidden 100] [--batch 20]

The reward is synthetic (fraction of op genes equal to op 3), so this measures only the policy:
sampling (one jitted scan per architecture, vmapped over the batch), scoring and Adam steps.
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from azjax.nas.space import CellSpace
from azjax.search.controller import Controller


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--ppo_epochs", type=int, default=4)
    args = p.parse_args()
    space = CellSpace()
    ops = np.asarray([i for i in range(space.genome_length) if i % 5 in (2, 3)])
    reward = jax.jit(lambda g: jnp.mean(g[:, ops] == 3, axis=1))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{space.genome_length} decisions, LSTM {args.hidden}, batch {args.batch}")
    print(f"{'algorithm':<10} {'compile+1st (s)':>16} {'ask (ms)':>10} {'tell (ms)':>10} "
          f"{'ask+tell (ms)':>14} {'reward 1st->last':>18}")
    for algo in ("reinforce", "ppo"):
        ctrl = Controller(space, algo, batch_size=args.batch, hidden=args.hidden,
                          ppo_epochs=args.ppo_epochs)
        t0 = time.perf_counter()
        state = ctrl.init(jax.random.key(0))
        g, state = ctrl.ask(jax.random.key(1), state)
        f = reward(g)
        state = ctrl.tell(g, f, state)
        jax.block_until_ready(state.params)
        first = time.perf_counter() - t0
        r0 = float(f.mean())
        t_ask = t_tell = 0.0
        for i in range(args.iters):
            t = time.perf_counter()
            g, state = ctrl.ask(jax.random.key(2 + i), state)
            jax.block_until_ready(g)
            t_ask += time.perf_counter() - t
            f = reward(g)
            t = time.perf_counter()
            state = ctrl.tell(g, f, state)
            jax.block_until_ready(state.params)
            t_tell += time.perf_counter() - t
        n = args.iters
        print(f"{algo:<10} {first:>16.1f} {1e3 * t_ask / n:>10.1f} {1e3 * t_tell / n:>10.1f} "
              f"{1e3 * (t_ask + t_tell) / n:>14.1f} {r0:>8.3f} -> {float(f.mean()):.3f}")


if __name__ == "__main__":
    main()
