"""The AutoML-Zero experiment protocol on the shared search harness.

    repeat:  T_search tasks (re-seeded per experiment if randomize_task_seeds)
             regularized evolution until max_train_steps (or stop_search_at_fitness)
             candidate = best member of the FINAL population
             select fitness = mean over T_select; keep the candidate if it is the best so far
    until    best select fitness > sufficient_fitness, or max_experiments
    final:   the best candidate on the final tasks

Everything an experiment needs is derived from `config.seed` and the experiment index, and each experiment
checkpoints into `workdir/experiment_<k>/`; finished experiments are recorded in
`workdir/experiments.jsonl`. Re-running with the same workdir resumes where the run stopped.

The whole config is checked, every task set is built and the workdir is checked for writing before the
first search step. The config a workdir was started with is kept in `workdir/config.json`; a rerun with
other values of fields that shape the search is refused, naming them, and the run-control and protocol
fields (`_RESUMABLE_FIELDS`: time limits, logging, devices, the select and final tasks, the number of
experiments, the stopping fitness, data locations) may change between sessions.
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Optional

import jax
import ml_collections
import numpy as np
from absl import logging

from azjax import search, zero
from azjax.search import sharding
from azjax.zero.fec import FECConfig
from azjax.zero.mutations import MutationConfig
from azjax.zero.search_evaluator import HurdleConfig, ProgramEvaluator
from azjax.zero.space import ProgramSpace
from experiments import common

# Config fields that control a session but not the search trajectory (a resumed run may change them).
_RUN_CONTROL_FIELDS = ("num_devices", "max_seconds", "log_every_seconds", "checkpoint_every_seconds",
                       "metrics_every")
# Fields used only around the searches (picking and checking candidates, when to stop experimenting) or
# naming where data lives: they do not change any search trajectory either. Dotted names are nested.
_PROTOCOL_FIELDS = ("select_tasks", "final_tasks", "max_experiments", "sufficient_fitness", "data_dir",
                    "search_tasks.data_dir", "tune_constants")
_RESUMABLE_FIELDS = _RUN_CONTROL_FIELDS + _PROTOCOL_FIELDS
_TASK_KINDS = ("linear", "affine", "teacher", "projected_binary", "projected_multiclass")
_TASK_SECTIONS = ("search_tasks", "select_tasks", "final_tasks")
_SOURCES = ("digits", "cifar10")
# Fixed seeds of the final tasks, as the reference's (data 1000000+, param 2000000+).
_FINAL_SEED = 1_000_000
# Seed of the constant-tuning tasks (built like the select tasks, disjoint from the final ones).
_TUNE_SEED = 3_000_000


def program_config(config) -> zero.ZeroConfig:
    p = config.program
    return zero.ZeroConfig(num_scalars=p.num_scalars, num_vectors=p.num_vectors, num_matrices=p.num_matrices,
                           features=p.features, setup_ops=tuple(p.setup_ops), predict_ops=tuple(p.predict_ops),
                           learn_ops=tuple(p.learn_ops), setup_size=p.setup_size, predict_size=p.predict_size,
                           learn_size=p.learn_size, dtype=p.dtype, num_classes=p.get("num_classes", 0))


def mutation_config(config) -> MutationConfig:
    m = config.mutation
    kw = {}
    for c in ("setup", "predict", "learn"):
        for bound in ("min", "max"):
            v = m.get(f"{c}_size_{bound}")
            kw[f"{c}_size_{bound}"] = None if v is None or v < 0 else int(v)
    return MutationConfig(types=None if m.paper_variant else tuple(m.types), paper_variant=m.paper_variant, **kw)


def make_space(config) -> ProgramSpace:
    sizes = config.get("sizes_init")
    sizes = None if not sizes else tuple(int(s) for s in sizes)
    return ProgramSpace(program_config(config), mutation_config(config), initial=config.initial, sizes_init=sizes)


def make_tasks(spec, features: int, key: jax.Array, dtype: str) -> zero.Tasks:
    """Builds a task collection from a config section (kind, num_tasks, num_train, ...)."""
    if spec.kind not in _TASK_KINDS:
        raise ValueError(f"config tasks kind must be one of {_TASK_KINDS}, got {spec.kind!r}")
    common = dict(num_tasks=spec.num_tasks, features=features, num_train=spec.num_train,
                  num_valid=spec.num_valid, num_epochs=spec.num_epochs, dtype=dtype)
    if spec.kind == "linear":
        return zero.linear_regression_tasks(key, **common)
    if spec.kind == "affine":
        return zero.affine_regression_tasks(key, **common)
    if spec.kind == "teacher":
        return zero.teacher_network_tasks(key, **common)
    if spec.kind == "projected_multiclass":
        return zero.projected_multiclass_tasks(key, source=spec.source, data_dir=spec.data_dir or None,
                                               num_classes=spec.get("num_classes", 10), **common)
    return zero.projected_binary_tasks(key, source=spec.source, data_dir=spec.data_dir or None,
                                       use_held_out_pairs=spec.get("held_out_pairs", False), **common)


def _is_int(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer))


def _is_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and not np.isnan(v)


def validate_tasks(spec, name: str) -> None:
    """Checks one task section (kind, sizes, data source and its location) without building it."""
    if spec.kind not in _TASK_KINDS:
        raise ValueError(f"config.{name}.kind must be one of {_TASK_KINDS}, got {spec.kind!r}")
    for field in ("num_tasks", "num_train", "num_valid", "num_epochs"):
        v = spec[field]
        if not _is_int(v) or v < 1:
            raise ValueError(f"config.{name}.{field} must be an integer >= 1, got {v!r}")
    if spec.kind not in ("projected_binary", "projected_multiclass"):
        return
    if spec.source not in _SOURCES:
        raise ValueError(f"config.{name}.source must be one of {_SOURCES}, got {spec.source!r}")
    if spec.source == "cifar10":
        where = f"config.{name}.data_dir"
        if not spec.data_dir:
            raise ValueError(f"{where}: source=cifar10 needs the local cifar-10-batches-py folder "
                             f"(--{where}=DIR, or --config.data_dir=DIR for every task section)")
        if not os.path.isdir(os.path.expanduser(spec.data_dir)):
            raise ValueError(f"{where}: {spec.data_dir!r} is not a directory (the cifar-10-batches-py "
                             "folder is needed)")
    else:
        from azjax.data import digits
        digits.require_sklearn()


def validate_config(config) -> None:
    """Fails fast, naming the field, before anything compiles or is built."""
    if not _is_int(config.seed) or config.seed < 0:
        raise ValueError(f"config.seed must be an integer >= 0, got {config.seed!r}")
    if config.population_size < 2:
        raise ValueError(f"config.population_size must be >= 2, got {config.population_size}")
    if not 1 <= config.tournament_size <= config.population_size:
        raise ValueError(f"config.tournament_size must lie in [1, population_size={config.population_size}], "
                         f"got {config.tournament_size} (P < T is impossible)")
    if not 1 <= config.batch_size <= config.population_size:
        raise ValueError(f"config.batch_size must lie in [1, population_size], got {config.batch_size}")
    if not 0 <= config.mutate_prob <= 1:
        raise ValueError(f"config.mutate_prob must lie in [0, 1], got {config.mutate_prob}")
    if not _is_number(config.max_train_steps) or config.max_train_steps <= 0:
        raise ValueError(f"config.max_train_steps must be > 0, got {config.max_train_steps}")
    if config.combine not in ("mean", "median"):
        raise ValueError(f"config.combine must be 'mean' or 'median', got {config.combine!r}")
    for name in _TASK_SECTIONS:
        validate_tasks(config[name], name)
        # Multi-class tasks need the multi-class memory layout, with as many classes.
        classes = config[name].get("num_classes", 10) if config[name].kind == "projected_multiclass" else 0
        if classes != config.program.get("num_classes", 0):
            raise ValueError(f"config.{name}: {config[name].kind} tasks with {classes or 'no'} classes need "
                             f"config.program.num_classes={classes}, got "
                             f"{config.program.get('num_classes', 0)}")
    if config.get("num_islands", 1) < 1:
        raise ValueError(f"config.num_islands must be >= 1, got {config.num_islands}")
    if not _is_int(config.max_experiments) or config.max_experiments < 0:
        raise ValueError(f"config.max_experiments must be an integer >= 0 (0: until sufficient_fitness), "
                         f"got {config.max_experiments!r}")
    for name in ("sufficient_fitness", "stop_search_at_fitness"):
        v = config.get(name)
        if v is not None and not _is_number(v):
            raise ValueError(f"config.{name} must be a number or None, got {v!r}")
    for name, allow_zero in (("max_seconds", False), ("checkpoint_every_seconds", True),
                             ("log_every_seconds", True)):
        v = config.get(name)
        if v is None and name == "max_seconds":
            continue
        if not _is_number(v) or v < 0 or (v == 0 and not allow_zero):
            raise ValueError(f"config.{name} must be {'>= 0' if allow_zero else '> 0 or None'}, got {v!r}")
    if not _is_int(config.get("metrics_every", 1)) or config.get("metrics_every", 1) < 1:
        raise ValueError(f"config.metrics_every must be an integer >= 1, got {config.metrics_every!r}")
    trials = config.get("tune_constants", {}).get("num_trials", 0)
    if not _is_int(trials) or trials < 0:
        raise ValueError(f"config.tune_constants.num_trials must be an integer >= 0 (0: no tuning), got {trials!r}")
    budget = config.get("train_budget_factor")
    if budget is not None and (not _is_number(budget) or budget <= 0):
        raise ValueError(f"config.train_budget_factor must be > 0 or None, got {budget!r}")
    hurdle = config.get("hurdle_tasks", 0)
    if not _is_int(hurdle) or not 0 <= hurdle < config.search_tasks.num_tasks:
        raise ValueError(f"config.hurdle_tasks must be an integer in [0, search_tasks.num_tasks="
                         f"{config.search_tasks.num_tasks}) (0: no hurdles), got {hurdle!r}")
    if hurdle and not 0 <= config.hurdle_percentile <= 100:
        raise ValueError(f"config.hurdle_percentile must lie in [0, 100], got {config.hurdle_percentile!r}")
    if config.fec.enabled:
        try:
            _fec_config(config)
        except ValueError as e:
            raise ValueError(f"config.fec: {e}") from None
    sharding.resolve_num_devices(config.get("num_devices"))
    if jax.process_count() > 1 and config.get("max_seconds") is not None:
        # Each process has its own clock: a time limit could stop one process an iteration before the
        # others, which would then wait for it in the next batch's collectives.
        raise ValueError("config.max_seconds must be None in a multi-process run (--multihost): bound the "
                         "run by max_train_steps or max_experiments")
    # op names, sizes, mutation types, initial kind; the island fields
    make_strategy(config, make_space(config))


def _fec_config(config) -> Optional[FECConfig]:
    f = config.fec
    return (FECConfig(num_train=f.num_train, num_valid=f.num_valid, cache_size=f.cache_size,
                      forget_every=f.forget_every) if f.enabled else None)


def make_strategy(config, space):
    """Regularized evolution, or islands of it if config.num_islands > 1 (sizes per island)."""
    kw = dict(population_size=config.population_size, tournament_size=config.tournament_size,
              mutate_prob=config.mutate_prob, batch_size=config.batch_size)
    if config.get("num_islands", 1) > 1:
        return search.IslandEvolution(
            space, num_islands=config.num_islands, migrate_every=config.migrate_every,
            num_migrants=config.get("num_migrants"),
            migration_topology=config.get("migration_topology", "ring"), **kw)
    return search.RegularizedEvolution(space, **kw)


class ProgressBar:
    """A one-line progress report on stderr (train steps against the budget), plus periodic absl logs."""

    def __init__(self, total_steps: float, every_seconds: float = 5.0, label: str = ""):
        self.total = total_steps
        self.every = every_seconds
        self.label = label
        self._last = 0.0
        self._tty = sys.stderr.isatty()

    def __call__(self, m: Dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last < self.every and m.get("train_steps", 0) < self.total:
            return
        self._last = now
        frac = min(1.0, float(m.get("train_steps", 0)) / self.total)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        hits = m.get("cache_hits", 0.0)
        seen = hits + m.get("evaluated", 0.0) + m.get("duplicates", 0.0)
        line = (f"{self.label} [{bar}] {100 * frac:5.1f}% evals={int(m['evaluations'])} "
                f"evals/s={m.get('evals_per_second', 0):.0f} best={m['best_fitness']:.6f} "
                f"mean={m.get('mean_fitness', float('nan')):.4f} cache_hit_rate={hits / max(seen, 1):.2f}")
        if self._tty:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
        logging.info(line)


def _load_finished(path: pathlib.Path):
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {i + 1} is not valid JSON ({e}); move the file aside to restart") \
                from None
    return rows


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _is_resumable(field: str) -> bool:
    return any(field == f or field.startswith(f + ".") for f in _RESUMABLE_FIELDS)


def search_config_dict(config) -> Dict[str, Any]:
    """The config as stored in (and checked against) each experiment's checkpoints: every field that shapes
    the search trajectory, none of `_RESUMABLE_FIELDS`."""
    d = json.loads(config.to_json())
    for field in _RESUMABLE_FIELDS:
        *parents, leaf = field.split(".")
        node = d
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return d


def check_workdir(workdir: pathlib.Path) -> None:
    """Creates the workdir and makes sure files can be written there (before anything is computed)."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_check_", dir=workdir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"workdir {str(workdir)!r} is not writable ({type(e).__name__}: {e}); "
                         "pass another --workdir") from None


