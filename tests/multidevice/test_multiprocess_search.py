"""AutoML-Zero search split over `jax.distributed` CPU processes (gloo collectives on localhost).

Two processes with 2 fake CPU devices each form one global mesh of 4 devices: every process runs the same
strategy, its devices evaluate their share of each batch, and the gathered fitness goes to every `tell`.
The run must give the same population and fitness as one process with 4 devices and as one device, and each
process must have evaluated about half of the programs (counted on its evaluator).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.multidevice.fake_devices import ROOT, free_port, run_commands, run_script_processes

SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import jax
    pid, nproc, port, backend, fec = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    if nproc > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc,
                                   process_id=pid)
    import numpy as np
    from azjax import search, zero
    from azjax.zero.fec import FECConfig
    cfg = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                          setup_ops=("SCALAR_CONST_SET", "SCALAR_GAUSSIAN_SET"),
                          predict_ops=("VECTOR_INNER_PRODUCT", "SCALAR_SUM"),
                          learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM"),
                          setup_size=5, predict_size=2, learn_size=4)
    tasks = zero.linear_regression_tasks(jax.random.key(0), 3, 4, 20, 10)
    space = zero.ProgramSpace(cfg, initial="RANDOM")
    ev = zero.ProgramEvaluator(cfg, tasks, backend=backend, fec=FECConfig() if fec == "1" else None)
    strat = search.RegularizedEvolution(space, population_size=32, tournament_size=4, batch_size=16)
    r = search.run(space, strat, ev, jax.random.key(1), max_evaluations=96)
    pop = b"".join(np.ascontiguousarray(np.asarray(x)).tobytes()
                   for x in jax.tree_util.tree_leaves(r.state.population))
    print("RESULT " + json.dumps({
        "process": jax.process_index(), "processes": jax.process_count(), "mesh": ev.mesh.size,
        "local_devices": jax.local_device_count(),
        "fitness": np.asarray(r.state.fitness).astype(float).tolist(),
        "population": hashlib.sha256(pop).hexdigest(), "counters": ev.counters,
        "run_counters": r.counters}))
""")


