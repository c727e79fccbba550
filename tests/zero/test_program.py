"""Config, program arrays, validation and the text format."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import zero
from azjax.zero import ops as ops_lib
from azjax.zero import random_programs

ALL_OPS = tuple(op.name for op in ops_lib.OPS[1:])


def all_ops_config(**kw):
    base = dict(num_scalars=5, num_vectors=4, num_matrices=3, features=3, setup_ops=ALL_OPS,
                predict_ops=ALL_OPS, learn_ops=ALL_OPS, setup_size=12, predict_size=12, learn_size=12)
    base.update(kw)
    return zero.ZeroConfig(**base)


def test_op_table_matches_the_reference_enum():
    assert len(zero.OPS) == 65
    assert [op.id for op in zero.OPS] == list(range(65))
    assert zero.OP_IDS["VECTOR_INNER_PRODUCT"] == 27
    assert zero.OP_IDS["MATRIX_GAUSSIAN_SET"] == 64
    assert zero.op_id("SCALAR_SUM_OP") == 1
    assert zero.OPS[15].name == "SCALAR_HEAVYSIDE"
    assert {op.id for op in zero.OPS if op.is_random} == set(range(59, 65))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_text_round_trip_over_all_ops(dtype):
    cfg = all_ops_config(dtype=dtype)
    with jax.enable_x64(dtype == "float64"):
        progs = random_programs.random_programs(jax.random.key(3), cfg, 20)
    for prog in zero.unstack_programs(progs):
        text = zero.format_program(prog, cfg)
        again = zero.parse_program(text, cfg)
        for a, b in zip(jax.tree_util.tree_leaves(prog), jax.tree_util.tree_leaves(again)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert zero.format_program(again, cfg) == text


def test_canonical_text_round_trip_and_comments():
    cfg = zero.algorithms.linear_regression_config()
    text = zero.algorithms.linear_regression_text(0.001)
    assert zero.format_program(zero.parse_program(text, cfg), cfg) == text
    noisy = text.replace("def Predict():\n", "\n# a comment\ndef Predict():  # trailing\n")
    assert zero.format_program(zero.parse_program(noisy, cfg), cfg) == text


def test_empty_component_is_pass():
    cfg = zero.algorithms.linear_regression_config()
    text = "def Setup():\n  pass\ndef Predict():\n  s1 = dot(v0, v1)\ndef Learn():\n  pass\n"
    prog = zero.parse_program(text, cfg)
    assert int(prog.setup.size) == 0 and int(prog.learn.size) == 0
    assert zero.format_program(prog, cfg) == text


@pytest.mark.parametrize("bad, match", [
    ("  s0 = 0.5", "line 2: cannot write s0"),
    ("  v0 = v1 + v2", "line 2: cannot write v0"),
    ("  s9 = 0.5", "line 2: address s9 out of range"),
    ("  s2 = frobnicate(s1)", "line 2: not an instruction"),
    ("  s2 = s1 + s3", "line 2: op SCALAR_SUM is not allowed in setup"),
    ("  v1[7] = 0.5", "line 2: element index 7 out of range"),
])
def test_parse_errors_name_the_line(bad, match):
    cfg = zero.ZeroConfig(setup_ops=("SCALAR_CONST_SET", "VECTOR_CONST_SET", "VECTOR_SUM"),
                          predict_ops=("VECTOR_INNER_PRODUCT",), learn_ops=())
    text = f"def Setup():\n{bad}\ndef Predict():\n  pass\ndef Learn():\n  pass\n"
    with pytest.raises(ValueError, match=match):
        zero.parse_program(text, cfg)


def test_parse_rejects_missing_headers_and_too_many_instructions():
    cfg = zero.ZeroConfig(setup_ops=("SCALAR_CONST_SET",), predict_ops=(), learn_ops=(), setup_size=1)
    with pytest.raises(ValueError, match="missing header"):
        zero.parse_program("def Setup():\n  s2 = 1.0\n", cfg)
    with pytest.raises(ValueError, match="too many instructions in setup"):
        zero.parse_program("def Setup():\n  s2 = 1.0\n  s3 = 2.0\ndef Predict():\n  pass\n"
                           "def Learn():\n  pass\n", cfg)


@pytest.mark.parametrize("kwargs, field", [
    (dict(num_scalars=1), "num_scalars"),
    (dict(num_vectors=0), "num_vectors"),
    (dict(features=0), "features"),
    (dict(dtype="float16"), "dtype"),
    (dict(setup_ops=("SCALAR_FOO",)), "setup_ops"),
    (dict(learn_ops=("MATRIX_SUM",), num_matrices=0), "learn_ops"),
    (dict(predict_ops=("VECTOR_SUM",), num_vectors=1), "predict_ops"),
    (dict(learn_size=-1), "learn_size"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        zero.ZeroConfig(**kwargs)


def test_validate_program_names_the_field():
    cfg = zero.algorithms.linear_regression_config()
    prog = zero.algorithms.linear_regression_program(cfg)

    def broken(component, field, fn):
        comp = prog.component(component)
        comp = comp.replace(**{field: fn(np.array(getattr(comp, field)))})
        return prog.replace(**{component: comp})

    cases = [
        (broken("predict", "instructions", lambda a: a[:, :3]), r"program.predict.instructions: expected shape"),
        (broken("learn", "instructions", lambda a: a.astype(np.float32)), "integer dtype"),
        (broken("setup", "size", lambda a: np.int32(11)), r"program.setup.size"),
        (broken("learn", "instructions", lambda a: _set(a, (0, 0), 99)), "out of range"),
        (broken("predict", "instructions", lambda a: _set(a, (0, 3), 0)), "writes reserved s0"),
        (broken("predict", "instructions", lambda a: _set(a, (0, 1), 7)), "out-of-range v7"),
        (broken("setup", "instructions", lambda a: _set(a, (5, 0), 27)), "beyond program.setup.size"),
    ]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            zero.validate_program(bad, cfg)
    other = zero.ZeroConfig(setup_ops=("SCALAR_CONST_SET",), predict_ops=("SCALAR_SUM",), learn_ops=LINEAR,
                            num_scalars=5)
    with pytest.raises(ValueError, match="VECTOR_INNER_PRODUCT is not allowed in predict"):
        zero.validate_program(prog_in(other), other)


LINEAR = zero.algorithms.LINEAR_OPS


def prog_in(cfg):
    # The linear program's arrays checked against a config whose predict ops exclude its dot product.
    lin = zero.algorithms.linear_regression_config()
    p = zero.algorithms.linear_regression_program(lin)
    pad = cfg.setup_size - lin.setup_size
    setup = p.setup.replace(instructions=jnp.pad(p.setup.instructions, ((0, max(pad, 0)), (0, 0)))[:cfg.setup_size],
                            data=jnp.pad(p.setup.data, ((0, max(pad, 0)), (0, 0)))[:cfg.setup_size])
    predict = p.predict.replace(instructions=p.predict.instructions[:cfg.predict_size],
                                data=p.predict.data[:cfg.predict_size])
    learn = p.learn.replace(instructions=p.learn.instructions[:cfg.learn_size], data=p.learn.data[:cfg.learn_size])
    return zero.Program(setup, predict, learn)


def _set(a, idx, value):
    a = a.copy()
    a[idx] = value
    return a


def test_make_program_canonicalizes_and_stacks():
    cfg = zero.algorithms.linear_regression_config()
    p = zero.make_program(cfg, setup=[("SCALAR_CONST_SET", 3, 2, 2, 0.5, 9.0, 9.0)],
                          predict=[("VECTOR_INNER_PRODUCT", 1, 0, 1)])
    np.testing.assert_array_equal(np.asarray(p.setup.instructions[0]), [56, 0, 0, 2])
    np.testing.assert_array_equal(np.asarray(p.setup.data[0]), [0.5, 0, 0])
    pop = zero.stack_programs([p, p, p])
    assert pop.setup.instructions.shape == (3, cfg.setup_size, 4)
    assert len(zero.unstack_programs(pop)) == 3
    zero.validate_program(pop, cfg)
