import json
import os
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import search
from azjax.search import checkpoint as ckpt


def _tree(key):
    return {
        "ints": jnp.arange(6, dtype=jnp.int32).reshape(2, 3),
        "floats": jnp.linspace(0, 1, 4, dtype=jnp.float32),
        "half": jnp.ones(3, jnp.bfloat16) / 3,
        "key": jax.random.split(key, 2),
        "host": np.float64(2e8 + 1),  # host leaves keep float64 even with jax in 32-bit mode
        "empty": (jnp.zeros((0, 4)), None),
        "genome": search.MixedGenome(ints=jnp.array([1, 2], jnp.int32),
                                     floats=jnp.array([0.5, 0.25])),
    }


def test_roundtrip_and_keep_last(tmp_path, key):
    tree = _tree(key)
    assert ckpt.latest_step(tmp_path) is None
    assert search.restore_checkpoint(tmp_path, tree) is None
    for step in (0, 5, 7, 12):
        search.save_checkpoint(tmp_path, step, tree, {"config": {"lr": 0.1}, "step": step},
                               keep=2)
    assert ckpt.all_steps(tmp_path) == [7, 12]
    assert search.latest_step(tmp_path) == 12
    restored, meta = search.restore_checkpoint(tmp_path, tree)
    assert meta == {"config": {"lr": 0.1}, "step": 12}
    chex.assert_trees_all_equal(jax.random.key_data(restored["key"]),
                                jax.random.key_data(tree["key"]))
    del restored["key"], tree["key"]
    chex.assert_trees_all_equal(restored, tree)
    assert restored["host"].dtype == np.float64 and float(restored["host"]) == 2e8 + 1
    assert restored["half"].dtype == jnp.bfloat16
    # plain npz, loadable without pickle; no temporary files left behind
    with np.load(ckpt.checkpoint_path(tmp_path, 12), allow_pickle=False) as npz:
        meta = json.loads(bytes(npz["__metadata__"]))
    assert meta["step"] == 12 and len(meta["checksum"]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt_0000000007.npz", "ckpt_0000000012.npz"]


def test_refuses_to_overwrite(tmp_path, key):
    search.save_checkpoint(tmp_path, 1, {"a": jnp.zeros(2)})
    with pytest.raises(ValueError, match="ckpt_0000000001.npz"):
        search.save_checkpoint(tmp_path, 1, {"a": jnp.ones(2)})
    search.save_checkpoint(tmp_path, 1, {"a": jnp.ones(2)}, overwrite=True)
    with pytest.raises(ValueError, match="step"):
        search.save_checkpoint(tmp_path, -1, {"a": jnp.ones(2)})


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_corrupt_file_is_named_and_left_in_place(tmp_path, damage, key):
    tree = {"a": jnp.arange(1000, dtype=jnp.float32), "b": jnp.ones(3)}
    search.save_checkpoint(tmp_path, 1, tree)
    path = search.save_checkpoint(tmp_path, 2, tree)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 3] ^= 0xFF  # inside the first array's bytes
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"not a checkpoint at all")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=str(path)):
        search.restore_checkpoint(tmp_path, tree)
    assert path.read_bytes() == bytes(data), "the corrupt file is never modified"
    # pruning never deletes a file it cannot verify
    search.save_checkpoint(tmp_path, 3, tree, keep=1)
    assert path.exists() and path.read_bytes() == bytes(data)
    restored, _ = search.restore_checkpoint(tmp_path, tree, step=3)
    chex.assert_trees_all_equal(restored, tree)


def test_structure_and_shape_mismatch(tmp_path):
    path = search.save_checkpoint(tmp_path, 0, {"a": jnp.zeros(3), "b": jnp.zeros(2)})
    with pytest.raises(ValueError, match=f"{path}.*structure"):
        search.restore_checkpoint(tmp_path, {"a": jnp.zeros(3), "c": jnp.zeros(2)})
    with pytest.raises(ValueError, match=f"{path}.*shape"):
        search.restore_checkpoint(tmp_path, {"a": jnp.zeros(4), "b": jnp.zeros(2)})
    with pytest.raises(ValueError, match=f"{path}.*dtype"):
        search.restore_checkpoint(tmp_path, {"a": jnp.zeros(3, jnp.int32), "b": jnp.zeros(2)})
    # a predicate may exempt growing leaves from the shape check
    tree, _ = search.restore_checkpoint(tmp_path, {"a": jnp.zeros(4), "b": jnp.zeros(2)},
                                        check_shapes=lambda p: "'a'" not in p)
    assert tree["a"].shape == (3,)


def test_interrupted_write_leaves_no_checkpoint(tmp_path, monkeypatch):
    search.save_checkpoint(tmp_path, 0, {"a": jnp.zeros(3)})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        search.save_checkpoint(tmp_path, 1, {"a": jnp.ones(3)})
    monkeypatch.undo()
    assert [p.name for p in pathlib.Path(tmp_path).iterdir()] == ["ckpt_0000000000.npz"]
    assert search.latest_step(tmp_path) == 0


def test_random_bytes_are_reported_as_corrupt_not_as_a_pickle(tmp_path):
    path = ckpt.checkpoint_path(tmp_path, 1)
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.read_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "corrupt" in message and "not an .npz archive" in message
    assert "pickle" not in message and "unsafe" not in message


def test_single_file_write_and_restore(tmp_path, key, monkeypatch):
    """write_file/restore_file: the format of save_checkpoint at a path of the caller's choosing
    (the NAS trainer keeps one file), replaced atomically and fsynced."""
    tree = _tree(key)
    path = tmp_path / "state.any_name"
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    ckpt.write_file(path, 5, tree, {"note": "x"})
    assert synced, "the file was not fsynced"
    ckpt.write_file(path, 6, tree)  # replaces the file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.any_name"]  # no temp file left
    meta, _ = ckpt.read_checkpoint(path)
    assert meta["step"] == 6 and meta["format"] == ckpt.FORMAT
    restored, metadata = ckpt.restore_file(path, tree)
    assert metadata == {}
    chex.assert_trees_all_equal(jax.tree_util.tree_map(np.asarray, restored["ints"]),
                                np.asarray(tree["ints"]))
    assert np.asarray(restored["host"]).dtype == np.float64
    with pytest.raises(ckpt.CheckpointError, match="structure"):
        ckpt.restore_file(path, {"other": jnp.zeros(3)})
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ckpt.CheckpointError, match="state.any_name"):
        ckpt.restore_file(path, tree)
