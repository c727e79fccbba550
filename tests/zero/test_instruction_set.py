"""The instruction-set table is the single source of truth: derived tables, docs and generators follow it."""
import pathlib

import jax
import numpy as np

from azjax import zero
from azjax.zero import mutations
from azjax.zero import ops as ops_lib
from azjax.zero import random_programs

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA_OPS = tuple(op.name for op in ops_lib.OPS if op.data)
CFG = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=2, features=4, setup_ops=DATA_OPS,
                      predict_ops=DATA_OPS, learn_ops=DATA_OPS, setup_size=5, predict_size=5, learn_size=5,
                      dtype="float64")


def test_docs_instruction_set_is_generated_from_the_table():
    doc = (ROOT / "docs" / "instruction_set.md").read_text()
    assert doc == ops_lib.instruction_set_markdown(), (
        "docs/instruction_set.md is stale: regenerate it with ops.instruction_set_markdown()")


def test_derived_tables_follow_the_op_specs():
    for op in ops_lib.OPS:
        n = len(op.data)
        assert ops_lib.NUM_DATA[op.id] == n
        np.testing.assert_array_equal(ops_lib.DATA_LOW[op.id, :n], [c.low for c in op.data])
        np.testing.assert_array_equal(ops_lib.DATA_HIGH[op.id, :n], [c.high for c in op.data])
        assert not ops_lib.DATA_LOW[op.id, n:].any() and not ops_lib.DATA_HIGH[op.id, n:].any()
        assert list(ops_lib.IS_INDEX[op.id, :n]) == [c.role == "index" for c in op.data]
        assert all(c.alteration in ops_lib.ALTERATIONS for c in op.data)
    # Only SCALAR_CONST_SET's value is stored in the program's own precision.
    full_precision = {(op.name, k) for op in ops_lib.OPS for k, c in enumerate(op.data) if not c.float32}
    assert full_precision == {("SCALAR_CONST_SET", 0)}
    assert {op.name for op in ops_lib.OPS if op.sorts_range} == {
        "SCALAR_UNIFORM_SET", "VECTOR_UNIFORM_SET", "MATRIX_UNIFORM_SET"}


def test_random_constants_lie_in_their_table_ranges():
    with jax.enable_x64(True):
        progs = jax.tree_util.tree_map(np.asarray, random_programs.random_programs(jax.random.key(0), CFG, 400))
    for comp in (progs.setup, progs.predict, progs.learn):
        op = np.asarray(comp.instructions)[..., 0].ravel()
        data = np.asarray(comp.data).reshape(-1, 3)
        low, high = ops_lib.DATA_LOW[op], ops_lib.DATA_HIGH[op]
        used = np.arange(3)[None] < ops_lib.NUM_DATA[op][:, None]
        # float32 storage may round a value up to the top of its range.
        assert np.all(~used | ((data >= low) & (data <= high)))
        assert np.all(used | (data == 0))
        stored32 = ops_lib.STORED_FLOAT32[op]
        assert np.all(~stored32 | (data == data.astype(np.float32)))
    # Every data op was drawn, with both range ends approached.
    assert set(np.unique(np.asarray(progs.setup.instructions)[..., 0])) == {
        ops_lib.OP_IDS[n] for n in DATA_OPS}


def test_mutation_rows_come_from_the_one_generator():
    # RANDOMIZE_COMPONENT_FUNCTION writes fresh rows of `random_programs.instructions_from_uniforms`: its
    # results are canonical random programs of the same distribution (constants in range, canonical).
    mcfg = mutations.MutationConfig(types=("RANDOMIZE_COMPONENT_FUNCTION",))
    with jax.enable_x64(True):
        key = jax.random.key(3)
        progs = random_programs.random_programs(key, CFG, 64)
        out = jax.jit(jax.vmap(lambda k, p: mutations.mutate(k, p, CFG, mcfg)))(jax.random.split(key, 64), progs)
        out = jax.tree_util.tree_map(np.asarray, out)
    again = zero.canonicalize(out, CFG, xp=np)
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    zero.validate_program(jax.tree_util.tree_map(np.asarray, out), CFG)