def run_processes(nproc: int, devices_per_process: int, backend: str, fec: bool, timeout: float = 600):
    """Runs SCRIPT in ``nproc`` processes; returns each process's RESULT dict (process order)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
    port = str(free_port())
    return run_script_processes(SCRIPT, [[str(i), str(nproc), port, backend, "1" if fec else "0"]
                                         for i in range(nproc)], env, timeout)


def _check_split(multi, single):
    assert [r["process"] for r in multi] == [0, 1] and {r["processes"] for r in multi} == {2}
    assert {r["mesh"] for r in multi} == {4} and {r["local_devices"] for r in multi} == {2}
    for r in multi:  # the same search everywhere, equal to one process with the same device count
        assert r["fitness"] == single["fitness"]
        assert r["population"] == single["population"]
        assert r["counters"]["evaluated"] == single["counters"]["evaluated"]
        assert r["run_counters"] == single["run_counters"]
    # Each process evaluated only its share: the shares add up to all full evaluations, and the
    # round-robin layout gives each process half of every batch, up to one program per device and call.
    total = single["counters"]["evaluated"]
    here = [r["counters"]["evaluated_here"] for r in multi]
    assert sum(here) == total and total > 0, here
    calls = 96 // 16
    assert all(abs(h - total / 2) <= 2 * calls for h in here), here
    assert single["counters"]["evaluated_here"] == total


@pytest.mark.slow
def test_two_processes_split_the_search_native_fec():
    """The default CPU backend with the FEC cache on (replicated: every process inserts the same
    gathered results): 2x2 devices == 1x4 devices == 1 device."""
    from azjax.zero.backends import native
    assert native.available(), native.reason()
    multi = run_processes(2, 2, "native", True)
    single, = run_processes(1, 4, "native", True)
    one, = run_processes(1, 1, "native", True)
    _check_split(multi, single)
    assert single["counters"]["cache_hits"] > 0  # the cache was used
    assert one["fitness"] == single["fitness"] and one["population"] == single["population"]
    assert np.isfinite(single["fitness"]).all() and len(set(single["fitness"])) > 1


@pytest.mark.slow
def test_two_processes_split_the_search_select():
    """The JAX interpreter (the accelerator default), FEC off: 2x2 devices == 1x4 devices."""
    multi = run_processes(2, 2, "select", False)
    single, = run_processes(1, 4, "select", False)
    _check_split(multi, single)
    assert single["counters"]["cache_hits"] == 0


def test_layout_helpers_in_one_process():
    """The pieces of the multi-process path that a single process can check (fast)."""
    import jax
    from azjax.search import sharding
    from experiments import common
    pos = sharding.interleave(8, 4)
    assert pos.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]  # row i on device i % 4
    assert sorted(sharding.interleave(12, 3).tolist()) == list(range(12))
    with pytest.raises(ValueError, match="multiple"):
        sharding.interleave(10, 4)
    mesh = sharding.make_mesh(None, global_mesh=True)
    assert mesh.size == jax.local_device_count() and not sharding.spans_processes(mesh)
    x = np.arange(8 * mesh.size * 3, dtype=np.float32).reshape(8 * mesh.size, 3)
    g = sharding.global_array(mesh, x, True)
    np.testing.assert_array_equal(np.asarray(g), x)
    assert g.sharding == sharding.population_sharding(mesh)
    assert sharding.global_array(mesh, x, False).sharding.is_fully_replicated
    assert sharding.local_rows(mesh, x.shape[0]).tolist() == list(range(x.shape[0]))
    with pytest.raises(ValueError, match="multihost"):
        common.initialize(False, num_processes=2)


def _launcher(workdir, extra=()):
    return [sys.executable, "-m", "experiments.automl_zero.main",
            "--config=experiments/automl_zero/configs/linear_demo.py", "--config.max_experiments=1",
            "--config.num_devices=1", "--config.checkpoint_every_seconds=0", "--config.max_train_steps=2e6",
            "--compilation_cache_dir=", f"--workdir={workdir}", *extra]


@pytest.mark.slow
def test_launcher_two_processes_then_resume_on_one(tmp_path):
    """`--multihost` launcher on 2 processes (process 0 alone writes); its checkpoint of iteration 5
    resumed by 1 process ends exactly where an uninterrupted 1-process run ends."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", AZJAX_NATIVE_THREADS="1",
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    port = str(free_port())
    run = tmp_path / "multi"
    outs = run_commands([_launcher(run, ["--multihost", f"--coordinator_address=127.0.0.1:{port}",
                                         "--num_processes=2", f"--process_id={i}"]) for i in range(2)], env)
    assert "Best program" in outs[0][0] and "Best program" not in outs[1][0]  # process 0 alone prints
    multi = json.loads((run / "summary.json").read_text())
    ckpts = sorted((run / "experiment_0").glob("ckpt_*.npz"))
    assert len(ckpts) >= 2 and ckpts[-1].name == "ckpt_0000000007.npz", ckpts
    for c in ckpts:  # back to iteration 5, then resume on one process
        if c.name > "ckpt_0000000005.npz":
            c.unlink()
    (run / "experiments.jsonl").unlink()
    (run / "summary.json").unlink()
    out = subprocess.run(_launcher(run), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "resumed from checkpoint" in out.stderr and "ckpt_0000000005" in out.stderr
    resumed = json.loads((run / "summary.json").read_text())
    fresh_dir = tmp_path / "fresh"
    out = subprocess.run(_launcher(fresh_dir), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    fresh = json.loads((fresh_dir / "summary.json").read_text())
    for k in ("search_fitness", "select_fitness", "evaluations", "train_steps", "program"):
        assert multi[k] == fresh[k] == resumed[k], k
