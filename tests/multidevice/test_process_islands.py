"""Islands per process (docs/scaling.md, "Islands per process"): 2 `jax.distributed` CPU processes (gloo
collectives on localhost) each own half of the islands, evaluate only their children with their own
process-local evaluator and exchange emigrants at migrations. With the FEC cache off the run must equal one
process running all the islands (`IslandEvolution` and `search.run`) bit for bit, and a checkpointed run must
resume exactly, on 2 processes and on 1.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from tests.multidevice.fake_devices import ROOT, run_script_processes
from tests.multidevice.fake_devices import free_port as _free_port

SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import jax
    args = json.loads(sys.argv[1])
    pid, nproc = args["pid"], args["nproc"]
    if nproc > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args['port']}", num_processes=nproc,
                                   process_id=pid)
    import numpy as np
    from azjax import search, zero
    from azjax.search import process_islands
    from azjax.zero.fec import FECConfig
    # No random ops: a program's fitness does not depend on its row in a batch (docs/scaling.md).
    cfg = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                          setup_ops=("SCALAR_CONST_SET",), predict_ops=("VECTOR_INNER_PRODUCT", "SCALAR_SUM"),
                          learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM"),
                          setup_size=5, predict_size=2, learn_size=4)
    tasks = zero.linear_regression_tasks(jax.random.key(0), 3, 4, 20, 10)
    space = zero.ProgramSpace(cfg, initial="RANDOM")
    # 4 islands x 8 children per ask; a migration every 16 evaluations per island once full (16).
    islands = search.IslandEvolution(space, num_islands=4, population_size=16, tournament_size=4,
                                     batch_size=8, migrate_every=16, num_migrants=5,
                                     migration_topology=args["topology"])
    fec = FECConfig() if args["fec"] else None
    run_kw = dict(max_evaluations=args["evals"], workdir=args.get("workdir"), checkpoint_every_seconds=0,
                  keep_checkpoints=100)
    if args["mode"] == "reference":  # one process, all islands, the ordinary loop
        ev = zero.ProgramEvaluator(cfg, tasks, fec=fec)
        r = search.run(space, islands, ev, jax.random.key(1), **run_kw)
    else:
        ev = zero.ProgramEvaluator(cfg, tasks, fec=fec, process_local=True)
        strat = search.ProcessIslands(islands)
        hist = search.History()
        r = process_islands.run(space, strat, ev, jax.random.key(1), callbacks=[hist], metrics_every=2,
                                extra_state=ev, **run_kw)
    s = r.state
    pop = b"".join(np.ascontiguousarray(np.asarray(x)).tobytes()
                   for x in jax.tree_util.tree_leaves((s.population, s.islands.birth, s.islands.best_genome)))
    print("RESULT " + json.dumps({
        "process": jax.process_index(), "processes": jax.process_count(), "mesh": ev.mesh.size,
        "fitness": np.asarray(s.fitness).astype(float).tolist(), "population": hashlib.sha256(pop).hexdigest(),
        "best_fitness": r.best_fitness, "migrations": int(s.migrations), "count": int(s.count),
        "migration_key": np.asarray(jax.random.key_data(s.migration_key)).tolist(),
        "iterations": r.iterations, "evaluations": r.evaluations, "counters": ev.counters,
        "run_counters": r.counters, "resumed_from": r.resumed_from,
        "metrics": {k: v for k, v in hist.records[-1].items() if k not in ("evals_per_second", "elapsed_seconds")}
        if args["mode"] != "reference" else None}))
""")


