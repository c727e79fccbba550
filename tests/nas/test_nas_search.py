"""NAS search end to end on digits through the launcher code: outputs, resume, ENAS mode.

The default tests use a tiny supernet (F=4, B=2, 2 ops, one normal + one reduction cell, a few
SGD steps per child); bigger searches are marked slow.
"""
import json
import os

import jax
import numpy as np
import pytest

from azjax import nas
from experiments.nas_search import search as launcher
from experiments.nas_search.configs import digits_enas, digits_smoke


def tiny(config, **overrides):
    c = config.get_config()
    c.num_blocks = 2
    c.ops = "tiny"
    c.batch_children = 2
    c.max_children = 4
    c.controller_hidden = 16
    c.child.filters = 4
    c.child.num_steps = 3
    c.child.batch_size = 16
    c.child.eval_batch_size = 150
    c.num_valid = 150
    c.shared_steps_per_call = 2
    c.population_size = 2
    c.tournament_size = 2
    c.checkpoint_every_seconds = 0.0
    for k, v in overrides.items():
        setattr(c, k, v)
    return c


@pytest.fixture(autouse=True)
def tiny_ops(monkeypatch):
    monkeypatch.setitem(launcher.OP_SETS, "tiny", ("max_pool_3x3", "sep_conv_3x3"))


@pytest.mark.slow
def test_digits_smoke_writes_outputs_and_resumes(tmp_path):
    config = tiny(digits_smoke)
    full = launcher.run(config, str(tmp_path / "full"))
    assert full["evaluations"] == 4 and full["stop_reason"] == "max_evaluations"
    assert 0.0 < full["best_reward"] <= 1.0

    out = tmp_path / "full"
    genotype = nas.load_genotype(out / "best_genotype.json")  # no search code needed
    # Retrainable by the NASNet launcher: builds a static NASNet (shapes only here).
    model = nas.make_model(genotype, nas.TrainConfig(num_cells=1, filters=4))
    assert nas.count_params(nas.init_shapes(model, (8, 8, 1))["params"]) > 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert board[0]["reward"] == pytest.approx(full["best_reward"])
    assert [r["reward"] for r in board] == sorted([r["reward"] for r in board], reverse=True)
    assert nas.Genotype.from_dict(board[0]["genotype"]) == genotype
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "policy_entropy" in json.loads(lines[-1])
    try:
        import matplotlib  # noqa: F401
        assert (out / "best_normal.png").stat().st_size > 1000
        assert (out / "best_reduce.png").stat().st_size > 1000
    except ImportError:
        pass

    # Interrupt after the first batch, then resume: same result as the uninterrupted run.
    def interrupt(m):
        if m["iteration"] == 1:
            raise KeyboardInterrupt

    resumed_dir = str(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        launcher.run(config, resumed_dir, log_fn=interrupt)
    resumed = launcher.run(config, resumed_dir)
    assert resumed["resumed_from"] == 1
    assert resumed["best_reward"] == full["best_reward"]
    assert resumed["best_genotype"] == full["best_genotype"]
    board2 = json.loads((tmp_path / "resumed" / "leaderboard.json").read_text())
    assert [r["genome"] for r in board2] == [r["genome"] for r in board]


@pytest.mark.slow
def test_enas_mode_with_evolution(tmp_path):
    for strategy in ("evolution",):
        config = tiny(digits_enas, strategy=strategy)
        summary = launcher.run(config, str(tmp_path / strategy))
        assert summary["evaluations"] == 4
        assert summary["counters"]["shared_train_steps"] == 2 * 2
        assert os.path.exists(tmp_path / strategy / "best_genotype.json")


@pytest.mark.slow
def test_shared_weights_persist_across_calls():
    space = nas.CellSpace(ops=("max_pool_3x3", "sep_conv_3x3"), combiners=("add",),
                          num_blocks=2)
    images = np.random.default_rng(0).random((40, 8, 8, 1), np.float32)
    labels = np.arange(40) % 10
    data = {"train_images": images, "train_labels": labels, "valid_images": images[:20],
            "valid_labels": labels[:20]}
    cfg = nas.TrainConfig(num_cells=1, filters=4, batch_size=8, num_steps=1, pad_crop=0,
                          flip=False, eval_batch_size=20)
    trainer = nas.SharedWeightsTrainer(space, cfg, data, steps_per_call=2)
    before = jax.tree_util.tree_map(np.asarray, trainer.get_state()["params"])
    genomes = jax.vmap(space.sample)(jax.random.split(jax.random.key(0), 3))
    fitness, info = trainer(jax.random.key(1), genomes)
    assert fitness.shape == (3,) and info["shared_train_steps"] == 2
    after = trainer.get_state()["params"]
    changed = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), before, after)
    assert any(jax.tree_util.tree_leaves(changed))
    trainer.set_state(jax.tree_util.tree_map(np.asarray, trainer.get_state()))


@pytest.mark.slow
def test_digits_smoke_full_config(tmp_path):
    """The shipped digits_smoke config (minutes on 2 CPU cores)."""
    summary = launcher.run(digits_smoke.get_config(), str(tmp_path))
    assert summary["evaluations"] == 12
    assert summary["best_reward"] > 0.3
    nas.load_genotype(tmp_path / "best_genotype.json")


@pytest.mark.slow
def test_static_backend_matches_interface(tmp_path):
    """NASNet-style children through train.py's static network (one compile per child)."""
    config = tiny(digits_smoke, child_backend="static", max_children=2)
    summary = launcher.run(config, str(tmp_path))
    assert summary["evaluations"] == 2
