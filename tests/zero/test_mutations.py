"""Mutations and initial programs (§6.4).

Semantics per type, validity, type frequencies, constant steps.

Compiles are the cost here, so a few jitted functions are shared: SEMANTICS applies a forced
mutation type (one compile serves all eight types), and one `mutate_with_type` per config serves
validity and frequency checks together.
"""

import functools

import jax
import numpy as np
import pytest

from azjax import zero
from azjax.zero import initial_programs as IP
from azjax.zero import mutations as M
from azjax.zero import ops as ops_lib

N = 200  # samples per mutation type in the semantics batch

DATA_OPS = (
    "SCALAR_CONST_SET",
    "VECTOR_CONST_SET",
    "MATRIX_CONST_SET",
    "SCALAR_UNIFORM_SET",
    "VECTOR_UNIFORM_SET",
    "SCALAR_GAUSSIAN_SET",
    "MATRIX_GAUSSIAN_SET",
)
# Every component holds SCALAR_CONST_SET so the constant-step test can fill a whole program with it.
CFG = zero.ZeroConfig(
    num_scalars=5,
    num_vectors=4,
    num_matrices=2,
    features=4,
    setup_ops=DATA_OPS + ("SCALAR_SUM",),
    predict_ops=("SCALAR_CONST_SET", "SCALAR_ABS", "VECTOR_INNER_PRODUCT", "MATRIX_VECTOR_PRODUCT"),
    learn_ops=("SCALAR_CONST_SET", "SCALAR_DIFF", "VECTOR_SUM", "VECTOR_NORM", "MATRIX_TRANSPOSE"),
    setup_size=6,
    predict_size=4,
    learn_size=6,
)
MCFG = M.MutationConfig(
    types=M.MUTATION_TYPES, setup_size_min=1, predict_size_min=1, learn_size_min=1
)
SIZES = {"setup": (1, 6), "predict": (1, 4), "learn": (1, 6)}  # (min, max) as resolved from MCFG
C = zero.program.COMPONENTS


@functools.partial(jax.jit, static_argnums=(1, 2))
def _random_programs(keys, cfg, sizes):
    return jax.vmap(lambda k: IP.initial_program(k, cfg, "RANDOM", sizes))(keys)


SEMANTICS = jax.jit(jax.vmap(lambda k, p, t: M.apply_mutation(k, p, CFG, MCFG, t)))


def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _with_sizes(progs, sizes, cfg):
    """Host-side: set per-component sizes (dict of int arrays) and re-canonicalize."""
    comps = []
    for c in C:
        comp = progs.component(c)
        comps.append(zero.Component(comp.instructions, comp.data, np.asarray(sizes[c], np.int32)))
    return _np(zero.canonicalize(zero.Program(*comps), cfg, xp=np))


def _rows(prog, c, i):
    """The used instructions of component c of program i, as hashable tuples."""
    comp = prog.component(c)
    n = int(comp.size[i])
    return [
        tuple(comp.instructions[i, k].tolist()) + tuple(np.round(comp.data[i, k], 6).tolist())
        for k in range(n)
    ]


def _changed(before, after, i):
    return [c for c in C if _rows(before, c, i) != _rows(after, c, i)]


def _delete(rows, k):
    return rows[:k] + rows[k + 1 :]


@pytest.fixture(scope="module")
def semantics():
    """All eight types forced over N random programs each (random sizes exercise the guards)."""
    n = N * len(M.MUTATION_TYPES)
    key = jax.random.key(42)
    progs = _np(_random_programs(jax.random.split(key, n), CFG, None))
    rng = np.random.default_rng(0)
    sizes = {c: rng.integers(0, CFG.size(c) + 1, n) for c in C}
    before = _with_sizes(progs, sizes, CFG)
    types = np.repeat(np.arange(len(M.MUTATION_TYPES), dtype=np.int32), N)
    after = _np(SEMANTICS(jax.random.split(jax.random.fold_in(key, 1), n), before, types))
    zero.validate_program(after, CFG)
    return before, after, types