def check_stored_config(config, workdir: pathlib.Path, log_fn: Callable[[str], None], writer: bool) -> None:
    """Compares `config` with the one the workdir was started with (workdir/config.json).

    Fields that shape the search must be equal: otherwise a ValueError lists them with both values. Changes
    of `_RESUMABLE_FIELDS` are logged and accepted. The (accepted) config is then stored.
    """
    path = workdir / "config.json"
    fresh = json.loads(config.to_json())
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); move it aside only if this workdir's "
                             "original config is known") from None
        old, new = _flatten(stored), _flatten(fresh)
        changed = sorted(k for k in set(old) | set(new) if old.get(k, "<missing>") != new.get(k, "<missing>"))
        fixed = [k for k in changed if not _is_resumable(k)]
        if fixed:
            detail = "; ".join(f"{k}: {old.get(k, '<missing>')!r} in the workdir, {new.get(k, '<missing>')!r} now"
                               for k in fixed[:8])
            raise ValueError(f"config differs from the one {workdir} was started with in {fixed} ({detail}); "
                             "use another --workdir, or the original values (see its config.json)")
        if changed:
            log_fn("config: " + "; ".join(f"{k} changed from {old.get(k, '<missing>')!r} to "
                                          f"{new.get(k, '<missing>')!r}" for k in changed)
                   + " (these do not change the search; finished experiments keep their recorded fitness)")
    elif any(workdir.glob("experiment_*")) or (workdir / "experiments.jsonl").exists():
        log_fn(f"{path} is missing (a workdir from an older version): the config cannot be compared with "
               "the one this workdir was started with; storing the current one")
    if writer:
        common.write_json(path, fresh, indent=2, sort_keys=True)


