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
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from azjax.search import base
from azjax.search import checkpoint as ckpt
from azjax.search.extra_state import ExtraState

PyTree = Any
Evaluator = Callable[[jax.Array, PyTree], Any]
Callback = Callable[[dict[str, Any]], Any]

__all__ = ["run", "RunResult", "ExtraState", "History", "LogProgress"]

_log = logging.getLogger("azjax.search")


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
    settings = _check_arguments(
        space, strategy, evaluator, key, max_evaluations=max_evaluations,
        max_seconds=max_seconds, sufficient_fitness=sufficient_fitness, max_counter=max_counter,
        callbacks=callbacks, metrics_every=metrics_every, workdir=workdir,
        checkpoint_every_seconds=checkpoint_every_seconds, keep_checkpoints=keep_checkpoints,
        config=config, extra_state=extra_state, validate_every=validate_every,
        on_start=on_start)
    init_key, run_key = jax.random.split(key)
    start = _restore(settings, strategy, key, _Carry(strategy.init(init_key), 0, 0, {}))
    clock = _Clock(start.elapsed_seconds)
    saver = _Saver(settings, key, start)
    emit = _Metrics(settings, strategy, start.carry.evaluations)
    if on_start is not None:
        on_start({"iteration": start.carry.iteration, "evaluations": start.carry.evaluations,
                  "resumed_from": start.resumed_from, "checkpoint": saver.last_path})
    carry, reason, fitness = start.carry, None, None
    try:
        while (reason := _stop_reason(settings, carry, clock)) is None:
            carry, fitness = _iterate(settings, space, strategy, evaluator, run_key, carry)
            if settings.callbacks and carry.iteration % settings.metrics_every == 0:
                emit(carry, fitness, clock)
            if saver.due():
                saver.save(carry, clock)
    except KeyboardInterrupt:
        # `carry` is the last completed iteration (it is replaced in one assignment).
        saver.save(carry, clock)
        if settings.workdir is not None and settings.writer:
            _log.warning("interrupted: saved checkpoint %s (iteration %d)", saver.last_path,
                         carry.iteration)
        raise
    if settings.callbacks and fitness is not None and carry.iteration % settings.metrics_every:
        emit(carry, fitness, clock)
    saver.save(carry, clock)
    return RunResult(
        best_genome=carry.state.best_genome,
        best_fitness=float(carry.state.best_fitness),
        state=carry.state,
        iterations=carry.iteration,
        evaluations=carry.evaluations,
        counters=dict(carry.counters),
        elapsed_seconds=clock(),
        stop_reason=reason,
        resumed_from=start.resumed_from,
        checkpoint=saver.last_path,
    )


@dataclasses.dataclass(frozen=True)
class _Settings:
    """The checked arguments of :func:`run` that the steps below read."""

    batch_size: int
    max_evaluations: int | None
    max_seconds: float | None
    sufficient_fitness: float | None
    counter_limits: dict[str, float]
    callbacks: tuple[Callback, ...]
    metrics_every: int
    validate_every: int
    workdir: pathlib.Path | None
    checkpoint_every_seconds: float
    keep_checkpoints: int
    config: dict[str, Any]
    hparams: dict[str, Any]
    extra_state: ExtraState | None
    writer: bool  # multi-host: process 0 alone writes


def _check_arguments(space: Any, strategy: Any, evaluator: Any, key: Any, *,
                     max_evaluations, max_seconds, sufficient_fitness, max_counter, callbacks,
                     metrics_every, workdir, checkpoint_every_seconds, keep_checkpoints, config,
                     extra_state, validate_every, on_start) -> _Settings:
    """Every argument check of :func:`run`, all before anything is traced."""
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
    return _Settings(
        batch_size=batch_size, max_evaluations=max_evaluations, max_seconds=max_seconds,
        sufficient_fitness=sufficient_fitness, counter_limits=counter_limits,
        callbacks=callbacks, metrics_every=metrics_every, validate_every=validate_every,
        workdir=pathlib.Path(workdir) if workdir is not None else None,
        checkpoint_every_seconds=checkpoint_every_seconds, keep_checkpoints=keep_checkpoints,
        config=config_dict, hparams=hparams, extra_state=extra_state,
        writer=jax.process_index() == 0)


class _Start(NamedTuple):
    """Where a session starts: a fresh state, or the newest checkpoint's."""

    carry: _Carry
    elapsed_seconds: float = 0.0
    resumed_from: int | None = None
    checkpoint: pathlib.Path | None = None


