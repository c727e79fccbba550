"""Island model: K regularized-evolution populations with periodic migration (paper §4.2;
docs/automl_zero.md, section 5).

The K islands are ONE state pytree: an :class:`~azjax.search.evolution.EvolutionState` whose every
leaf has a leading island axis, advanced by ``vmap`` of :class:`RegularizedEvolution`'s own
``_init / _ask / _tell`` (the evolution logic lives in one place). To the search loop an
:class:`IslandEvolution` is just another strategy: ``ask`` returns ``K * B`` genomes (island-major:
rows ``i*B .. i*B+B-1`` belong to island ``i``), ``tell`` routes the fitness back, so
:func:`~azjax.search.loop.run`, checkpoints and resumption work unchanged, and the evaluator sees
one batch of ``K * B`` programs (sharded over devices by the evaluator, not here). Because the
batch is island-major and the evaluator splits it into contiguous equal slices, ``K`` a multiple of
the device count puts ``K / D`` whole islands' children on each device (several islands per
device); the strategy state itself is small and stays replicated. Results do not depend on the
device count.

Migration. Every island counts its own evaluations (all islands advance in lockstep, ``B`` per
tell). At the ``tell`` whose update makes an island's count cross a multiple of ``migrate_every``
(at most one migration per tell) and once the populations are full, every island

1. sends ``num_migrants`` members chosen uniformly without replacement (emigrants keep their
   fitness and birth; nothing is re-evaluated), and
2. overwrites ``num_migrants`` members, also chosen uniformly without replacement and
   independently of the emigrants, with immigrants:

   * ``"ring"`` (default): island ``i`` receives the emigrants of island ``i - 1 (mod K)``;
   * ``"random"`` (the paper's central server): ``num_migrants`` emigrants drawn without
     replacement from the pooled emigrants of all OTHER islands.

All islands send before any receives (emigrants are taken from the pre-migration populations).
Aging is unchanged: slots are still overwritten cyclically, so an immigrant lives until the aging
pointer reaches the slot it landed in. With ``num_islands == 1`` or ``num_migrants == 0`` nothing
migrates, and ``num_islands == 1`` follows :class:`RegularizedEvolution`'s trajectory exactly.

Randomness: ``ask(key)`` splits ``key`` into one key per island plus a migration key that it
stores in the state; the following ``tell`` uses it if a migration is due. So everything is a
function of the keys passed in, and the state (a plain pytree, typed key included) holds all that
an exact resume needs.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from azjax.search import base
from azjax.search.evolution import EvolutionState, RegularizedEvolution

PyTree = Any

__all__ = ["IslandEvolution", "IslandState", "TOPOLOGIES"]

TOPOLOGIES = ("ring", "random")


def _flatten_islands(x: jax.Array) -> jax.Array:
    """[K, P, ...] -> [K * P, ...]."""
    return jnp.reshape(x, (x.shape[0] * x.shape[1],) + x.shape[2:])


@flax.struct.dataclass
class IslandState:
    """State of :class:`IslandEvolution`.

    Attributes:
        islands: an :class:`EvolutionState` whose leaves carry a leading axis of ``num_islands``
            (``islands.count[i]`` is island ``i``'s own evaluation count).
        migration_key: typed PRNG key for the next migration, set by every ``ask``.
        migrations: int32 scalar, migrations performed so far (each moves ``num_migrants`` members
            into every island).
        count: int32 scalar, genomes told over all islands.
        best_genome: the best genome ever told to any island.
        best_fitness: its (sanitised) fitness; ``-inf`` before the first tell.

    The read-only properties ``population``, ``fitness`` and ``birth`` view all islands as one
    population of ``num_islands * population_size`` members (island-major), so code written for
    :class:`EvolutionState` (e.g. "best member of the final population") works unchanged.
    """

    islands: EvolutionState
    migration_key: jax.Array
    migrations: jax.Array
    count: jax.Array
    best_genome: PyTree
    best_fitness: jax.Array

    @property
    def population(self) -> PyTree:
        return jax.tree_util.tree_map(_flatten_islands, self.islands.population)

    @property
    def fitness(self) -> jax.Array:
        return _flatten_islands(self.islands.fitness)

    @property
    def birth(self) -> jax.Array:
        return _flatten_islands(self.islands.birth)


class IslandEvolution(base.Strategy):
    """``num_islands`` regularized-evolution populations with periodic migration.

    Args:
        space: a :class:`~azjax.search.space.SearchSpace`.
        num_islands: ``K`` >= 1.
        population_size: ``P`` per island.
        tournament_size: ``T`` per island (1 <= T <= P).
        mutate_prob: probability that a child is a mutation of its parent rather than a copy.
        batch_size: ``B`` children per island per ``ask`` (1 <= B <= P); one ``ask`` returns
            ``K * B`` genomes (``self.batch_size``).
        migrate_every: evaluations per island between migrations (>= 1); checked at ``tell``.
        num_migrants: ``m`` members sent and replaced per island per migration, in [0, P]
            (default ``P // 2``, the paper's 50 of 100); 0 disables migration.
        migration_topology: ``"ring"`` (island ``i`` receives from ``i - 1``) or ``"random"``
            (immigrants drawn from the pooled emigrants of all other islands).

    Raises:
        ValueError: naming the bad argument, before anything is traced or compiled.
    """

    hparam_names = ("num_islands", "population_size", "tournament_size", "mutate_prob",
                    "batch_size", "migrate_every", "num_migrants", "migration_topology")

    def __init__(self, space: Any, num_islands: int, population_size: int, tournament_size: int,
                 mutate_prob: float = 0.9, batch_size: int = 1, migrate_every: int = 1000,
                 num_migrants: int | None = None, migration_topology: str = "ring"):
        self.num_islands = base.check_int("num_islands", num_islands, 1)
        # The per-island strategy validates space, population_size, tournament_size, mutate_prob
        # and batch_size (its messages name those fields).
        self.island = RegularizedEvolution(space, population_size=population_size,
                                           tournament_size=tournament_size,
                                           mutate_prob=mutate_prob, batch_size=batch_size)
        self.space = space
        self.population_size = self.island.population_size
        self.island_batch_size = self.island.batch_size
        self.batch_size = self.num_islands * self.island_batch_size
        self.migrate_every = base.check_int("migrate_every", migrate_every, 1)
        if num_migrants is None:
            num_migrants = self.population_size // 2
        self.num_migrants = base.check_int("num_migrants", num_migrants, 0, self.population_size)
        if migration_topology not in TOPOLOGIES:
            raise ValueError(
                f"migration_topology must be one of {TOPOLOGIES}, got {migration_topology!r}")
        self.migration_topology = migration_topology

    @property
    def migrates(self) -> bool:
        """Whether migration can ever happen (more than one island and at least one migrant)."""
        return self.num_islands > 1 and self.num_migrants > 0

    def hparam_value(self, name: str) -> Any:
        """``batch_size`` is stored per island (the constructor argument), as are the tournament
        size and the mutation probability of the per-island strategy."""
        if name == "batch_size":
            return self.island_batch_size
        if name in ("tournament_size", "mutate_prob"):
            return getattr(self.island, name)
        return getattr(self, name)

    def metrics(self, state: IslandState) -> dict[str, jax.Array]:
        """Statistics over all islands' members, ``island_max_fitness_min`` (the weakest
        island's best current member) and the number of migrations so far."""
        out = RegularizedEvolution._metrics_fn(state.fitness, state.birth)
        island_max = jnp.max(state.islands.fitness, axis=1)
        out["island_max_fitness_min"] = jnp.min(island_max)
        out["migrations"] = state.migrations
        return out

    def _init(self, key: jax.Array) -> IslandState:
        """``num_islands`` empty populations; ``key`` fixes the genome structure and seeds the
        (unused until the first ``ask``) migration key."""
        one = self.island._init(key)
        k = self.num_islands
        islands = jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (k,) + x.shape), one)
        return IslandState(
            islands=islands,
            # Overwritten by every ask; a fixed derivation keeps init a pure function of `key`.
            migration_key=jax.random.fold_in(key, 0x15_1A_4D),
            migrations=jnp.zeros((), jnp.int32),
            count=jnp.zeros((), jnp.int32),
            best_genome=one.best_genome,
            best_fitness=jnp.array(-jnp.inf, jnp.float32),
        )

    def _ask(self, key: jax.Array, state: IslandState) -> tuple[PyTree, IslandState]:
        """``num_islands * batch_size`` genomes, island-major; stores the next migration key."""
        if self.num_islands == 1:
            # The key goes to the single island untouched: RegularizedEvolution's trajectory.
            genomes, _ = self.island._ask(key, base.tree_index(state.islands, 0))
            return genomes, state
        keys = jax.random.split(key, self.num_islands + 1)
        islands, axes = self._shared_count(state.islands)
        genomes, _ = jax.vmap(self.island._ask, in_axes=(0, axes), out_axes=(0, axes))(
            keys[:-1], islands)
        genomes = jax.tree_util.tree_map(_flatten_islands, genomes)
        return genomes, state.replace(migration_key=keys[-1])

    def _tell(self, genomes: PyTree, fitness: jax.Array, state: IslandState) -> IslandState:
        """Routes each island's ``B`` results back to it, then migrates if it is due."""
        base.check_fitness_shape(fitness, self.batch_size)
        k, b = self.num_islands, self.island_batch_size
        per_island = jax.tree_util.tree_map(
            lambda x: jnp.reshape(x, (k, b) + x.shape[1:]), genomes)
        islands, axes = self._shared_count(state.islands)
        before = islands.count
        islands = jax.vmap(self.island._tell, in_axes=(0, 0, axes), out_axes=axes)(
            per_island, jnp.reshape(fitness, (k, b)), islands)
        islands = islands.replace(count=jnp.broadcast_to(islands.count, (k,)))
        migrations = state.migrations
        if self.migrates:
            after = before + b
            due = ((after // self.migrate_every > before // self.migrate_every)
                   & (after >= self.population_size))
            islands = jax.lax.cond(
                due, lambda s: self._migrate(state.migration_key, s), lambda s: s, islands)
            migrations = migrations + due.astype(jnp.int32)
        # Best over islands: the first island holding the highest best-ever fitness (each island's
        # best only changes when it is told a genome, never by migration).
        j = jnp.argmax(islands.best_fitness)
        best_genome = base.tree_index(islands.best_genome, j)
        return state.replace(
            islands=islands,
            migrations=migrations,
            count=state.count + self.batch_size,
            best_genome=best_genome,
            best_fitness=islands.best_fitness[j],
        )

    @staticmethod
    def _shared_count(islands: EvolutionState) -> tuple[EvolutionState, EvolutionState]:
        """The islands with ONE count (they advance in lockstep) and the matching vmap axes.

        An unbatched count keeps RegularizedEvolution's ``lax.cond`` (initial samples vs
        tournament children) a real conditional under vmap instead of a select that traces,
        compiles and runs both branches.
        """
        axes = jax.tree_util.tree_map(lambda _: 0, islands).replace(count=None)
        return islands.replace(count=islands.count[0]), axes

    def _migrate(self, key: jax.Array, islands: EvolutionState) -> EvolutionState:
        """One migration: every island sends ``m`` random members and overwrites ``m`` random
        members with immigrants (see the module docstring)."""
        plan = self._migration_plan(key)
        emigrants = take_emigrants(islands, plan.send)
        return receive_immigrants(islands, plan, emigrants)

    def _migration_plan(self, key: jax.Array) -> "MigrationPlan":
        """Which members every island sends, which slots it overwrites and where each immigrant
        comes from: a function of ``key`` alone, so processes that hold different islands draw
        the same plan (docs/scaling.md, "Islands per process")."""
        k, p, m = self.num_islands, self.population_size, self.num_migrants
        pool = (k - 1) * m
        # ONE draw of raw bits for everything (each threefry call site costs compile time); the
        # first m of an argsort of uniform bits are m distinct uniformly chosen indices (ties,
        # probability < n**2 / 2**33, only make the stable sort prefer lower indices).
        bits = jax.random.bits(key, (k, 2 * p + pool), jnp.uint32)
        send = jnp.argsort(bits[:, :p], axis=1)[:, :m].astype(jnp.int32)  # [K, m]
        recv = jnp.argsort(bits[:, p:2 * p], axis=1)[:, :m].astype(jnp.int32)  # [K, m]
        island_ids = jnp.arange(k)
        if self.migration_topology == "ring":
            src_island = jnp.broadcast_to(((island_ids - 1) % k)[:, None], (k, m))
            src_member = jnp.broadcast_to(jnp.arange(m)[None, :], (k, m))
        else:  # "random": m of the (K - 1) * m emigrants of the other islands, no replacement
            flat = jnp.argsort(bits[:, 2 * p:], axis=1)[:, :m].astype(jnp.int32)  # [K, m]
            src_island = (island_ids[:, None] + 1 + flat // m) % k  # skips the island itself
            src_member = flat % m
        return MigrationPlan(send=send, recv=recv, src_island=src_island, src_member=src_member)


@flax.struct.dataclass
class MigrationPlan:
    """One migration's indices, each int32 [K, m] (row ``i``: island ``i``): ``send`` (members
    island ``i`` sends), ``recv`` (slots it overwrites), ``src_island`` / ``src_member`` (the
    emigrant each of those slots receives)."""

    send: jax.Array
    recv: jax.Array
    src_island: jax.Array
    src_member: jax.Array

    def rows(self, start: int, stop: int) -> "MigrationPlan":
        """The plan of islands ``start .. stop - 1`` (``send`` and ``recv``, the sources kept)."""
        return jax.tree_util.tree_map(lambda x: x[start:stop], self)


def take_emigrants(islands: EvolutionState, send: jax.Array) -> tuple[PyTree, jax.Array, jax.Array]:
    """``(population, fitness, birth)`` of the members in ``send`` ([k, m] for the k islands of
    ``islands``), each leaf [k, m, ...]; emigrants keep their fitness and birth."""
    gather = jax.vmap(lambda x, idx: x[idx])
    members = (islands.population, islands.fitness, islands.birth)
    return jax.tree_util.tree_map(lambda x: gather(x, send), members)


def receive_immigrants(islands: EvolutionState, plan: MigrationPlan,
                       emigrants: tuple[PyTree, jax.Array, jax.Array]) -> EvolutionState:
    """``islands`` (the k islands whose rows ``plan`` holds) after receiving their immigrants
    from ``emigrants``, the emigrants of ALL islands (leaves [K, m, ...])."""
    members = (islands.population, islands.fitness, islands.birth)

    def receive(pop_leaf, emi_leaf):
        immigrants = emi_leaf[plan.src_island, plan.src_member]  # [k, m, ...]
        return jax.vmap(lambda x, idx, v: x.at[idx].set(v))(pop_leaf, plan.recv, immigrants)

    population, fitness, birth = jax.tree_util.tree_map(receive, members, emigrants)
    return islands.replace(population=population, fitness=fitness, birth=birth)