def islands_per_process(config) -> bool:
    """Whether a multi-process run splits the islands over the processes (docs/scaling.md, "Islands per
    process"): more than one process and `num_islands` > 1 divisible by their number. Otherwise every process
    runs the whole search and only the evaluation is split over all processes' devices."""
    n, k = jax.process_count(), config.get("num_islands", 1)
    return n > 1 and k > 1 and k % n == 0


def multihost_mode(config) -> str:
    """A one-line description of how this run uses its processes (for the log)."""
    n = jax.process_count()
    if n == 1:
        return "one process"
    if islands_per_process(config):
        k = config.num_islands // n
        return (f"{n} processes, islands per process: process {jax.process_index()} holds islands "
                f"{jax.process_index() * k}..{(jax.process_index() + 1) * k - 1} of {config.num_islands}")
    return (f"{n} processes, replicated search: every process runs the whole search, the evaluation is split over "
            f"all processes' devices (islands per process needs num_islands > 1 divisible by {n})")


def make_evaluator(config, search_tasks: zero.Tasks, process_local: bool = False) -> ProgramEvaluator:
    """The experiment's evaluator on its search tasks (FEC, hurdles, train budget, devices); `process_local`:
    on this process's devices only, for this process's islands (islands per process)."""
    hurdle = (HurdleConfig(num_tasks=config.hurdle_tasks, percentile=config.hurdle_percentile,
                           window=config.population_size)
              if config.get("hurdle_tasks", 0) > 0 else None)
    return ProgramEvaluator(program_config(config), search_tasks, combine=config.combine,
                            fec=_fec_config(config),
                            backend=config.get("backend") or config.get("strategy") or None,
                            train_budget_factor=config.get("train_budget_factor"), hurdle=hurdle,
                            num_devices=sharding.resolve_num_devices(config.get("num_devices")),
                            process_local=process_local)


