"""The search loop: ask -> evaluate -> tell until a stop rule, with metrics callbacks and resumable
checkpoints.

Keys: ``init_key, run_key = jax.random.split(key)``; the strategy is initialised with ``init_key``
and iteration ``i`` uses ``jax.random.fold_in(run_key, i)``, split into an ask key and an evaluation
key. Iteration ``i`` therefore never depends on how the run was chunked or interrupted, and a run
resumed from a checkpoint follows exactly the trajectory of an uninterrupted one.

Checkpoints (when ``workdir`` is given) hold the whole state: the strategy state, the key data, the
optional user ``extra_state`` (e.g. an evaluator's fitness cache) and, in the JSON metadata, the
iteration, evaluation count, info counters, elapsed time, the config and the strategy's
hyperparameters. They are written atomically every ``checkpoint_every_seconds``, on
``KeyboardInterrupt`` and at the end, keeping the newest ``keep_checkpoints``. A run started with a
workdir that holds checkpoints resumes from the newest one (logged on the ``azjax.search`` logger).
A corrupt or unreadable newest file is skipped with a warning and, once an older one has
restored, moved aside to ``<name>.corrupt`` (if every file is corrupt, the run stops and keeps
them all); if a readable file belongs to a different run (config,
strategy, key or state structure differ) a :class:`~azjax.search.checkpoint.CheckpointError` names
the file and nothing is written.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import pathlib
import time
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from azjax.search import base
from azjax.search import checkpoint as ckpt

PyTree = Any
Evaluator = Callable[[jax.Array, PyTree], Any]
Callback = Callable[[dict[str, Any]], Any]

__all__ = ["run", "RunResult", "ExtraState", "History", "LogProgress"]

_log = logging.getLogger("azjax.search")


class ExtraState(Protocol):
    """User state saved with the search state, e.g. an evaluator's cache.

    ``get_state`` returns a pytree of arrays; ``set_state`` receives the restored pytree (its leaves
    may differ in shape from the fresh state's, so a growing cache can be stored as is). For exact
    resumption the state should only change when an evaluator call returns.
    """

    def get_state(self) -> PyTree:
        ...

    def set_state(self, state: PyTree) -> None:
        ...


@dataclasses.dataclass
class RunResult:
    """What :func:`run` returns.

    Attributes:
        best_genome: the best genome ever told to the strategy.
        best_fitness: its fitness (float; ``-inf`` if every fitness was NaN).
        state: the final strategy state.
        iterations: completed ask/evaluate/tell iterations (including those of resumed runs).
        evaluations: genomes evaluated in total.
        counters: cumulative sums of the numeric info entries returned by the evaluator.
        elapsed_seconds: wall time over all (resumed) sessions.
        stop_reason: which rule stopped the run, e.g. ``"max_evaluations"``.
        resumed_from: the checkpoint step this session resumed from, or ``None``.
        checkpoint: path of the last checkpoint written or resumed, or ``None``.
    """

    best_genome: PyTree
    best_fitness: float
    state: Any
    iterations: int
    evaluations: int
    counters: dict[str, float]
    elapsed_seconds: float
    stop_reason: str
    resumed_from: int | None = None
    checkpoint: pathlib.Path | None = None


class _Carry(NamedTuple):
    """Everything that advances per iteration, replaced by ONE assignment so a KeyboardInterrupt
    can never observe a half-updated iteration."""

    state: Any
    iteration: int
    evaluations: int
    counters: dict[str, float]


def _normalize_config(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if hasattr(config, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        config = config.to_dict()
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict or ConfigDict, got {type(config).__name__}")
    try:
        # JSON round trip: tuples become lists, so the stored and the fresh config compare equal.
        return json.loads(json.dumps(dict(config), sort_keys=True))
    except TypeError as e:
        raise ValueError(f"config must be JSON-serialisable: {e}") from None


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _parse_max_counter(max_counter: Any) -> dict[str, float]:
    if max_counter is None:
        return {}
    if isinstance(max_counter, Mapping):
        items = list(max_counter.items())
    elif (isinstance(max_counter, Sequence) and len(max_counter) == 2
          and isinstance(max_counter[0], str)):
        items = [tuple(max_counter)]
    else:
        raise ValueError(
            "max_counter must be a (name, limit) pair or a {name: limit} dict, "
            f"got {max_counter!r}")
    out = {}
    for name, limit in items:
        if not isinstance(name, str) or not name:
            raise ValueError(f"max_counter: counter names must be non-empty strings, got {name!r}")
        _check_positive(f"max_counter[{name!r}]", limit)
        out[name] = float(limit)
    return out


def _accumulate(counters: dict[str, float], info: Mapping[str, Any]) -> dict[str, float]:
    """New counters with every numeric info entry summed in (arrays are summed over elements)."""
    out = dict(counters)
    for name, value in info.items():
        try:
            arr = np.asarray(value)
        except Exception:  # noqa: BLE001 - non-array info (strings, objects) is not a counter
            continue
        if arr.dtype.kind in "biuf":
            out[name] = out.get(name, 0.0) + float(arr.sum(dtype=np.float64))
    return out


def run(
    space: Any,
    strategy: Any,
    evaluator: Evaluator,
    key: jax.Array,
    *,
    max_evaluations: int | None = None,
    max_seconds: float | None = None,
    sufficient_fitness: float | None = None,
    max_counter: tuple[str, float] | Mapping[str, float] | None = None,
    callbacks: Sequence[Callback] = (),
    metrics_every: int = 1,
    workdir: str | pathlib.Path | None = None,
    checkpoint_every_seconds: float = 600,
    keep_checkpoints: int = 3,
    config: Any = None,
    extra_state: ExtraState | None = None,
    validate_every: int = 0,
    on_start: Callback | None = None,
) -> RunResult:
    """Runs ``strategy`` on ``evaluator`` until a stop rule fires.

    Args:
        space: the search space (used to ``validate`` asked genomes when ``validate_every > 0``).
        strategy: an object with ``batch_size`` and jittable ``init/ask/tell`` (see ``base.py``);
            optional ``metrics(state) -> dict`` and ``hparams`` are used when present.
        evaluator: ``evaluator(key, genomes) -> (fitness [B], info dict)`` (or just ``fitness``);
            any host callable. Higher fitness is better; NaN counts as the worst.
        key: a typed PRNG key (``jax.random.key(seed)``).
        max_evaluations: stop once at least this many genomes were evaluated (checked between
            iterations, so a batch may overshoot by ``batch_size - 1``).
        max_seconds: stop once the total wall time (over resumed sessions) reaches this.
        sufficient_fitness: stop once the best fitness is strictly greater than this.
        max_counter: stop once a cumulative info counter reaches a limit, e.g.
            ``("train_steps", 2e8)``, or several as ``{"train_steps": 2e8, ...}``.
        callbacks: each called with a metrics dict every ``metrics_every`` iterations and after the
            last one: ``iteration``, ``evaluations``, ``evals_per_second`` (since the previous
            metrics), ``elapsed_seconds``, ``best_fitness``, ``mean_fitness`` (population mean if
            the strategy reports one, else the batch mean over finite values),
            ``batch_mean_fitness``, ``batch_max_fitness``, the strategy's own metrics and the info
            counters (cumulative, by their info names).
        metrics_every: iterations between callback calls (metrics cost a device sync).
        workdir: checkpoint directory; ``None`` disables checkpoints and resumption.
        checkpoint_every_seconds: seconds between periodic checkpoints (0: every iteration).
        keep_checkpoints: how many of the newest checkpoints to keep.
        config: a JSON-able dict or ``ConfigDict`` stored in checkpoints; resuming with a different
            config is an error.
        extra_state: optional :class:`ExtraState` saved and restored with the search state.
        validate_every: if > 0, ``space.validate`` every asked genome every this many iterations
            (a host-side debugging aid).
        on_start: called once before the first iteration of this session with a dict of
            ``iteration`` and ``evaluations`` (where the session starts), ``resumed_from`` (the
            checkpoint step, or ``None``) and ``checkpoint`` (its path, or ``None``); e.g. to drop
            metrics rows a killed session wrote after its last checkpoint.

    Returns:
        A :class:`RunResult`.

    Raises:
        ValueError: a bad argument (naming it), before anything compiles; or a
            ``CheckpointError`` (a ``ValueError``) naming a corrupt or mismatched checkpoint file.
        KeyboardInterrupt: re-raised after a checkpoint of the last completed iteration is saved.
    """
    # ---- argument checks: all before anything is traced ----
    base.check_space(space)
    for method in ("init", "ask", "tell"):
        if not callable(getattr(strategy, method, None)):
            raise ValueError(f"strategy: {type(strategy).__name__} has no callable `{method}`")
    batch_size = base.check_int("strategy.batch_size", getattr(strategy, "batch_size", None), 1)
    if not callable(evaluator):
        raise ValueError(f"evaluator must be callable, got {evaluator!r}")
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
            and key.shape == ()):
        raise ValueError("key must be a single typed PRNG key, e.g. jax.random.key(0)")
    if max_evaluations is not None:
        base.check_int("max_evaluations", max_evaluations, 1)
    _check_positive("max_seconds", max_seconds)
    if sufficient_fitness is not None and (
            isinstance(sufficient_fitness, bool) or
            not isinstance(sufficient_fitness, (int, float, np.integer, np.floating)) or
            math.isnan(sufficient_fitness)):
        raise ValueError(f"sufficient_fitness must be a number, got {sufficient_fitness!r}")
    counter_limits = _parse_max_counter(max_counter)
    if (max_evaluations is None and max_seconds is None and sufficient_fitness is None
            and not counter_limits):
        raise ValueError(
            "no stop rule: give at least one of max_evaluations, max_seconds, "
            "sufficient_fitness or max_counter")
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise ValueError(f"callbacks must be callables, got {cb!r}")
    metrics_every = base.check_int("metrics_every", metrics_every, 1)
    validate_every = base.check_int("validate_every", validate_every, 0)
    _check_positive("checkpoint_every_seconds", checkpoint_every_seconds, allow_zero=True)
    keep_checkpoints = base.check_int("keep_checkpoints", keep_checkpoints, 1)
    if on_start is not None and not callable(on_start):
        raise ValueError(f"on_start must be callable, got {on_start!r}")
    config_dict = _normalize_config(config)
    hparams = dict(getattr(strategy, "hparams", {}) or {})
    if extra_state is not None and not (callable(getattr(extra_state, "get_state", None))
                                        and callable(getattr(extra_state, "set_state", None))):
        raise ValueError("extra_state must have get_state() and set_state(tree) methods")
    workdir = pathlib.Path(workdir) if workdir is not None else None
    writer = jax.process_index() == 0  # multi-host: one writer

    # ---- initial state, or the newest checkpoint ----
    init_key, run_key = jax.random.split(key)
    key_data = jax.random.key_data(key)
    carry = _Carry(strategy.init(init_key), 0, 0, {})
    elapsed_before = 0.0
    resumed_from = None
    last_path = None
    if workdir is not None:
        template = {"strategy": carry.state, "key_data": key_data,
                    "extra": extra_state.get_state() if extra_state is not None else None}

        def check_metadata(meta: dict[str, Any], path: pathlib.Path) -> None:
            for field, fresh in (("config", config_dict), ("strategy", hparams)):
                stored = meta.get(field)
                if stored != json.loads(json.dumps(fresh, sort_keys=True)):
                    keys = sorted(set(stored or {}) | set(fresh))
                    diff = [k for k in keys if (stored or {}).get(k) != fresh.get(k)]
                    raise ckpt.CheckpointError(
                        f"checkpoint file {path} belongs to a different run: its {field} differs "
                        f"in {diff}; use another workdir or the original {field}")

        corrupt: list[tuple[pathlib.Path, ckpt.CheckpointError]] = []
        restored = ckpt.restore_checkpoint(
            workdir, template, check_metadata=check_metadata,
            check_shapes=lambda p: not p.startswith("['extra']"),
            on_corrupt=lambda path, error: corrupt.append((path, error)))
        if restored is not None:
            tree, meta = restored
            resumed_from = int(meta["iteration"])
            last_path = ckpt.checkpoint_path(workdir, resumed_from)
            if not np.array_equal(np.asarray(tree["key_data"]), np.asarray(key_data)):
                raise ckpt.CheckpointError(
                    f"checkpoint file {last_path} was written by a run with a different key; "
                    "use another workdir or the original key")
            carry = _Carry(tree["strategy"], int(meta["iteration"]), int(meta["evaluations"]),
                           {k: float(v) for k, v in meta["counters"].items()})
            elapsed_before = float(meta["elapsed_seconds"])
            if extra_state is not None:
                extra_state.set_state(tree["extra"])
            for path, error in corrupt:
                # Moved aside (never deleted) only once an older file has restored, so its step is
                # free for this run to write again and a rerun does not meet it a second time.
                aside = path.with_name(path.name + ".corrupt")
                if writer:
                    try:
                        path.replace(aside)
                    except OSError as e:
                        raise ckpt.CheckpointError(
                            f"{error}; moving it aside to {aside} failed ({e})") from None
                _log.warning("%s; moved it to %s and resuming from the previous checkpoint", error,
                             aside)
            _log.info("resuming from checkpoint %s (iteration %d, %d evaluations)", last_path,
                      carry.iteration, carry.evaluations)
    last_saved_iteration = carry.iteration if resumed_from is not None else None

    session_start = time.monotonic()
    last_save_time = session_start

    def elapsed() -> float:
        return elapsed_before + (time.monotonic() - session_start)

    def save(c: _Carry) -> None:
        nonlocal last_saved_iteration, last_path, last_save_time
        if workdir is None or not writer or last_saved_iteration == c.iteration:
            return
        if ckpt.checkpoint_path(workdir, c.iteration).exists():
            # Only this session can have written it (a run resumes from the newest step and only
            # moves forward): a Ctrl-C landed between the atomic replace and the bookkeeping.
            last_saved_iteration = c.iteration
            return
        tree = {"strategy": c.state, "key_data": key_data,
                "extra": extra_state.get_state() if extra_state is not None else None}
        meta = {
            "config": config_dict,
            "strategy": hparams,
            "iteration": c.iteration,
            "evaluations": c.evaluations,
            "counters": c.counters,
            "elapsed_seconds": elapsed(),
            "best_fitness": float(c.state.best_fitness),
        }
        last_path = ckpt.save_checkpoint(workdir, c.iteration, tree, meta,
                                         keep=keep_checkpoints)
        last_saved_iteration = c.iteration
        last_save_time = time.monotonic()

    def stop_reason(c: _Carry) -> str | None:
        if max_evaluations is not None and c.evaluations >= max_evaluations:
            return "max_evaluations"
        for name, limit in counter_limits.items():
            if c.counters.get(name, 0.0) >= limit:
                return f"max_counter:{name}"
        if sufficient_fitness is not None and c.iteration > 0 and (
                float(c.state.best_fitness) > sufficient_fitness):
            return "sufficient_fitness"
        if max_seconds is not None and elapsed() >= max_seconds:
            return "max_seconds"
        return None

    metrics_mark = (time.monotonic(), carry.evaluations)
    strategy_metrics = getattr(strategy, "metrics", None)

    def emit(c: _Carry, fitness: Any) -> None:
        nonlocal metrics_mark
        now = time.monotonic()
        rate = (c.evaluations - metrics_mark[1]) / max(now - metrics_mark[0], 1e-9)
        metrics_mark = (now, c.evaluations)
        f = np.asarray(fitness, dtype=np.float64)
        finite = f[np.isfinite(f)]
        m: dict[str, Any] = {
            "iteration": c.iteration,
            "evaluations": c.evaluations,
            "evals_per_second": rate,
            "elapsed_seconds": elapsed(),
            "best_fitness": float(c.state.best_fitness),
            "batch_mean_fitness": float(finite.mean()) if finite.size else float("nan"),
            "batch_max_fitness": float(finite.max()) if finite.size else float("nan"),
        }
        if callable(strategy_metrics):
            for k, v in strategy_metrics(c.state).items():
                arr = np.asarray(v)
                m[k] = arr.item() if arr.ndim == 0 else arr
        m["mean_fitness"] = m.get("population_mean_fitness", m["batch_mean_fitness"])
        for k, v in c.counters.items():
            m.setdefault(k, v)  # never let an info name shadow a loop metric
        for cb in callbacks:
            cb(m)

    if on_start is not None:
        on_start({"iteration": carry.iteration, "evaluations": carry.evaluations,
                  "resumed_from": resumed_from, "checkpoint": last_path})
    reason = None
    fitness = None
    try:
        while True:
            reason = stop_reason(carry)
            if reason is not None:
                break
            genomes, state, eval_key = _ask_step(strategy, run_key, carry.iteration,
                                                 carry.state)
            if validate_every and carry.iteration % validate_every == 0:
                for i in range(batch_size):
                    space.validate(jax.device_get(base.tree_index(genomes, i)))
            out = evaluator(eval_key, genomes)
            fitness, info = out if isinstance(out, tuple) else (out, {})
            if not isinstance(fitness, jax.Array):
                fitness = np.asarray(fitness, dtype=np.float32)  # lists, float64 numpy, ...
            state = strategy.tell(genomes, fitness, state)
            carry = _Carry(state, carry.iteration + 1, carry.evaluations + batch_size,
                           _accumulate(carry.counters, info or {}))
            if callbacks and carry.iteration % metrics_every == 0:
                emit(carry, fitness)
            if workdir is not None and (
                    time.monotonic() - last_save_time >= checkpoint_every_seconds):
                save(carry)
    except KeyboardInterrupt:
        # `carry` is the last completed iteration (it is replaced in one assignment).
        save(carry)
        if workdir is not None and writer:
            _log.warning("interrupted: saved checkpoint %s (iteration %d)", last_path,
                         carry.iteration)
        raise
    if callbacks and fitness is not None and carry.iteration % metrics_every != 0:
        emit(carry, fitness)
    save(carry)
    return RunResult(
        best_genome=carry.state.best_genome,
        best_fitness=float(carry.state.best_fitness),
        state=carry.state,
        iterations=carry.iteration,
        evaluations=carry.evaluations,
        counters=dict(carry.counters),
        elapsed_seconds=elapsed(),
        stop_reason=reason,
        resumed_from=resumed_from,
        checkpoint=last_path,
    )


@functools.partial(jax.jit, static_argnums=0)
def _ask_step(strategy: Any, run_key: jax.Array, iteration: jax.Array,
              state: Any) -> tuple[PyTree, Any, jax.Array]:
    """Key derivation + ask in one dispatch (eager PRNG ops cost ~0.5 ms each on CPU)."""
    ask_key, eval_key = jax.random.split(jax.random.fold_in(run_key, iteration))
    genomes, state = strategy.ask(ask_key, state)
    return genomes, state, eval_key


class History:
    """A callback that keeps every metrics dict it receives (for tests, notebooks, plots)."""

    def __init__(self):
        self.records: list[dict[str, Any]] = []

    def __call__(self, metrics: dict[str, Any]) -> None:
        self.records.append(dict(metrics))

    def column(self, name: str) -> np.ndarray:
        """One metric over time as an array (NaN where a record lacks it)."""
        return np.asarray([r.get(name, np.nan) for r in self.records], dtype=np.float64)


class LogProgress:
    """A callback that logs progress lines with :mod:`logging` at most every ``every_seconds``.

    The library never prints; launchers route the ``azjax.search`` logger where they like.
    """

    def __init__(self, every_seconds: float = 10.0, logger: logging.Logger | None = None,
                 extra_keys: Sequence[str] = ()):
        _check_positive("every_seconds", every_seconds, allow_zero=True)
        self.every_seconds = float(every_seconds)
        self.logger = logger or logging.getLogger("azjax.search")
        self.extra_keys = tuple(extra_keys)
        self._last = -math.inf

    def __call__(self, metrics: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last < self.every_seconds:
            return
        self._last = now
        parts = [
            f"iter {metrics['iteration']}",
            f"evals {metrics['evaluations']}",
            f"{metrics['evals_per_second']:.1f} evals/s",
            f"best {metrics['best_fitness']:.6g}",
            f"mean {metrics['mean_fitness']:.6g}",
        ]
        parts += [f"{k} {metrics[k]:.6g}" for k in self.extra_keys if k in metrics]
        self.logger.info(" | ".join(parts))
