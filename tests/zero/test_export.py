"""Exported programs (azjax.zero.export) are standalone NumPy code that reproduces zero.evaluate."""
from __future__ import annotations

import ast
import importlib.util

import jax
import numpy as np
import pytest

from azjax import zero
from azjax.zero import algorithms, export

# One float64 config serves every default-suite comparison (one compile per eval type and task shape): the
# 2-layer network's banks (5/9/2, F=4), its ops, the constant sets and ops with unusual semantics.
# Every deterministic op (random sets 59..64 excluded) is covered by the slow all-op variant.
SHARED_OPS = tuple(dict.fromkeys(
    algorithms.LINEAR_OPS + algorithms.NEURAL_NETWORK_PREDICT_OPS + algorithms.NEURAL_NETWORK_LEARN_OPS
    + ("SCALAR_CONST_SET", "VECTOR_CONST_SET", "MATRIX_CONST_SET", "SCALAR_HEAVYSIDE", "SCALAR_MIN",
       "SCALAR_MAX", "VECTOR_MIN", "MATRIX_MAX", "VECTOR_ST_DEV", "MATRIX_ROW_ST_DEV", "MATRIX_TRANSPOSE",
       "MATRIX_MATRIX_PRODUCT", "SCALAR_DIVISION", "VECTOR_MEAN", "SCALAR_ARCTAN")))
SHARED_CFG = zero.ZeroConfig(num_scalars=5, num_vectors=9, num_matrices=2, features=4, setup_ops=SHARED_OPS,
                             predict_ops=SHARED_OPS, learn_ops=SHARED_OPS, setup_size=12, predict_size=5,
                             learn_size=11, dtype="float64")
DET_OPS = tuple(op.name for op in zero.OPS[1:59])
ALL_DET_CFG = zero.ZeroConfig(num_scalars=5, num_vectors=4, num_matrices=2, features=3, setup_ops=DET_OPS,
                              predict_ops=DET_OPS, learn_ops=DET_OPS, setup_size=5, predict_size=4,
                              learn_size=5, dtype="float64")
# Task shapes shared by the comparisons (T, N, M, epochs).
T, N, M, E = 2, 20, 8, 2
TOL = 1e-9


def load(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<exported>", "exec"), namespace)
    return namespace


def exported_fitness(prog, cfg, tasks, rng_seed=None):
    """[T] fitness of the exported program on every task, with the tasks' own epoch orders."""
    ns = load(export.export_program(prog, cfg))
    orders = tasks.epoch_orders()
    out = []
    for t in range(tasks.num_tasks):
        rng = None if rng_seed is None else np.random.default_rng(rng_seed)
        out.append(ns["evaluate"](np.asarray(tasks.train_features[t]), np.asarray(tasks.train_labels[t]),
                                  np.asarray(tasks.valid_features[t]), np.asarray(tasks.valid_labels[t]),
                                  tasks.eval_type, tasks.num_epochs, orders=orders[t], rng=rng))
    return np.asarray(out)


def evaluate_population(progs, tasks, cfg):
    """zero.evaluate of a list of programs as one stacked population: fitness [P, T].

    (A single unbatched program is converted with jnp.asarray before evaluate enables x64, which rounds
    float64 constants to float32: see test_single_program_float64_constants_are_exact.)
    """
    return np.asarray(zero.evaluate(zero.stack_programs(progs), tasks, cfg, key=jax.random.key(0),
                                    backend="cond"))


def f64(fn, *args, **kw):
    with jax.enable_x64(True):
        return fn(*args, **kw)


def fixed_init_network_text():
    """The reference's 2-layer network with a fixed (constant-set) initialisation instead of Gaussians."""
    rng = np.random.default_rng(0)
    init = [f"  v2[{i}] = {float(np.round(rng.normal(0, 0.5), 3))!r}" for i in range(4)]
    init += [f"  m0[{i}, {j}] = {float(np.round(rng.normal(0, 0.5), 3))!r}" for i, j in
             [(0, 0), (1, 1), (1, 3), (2, 2), (3, 0), (3, 1), (0, 2)]]
    text = algorithms.neural_network_text(learning_rate=0.02, damaged=True)
    return text.replace("def Setup():\n", "def Setup():\n" + "\n".join(init) + "\n")


def binary_tasks(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, N + M, 4))
    y = (x @ rng.normal(size=4) > 0).astype(np.float64)
    return f64(zero.Tasks, x[:, :N], y[:, :N], x[:, N:], y[:, N:], eval_type="accuracy", num_epochs=E,
               data_seeds=np.arange(T) + 7)