def _checkpoint_tree(settings: _Settings, strategy_state: Any, key: jax.Array) -> dict[str, Any]:
    extra = settings.extra_state
    return {"strategy": strategy_state, "key_data": jax.random.key_data(key),
            "extra": extra.get_state() if extra is not None else None}


def _check_same_run(settings: _Settings, meta: dict[str, Any], path: pathlib.Path) -> None:
    """A checkpoint of another run (its config or strategy hyperparameters differ) is an error."""
    for field, fresh in (("config", settings.config), ("strategy", settings.hparams)):
        stored = meta.get(field)
        if stored != json.loads(json.dumps(fresh, sort_keys=True)):
            keys = sorted(set(stored or {}) | set(fresh))
            diff = [k for k in keys if (stored or {}).get(k) != fresh.get(k)]
            raise ckpt.CheckpointError(
                f"checkpoint file {path} belongs to a different run: its {field} differs "
                f"in {diff}; use another workdir or the original {field}")


def _move_aside(settings: _Settings,
                corrupt: list[tuple[pathlib.Path, ckpt.CheckpointError]]) -> None:
    """Corrupt newer files are moved aside (never deleted) only once an older file has restored,
    so their steps are free for this run to write again and a rerun does not meet them twice."""
    for path, error in corrupt:
        aside = path.with_name(path.name + ".corrupt")
        if settings.writer:
            try:
                path.replace(aside)
            except OSError as e:
                raise ckpt.CheckpointError(
                    f"{error}; moving it aside to {aside} failed ({e})") from None
        _log.warning("%s; moved it to %s and resuming from the previous checkpoint", error, aside)


def _restore(settings: _Settings, strategy: Any, key: jax.Array, fresh: _Carry) -> _Start:
    """The newest usable checkpoint in ``settings.workdir`` (restoring ``extra_state`` too), or
    ``fresh`` when there is none."""
    if settings.workdir is None:
        return _Start(fresh)
    corrupt: list[tuple[pathlib.Path, ckpt.CheckpointError]] = []
    restored = ckpt.restore_checkpoint(
        settings.workdir, _checkpoint_tree(settings, fresh.state, key),
        check_metadata=functools.partial(_check_same_run, settings),
        check_shapes=lambda p: not p.startswith("['extra']"),
        on_corrupt=lambda path, error: corrupt.append((path, error)))
    if restored is None:
        return _Start(fresh)
    tree, meta = restored
    iteration = int(meta["iteration"])
    path = ckpt.checkpoint_path(settings.workdir, iteration)
    if not np.array_equal(np.asarray(tree["key_data"]), np.asarray(jax.random.key_data(key))):
        raise ckpt.CheckpointError(
            f"checkpoint file {path} was written by a run with a different key; "
            "use another workdir or the original key")
    carry = _Carry(tree["strategy"], iteration, int(meta["evaluations"]),
                   {k: float(v) for k, v in meta["counters"].items()})
    if settings.extra_state is not None:
        settings.extra_state.set_state(tree["extra"])
    _move_aside(settings, corrupt)
    _log.info("resuming from checkpoint %s (iteration %d, %d evaluations)", path,
              carry.iteration, carry.evaluations)
    return _Start(carry, float(meta["elapsed_seconds"]), iteration, path)


class _Clock:
    """Wall time over all sessions of a run: the restored total plus this session's."""

    def __init__(self, elapsed_before: float):
        self.elapsed_before = elapsed_before
        self.session_start = time.monotonic()

    def __call__(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.session_start)


class _Saver:
    """Writes checkpoints of the whole run state (at most one per iteration, process 0 only)."""

    def __init__(self, settings: _Settings, key: jax.Array, start: _Start):
        self.settings = settings
        self.key = key
        self.last_path = start.checkpoint
        self.last_saved_iteration = start.carry.iteration if start.resumed_from is not None \
            else None
        self.last_save_time = time.monotonic()

    def due(self) -> bool:
        """Whether the periodic checkpoint interval has passed."""
        return self.settings.workdir is not None and (
            time.monotonic() - self.last_save_time >= self.settings.checkpoint_every_seconds)

    def save(self, carry: _Carry, clock: _Clock) -> None:
        s = self.settings
        if s.workdir is None or not s.writer or self.last_saved_iteration == carry.iteration:
            return
        if ckpt.checkpoint_path(s.workdir, carry.iteration).exists():
            # Only this session can have written it (a run resumes from the newest step and only
            # moves forward): a Ctrl-C landed between the atomic replace and the bookkeeping.
            self.last_saved_iteration = carry.iteration
            return
        meta = {
            "config": s.config,
            "strategy": s.hparams,
            "iteration": carry.iteration,
            "evaluations": carry.evaluations,
            "counters": carry.counters,
            "elapsed_seconds": clock(),
            "best_fitness": float(carry.state.best_fitness),
        }
        self.last_path = ckpt.save_checkpoint(
            s.workdir, carry.iteration, _checkpoint_tree(s, carry.state, self.key), meta,
            keep=s.keep_checkpoints)
        self.last_saved_iteration = carry.iteration
        self.last_save_time = time.monotonic()