def run_experiment(config, space: ProgramSpace, workdir: pathlib.Path, experiment: int,
                   log_fn: Callable[[str], None], writer: bool) -> Dict[str, Any]:
    """One experiment: a search on fresh search tasks (resumed from its checkpoints), then the best
    member of the final population checked on the select tasks; returns its record."""
    cfg = program_config(config)
    base_key = jax.random.key(config.seed)
    key = jax.random.fold_in(base_key, experiment)
    task_key = key if config.randomize_task_seeds else base_key
    search_tasks = make_tasks(config.search_tasks, cfg.features, jax.random.fold_in(task_key, 0), cfg.dtype)
    select_tasks = make_tasks(config.select_tasks, cfg.features, jax.random.fold_in(key, 2), cfg.dtype)
    experiment_dir = workdir / f"experiment_{experiment}"
    split_islands = islands_per_process(config)
    if (not split_islands and jax.process_count() == 1 and config.get("num_islands", 1) > 1
            and any(experiment_dir.glob("process_*_of_*"))):
        # A search checkpointed as islands per process continues from its shards (docs/scaling.md).
        split_islands = True
        log_fn(f"experiment {experiment}: continuing a search checkpointed as islands per process")
    evaluator = make_evaluator(config, search_tasks, process_local=split_islands)
    strategy = make_strategy(config, space)
    run_search = search.run
    if split_islands:  # this process's islands only (docs/scaling.md, "Islands per process")
        strategy, run_search = search.ProcessIslands(strategy), search.process_islands.run
    label = f"experiment {experiment}"
    rows = search.MetricsWriter(workdir / "metrics.jsonl", prefix=str(experiment), enabled=writer)

    def on_start(where):
        rows.start(where)
        if where["resumed_from"] is not None:
            log_fn(f"{label}: resumed from checkpoint {where['checkpoint']} (iteration {where['iteration']}, "
                   f"{where['evaluations']} evaluations)")

    log_fn(f"{label}: searching (the first iteration compiles the evaluator; this may take a while)")
    try:
        result = run_search(
            space, strategy, evaluator, jax.random.fold_in(key, 1),
            max_counter=("train_steps", float(config.max_train_steps)),
            sufficient_fitness=config.get("stop_search_at_fitness"),
            max_seconds=config.get("max_seconds"),
            callbacks=[ProgressBar(config.max_train_steps, config.log_every_seconds, label), rows]
            if writer else [],
            metrics_every=config.get("metrics_every", 1),
            workdir=experiment_dir,
            checkpoint_every_seconds=config.checkpoint_every_seconds, config=search_config_dict(config),
            extra_state=evaluator, on_start=on_start)
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        step = search.latest_step(search.process_islands.shard_dir(
            experiment_dir, jax.process_index(), jax.process_count()) if split_islands else experiment_dir)
        if step is not None:
            log_fn(f"{label}: interrupted; saved checkpoint {step} in {experiment_dir}; rerun with the same "
                   f"--workdir={workdir} to resume")
        raise
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    fitness = np.asarray(search.sanitize_fitness(result.state.fitness))
    winner = int(np.argmax(fitness))
    candidate = jax.tree_util.tree_map(lambda x: np.asarray(x)[winner], result.state.population)
    # The config's backend (default: the platform's) also checks candidates: it is the one the config
    # was sized for (e.g. `cond` for the 64-op multi-class space).
    backend = config.get("backend") or config.get("strategy") or None
    select_fit = float(zero.combine_fitness(zero.evaluate(candidate, select_tasks, cfg, key=jax.random.fold_in(key, 3),
                                                          backend=backend), "mean"))
    row = {"experiment": experiment, "search_fitness": float(fitness[winner]),
           "select_fitness": select_fit, "evaluations": result.evaluations,
           "train_steps": result.counters.get("train_steps", 0.0), "stop_reason": result.stop_reason,
           "seconds": result.elapsed_seconds, "program": zero.format_program(candidate, cfg)}
    log_fn(f"{label}: search fitness {row['search_fitness']:.6f}, select fitness {select_fit:.6f} "
           f"after {result.evaluations} evaluations ({result.stop_reason})")
    return row


