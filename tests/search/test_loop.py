"""search.run: stop rules, metrics, checkpoints, exact resumption, argument checks."""
import time

import chex
import jax
import numpy as np
import pytest

from azjax import search
from tests.search import toy

SPACE, EVO = toy.SPACE, toy.EVO


class CachingEvaluator:
    """OneMax with a host-side fitness cache (like the FEC cache), checkpointed as extra state.

    Logs every call so trajectories can be compared; can raise at a chosen call.
    """

    def __init__(self, fail_at=None, exc=KeyboardInterrupt):
        self.cache = {}
        self.log = []
        self.calls = 0
        self.fail_at, self.exc = fail_at, exc

    def __call__(self, key, genomes):
        if self.calls == self.fail_at:
            raise self.exc("simulated interruption")
        self.calls += 1
        genomes = np.asarray(genomes)
        fitness, hits = [], 0
        for g in genomes:
            k = g.tobytes()
            hits += k in self.cache
            fitness.append(self.cache.setdefault(k, float(g.sum())))
        self.log.append((np.asarray(jax.random.key_data(key)), genomes))
        return np.asarray(fitness, np.float32), {"cache_hits": hits, "train_steps": 10 * len(g)}

    def get_state(self):
        keys = list(self.cache)
        return {"genomes": np.frombuffer(b"".join(keys), np.int32).reshape(len(keys), 16),
                "fitness": np.asarray([self.cache[k] for k in keys], np.float64)}

    def set_state(self, state):
        self.cache = {g.tobytes(): float(f) for g, f in
                      zip(np.asarray(state["genomes"], np.int32), np.asarray(state["fitness"]))}


def test_stop_rules_and_metrics(key):
    history = search.History()
    r = search.run(SPACE, EVO, toy.onemax_evaluator, key, max_evaluations=40,
                   callbacks=[history], metrics_every=3)
    assert (r.stop_reason, r.iterations, r.evaluations) == ("max_evaluations", 10, 40)
    assert r.counters == {"train_steps": 400.0}
    assert history.column("iteration").tolist() == [3, 6, 9, 10]
    last = history.records[-1]
    for name in ("evaluations", "evals_per_second", "best_fitness", "mean_fitness",
                 "batch_mean_fitness", "population_mean_fitness", "train_steps"):
        assert name in last, name
    assert last["best_fitness"] == r.best_fitness == float(toy.onemax(r.best_genome[None])[0])
    assert last["train_steps"] == 400.0 and last["evaluations"] == 40

    r = search.run(SPACE, EVO, toy.onemax_evaluator, key, max_counter=("train_steps", 200))
    assert (r.stop_reason, r.evaluations) == ("max_counter:train_steps", 20)

    r = search.run(SPACE, EVO, toy.onemax_evaluator, key, sufficient_fitness=15.5,
                   max_evaluations=20000)
    assert r.stop_reason == "sufficient_fitness" and r.best_fitness == 16.0
    assert r.evaluations < 20000

    def slow(k, g):
        time.sleep(0.02)
        return toy.onemax_evaluator(k, g)

    t0 = time.monotonic()
    r = search.run(SPACE, EVO, slow, key, max_seconds=0.3)
    assert r.stop_reason == "max_seconds" and 0.3 <= time.monotonic() - t0 < 30
    assert r.elapsed_seconds >= 0.3


