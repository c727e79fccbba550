"""The native mutation kernel gives the same bits as the XLA mutation code.

`mutations.mutate(..., implementation="native")` runs the control part of a mutation in C++
(`backends/mutation_kernel.cc`); "auto", the default, picks it on the CPU. Search trajectories must not
depend on that choice, so every comparison here is bitwise (the sign of zero and NaN payloads included),
over many generations of mutated programs, every mutation type, both dtypes, the paper's variant and
configs with every op.
"""
import dataclasses
import functools
import warnings

import jax
import numpy as np
import pytest

from azjax import zero
from azjax.zero import mutations as M
from azjax.zero import ops as ops_lib
from azjax.zero import random_programs as R
from azjax.zero.backends import native



def test_native_mutation_kernel_is_built():
    # The install builds it with the evaluation kernel; a missing kernel is a broken build, not a skip.
    assert native.mutations_available(), native.reason() or "the kernel library predates the mutation kernel"

ALL_OPS = tuple(op.name for op in ops_lib.OPS[1:])
EVERY_OP = zero.ZeroConfig(num_scalars=5, num_vectors=4, num_matrices=2, features=4, setup_ops=ALL_OPS,
                           predict_ops=ALL_OPS, learn_ops=ALL_OPS, setup_size=7, predict_size=5, learn_size=6)
DEMO = zero.ZeroConfig(setup_ops=zero.algorithms.LINEAR_OPS, predict_ops=zero.algorithms.LINEAR_OPS,
                       learn_ops=zero.algorithms.LINEAR_OPS)  # the reference demo's space
EVERY_TYPE = M.MutationConfig(types=M.MUTATION_TYPES, setup_size_min=1, predict_size_min=0, learn_size_min=2,
                              setup_size_max=5, learn_size_max=7)
B = 128
GENERATIONS = 3


def _bits(tree, nan_sign=True):
    out = []
    for x in jax.tree_util.tree_leaves(tree):
        x = np.array(x)
        if not nan_sign and x.dtype.kind == "f":
            x[np.isnan(x)] = np.nan
        out.append(np.ascontiguousarray(x).view(np.uint8))
    return out


def _assert_bitwise(a, b, what, nan_sign=True):
    for i, (x, y) in enumerate(zip(_bits(a, nan_sign), _bits(b, nan_sign))):
        if not np.array_equal(x, y):
            rows = np.flatnonzero((x != y).reshape(x.shape[0], -1).any(1)) if x.ndim else []
            raise AssertionError(f"{what}: leaf {i} differs in {len(rows)} programs (first: {rows[:5]})")


@functools.lru_cache(maxsize=None)
def _mutators(cfg, mcfg):
    return {impl: jax.jit(jax.vmap(lambda k, p, impl=impl: M.mutate_with_type(k, p, cfg, mcfg, impl)))
            for impl in ("xla", "native")}


def _generations(cfg, mcfg, seed):
    """Programs after several rounds of mutation (each round from the XLA results), compared per round."""
    fns = _mutators(cfg, mcfg)
    progs = R.random_programs(jax.random.key(seed), cfg, B)
    seen = set()
    for g in range(GENERATIONS):
        keys = jax.random.split(jax.random.key(1000 * seed + g), B)
        (x, tx), (n, tn) = fns["xla"](keys, progs), fns["native"](keys, progs)
        _assert_bitwise((x, tx), (n, tn), f"generation {g}")
        zero.validate_program(n, cfg)
        seen |= set(np.asarray(tx).tolist())
        progs = x
    return seen


@pytest.mark.parametrize("cfg,mcfg", [
    (DEMO, M.MutationConfig()),
    pytest.param(dataclasses.replace(DEMO, dtype="float64"), M.MutationConfig(), marks=pytest.mark.slow),
    (EVERY_OP, EVERY_TYPE),
    pytest.param(dataclasses.replace(EVERY_OP, dtype="float64"), EVERY_TYPE, marks=pytest.mark.slow),
    (EVERY_OP, M.MutationConfig(paper_variant=True)),
], ids=["demo-f32", "demo-f64", "every-op-f32", "every-op-f64", "paper-variant"])
def test_native_mutations_equal_xla_bitwise(cfg, mcfg):
    with jax.enable_x64(cfg.dtype == "float64"):
        seen = _generations(cfg, mcfg, seed=3)
    assert len(seen) == len(mcfg.type_weights)  # every type was exercised


def test_forced_types_and_unbatched_inputs():
    """apply_mutation with a forced type: the program and type are shared across the batch (the kernel
    reads inputs a vmap left unbatched with stride 0), and a call outside any vmap."""
    cfg, mcfg = EVERY_OP, EVERY_TYPE
    prog = jax.tree_util.tree_map(lambda x: x[0], R.random_programs(jax.random.key(7), cfg, 1))
    keys = jax.random.split(jax.random.key(8), 64)
    # The type is a traced argument shared by the batch: one compilation per implementation.
    fns = [jax.jit(jax.vmap(lambda k, t, impl=impl: M.apply_mutation(k, prog, cfg, mcfg, t, impl), (0, None)))
           for impl in ("xla", "native")]
    for t in range(len(mcfg.type_weights)):
        _assert_bitwise(fns[0](keys, t), fns[1](keys, t), f"type {mcfg.type_weights[t][0]}")
    one = [jax.jit(lambda k, impl=impl: M.mutate(k, prog, cfg, mcfg, impl)) for impl in ("xla", "native")]
    _assert_bitwise(one[0](keys[0]), one[1](keys[0]), "unbatched")


