"""The search evaluator: dedup, FEC accounting, train budget, resumable search with the cache."""
import dataclasses

import jax
import numpy as np
import pytest

from azjax import search, zero
from azjax.zero import random_programs
from azjax.zero.search_evaluator import component_costs, within_train_budget

CFG = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                      setup_ops=("SCALAR_CONST_SET",), predict_ops=("VECTOR_INNER_PRODUCT",),
                      learn_ops=("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM"),
                      setup_size=5, predict_size=1, learn_size=4)
T, N, M, B = 2, 20, 10, 16


@pytest.fixture(scope="module")
def tasks():
    return zero.linear_regression_tasks(jax.random.key(0), T, 4, N, M)


@pytest.fixture(scope="module")
def batch():
    progs = jax.tree_util.tree_map(np.asarray, random_programs.random_programs(jax.random.key(1), CFG, B))
    # Two exact duplicates at the end.
    return jax.tree_util.tree_map(lambda x: np.concatenate([x[:B - 2], x[:2]]), progs)


def test_fec_gives_the_same_fitness_and_skips_work(tasks, batch):
    plain = zero.ProgramEvaluator(CFG, tasks, fec=None, backend="select")
    cached = zero.ProgramEvaluator(CFG, tasks, backend="select")
    f0, info0 = plain(jax.random.key(2), batch)
    f1, info1 = cached(jax.random.key(2), batch)
    np.testing.assert_allclose(f1, f0, rtol=1e-6)
    assert info0["duplicates"] == info1["duplicates"] == 2
    assert info0["evaluated"] == B - 2 and info0["train_steps"] == (B - 2) * T * N
    assert info1["evaluated"] + info1["cache_hits"] == B - 2
    assert info1["train_steps"] == (B - 2) * T * 10 + info1["evaluated"] * T * N
    np.testing.assert_array_equal(f1[-2:], f1[:2])
    # The same batch again: every program is a cache hit, no full evaluation.
    f2, info2 = cached(jax.random.key(3), batch)
    assert info2["evaluated"] == 0 and info2["cache_hits"] == B - 2
    assert info2["train_steps"] == (B - 2) * T * 10
    np.testing.assert_array_equal(f2, f1)


def test_fec_forgets_after_k_hits_and_state_round_trips(tasks, batch):
    ev = zero.ProgramEvaluator(CFG, tasks, fec=zero.FECConfig(forget_every=2), backend="select")
    _, first = ev(jax.random.key(0), batch)
    _, hit = ev(jax.random.key(0), batch)
    # Hits count 2 and are forgotten right after serving (an entry shared by two equivalent programs is
    # served once, then missed), so the third call evaluates again.
    assert hit["evaluated"] < first["evaluated"]
    _, again = ev(jax.random.key(0), batch)
    assert again["evaluated"] > hit["evaluated"]
    state = ev.get_state()
    fresh = zero.ProgramEvaluator(CFG, tasks, fec=zero.FECConfig(forget_every=2), backend="select")
    fresh.set_state(state)
    assert len(fresh.cache) == len(ev.cache)
    assert list(fresh.cache.items()) == list(ev.cache.items())
    with pytest.raises(ValueError, match="corrupt cache state"):
        fresh.set_state({"cache": dict(state["cache"], fitness=np.zeros(3))})


def test_train_budget_rejects_costly_programs(tasks):
    cfg = zero.algorithms.neural_network_config(features=4)
    nn = zero.algorithms.neural_network_program(cfg)
    costly_learn = "\n".join(["  m1 = outer(v7, v0)"] * 11)
    text = zero.algorithms.neural_network_text().split("def Learn():")[0] + "def Learn():\n" + costly_learn + "\n"
    costly = zero.parse_program(text, cfg)
    pop = zero.stack_programs([nn, costly])
    setup, step = component_costs(pop)
    assert step[1] > step[0]
    np.testing.assert_array_equal(within_train_budget(pop, 1000, 1.0), [True, False])
    t = zero.teacher_network_tasks(jax.random.key(0), 1, 4, N, M)
    ev = zero.ProgramEvaluator(cfg, t, fec=None, backend="cond", train_budget_factor=1.0)
    fit, info = ev(jax.random.key(0), pop)
    assert fit[1] == 0.0 and fit[0] > 0.0 and info["evaluated"] == 1


