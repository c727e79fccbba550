"""Islands per process: the K islands of an :class:`~azjax.search.islands.IslandEvolution` split
over the processes of a multi-process run (``jax.distributed``; docs/scaling.md, "Islands per
process").

Process ``p`` of ``N`` (``K`` divisible by ``N``) owns the contiguous islands
``p * K/N .. (p + 1) * K/N - 1``. It holds only their state (:class:`ProcessIslandState`), asks
only their children, evaluates them with its own evaluator (e.g. ``ProgramEvaluator(...,
process_local=True)``) and tells only them: no host work is replicated. The processes meet every
few iterations (:func:`run`'s ``exchange_every``, and at every migration and metrics iteration), in
one small all-gather of each iteration's evaluator counters, each process's best fitness and clock
(so that every stop rule, checkpoint and metrics decision is the same everywhere), which at a
migration step also carries the emigrants; on metrics iterations a second all-gather collects the
islands' fitness for the callbacks.

Keys are derived exactly as :class:`IslandEvolution` derives them: ``ask(key)`` splits ``key``
into one key per island plus the migration key, and this process uses its islands' keys. The
migration plan is a function of the migration key alone, so every process draws the same plan,
sends its islands' emigrants, receives the emigrants of all islands and applies immigration to its
own islands. Hence, with an evaluator whose fitness is a function of the program alone (FEC cache
off, no random ops in the programs), ``N`` processes give the same populations and fitness, bit
for bit, as one process running all ``K`` islands; :meth:`ProcessIslands.gather` rebuilds that
process's :class:`~azjax.search.islands.IslandState` from the shards.

Checkpoints: every process writes its own shard, ``<workdir>/process_<p>_of_<N>/ckpt_<step>.npz``
(its islands, the shared keys and counters, its evaluator's ``extra_state``), at the same
iterations (the decision is part of the per-iteration all-gather). A run resumes from the newest
step that every shard of one process count holds: exactly on the same process count; on another
count that divides ``K`` the islands are re-split and each process takes the ``extra_state`` of the
shard that held its first island (per-process caches then start from another process's cache). A
checkpoint that :func:`azjax.search.run` wrote for the :class:`IslandEvolution` in ``workdir`` itself
counts too (all islands in one file; every process takes its ``extra_state``), so a search started on
one process continues on several.
"""
from __future__ import annotations

import functools
import logging
import pathlib
import re
import time
from typing import Any, Mapping, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from azjax.search import base
from azjax.search import checkpoint as ckpt
from azjax.search import loop
from azjax.search.evolution import EvolutionState, RegularizedEvolution
from azjax.search.islands import (IslandEvolution, IslandState, receive_immigrants,
                                  take_emigrants)
from azjax.search.sharding import allgather  # re-exported: part of this module's API

PyTree = Any

__all__ = ["ProcessIslands", "ProcessIslandState", "allgather", "run", "shard_dir"]

_log = logging.getLogger("azjax.search")
_SHARD_RE = re.compile(r"^process_(\d+)_of_(\d+)$")


@flax.struct.dataclass
class ProcessIslandState:
    """State of one process's islands (:class:`ProcessIslands`).

    Attributes:
        islands: an :class:`EvolutionState` whose leaves carry a leading axis of this process's
            ``K / N`` islands.
        migration_key: typed PRNG key of the next migration (the same on every process).
        migrations: int32 scalar, migrations performed so far.
        count: int32 scalar, genomes told over ALL islands of all processes.
        best_genome: the best genome ever told to one of this process's islands.
        best_fitness: its fitness; ``-inf`` before the first tell.
    """

    islands: EvolutionState
    migration_key: jax.Array
    migrations: jax.Array
    count: jax.Array
    best_genome: PyTree
    best_fitness: jax.Array


