"""Multi-class tasks (docs/automl_zero.md, "Multi-class tasks"): every backend that supports them against the
independent NumPy reference (`tests/zero/reference.py`), the layout rules, FEC, export and the task generator.

Backends are collected through `Backend.supports_multiclass`; each one that does not support them must refuse
multi-class tasks with a clear error (tested below), so no backend is left out silently.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from azjax import zero
from azjax.zero import algorithms, backends, export, random_programs
from azjax.zero.backends import Backend
from azjax.zero.backends.select import SelectBackend
from tests.zero import reference as R

MC_BACKENDS = [b for b in backends.BACKENDS if backends._BACKENDS[b].supports_multiclass]
NO_MC_BACKENDS = [b for b in backends.BACKENDS if not backends._BACKENDS[b].supports_multiclass]
# The pallas interpret-mode kernel takes minutes to compile on the 2-core CPU: its checks are slow tests.
MC_PARAMS = [pytest.param(b, marks=pytest.mark.slow) if b == "pallas" else b for b in MC_BACKENDS]

# A small float64 multi-class space for random programs: F=4, 3 classes, banks 4/5/2. Ops that move values
# between vectors, matrices and scalars, and ones that make inf/NaN (division, exp, log), so that the
# softmax's early stop and the accuracy's non-finite rule are exercised. No random-set ops: their draws
# differ between the reference (NumPy) and azjax (the key rule) by design.
F, K = 4, 3
OPS = ("SCALAR_CONST_SET", "VECTOR_CONST_SET", "MATRIX_CONST_SET", "MATRIX_VECTOR_PRODUCT", "VECTOR_SUM",
       "VECTOR_DIFF", "VECTOR_PRODUCT", "VECTOR_DIVISION", "SCALAR_VECTOR_PRODUCT", "VECTOR_OUTER_PRODUCT",
       "MATRIX_SUM", "VECTOR_INNER_PRODUCT", "SCALAR_EXP", "SCALAR_LOG", "SCALAR_BROADCAST")
CFG = zero.ZeroConfig(num_scalars=4, num_vectors=5, num_matrices=2, features=F, num_classes=K,
                      setup_ops=OPS, predict_ops=OPS, learn_ops=OPS, setup_size=4, predict_size=4, learn_size=5,
                      dtype="float64")
T, N, M, E = 2, 6, 4, 2
# (stability rtol/atol, comparison rtol/atol, perturbation eps), as tests/zero/test_differential.py.
SRTOL, SATOL, CRTOL, CATOL = 1e-11, 1e-13, 1e-9, 1e-11
EPS = float(np.finfo(np.float64).eps)


def make_tasks(seed, num_tasks=T, n=N, m=M, features=F, num_classes=K, num_epochs=E):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_tasks, n + m, features)).astype(np.float32).astype(np.float64)
    y = rng.integers(0, num_classes, size=(num_tasks, n + m)).astype(np.float64)
    with jax.enable_x64(True):
        tasks = zero.Tasks(x[:, :n], y[:, :n], x[:, n:], y[:, n:], eval_type="multiclass",
                           num_classes=num_classes, num_epochs=num_epochs)
    return tasks, {"train_features": x[:, :n], "train_labels": y[:, :n], "valid_features": x[:, n:],
                   "valid_labels": y[:, n:]}


def chrono(train, valid):
    """[E, N, K], [E, M, K] -> the prediction vectors in the order they were made."""
    return np.concatenate([np.concatenate([train[e], valid[e]]) for e in range(train.shape[0])])


def _perturber(seed):
    rng = np.random.default_rng(seed)

    def perturb(x):
        k = rng.integers(-4, 5, size=np.shape(x))
        with np.errstate(all="ignore"):
            return (np.asarray(x, np.float64) * (1 + k * EPS))[()]

    perturb.std_always = False
    return perturb


def reference(prog, task, orders, cfg, perturb=None):
    return R.evaluate_program(prog, task, "multiclass", orders.shape[0], orders, None, num_classes=cfg.num_classes,
                              bank_sizes=(cfg.num_scalars, cfg.num_vectors, cfg.num_matrices),
                              dtype=np.float64, perturb=perturb)


def compare(cfg, population, tasks, task_np, backend):
    """azjax's fitness and predictions equal the reference's, up to the first step that rounding can move."""
    fit, train, valid = evaluated(backend, population)
    assert train.shape[-1] == valid.shape[-1] == cfg.num_classes
    orders = tasks.epoch_orders()
    compared = 0
    for p in range(fit.shape[0]):
        prog = R.from_azjax_program(population, p)
        for t in range(tasks.num_tasks):
            task = {k: v[t] for k, v in task_np.items()}
            rfit, rtr, rva = reference(prog, task, orders[t], cfg)
            base = chrono(rtr, rva)
            prefix, stable = len(base), True
            for seed in (1, 2):
                pfit, ptr, pva = reference(prog, task, orders[t], cfg, _perturber(seed))
                ok = np.all(np.isclose(chrono(ptr, pva), base, rtol=SRTOL, atol=SATOL, equal_nan=True), axis=-1)
                bad = np.flatnonzero(~ok)
                if bad.size:
                    prefix = min(prefix, int(bad[0]))
                stable &= pfit == rfit
            stable &= prefix == len(base)
            got = chrono(train[p, t], valid[p, t])
            msg = f"program {p}, task {t}, backend {backend}\n{zero.format_program(_one(population, p), cfg)}"
            np.testing.assert_allclose(got[:prefix], base[:prefix], rtol=CRTOL, atol=CATOL, equal_nan=True,
                                       err_msg="predictions: " + msg)
            if stable:
                assert fit[p, t] == pytest.approx(rfit, abs=1e-12), "fitness: " + msg
                compared += 1
            assert 0.0 <= fit[p, t] <= 1.0
    return compared


def _one(population, p):
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[p], population)


# Programs whose logits are NaN (log(0) - log(0)) or +inf (exp(1000)) from the first step on.
NAN_PROGRAM = ("def Setup():\ndef Predict():\n  s3 = log(s0)\n  v3 = bcast(s3)\n  v2 = v3 - v3\n"
               "def Learn():\n")
INF_PROGRAM = ("def Setup():\n  s2 = 1000.0\n  s3 = exp(s2)\ndef Predict():\n  v2 = bcast(s3)\ndef Learn():\n")
NUM_RANDOM = 6  # population: random programs, then the learner, the NaN and the inf program
LEARNER, NAN_INDEX, INF_INDEX = NUM_RANDOM, NUM_RANDOM + 1, NUM_RANDOM + 2


@pytest.fixture(scope="module")
def random_population():
    """Random programs of the multi-class space (azjax's own generator, so the address rules are the ones
    under test), plus the softmax-regression learner and two programs with non-finite logits, written into
    the same space (one population: one compilation per backend)."""
    with jax.enable_x64(True):
        progs = random_programs.random_programs(jax.random.key(3), CFG, NUM_RANDOM)
        progs = jax.tree_util.tree_map(np.asarray, progs)
        extra = [zero.parse_program(t, CFG) for t in (algorithms.softmax_regression_text(0.5), NAN_PROGRAM,
                                                      INF_PROGRAM)]
    return zero.stack_programs(zero.unstack_programs(progs) + extra)


_RESULTS = {}


def evaluated(backend, population):
    """(fitness, train predictions, valid predictions) of the population on the shared tasks, once per
    backend."""
    if backend not in _RESULTS:
        tasks, _ = make_tasks(7)
        with jax.enable_x64(True):
            fit, preds = zero.evaluate(population, tasks, CFG, key=jax.random.key(0), backend=backend,
                                       return_predictions=True)
        _RESULTS[backend] = (np.asarray(fit), np.asarray(preds["train"]), np.asarray(preds["valid"]))
    return _RESULTS[backend]


@pytest.mark.parametrize("backend", MC_PARAMS)
def test_random_programs_match_reference(backend, random_population):
    tasks, task_np = make_tasks(7)
    compared = compare(CFG, random_population, tasks, task_np, backend)
    assert compared >= 4  # most runs are stable enough to compare their fitness too


@pytest.mark.parametrize("backend", MC_PARAMS)
def test_backends_agree_bitwise_on_random_programs(backend, random_population):
    for a, c in zip(evaluated("cond", random_population), evaluated(backend, random_population)):
        if backend == "native":
            # The C++ softmax calls the C library's exp, not XLA's: equal up to a few ulps (docs/backends.md).
            np.testing.assert_array_equal(np.isnan(a), np.isnan(c), err_msg=backend)
            np.testing.assert_allclose(a, c, rtol=64 * EPS, atol=0, err_msg=backend)
        else:
            np.testing.assert_array_equal(a, c, err_msg=backend)


@pytest.mark.parametrize("backend", MC_PARAMS)
def test_nan_and_inf_predictions_give_the_worst_fitness(backend, random_population):
    """A NaN logit, or +inf logits (inf - inf in the softmax), stop training: fitness 0 in the first epoch."""
    tasks, task_np = make_tasks(7)
    for b in (backend,):
        fit, train, _ = evaluated(b, random_population)
        for p in (NAN_INDEX, INF_INDEX):
            np.testing.assert_array_equal(fit[p], 0.0, err_msg=b)
            assert np.isnan(train[p, :, 0, 0]).all()  # the softmax of the first prediction
            assert np.isnan(train[p, :, :, 1:]).all()  # training stopped: later steps never ran
    for p in (NAN_INDEX, INF_INDEX):
        for t in range(T):
            task = {k: v[t] for k, v in task_np.items()}
            assert reference(R.from_azjax_program(random_population, p), task, tasks.epoch_orders()[t], CFG)[0] == 0
    # Validation: non-finite logits are wrong answers (the reference's rule, which the backends match above).
    assert not R.multiclass_correct([np.inf, 0.0, 0.0], 0) and not R.multiclass_correct([np.nan, 0, 1], 2)
    assert R.multiclass_correct([1.0, 3.0, 3.0], 1)  # ties: the first largest


# ------------------------------------------------------------------------------------------------------
# A learner that learns: softmax regression on projected digits (10 classes, chance 0.1).

@pytest.fixture(scope="module")
def digits_tasks():
    pytest.importorskip("sklearn")
    return zero.projected_multiclass_tasks(jax.random.key(0), num_tasks=1, features=10, num_train=300,
                                           num_valid=100, num_epochs=2)


@pytest.mark.parametrize("backend", MC_PARAMS)
def test_softmax_regression_learns_digits_like_the_reference(backend, digits_tasks):
    cfg = algorithms.softmax_regression_config(features=10, num_classes=10)
    prog = algorithms.softmax_regression_program(cfg, 0.05)
    fit = float(np.asarray(zero.evaluate(prog, digits_tasks, cfg, key=jax.random.key(0), backend=backend))[0])
    assert fit > 0.5  # chance is 0.1
    task = {k: np.asarray(getattr(digits_tasks, k))[0] for k in ("train_features", "train_labels",
                                                                 "valid_features", "valid_labels")}
    rfit, _, _ = R.evaluate_program(R.from_azjax_program(prog), task, "multiclass", 2,
                                    digits_tasks.epoch_orders()[0], None, num_classes=10,
                                    bank_sizes=(3, 4, 2), dtype=np.float32)
    # float32 over 600 SGD steps: at most an example or two may flip between implementations.
    assert abs(fit - rfit) <= 0.02


# ------------------------------------------------------------------------------------------------------
# Backends without multi-class support refuse clearly.

class _NoMulticlass(SelectBackend):
    name = "no_multiclass"
    supports_multiclass = False


def test_backend_without_multiclass_support_raises_a_clear_error():
    tasks, _ = make_tasks(0)
    prog = zero.parse_program(algorithms.softmax_regression_text(), CFG)
    with pytest.raises(ValueError, match="'no_multiclass' does not support multi-class"):
        zero.evaluate(prog, tasks, CFG, key=jax.random.key(0), backend=_NoMulticlass())
    with pytest.raises(ValueError, match="'no_multiclass' does not support multi-class"):
        zero.ProgramEvaluator(CFG, tasks, backend=_NoMulticlass())
    for name in NO_MC_BACKENDS:
        if backends._BACKENDS[name].unavailable_reason() is not None:
            continue  # cannot run here at all (get_backend says why); nothing multi-class to refuse
        with pytest.raises(ValueError, match=f"'{name}' does not support multi-class"):
            zero.evaluate(prog, tasks, CFG, key=jax.random.key(0), backend=name)


def test_default_backend_supports_multiclass():
    tasks, _ = make_tasks(0)
    assert backends.resolve(None, CFG, T, eval_type="multiclass").supports_multiclass
    assert isinstance(Backend.supports_multiclass, bool)


# ------------------------------------------------------------------------------------------------------
# Layout rules.

def test_label_vector_is_never_written():
    """Random programs and mutations never write v1 in a multi-class config; the parser refuses it."""
    cfg32 = dataclasses.replace(CFG, dtype="float32")
    progs = jax.tree_util.tree_map(np.asarray, random_programs.random_programs(jax.random.key(0), cfg32, 200))
    for c in ("setup", "predict", "learn"):
        ins = progs.component(c).instructions
        vector_out = zero.ops.OUT_TYPE[ins[..., 0]] == 1
        assert vector_out.any()
        assert (ins[..., 3][vector_out] >= 2).all()
    with pytest.raises(ValueError, match="cannot write v1"):
        zero.parse_program("def Setup():\ndef Predict():\n  v1 = v0 + v0\ndef Learn():\n", CFG)
    # The binary layout still lets programs write v1 (the hand-written network's bias).
    binary = algorithms.neural_network_config()
    zero.parse_program(algorithms.neural_network_text(), binary)
    np.testing.assert_array_equal(random_programs.address_table(binary)[1], [1, 1, 0, 0])
    np.testing.assert_array_equal(random_programs.address_table(CFG)[1], [1, 2, 0, 0])


@pytest.mark.slow
def test_mutations_never_write_the_label_vector():
    cfg32 = dataclasses.replace(CFG, dtype="float32")
    mcfg = zero.MutationConfig(types=("ALTER_PARAM", "RANDOMIZE_INSTRUCTION"))
    keys = jax.random.split(jax.random.key(1), 100)
    parents = jax.vmap(lambda k: zero.initial_program(k, cfg32, "RANDOM"))(keys)
    children = jax.vmap(lambda k, p: zero.mutate(k, p, cfg32, mcfg))(jax.random.split(keys[0], 100), parents)
    for c in ("setup", "predict", "learn"):
        ins = np.asarray(children.component(c).instructions)
        vector_out = zero.ops.OUT_TYPE[ins[..., 0]] == 1
        assert (ins[..., 3][vector_out] >= 2).all()


def test_config_and_task_mismatches_name_the_field():
    with pytest.raises(ValueError, match="num_classes=5 must be <= features=4"):
        zero.ZeroConfig(num_vectors=3, features=4, num_classes=5)
    with pytest.raises(ValueError, match="num_vectors must be >= 3"):
        zero.ZeroConfig(num_vectors=2, features=4, num_classes=3)
    with pytest.raises(ValueError, match="num_classes must be 0"):
        zero.ZeroConfig(num_classes=1)
    tasks, _ = make_tasks(0)
    binary_cfg = zero.ZeroConfig(num_vectors=3, features=F, predict_ops=("VECTOR_INNER_PRODUCT",))
    prog = zero.empty_program(binary_cfg)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        zero.evaluate(prog, tasks, binary_cfg, key=jax.random.key(0), backend="select")
    x = np.zeros((1, 3, F), np.float32)
    with pytest.raises(ValueError, match="Tasks.train_labels: multiclass labels"):
        zero.Tasks(x, np.full((1, 3), 3.0, np.float32), x, np.zeros((1, 3), np.float32), eval_type="multiclass",
                   num_classes=3).validate()
    with pytest.raises(ValueError, match="Tasks.num_classes must be >= 2"):
        zero.Tasks(x, np.zeros((1, 3)), x, np.zeros((1, 3)), eval_type="multiclass").validate()
    with pytest.raises(ValueError, match="Tasks.num_classes must be 0"):
        zero.Tasks(x, np.zeros((1, 3)), x, np.zeros((1, 3)), eval_type="accuracy", num_classes=2).validate()
    with pytest.raises(ValueError, match="Tasks.num_classes=2 but ZeroConfig.num_classes=3"):
        other = zero.Tasks(x, np.zeros((1, 3)), x, np.zeros((1, 3)), eval_type="multiclass", num_classes=2)
        zero.evaluate(zero.empty_program(CFG), other, CFG, key=jax.random.key(0), backend="select")


def test_liveness_targets_the_prediction_vector():
    prog = zero.parse_program("def Setup():\n  s2 = 0.5\ndef Predict():\n  s1 = dot(v0, v0)\n  v3 = v0 + v0\n"
                              "  v2 = s2 * v0\ndef Learn():\n  v4 = v1 - v2\n  s3 = dot(v1, v4)\n"
                              "  s2 = exp(s3)\n", CFG)
    flags = export.live_flags(prog, CFG)
    np.testing.assert_array_equal(np.asarray(flags[0])[:1], [True])
    np.testing.assert_array_equal(np.asarray(flags[1])[:3], [False, False, True])  # s1 and v3 are dead
    np.testing.assert_array_equal(np.asarray(flags[2])[:3], [True, True, True])  # v1 (the label) is read


def test_initial_programs_use_the_multiclass_learners():
    cfg = algorithms.multiclass_neural_network_config(features=F, num_classes=K)
    for kind, text in (("NEURAL_NET", algorithms.multiclass_neural_network_text()),
                       ("DAMAGED_NEURAL_NET", algorithms.multiclass_neural_network_text(damaged=True))):
        want = zero.parse_program(text, cfg)
        sizes = tuple(int(want.component(c).size) for c in ("setup", "predict", "learn"))
        prog = zero.initial_program(jax.random.key(0), cfg, kind, sizes=sizes)
        assert zero.format_program(jax.tree_util.tree_map(np.asarray, prog), cfg) == zero.format_program(want, cfg)
    sr = zero.initial_program(jax.random.key(0), CFG, "LINEAR")
    assert "v2 = dot(m0, v0)" in zero.format_program(jax.tree_util.tree_map(np.asarray, sr), CFG)


# ------------------------------------------------------------------------------------------------------
# FEC, export, tasks.

def test_program_evaluator_with_fec_matches_evaluate():
    cfg = algorithms.softmax_regression_config(features=F, num_classes=K, dtype="float64")
    tasks, _ = make_tasks(7)
    with jax.enable_x64(True):
        progs = zero.stack_programs([algorithms.softmax_regression_program(cfg, lr) for lr in (0.1, 0.5, 0.1, 2.0)])
        ev = zero.ProgramEvaluator(cfg, tasks, backend="cond", fec=zero.FECConfig(num_train=3, num_valid=2))
        want = np.asarray(zero.evaluate(progs, tasks, cfg, key=jax.random.key(5), backend="cond")).mean(1)
        got, info = ev(jax.random.key(5), progs)
        np.testing.assert_allclose(got, want.astype(np.float32))
        again, info2 = ev(jax.random.key(5), progs)
    np.testing.assert_array_equal(again, got)
    assert info["duplicates"] == 1 and info["evaluated"] == 3
    assert info2["cache_hits"] == 3 and info2["evaluated"] == 0


def test_export_reproduces_multiclass_fitness(random_population):
    tasks, task_np = make_tasks(7)
    fit = evaluated(MC_BACKENDS[0], random_population)[0]
    orders = tasks.epoch_orders()
    for p in (0, LEARNER, NAN_INDEX, INF_INDEX):
        ns: dict = {}
        exec(zero.export_program(_one(random_population, p), CFG), ns)
        assert ns["NUM_CLASSES"] == K
        for t in range(T):
            got = ns["evaluate"](task_np["train_features"][t], task_np["train_labels"][t],
                                 task_np["valid_features"][t], task_np["valid_labels"][t], "multiclass", E,
                                 orders=orders[t])
            rfit = reference(R.from_azjax_program(random_population, p), {k: v[t] for k, v in task_np.items()},
                             orders[t], CFG)[0]
            assert got == pytest.approx(rfit, abs=1e-12)
            assert got == pytest.approx(fit[p, t], abs=0.3)  # equal unless rounding flips (checked above)
        with pytest.raises(ValueError, match="memory layout"):
            ns["evaluate"](task_np["train_features"][0], task_np["train_labels"][0],
                           task_np["valid_features"][0], task_np["valid_labels"][0], "accuracy")


def test_projected_multiclass_tasks_digits():
    pytest.importorskip("sklearn")
    t = zero.projected_multiclass_tasks(jax.random.key(1), num_tasks=2, features=12, num_train=200, num_valid=100)
    t.validate(12)
    assert t.eval_type == "multiclass" and t.num_classes == 10
    assert t.train_features.shape == (2, 200, 12) and t.valid_labels.shape == (2, 100)
    for labels in (np.asarray(t.train_labels), np.asarray(t.valid_labels)):
        counts = np.stack([np.bincount(row.astype(int), minlength=10) for row in labels])
        assert counts.min() >= labels.shape[1] // 10 - 2  # stratified by class
    again = zero.projected_multiclass_tasks(jax.random.key(1), num_tasks=2, features=12, num_train=200,
                                            num_valid=100)
    np.testing.assert_array_equal(np.asarray(again.train_features), np.asarray(t.train_features))
    four = zero.projected_multiclass_tasks(jax.random.key(1), 1, 4, 50, 20, num_classes=4)
    assert set(np.unique(np.asarray(four.train_labels))) == {0.0, 1.0, 2.0, 3.0}
    with pytest.raises(ValueError, match="num_classes=10 must be <= features=8"):
        zero.projected_multiclass_tasks(jax.random.key(1), 1, 8, 50, 20)
    with pytest.raises(ValueError, match="fewer than num_train"):
        zero.projected_multiclass_tasks(jax.random.key(1), 1, 16, 1700, 200)
    with pytest.raises(ValueError, match="needs data_dir"):
        zero.projected_multiclass_tasks(jax.random.key(1), 1, 16, 50, 20, source="cifar10")
