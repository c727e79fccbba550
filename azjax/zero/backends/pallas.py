"""The `pallas` backend: one `pallas_call` runs a program's whole evaluation on all its tasks.

Layout (docs/backends.md, section `pallas`): one kernel instance (grid point) per program, whose lanes are
the program's tasks (padded to a power of two on GPU). Every lane of an instance runs the same instruction,
so the op dispatch is uniform: a `lax.switch` over the component's ops (lowered by Pallas to a chain of
`scf.if`) runs only the chosen op, and each instruction and its constants are read once per instance, not
once per lane. Memory is one lane array [lanes] per element of every bank address (a scalar is one, a
vector F, a matrix F*F), carried through the loops: registers, not memory. Addresses are uniform too, so a
read or a write is a chain of selects on a scalar predicate. Examples are read per step from the task
arrays in global memory (gathered once per task into step order outside the kernel).

Op math is the instruction-set table's (`azjax/zero/ops.py`): each op's kernel is traced once to a jaxpr
and evaluated element by element on lane arrays (`scalarize`), so slices, reshapes and the table's summation
order become static choices of registers and every emitted operation is elementwise on [lanes] - which is
what Triton lowers. The random ops' kernels run the same way, except that their `jax.random` bits come
from threefry-2x32 written here with 32-bit integer ops (Pallas' Triton backend has no lowering for
`jax.random`'s primitive), bit for bit those of `jax.random` under the key rule (`base.KeyRule`). Only
the single-element const sets are written here (a scatter at a data-dependent index in the table; one
select per element here).

Setup, every epoch's training steps (Predict, early-stop check, Learn), validation steps (Predict, loss)
and the fitness all run inside the kernel; the step loops are `while` loops that end when every task of the
program has failed. Liveness pruning runs before the kernel, as in the XLA backends; the instruction loops
have dynamic trip counts, so dead code costs nothing.

On CPU the kernel runs in Pallas interpret mode (tests; slow). On GPU it goes through Pallas' Triton
lowering (`num_warps=1`: one warp per program).
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jax_core

from azjax.zero import liveness
from azjax.zero import ops as ops_lib
from azjax.zero.backends.base import Backend, KeyRule, check_layout
from azjax.zero.backends.xla import _rms_fitness, _sigmoid, multiclass_correct, multiclass_softmax
from azjax.zero.program import COMPONENTS, LABEL_VECTOR, PREDICTION_VECTOR, Program, ZeroConfig

_BANKS = ("s", "v", "m")


def _pallas():
    from jax.experimental import pallas as pl  # imported lazily: only this backend needs it

    return pl


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= n (>= 1)."""
    return 1 << max(int(n) - 1, 0).bit_length()


# ------------------------------------------------------------------------------------------------------
# threefry-2x32 with 32-bit integer ops (Pallas' Triton backend has no lowering for jax.random's primitive).

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x, r: int):
    return lax.shift_left(x, jnp.uint32(r)) | lax.shift_right_logical(x, jnp.uint32(32 - r))