class ProcessIslands(base.Strategy):
    """Process ``process_index``'s share of ``islands`` (``num_islands`` divisible by
    ``num_processes``; both default to this ``jax.distributed`` run's).

    ``ask`` returns this process's ``K / N * B`` children (island-major, its islands in order) and
    ``tell`` routes their fitness back; migration is three steps around a collective (see
    :func:`run`): :meth:`emigrants` (this process's islands' emigrants), an all-gather, then
    :meth:`immigrate`. ``hparams`` are those of ``islands`` (a checkpoint records the search, not
    its layout).

    Raises:
        ValueError: ``num_islands`` is not divisible by ``num_processes``, or a bad index.
    """

    def __init__(self, islands: IslandEvolution, process_index: int | None = None,
                 num_processes: int | None = None):
        if not isinstance(islands, IslandEvolution):
            raise ValueError(f"islands must be an IslandEvolution, got {type(islands).__name__}")
        n = jax.process_count() if num_processes is None else num_processes
        p = jax.process_index() if process_index is None else process_index
        self.num_processes = base.check_int("num_processes", n, 1)
        self.process_index = base.check_int("process_index", p, 0, self.num_processes - 1)
        if islands.num_islands % self.num_processes:
            raise ValueError(f"num_islands ({islands.num_islands}) must be divisible by the number "
                             f"of processes ({self.num_processes})")
        self.islands = islands
        self.space = islands.space
        self.num_islands = islands.num_islands
        self.local_islands = islands.num_islands // self.num_processes
        self.first_island = self.process_index * self.local_islands
        self.batch_size = self.local_islands * islands.island_batch_size
        self.global_batch_size = islands.batch_size

    @property
    def hparams(self) -> dict[str, Any]:
        return self.islands.hparams

    def __repr__(self) -> str:
        return (f"ProcessIslands({self.islands!r}, process_index={self.process_index}, "
                f"num_processes={self.num_processes})")

    def migration_due(self, told: int) -> bool:
        """Whether the tell that follows ``told`` genomes per island migrates (the rule of
        :class:`IslandEvolution`: the count crosses a multiple of ``migrate_every`` and the
        populations are full)."""
        isl = self.islands
        if not isl.migrates:
            return False
        after = told + isl.island_batch_size
        return (after // isl.migrate_every > told // isl.migrate_every
                and after >= isl.population_size)

    def _init(self, key: jax.Array) -> ProcessIslandState:
        """This process's empty islands; the same keys as :meth:`IslandEvolution.init`."""
        one = self.islands.island._init(key)
        k = self.local_islands
        return ProcessIslandState(
            islands=jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (k,) + x.shape), one),
            migration_key=jax.random.fold_in(key, 0x15_1A_4D),  # IslandEvolution's derivation
            migrations=jnp.zeros((), jnp.int32),
            count=jnp.zeros((), jnp.int32),
            best_genome=one.best_genome,
            best_fitness=jnp.array(-jnp.inf, jnp.float32),
        )

    def _ask(self, key: jax.Array, state: ProcessIslandState) -> tuple[PyTree, ProcessIslandState]:
        """This process's islands' children: island ``i`` uses the ``i``-th of the
        ``num_islands + 1`` keys ``IslandEvolution`` splits ``key`` into; the last is the
        migration key."""
        isl = self.islands
        if self.num_islands == 1:  # IslandEvolution hands the key to its one island untouched
            genomes, _ = isl.island._ask(key, base.tree_index(state.islands, 0))
            return genomes, state
        keys = jax.random.split(key, self.num_islands + 1)
        mine = keys[self.first_island:self.first_island + self.local_islands]
        islands, axes = IslandEvolution._shared_count(state.islands)
        genomes, _ = jax.vmap(isl.island._ask, in_axes=(0, axes), out_axes=(0, axes))(
            mine, islands)
        genomes = jax.tree_util.tree_map(
            lambda x: jnp.reshape(x, (x.shape[0] * x.shape[1],) + x.shape[2:]), genomes)
        return genomes, state.replace(migration_key=keys[-1])

    def _tell(self, genomes: PyTree, fitness: jax.Array,
              state: ProcessIslandState) -> ProcessIslandState:
        """Routes each of this process's islands its ``B`` results (no migration: see
        :meth:`emigrants` and :meth:`immigrate`)."""
        base.check_fitness_shape(fitness, self.batch_size)
        k, b = self.local_islands, self.islands.island_batch_size
        per_island = jax.tree_util.tree_map(lambda x: jnp.reshape(x, (k, b) + x.shape[1:]),
                                            genomes)
        islands, axes = IslandEvolution._shared_count(state.islands)
        islands = jax.vmap(self.islands.island._tell, in_axes=(0, 0, axes), out_axes=axes)(
            per_island, jnp.reshape(fitness, (k, b)), islands)
        islands = islands.replace(count=jnp.broadcast_to(islands.count, (k,)))
        j = jnp.argmax(islands.best_fitness)
        return state.replace(islands=islands, count=state.count + self.global_batch_size,
                             best_genome=base.tree_index(islands.best_genome, j),
                             best_fitness=islands.best_fitness[j])

    def _plan(self, state: ProcessIslandState):
        return self.islands._migration_plan(state.migration_key).rows(
            self.first_island, self.first_island + self.local_islands)

    @functools.partial(jax.jit, static_argnames=("self",))
    def emigrants(self, state: ProcessIslandState) -> tuple[PyTree, jax.Array, jax.Array]:
        """``(population, fitness, birth)`` of this process's islands' emigrants, leaves
        [K / N, m, ...]."""
        return take_emigrants(state.islands, self._plan(state).send)

    @functools.partial(jax.jit, static_argnames=("self",))
    def immigrate(self, state: ProcessIslandState,
                  emigrants: tuple[PyTree, jax.Array, jax.Array]) -> ProcessIslandState:
        """The state after this process's islands received their immigrants from ``emigrants``,
        those of ALL islands (leaves [K, m, ...], island order)."""
        islands = receive_immigrants(state.islands, self._plan(state), emigrants)
        return state.replace(islands=islands, migrations=state.migrations + 1)

    def gather(self, state: ProcessIslandState) -> IslandState:
        """The :class:`IslandState` of all ``K`` islands (a collective: every process calls it),
        as one process running :class:`IslandEvolution` would hold it."""
        return assemble(allgather(state.islands), state)


