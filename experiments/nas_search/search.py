"""NAS search for the launcher: builds (space, strategy, evaluator) from a config, runs
``search.run`` with checkpoints, and writes the outputs (the library stays flag-free).

Outputs in the workdir:
  best_genotype.json   the best cell pair (retrain: experiments/nasnet/main.py --genotype_json=...)
  leaderboard.json     the top distinct genotypes with their search rewards
  best_normal.png, best_reduce.png   drawings of the best cells (needs matplotlib; optional)
  metrics.jsonl        one line of search metrics per iteration
  summary.json         run summary (best reward, evaluations, time, stop reason)
  checkpoints/         the search state (strategy, shared weights, leaderboard); re-running
                       with the same workdir resumes.

Several devices: ``config.num_devices`` (0: all local devices). Multi-host: every process runs
the same strategy; in NASNet mode the children of each batch are split over all processes
(``ChildTrainer(global_mesh=True)``) and every process sees all rewards, so every ``tell`` is the
same; ENAS mode is repeated on every process. Process 0 alone writes these files (and the
checkpoints, in ``search.run``). docs/scaling.md, section 4.

Search rewards are proxy accuracies (small children, few epochs, or shared weights): they rank
cells; they are not the accuracy of the retrained cell.
"""
from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np

from azjax import nas, search, viz
from azjax.nas.space import AMOEBA_OPS, ENAS_OPS, CellSpace
from azjax.search import sharding
from azjax.search.controller import Controller
from experiments import common
from experiments.nasnet.train import load_data

STRATEGIES = ("ppo", "reinforce", "evolution", "random")
MODES = ("nasnet", "enas")
OP_SETS = {"all": nas.OP_NAMES, "enas": ENAS_OPS, "amoeba": AMOEBA_OPS}


def make_space(config: Any) -> CellSpace:
    if config.ops not in OP_SETS:
        raise ValueError(f"ops: expected one of {sorted(OP_SETS)}, got {config.ops!r}")
    return CellSpace(ops=OP_SETS[config.ops], combiners=tuple(config.combiners),
                     num_blocks=config.num_blocks)


def make_strategy(config: Any, space: CellSpace):
    s = config.strategy
    if s in ("ppo", "reinforce"):
        return Controller(space, s, batch_size=config.batch_children,
                          learning_rate=config.controller_lr, hidden=config.controller_hidden,
                          entropy_weight=config.entropy_weight,
                          ppo_epochs=config.ppo_epochs)
    if s == "evolution":
        return search.RegularizedEvolution(space, config.population_size,
                                           config.tournament_size, config.mutate_prob,
                                           batch_size=config.batch_children)
    if s == "random":
        return search.RandomSearch(space, batch_size=config.batch_children)
    raise ValueError(f"strategy: expected one of {STRATEGIES}, got {s!r}")


def child_config(config: Any) -> nas.TrainConfig:
    """The child's TrainConfig; ``config.num_devices`` (0: all local devices) rides along."""
    return nas.TrainConfig.from_config(
        config.child, num_devices=sharding.resolve_num_devices(config.get("num_devices", 0)))


def make_evaluator(config: Any, space: CellSpace, data: dict):
    """``(evaluator, extra_state)`` of ``config.mode``; NASNet mode splits each batch of children
    over all processes of a multi-process run."""
    if config.mode == "nasnet":
        return nas.ChildTrainer(space, child_config(config), data,
                                backend=config.child_backend, global_mesh=True), None
    if config.mode == "enas":
        calls = -(-config.max_children // config.batch_children)
        trainer = nas.SharedWeightsTrainer(
            space, child_config(config), data, steps_per_call=config.shared_steps_per_call,
            total_steps=calls * config.shared_steps_per_call, seed=config.seed)
        return trainer, trainer
    raise ValueError(f"mode: expected one of {MODES}, got {config.mode!r}")


def draw_cells(genotype: nas.Genotype, workdir: str) -> bool:
    """best_normal.png and best_reduce.png (:func:`azjax.viz.draw_cell`); False when matplotlib
    is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    for which, name in (("normal", "best_normal.png"), ("reduction", "best_reduce.png")):
        ax = viz.draw_cell(genotype, which)
        ax.set_title(f"best {which} cell")
        ax.figure.savefig(os.path.join(workdir, name), dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
    return True


def _checked_config(config: Any) -> dict:
    """The config stored in (and checked against) checkpoints. ``num_devices`` is left out:
    rewards do not depend on the device count, so a search may resume on another machine."""
    d = config.to_dict()
    d.pop("num_devices", None)
    return d


def run(config: Any, workdir: str, log_fn=None) -> dict:
    """Run (or resume) the search of ``config`` in ``workdir``; write the outputs; return the
    summary dict."""
    if config.strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, got {config.strategy!r}")
    if isinstance(config.max_children, bool) or not isinstance(config.max_children, int) \
            or config.max_children < 1:
        raise ValueError(f"max_children: must be an integer >= 1, got {config.max_children!r}")
    if config.mode == "nasnet" and config.max_seconds > 0 and jax.process_count() > 1:
        # Each process reads its own clock: one stopping while another asks for the next batch
        # would leave that one waiting in the batch's collectives (docs/scaling.md, section 4).
        raise ValueError("max_seconds: not supported with several processes in NASNet mode; "
                         "bound the search by max_children")
    writer = common.is_main_process()  # multi-host: one writer, every process computes
    os.makedirs(workdir, exist_ok=True)
    t0 = time.time()
    space = make_space(config)
    strategy = make_strategy(config, space)
    data = load_data(config)
    evaluator, shared = make_evaluator(config, space, data)
    board = nas.Leaderboard(space.genome_length)
    rows = search.MetricsWriter(os.path.join(workdir, "metrics.jsonl"), enabled=writer)
    callbacks = [rows] if writer else []
    if log_fn is not None:
        callbacks.append(log_fn)
    result = search.run(
        space, strategy, board.wrap(evaluator), jax.random.key(config.seed),
        max_evaluations=config.max_children,
        max_seconds=config.max_seconds if config.max_seconds > 0 else None,
        callbacks=callbacks, workdir=os.path.join(workdir, "checkpoints"),
        checkpoint_every_seconds=config.checkpoint_every_seconds, config=_checked_config(config),
        extra_state=search.CombinedState({"leaderboard": board, "shared": shared}),
        on_start=rows.start)
    best = np.asarray(result.best_genome)
    genotype = space.to_genotype(best)
    summary = {
        "best_reward": result.best_fitness,
        "best_genotype": str(genotype),
        "evaluations": result.evaluations,
        "iterations": result.iterations,
        "stop_reason": result.stop_reason,
        "resumed_from": result.resumed_from,
        "search_seconds": result.elapsed_seconds,
        "session_seconds": time.time() - t0,
        "counters": result.counters,
        # Children this process trained (NASNet mode): its share of the run's when split.
        "trained_here": getattr(evaluator, "trained_here", None),
        "drawings": False,
        "strategy": config.strategy,
        "mode": config.mode,
    }
    if not writer:
        return summary
    nas.save_genotype(genotype, os.path.join(workdir, "best_genotype.json"))
    top = [{"rank": r + 1, "reward": f, "genome": g.tolist(),
            "genotype": space.to_genotype(g).to_dict(), "text": str(space.to_genotype(g))}
           for r, (g, f) in enumerate(board.top(config.leaderboard_size))]
    common.write_json(os.path.join(workdir, "leaderboard.json"), top)
    summary["drawings"] = draw_cells(genotype, workdir)
    summary["session_seconds"] = time.time() - t0
    common.write_json(os.path.join(workdir, "summary.json"), summary)
    return summary
