"""NAS work split over `jax.distributed` CPU processes (gloo collectives on localhost;
docs/scaling.md, section 4).

2 processes x 2 fake CPU devices against 1 process with 4 devices, tiny shapes (8x8x1 images,
filters 4, one cell of 2 blocks, batch 16, a few steps):

* data-parallel training of one child (`train_and_evaluate(global_mesh=True)`, what
  `nasnet --multihost` runs): one global mesh of 4 devices, each process feeding its 8 rows of
  every batch. The metrics equal the 1-process run's bit for bit: the partitioned program is the
  same, and the cross-device reductions (BN statistics, the loss mean, the gradients' all-reduce)
  of 4 CPU devices came out identical whether they ran inside one process or over gloo here
  (other hardware or collectives may sum in another order: compare to float rounding there).
  Only process 0 writes; its checkpoint of step 2 (copied aside during the run) resumed on 1
  process ends where the uninterrupted 2-process run ends.
* the children of a NAS batch (`ChildTrainer(global_mesh=True)`, what `nas_search --multihost`
  runs): the supernet backend shards the children over the global mesh (each process trains only
  its share, counted by `trained_here`) and every process gets every reward, equal to 1 process
  with 4 devices; the static backend deals whole children to the processes and all-gathers the
  rewards.

Fake devices share the host's cores, so these tests check results and the split, not speed.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.multidevice.fake_devices import (ROOT, free_port, run_commands, run_script_processes,
                                            two_block_genotype)

SCRIPT = textwrap.dedent("""
    import json, os, shutil, sys
    import jax
    pid, nproc, port, root, part = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4],
                                    sys.argv[5])
    if nproc > 1:
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc,
                                   process_id=pid)
    else:  # the second training run compiles the same programs again (new jit wrappers)
        jax.config.update("jax_compilation_cache_dir", os.path.join(root, "jit_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    import numpy as np
    from azjax import nas
    ndev = jax.local_device_count()
    rng = np.random.default_rng(0)
    x = rng.random((84, 8, 8, 1), np.float32)
    y = (np.arange(84) % 10).astype(np.int32)
    data = {"train_images": x[:64], "train_labels": y[:64], "valid_images": x[64:],
            "valid_labels": y[64:]}
    out = {"process": jax.process_index(), "processes": jax.process_count()}
    if part == "train":
        from tests.multidevice.fake_devices import two_block_genotype
        genotype = two_block_genotype()
        # eval_batch_size 8: the 20 validation images make 3 batches, the last one padded.
        cfg = dict(num_cells=1, filters=4, batch_size=16, num_steps=4, pad_crop=1, flip=True,
                   learning_rate=0.1, eval_batch_size=8, num_devices=ndev, log_every=1,
                   checkpoint_every=2)
        keys = ("valid_accuracy", "valid_loss", "train_loss", "train_accuracy", "steps",
                "num_devices")

        def train(workdir, log_fn=None):
            m = nas.train_and_evaluate(genotype, cfg, data, jax.random.key(0), workdir=workdir,
                                       log_fn=log_fn, global_mesh=True)
            return {k: m[k] for k in keys}

        shared = os.path.join(root, "interrupted")

        def keep_step_2(m):  # process 0, at step 3: copy aside the checkpoint of step 2
            if m.get("step") == 3:
                os.makedirs(shared)
                shutil.copy(os.path.join(root, "own_0", "checkpoint.npz"), shared)

        if nproc > 1:  # process 1's workdir stays empty: one writer
            try:  # 18 rows do not split over 2 x 2 devices: refused before anything compiles
                nas.train_and_evaluate(genotype, dict(cfg, batch_size=18), data,
                                       jax.random.key(0), global_mesh=True)
                raise SystemExit("batch_size 18 was accepted")
            except ValueError as e:
                assert "batch_size" in str(e) and "global device count 4" in str(e), e
            out["fresh"] = train(os.path.join(root, f"own_{pid}"),
                                 keep_step_2 if pid == 0 else None)
        else:
            logged = []
            out["resumed"] = train(shared, lambda m: logged.append(m.get("step")))
            out["resumed_steps"] = logged[:-1]  # the last call carries the final metrics
            out["fresh"] = train(None)
    else:
        space = nas.CellSpace(ops=("max_pool_3x3", "conv_1x1"), combiners=("add",), num_blocks=1)
        # static: each process trains its children on its 2 local devices; the 1-process
        # reference uses 2 of its 4 devices per child, the same per-child mesh.
        cfg = nas.TrainConfig(num_cells=1, filters=4, batch_size=16, num_steps=3, pad_crop=1,
                              flip=False, eval_batch_size=20, learning_rate=0.1,
                              num_devices=ndev if part == "supernet" else 2)
        genomes = np.asarray(jax.vmap(space.sample)(jax.random.split(jax.random.key(0), 3)))
        trainer = nas.ChildTrainer(space, cfg, data, backend=part, global_mesh=True)
        fitness, info = trainer(jax.random.key(1), genomes)
        out.update(fitness=fitness.tolist(), info=info, trained_here=trainer.trained_here,
                   mesh=None if trainer.mesh is None else trainer.mesh.size)
        if part == "supernet":
            m = trainer.train_children(jax.random.key(2), genomes)
            out.update(train_loss=m["train_loss"].tolist(), trained_here=trainer.trained_here)
    print("RESULT " + json.dumps(out))
""")


def run_processes(nproc: int, devices_per_process: int, root, part: str, timeout: float = 600):
    """Runs SCRIPT in ``nproc`` processes; returns each process's RESULT dict (process order)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
    port = str(free_port())
    argvs = [[str(i), str(nproc), port, str(root), part] for i in range(nproc)]
    results = run_script_processes(SCRIPT, argvs, env, timeout)
    assert [r["process"] for r in results] == list(range(nproc))
    assert {r["processes"] for r in results} == {nproc}
    return results


@pytest.mark.slow  # ~50 CPU-s per process (compiles); .ci/run runs it after the default suite
def test_data_parallel_training_over_two_processes(tmp_path):
    """`train_and_evaluate(global_mesh=True)`: 2x2 devices == 1x4 devices, bit for bit; one writer;
    a 2-process run's checkpoint resumes on 1 process."""
    multi = run_processes(2, 2, tmp_path, "train")
    single, = run_processes(1, 4, tmp_path, "train")
    ref = single["fresh"]
    assert ref["num_devices"] == 4 and ref["steps"] == 4 and 0 < ref["valid_loss"] < 10
    for r in multi:  # the same metrics on every process (exact: see the module docstring)
        assert r["fresh"] == ref, (r["fresh"], ref)
    assert single["resumed"] == ref  # resumed from step 2 of the 2-process run, on 1 process
    assert single["resumed_steps"] == [3, 4]
    assert (tmp_path / "interrupted" / "checkpoint.npz").exists()
    assert (tmp_path / "own_0" / "checkpoint.npz").exists()
    assert not any((tmp_path / "own_1").rglob("*"))  # process 1 wrote nothing


@pytest.mark.slow  # ~35 CPU-s per process (the supernet compile)
def test_children_split_over_two_processes_supernet(tmp_path):
    """`ChildTrainer(global_mesh=True)`, supernet backend: 3 children on 2x2 devices give the
    rewards of 1x4 devices on every process; process 0 trains children 0 and 2, process 1 child 1
    (per call)."""
    multi = run_processes(2, 2, tmp_path, "supernet")
    single, = run_processes(1, 4, tmp_path, "supernet")
    assert single["mesh"] == 4 and {r["mesh"] for r in multi} == {4}
    assert single["info"] == {"child_train_steps": 9, "children_trained": 3}
    for r in multi:
        assert r["info"] == single["info"]
        assert r["fitness"] == single["fitness"] and r["train_loss"] == single["train_loss"]
    assert len(set(single["train_loss"])) == 3  # distinct children, each at its own place
    assert single["trained_here"] == 6  # two calls of 3 children
    assert [r["trained_here"] for r in multi] == [4, 2]


@pytest.mark.slow  # ~40 CPU-s per process (one compile per child)
def test_children_split_over_two_processes_static(tmp_path):
    """Static backend: the processes train whole children on their own devices (process 0 children 0
    and 2, process 1 child 1); the all-gathered rewards equal 1 process training all three."""
    multi = run_processes(2, 2, tmp_path, "static")
    single, = run_processes(1, 4, tmp_path, "static")
    assert single["mesh"] is None and single["trained_here"] == 3
    for r in multi:
        assert r["fitness"] == single["fitness"] and r["info"] == single["info"]
    assert [r["trained_here"] for r in multi] == [2, 1]


def _nasnet_launcher(workdir, genotype_json, extra=()):
    return [sys.executable, "-m", "experiments.nasnet.main", f"--genotype_json={genotype_json}",
            "--config=experiments/nasnet/configs/digits_tiny.py", "--config.num_cells=1",
            "--config.filters=4", "--config.num_steps=4", "--config.batch_size=16",
            "--config.log_every=2", "--config.checkpoint_every=2", f"--workdir={workdir}", *extra]


@pytest.mark.slow
def test_nasnet_launcher_multihost(tmp_path):
    """`nasnet --multihost` on 2 processes x 1 device: the metrics of 1 process with 2 devices; only
    process 0 logs its result and writes (its workdir holds the checkpoint, the genotype and the
    metrics; process 1's stays empty)."""
    from azjax import nas
    genotype = tmp_path / "cell.json"
    nas.save_genotype(two_block_genotype(), genotype)
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    outs = run_commands([_nasnet_launcher(tmp_path / f"p{i}", genotype, [
        "--multihost", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
        f"--process_id={i}"]) for i in range(2)], env)
    assert "done: valid_accuracy" in outs[0][1] and "done: valid_accuracy" not in outs[1][1]
    assert "data-parallel over 2 device(s): 1 per process x 2 process(es)" in outs[0][1]
    assert sorted(f.name for f in (tmp_path / "p0").iterdir()) == [
        "checkpoint.npz", "genotype.json", "metrics.json"]
    assert not any((tmp_path / "p1").rglob("*"))
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    out = subprocess.run(_nasnet_launcher(tmp_path / "single", genotype), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    multi = json.loads((tmp_path / "p0" / "metrics.json").read_text())
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert single["num_devices"] == multi["num_devices"] == 2
    for k in ("valid_accuracy", "valid_loss", "test_accuracy", "test_loss", "train_loss", "steps"):
        assert multi[k] == single[k], k


def test_layout_helpers_in_one_process():
    """Fast checks of the layout pieces: the children's placement over a (described) 2-process
    mesh, and the rows a single process feeds."""
    import types

    import jax
    import numpy as np

    from azjax import nas
    from azjax.nas import train as T

    # 2 processes x 2 devices, process 0's first: device d holds rows d*k .. (d+1)*k - 1.
    devices = [types.SimpleNamespace(process_index=p) for p in (0, 0, 1, 1)]
    mesh = types.SimpleNamespace(devices=np.array(devices, dtype=object), size=4)
    trainer = types.SimpleNamespace(mesh=mesh)
    padded, rows = nas.ChildTrainer.placement(trainer, 3)
    assert padded == 4 and rows.tolist() == [0, 2, 1, 3]  # processes 0, 1, 0; padding last
    padded, rows = nas.ChildTrainer.placement(trainer, 5)
    assert padded == 8 and rows[:5].tolist() == [0, 4, 2, 6, 1]
    owner = [devices[r // 2].process_index for r in rows[:5]]
    assert owner == [0, 1, 0, 1, 0]  # shares of 3 and 2 children
    assert sorted(rows.tolist()) == list(range(8))
    with pytest.raises(ValueError, match="num_devices"):
        nas.ChildTrainer.placement(types.SimpleNamespace(mesh=None), 3)

    local = jax.local_device_count()
    real = T.data_mesh(None, global_mesh=True)  # one process: the local mesh
    if real is not None:
        assert real.size == local and T.process_rows(real, 2 * local) == slice(0, 2 * local)
        with pytest.raises(ValueError, match="n: "):
            T.process_rows(real, 2 * local + 1)
    assert T.shard_local_batch(None, 4, np.zeros(4))[0].shape == (4,)


def test_nas_search_refuses_max_seconds_with_several_processes(monkeypatch, tmp_path):
    """Each process reads its own clock: NASNet mode refuses `max_seconds` on several processes
    (checked before anything is built; the process count is faked)."""
    import jax

    from experiments.nas_search import search as launcher
    from experiments.nas_search.configs import digits_smoke

    c = digits_smoke.get_config()
    c.max_seconds = 5.0
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ValueError, match="max_seconds"):
        launcher.run(c, str(tmp_path))
    assert not any(tmp_path.iterdir())