def assemble(shards: Sequence[EvolutionState], like: ProcessIslandState) -> IslandState:
    """The :class:`IslandState` of the islands ``shards`` (in island order) hold; the shared
    fields (keys, counts) from ``like``. The best genome is IslandEvolution's: the first island
    holding the highest best-ever fitness."""
    islands = jax.tree_util.tree_map(lambda *x: np.concatenate([np.asarray(y) for y in x]),
                                     *shards)
    j = int(np.argmax(np.asarray(islands.best_fitness)))
    return IslandState(
        islands=jax.tree_util.tree_map(jnp.asarray, islands),
        migration_key=like.migration_key, migrations=jnp.asarray(like.migrations),
        count=jnp.asarray(like.count),
        best_genome=jax.tree_util.tree_map(lambda x: jnp.asarray(x[j]), islands.best_genome),
        best_fitness=jnp.asarray(islands.best_fitness[j]))


def shard_dir(workdir: str | pathlib.Path, process_index: int, num_processes: int) -> pathlib.Path:
    """Where process ``process_index`` of ``num_processes`` writes its checkpoint shards."""
    return pathlib.Path(workdir) / f"process_{process_index}_of_{num_processes}"


class _Carry(NamedTuple):
    """What advances per iteration (replaced in one assignment); the global view of the run."""

    state: ProcessIslandState
    iteration: int
    evaluations: int
    counters: dict[str, float]
    best_fitness: float  # over all processes' islands
    elapsed: float  # the largest clock of all processes at the last all-gather


