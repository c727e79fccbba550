"""Child training: optimizer mask, augmentation, compile-once steps, overfitting, checkpoints,
train_and_evaluate with exact resume. One small genotype keeps compiles short on CPU."""
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import nas

# A small two-block genotype that still exercises pools, sep conv, identity projection, a concat
# combiner and the factorized reduction of the cell output.
TINY = nas.Genotype(
    normal=[[0, 1, nas.OP_INDEX["sep_conv_3x3"], nas.OP_INDEX["identity"], 0],
            [2, 1, nas.OP_INDEX["avg_pool_3x3"], nas.OP_INDEX["conv_1x1"], 0]],
    reduce=[[0, 1, nas.OP_INDEX["max_pool_3x3"], nas.OP_INDEX["sep_conv_3x3"], 0],
            [2, 0, nas.OP_INDEX["identity"], nas.OP_INDEX["avg_pool_3x3"], 1]],
    normal_concat=(1, 2, 3), reduce_concat=(2, 3))
CONFIG = nas.TrainConfig(num_cells=3, filters=4, batch_size=8, num_steps=30, learning_rate=0.05,
                         weight_decay=1e-4, pad_crop=0, flip=False, drop_path_keep_prob=0.7,
                         eval_batch_size=16, log_every=2)
SHAPE = (8, 8, 1)


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *SHAPE)).astype(np.float32), rng.integers(0, 10, n).astype(
        np.int32)


@pytest.fixture(scope="module")
def setup():
    model = nas.make_model(TINY, CONFIG)
    opt = nas.make_optimizer(CONFIG, CONFIG.num_steps)
    state = nas.create_train_state(model, opt, jax.random.key(0), SHAPE)
    # The test owns the jit so chex can count traces of exactly this step function.
    # Donating like the library's step keeps the HLO identical, so train_and_evaluate below
    # hits the persistent compilation cache.
    step = jax.jit(chex.assert_max_traces(nas.train_step_fn(model, opt, CONFIG, CONFIG.num_steps),
                                          n=1), donate_argnums=(0,))
    return model, opt, state, step


def test_weight_decay_mask_kernels_only(setup):
    _, _, state, _ = setup
    flat = jax.tree_util.tree_leaves_with_path(nas.weight_decay_mask(state.params))
    on = {jax.tree_util.keystr(p) for p, v in flat if v}
    off = {jax.tree_util.keystr(p) for p, v in flat if not v}
    assert on and all("kernel" in p for p in on)
    assert any("scale" in p for p in off) and any("bias" in p for p in off)
    assert not any("kernel" in p for p in off)


def test_augmentation():
    x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1) + 1
    key = jax.random.key(5)
    crop = nas.random_pad_crop(key, x, 2)
    chex.assert_shape(crop, x.shape)
    flips = [nas.random_flip(jax.random.key(i), x) for i in range(8)]
    assert any(bool(jnp.all(f[0] == x[0, :, ::-1])) for f in flips)
    assert any(bool(jnp.all(f[0] == x[0])) for f in flips)
    cut = nas.cutout(key, jnp.ones((3, 8, 8, 2)), 2)
    zeros = np.asarray(jnp.sum(cut[..., 0] == 0, axis=(1, 2)))
    assert np.all((zeros >= 1) & (zeros <= 4))
    chex.assert_trees_all_equal(nas.cutout(key, x, 0), x)


def test_drop_path_identity_at_eval():
    cell = nas.Cell(((0, 1, nas.OP_INDEX["sep_conv_3x3"], nas.OP_INDEX["avg_pool_3x3"], 0),),
                    (2,), 4, use_drop_path=True)
    x = jax.random.normal(jax.random.key(0), (4, 4, 4, 4))
    v = cell.init(jax.random.key(1), x, None)
    a = cell.apply(v, x, None, False, 0.5)
    b = cell.apply(v, x, None, False, 0.9)  # no 'drop_path' rng needed at evaluation
    chex.assert_trees_all_equal(a, b)
    run = lambda k: cell.apply(v, x, None, True, 0.5, rngs={"drop_path": jax.random.key(k)},
                               mutable=["batch_stats"])[0]
    assert not np.allclose(run(1), run(2))  # active in training
    dropped = np.all(np.asarray(run(3)) == 0, axis=(1, 2, 3))
    assert not dropped.all()


def test_overfit_one_batch_and_compile_once(setup):
    _, _, state, step = setup
    state = jax.tree_util.tree_map(jnp.copy, state)  # the step donates its input
    x, y = _batch()
    losses = []
    for i in range(30):
        state, m = step(state, x, y, jax.random.key(i))
        losses.append(float(m["loss"]))
    assert int(state.step) == 30
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    # A new input shape would retrace: the chex guard turns that into an error.
    with pytest.raises(AssertionError):
        step(state, np.zeros((4, *SHAPE), np.float32), y[:4], jax.random.key(0))
    # The library's jitted step carries its own per-object guard.
    model, opt, _, _ = setup
    lib_step = nas.make_train_step(model, opt, CONFIG, CONFIG.num_steps)
    with pytest.raises(AssertionError, match="traced 2 times"):
        for n in (8, 4):  # the first call traces (and compiles); the second must not trace
            jax.eval_shape(lib_step, state, np.zeros((n, *SHAPE), np.float32), y[:n],
                           jax.random.key(0))


def test_checkpoint_roundtrip(setup, tmp_path):
    _, _, state, _ = setup
    path = tmp_path / "ck" / "checkpoint.msgpack"
    nas.save_checkpoint(path, state)
    assert os.listdir(path.parent) == ["checkpoint.msgpack"]  # temp file renamed away
    blank = jax.tree_util.tree_map(jnp.zeros_like, state)
    restored = nas.restore_checkpoint(path, blank)
    chex.assert_trees_all_equal(restored, state)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="checkpoint.msgpack"):
        nas.restore_checkpoint(path, blank)


def _data():
    x, y = _batch(40, seed=1)
    return {"train_images": x[:32], "train_labels": y[:32], "valid_images": x[32:],
            "valid_labels": y[32:]}


@pytest.mark.slow
def test_train_and_evaluate_resumes_exactly(tmp_path):
    cfg = dict(CONFIG.__dict__, checkpoint_every=1)  # 30 steps, as the fixture: cache hits
    ref = nas.train_and_evaluate(TINY, cfg, _data(), jax.random.key(7), workdir=tmp_path / "a")
    assert ref["steps"] == 30 and 0.0 <= ref["valid_accuracy"] <= 1.0
    assert ref["num_params"] > 0 and np.isfinite(ref["train_loss"])

    class Crash(Exception):
        pass

    def crash(metrics):
        if metrics.get("step") == 2:
            raise Crash  # dies after step 2, before its checkpoint: step 1 is on disk
    with pytest.raises(Crash):
        nas.train_and_evaluate(TINY, cfg, _data(), jax.random.key(7), workdir=tmp_path / "b",
                               log_fn=crash)
    logs = []
    res = nas.train_and_evaluate(TINY, cfg, _data(), jax.random.key(7), workdir=tmp_path / "b",
                                 log_fn=logs.append)
    assert logs[0]["step"] == 2  # resumed from step 1
    assert res["steps"] == 30
    assert res["valid_accuracy"] == ref["valid_accuracy"]
    np.testing.assert_allclose(res["valid_loss"], ref["valid_loss"], rtol=1e-5)