def make_tasks(kind, seed=11):
    if kind == "accuracy":
        return binary_tasks(seed)
    make = zero.linear_regression_tasks if kind == "linear" else zero.teacher_network_tasks
    return f64(make, jax.random.key(seed), T, 4, N, M, num_epochs=E, dtype="float64")


def random_program(rng, cfg, sizes):
    """A random deterministic program (numpy; jitting azjax's generator costs seconds per config)."""
    banks = {"s": cfg.num_scalars, "v": cfg.num_vectors, "m": cfg.num_matrices}
    first = {"s": 1, "v": 1, "m": 0}
    comps = {}
    for c, n in zip(zero.program.COMPONENTS, sizes):
        instrs = []
        for _ in range(n):
            op = zero.OPS[zero.OP_IDS[rng.choice(cfg.ops(c))]]
            addr = [int(rng.integers(0, banks[t])) if t else 0 for t in (op.in1, op.in2)]
            addr.append(int(rng.integers(first[op.out], banks[op.out])) if op.out else 0)
            data = [float(np.float32(rng.uniform(-1, 1))), float(np.float32(rng.uniform(-1, 1))),
                    float(np.float32(rng.uniform(-1, 1)))]
            for k, kind in enumerate(op.data):
                if kind == "index":
                    data[k] = (int(rng.integers(0, cfg.features)) + 0.5) / cfg.features
            instrs.append((op.id, *addr, *data))
        comps[c] = instrs
    return zero.make_program(cfg, **comps)


def shared_population():
    """[linear SGD, fixed-init 2-layer network] + 22 random deterministic programs of SHARED_CFG."""
    hand = [algorithms.linear_regression_program(SHARED_CFG, learning_rate=0.05),
            zero.parse_program(fixed_init_network_text(), SHARED_CFG)]
    rng = np.random.default_rng(0)
    sizes = [(3, 2, 3)] * 8 + [(6, 3, 6)] * 8 + [(12, 5, 11)] * 6
    return hand + [random_program(rng, SHARED_CFG, s) for s in sizes]


@pytest.mark.parametrize("kind", ["linear", "teacher", "accuracy"])
@pytest.mark.slow
def test_exported_programs_reproduce_fitness(kind):
    progs = shared_population()
    tasks = make_tasks(kind)
    want = evaluate_population(progs, tasks, SHARED_CFG)
    got = np.stack([exported_fitness(p, SHARED_CFG, tasks) for p in progs])
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    # Meaningful comparisons: the hand-written learners learn, and random programs do not all die.
    if kind == "linear":
        assert want[0].min() > 0.6  # SGD on 2 epochs of 20 examples
    if kind == "teacher":
        assert want[1].min() > want[1:].min() and want[1].min() > 0.2
    assert np.count_nonzero(want[2:]) >= 8


def test_single_program_float64_constants_are_exact():
    progs = shared_population()
    tasks = make_tasks("linear")
    single = np.asarray(zero.evaluate(progs[0], tasks, SHARED_CFG, key=jax.random.key(0), backend="cond"))
    np.testing.assert_array_equal(single, evaluate_population(progs, tasks, SHARED_CFG)[0])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["teacher", "accuracy"])
