"""NAS on several (fake CPU) devices, in subprocesses (the device count is fixed at JAX start-up).

* Data-parallel training of one child: a few steps on 1 and 8 devices give the same losses,
  parameters and BN statistics (global-batch statistics) up to float rounding; the state stays
  replicated and the batch is split over the devices.
* Several children at once (supernet ChildTrainer): the children axis sharded over 8 devices
  gives the same rewards as training the children one after another.

Tiny networks (8x8x1 images, filters 4, num_cells 1, batch 16, 2-block cells) keep the compiles
short; fake devices share the host's cores, so these tests check results, not speed.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from tests.multidevice.fake_devices import ROOT, run_on_8_cpu_devices

DATA_PARALLEL = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import PartitionSpec as P
    from azjax import nas
    from azjax.nas import train as T
    assert len(jax.devices()) == 8, jax.devices()
    from tests.multidevice.fake_devices import two_block_genotype
    genotype = two_block_genotype()
    cfg = nas.TrainConfig(num_cells=1, filters=4, batch_size=16, num_steps=3, pad_crop=1,
                          flip=True, learning_rate=0.1, eval_batch_size=16)
    model = nas.make_model(genotype, cfg)
    opt = nas.make_optimizer(cfg, cfg.num_steps)
    init = jax.device_get(nas.create_train_state(model, opt, jax.random.key(0), (8, 8, 1)))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, 48).astype(np.int32)

    def run(n):
        mesh = T.data_mesh(n, cfg.batch_size)
        state = jax.tree_util.tree_map(np.copy, init)
        if mesh is not None:
            state = jax.device_put(state, T.replicated(mesh))
        step = T.make_train_step(model, opt, cfg, cfg.num_steps, mesh=mesh)
        losses = []
        for i in range(cfg.num_steps):
            xb, yb = T.shard_batch(mesh, x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)])
            if mesh is not None:  # the batch is split: 16 / n rows per device
                assert xb.sharding.spec == P("data") and len(xb.sharding.device_set) == n
                assert {s.data.shape[0] for s in xb.addressable_shards} == {16 // n}
            state, m = step(state, xb, yb, jax.random.key(i))
            losses.append(float(m["loss"]))
        if mesh is not None:
            for leaf in jax.tree_util.tree_leaves(state):  # params, BN stats, opt state
                assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == n
            # The step's batch in_sharding is the data one: a replicated batch is refused.
            whole = jax.device_put(x[:16], T.replicated(mesh))
            try:
                step(state, whole, yb, jax.random.key(0))
                raise SystemExit("a replicated batch was accepted")
            except ValueError as e:
                assert "sharding" in str(e), e
        return losses, jax.device_get(state)

    ref_losses, ref = run(1)
    assert ref_losses[0] != ref_losses[-1]  # it trains
    for n in (8,):
        losses, state = run(n)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves((state.params, state.batch_stats)),
                        jax.tree_util.tree_leaves((ref.params, ref.batch_stats))):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    try:
        T.data_mesh(3, 16)
        raise SystemExit("expected a ValueError")
    except ValueError as e:
        assert "batch_size" in str(e)
    print("OK")
""")

CHILDREN = textwrap.dedent("""
    import time
    import jax, numpy as np
    from azjax import nas
    assert len(jax.devices()) == 8, jax.devices()
    space = nas.CellSpace(ops=("max_pool_3x3", "conv_1x1"), combiners=("add",), num_blocks=1)
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), np.float32)
    y = (np.arange(64) % 10).astype(np.int32)
    data = {"train_images": x[:48], "train_labels": y[:48], "valid_images": x[48:],
            "valid_labels": y[48:]}
    cfg = nas.TrainConfig(num_cells=1, filters=4, batch_size=16, num_steps=3, pad_crop=1,
                          flip=False, eval_batch_size=16, learning_rate=0.1)
    genomes = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.key(0), 6)))
    key = jax.random.key(1)

    seq = nas.ChildTrainer(space, cfg, data)
    assert seq.mesh is None
    seq_fit, seq_info = seq(key, genomes)
    seq_loss = [seq.train_child(jax.random.fold_in(key, i), g)["train_loss"]
                for i, g in enumerate(genomes)]

    par = nas.ChildTrainer(space, dict(cfg.__dict__, num_devices=8), data)
    assert par.mesh is not None and par.mesh.size == 8
    par_fit, par_info = par(key, genomes)  # 6 children padded to 8, one per device
    assert par_info == seq_info, (par_info, seq_info)
    np.testing.assert_allclose(par_fit, seq_fit, atol=1e-6)
    m = par.train_children(key, genomes)
    np.testing.assert_allclose(m["train_loss"], seq_loss, rtol=1e-4)
    assert len(set(np.round(seq_loss, 4))) > 1  # distinct children, not one repeated
    print("OK")
""")