def threefry2x32(k0, k1, x0, x1):
    """The threefry-2x32 block cipher (20 rounds) on uint32 arrays, as `jax.random`'s threefry2x32_p."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(block + 1) % 3]
        x1 = x1 + ks[(block + 2) % 3] + jnp.uint32(block + 1)
    return x0, x1


def fold_in(k0, k1, data):
    """`jax.random.fold_in` on raw key words (uint32 arrays): threefry of the counter pair (0, data)."""
    data = jnp.broadcast_to(data, k0.shape).astype(jnp.uint32)
    return threefry2x32(k0, k1, jnp.zeros_like(data), data)


def random_bits(k0, k1, index: int, bit_width: int = 32):
    """Element `index` (row-major) of `jax.random.bits(key, shape, uint32 / uint64)` per lane (keys as raw
    uint32 words [lanes]): partitionable threefry gives element i the words threefry(key, (0, i)), xor-ed
    for 32 bits, concatenated for 64."""
    if not jax.config.jax_threefry_partitionable:
        raise NotImplementedError("pallas backend: random ops need jax_threefry_partitionable (the default)")
    b0, b1 = threefry2x32(k0, k1, jnp.zeros_like(k0), jnp.full_like(k0, index))
    if bit_width == 64:
        return lax.shift_left(b0.astype(jnp.uint64), jnp.uint64(32)) | b1.astype(jnp.uint64)
    if bit_width == 32:
        return b0 ^ b1
    raise NotImplementedError(f"pallas backend: random bits of width {bit_width}")


class _LaneKey:
    """A PRNG key per lane (raw threefry words) inside an element-by-element evaluation."""

    def __init__(self, k0, k1):
        self.k0, self.k1 = k0, k1


# ------------------------------------------------------------------------------------------------------
# Evaluating a table kernel element by element on lane arrays.

# Primitives that only move elements: evaluated on numpy object arrays of lane values at trace time.
_STRUCTURAL = {
    "broadcast_in_dim": lambda x, p: np.broadcast_to(
        x.reshape([x.shape[p["broadcast_dimensions"].index(i)] if i in p["broadcast_dimensions"] else 1
                   for i in range(len(p["shape"]))]), p["shape"]),
    "reshape": lambda x, p: x.reshape(p["new_sizes"]),
    "transpose": lambda x, p: np.transpose(x, p["permutation"]),
    "slice": lambda x, p: x[tuple(slice(s, l, st) for s, l, st in
                                  zip(p["start_indices"], p["limit_indices"],
                                      p["strides"] or (1,) * x.ndim))],
    "squeeze": lambda x, p: np.squeeze(x, axis=tuple(p["dimensions"])) if p["dimensions"] else x,
    "rev": lambda x, p: np.flip(x, axis=tuple(p["dimensions"])),
    "copy": lambda x, p: x,
}
_REDUCERS = {"reduce_sum": lax.add, "reduce_max": lax.max, "reduce_min": lax.min}


def _objects(value) -> np.ndarray:
    """A constant (numpy) as an object array of 0-d numpy elements."""
    value = np.asarray(value)
    out = np.empty(value.shape, object)
    for idx in np.ndindex(*value.shape):
        out[idx] = value[idx]
    return out


def _object_array(elements, shape) -> np.ndarray:
    """An object array of `shape` holding the given (traced) elements in row-major order."""
    arr = np.empty(len(elements), object)
    for i, e in enumerate(elements):
        arr[i] = e
    return arr.reshape(shape)


def _concrete(x: np.ndarray) -> np.ndarray:
    """An object array of constants back to a numpy array (raises where an element is traced)."""
    return np.array([np.asarray(e) for e in x.reshape(-1)]).reshape(x.shape)


def _eval_jaxpr(jaxpr, consts, args, lanes: int):
    """Evaluates `jaxpr` with every array value an object array of lane arrays [lanes] (or constants).

    Long by design: one branch per jaxpr primitive the kernels use, in one dispatch.
    """
    env = {}

    def read(v):
        if isinstance(v, jax_core.Literal):
            return _objects(np.asarray(v.val, v.aval.dtype))
        return env[v]

    def lane(e, dtype):
        return jnp.broadcast_to(jnp.asarray(e, dtype) if isinstance(e, (np.ndarray, np.generic)) else e,
                                (lanes,))

    for var, c in zip(jaxpr.constvars, consts):
        env[var] = _objects(np.asarray(c))
    for var, a in zip(jaxpr.invars, args):
        env[var] = a
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        ins = [read(v) for v in eqn.invars]
        p = eqn.params
        if name in _STRUCTURAL:
            out = _STRUCTURAL[name](ins[0], p)
        elif name == "concatenate":
            out = np.concatenate(ins, axis=p["dimension"])
        elif name == "iota":
            with jax.ensure_compile_time_eval():
                out = _objects(np.asarray(lax.iota(p["dtype"], p["shape"][p["dimension"]])))
            shape = p["shape"]
            out = np.broadcast_to(out.reshape([-1 if i == p["dimension"] else 1 for i in range(len(shape))]),
                                  shape)
        elif name in ("gather", "dynamic_slice"):
            # Static indices only (the table's `take` of a fixed element): the positions are computed
            # concretely and the elements picked.
            # (Positions in the operand's own float dtype, exact for these sizes, so that the gather's
            # parameters - its fill value - still fit.)
            positions = np.arange(ins[0].size).reshape(ins[0].shape)
            with jax.ensure_compile_time_eval():
                picked = np.asarray(eqn.primitive.bind(
                    jnp.asarray(positions, eqn.invars[0].aval.dtype),
                    *(jnp.asarray(_concrete(i)) for i in ins[1:]), **p)).astype(np.int64)
            out = ins[0].reshape(-1)[picked]
        elif name == "random_bits":
            (key,) = ins[0].reshape(-1)
            shape = tuple(p["shape"])
            out = _object_array([random_bits(key.k0, key.k1, i, p["bit_width"])
                                 for i in range(int(np.prod(shape, dtype=np.int64)))], shape)
        elif name in _REDUCERS:
            x, axes = ins[0], tuple(p["axes"])
            keep = [i for i in range(x.ndim) if i not in axes]
            moved = np.transpose(x, keep + list(axes)).reshape([x.shape[i] for i in keep] + [-1])
            dtype = eqn.outvars[0].aval.dtype
            out = np.empty(moved.shape[:-1], object)
            for idx in np.ndindex(*out.shape):
                acc = lane(moved[idx][0], dtype)
                for e in moved[idx][1:]:  # left to right
                    acc = _REDUCERS[name](acc, lane(e, dtype))
                out[idx] = acc
        elif name in ("jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "remat", "checkpoint"):
            closed = p.get("jaxpr", p.get("call_jaxpr"))
            inner = closed.jaxpr if hasattr(closed, "jaxpr") else closed
            inner_consts = closed.consts if hasattr(closed, "consts") else ()
            outs = _eval_jaxpr(inner, inner_consts, ins, lanes)
            for var, val in zip(eqn.outvars, outs):
                env[var] = val
            continue
        else:
            # Elementwise (operands of the output's shape, or broadcastable to it).
            shape = eqn.outvars[0].aval.shape
            try:
                if len(eqn.outvars) != 1:
                    raise ValueError
                ins = [np.broadcast_to(x, shape) for x in ins]
            except ValueError:
                raise NotImplementedError(f"pallas backend: cannot evaluate primitive {name!r} element by "
                                          "element") from None
            out = np.empty(shape, object)
            for idx in np.ndindex(*shape):
                elems = [x[idx] for x in ins]
                if all(isinstance(e, (np.ndarray, np.generic)) for e in elems):
                    # Constants fold at trace time (the table's index arithmetic stays static).
                    with jax.ensure_compile_time_eval():
                        out[idx] = np.asarray(eqn.primitive.bind(
                            *(jnp.asarray(e, v.aval.dtype) for e, v in zip(elems, eqn.invars)), **p))
                else:
                    out[idx] = eqn.primitive.bind(*(lane(e, v.aval.dtype) for e, v in zip(elems, eqn.invars)), **p)
        env[eqn.outvars[0]] = out
    return [read(v) for v in jaxpr.outvars]


def _shape(kind: str, F: int):
    return {"s": (), "v": (F,), "m": (F, F)}[kind]


@functools.lru_cache(maxsize=None)
def _op_jaxpr(op_id: int, F: int, dtype: str):
    op = ops_lib.OPS[op_id]
    spec = lambda kind: jax.ShapeDtypeStruct(_shape(kind, F), dtype) if kind else None  # noqa: E731
    d = jax.ShapeDtypeStruct((), dtype)
    # (eval_shape: a key made here would be a `random_seed` in the kernel being traced.)
    key = jax.eval_shape(lambda: jax.random.key(0)) if op.is_random else None
    return jax.make_jaxpr(lambda a, b, c, d0, d1, d2, k: op.kernel(a, b, c, (d0, d1, d2), k))(
        spec(op.in1), spec(op.in2), spec(op.out), d, d, d, key)


def scalarize(op: ops_lib.OpSpec, a, b, c, d: Sequence, lanes: int, F: int, dt, key=None) -> Tuple:
    """The table kernel's result, element by element: a, b, c are tuples of lane arrays (row-major elements,
    or None), d three scalars, key (random ops) the lanes' raw key words (k0, k1); returns the output's
    elements as a tuple of lane arrays. A random op's `jax.random` bits come from `random_bits`."""
    closed = _op_jaxpr(op.id, F, jnp.dtype(dt).name)
    args = [_object_array(x, _shape(kind, F)) for kind, x in ((op.in1, a), (op.in2, b), (op.out, c)) if kind]
    args += [_object_array((d[k],), ()) for k in range(3)]
    if op.is_random:
        args.append(_object_array((_LaneKey(*key),), ()))
    (out,) = _eval_jaxpr(closed.jaxpr, closed.consts, args, lanes)
    return tuple(jnp.broadcast_to(jnp.asarray(e, dt), (lanes,)).astype(dt) for e in out.reshape(-1))