def test_random_programs_over_all_deterministic_ops_reproduce_fitness(kind):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(T, N + M, 3))
    if kind == "accuracy":
        y = (x @ rng.normal(size=3) > 0).astype(np.float64)
    else:
        y = np.maximum(x @ rng.normal(size=(3, 3)), 0) @ rng.normal(size=3)
    tasks = f64(zero.Tasks, x[:, :N], y[:, :N], x[:, N:], y[:, N:], eval_type="rms" if kind == "teacher" else
                kind, num_epochs=E)
    rng = np.random.default_rng(7)
    progs = [random_program(rng, ALL_DET_CFG, (5, 4, 5)) for _ in range(64)]
    want = evaluate_population(progs, tasks, ALL_DET_CFG)
    got = np.stack([exported_fitness(p, ALL_DET_CFG, tasks) for p in progs])
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    assert np.count_nonzero(want) >= 20


def test_source_is_standalone_and_marks_dead_code(tmp_path):
    cfg = algorithms.linear_regression_config(dtype="float64")
    # A dead instruction in each component: s3 is overwritten in Learn before any read, v2 in Predict
    # is never read, and the Setup constant in s3 is clobbered by Learn.
    text = ("def Setup():\n  s2 = 0.01\n  s3 = 0.5\n"
            "def Predict():\n  s1 = dot(v1, v0)\n  v2 = s1 * v0\n"
            "def Learn():\n  s3 = s0 - s1\n  s3 = s2 * s3\n  v2 = s3 * v0\n  v1 = v1 + v2\n")
    prog = zero.parse_program(text, cfg)
    source = export.export_program(prog, cfg, name="demo")
    tree = ast.parse(source)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [a.name for n in imports for a in n.names] == ["numpy"]
    assert "azjax" not in source.replace("azjax.zero.export", "")
    flags = export.live_flags(prog, cfg)
    assert [f[:int(prog.component(c).size)].tolist() for f, c in zip(flags, zero.program.COMPONENTS)] == \
        [[True, False], [True, False], [True, True, True, True]]
    assert source.count("(dead: cannot affect the prediction)") == 2
    assert "# s3 = 0.5  (dead" in source and "# v2 = s1 * v0  (dead" in source
    # The file imports as a module and its functions run on a Memory.
    path = tmp_path / "demo_program.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("demo_program", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mem = module.Memory()
    module.setup(mem)
    mem.v[0] = [1.0, 2.0, 3.0, 4.0]
    mem.v[1] = [0.5, 0.5, 0.5, 0.5]
    module.predict(mem)
    assert mem.s[1] == 5.0 and mem.s[2] == 0.01 and mem.s[3] == 0.0
    assert np.all(mem.v[2] == 0)  # the dead Predict line did not run


