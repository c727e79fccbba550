"""azjax.search: the shared search harness. It knows genomes (pytrees of arrays), never programs or
convnets; AutoML-Zero and NAS plug their spaces and evaluators into it.

* :mod:`~azjax.search.space`: the ``SearchSpace`` protocol, ``GenomeSpec``, toy spaces.
* :mod:`~azjax.search.base`: the :class:`Strategy` base class (evosax-style: it owns the pure,
  jitted ``init / ask / tell`` over explicit state, ``hparams`` and ``__repr__``; subclasses write
  ``_init / _ask / _tell``).
* :mod:`~azjax.search.evolution`, :mod:`~azjax.search.islands`,
  :mod:`~azjax.search.random_search`, :mod:`~azjax.search.controller`: the strategies.
* :mod:`~azjax.search.loop`: ``run(space, strategy, evaluator, key, ...)`` with stop rules,
  metrics callbacks and resumable checkpoints (:mod:`~azjax.search.checkpoint`); user state
  checkpointed with it (:mod:`~azjax.search.extra_state`); a JSONL metrics callback
  (:mod:`~azjax.search.metrics_writer`).
* :mod:`~azjax.search.sharding`: the device-count rule, meshes and the population shard_map.
* :mod:`~azjax.search.process_islands`: islands per process in a multi-process run
  (:class:`ProcessIslands` and its ``run``; docs/scaling.md).
"""
from azjax.search import checkpoint
from azjax.search import process_islands
from azjax.search import sharding
from azjax.search.base import Strategy, sanitize_fitness, tree_index, tree_stack, tree_where
from azjax.search.checkpoint import (
    CheckpointError,
    latest_step,
    restore_checkpoint,
    save_checkpoint,
)
from azjax.search.evolution import EvolutionState, RegularizedEvolution
from azjax.search.islands import IslandEvolution, IslandState
from azjax.search.extra_state import CombinedState, ExtraState
from azjax.search.loop import History, LogProgress, RunResult, run
from azjax.search.metrics_writer import MetricsWriter
from azjax.search.process_islands import ProcessIslands, ProcessIslandState
from azjax.search.random_search import RandomSearch, RandomSearchState
from azjax.search.space import (
    Genome,
    GenomeSpec,
    IntVectorSpace,
    MixedGenome,
    MixedVectorSpace,
    SearchSpace,
)

__all__ = [
    "CheckpointError",
    "CombinedState",
    "EvolutionState",
    "ExtraState",
    "Genome",
    "GenomeSpec",
    "History",
    "IntVectorSpace",
    "IslandEvolution",
    "IslandState",
    "LogProgress",
    "MetricsWriter",
    "MixedGenome",
    "MixedVectorSpace",
    "ProcessIslandState",
    "ProcessIslands",
    "RandomSearch",
    "RandomSearchState",
    "RegularizedEvolution",
    "RunResult",
    "SearchSpace",
    "Strategy",
    "checkpoint",
    "process_islands",
    "sharding",
    "latest_step",
    "restore_checkpoint",
    "run",
    "sanitize_fitness",
    "save_checkpoint",
    "tree_index",
    "tree_stack",
    "tree_where",
]

# RNN controller strategy.
from azjax.search.controller import Controller, ControllerState, PolicyNetwork  # noqa: E402

__all__ += ["Controller", "ControllerState", "PolicyNetwork"]