def run(space: Any, strategy: ProcessIslands, evaluator: loop.Evaluator, key: jax.Array, *,
        max_evaluations: int | None = None, max_seconds: float | None = None,
        sufficient_fitness: float | None = None,
        max_counter: tuple[str, float] | Mapping[str, float] | None = None,
        callbacks: Sequence[loop.Callback] = (), metrics_every: int = 1,
        workdir: str | pathlib.Path | None = None, checkpoint_every_seconds: float = 600,
        keep_checkpoints: int = 3, config: Any = None,
        extra_state: loop.ExtraState | None = None, validate_every: int = 0,
        on_start: loop.Callback | None = None, exchange_every: int = 16) -> loop.RunResult:
    """:func:`azjax.search.run` for one process's islands: every process of the run calls it with
    the same arguments, its own :class:`ProcessIslands` and its own evaluator.

    The arguments mean what they mean for :func:`azjax.search.run` (the same key derivation: the
    strategy is initialised with ``split(key)[0]``, iteration ``i`` asks and evaluates with
    ``fold_in(split(key)[1], i)``), over the whole run: ``max_evaluations`` counts all islands'
    genomes, ``max_counter`` the sums of every process's info counters, ``sufficient_fitness``
    the best fitness of all islands, ``max_seconds`` the slowest process's clock. Every process
    computes the same metrics (over all islands: the keys of :meth:`IslandEvolution.metrics`) and
    calls its own ``callbacks`` with them (e.g. process 0 alone passes them); ``workdir`` is the
    directory of every process's checkpoint shard (:func:`shard_dir`; storage all processes
    see), and ``extra_state`` this process's.

    The processes meet every ``exchange_every`` iterations (and at every migration and metrics
    iteration) in one all-gather of each iteration's counters, best fitness and clock: one
    all-gather costs about as much CPU as a tenth of a 1000-child iteration (docs/scaling.md), so
    it is amortised over several. Every stop rule is still applied after every iteration: when
    one fires inside a window, every process returns the state of the iteration where it fired
    and drops the later ones (their work is lost, and an evaluator with a cache keeps what they
    inserted).

    Returns:
        A :class:`~azjax.search.RunResult` whose ``state`` is the :class:`IslandState` of all
        islands (:meth:`ProcessIslands.gather`), ``best_genome`` / ``best_fitness`` over all
        islands and ``counters`` summed over the processes.
    """
    if not isinstance(strategy, ProcessIslands):
        raise ValueError(f"strategy must be a ProcessIslands, got {type(strategy).__name__}")
    settings = loop._check_arguments(
        space, strategy, evaluator, key, max_evaluations=max_evaluations,
        max_seconds=max_seconds, sufficient_fitness=sufficient_fitness, max_counter=max_counter,
        callbacks=callbacks, metrics_every=metrics_every, workdir=workdir,
        checkpoint_every_seconds=checkpoint_every_seconds, keep_checkpoints=keep_checkpoints,
        config=config, extra_state=extra_state, validate_every=validate_every,
        on_start=on_start)
    exchange_every = base.check_int("exchange_every", exchange_every, 1)
    _check_layout(strategy)
    init_key, run_key = jax.random.split(key)
    fresh = _Carry(strategy.init(init_key), 0, 0, {}, -np.inf, 0.0)
    carry, resumed_from, path = _restore(settings, strategy, key, init_key, fresh)
    if strategy.islands.migrates:
        _compile_migration(strategy, carry.state)
    clock = loop._Clock(carry.elapsed)
    last_save = [time.monotonic(), carry.iteration if resumed_from is not None else None, path]
    metrics_mark = [time.monotonic(), carry.evaluations]
    if on_start is not None:
        on_start({"iteration": carry.iteration, "evaluations": carry.evaluations,
                  "resumed_from": resumed_from, "checkpoint": path})

    def save(c: _Carry) -> None:
        if settings.workdir is None or last_save[1] == c.iteration:
            return
        last_save[2] = _save_shard(settings, strategy, key, c)
        last_save[:2] = [time.monotonic(), c.iteration]

    reason, fitness = None, None
    try:
        while (reason := _stop_reason(settings, carry)) is None:
            due = settings.workdir is not None and (
                time.monotonic() - last_save[0] >= settings.checkpoint_every_seconds)
            carry, fitness, save_now = _window(settings, space, strategy, evaluator, run_key,
                                               carry, clock, due, exchange_every)
            if carry.iteration % settings.metrics_every == 0:
                _emit(settings, strategy, carry, fitness, metrics_mark)
            if save_now:
                save(carry)
    except KeyboardInterrupt:
        save(carry)
        if settings.workdir is not None:
            _log.warning("interrupted: saved checkpoint shard %s (iteration %d)", last_save[2],
                         carry.iteration)
        raise
    if fitness is not None and carry.iteration % settings.metrics_every:
        _emit(settings, strategy, carry, fitness, metrics_mark)
    save(carry)
    full = strategy.gather(carry.state)
    return loop.RunResult(
        best_genome=full.best_genome, best_fitness=float(full.best_fitness), state=full,
        iterations=carry.iteration, evaluations=carry.evaluations, counters=dict(carry.counters),
        elapsed_seconds=max(carry.elapsed, clock()), stop_reason=reason,
        resumed_from=resumed_from, checkpoint=last_save[2])