def test_search_with_the_cache_resumes_exactly(tmp_path, tasks):
    space = zero.ProgramSpace(CFG)

    def go(workdir, evaluations):
        ev = zero.ProgramEvaluator(CFG, tasks, backend="select")
        strat = search.RegularizedEvolution(space, population_size=16, tournament_size=4, batch_size=8)
        return search.run(space, strat, ev, jax.random.key(5), max_evaluations=evaluations, workdir=workdir,
                          checkpoint_every_seconds=0, extra_state=ev), ev

    straight, ev_a = go(None, 64)
    go(tmp_path, 32)
    resumed, ev_b = go(tmp_path, 64)
    assert resumed.resumed_from is not None
    np.testing.assert_array_equal(np.asarray(resumed.state.fitness), np.asarray(straight.state.fitness))
    for a, b in zip(jax.tree_util.tree_leaves(resumed.state.population),
                    jax.tree_util.tree_leaves(straight.state.population)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed.counters["train_steps"] == straight.counters["train_steps"]
    assert list(ev_b.cache.items()) == list(ev_a.cache.items())


def test_hurdles_stop_weak_programs_after_the_first_stage():
    tasks4 = zero.linear_regression_tasks(jax.random.key(0), 4, 4, N, M)
    progs = jax.tree_util.tree_map(np.asarray, random_programs.random_programs(jax.random.key(1), CFG, B))
    plain = zero.ProgramEvaluator(CFG, tasks4, fec=None, backend="select")
    hurdled = zero.ProgramEvaluator(CFG, tasks4, fec=None, backend="select",
                                    hurdle=zero.HurdleConfig(num_tasks=1, percentile=50, min_history=4))
    full, info_full = plain(jax.random.key(2), progs)
    hurdled(jax.random.key(2), progs)            # fills the history: no hurdle yet
    fit, info = hurdled(jax.random.key(2), progs)
    assert info["train_steps"] < info_full["train_steps"]
    stopped = ~np.isclose(fit, full)
    assert stopped.any()
    # The survivors' fitness is exactly the full evaluation's.
    np.testing.assert_allclose(fit[~stopped], full[~stopped], rtol=1e-6)
    with pytest.raises(ValueError, match="num_tasks"):
        zero.ProgramEvaluator(CFG, tasks4, hurdle=zero.HurdleConfig(num_tasks=4))


def test_fingerprints_hash_exact_errors_task_and_train_length():
    from azjax.zero.fec import fingerprints
    rng = np.random.default_rng(0)
    tr, va = rng.random((50, 4, 10)).astype(np.float32), rng.random((50, 4, 10)).astype(np.float32)
    keys = fingerprints(tr, va, 100)
    assert keys.shape == (50, 4) and keys.dtype.itemsize == 16
    np.testing.assert_array_equal(keys, fingerprints(tr.copy(), va.copy(), 100))
    assert len({k.tobytes() for k in keys.reshape(-1)}) == 200
    bumped = tr.copy()
    bumped[7, 2, 3] = np.nextafter(bumped[7, 2, 3], np.float32(2))  # one ulp
    changed = fingerprints(bumped, va, 100) != keys
    assert changed[7, 2] and changed.sum() == 1
    same_errors = np.broadcast_to(tr[:1, :1], (1, 4, 10))  # equal errors on every task: keys still differ
    same_valid = np.broadcast_to(va[:1, :1], (1, 4, 10))
    assert len({k.tobytes() for k in fingerprints(same_errors, same_valid, 100).reshape(-1)}) == 4
    assert not np.any(fingerprints(tr, va, 101) == keys)


def _tasks_of(eval_type):
    """Small linear-regression tasks, or their labels thresholded into 2 classes ("accuracy") or 3 ("multiclass")."""
    tasks = zero.linear_regression_tasks(jax.random.key(0), T, 4, N, M)
    if eval_type == "rms":
        return tasks
    if eval_type == "accuracy":
        labels = lambda y: (y > 0).astype(y.dtype)  # noqa: E731
    else:
        labels = lambda y: np.digitize(np.asarray(y), [-0.5, 0.5]).astype(np.asarray(y).dtype)  # noqa: E731
    return zero.Tasks(tasks.train_features, labels(tasks.train_labels), tasks.valid_features,
                      labels(tasks.valid_labels), eval_type=eval_type,
                      num_classes=3 if eval_type == "multiclass" else 0)


@pytest.mark.parametrize("eval_type,dtype", [("rms", "float32"), ("rms", "float64"), ("accuracy", "float32"),
                                             ("accuracy", "float64")])
def test_native_kernel_fingerprints_equal_the_predictions_path(eval_type, dtype):
    """The native backend hashes the FEC probe's errors in the kernel; its keys must be the bytes that
    `fec.fingerprints` gives from the predictions (NaN/inf predictions included); batch padding rows get zero
    words."""
    import dataclasses

    from azjax.zero import backends
    from azjax.zero.backends import native
    from azjax.zero.evaluate import prepare_tasks
    from azjax.zero.fec import _KEY, fingerprints
    from azjax.zero.search_evaluator import _sigmoid

    assert native.available(), native.reason()  # a missing kernel is a broken build, not a skip
    cfg = dataclasses.replace(CFG, dtype=dtype, learn_ops=CFG.learn_ops + ("SCALAR_DIVISION", "SCALAR_EXP"))
    backend = backends.resolve("native", cfg, T)
    with jax.enable_x64(dtype == "float64"):
        tasks = _tasks_of(eval_type)
        arrays = prepare_tasks(tasks, cfg)
        progs = jax.tree_util.tree_map(np.asarray, random_programs.random_programs(jax.random.key(3), cfg, 64))
        keys = jax.random.key(5)
        active = np.arange(64) < 60  # the last rows are batch padding
        fp_fn = jax.jit(backend.make_fingerprint_fn(cfg, eval_type, 1234))
        words = np.asarray(fp_fn(progs, *arrays, keys, active))
        _, preds = jax.jit(backend.make_evaluate_fn(cfg, eval_type, 1, True))(progs, *arrays, keys, active)
    train, valid = np.asarray(preds["train"])[:, :, 0], np.asarray(preds["valid"])[:, :, 0]
    ty, vy = np.asarray(tasks.train_labels)[None], np.asarray(tasks.valid_labels)[None]
    train_err = np.abs(ty - train)
    valid_err = (((vy > 0.5) == (_sigmoid(valid) > 0.5)).astype(train_err.dtype) if eval_type == "accuracy"
                 else np.abs(vy - valid))
    assert np.isnan(train_err).any() and np.isfinite(train_err).any()  # both kinds of probe are covered
    expected = fingerprints(train_err, valid_err, 1234)
    got = np.ascontiguousarray(words).view(_KEY)[..., 0]
    np.testing.assert_array_equal(got[active].view(np.uint8), expected[active].view(np.uint8))
    assert not np.asarray(words)[~active].any()


@pytest.mark.parametrize("eval_type,dtype", [("rms", "float32"), ("accuracy", "float64"),
                                             ("multiclass", "float32")])
def test_native_host_fn_equals_the_jitted_kernel(eval_type, dtype):
    """`ProgramEvaluator` calls the native kernel on host arrays (no jit, no padding): its fitness and FEC
    fingerprints must be the jitted kernel's, random ops (lane keys derived from the base key) included."""
    from azjax.zero import backends
    from azjax.zero.backends import native
    from azjax.zero.evaluate import prepare_tasks

    assert native.available(), native.reason()  # a missing kernel is a broken build, not a skip
    ops = ("SCALAR_CONST_SET", "SCALAR_UNIFORM_SET", "VECTOR_GAUSSIAN_SET")
    cfg = dataclasses.replace(CFG, dtype=dtype, setup_ops=ops,
                              learn_ops=CFG.learn_ops + ("SCALAR_DIVISION", "VECTOR_UNIFORM_SET"),
                              num_classes=3 if eval_type == "multiclass" else 0)
    backend = backends.resolve("native", cfg, T)
    with jax.enable_x64(dtype == "float64"):
        tasks = _tasks_of(eval_type)
        arrays = prepare_tasks(tasks.replace(num_epochs=2), cfg)
        progs = jax.tree_util.tree_map(np.asarray, random_programs.random_programs(jax.random.key(3), cfg, 40))
        key = jax.random.key(5)
        active = np.arange(40) % 7 != 3
        host = backend.make_host_fn(cfg, eval_type, 2)
        jitted = jax.jit(backend.make_evaluate_fn(cfg, eval_type, 2))(progs, *arrays, key, active)
        got = host(progs, *arrays, np.asarray(jax.random.key_data(key)), active)
        if eval_type != "multiclass":
            fp_host = backend.make_host_fn(cfg, eval_type, 1, 777)
            with pytest.raises(ValueError, match="orders"):  # two epochs of orders for a one-epoch probe
                fp_host(progs, *arrays, np.asarray(jax.random.key_data(key)), active)
            arrays = prepare_tasks(tasks, cfg)
            fp_jit = jax.jit(backend.make_fingerprint_fn(cfg, eval_type, 777))(progs, *arrays, key, active)
            fp = fp_host(progs, *arrays, np.asarray(jax.random.key_data(key)), active)
            np.testing.assert_array_equal(fp[active], np.asarray(fp_jit)[active])
    assert got.dtype == np.dtype(dtype) and got.shape == (40, T)
    np.testing.assert_array_equal(got[active].view(np.uint8), np.asarray(jitted)[active].view(np.uint8))
    assert np.unique(got[active]).size > 2  # the programs differ


def test_live_code_keys_see_only_what_the_kernel_runs():
    """Equal keys for programs that differ only in dead code; different keys when live code differs;
    programs with a live random op are flagged (their probe depends on their row)."""
    from azjax.zero.backends import native

    assert native.available(), native.reason()  # a missing kernel is a broken build, not a skip
    text = ("def Setup():\n  s2 = 0.5\ndef Predict():\n  s1 = dot(v0, v1)\n"
            "def Learn():\n  s3 = s0 - s1\n  s3 = s2 * s3\n  v2 = s3 * v0\n  v1 = v1 + v2\n")
    cfg = dataclasses.replace(CFG, setup_ops=CFG.setup_ops + ("SCALAR_GAUSSIAN_SET",), learn_size=6)
    live = zero.parse_program(text, cfg)
    other = zero.parse_program(text.replace("s2 = 0.5", "s2 = 0.25"), cfg)
    noisy = zero.parse_program(text.replace("s2 = 0.5", "s2 = gaussian(0.5, 0.1)"), cfg)
    progs = zero.stack_programs([live, live, other, noisy])
    keys, has_random = native.NativeBackend().live_code_keys(jax.device_get(progs), cfg)
    shifted = zero.parse_program(text.replace("  s3 = s2 * s3\n", "  s3 = s2 * s3\n  s2 = s2 * s2\n"), cfg)
    same = zero.parse_program(text + "  s3 = s1 * s1\n", cfg)  # a dead instruction after the live ones
    keys2, _ = native.NativeBackend().live_code_keys(jax.device_get(zero.stack_programs([live, same, shifted])), cfg)
    assert keys2[0].tobytes() == keys2[1].tobytes()
    assert keys2[0].tobytes() != keys2[2].tobytes()  # a live instruction more
    assert keys[0].tobytes() != keys[2].tobytes()  # a live constant differs
    np.testing.assert_array_equal(has_random, [False, False, False, True])


def test_probe_memo_does_not_change_the_search():
    """The native evaluator skips the FEC probe of programs whose pruned code it probed before; the search
    (fitness, counters, cache contents) is the same with and without it, random ops included."""
    from azjax.zero.backends import native

    assert native.available(), native.reason()  # a missing kernel is a broken build, not a skip
    cfg = dataclasses.replace(CFG, setup_ops=CFG.setup_ops + ("SCALAR_UNIFORM_SET", "VECTOR_GAUSSIAN_SET"),
                              predict_ops=CFG.predict_ops + ("SCALAR_GAUSSIAN_SET", "SCALAR_SUM"))
    tasks = zero.linear_regression_tasks(jax.random.key(0), T, 4, N, M)
    space = zero.ProgramSpace(cfg, initial="RANDOM")
    strategy = search.RegularizedEvolution(space, population_size=32, tournament_size=4, batch_size=16)
    runs = []
    for memo in (True, False):
        ev = zero.ProgramEvaluator(cfg, tasks, backend="native")
        if not memo:
            ev.backend = type("NoMemo", (type(ev.backend),), {"live_code_keys": lambda self, p, c: None})()
        res = search.run(space, strategy, ev, jax.random.key(4), max_evaluations=32 + 16 * 12)
        runs.append((jax.device_get(res.state), dict(ev.counters), ev.cache.get_state()))
        if memo:
            assert len(ev._probe_memo) > 0
    (s1, c1, k1), (s2, c2, k2) = runs
    for a, b in zip(jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(s2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert c1 == c2
    np.testing.assert_array_equal(k1["keys"], k2["keys"])
    np.testing.assert_array_equal(k1["fitness"], k2["fitness"])


def test_evaluator_stages(monkeypatch):
    """The pipeline's small stages on their own: dedup keeps first appearances (native hashes and the NumPy
    fallback alike), leaders group equal keys."""
    from azjax.zero import search_evaluator
    from azjax.zero.fec import _KEY
    from azjax.zero.search_evaluator import deduplicate, fingerprint_leaders, probe_errors

    progs = jax.tree_util.tree_map(np.asarray, random_programs.random_programs(jax.random.key(9), CFG, 4))
    batch = jax.tree_util.tree_map(lambda x: x[np.array([2, 0, 2, 3, 0, 1])], progs)
    unique, inverse = deduplicate(batch)
    np.testing.assert_array_equal(unique.setup.size, progs.setup.size[np.array([2, 0, 3, 1])])
    for a, b in zip(jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x: x[inverse], unique)),
                    jax.tree_util.tree_leaves(batch)):
        np.testing.assert_array_equal(a, b)
    many = jax.tree_util.tree_map(lambda x: x[np.random.RandomState(0).randint(0, 4, 300)], progs)
    many.learn.data[7, 0, 0] = -0.0  # differs from +0 only in its bytes: another program to dedup
    native = deduplicate(many)
    native_lib = search_evaluator._native_lib()
    assert native_lib is not None  # the kernel is built where the tests run
    monkeypatch.setattr(search_evaluator, "_native_lib", lambda: None)
    fallback = deduplicate(many)
    assert native[0].setup.size.shape[0] == 5
    for a, b in zip(jax.tree_util.tree_leaves(native), jax.tree_util.tree_leaves(fallback)):
        np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
    keys = np.zeros((5, 2), _KEY)
    raw = keys.view(np.uint8).reshape(5, -1)
    raw[:, 0] = [7, 8, 7, 7, 8]
    for lib in (None, native_lib):  # the NumPy fallback, then the native hashes
        monkeypatch.setattr(search_evaluator, "_native_lib", lambda lib=lib: lib)
        same_as, leader = fingerprint_leaders(keys, np.array([True, True, True, False, True]))
        np.testing.assert_array_equal(same_as, [0, 1, 0, 3, 1])
        np.testing.assert_array_equal(leader, [True, True, False, True, False])
    tr, va = probe_errors(np.array([[[0.2, np.nan]]]), np.array([[[3.0, -1.0]]]), np.array([[[1.0, 0.0]]]),
                          np.array([[[1.0, 1.0]]]), "accuracy")
    np.testing.assert_array_equal(va, [[[1.0, 0.0]]])  # sigmoid(3) > 0.5 is right, sigmoid(-1) is wrong
    assert tr[0, 0, 0] == pytest.approx(0.8) and np.isnan(tr[0, 0, 1])


def test_probe_memo_remembers_until_full():
    """The probe memo returns what was inserted for a code key, skips rows not wanted or not to be inserted,
    keeps the first insertion of a key, and starts over when full (a cache of a pure function)."""
    from azjax.zero.fec import _KEY
    from azjax.zero.search_evaluator import _ProbeMemo

    T, n = 3, 40
    memo = _ProbeMemo(T, capacity=32)
    rng = np.random.RandomState(0)
    code = rng.randint(0, 2**31, (n, 2)).astype(np.uint64).view(np.dtype((np.void, 16)))[:, 0]
    keys = np.zeros((n, T), _KEY)
    keys.view(np.uint8)[...] = rng.randint(0, 256, keys.view(np.uint8).shape)
    keys_view = keys.view(np.uint8).reshape(n, -1)
    rows = np.arange(n) % 5 != 0  # every fifth row is not inserted
    memo.insert(code[:20], keys[:20], rows[:20])
    assert len(memo) == int(rows[:20].sum())
    got, missing = memo.lookup(code[:20], np.ones(20, bool))
    np.testing.assert_array_equal(missing, ~rows[:20])
    np.testing.assert_array_equal(got.view(np.uint8).reshape(20, -1)[rows[:20]], keys_view[:20][rows[:20]])
    _, missing = memo.lookup(code[:20], np.arange(20) < 10)  # rows not wanted are never missing
    assert not missing[10:].any()
    other = keys.copy()
    other.view(np.uint8)[...] ^= 1
    memo.insert(code[:20], other[:20], rows[:20])  # known keys keep their first fingerprints
    got, _ = memo.lookup(code[:20], rows[:20])
    np.testing.assert_array_equal(got.view(np.uint8).reshape(20, -1)[rows[:20]], keys_view[:20][rows[:20]])
    memo.insert(code[20:], keys[20:], np.ones(20, bool))  # 16 + 20 > 32: full after 16 more, starts over
    assert len(memo) == 4
    _, missing = memo.lookup(code, np.ones(n, bool))
    np.testing.assert_array_equal(~missing, np.arange(n) >= 36)