def test_data_parallel_child_training_matches_one_device():
    run_on_8_cpu_devices(DATA_PARALLEL)


@pytest.mark.slow  # ~75 CPU-s cold (two supernet compiles); .ci/run runs it after the default suite
def test_parallel_children_match_sequential():
    run_on_8_cpu_devices(CHILDREN)


def test_num_devices_field_and_helpers():
    """In-process (one device here): validation, the one device-count rule and the one-writer
    helper."""
    import jax

    from azjax import nas
    from azjax.nas import train as T
    from azjax.search import sharding
    from experiments import common

    with pytest.raises(ValueError, match="num_devices"):
        nas.TrainConfig(num_devices=-1)
    with pytest.raises(ValueError, match="num_devices"):
        nas.TrainConfig(num_devices=2.0)
    assert nas.TrainConfig().num_devices == 1  # the one-device path by default
    # One rule everywhere: None and 0 mean all local devices.
    assert T.resolve_num_devices is sharding.resolve_num_devices
    local = jax.local_device_count()
    assert sharding.resolve_num_devices(None) == sharding.resolve_num_devices(0) == local
    assert sharding.make_mesh(None).size == sharding.make_mesh(0).size == local
    assert sharding.resolve_num_devices(1) == 1
    for bad in (-1, local + 1, 1.0, True):
        with pytest.raises(ValueError, match="num_devices"):
            sharding.resolve_num_devices(bad)
    assert T.data_mesh(None) is None and T.data_mesh(1, 7) is None  # one local device here
    with pytest.raises(ValueError, match="num_devices"):
        T.data_mesh(local + 1)
    assert common.is_main_process()
    common.initialize(multihost=False)  # no distributed runtime; process 0 keeps its logs


MULTIPROCESS = textwrap.dedent("""
    import sys
    import jax
    pid, port, workdir, nproc = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    if nproc > 1:
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc,
                                   process_id=pid)
    from experiments import common
    common.initialize(False)  # already started above (auto-detection needs a real cluster)
    from experiments.nas_search import search as launcher
    from experiments.nas_search.configs import digits_smoke
    launcher.OP_SETS["tiny"] = ("max_pool_3x3", "conv_1x1")
    c = digits_smoke.get_config()
    c.num_blocks, c.ops, c.batch_children, c.max_children = 1, "tiny", 2, 4
    c.controller_hidden, c.num_valid, c.checkpoint_every_seconds = 16, 150, 0.0
    c.child.filters, c.child.num_steps, c.child.batch_size = 4, 2, 16
    c.child.eval_batch_size = 150
    s = launcher.run(c, workdir)
    print("RESULT", jax.process_index(), jax.process_count(), s["trained_here"],
          s["evaluations"], s["best_reward"], s["best_genotype"].replace("\\n", " | "))
""")


@pytest.mark.slow
def test_two_processes_same_search_one_writer(tmp_path):
    """jax.distributed with 2 CPU processes (one device each): the children of every batch are
    split over the processes (each trains one of the 2 per batch), both find the result of 1
    process with 2 devices; only process 0 writes."""
    import socket

    def launch(nproc, devices):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
        procs = [subprocess.Popen([sys.executable, "-c", MULTIPROCESS, str(i), str(port),
                                   str(tmp_path / f"n{nproc}_p{i}"), str(nproc)], cwd=ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
                 for i in range(nproc)]
        outs = [p.communicate(timeout=900) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err[-4000:]
        return [next(line for line in out.splitlines() if line.startswith("RESULT")).split()
                for out, _ in outs]

    results = launch(2, 1)
    single, = launch(1, 2)
    assert results[0][1:3] == ["0", "2"] and results[1][1:3] == ["1", "2"]
    assert [r[3:5] for r in results] == [["2", "4"], ["2", "4"]]  # each its share of 4 children
    assert single[3:5] == ["4", "4"]
    assert results[0][5:] == results[1][5:] == single[5:]  # same reward and genotype
    assert (tmp_path / "n2_p0" / "summary.json").exists()
    assert (tmp_path / "n2_p0" / "checkpoints").exists()
    assert not any((tmp_path / "n2_p1").rglob("*.*"))  # process 1 wrote no file
