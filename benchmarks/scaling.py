"""Device scaling of the AutoML-Zero evaluator: programs evaluated per second on 1/2/4/8 devices.

Workload: the reference demo's program space (experiments/automl_zero/configs/linear_demo.py: banks
4/3/1, F=4, its 6 ops, component sizes 10/2/8), random programs, 10 linear-regression tasks of 100
train / 100 valid examples, evaluated by ``ProgramEvaluator`` (the search loop's evaluator: dedup,
then one sharded jit call over the batch; FEC off so repeats are not cache hits) with the batch
sharded over ``num_devices`` devices. Compile time (first call minus the steady-state time) is
reported apart from the median of ``--repeats`` timed calls.

The device count is fixed when JAX starts, so every device count runs in a fresh subprocess of this
script; on CPU that subprocess gets ``XLA_FLAGS=--xla_force_host_platform_device_count=N``. Fake CPU
devices share the machine's cores: on CPU the table shows the mechanism (the same results, the
batch split N ways), not a speedup. On GPU (``jax.default_backend() == "gpu"``) device counts above
the number of local GPUs are skipped and the populations default to 1k, 10k and 100k programs.

Run (from the repository root):
    python benchmarks/scaling.py                                   # CPU: 1/2/4/8 fake devices
    python benchmarks/scaling.py --devices=1,8 --populations=256,1024 --repeats=5
    python benchmarks/scaling.py --devices=1 --backend=pallas        # GPU: the Pallas kernel

Process scaling of the island search (``--search_processes=1,2``): the demo search
(linear_demo: P=1000 per island, T=10, FEC on, 10 tasks of 100/100 examples) with
``--num_islands`` islands of ``--island_batch`` children each, run for ``--iterations`` iterations
by 1 process (``search.run`` with ``IslandEvolution``) and by N ``jax.distributed`` processes on
localhost (gloo collectives; islands per process, ``search.process_islands.run``). Process ``i``
is pinned to core ``--cores[i]`` with ``taskset``, one CPU device, one thread (XLA and the native
kernel: ``AZJAX_NATIVE_THREADS=1``). Reported: evaluations/s from iteration ``--warmup`` (after
compilation) to the end, the ratio to 1 process, each process's CPU and collective (all-gather) time
per iteration:
    python benchmarks/scaling.py --search_processes=1,2 --cores=0,1
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # `experiments` (the demo config) lives at the repository root
    sys.path.insert(0, _ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Device counts to measure.")
flags.DEFINE_list("populations", [], "Programs per batch (default: 1000 on CPU; 1000,10000,100000 "
                  "on GPU).")
flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (median reported).")
flags.DEFINE_integer("num_tasks", 10, "Search tasks (100 train / 100 valid examples each).")
flags.DEFINE_string("backend", "", "Interpreter backend: '' (the platform default), 'native', 'select', "
                    "'cond' or 'pallas'.")
flags.DEFINE_integer("child_devices", 0, "Internal: measure in this process with N devices.")
flags.DEFINE_list("search_processes", [], "Process counts for the island-search scaling mode (e.g. 1,2); "
                  "empty: the evaluator device scaling above.")
flags.DEFINE_list("cores", ["0", "1"], "Search mode: process i runs on core cores[i % len(cores)] (taskset).")
flags.DEFINE_integer("num_islands", 2, "Search mode: islands (divisible by every process count).")
flags.DEFINE_integer("island_batch", 1000, "Search mode: children per island per iteration "
                     "(linear_demo's batch).")
flags.DEFINE_integer("iterations", 60, "Search mode: iterations per run.")
flags.DEFINE_integer("warmup", 10, "Search mode: iterations before the timed span (compilation, cache fill).")
flags.DEFINE_integer("exchange_every", 16, "Search mode: iterations between the processes' all-gathers "
                     "(search.process_islands.run).")
flags.DEFINE_bool("fec", True, "Search mode: the FEC cache (the demo's default).")
flags.DEFINE_string("child_search", "", "Internal: 'PROCESS_ID,NUM_PROCESSES,PORT': one search process.")

_GPU_POPULATIONS = (1000, 10_000, 100_000)
_CPU_POPULATIONS = (1000,)


def measure(num_devices: int, populations, repeats: int, num_tasks: int, backend: str):
    """One row per population: compile seconds, median seconds per batch, programs/s."""
    import jax
    import numpy as np

    from azjax import zero
    from azjax.zero import random_programs
    from azjax.zero.search_evaluator import ProgramEvaluator
    from experiments.automl_zero import search as launcher
    from experiments.automl_zero.configs import linear_demo

    config = linear_demo.get_config()
    cfg = launcher.program_config(config)
    spec = config.search_tasks
    tasks = zero.linear_regression_tasks(jax.random.key(0), num_tasks, cfg.features,
                                         spec.num_train, spec.num_valid)
    rows = []
    for population in populations:
        evaluator = ProgramEvaluator(cfg, tasks, fec=None, backend=backend or None,
                                     num_devices=num_devices)
        programs = random_programs.random_programs(jax.random.key(1), cfg, population)
        programs = jax.tree_util.tree_map(np.asarray, programs)
        t0 = time.perf_counter()
        fitness, info = evaluator(jax.random.key(2), programs)
        first = time.perf_counter() - t0
        times = []
        for i in range(repeats):
            t0 = time.perf_counter()
            evaluator(jax.random.key(3 + i), programs)  # returns host numpy: synchronised
            times.append(time.perf_counter() - t0)
        run = float(np.median(times))
        rows.append(dict(devices=num_devices, population=population, backend=evaluator.backend.name,
                         evaluated=int(info["evaluated"]), compile_s=max(first - run, 0.0),
                         run_s=run, programs_per_s=population / run,
                         platform=jax.default_backend(), mean_fitness=float(np.mean(fitness))))
    return rows


def child(num_devices: int) -> None:
    import jax

    if len(jax.devices()) < num_devices:
        raise ValueError(f"devices: {num_devices} requested, {len(jax.devices())} present")
    for row in measure(num_devices, [int(p) for p in FLAGS.populations], FLAGS.repeats,
                       FLAGS.num_tasks, FLAGS.backend):
        print("ROW " + json.dumps(row), flush=True)


def search_child(pid: int, nproc: int, port: int) -> None:
    """One process of the island-search measurement: prints one ROW with its rate."""
    import jax

    if nproc > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc,
                                   process_id=pid)
    from azjax import search
    from experiments.automl_zero import search as launcher
    from experiments.automl_zero.configs import linear_demo

    config = linear_demo.get_config()
    config.num_islands = FLAGS.num_islands
    config.batch_size = FLAGS.island_batch
    config.fec.enabled = FLAGS.fec
    if FLAGS.backend:
        config.backend = FLAGS.backend
    cfg = launcher.program_config(config)
    space = launcher.make_space(config)
    key = jax.random.key(config.seed)
    tasks = launcher.make_tasks(config.search_tasks, cfg.features, jax.random.fold_in(key, 0), cfg.dtype)
    islands = launcher.make_strategy(config, space)
    marks, gathers = [], []
    record = lambda m: marks.append((m["iteration"], m["evaluations"], time.monotonic(),  # noqa: E731
                                     time.process_time()))
    kw = dict(max_evaluations=FLAGS.iterations * islands.batch_size, callbacks=[record],
              metrics_every=FLAGS.warmup)
    if nproc == 1:
        evaluator = launcher.make_evaluator(config, tasks)
        result = search.run(space, islands, evaluator, jax.random.fold_in(key, 1), **kw)
    else:
        evaluator = launcher.make_evaluator(config, tasks, process_local=True)
        gather = search.process_islands.allgather

        def timed_gather(tree):  # wall time in the collectives, from the first metrics row on
            t = time.monotonic()
            try:
                return gather(tree)
            finally:
                if marks:
                    gathers.append(time.monotonic() - t)

        search.process_islands.allgather = timed_gather
        result = search.process_islands.run(space, search.ProcessIslands(islands), evaluator,
                                            jax.random.fold_in(key, 1), exchange_every=FLAGS.exchange_every,
                                            **kw)
    (i0, e0, t0, c0), (i1, e1, t1, c1) = marks[0], marks[-1]
    print("ROW " + json.dumps(dict(
        process=pid, processes=nproc, iterations=i1 - i0, evaluations=e1 - e0, seconds=t1 - t0,
        evals_per_s=(e1 - e0) / (t1 - t0), cpu_ms_per_iteration=1e3 * (c1 - c0) / (i1 - i0),
        gather_ms_per_iteration=1e3 * sum(gathers[:-1]) / (i1 - i0), gathers=len(gathers) - 1,
        best_fitness=result.best_fitness,
        evaluated_here=evaluator.counters["evaluated_here"], backend=evaluator.backend.name)), flush=True)


def search_main() -> None:
    import socket

    cores = [int(c) for c in FLAGS.cores]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"workload: linear_demo, {FLAGS.num_islands} islands x {FLAGS.island_batch} children, P=1000, "
          f"FEC {'on' if FLAGS.fec else 'off'}, {FLAGS.iterations} iterations, rate after {FLAGS.warmup}; "
          f"one core, one device, one thread per process")
    print(f"{'processes':>9s} {'cores':>6s} {'evals/s':>9s} {'ratio':>6s} {'cpu_ms/iter':>12s} {'gather_ms/iter':>14s} "
          f"{'best_fitness':>12s} {'evaluated_here':>16s}", flush=True)
    base = None
    for n in (int(x) for x in FLAGS.search_processes):
        env = dict(os.environ, JAX_PLATFORMS="cpu", AZJAX_NATIVE_THREADS="1",
                   XLA_FLAGS="--xla_force_host_platform_device_count=1 --xla_cpu_multi_thread_eigen=false "
                             "intra_op_parallelism_threads=1")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        procs = []
        for i in range(n):
            cmd = ["taskset", "-c", str(cores[i % len(cores)]), sys.executable, os.path.abspath(__file__),
                   f"--child_search={i},{n},{port}", f"--num_islands={FLAGS.num_islands}",
                   f"--island_batch={FLAGS.island_batch}", f"--iterations={FLAGS.iterations}",
                   f"--warmup={FLAGS.warmup}", f"--fec={FLAGS.fec}", f"--exchange_every={FLAGS.exchange_every}", f"--backend={FLAGS.backend}"]
            procs.append(subprocess.Popen(cmd, env=env, cwd=_ROOT, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        outs = [p.communicate() for p in procs]
        rows = []
        for p, (out, err) in zip(procs, outs):
            if p.returncode != 0:
                print(f"{n:9d}  failed:\n{err[-3000:]}", flush=True)
                break
            rows += [json.loads(line[4:]) for line in out.splitlines() if line.startswith("ROW ")]
        if len(rows) != n:
            continue
        # Every process advances in lockstep; the run's rate is the slowest process's.
        rate = min(r["evals_per_s"] for r in rows)
        cpu = "/".join(f"{r['cpu_ms_per_iteration']:.0f}" for r in rows)
        gather = "/".join(f"{r.get('gather_ms_per_iteration', 0):.1f}" for r in rows)
        base = base or rate
        print(f"{n:9d} {','.join(str(cores[i % len(cores)]) for i in range(n)):>6s} {rate:9.0f} "
              f"{rate / base:6.2f} {cpu:>12s} {gather:>14s} "
              f"{rows[0]['best_fitness']:12.6f} "
              f"{'/'.join(str(r['evaluated_here']) for r in rows):>16s}", flush=True)


def main(argv):
    del argv
    if FLAGS.child_devices:
        child(FLAGS.child_devices)
        return
    if FLAGS.child_search:
        search_child(*(int(x) for x in FLAGS.child_search.split(",")))
        return
    if FLAGS.search_processes:
        search_main()
        return
    import jax

    backend = jax.default_backend()
    local = jax.local_device_count()
    populations = [int(p) for p in FLAGS.populations] or list(
        _GPU_POPULATIONS if backend == "gpu" else _CPU_POPULATIONS)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, jax {jax.__version__}, "
          f"backend {backend}, local devices {local} ({jax.devices()[0].device_kind})")
    print(f"workload: demo program space, {FLAGS.num_tasks} tasks x 100/100 examples, random "
          f"programs, FEC off, median of {FLAGS.repeats}")
    if backend == "cpu":
        print("note: fake CPU devices share the same cores: this shows the mechanism, "
              "not a speedup")
    print(f"{'devices':>7s} {'population':>10s} {'backend':>8s} {'compile_s':>9s} {'run_s':>8s} "
          f"{'programs/s':>11s} {'mean_fitness':>12s}", flush=True)
    for n in (int(d) for d in FLAGS.devices):
        env = dict(os.environ)
        if backend == "cpu":
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                                f" --xla_force_host_platform_device_count={n}").strip()
        elif n > local:
            print(f"{n:7d}  skipped: {local} local {backend} device(s)", flush=True)
            continue
        cmd = [sys.executable, os.path.abspath(__file__), f"--child_devices={n}",
               f"--populations={','.join(map(str, populations))}", f"--repeats={FLAGS.repeats}",
               f"--num_tasks={FLAGS.num_tasks}", f"--backend={FLAGS.backend}"]
        # Rows are printed as the child measures them, so a run stopped early keeps its first rows.
        with tempfile.TemporaryFile(mode="w+") as err:
            proc = subprocess.Popen(cmd, env=env, cwd=_ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
            for line in proc.stdout:
                if not line.startswith("ROW "):
                    continue
                r = json.loads(line[4:])
                print(f"{r['devices']:7d} {r['population']:10d} {r['backend']:>8s} "
                      f"{r['compile_s']:9.2f} {r['run_s']:8.3f} {r['programs_per_s']:11.0f} "
                      f"{r['mean_fitness']:12.6f}", flush=True)
            if proc.wait() != 0:
                err.seek(0)
                print(f"{n:7d}  failed:\n{err.read()[-3000:]}", flush=True)


if __name__ == "__main__":
    app.run(main)