def test_edge_semantics_of_exported_ops():
    ops = ("SCALAR_CONST_SET", "SCALAR_HEAVYSIDE", "VECTOR_HEAVYSIDE", "SCALAR_MIN", "SCALAR_MAX",
           "VECTOR_ST_DEV", "SCALAR_BROADCAST", "SCALAR_SUM", "VECTOR_INNER_PRODUCT", "SCALAR_UNIFORM_SET")
    cfg = zero.ZeroConfig(num_scalars=8, num_vectors=3, num_matrices=0, features=4, setup_ops=ops,
                          predict_ops=ops, learn_ops=(), setup_size=8, predict_size=8, learn_size=1,
                          dtype="float64")
    text = ("def Setup():\n  s2 = 0.0\n  s3 = heaviside(s2)\n  v1 = bcast(s2)\n  v2 = heaviside(v1)\n"
            "  s4 = uniform(0.75, 0.25)\n  s5 = 0.1\n  v1 = bcast(s5)\n  s6 = std(v1)\n"
            "def Predict():\n  s7 = dot(v2, v2)\n  s1 = s3 + s7\n  s1 = s1 + s4\n"
            "def Learn():\n  pass\n")
    prog = zero.parse_program(text, cfg)
    source = export.export_program(prog, cfg)
    assert "rng." not in source.split("def predict")[0]  # uniform with low >= high: no draw
    ns = load(source)
    mem = ns["Memory"]()
    ns["setup"](mem)
    assert mem.s[3] == 1.0 and np.all(mem.v[2] == 0.0)  # heaviside: >= for scalars, > for vectors
    assert mem.s[4] == 0.75  # uniform(low >= high) -> low
    # The one-pass std of a constant 0.1 vector is not 0 (mean(x^2) - mean(x)^2 rounds); predict sees it.
    want_std = np.sqrt(np.sum(np.full(4, 0.1) ** 2) / 4 - (np.sum(np.full(4, 0.1)) / 4) ** 2)
    np.testing.assert_equal(mem.s[6], want_std)
    ns["predict"](mem)
    assert mem.s[1] == 1.75
    # C++ min/max NaN rules: min(NaN, 1) = NaN, min(1, NaN) = 1, max(NaN, 1) = NaN, max(1, NaN) = 1.
    cases = {("SCALAR_MIN", True): np.nan, ("SCALAR_MIN", False): 1.0, ("SCALAR_MAX", True): np.nan,
             ("SCALAR_MAX", False): 1.0}
    for (op, nan_first), want in cases.items():
        a, b = (2, 3) if nan_first else (3, 2)
        p = zero.make_program(cfg, predict=[(op, a, b, 1)])
        ns = load(export.export_program(p, cfg))
        mem = ns["Memory"]()
        mem.s[2], mem.s[3] = np.nan, 1.0
        ns["predict"](mem)
        np.testing.assert_equal(mem.s[1], want, err_msg=f"{op} nan_first={nan_first}")


def test_random_ops_draw_from_the_given_generator():
    cfg = algorithms.neural_network_config(dtype="float64")
    prog = algorithms.neural_network_program(cfg, init_sd=0.1)
    ns = load(export.export_program(prog, cfg))
    with pytest.raises(ValueError, match="rng"):
        ns["setup"](ns["Memory"]())
    mems = []
    for seed in (0, 0, 1):
        mem = ns["Memory"]()
        ns["setup"](mem, np.random.default_rng(seed))
        mems.append(mem.m[0].copy())
    np.testing.assert_array_equal(mems[0], mems[1])
    assert not np.array_equal(mems[0], mems[2])
    assert 0.02 < mems[0].std() < 0.3  # gaussian(0.0, 0.1)
    tasks = make_tasks("teacher")
    got = exported_fitness(prog, cfg, tasks, rng_seed=0)
    np.testing.assert_array_equal(got, exported_fitness(prog, cfg, tasks, rng_seed=0))
    assert np.all((got > 0.1) & (got <= 1))


def test_float32_program_exports_float32_and_matches_closely():
    cfg = algorithms.linear_regression_config(dtype="float32")
    prog = algorithms.linear_regression_program(cfg, learning_rate=0.05)
    source = export.export_program(prog, cfg)
    assert "DTYPE = np.float32" in source and "s[2] = 0.05" in source
    tasks = zero.linear_regression_tasks(jax.random.key(3), 2, 4, 30, 10)
    want = evaluate_population([prog], tasks, cfg)[0]
    np.testing.assert_allclose(exported_fitness(prog, cfg, tasks), want, rtol=0, atol=1e-5)


def test_bad_input_names_the_field():
    cfg = algorithms.linear_regression_config()
    prog = algorithms.linear_regression_program(cfg)
    with pytest.raises(ValueError, match="cfg"):
        export.export_program(prog, "cfg")
    with pytest.raises(ValueError, match="prog"):
        export.export_program(zero.stack_programs([prog, prog]), cfg)
    with pytest.raises(ValueError, match="name"):
        export.export_program(prog, cfg, name="")
    ns = load(export.export_program(prog, cfg))
    with pytest.raises(ValueError, match="eval_type"):
        ns["evaluate"](np.zeros((3, 4)), np.zeros(3), np.zeros((2, 4)), np.zeros(2), eval_type="mse")