def _indices(types, name):
    return np.flatnonzero(types == M.MUTATION_TYPES.index(name))


def test_type_weights_and_config_errors():
    assert M.MutationConfig().type_weights == tuple((t, 1 / 3) for t in M.DEFAULT_TYPES)
    dup = M.MutationConfig(types=("ALTER_PARAM", "alter_param_mutation_action", "IDENTITY"))
    assert dup.type_weights == (("ALTER_PARAM", 2 / 3), ("IDENTITY", 1 / 3))
    paper = dict(M.MutationConfig(paper_variant=True).type_weights)
    assert paper["REMOVE_INSTRUCTION"] == pytest.approx(2 * paper["INSERT_INSTRUCTION"])
    assert sum(paper.values()) == pytest.approx(1.0)
    assert MCFG.size_bounds(CFG) == SIZES
    hash(MCFG)
    bad = [
        (dict(types=("ALTER_PARAM", "SWAP")), "MutationConfig.types: unknown mutation type 'SWAP'"),
        (dict(types=()), "MutationConfig.types must list"),
        (dict(types="ALTER_PARAM"), "MutationConfig.types must be a sequence"),
        (dict(types=("IDENTITY",), paper_variant=True), "MutationConfig.types must be None"),
        (dict(paper_variant=1), "MutationConfig.paper_variant"),
        (dict(learn_size_min=-1), "MutationConfig.learn_size_min"),
        (dict(setup_size_min=3, setup_size_max=2), "MutationConfig.setup_size_min"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            M.MutationConfig(**kwargs)
    with pytest.raises(ValueError, match="MutationConfig.predict_size_max"):
        M.MutationConfig(predict_size_max=6).check(CFG)  # array length 4: max may be at most 5
    M.MutationConfig(predict_size_max=5).check(CFG)
    with pytest.raises(ValueError, match="MutationConfig.learn_size_min"):
        M.MutationConfig(learn_size_min=7).check(CFG)
    frozen = zero.ZeroConfig(setup_ops=(), predict_ops=(), learn_ops=())
    with pytest.raises(ValueError, match="all empty"):
        M.MutationConfig().check(frozen)
    M.MutationConfig(types=("IDENTITY",)).check(frozen)
    with pytest.raises(
        ValueError, match="MutationConfig.types"
    ):  # fails at trace time, before compiling
        M.mutate(jax.random.key(0), zero.empty_program(frozen), frozen, M.MutationConfig())


def test_identity_and_canonical_results(semantics):
    before, after, types = semantics
    canonical = _np(zero.canonicalize(after, CFG, xp=np))
    for a, b in zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(canonical)):
        np.testing.assert_array_equal(a, b)
    for i in _indices(types, "IDENTITY"):
        assert not _changed(before, after, i)


def test_alter_param_changes_one_field_of_one_instruction(semantics):
    before, after, types = semantics
    changed = 0
    for i in _indices(types, "ALTER_PARAM"):
        comps = _changed(before, after, i)
        assert len(comps) <= 1
        if not comps:
            continue
        changed += 1
        c = comps[0]
        old, new = _rows(before, c, i), _rows(after, c, i)
        diff = [k for k in range(len(old)) if old[k] != new[k]]
        assert len(old) == len(new) and len(diff) == 1
        a, b = old[diff[0]], new[diff[0]]
        assert a[0] == b[0]  # the op never changes
        fields = [f for f in range(1, 7) if a[f] != b[f]]
        name = ops_lib.OPS[a[0]].name
        if name.endswith("UNIFORM_SET") and set(fields) == {4, 5}:
            # low or high altered, then (low, high) re-sorted: one old value survives, in sorted
            # order
            assert b[4] <= b[5] and (a[4] in b[4:6] or a[5] in b[4:6])
        else:
            assert len(fields) == 1, (a, b)
        if name.endswith("UNIFORM_SET") and fields and fields[0] >= 4:
            assert b[4] <= b[5]
        if name.endswith("GAUSSIAN_SET") and fields == [5]:
            assert np.sign(b[5]) == np.sign(a[5])  # the sd is only log-scaled, never flipped
    assert (
        changed > 0.6 * N
    )  # address re-draws may hit the old value; most alterations change something


def test_randomize_instruction_replaces_at_most_one(semantics):
    before, after, types = semantics
    changed = 0
    for i in _indices(types, "RANDOMIZE_INSTRUCTION"):
        comps = _changed(before, after, i)
        assert len(comps) <= 1
        for c in comps:
            old, new = _rows(before, c, i), _rows(after, c, i)
            assert len(old) == len(new) and sum(x != y for x, y in zip(old, new)) == 1
            changed += 1
    assert changed > 0.6 * N


def test_randomize_component_and_algorithm_keep_sizes(semantics):
    before, after, types = semantics
    same = np.concatenate(
        [_indices(types, t) for t in ("RANDOMIZE_COMPONENT_FUNCTION", "RANDOMIZE_ALGORITHM")]
    )
    for c in C:
        np.testing.assert_array_equal(before.component(c).size[same], after.component(c).size[same])
    for i in _indices(types, "RANDOMIZE_COMPONENT_FUNCTION"):
        assert len(_changed(before, after, i)) <= 1
    all_changed = 0
    for i in _indices(types, "RANDOMIZE_ALGORITHM"):
        if all(int(before.component(c).size[i]) >= 2 for c in C):
            all_changed += len(_changed(before, after, i)) == 3
            assert len(_changed(before, after, i)) >= 2
    assert all_changed > 0


def test_insert_shifts_the_tail_and_respects_the_guard(semantics):
    before, after, types = semantics
    grown = 0
    for i in _indices(types, "INSERT_INSTRUCTION"):
        comps = _changed(before, after, i)
        assert len(comps) <= 1
        can = [c for c in C if int(before.component(c).size[i]) < SIZES[c][1] - 1]
        if not can:
            assert not comps
        for c in comps:
            assert c in can
            old, new = _rows(before, c, i), _rows(after, c, i)
            assert len(new) == len(old) + 1
            assert any(_delete(new, k) == old for k in range(len(new)))
            grown += 1
    assert grown > 0.3 * N


def test_remove_shifts_the_tail_and_respects_the_guard(semantics):
    before, after, types = semantics
    shrunk = 0
    for i in _indices(types, "REMOVE_INSTRUCTION"):
        comps = _changed(before, after, i)
        assert len(comps) <= 1
        can = [c for c in C if int(before.component(c).size[i]) > SIZES[c][0]]
        if not can:
            assert not comps
        for c in comps:
            assert c in can
            old, new = _rows(before, c, i), _rows(after, c, i)
            assert len(new) == len(old) - 1
            assert any(_delete(old, k) == new for k in range(len(old)))
            shrunk += 1
    assert shrunk > 0.3 * N


def test_trade_inserts_then_removes_without_guards(semantics):
    before, after, types = semantics
    traded = full = 0
    for i in _indices(types, "TRADE_INSTRUCTION"):
        comps = _changed(before, after, i)
        assert len(comps) <= 1
        for c in comps:
            old, new = _rows(before, c, i), _rows(after, c, i)
            assert len(new) == len(old)
            assert any(
                _delete(new, j) == _delete(old, k) for j in range(len(new)) for k in range(len(old))
            )
            traded += 1
            # at the array length the reference's vector briefly holds size + 1 instructions
            full += len(old) == CFG.size(c)
    assert traded > 0.3 * N and full > 0


def _program_of(cfg, setup, predict, learn):
    return zero.make_program(cfg, setup=setup, predict=predict, learn=learn)


def test_constant_steps_are_log_normal_with_sign_flips():
    """ALTER_PARAM on `s2 = 1.0` everywhere.

    Half the alterations change the data: x exp(N(0, 1)), or a sign flip with probability 0.1.
    """
    const = ("SCALAR_CONST_SET", 0, 0, 2, 1.0)
    prog = _program_of(CFG, [const] * 6, [const] * 4, [const] * 6)
    n = N * len(M.MUTATION_TYPES)  # the semantics batch size: SEMANTICS compiles once
    progs = jax.tree_util.tree_map(lambda x: np.broadcast_to(np.asarray(x), (n,) + x.shape), prog)
    alter = np.full(n, M.MUTATION_TYPES.index("ALTER_PARAM"), np.int32)
    out = _np(SEMANTICS(jax.random.split(jax.random.key(7), n), progs, alter))
    ratios = np.concatenate([out.component(c).data[:, :, 0].ravel() for c in C])
    ratios = ratios[ratios != 1.0]
    # half of the alterations re-draw the output address instead
    assert 0.45 < ratios.size / n < 0.55
    flips = np.mean(ratios == -1.0)
    assert 0.06 < flips < 0.14
    steps = np.log(ratios[ratios > 0])
    assert abs(np.median(steps)) < 0.15 and 0.88 < np.std(steps) < 1.12
    assert np.all(ratios[ratios != -1.0] > 0)  # scaling never changes the sign


def _chi2_ok(counts, probs):
    expected = np.asarray(probs) * counts.sum()
    chi2 = np.sum((counts - expected) ** 2 / expected)
    return chi2 < 3 * len(probs) + 10  # far above any plausible fluctuation, far below a wrong rule


ALL_OPS = tuple(op.name for op in ops_lib.OPS[1:])
CFG_ALL = zero.ZeroConfig(
    num_scalars=5,
    num_vectors=4,
    num_matrices=3,
    features=3,
    setup_ops=ALL_OPS,
    predict_ops=ALL_OPS,
    learn_ops=ALL_OPS,
    setup_size=8,
    predict_size=8,
    learn_size=8,
)


PAPER_MCFG = M.MutationConfig(
    paper_variant=True, setup_size_min=1, predict_size_min=1, learn_size_min=1
)
PAPER_STEP = jax.jit(jax.vmap(lambda k, p: M.mutate_with_type(k, p, CFG, PAPER_MCFG)))


@pytest.mark.parametrize("name", ["all-65-ops", "empty-learn", "paper"])
def test_every_mutation_is_valid_and_types_are_uniform(name, semantics):
    n, rounds = N * len(M.MUTATION_TYPES), 3
    key = jax.random.key(11)
    if name == "all-65-ops":
        cfg = CFG_ALL
        mcfg = M.MutationConfig(
            types=M.MUTATION_TYPES,
            setup_size_min=0,
            predict_size_min=0,
            learn_size_min=0,
            setup_size_max=9,
            predict_size_max=9,
            learn_size_max=9,
        )
        full = _np(_random_programs(jax.random.split(key, n), cfg, None))
        rng = np.random.default_rng(1)
        progs = _with_sizes(full, {c: rng.integers(0, 9, n) for c in C}, cfg)
    elif name == "empty-learn":
        cfg = zero.algorithms.linear_regression_config(learn_ops=())
        mcfg = M.MutationConfig(
            types=M.MUTATION_TYPES + ("IDENTITY",), setup_size_min=0, predict_size_min=0
        )
        progs = jax.vmap(lambda k: IP.initial_program(k, cfg, "NO_OP", (3, 1, 2)))(
            jax.random.split(key, n)
        )
    else:
        cfg, mcfg, step = CFG, PAPER_MCFG, PAPER_STEP
        progs = semantics[0]  # random programs of random sizes
    if name != "paper":
        step = jax.jit(jax.vmap(lambda k, p: M.mutate_with_type(k, p, cfg, mcfg)))
    counts = np.zeros(len(mcfg.type_weights))
    start = _np(progs)
    for r in range(rounds):
        progs, types = step(jax.random.split(jax.random.fold_in(key, r), n), progs)
        zero.validate_program(progs, cfg)
        counts += np.bincount(np.asarray(types), minlength=counts.size)
    assert _chi2_ok(counts, [w for _, w in mcfg.type_weights]), (counts, mcfg.type_weights)
    progs = _np(progs)
    if name == "empty-learn":
        # the frozen component is never touched; the others evolved away from NO_OPs
        np.testing.assert_array_equal(progs.learn.instructions, start.learn.instructions)
        np.testing.assert_array_equal(progs.learn.size, start.learn.size)
        assert np.mean(np.any(progs.setup.instructions[..., 0] != 0, axis=-1)) > 0.3
    if name == "all-65-ops":
        used = np.unique(
            np.concatenate([progs.component(c).instructions[..., 0].ravel() for c in C])
        )
        assert used.size == 65  # every op shows up (and NO_OP padding)
        sizes = np.concatenate([progs.component(c).size for c in C])
        assert sizes.min() == 0 and sizes.max() == 8  # max 9 -> insertion fills the 8-row arrays


def test_paper_constant_steps_are_uniform_in_half_to_two():
    const = ("SCALAR_CONST_SET", 0, 0, 2, 1.0)
    prog = _program_of(CFG, [const] * 6, [const] * 4, [const] * 6)
    n = N * len(
        M.MUTATION_TYPES
    )  # the batch size of the validity test, so PAPER_STEP compiles once
    progs = jax.tree_util.tree_map(lambda x: np.broadcast_to(np.asarray(x), (n,) + x.shape), prog)
    out, types = PAPER_STEP(jax.random.split(jax.random.key(3), n), progs)
    alter = np.asarray(types) == [t for t, _ in PAPER_MCFG.type_weights].index("ALTER_PARAM")
    out = jax.tree_util.tree_map(lambda x: np.asarray(x)[alter], out)
    ratios = np.concatenate([out.component(c).data[:, :, 0].ravel() for c in C])
    ratios = ratios[(ratios != 1.0) & (ratios != 0.0)]
    assert ratios.size > 200  # ~1600 / 3 ALTER_PARAM, half of them on the data
    assert 0.04 < np.mean(ratios == -1.0) < 0.16
    scaled = ratios[ratios != -1.0]
    assert scaled.min() >= 0.5 and scaled.max() <= 2.0
    assert abs(np.median(scaled) - 1.25) < 0.15  # U[0.5, 2] has median 1.25


def test_initial_programs():
    cfg = zero.algorithms.linear_regression_config()
    key = jax.random.key(0)
    noop = IP.initial_program(key, cfg, "NO_OP", (3, 1, 2))
    assert [int(noop.component(c).size) for c in C] == [3, 1, 2]
    assert not np.any(np.asarray(noop.setup.instructions))
    rand = jax.jit(lambda k: IP.initial_program(k, cfg, "RANDOM", (5, 1, 4)))(key)
    zero.validate_program(rand, cfg)
    assert [int(rand.component(c).size) for c in C] == [5, 1, 4]
    assert np.all(np.asarray(rand.setup.instructions[:5, 0]) != 0)
    lin = IP.initial_program(key, cfg, "LINEAR", (0, 0, 0))
    assert zero.format_program(lin, cfg) == zero.algorithms.linear_regression_text()
    padded = IP.initial_program(key, cfg, "LINEAR", (3, 2, 4))
    assert zero.format_program(padded, cfg) == zero.algorithms.linear_regression_text().replace(
        "def Predict():", "  no_op\n  no_op\ndef Predict():"
    ).replace("def Learn():", "  no_op\ndef Learn():")
    with pytest.raises(
        ValueError, match="initial=NEURAL_NET: the hand-written program does not fit"
    ):
        IP.initial_program(key, cfg, "NEURAL_NET")
    with pytest.raises(ValueError, match="initial kind 'LINEAR_REGRESSION' unknown"):
        IP.initial_program(key, cfg, "LINEAR_REGRESSION")
    with pytest.raises(ValueError, match="sizes: the predict size 3 must lie in"):
        IP.initial_program(key, cfg, "NO_OP", (1, 3, 1))