def run_experiments(config: ml_collections.ConfigDict, workdir: str,
                    log_fn: Callable[[str], None] = logging.info) -> Dict[str, Any]:
    """Runs the whole protocol; returns the best program's text and its search/select/final fitness."""
    validate_config(config)
    workdir = pathlib.Path(workdir)
    writer = common.is_main_process()  # process 0 alone writes and logs (docs/scaling.md)
    if writer:
        check_workdir(workdir)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
    check_stored_config(config, workdir, log_fn, writer)
    log_fn(f"mode: {multihost_mode(config)}")
    cfg = program_config(config)
    space = make_space(config)
    finished_path = workdir / "experiments.jsonl"
    finished = _load_finished(finished_path)
    metrics = search.MetricsWriter(workdir / "metrics.jsonl", enabled=writer)
    best = None
    for row in finished:
        if best is None or row["select_fitness"] >= best["select_fitness"]:
            best = row
    # Every task set is built before the first search step: a bad one fails now, not after the search.
    final_tasks = make_tasks(config.final_tasks, cfg.features, jax.random.key(_FINAL_SEED), cfg.dtype)
    start = time.monotonic()
    experiment = len(finished)
    while True:
        if best is not None and best["select_fitness"] > config.sufficient_fitness:
            break
        if config.max_experiments and experiment >= config.max_experiments:
            break
        if config.get("max_seconds") and time.monotonic() - start > config.max_seconds:
            break
        row = run_experiment(config, space, workdir, experiment, log_fn, writer)
        if writer:
            with open(finished_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        metrics({"experiment_index": experiment, "select_fitness": row["select_fitness"],
                 "search_fitness": row["search_fitness"], "evaluations": row["evaluations"]})
        if best is None or row["select_fitness"] >= best["select_fitness"]:
            best = row
        experiment += 1
    if best is None:
        raise ValueError("no experiment ran: check max_experiments / max_seconds")
    program = zero.parse_program(best["program"], cfg)
    final_fit = float(zero.combine_fitness(zero.evaluate(program, final_tasks, cfg, key=jax.random.key(_FINAL_SEED),
                                                         backend=config.get("backend") or config.get("strategy")
                                                         or None), "mean"))
    summary = dict(best, final_fitness=final_fit, experiments=experiment)
    trials = config.get("tune_constants", {}).get("num_trials", 0)
    if trials:
        summary["tuning"] = tune_final_program(config, program, final_tasks, log_fn)
    if writer:
        (workdir / "best_program.txt").write_text(best["program"])
        if trials:
            (workdir / "tuned_program.txt").write_text(summary["tuning"]["program"])
        common.write_json(workdir / "summary.json", summary, indent=2)
    return summary


def tune_final_program(config, program: zero.Program, final_tasks: zero.Tasks,
                       log_fn: Callable[[str], None] = logging.info) -> Dict[str, Any]:
    """Constant tuning (paper S7) of the final program on tuning tasks; tuned fitness on the final tasks.

    The tuning tasks are built like the select tasks from their own seed, so the final tasks stay unseen.
    """
    cfg = program_config(config)
    tune_key = jax.random.key(_TUNE_SEED)
    tuning_tasks = make_tasks(config.select_tasks, cfg.features, tune_key, cfg.dtype)
    backend = config.get("backend") or config.get("strategy") or None
    result = zero.tune_constants(program, tuning_tasks, cfg, key=tune_key,
                                 num_trials=int(config.tune_constants.num_trials), backend=backend,
                                 combine=config.combine)
    final_tuned = float(zero.combine_fitness(
        zero.evaluate(result.program, final_tasks, cfg, key=jax.random.key(_FINAL_SEED), backend=backend), "mean"))
    row = {"num_trials": int(config.tune_constants.num_trials), "num_constants": result.num_constants,
           "tuning_fitness_untuned": float(result.untuned_fitness), "tuning_fitness_tuned": float(result.fitness),
           "final_fitness_tuned": final_tuned, "program": zero.format_program(result.program, cfg)}
    log_fn(f"constant tuning: {row['num_constants']} constant(s), {row['num_trials']} trials; tuning-task fitness "
           f"{row['tuning_fitness_untuned']:.6f} -> {row['tuning_fitness_tuned']:.6f}; final fitness tuned "
           f"{final_tuned:.6f}")
    return row