def run_processes(nproc: int, timeout: float = 900, **args):
    """Runs SCRIPT in ``nproc`` processes (one device each); returns each process's RESULT dict."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", AZJAX_NATIVE_THREADS="1",
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    args = dict(dict(topology="ring", fec=False, mode="islands"), **args, nproc=nproc, port=_free_port())
    return run_script_processes(SCRIPT, [[json.dumps(dict(args, pid=i))] for i in range(nproc)], env, timeout)


_SAME = ("fitness", "population", "best_fitness", "migrations", "count", "migration_key", "iterations",
         "evaluations")


def _assert_same_search(got, want):
    for k in _SAME:
        assert got[k] == want[k], k


@pytest.mark.slow
def test_two_processes_split_the_islands_and_resume(tmp_path):
    """2 processes x 2 islands == 1 process x 4 islands (FEC off), each process evaluating only its
    islands' children; a 2-process checkpoint resumes exactly on 2 processes and on 1."""
    evals, half = 24 * 32, 12 * 32  # 24 iterations of 32 children: 12 migrations
    reference, = run_processes(1, mode="reference", evals=evals, topology="random")
    assert reference["migrations"] == 12 and reference["mesh"] == 1
    multi = run_processes(2, evals=evals, topology="random")
    assert [r["process"] for r in multi] == [0, 1] and {r["processes"] for r in multi} == {2}
    for r in multi:
        _assert_same_search(r, reference)
        assert r["mesh"] == 1  # a process-local evaluator: this process's device only
        # Each process evaluated only its own islands' children (16 of the 32 per iteration).
        c = r["counters"]
        assert c["evaluated_here"] == c["evaluated"] > 0
        assert c["evaluated"] + c["duplicates"] == evals // 2
    # The run's counters are the sums over the processes, the same on both.
    assert multi[0]["run_counters"] == multi[1]["run_counters"]
    assert multi[0]["run_counters"]["evaluated"] == sum(r["counters"]["evaluated"] for r in multi)
    assert multi[0]["metrics"] == multi[1]["metrics"]
    assert multi[0]["metrics"]["population_size_filled"] == 4 * 16
    assert multi[0]["metrics"]["migrations"] == 12

    # Checkpointed at every iteration, stopped halfway, resumed on 2 processes and on 1.
    work = tmp_path / "run"
    first = run_processes(2, evals=half, topology="random", workdir=str(work))
    assert first[0]["iterations"] == 12
    assert sorted(p.name for p in work.iterdir()) == ["process_0_of_2", "process_1_of_2"]
    shutil.copytree(work, tmp_path / "copy")
    resumed = run_processes(2, evals=evals, topology="random", workdir=str(work))
    for r in resumed:
        assert r["resumed_from"] == 12
        _assert_same_search(r, reference)
        assert r["run_counters"] == multi[0]["run_counters"]
    one, = run_processes(1, evals=evals, topology="random", workdir=str(tmp_path / "copy"))
    assert one["resumed_from"] == 12
    _assert_same_search(one, reference)
    c = one["run_counters"]  # one evaluator deduplicates over all islands' children: other shares
    assert c["evaluated"] + c["duplicates"] == evals


def _launcher(workdir, extra=()):
    return [sys.executable, "-m", "experiments.automl_zero.main",
            "--config=experiments/automl_zero/configs/linear_demo.py", "--config.max_experiments=1",
            "--config.num_devices=1", "--config.num_islands=2", "--config.population_size=100",
            "--config.batch_size=50", "--config.migrate_every=100", "--config.fec.enabled=False",
            "--config.max_train_steps=6e5", "--config.select_tasks.num_tasks=4",
            "--config.final_tasks.num_tasks=4", "--compilation_cache_dir=", f"--workdir={workdir}", *extra]


@pytest.mark.slow
def test_launcher_islands_per_process(tmp_path):
    """`automl_zero --multihost` with 2 islands on 2 processes runs islands per process (logged), writes one
    checkpoint shard per process and finds what 1 process running both islands finds (FEC off)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", AZJAX_NATIVE_THREADS="1",
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    port = str(_free_port())
    multi = tmp_path / "multi"
    with tempfile.TemporaryDirectory() as logs:
        errs = [open(os.path.join(logs, f"{i}.err"), "w+") for i in range(2)]
        procs = [subprocess.Popen(_launcher(multi, ["--multihost", f"--coordinator_address=127.0.0.1:{port}",
                                                     "--num_processes=2", f"--process_id={i}"]),
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=errs[i], text=True)
                 for i in range(2)]
        try:
            for p in procs:
                p.wait(timeout=900)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        logs0 = []
        for p, err in zip(procs, errs):
            err.seek(0)
            logs0.append(err.read())
            err.close()
    for p, log in zip(procs, logs0):
        assert p.returncode == 0, log[-4000:]
    assert "islands per process: process 0 holds islands 0..0 of 2" in logs0[0]
    assert sorted(p.name for p in (multi / "experiment_0").iterdir()) == ["process_0_of_2", "process_1_of_2"]
    single = tmp_path / "single"
    out = subprocess.run(_launcher(single), cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    a = json.loads((multi / "summary.json").read_text())
    b = json.loads((single / "summary.json").read_text())
    for k in ("search_fitness", "select_fitness", "evaluations", "program"):
        assert a[k] == b[k], k