def test_bad_arguments_fail_before_anything_runs(key, tmp_path):
    class Untouchable:
        """A strategy that fails if the loop ever calls it."""

        batch_size = 1

        def init(self, key):
            raise AssertionError("called")

        ask = tell = init

    s, ev = Untouchable(), toy.onemax_evaluator
    cases = [
        (dict(), "stop rule"),
        (dict(max_evaluations=0), "max_evaluations"),
        (dict(max_seconds=-1), "max_seconds"),
        (dict(max_counter=("train_steps",)), "max_counter"),
        (dict(max_counter={"train_steps": 0}), "max_counter"),
        (dict(max_evaluations=5, keep_checkpoints=0), "keep_checkpoints"),
        (dict(max_evaluations=5, checkpoint_every_seconds=-1), "checkpoint_every_seconds"),
        (dict(max_evaluations=5, metrics_every=0), "metrics_every"),
        (dict(max_evaluations=5, config={"f": object()}), "config"),
        (dict(max_evaluations=5, callbacks=[1]), "callbacks"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValueError, match=field):
            search.run(SPACE, s, ev, key, workdir=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="key"):
        search.run(SPACE, s, ev, jax.random.PRNGKey(0), max_evaluations=5)
    with pytest.raises(ValueError, match="strategy"):
        search.run(SPACE, object(), ev, key, max_evaluations=5)
    assert not any(tmp_path.iterdir()), "nothing was written"


def test_interrupt_then_resume_equals_uninterrupted(key, tmp_path):
    # A fresh strategy whose traced ask/tell may trace once only: no retrace across iterations,
    # across runs, or after restoring a checkpoint.
    evo = search.RegularizedEvolution(SPACE, population_size=8, tournament_size=3, batch_size=4)
    evo._ask = chex.assert_max_traces(evo._ask, n=1)
    evo._tell = chex.assert_max_traces(evo._tell, n=1)
    kwargs = dict(max_evaluations=80, config={"task": "onemax", "bits": 16})

    full_eval = CachingEvaluator()
    full = search.run(SPACE, evo, full_eval, key, workdir=tmp_path / "full",
                      extra_state=full_eval, **kwargs)
    assert full.iterations == 20 and full.counters["cache_hits"] > 0

    workdir = tmp_path / "resumed"
    first = CachingEvaluator(fail_at=6)
    with pytest.raises(KeyboardInterrupt):
        search.run(SPACE, evo, first, key, workdir=workdir, extra_state=first, **kwargs)
    assert search.latest_step(workdir) == 6, "Ctrl-C saved the last completed iteration"

    second = CachingEvaluator()
    history = search.History()
    resumed = search.run(SPACE, evo, second, key, workdir=workdir, extra_state=second,
                         checkpoint_every_seconds=0, keep_checkpoints=2, callbacks=[history],
                         **kwargs)
    assert resumed.resumed_from == 6 and history.records[0]["iteration"] == 7
    chex.assert_trees_all_equal(resumed.state, full.state)  # bitwise
    assert resumed.counters == full.counters  # includes cache hits: the cache was restored
    assert (resumed.iterations, resumed.evaluations) == (full.iterations, full.evaluations)
    for (k1, g1), (k2, g2) in zip(second.log, full_eval.log[6:], strict=True):
        np.testing.assert_array_equal(k1, k2)
        np.testing.assert_array_equal(g1, g2)
    assert sorted(p.name for p in workdir.iterdir()) == [
        "ckpt_0000000019.npz", "ckpt_0000000020.npz"]

    # Nothing left to do: a rerun returns the same result without evaluating.
    third = CachingEvaluator(fail_at=0, exc=AssertionError)
    again = search.run(SPACE, evo, third, key, workdir=workdir, extra_state=third, **kwargs)
    chex.assert_trees_all_equal(again.state, full.state)


def test_crash_resumes_from_periodic_checkpoint(key, tmp_path):
    rs = search.RandomSearch(SPACE, batch_size=4)
    rs._ask = chex.assert_max_traces(rs._ask, n=1)
    rs._tell = chex.assert_max_traces(rs._tell, n=1)
    full = search.run(SPACE, rs, CachingEvaluator(), key, max_evaluations=40)
    crashing = CachingEvaluator(fail_at=5, exc=RuntimeError)
    with pytest.raises(RuntimeError):
        search.run(SPACE, rs, crashing, key, max_evaluations=40, workdir=tmp_path,
                   checkpoint_every_seconds=0)
    assert search.latest_step(tmp_path) == 5
    resumed = search.run(SPACE, rs, CachingEvaluator(), key, max_evaluations=40,
                         workdir=tmp_path)
    assert resumed.resumed_from == 5
    chex.assert_trees_all_equal(resumed.state, full.state)
    assert resumed.counters["train_steps"] == full.counters["train_steps"]


def test_corrupt_or_mismatched_checkpoint_is_an_error_and_untouched(key, tmp_path):
    config = {"bits": 16}
    search.run(SPACE, EVO, toy.onemax_evaluator, key, max_evaluations=8, workdir=tmp_path,
               checkpoint_every_seconds=0, config=config)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    newest = search.checkpoint.checkpoint_path(tmp_path, search.latest_step(tmp_path))

    def rerun(**overrides):
        kwargs = dict(space=SPACE, strategy=EVO, key=key, config=config)
        kwargs.update(overrides)
        return search.run(kwargs.pop("space"), kwargs.pop("strategy"), toy.onemax_evaluator,
                          kwargs.pop("key"), max_evaluations=16, workdir=tmp_path, **kwargs)

    with pytest.raises(ValueError, match=f"{newest}.*config"):
        rerun(config={"bits": 17})
    with pytest.raises(ValueError, match=f"{newest}.*strategy"):
        rerun(strategy=search.RegularizedEvolution(SPACE, 8, 2, batch_size=4))
    with pytest.raises(ValueError, match=f"{newest}.*key"):
        rerun(key=jax.random.key(1))
    other_space = search.IntVectorSpace((2,) * 17)
    with pytest.raises(ValueError, match=f"{newest}.*shape"):
        rerun(space=other_space,
              strategy=search.RegularizedEvolution(other_space, 8, 3, batch_size=4))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files

    # Every file corrupt: an error, and every file is kept for inspection.
    for name, data in files.items():
        damaged = bytearray(data)
        damaged[len(damaged) // 4] ^= 0xFF
        (tmp_path / name).write_bytes(bytes(damaged))
    with pytest.raises(search.CheckpointError, match="every checkpoint file"):
        rerun()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files), "all left in place"


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(key, tmp_path, caplog):
    full = search.run(SPACE, EVO, toy.onemax_evaluator, key, max_evaluations=24)
    search.run(SPACE, EVO, toy.onemax_evaluator, key, max_evaluations=12, workdir=tmp_path,
               checkpoint_every_seconds=0)
    assert search.checkpoint.all_steps(tmp_path) == [1, 2, 3]
    newest = search.checkpoint.checkpoint_path(tmp_path, 3)
    damaged = bytearray(newest.read_bytes())
    damaged[len(damaged) // 4] ^= 0xFF
    newest.write_bytes(bytes(damaged))
    caplog.set_level("INFO", logger="azjax.search")
    starts = []
    resumed = search.run(SPACE, EVO, toy.onemax_evaluator, key, max_evaluations=24,
                         workdir=tmp_path, checkpoint_every_seconds=0, on_start=starts.append)
    assert resumed.resumed_from == 2
    assert starts == [{"iteration": 2, "evaluations": 8, "resumed_from": 2,
                       "checkpoint": search.checkpoint.checkpoint_path(tmp_path, 2)}]
    chex.assert_trees_all_equal(resumed.state, full.state)
    aside = newest.with_name(newest.name + ".corrupt")
    assert aside.read_bytes() == bytes(damaged), "the corrupt file is kept, moved aside"
    messages = [r.getMessage() for r in caplog.records if r.name == "azjax.search"]
    assert any("corrupt" in m and str(aside) in m for m in messages), messages
    assert any(m.startswith("resuming from checkpoint") and "ckpt_0000000002.npz" in m
               for m in messages), messages


def test_log_progress_and_list_fitness(key, caplog):
    def list_evaluator(k, genomes):  # plain Python lists are accepted as fitness
        return [float(x) for x in np.asarray(genomes).sum(-1)], {"note": "not a counter"}

    caplog.set_level("INFO", logger="azjax.search")
    r = search.run(SPACE, EVO, list_evaluator, key, max_evaluations=12,
                   callbacks=[search.LogProgress(every_seconds=0, extra_keys=("cache_hits",))])
    assert r.evaluations == 12 and r.counters == {}
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "azjax.search"]
    assert len(lines) == 3 and lines[-1].startswith("iter 3 | evals 12")