def _constant(op: ops_lib.OpSpec, d, k: int, dt):
    """Constant slot k as the table's kernels read it (float32-stored slots where the table says so)."""
    value = d[k]
    stored32 = getattr(ops_lib, "STORED_FLOAT32", None)
    if stored32 is not None and bool(stored32[op.id, k]):
        value = value.astype(jnp.float32)
    return value.astype(dt)


def _op_result(op: ops_lib.OpSpec, a, b, c, d, keys, counter, lanes: int, F: int, dt) -> Tuple:
    """The op's new output value (a tuple of lane arrays, one per element)."""
    name = op.name
    if op.is_random:
        return scalarize(op, a, b, c, d, lanes, F, dt, key=fold_in(keys[0], keys[1], counter))
    if name == "VECTOR_CONST_SET":
        i = ops_lib._index(d[0], F)
        value = _constant(op, d, 1, dt)
        return tuple(jnp.where(i == e, value, c[e]) for e in range(F))
    if name == "MATRIX_CONST_SET":
        i, j = ops_lib._index(d[0], F), ops_lib._index(d[1], F)
        value = _constant(op, d, 2, dt)
        return tuple(jnp.where((i == e // F) & (j == e % F), value, c[e]) for e in range(F * F))
    return scalarize(op, a, b, c, d, lanes, F, dt)


def _read(bank, addr):
    """Register `addr` of a bank (a tuple of registers, each a tuple of lane arrays): a select chain per
    element on the uniform address."""
    value = bank[0]
    for k in range(1, len(bank)):
        value = tuple(jnp.where(addr == k, r, v) for r, v in zip(bank[k], value))
    return value


def _write(bank, addr, value):
    return tuple(tuple(jnp.where(addr == k, x, r) for x, r in zip(value, reg)) for k, reg in enumerate(bank))


def component_branches(cfg: ZeroConfig, component: str) -> Tuple[int, ...]:
    """Global ids of the ops a component's switch holds (NO_OP first)."""
    ids = {ops_lib.NO_OP} | {ops_lib.OP_IDS[n] for n in cfg.ops(component)}
    return tuple(sorted(ids))


def _branch_table(cfg: ZeroConfig, component: str) -> np.ndarray:
    table = np.zeros(ops_lib.NUM_OPS, np.int32)
    for k, op_id in enumerate(component_branches(cfg, component)):
        table[op_id] = k
    return table


def _make_branch(op: ops_lib.OpSpec, lanes: int, F: int, dt):
    def branch(mem, i1, i2, o, d, keys, counter):
        if op.out is None:
            return mem
        banks = dict(zip(_BANKS, mem))
        a = _read(banks[op.in1], i1) if op.in1 else None
        b = _read(banks[op.in2], i2) if op.in2 else None
        c = _read(banks[op.out], o)
        result = _op_result(op, a, b, c, d, keys, counter, lanes, F, dt)
        banks[op.out] = _write(banks[op.out], o, result)
        return tuple(banks[k] for k in _BANKS)

    return branch


# ------------------------------------------------------------------------------------------------------
# The kernel.

def make_pallas_evaluate_fn(cfg: ZeroConfig, eval_type: str, num_epochs: int, return_predictions: bool = False,
                            prune: bool = True, interpret: Optional[bool] = None,
                            num_warps: int = 1) -> Callable:
    """The pure evaluation function of the `pallas` backend (signature: `backends/base.py`).

    Args:
      cfg, eval_type, num_epochs, return_predictions, prune: as `Backend.make_evaluate_fn`.
      interpret: run the kernel in Pallas interpret mode (default: when the default platform is CPU,
        decided when the function is traced).
      num_warps: Triton warps per kernel instance (one program) on GPU.
    """
    pl = _pallas()
    check_layout(cfg, eval_type)
    accuracy = eval_type == "accuracy"
    multiclass = eval_type == "multiclass"
    K = cfg.num_classes if multiclass else 1  # predictions per step
    E = int(num_epochs)
    tables = {c: _branch_table(cfg, c) for c in COMPONENTS}

    def fn(programs: Program, train_x, train_y, valid_x, valid_y, orders, keys, active):
        dt = cfg.jnp_dtype
        use_interpret = (jax.default_backend() == "cpu") if interpret is None else interpret
        P = programs.setup.size.shape[0]
        T, N, F = train_x.shape
        M = valid_x.shape[1]
        # Triton tensors need power-of-two extents: the lanes are padded.
        lanes = T if use_interpret else next_power_of_two(T)
        if prune:
            programs, positions = jax.vmap(lambda p: liveness.prune(p, cfg))(programs)
        else:
            positions = liveness.identity_positions(programs)
        comp_args = []
        for c, pos in zip(COMPONENTS, positions):
            comp = programs.component(c)
            ins = comp.instructions.astype(jnp.int32)
            ins = ins.at[..., 0].set(jnp.asarray(tables[c])[ins[..., 0]])  # op id -> branch index
            size = jnp.where(active, comp.size, 0).astype(jnp.int32)
            comp_args += [ins, comp.data.astype(dt), size, pos.astype(jnp.int32)]
        # Per task, every step's example in step order: per epoch the (permuted) training set, then the
        # validation set. Element-major ([F, T, steps]) so that a step's element f is one contiguous row.
        xs = jnp.concatenate([jax.vmap(lambda x, o: x[o])(train_x, orders),
                              jnp.broadcast_to(valid_x[:, None], (T, E) + valid_x.shape[1:])], 2)
        ys = jnp.concatenate([jax.vmap(lambda y, o: y[o])(train_y, orders),
                              jnp.broadcast_to(valid_y[:, None], (T, E, M))], 2)
        xs = jnp.transpose(xs.reshape(T, E * (N + M), F), (2, 1, 0)).astype(dt)  # [F, steps, T]
        ys = jnp.transpose(ys.reshape(T, E * (N + M)), (1, 0)).astype(dt)  # [steps, T]
        key_words = jax.random.key_data(keys).astype(jnp.uint32)  # [P, T, 2]
        if lanes != T:
            pad = lanes - T
            xs = jnp.pad(xs, ((0, 0), (0, 0), (0, pad)))
            ys = jnp.pad(ys, ((0, 0), (0, pad)))
            key_words = jnp.pad(key_words, ((0, 0), (0, pad), (0, 0)))
        inputs = comp_args + [active.astype(jnp.int32), key_words[..., 0], key_words[..., 1], xs, ys]
        out_shape = [jax.ShapeDtypeStruct((P, lanes), dt)]
        aliases = {}
        if return_predictions:
            nan_train = jnp.full((P, E * N * K, lanes), jnp.nan, dt)
            nan_valid = jnp.full((P, E * M * K, lanes), jnp.nan, dt)
            aliases = {len(inputs): 1, len(inputs) + 1: 2}
            inputs += [nan_train, nan_valid]
            out_shape += [jax.ShapeDtypeStruct(nan_train.shape, dt), jax.ShapeDtypeStruct(nan_valid.shape, dt)]
        kernel = functools.partial(_kernel, cfg=cfg, E=E, N=N, M=M, T=T, F=F, lanes=lanes, accuracy=accuracy,
                                   multiclass=multiclass, return_predictions=return_predictions)
        compiler_params = None
        if not use_interpret:
            from jax.experimental.pallas import triton as plgpu

            compiler_params = plgpu.CompilerParams(num_warps=num_warps, num_stages=1)  # selects Triton
        outs = pl.pallas_call(kernel, out_shape=tuple(out_shape), grid=(P,), input_output_aliases=aliases,
                              interpret=use_interpret, compiler_params=compiler_params)(*inputs)
        fitness = outs[0][:, :T]
        if not return_predictions:
            return fitness
        per_step = (K,) if multiclass else ()
        train = jnp.transpose(outs[1][:, :, :T], (0, 2, 1)).reshape((P, T, E, N) + per_step)
        valid = jnp.transpose(outs[2][:, :, :T], (0, 2, 1)).reshape((P, T, E, M) + per_step)
        return fitness, {"train": train, "valid": valid}

    return fn


def _kernel(*refs, cfg: ZeroConfig, E, N, M, T, F, lanes, accuracy, multiclass, return_predictions):
    # Long by design: the whole per-lane evaluation (Setup, the example loop, validation, fitness) is one
    # traced kernel body, so its state stays in registers; docs/backends.md describes its steps.
    pl = _pallas()
    (ins_s, dat_s, size_s, pos_s, ins_p, dat_p, size_p, pos_p, ins_l, dat_l, size_l, pos_l,
     active_ref, k0_ref, k1_ref, xs_ref, ys_ref) = refs[:17]
    rest = refs[17:]
    if return_predictions:
        out_ref, ptrain_ref, pvalid_ref = rest[2:]  # after the two aliased NaN inputs
    else:
        (out_ref,) = rest
    dt = cfg.jnp_dtype
    rule = KeyRule.for_config(cfg)
    stride = rule.step_stride
    p = pl.program_id(0)
    keys = (k0_ref[p, :], k1_ref[p, :])
    branches = {c: [_make_branch(ops_lib.OPS[i], lanes, F, dt) for i in component_branches(cfg, c)]
                for c in COMPONENTS}
    sizes = (cfg.num_scalars, cfg.num_vectors, cfg.num_matrices)
    widths = (1, F, F * F)

    def run(mem, ins_ref, dat_ref, pos_ref, n, counter0, comp_branches):
        if len(comp_branches) == 1:  # NO_OP only
            return mem

        def body(i, mem):
            op = ins_ref[p, i, 0]
            i1, i2, o = ins_ref[p, i, 1], ins_ref[p, i, 2], ins_ref[p, i, 3]
            d = (dat_ref[p, i, 0], dat_ref[p, i, 1], dat_ref[p, i, 2])
            counter = counter0 + pos_ref[p, i]
            return lax.switch(op, comp_branches, mem, i1, i2, o, d, keys, counter)

        return lax.fori_loop(0, n, body, mem)

    zero = jnp.zeros((lanes,), dt)
    mem0 = tuple(tuple((zero,) * w for _ in range(n)) for n, w in zip(sizes, widths))

    def set_inputs(mem, x, label):
        s, v, m = mem
        return (((label,),) + s[1:], (x,) + v[1:], m)

    def set_s1(mem, value):
        s, v, m = mem
        return ((s[0], (value,)) + s[2:], v, m)

    # The multi-class layout (docs/automl_zero.md): one-hot label vector v1, logits v2[:K].
    K = cfg.num_classes

    def set_vector(mem, addr, value):
        s, v, m = mem
        return (s, v[:addr] + (tuple(value),) + v[addr + 1:], m)

    def onehot(y):
        return tuple((y == f).astype(dt) if f < K else zero for f in range(F))

    def any_true(mask):
        return jnp.max(mask.astype(jnp.int32)) > 0

    def example(row):
        return tuple(xs_ref[f, row, :] for f in range(F)), ys_ref[row, :]

    n_s, n_p, n_l = size_s[p], size_p[p], size_l[p]
    active = active_ref[p] != 0
    alive0 = (lax.broadcasted_iota(jnp.int32, (lanes,), 0) < T) & active
    mem0 = run(mem0, ins_s, dat_s, pos_s, n_s, jnp.int32(0), branches["setup"])

    def predict(mem, step, x):
        mem = set_inputs(mem, x, zero)
        if multiclass:
            mem = set_vector(mem, LABEL_VECTOR, (zero,) * F)
        return run(mem, ins_p, dat_p, pos_p, n_p, step * stride, branches["predict"])

    def epoch(e, carry):
        mem, alive, best = carry
        base = e * (N + M)

        def train_body(c):
            j, mem, alive = c
            step = base + j + 1
            x, y = example(base + j)
            mem = predict(mem, step, x)
            if multiclass:
                probs = multiclass_softmax(list(mem[1][PREDICTION_VECTOR][:K]))
                mem = set_vector(mem, PREDICTION_VECTOR, tuple(probs) + (zero,) * (F - K))
                failed = jnp.isnan(probs[0])
                for q in probs[1:]:
                    failed = failed | jnp.isnan(q)
                if return_predictions:
                    for k, q in enumerate(probs):
                        ptrain_ref[p, (e * N + j) * K + k, :] = jnp.where(alive, q, jnp.nan).astype(dt)
            else:
                s1 = mem[0][1][0]
                if accuracy:
                    pred = _sigmoid(s1)
                    mem = set_s1(mem, pred)
                else:
                    pred = s1
                err = jnp.abs(y - pred)
                failed = jnp.isnan(err) | (err > cfg.max_abs_error)
                if return_predictions:
                    ptrain_ref[p, e * N + j, :] = jnp.where(alive, pred, jnp.nan).astype(dt)
            alive = alive & ~failed
            if multiclass:
                mem = set_vector(set_inputs(mem, x, zero), LABEL_VECTOR, onehot(y))
            else:
                mem = set_inputs(mem, x, y)
            mem = run(mem, ins_l, dat_l, pos_l, n_l, step * stride + rule.predict_stride, branches["learn"])
            return j + 1, mem, alive

        _, mem, alive = lax.while_loop(lambda c: (c[0] < N) & any_true(c[2]), train_body,
                                       (jnp.int32(0), mem, alive))

        def valid_body(c):
            j, mem, alive, loss, bad_seen = c
            step = base + N + j + 1
            x, y = example(base + N + j)
            new = predict(mem, step, x)
            s1 = new[0][1][0]
            # The reference's validation returns at its first bad example: later Predicts do not run, so a
            # lane past it keeps its memory (which the next epoch trains on).
            runs = ~bad_seen
            if E > 1:
                new = jax.tree_util.tree_map(lambda a, b: jnp.where(runs, a, b), new, mem)
            if multiclass:
                logits = list(new[1][PREDICTION_VECTOR][:K])
                add = (~multiclass_correct(logits, y)).astype(dt)
                bad = jnp.zeros((lanes,), bool)
            elif accuracy:
                add = ((y > 0.5) != (_sigmoid(s1) > 0.5)).astype(dt)
                bad = jnp.zeros((lanes,), bool)
            else:
                err = y - s1
                add = err * err
                bad = jnp.isnan(err) | (jnp.abs(err) > cfg.max_abs_error)
            if return_predictions:
                if multiclass:
                    for k, z in enumerate(logits):
                        pvalid_ref[p, (e * M + j) * K + k, :] = jnp.where(alive & runs, z, jnp.nan).astype(dt)
                else:
                    pvalid_ref[p, e * M + j, :] = jnp.where(alive & runs, s1, jnp.nan).astype(dt)
            loss = loss + jnp.where(runs, add, 0).astype(dt)
            bad_seen = bad_seen | (runs & bad)
            return j + 1, new, alive, loss, bad_seen

        init = (jnp.int32(0), mem, alive, zero, jnp.zeros((lanes,), bool))
        _, mem, alive, loss, bad_seen = lax.while_loop(lambda c: (c[0] < M) & any_true(c[2]), valid_body, init)
        fit = (1 - loss / M).astype(dt) if (accuracy or multiclass) else _rms_fitness(loss / M, dt)
        fit = jnp.where(bad_seen, 0, fit).astype(dt)
        best = jnp.where(alive, jnp.maximum(best, fit), best)
        return mem, alive, best

    _, _, best = lax.fori_loop(0, E, epoch, (mem0, alive0, zero))
    out_ref[p, :] = best


class PallasBackend(Backend):
    """One `pallas_call` per batch; a kernel instance evaluates one program on all its tasks (GPU through
    Pallas' Triton lowering; interpret mode on CPU)."""

    name = "pallas"
    platforms = ("cpu", "gpu")

    def unavailable_reason(self) -> Optional[str]:
        try:
            _pallas()
        except Exception as e:  # noqa: BLE001 - any import failure means "not available", with its reason
            return f"jax.experimental.pallas cannot be imported ({e})"
        platform = jax.default_backend()
        if platform not in self.platforms:
            return (f"the kernel is written for Pallas' GPU (Triton) lowering and CPU interpret mode; the "
                    f"default platform is {platform!r} (use 'select')")
        return None

    def make_evaluate_fn(self, cfg: ZeroConfig, eval_type: str, num_epochs: int,
                         return_predictions: bool = False, prune: bool = True) -> Callable:
        return make_pallas_evaluate_fn(cfg, eval_type, num_epochs, return_predictions, prune)
