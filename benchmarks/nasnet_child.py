"""Compile seconds and training images/s of NASNet-A children, three implementations side by side.

    python benchmarks/nasnet_child.py [--impl=auto|shift|grouped|dense] [--steps=5]
        [--backends=static,supernet,handwritten] [--num_cells=6 --filters=16 --image_size=32]
    python benchmarks/nasnet_child.py --cell=normal|reduce --filters=8 --image_size=16 --batch=16

CPU: N=2 (num_cells 6), F=16, 32x32x3, batch 64, NASNet-A's cells under the loose-ends rule
(``nas.NASNET_A_LOOSE_ENDS``: normal 5F, reduction 3F; the supercell always concatenates the
loose ends):

* ``static``: ``nas.NASNet`` built from the genotype (the ``experiments.nasnet`` path).
* ``supernet``: ``nas.SuperNet`` over NASNet-A's six ops with the genotype passed as data (the
  NAS search's child; one compile serves every genotype).
* ``handwritten``: the same two cells written out as straight-line Flax code (no genotype
  machinery), the reference for what the generic code costs.

All three train with the same jitted step (cross-entropy, ``nas.make_optimizer``). With a GPU
also CIFAR 6@768 (num_cells 18, F=32, aux head, drop-path 0.6) at batch 128 (static backend).
Compile time (first step) is reported apart from steady-state throughput; the steady state
interleaves the models (one step each per round, median over ``--steps`` rounds), so a change of
machine load affects them alike.
"""
import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from azjax import nas
from azjax.nas.network import reduction_indices
from azjax.nas.ops import FactorizedReduction, ReLUConvBN, batch_norm, conv, make_op

GENOTYPE = nas.NASNET_A_LOOSE_ENDS
NASNET_A_OPS = ("sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "avg_pool_3x3",
                "max_pool_3x3", "identity")


class _HandCell(nn.Module):
    """NASNet-A's normal or reduction cell, block by block (loose-end outputs)."""

    features: int
    reduction: bool
    impl: str = "auto"

    @nn.compact
    def __call__(self, x, prev, train):
        f = self.features
        if prev is None:
            prev = x
        elif prev.shape[1:3] != x.shape[1:3]:
            prev = FactorizedReduction(f, 2, name="prev_reduction")(nn.relu(prev), train)
        elif prev.shape[-1] != f:
            prev = ReLUConvBN(f, name="prev_1x1")(prev, train)
        h0 = ReLUConvBN(f, name="beginning")(x, train)
        h1 = prev

        def op(name, inp, stride, tag):
            return make_op(name, f, stride, depthwise_impl=self.impl, module_name=tag)(inp, train)

        if not self.reduction:
            b0 = op("sep_conv_5x5", h0, 1, "b0l") + op("sep_conv_3x3", h1, 1, "b0r")
            b1 = op("sep_conv_5x5", h1, 1, "b1l") + op("sep_conv_3x3", h1, 1, "b1r")
            b2 = op("avg_pool_3x3", h0, 1, "b2l") + op("identity", h1, 1, "b2r")
            b3 = op("avg_pool_3x3", h1, 1, "b3l") + op("avg_pool_3x3", h1, 1, "b3r")
            b4 = op("sep_conv_3x3", h0, 1, "b4l") + op("identity", h0, 1, "b4r")
            return jnp.concatenate([b0, b1, b2, b3, b4], axis=-1)
        b0 = op("sep_conv_5x5", h0, 2, "b0l") + op("sep_conv_7x7", h1, 2, "b0r")
        b1 = op("max_pool_3x3", h0, 2, "b1l") + op("sep_conv_7x7", h1, 2, "b1r")
        b2 = op("avg_pool_3x3", h0, 2, "b2l") + op("sep_conv_5x5", h1, 2, "b2r")
        b3 = op("identity", b1, 1, "b3l") + op("avg_pool_3x3", b0, 1, "b3r")
        b4 = op("sep_conv_3x3", b0, 1, "b4l") + op("max_pool_3x3", h0, 2, "b4r")
        return jnp.concatenate([b2, b3, b4], axis=-1)