def _check_layout(strategy: ProcessIslands) -> None:
    """Every process runs the same islands split the same way. Also the run's first collective, made
    before anything compiles: the collectives' set-up (gloo on CPU) waits a limited time for the
    other processes, which one process's compilation must not use up."""
    layout = (strategy.process_index, strategy.num_processes)
    if layout != (jax.process_index(), jax.process_count()):
        raise ValueError(f"strategy is process {layout[0]} of {layout[1]}, but this is process "
                         f"{jax.process_index()} of {jax.process_count()}")
    mine = np.asarray([strategy.num_islands, strategy.num_processes, strategy.process_index,
                       strategy.global_batch_size, jax.process_count()], np.int64)
    table = np.stack(allgather(mine))
    expected = np.column_stack([np.broadcast_to(mine[:2], (len(table), 2)), np.arange(len(table)),
                                np.broadcast_to(mine[3:], (len(table), 2))])
    if not np.array_equal(table, expected):
        raise ValueError("the processes disagree on the islands' split (rows: num_islands, "
                         f"num_processes, process_index, batch, process count): {table.tolist()}")


def _compile_migration(strategy: ProcessIslands, state: ProcessIslandState) -> None:
    """Compiles :meth:`ProcessIslands.emigrants` and :meth:`~ProcessIslands.immigrate` before the
    first iteration (on this state; the results are dropped), as :class:`IslandEvolution` compiles
    its migration with its first ``tell``: not in the middle of a search, where every process would
    wait for it."""
    emigrants = jax.tree_util.tree_map(np.asarray, strategy.emigrants(state))
    everyone = jax.tree_util.tree_map(lambda x: np.concatenate([x] * strategy.num_processes),
                                      emigrants)
    jax.block_until_ready(strategy.immigrate(state, everyone))


def _stop_reason(settings: loop._Settings, carry: _Carry) -> str | None:
    """The first stop rule that fires, from values every process shares."""
    if settings.max_evaluations is not None and carry.evaluations >= settings.max_evaluations:
        return "max_evaluations"
    for name, limit in settings.counter_limits.items():
        if carry.counters.get(name, 0.0) >= limit:
            return f"max_counter:{name}"
    if (settings.sufficient_fitness is not None and carry.iteration > 0
            and carry.best_fitness > settings.sufficient_fitness):
        return "sufficient_fitness"
    if settings.max_seconds is not None and carry.elapsed >= settings.max_seconds:
        return "max_seconds"
    return None