def test_signed_zero_and_nan_constants():
    """Constants that are -0 or NaN go through the kernel as through XLA. The sign bit of a NaN that a
    uniform op's range re-sort produces may differ (XLA's minimum/maximum pick NaN bits in ways that depend
    on operand order); mutations never make a NaN from finite constants, so only hand-made programs have
    them (docs/backends.md)."""
    cfg, mcfg = EVERY_OP, EVERY_TYPE
    progs = R.random_programs(jax.random.key(11), cfg, B)

    def poison(c):
        data = np.array(c.data)
        data[::3, :, 0] = -0.0
        data[1::3, :, 1] = np.nan
        data[2::3, :, 2] = -np.nan
        return c.replace(data=data)

    progs = progs.replace(setup=poison(progs.setup), predict=poison(progs.predict), learn=poison(progs.learn))
    fns = _mutators(cfg, mcfg)
    keys = jax.random.split(jax.random.key(12), B)
    _assert_bitwise(fns["xla"](keys, progs), fns["native"](keys, progs), "-0 / NaN constants", nan_sign=False)
    zeros = progs.replace(**{c: getattr(progs, c).replace(data=np.where(np.isnan(getattr(progs, c).data), -0.0,
                                                                          getattr(progs, c).data))
                             for c in ("setup", "predict", "learn")})
    _assert_bitwise(fns["xla"](keys, zeros), fns["native"](keys, zeros), "-0 constants")


def test_auto_picks_native_on_cpu_and_bad_implementation_is_named():
    cfg, mcfg = DEMO, M.MutationConfig()
    prog = jax.tree_util.tree_map(lambda x: x[0], R.random_programs(jax.random.key(1), cfg, 1))
    text = jax.jit(lambda k: M.mutate(k, prog, cfg, mcfg, "auto")).lower(jax.random.key(0)).as_text()
    assert native.MUTATE_TARGET in text
    with pytest.raises(ValueError, match="implementation"):
        M.mutate(jax.random.key(0), prog, cfg, mcfg, "fast")


def test_auto_with_an_accelerator_backend_present_keeps_both_branches(monkeypatch):
    """With only CPU backends "auto" calls the kernel directly; where an accelerator backend exists it traces
    both implementations (platform_dependent) and the CPU still runs the kernel: the same bits."""
    cfg, mcfg = DEMO, M.MutationConfig()
    progs = R.random_programs(jax.random.key(3), cfg, 64)
    keys = jax.random.split(jax.random.key(4), 64)
    direct = jax.jit(jax.vmap(lambda k, p: M.mutate(k, p, cfg, mcfg, "auto")))(keys, progs)
    cpu_only = dict(jax.extend.backend.backends())
    monkeypatch.setattr(jax.extend.backend, "backends", lambda: {**cpu_only, "gpu": None})
    fn = jax.jit(jax.vmap(lambda k, p: M.mutate(k, p, cfg, mcfg, "auto")))
    assert "platform_index" in str(fn.trace(keys, progs).jaxpr)  # both branches traced
    _assert_bitwise(direct, fn(keys, progs), "auto, accelerator present")


@pytest.mark.parametrize("dtype,x64", [("float32", False), ("float64", True), ("float64", False)])
def test_scalar_draws_are_the_first_uniform_draws(dtype, x64):
    """The native path draws only the uniforms it reads (XLA the scalar ones, the kernel the fresh rows'),
    each the same bits as element i of the whole `jax.random.uniform` draw of the XLA path (the kernel's
    rows: the bitwise native-vs-XLA tests above, every mutation type)."""
    cfg = dataclasses.replace(DEMO, dtype=dtype)
    with jax.enable_x64(x64), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float64 without x64: JAX draws float32 and says so
        keys = jax.random.split(jax.random.key(11), 64)
        whole = np.asarray(jax.jit(jax.vmap(lambda k: M._draws(k, cfg)))(keys))
        head = np.asarray(jax.jit(jax.vmap(lambda k: M._scalar_draws(k, cfg)))(keys))
    assert head.dtype == whole.dtype == np.dtype(dtype if x64 or dtype == "float32" else "float32")
    np.testing.assert_array_equal(head.view(np.uint8), whole[:, :M._NUM_SCALAR_DRAWS].view(np.uint8))
    rbg = jax.random.key(3, impl="rbg")  # another key type: the scalar draws come from the whole draw
    np.testing.assert_array_equal(M._scalar_draws(rbg, DEMO), M._draws(rbg, DEMO)[:M._NUM_SCALAR_DRAWS])