class HandNASNetA(nn.Module):
    """CIFAR-stem NASNet-A (loose ends) with the cells above; same layout as ``nas.NASNet``."""

    num_cells: int = 6
    filters: int = 16
    impl: str = "auto"

    @nn.compact
    def __call__(self, x, train):
        net = conv(3 * self.filters, 3, name="stem_conv")(x)
        net = batch_norm(net, train, name="stem_bn")
        outputs = [None, net]
        reductions = reduction_indices(self.num_cells)
        scaling = 1
        for i in range(self.num_cells):
            if i in reductions:
                scaling *= 2
                net = _HandCell(self.filters * scaling, True, self.impl,
                                name=f"reduction_cell_{reductions.index(i)}")(
                    net, outputs[-2], train)
                outputs.append(net)
            net = _HandCell(self.filters * scaling, False, self.impl, name=f"cell_{i}")(
                net, outputs[-2], train)
            outputs.append(net)
        net = jnp.mean(nn.relu(net), axis=(1, 2))
        return nn.Dense(10, name="logits")(net)


def _models(num_cells, filters, impl):
    """name -> (init_fn(key, x), apply_fn(variables, x, train) -> (logits, new batch_stats))."""
    static = nas.NASNet(genotype=GENOTYPE, num_cells=num_cells, filters=filters, stem="cifar",
                        num_classes=10, aux_head=False, depthwise_impl=impl)
    space = nas.CellSpace(ops=NASNET_A_OPS, combiners=("add",))
    sup = nas.SuperNet(num_cells=num_cells, filters=filters, ops=space.ops,
                       allow_concat=False, depthwise_impl=impl)
    normal, reduce = space.cell_arrays(jnp.asarray(space.from_genotype(GENOTYPE)))
    hand = HandNASNetA(num_cells, filters, impl)

    def plain(model):
        return (lambda k, x: model.init(k, x, False),
                lambda v, x, train, cells: model.apply(v, x, train, mutable=["batch_stats"]))

    def supernet_init(k, x):
        shapes = nas.supercell.variable_shapes(sup, x, normal, reduce)
        return jax.tree_util.tree_map(jnp.asarray, nas.supercell.init_variables(shapes, 0))

    return {
        "static": (*plain(static), None),
        # The genotype is an argument of the jitted step (data), as in the NAS search.
        "supernet": (supernet_init,
                     lambda v, x, train, cells: sup.apply(v, x, cells[0], cells[1], train,
                                                          mutable=["batch_stats"]),
                     (normal, reduce)),
        "handwritten": (*plain(hand), None),
    }


def compile_model(name, init_fn, apply_fn, cells, batch, filters, num_cells=6, size=32):
    """Initialise, compile and run one step; returns ``run(steps) -> seconds per step``."""
    cfg = nas.TrainConfig(num_cells=num_cells, filters=filters, batch_size=batch, num_steps=1000)
    opt = nas.make_optimizer(cfg, cfg.num_steps)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    t = time.perf_counter()
    variables = init_fn(jax.random.key(0), jnp.asarray(x[:1]))
    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state = opt.init(params)
    jax.block_until_ready(params)
    init_s = time.perf_counter() - t

    @jax.jit
    def step(params, batch_stats, opt_state, x, y, cells):
        def loss_fn(p):
            logits, upd = apply_fn({"params": p, "batch_stats": batch_stats}, x, True, cells)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd
        (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), upd["batch_stats"], opt_state, loss

    state = [params, batch_stats, opt_state]
    t = time.perf_counter()
    *state, loss = step(*state, x, y, cells)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - t
    n = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))
    print(f"{name:<12} params={n:>9,} init {init_s:5.1f}s  compile+first step {compile_s:6.1f}s",
          flush=True)

    def run(steps):
        t = time.perf_counter()
        for _ in range(steps):
            out = step(*state, x, y, cells)
            state[:] = out[:3]
        jax.block_until_ready(out[3])
        return (time.perf_counter() - t) / steps

    return run, compile_s


def bench_static_large(batch, steps, impl):
    cfg = nas.TrainConfig(num_cells=18, filters=32, batch_size=batch, num_steps=1000,
                          aux_head=True, drop_path_keep_prob=0.6, depthwise_impl=impl)
    model = nas.make_model(nas.NASNET_A, cfg)
    opt = nas.make_optimizer(cfg, cfg.num_steps)
    state = nas.create_train_state(model, opt, jax.random.key(0), (32, 32, 3))
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
    print(f"NASNet-A CIFAR 6@768 (aux, drop-path), static: compile+first step {compile_s:.1f}s, "
          f"{batch / dt:.1f} images/s (batch {batch})", flush=True)