def _window(settings: loop._Settings, space: Any, strategy: ProcessIslands,
            evaluator: loop.Evaluator, run_key: jax.Array, carry: _Carry, clock: loop._Clock,
            save_due: bool, exchange_every: int) -> tuple[_Carry, Any, bool]:
    """Up to ``exchange_every`` ask -> evaluate -> tell iterations of this process's islands, then
    one all-gather of every iteration's counters, best fitness and clock (and the checkpoint vote
    and, at a migration, the emigrants) and immigration.

    The window ends early, the same on every process, at a migration iteration, a metrics
    iteration or the ``max_evaluations`` budget: all three are known in advance. The other stop
    rules depend on every process's values, so the global view is rebuilt iteration by iteration
    from the gathered rows and the window is cut at the first iteration after which a rule fires,
    as the one-iteration-at-a-time loop would have stopped there. Returns the carry, the batch
    fitness of its last iteration and whether to save."""
    length = exchange_every
    if settings.max_evaluations is not None:
        length = min(length, -(-(settings.max_evaluations - carry.evaluations)
                               // strategy.global_batch_size))
    state, steps, rows, names, migrate = carry.state, [], [], None, False
    for j in range(max(length, 1)):
        iteration = carry.iteration + j
        evaluations = carry.evaluations + j * strategy.global_batch_size
        # The key derivation and the ask/evaluate/tell of `search.run`, on this process's islands.
        state, fitness, info = loop._ask_evaluate_tell(settings, space, strategy, evaluator,
                                                       run_key, iteration, state)
        counts = loop._accumulate({}, info)
        if names is None:
            names = sorted(counts)
        elif sorted(counts) != names:
            raise ValueError(f"the evaluator's info keys changed from {names} to {sorted(counts)}")
        migrate = strategy.migration_due(evaluations // strategy.num_islands)
        steps.append((state, fitness))
        rows.append([counts[k] for k in names] + [float(state.best_fitness), clock()])
        if migrate or (iteration + 1) % settings.metrics_every == 0:
            break
    values = np.asarray(rows, np.float64)  # [iterations, len(names) + 2]
    shared = allgather({"values": values, "save": np.asarray(save_due),
                        "emigrants": strategy.emigrants(state) if migrate else None})
    table = np.stack([s["values"] for s in shared])  # [N, iterations, len(names) + 2]
    n = len(names)
    for j in range(len(steps)):
        counters = dict(carry.counters)
        for i, name in enumerate(names):
            counters[name] = counters.get(name, 0.0) + float(table[:, j, i].sum())
        carry = _Carry(steps[j][0], carry.iteration + 1,
                       carry.evaluations + strategy.global_batch_size, counters,
                       max(carry.best_fitness, float(table[:, j, n].max())),
                       float(table[:, j, n + 1].max()))
        if _stop_reason(settings, carry) is not None:
            break
    if migrate and j == len(steps) - 1:
        emigrants = jax.tree_util.tree_map(lambda *x: np.concatenate(x, axis=0),
                                           *[s["emigrants"] for s in shared])
        carry = carry._replace(state=strategy.immigrate(carry.state, emigrants))
    return carry, steps[j][1], any(bool(s["save"]) for s in shared)


def _emit(settings: loop._Settings, strategy: ProcessIslands, carry: _Carry, fitness: Any,
          mark: list) -> None:
    """The metrics of :func:`azjax.search.run` over all islands (an all-gather of the islands'
    fitness and birth and the batch fitness), handed to this process's callbacks."""
    s = carry.state
    shared = allgather({"fitness": s.islands.fitness, "birth": s.islands.birth,
                        "batch": np.asarray(fitness, np.float32)})
    if not settings.callbacks:
        return
    island_fitness = np.concatenate([x["fitness"] for x in shared])  # [K, P]
    birth = np.concatenate([x["birth"] for x in shared])
    batch = np.concatenate([x["batch"] for x in shared]).astype(np.float64)
    now = time.monotonic()
    rate = (carry.evaluations - mark[1]) / max(now - mark[0], 1e-9)
    mark[:] = [now, carry.evaluations]
    finite = batch[np.isfinite(batch)]
    m: dict[str, Any] = {
        "iteration": carry.iteration,
        "evaluations": carry.evaluations,
        "evals_per_second": rate,
        "elapsed_seconds": carry.elapsed,
        "best_fitness": carry.best_fitness,
        "batch_mean_fitness": float(finite.mean()) if finite.size else float("nan"),
        "batch_max_fitness": float(finite.max()) if finite.size else float("nan"),
    }
    stats = _population_metrics(island_fitness.reshape(-1), birth.reshape(-1))
    stats["island_max_fitness_min"] = np.min(np.max(island_fitness, axis=1))
    stats["migrations"] = s.migrations
    for k, v in stats.items():
        arr = np.asarray(v)
        m[k] = arr.item() if arr.ndim == 0 else arr
    m["mean_fitness"] = m["population_mean_fitness"]
    for k, v in carry.counters.items():
        m.setdefault(k, v)
    for cb in settings.callbacks:
        cb(m)


# IslandEvolution.metrics over all islands, in one dispatch.
_population_metrics = jax.jit(RegularizedEvolution._metrics_fn)


def _tree(settings: loop._Settings, state: ProcessIslandState, key: jax.Array) -> dict:
    extra = settings.extra_state
    return {"strategy": state, "key_data": jax.random.key_data(key),
            "extra": extra.get_state() if extra is not None else None}


def _save_shard(settings: loop._Settings, strategy: ProcessIslands, key: jax.Array,
                carry: _Carry) -> pathlib.Path:
    meta = {
        "config": settings.config, "strategy": settings.hparams, "iteration": carry.iteration,
        "evaluations": carry.evaluations, "counters": carry.counters,
        "elapsed_seconds": carry.elapsed, "best_fitness": carry.best_fitness,
        "process_index": strategy.process_index, "num_processes": strategy.num_processes,
        "islands": [strategy.first_island, strategy.first_island + strategy.local_islands],
    }
    directory = shard_dir(settings.workdir, strategy.process_index, strategy.num_processes)
    # overwrite: an interrupted session may have written this step already (the trajectory is
    # deterministic, so the contents agree).
    return ckpt.save_checkpoint(directory, carry.iteration, _tree(settings, carry.state, key),
                                meta, keep=settings.keep_checkpoints, overwrite=True)


def _newest_complete(workdir: pathlib.Path, num_processes: int) -> tuple[int, int] | None:
    """(step, process count) of the newest checkpoint that every shard of one process count
    holds (ties: this run's count), or None. Process count 0 stands for a checkpoint of
    :func:`azjax.search.run` with :class:`IslandEvolution` in ``workdir`` itself (all islands in
    one file)."""
    counts: dict[int, set[int]] = {}
    if workdir.is_dir():
        for entry in workdir.iterdir():
            m = _SHARD_RE.match(entry.name)
            if m and entry.is_dir():
                counts.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    cands = []
    plain = ckpt.all_steps(workdir)
    if plain:
        cands.append((plain[-1], False, 0))
    for n, members in counts.items():
        if members != set(range(n)):
            continue
        steps = set.intersection(*(set(ckpt.all_steps(shard_dir(workdir, p, n)))
                                   for p in range(n)))
        if steps:
            cands.append((max(steps), n == num_processes, n))
    if not cands:
        return None
    step, _, n = max(cands)
    return step, n


def _restore(settings: loop._Settings, strategy: ProcessIslands, key: jax.Array,
             init_key: jax.Array, fresh: _Carry) -> tuple[_Carry, int | None, pathlib.Path | None]:
    """The carry of the newest complete checkpoint in the workdir (restoring ``extra_state``),
    or ``fresh``."""
    if settings.workdir is None:
        return fresh, None, None
    found = _newest_complete(settings.workdir, strategy.num_processes)
    if found is None:
        return fresh, None, None
    step, n = found
    if n == 0:  # all islands in one file (search.run)
        layout, wanted = None, [None]
        template = _tree(settings, strategy.islands.init(init_key), key)
    elif n == strategy.num_processes:
        layout, wanted = strategy, [strategy.process_index]
        template = _tree(settings, strategy.init(init_key), key)
    else:  # another process count: read every shard and re-split the islands
        layout = ProcessIslands(strategy.islands, 0, n)
        wanted = list(range(n))
        template = _tree(settings, layout.init(init_key), key)
    trees, metas, paths = [], [], []
    for p in wanted:
        path = ckpt.checkpoint_path(settings.workdir if p is None
                                    else shard_dir(settings.workdir, p, n), step)
        tree, meta = ckpt.restore_file(path, template,
                                       check_shapes=lambda q: not q.startswith("['extra']"))
        loop._check_same_run(settings, meta, path)
        if not np.array_equal(np.asarray(tree["key_data"]),
                              np.asarray(jax.random.key_data(key))):
            raise ckpt.CheckpointError(
                f"checkpoint file {path} was written by a run with a different key; use another "
                "workdir or the original key")
        trees.append(tree)
        metas.append(meta)
        paths.append(path)
    if layout is strategy:
        state, extra, meta, path = trees[0]["strategy"], trees[0]["extra"], metas[0], paths[0]
    else:
        like = trees[0]["strategy"]
        if layout is None:
            full, src = like, 0
        else:
            full = assemble([t["strategy"].islands for t in trees], like)
            # the shard that held this process's first island
            src = strategy.first_island // layout.local_islands
        lo, hi = strategy.first_island, strategy.first_island + strategy.local_islands
        islands = jax.tree_util.tree_map(lambda x: np.asarray(x)[lo:hi], full.islands)
        j = int(np.argmax(np.asarray(islands.best_fitness)))
        state = ProcessIslandState(
            islands=islands, migration_key=like.migration_key, migrations=like.migrations,
            count=like.count,
            best_genome=jax.tree_util.tree_map(lambda x: x[j], islands.best_genome),
            best_fitness=islands.best_fitness[j])
        extra, meta, path = trees[src]["extra"], metas[0], paths[src]
    if settings.extra_state is not None:
        settings.extra_state.set_state(extra)
    carry = _Carry(state, int(meta["iteration"]), int(meta["evaluations"]),
                   {k: float(v) for k, v in meta["counters"].items()},
                   float(meta["best_fitness"]), float(meta["elapsed_seconds"]))
    _log.info("resuming from checkpoint %s (iteration %d, %d evaluations, written by %s)",
              path, carry.iteration, carry.evaluations,
              f"{n} process(es), islands per process" if n else "one process")
    return carry, step, path
