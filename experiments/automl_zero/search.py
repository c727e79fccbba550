"""The AutoML-Zero experiment protocol (spec §6.1) on the shared search harness.

    repeat:  T_search tasks (re-seeded per experiment if randomize_task_seeds)
             regularized evolution until max_train_steps (or stop_search_at_fitness)
             candidate = best member of the FINAL population
             select fitness = mean over T_select; keep the candidate if it is the best so far
    until    best select fitness > sufficient_fitness, or max_experiments
    final:   the best candidate on the final tasks

Everything an experiment needs is derived from `config.seed` and the experiment index, and each experiment
checkpoints into `workdir/experiment_<k>/`; finished experiments are recorded in
`workdir/experiments.jsonl`. Re-running with the same workdir resumes where the run stopped.
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
import time
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from azjax import search, zero
from azjax.zero.fec import FECConfig
from azjax.zero.mutations import MutationConfig
from azjax.zero.search_evaluator import HurdleConfig, ProgramEvaluator
from azjax.zero.space import ProgramSpace
from experiments import common

# Config fields that control a session but not the search trajectory (a resumed run may change them).
_RUN_CONTROL_FIELDS = ("num_devices", "max_seconds", "log_every_seconds", "checkpoint_every_seconds",
                       "metrics_every")
_TASK_KINDS = ("linear", "affine", "teacher", "projected_binary")
# Fixed seeds of the final tasks, as the reference's (data 1000000+, param 2000000+).
_FINAL_SEED = 1_000_000


def program_config(config) -> zero.ZeroConfig:
    p = config.program
    return zero.ZeroConfig(num_scalars=p.num_scalars, num_vectors=p.num_vectors, num_matrices=p.num_matrices,
                           features=p.features, setup_ops=tuple(p.setup_ops), predict_ops=tuple(p.predict_ops),
                           learn_ops=tuple(p.learn_ops), setup_size=p.setup_size, predict_size=p.predict_size,
                           learn_size=p.learn_size, dtype=p.dtype)


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
    return zero.projected_binary_tasks(key, source=spec.source, data_dir=spec.data_dir or None,
                                       use_held_out_pairs=spec.get("held_out_pairs", False), **common)


def validate_config(config) -> None:
    """Fails fast, naming the field, before anything compiles."""
    if config.population_size < 2:
        raise ValueError(f"config.population_size must be >= 2, got {config.population_size}")
    if not 1 <= config.tournament_size <= config.population_size:
        raise ValueError(f"config.tournament_size must lie in [1, population_size={config.population_size}], "
                         f"got {config.tournament_size} (P < T is impossible)")
    if not 1 <= config.batch_size <= config.population_size:
        raise ValueError(f"config.batch_size must lie in [1, population_size], got {config.batch_size}")
    if not 0 <= config.mutate_prob <= 1:
        raise ValueError(f"config.mutate_prob must lie in [0, 1], got {config.mutate_prob}")
    if config.max_train_steps <= 0:
        raise ValueError(f"config.max_train_steps must be > 0, got {config.max_train_steps}")
    if config.combine not in ("mean", "median"):
        raise ValueError(f"config.combine must be 'mean' or 'median', got {config.combine!r}")
    for name in ("search_tasks", "select_tasks", "final_tasks"):
        if config[name].kind not in _TASK_KINDS:
            raise ValueError(f"config.{name}.kind must be one of {_TASK_KINDS}, got {config[name].kind!r}")
    if config.get("num_islands", 1) < 1:
        raise ValueError(f"config.num_islands must be >= 1, got {config.num_islands}")
    # op names, sizes, mutation types, initial kind; the island fields
    make_strategy(config, make_space(config))


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


class JsonlWriter:
    """Appends metrics dicts as JSON lines (and TensorBoard scalars when tensorboardX is installed)."""

    def __init__(self, path: pathlib.Path, prefix: str = "", enabled: bool = True):
        self.path = path
        self.prefix = prefix
        self.enabled = enabled  # multi-host: only process 0 writes
        self._tb = None
        if not enabled:
            return
        try:  # Optional: only when the user has it.
            from tensorboardX import SummaryWriter  # type: ignore
            self._tb = SummaryWriter(str(path.parent / "tensorboard"))
        except Exception:  # noqa: BLE001
            self._tb = None

    def __call__(self, metrics: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {k: (float(v) if isinstance(v, (int, float, np.number)) or np.ndim(v) == 0 else None)
               for k, v in metrics.items()}
        row = {k: v for k, v in row.items() if v is not None}
        if self.prefix:
            row["experiment"] = self.prefix
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            step = int(row.get("evaluations", 0))
            for k, v in row.items():
                self._tb.add_scalar(f"{self.prefix}/{k}" if self.prefix else k, v, step)


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


def run_experiments(config: ml_collections.ConfigDict, workdir: str,
                    log_fn: Callable[[str], None] = logging.info) -> Dict[str, Any]:
    """Runs the whole protocol; returns the best program's text and its search/select/final fitness."""
    validate_config(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = program_config(config)
    space = make_space(config)
    base_key = jax.random.key(config.seed)
    finished_path = workdir / "experiments.jsonl"
    finished = _load_finished(finished_path)
    writer = common.is_main_process()  # every host runs the same search; process 0 alone writes and logs
    metrics = JsonlWriter(workdir / "metrics.jsonl", enabled=writer)
    best = None
    for row in finished:
        if best is None or row["select_fitness"] >= best["select_fitness"]:
            best = row
    # Fields that control the run but not its trajectory may change between sessions of one workdir.
    config_dict = {k: v for k, v in json.loads(config.to_json()).items() if k not in _RUN_CONTROL_FIELDS}
    start = time.monotonic()
    experiment = len(finished)
    while True:
        if best is not None and best["select_fitness"] > config.sufficient_fitness:
            break
        if config.max_experiments and experiment >= config.max_experiments:
            break
        if config.get("max_seconds") and time.monotonic() - start > config.max_seconds:
            break
        key = jax.random.fold_in(base_key, experiment)
        task_key = key if config.randomize_task_seeds else base_key
        search_tasks = make_tasks(config.search_tasks, cfg.features, jax.random.fold_in(task_key, 0), cfg.dtype)
        fec = (FECConfig(num_train=config.fec.num_train, num_valid=config.fec.num_valid,
                         cache_size=config.fec.cache_size, forget_every=config.fec.forget_every)
               if config.fec.enabled else None)
        evaluator = ProgramEvaluator(cfg, search_tasks, combine=config.combine, fec=fec,
                                     strategy=config.strategy or None,
                                     train_budget_factor=config.get("train_budget_factor"),
                                     hurdle=(HurdleConfig(num_tasks=config.hurdle_tasks,
                                                          percentile=config.hurdle_percentile,
                                                          window=config.population_size)
                                             if config.get("hurdle_tasks", 0) > 0 else None),
                                     num_devices=common.num_devices(config.get("num_devices")))
        strategy = make_strategy(config, space)
        label = f"experiment {experiment}"
        log_fn(f"{label}: searching (the first iteration compiles the evaluator; this may take a while)")
        result = search.run(
            space, strategy, evaluator, jax.random.fold_in(key, 1),
            max_counter=("train_steps", float(config.max_train_steps)),
            sufficient_fitness=config.get("stop_search_at_fitness"),
            max_seconds=config.get("max_seconds"),
            callbacks=[ProgressBar(config.max_train_steps, config.log_every_seconds, label),
                       JsonlWriter(workdir / "metrics.jsonl", prefix=str(experiment), enabled=writer)]
            if writer else [],
            metrics_every=config.get("metrics_every", 1),
            workdir=workdir / f"experiment_{experiment}",
            checkpoint_every_seconds=config.checkpoint_every_seconds, config=config_dict,
            extra_state=evaluator)
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        state = result.state
        fitness = np.asarray(search.sanitize_fitness(state.fitness))
        winner = int(np.argmax(fitness))
        candidate = jax.tree_util.tree_map(lambda x: np.asarray(x)[winner], state.population)
        select_tasks = make_tasks(config.select_tasks, cfg.features, jax.random.fold_in(key, 2), cfg.dtype)
        select_fit = float(zero.combine_fitness(zero.evaluate(candidate, select_tasks, cfg,
                                                              key=jax.random.fold_in(key, 3)), "mean"))
        row = {"experiment": experiment, "search_fitness": float(fitness[winner]),
               "select_fitness": select_fit, "evaluations": result.evaluations,
               "train_steps": result.counters.get("train_steps", 0.0), "stop_reason": result.stop_reason,
               "seconds": result.elapsed_seconds, "program": zero.format_program(candidate, cfg)}
        log_fn(f"{label}: search fitness {row['search_fitness']:.6f}, select fitness {select_fit:.6f} "
               f"after {result.evaluations} evaluations ({result.stop_reason})")
        if writer:
            with open(finished_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        metrics({"experiment_index": experiment, "select_fitness": select_fit,
                 "search_fitness": row["search_fitness"], "evaluations": result.evaluations})
        if best is None or select_fit >= best["select_fitness"]:
            best = row
        experiment += 1
    if best is None:
        raise ValueError("no experiment ran: check max_experiments / max_seconds")
    program = zero.parse_program(best["program"], cfg)
    final_tasks = make_tasks(config.final_tasks, cfg.features, jax.random.key(_FINAL_SEED), cfg.dtype)
    final_fit = float(zero.combine_fitness(zero.evaluate(program, final_tasks, cfg, key=jax.random.key(_FINAL_SEED)),
                                           "mean"))
    summary = dict(best, final_fitness=final_fit, experiments=experiment)
    if writer:
        (workdir / "best_program.txt").write_text(best["program"])
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