def _stop_reason(settings: _Settings, carry: _Carry, clock: _Clock) -> str | None:
    """The first stop rule that fires, or ``None``."""
    if settings.max_evaluations is not None and carry.evaluations >= settings.max_evaluations:
        return "max_evaluations"
    for name, limit in settings.counter_limits.items():
        if carry.counters.get(name, 0.0) >= limit:
            return f"max_counter:{name}"
    if settings.sufficient_fitness is not None and carry.iteration > 0 and (
            float(carry.state.best_fitness) > settings.sufficient_fitness):
        return "sufficient_fitness"
    if settings.max_seconds is not None and clock() >= settings.max_seconds:
        return "max_seconds"
    return None


def _ask_evaluate_tell(settings: _Settings, space: Any, strategy: Any, evaluator: Evaluator,
                       run_key: jax.Array, iteration: int, state: Any) -> tuple[Any, Any, Mapping]:
    """One ask -> evaluate -> tell of iteration ``iteration``: (the told state, the batch's fitness,
    the evaluator's info)."""
    genomes, state, eval_key = _ask_step(strategy, run_key, iteration, state)
    if settings.validate_every and iteration % settings.validate_every == 0:
        for i in range(strategy.batch_size):
            space.validate(jax.device_get(base.tree_index(genomes, i)))
    out = evaluator(eval_key, genomes)
    fitness, info = out if isinstance(out, tuple) else (out, {})
    if not isinstance(fitness, jax.Array):
        fitness = np.asarray(fitness, dtype=np.float32)  # lists, float64 numpy, ...
    return strategy.tell(genomes, fitness, state), fitness, info or {}


def _iterate(settings: _Settings, space: Any, strategy: Any, evaluator: Evaluator,
             run_key: jax.Array, carry: _Carry) -> tuple[_Carry, Any]:
    """One ask -> evaluate -> tell; returns the next carry and the batch's fitness."""
    state, fitness, info = _ask_evaluate_tell(settings, space, strategy, evaluator, run_key,
                                              carry.iteration, carry.state)
    return _Carry(state, carry.iteration + 1, carry.evaluations + settings.batch_size,
                  _accumulate(carry.counters, info)), fitness


class _Metrics:
    """Builds the metrics dict of :func:`run`'s docstring and hands it to every callback."""

    def __init__(self, settings: _Settings, strategy: Any, evaluations: int):
        self.callbacks = settings.callbacks
        self.strategy_metrics = getattr(strategy, "metrics", None)
        self.mark = (time.monotonic(), evaluations)  # for evals_per_second

    def __call__(self, carry: _Carry, fitness: Any, clock: _Clock) -> None:
        now = time.monotonic()
        rate = (carry.evaluations - self.mark[1]) / max(now - self.mark[0], 1e-9)
        self.mark = (now, carry.evaluations)
        f = np.asarray(fitness, dtype=np.float64)
        finite = f[np.isfinite(f)]
        m: dict[str, Any] = {
            "iteration": carry.iteration,
            "evaluations": carry.evaluations,
            "evals_per_second": rate,
            "elapsed_seconds": clock(),
            "best_fitness": float(carry.state.best_fitness),
            "batch_mean_fitness": float(finite.mean()) if finite.size else float("nan"),
            "batch_max_fitness": float(finite.max()) if finite.size else float("nan"),
        }
        if callable(self.strategy_metrics):
            for k, v in self.strategy_metrics(carry.state).items():
                arr = np.asarray(v)
                m[k] = arr.item() if arr.ndim == 0 else arr
        m["mean_fitness"] = m.get("population_mean_fitness", m["batch_mean_fitness"])
        for k, v in carry.counters.items():
            m.setdefault(k, v)  # never let an info name shadow a loop metric
        for cb in self.callbacks:
            cb(m)


@functools.partial(jax.jit, static_argnums=0)
def _ask_step(strategy: Any, run_key: jax.Array, iteration: jax.Array,
              state: Any) -> tuple[PyTree, Any, jax.Array]:
    """Key derivation + ask in one dispatch (eager PRNG ops would each be a dispatch of their
    own)."""
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