def bench_cell(kind, filters, size, batch, impl, steps):
    """One NASNet-A cell, forward + backward under jit: static ``nas.Cell`` vs ``SuperCell``
    (inputs of 5F channels, as in the network; docs/nas.md, "Child training speed")."""
    from azjax.nas.cell import Cell
    blocks = GENOTYPE.normal if kind == "normal" else GENOTYPE.reduce
    stride = 1 if kind == "normal" else 2
    x = jax.random.normal(jax.random.key(1), (batch, size, size, 5 * filters))
    prev = jax.random.normal(jax.random.key(2), (batch, size, size, 5 * filters))
    static = Cell(blocks, nas.loose_ends(blocks), filters, stride, depthwise_impl=impl)
    sup = nas.SuperCell(filters, stride, NASNET_A_OPS, allow_concat=False, depthwise_impl=impl)
    arr = jnp.asarray(blocks, jnp.int32)

    def grad_fn(apply):
        def loss(params, stats, *cell):
            out, _ = apply({"params": params, "batch_stats": stats}, x, prev, *cell, True,
                           mutable=["batch_stats"])
            return jnp.sum(jnp.square(out[0] if isinstance(out, tuple) else out))
        return jax.jit(jax.grad(loss))

    sv = static.init(jax.random.key(3), x, prev)
    v = nas.init_variables(nas.variable_shapes(sup, x, prev, arr), 0)
    cases = {"static": (grad_fn(static.apply), sv["params"], sv["batch_stats"]),
             "supernet": (grad_fn(sup.apply),
                          v["params"], v["batch_stats"], arr)}
    for name, (fn, *args) in cases.items():
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(steps):
            out = fn(*args)
        jax.block_until_ready(out)
        print(f"{kind} cell {name:<9} compile+first {compile_s:6.1f}s  "
              f"{(time.perf_counter() - t) / steps * 1000:7.1f} ms fwd+bwd", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cell", default="", help="normal or reduce: time one cell instead")
    p.add_argument("--impl", default="auto")
    p.add_argument("--steps", type=int, default=5, help="timed rounds (one step per model)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--backends", default="static,supernet,handwritten")
    p.add_argument("--num_cells", type=int, default=6, help="3N normal cells (6: N=2)")
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--image_size", type=int, default=32)
    a = p.parse_args()
    if a.cell:
        bench_cell(a.cell, a.filters, a.image_size, a.batch, a.impl, a.steps)
        return
    print(f"NASNet-A (loose ends) N={a.num_cells // 3} F={a.filters} {a.image_size}x"
          f"{a.image_size}, batch {a.batch}, backend {jax.default_backend()}, depthwise impl "
          f"{a.impl}, {a.steps} timed steps", flush=True)
    models = _models(a.num_cells, a.filters, a.impl)
    runs, compile_s = {}, {}
    for name in a.backends.split(","):
        runs[name], compile_s[name] = compile_model(name, *models[name], a.batch, a.filters,
                                                    a.num_cells, a.image_size)
    # Steady state: the models take turns, one step each per round, so a change of machine load
    # hits all of them alike; the median over rounds is reported.
    times = {name: [] for name in runs}
    for _ in range(a.steps):
        for name, run in runs.items():
            times[name].append(run(1))
    step_s = {name: float(np.median(t)) for name, t in times.items()}
    for name, dt in step_s.items():
        print(f"{name:<12} steady {dt * 1000:7.0f} ms/step (median of {a.steps}, interleaved)  "
              f"{a.batch / dt:7.1f} images/s", flush=True)
    if "handwritten" in step_s:
        for name, dt in step_s.items():
            if name != "handwritten":
                print(f"{name}: step time {dt / step_s['handwritten']:.2f}x the handwritten "
                      f"model's, compile+first step "
                      f"{compile_s[name] / compile_s['handwritten']:.2f}x", flush=True)
    if jax.default_backend() == "gpu":
        bench_static_large(128, 20, a.impl)


if __name__ == "__main__":
    main()
