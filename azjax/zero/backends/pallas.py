"""The `pallas` backend: one `pallas_call` runs a program's whole evaluation on all its tasks.

Lane layout (docs/backends.md, section `pallas`): one kernel instance (grid point) per program; its lanes
are the program's tasks (padded to a power of two on GPU), and vector / matrix elements are the inner axes
of the lane arrays, which Triton spreads over the threads. Every lane of an instance runs the same
instruction, so the op dispatch is uniform: a `lax.switch` over the component's ops (lowered by Pallas to a
chain of `scf.if`) runs only the chosen op, and each instruction and its constants are read once per
instance, not once per lane. Memory is one register value per bank address (scalars [T], vectors [T, F],
matrices [T, F, F]) carried through the loops, so it lives in registers; addresses are uniform too, so a
read or write is a chain of selects with a scalar predicate. Examples are read per step from the task
arrays in global memory (gathered once per task into step order outside the kernel).

Setup, every epoch's training steps (Predict, early-stop check, Learn) and validation steps (Predict,
loss) and the fitness all run inside the kernel; the step loops are `while` loops that end when every task
of the program has failed. Liveness pruning runs before the kernel (as in the XLA backends); the kernel's
instruction loops have dynamic trip counts, so dead code costs nothing.

Op math comes from the instruction-set table (`azjax/zero/ops.py`), vmapped over the lanes, except where
Triton cannot lower the table's kernel: the single-element const sets (a scatter there; a select on an
iota here) and the random ops, whose threefry-2x32 bits are computed here with 32-bit integer ops so that
they lower, bit for bit the numbers of `jax.random` under the key rule (`base.KeyRule`).

On CPU the kernel runs in Pallas interpret mode (for tests: slow); on GPU it is lowered by Pallas' Triton
backend.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from azjax.zero import liveness
from azjax.zero import ops as ops_lib
from azjax.zero.backends.base import Backend, KeyRule
from azjax.zero.backends.xla import _rms_fitness, _sigmoid
from azjax.zero.program import COMPONENTS, Program, ZeroConfig

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
    """`jax.random.fold_in` on raw key words: threefry of the counter pair (0, data)."""
    data = data.astype(jnp.uint32)
    return threefry2x32(k0, k1, jnp.zeros_like(data), data)


def _lane_iota(shape, lanes: int):
    """Row-major element index of an array of `shape`, broadcast to [lanes, *shape] (uint32)."""
    if not shape:
        return jnp.zeros((lanes,), jnp.uint32)
    idx = jnp.zeros(shape, jnp.int32)
    stride = 1
    for axis in reversed(range(len(shape))):
        idx = idx + lax.broadcasted_iota(jnp.int32, shape, axis) * stride
        stride *= shape[axis]
    return jnp.broadcast_to(idx.astype(jnp.uint32)[None], (lanes,) + tuple(shape))


def _expand(x, ndim: int):
    """[lanes] -> [lanes, 1, ...] with `ndim` trailing unit axes."""
    return lax.broadcast_in_dim(x, x.shape + (1,) * ndim, (0,))


def standard_uniform(k0, k1, shape, dtype):
    """`jax.random.uniform(key, shape, dtype)` per lane (keys [lanes] uint32) with partitionable threefry:
    element i's bits are threefry(key, (0, i)), xor-ed (32-bit) or concatenated (64-bit)."""
    lanes = k0.shape[0]
    counts = _lane_iota(shape, lanes)
    kk0, kk1 = _expand(k0, len(shape)), _expand(k1, len(shape))
    b0, b1 = threefry2x32(jnp.broadcast_to(kk0, counts.shape), jnp.broadcast_to(kk1, counts.shape),
                          jnp.zeros_like(counts), counts)
    if jnp.dtype(dtype) == jnp.float64:
        bits = lax.shift_left(b0.astype(jnp.uint64), jnp.uint64(32)) | b1.astype(jnp.uint64)
        one = np.array(1.0, np.float64).view(np.uint64)
        floats = lax.bitcast_convert_type(lax.shift_right_logical(bits, jnp.uint64(12)) | jnp.uint64(one),
                                          jnp.float64)
    else:
        bits = b0 ^ b1
        one = np.array(1.0, np.float32).view(np.uint32)
        floats = lax.bitcast_convert_type(lax.shift_right_logical(bits, jnp.uint32(9)) | jnp.uint32(one),
                                          jnp.float32)
    return floats - jnp.asarray(1.0, dtype)


def _uniform_in(k0, k1, shape, dtype, lo, hi):
    """`jax.random.uniform(key, shape, dtype, lo, hi)` (the same expression, in the same order)."""
    floats = standard_uniform(k0, k1, shape, dtype)
    lo = jnp.asarray(lo, dtype)
    return jnp.maximum(lo, floats * (jnp.asarray(hi, dtype) - lo) + lo)


def standard_normal(k0, k1, shape, dtype):
    """`jax.random.normal(key, shape, dtype)` per lane: sqrt(2) * erfinv(uniform(nextafter(-1, 0), 1))."""
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    u = _uniform_in(k0, k1, shape, dtype, lo, 1.0)
    return jnp.asarray(np.sqrt(2), dtype) * lax.erf_inv(u)


# ------------------------------------------------------------------------------------------------------
# Op evaluation on lane arrays.

def _shape(kind: str, F: int):
    return {"s": (), "v": (F,), "m": (F, F)}[kind]


def _constant(op: ops_lib.OpSpec, d, k: int, dt):
    """Constant slot k as the table's kernels read it (float32-stored slots where the table says so)."""
    value = d[k]
    stored32 = getattr(ops_lib, "STORED_FLOAT32", None)
    if stored32 is not None and bool(stored32[op.id, k]):
        value = value.astype(jnp.float32)
    return value.astype(dt)


def _op_result(op: ops_lib.OpSpec, a, b, c, d, keys, counter, F: int, dt):
    """The op's new output value on every lane (a, b, c lane arrays or None; d three scalars)."""
    name = op.name
    if op.is_random:
        k0, k1 = fold_in(keys[0], keys[1], jnp.broadcast_to(counter, keys[0].shape))
        shape = c.shape[1:]
        if "UNIFORM" in name:
            u = standard_uniform(k0, k1, shape, dt)
            low, high = _constant(op, d, 0, dt), _constant(op, d, 1, dt)
            # The table's `_uniform`: low + (high - low) * u, or low for an empty / inverted interval.
            return jnp.where(low < high, low + (high - low) * u, jnp.broadcast_to(low, c.shape))
        z = standard_normal(k0, k1, shape, dt)
        return _constant(op, d, 0, dt) + _constant(op, d, 1, dt) * z  # the table's `_gaussian`
    if name == "VECTOR_CONST_SET":
        hit = lax.broadcasted_iota(jnp.int32, c.shape, 1) == ops_lib._index(d[0], F)
        return jnp.where(hit, _constant(op, d, 1, dt), c)
    if name == "MATRIX_CONST_SET":
        hit = ((lax.broadcasted_iota(jnp.int32, c.shape, 1) == ops_lib._index(d[0], F))
               & (lax.broadcasted_iota(jnp.int32, c.shape, 2) == ops_lib._index(d[1], F)))
        return jnp.where(hit, _constant(op, d, 2, dt), c)
    kernel = lambda a_, b_, c_: op.kernel(a_, b_, c_, d, None)  # noqa: E731
    return jax.vmap(kernel)(a, b, c).astype(dt)


def _read(regs, addr):
    """The register `addr` of a bank (a tuple of lane arrays), addr a uniform scalar: a select chain."""
    value = regs[0]
    for k in range(1, len(regs)):
        value = jnp.where(addr == k, regs[k], value)
    return value


def _write(regs, addr, value):
    return tuple(jnp.where(addr == k, value, r) for k, r in enumerate(regs))


def component_branches(cfg: ZeroConfig, component: str) -> Tuple[int, ...]:
    """Global ids of the ops a component's switch holds (NO_OP first)."""
    ids = {ops_lib.NO_OP} | {ops_lib.OP_IDS[n] for n in cfg.ops(component)}
    return tuple(sorted(ids))


def _branch_table(cfg: ZeroConfig, component: str) -> np.ndarray:
    table = np.zeros(ops_lib.NUM_OPS, np.int32)
    for k, op_id in enumerate(component_branches(cfg, component)):
        table[op_id] = k
    return table


def _make_branch(op: ops_lib.OpSpec, F: int, dt):
    def branch(mem, i1, i2, o, d, keys, counter):
        if op.out is None:
            return mem
        banks = dict(zip(_BANKS, mem))
        a = _read(banks[op.in1], i1) if op.in1 else None
        b = _read(banks[op.in2], i2) if op.in2 else None
        c = _read(banks[op.out], o)
        result = _op_result(op, a, b, c, d, keys, counter, F, dt)
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
      interpret: run the kernel in Pallas interpret mode (default: on CPU only, decided when the function
        is traced).
      num_warps: Triton warps per kernel instance (one program) on GPU.
    """
    pl = _pallas()
    dt = cfg.jnp_dtype
    F = cfg.features
    accuracy = eval_type == "accuracy"
    max_abs = cfg.max_abs_error
    rule = KeyRule.for_config(cfg)
    E = int(num_epochs)
    sizes = (cfg.num_scalars, cfg.num_vectors, max(cfg.num_matrices, 1))
    branches = {c: [_make_branch(ops_lib.OPS[i], F, dt) for i in component_branches(cfg, c)]
                for c in COMPONENTS}
    tables = {c: _branch_table(cfg, c) for c in COMPONENTS}

    def fn(programs: Program, train_x, train_y, valid_x, valid_y, orders, keys, active):
        use_interpret = (jax.default_backend() == "cpu") if interpret is None else interpret
        P = programs.setup.size.shape[0]
        T, N, _ = train_x.shape
        M = valid_x.shape[1]
        # Triton tensors need power-of-two extents: lanes are padded; F must be one already.
        lanes = T if use_interpret else next_power_of_two(T)
        if not use_interpret and F != next_power_of_two(F):
            raise ValueError(f"pallas backend on GPU: features={F} must be a power of two")
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
        # validation set.
        xs = jnp.concatenate([jax.vmap(lambda x, o: x[o])(train_x, orders),
                              jnp.broadcast_to(valid_x[:, None], (T, E) + valid_x.shape[1:])], 2)
        ys = jnp.concatenate([jax.vmap(lambda y, o: y[o])(train_y, orders),
                              jnp.broadcast_to(valid_y[:, None], (T, E, M))], 2)
        xs = xs.reshape(T, E * (N + M), F).astype(dt)
        ys = ys.reshape(T, E * (N + M)).astype(dt)
        key_words = jax.random.key_data(keys).astype(jnp.uint32)  # [P, T, 2]
        if lanes != T:
            pad = lanes - T
            xs = jnp.pad(xs, ((0, pad), (0, 0), (0, 0)))
            ys = jnp.pad(ys, ((0, pad), (0, 0)))
            key_words = jnp.pad(key_words, ((0, 0), (0, pad), (0, 0)))
        kw0, kw1 = key_words[..., 0], key_words[..., 1]
        inputs = comp_args + [active.astype(jnp.int32), kw0, kw1, xs, ys]
        out_shape = [jax.ShapeDtypeStruct((P, lanes), dt)]
        aliases = {}
        if return_predictions:
            nan_train = jnp.full((P, lanes, E * N), jnp.nan, dt)
            nan_valid = jnp.full((P, lanes, E * M), jnp.nan, dt)
            aliases = {len(inputs): 1, len(inputs) + 1: 2}
            inputs += [nan_train, nan_valid]
            out_shape += [jax.ShapeDtypeStruct(nan_train.shape, dt), jax.ShapeDtypeStruct(nan_valid.shape, dt)]
        kernel = functools.partial(_kernel, cfg=cfg, branches=branches, sizes=sizes, rule=rule, E=E, N=N, M=M,
                                   T=T, lanes=lanes, accuracy=accuracy, max_abs=max_abs,
                                   return_predictions=return_predictions)
        compiler_params = None
        if not use_interpret:
            from jax.experimental.pallas import triton as plgpu

            compiler_params = plgpu.CompilerParams(num_warps=num_warps, num_stages=1)
        outs = pl.pallas_call(kernel, out_shape=tuple(out_shape), grid=(P,), input_output_aliases=aliases,
                              interpret=use_interpret, compiler_params=compiler_params)(*inputs)
        fitness = outs[0][:, :T]
        if not return_predictions:
            return fitness
        train = outs[1][:, :T].reshape(P, T, E, N)
        valid = outs[2][:, :T].reshape(P, T, E, M)
        return fitness, {"train": train, "valid": valid}

    return fn


def _kernel(*refs, cfg, branches, sizes, rule, E, N, M, T, lanes, accuracy, max_abs, return_predictions):
    pl = _pallas()
    (ins_s, dat_s, size_s, pos_s, ins_p, dat_p, size_p, pos_p, ins_l, dat_l, size_l, pos_l,
     active_ref, k0_ref, k1_ref, xs_ref, ys_ref) = refs[:17]
    rest = refs[17:]
    if return_predictions:
        rest = rest[2:]  # the aliased NaN inputs
        out_ref, ptrain_ref, pvalid_ref = rest
    else:
        (out_ref,) = rest
    dt = cfg.jnp_dtype
    F = cfg.features
    p = pl.program_id(0)
    keys = (k0_ref[p, :], k1_ref[p, :])
    stride = rule.step_stride

    def run(mem, ins_ref, dat_ref, pos_ref, n, counter0, comp_branches):
        def body(i, mem):
            op = ins_ref[p, i, 0]
            i1, i2, o = ins_ref[p, i, 1], ins_ref[p, i, 2], ins_ref[p, i, 3]
            d = (dat_ref[p, i, 0], dat_ref[p, i, 1], dat_ref[p, i, 2])
            counter = counter0 + pos_ref[p, i]
            if len(comp_branches) == 1:
                return mem
            return lax.switch(op, comp_branches, mem, i1, i2, o, d, keys, counter)

        return lax.fori_loop(0, n, body, mem)

    def zeros():
        s = tuple(jnp.zeros((lanes,), dt) for _ in range(sizes[0]))
        v = tuple(jnp.zeros((lanes, F), dt) for _ in range(sizes[1]))
        m = tuple(jnp.zeros((lanes, F, F), dt) for _ in range(sizes[2]))
        return (s, v, m)

    def set_inputs(mem, x, label):
        s, v, m = mem
        return ((label,) + s[1:], (x,) + v[1:], m)

    def set_s1(mem, value):
        s, v, m = mem
        return ((s[0], value) + s[2:], v, m)

    def any_true(mask):
        return jnp.max(mask.astype(jnp.int32)) > 0

    n_s, n_p, n_l = size_s[p], size_p[p], size_l[p]
    active = active_ref[p] != 0
    lane_ok = lax.broadcasted_iota(jnp.int32, (lanes,), 0) < T
    alive0 = lane_ok & active
    mem0 = run(zeros(), ins_s, dat_s, pos_s, n_s, jnp.int32(0), branches["setup"])
    zero_label = jnp.zeros((lanes,), dt)

    def predict(mem, step, x):
        mem = set_inputs(mem, x, zero_label)
        return run(mem, ins_p, dat_p, pos_p, n_p, step * stride, branches["predict"])

    def epoch(e, carry):
        mem, alive, best = carry
        base = e * (N + M)

        def train_cond(c):
            return (c[0] < N) & any_true(c[2])

        def train_body(c):
            j, mem, alive = c
            step = base + j + 1
            x, y = xs_ref[:, base + j, :], ys_ref[:, base + j]
            mem = predict(mem, step, x)
            s1 = mem[0][1]
            if accuracy:
                pred = _sigmoid(s1)
                mem = set_s1(mem, pred)
            else:
                pred = s1
            err = jnp.abs(y - pred)
            failed = jnp.isnan(err) | (err > max_abs)
            if return_predictions:
                ptrain_ref[p, :, e * N + j] = jnp.where(alive, pred, jnp.nan).astype(dt)
            alive = alive & ~failed
            mem = set_inputs(mem, x, y)
            mem = run(mem, ins_l, dat_l, pos_l, n_l, step * stride + rule.predict_stride, branches["learn"])
            return j + 1, mem, alive

        _, mem, alive = lax.while_loop(train_cond, train_body, (jnp.int32(0), mem, alive))

        def valid_cond(c):
            return (c[0] < M) & any_true(c[2])

        def valid_body(c):
            j, mem, alive, loss, bad_seen = c
            step = base + N + j + 1
            x, y = xs_ref[:, base + N + j, :], ys_ref[:, base + N + j]
            new = predict(mem, step, x)
            s1 = new[0][1]
            # The reference's validation returns at its first bad example: later Predicts do not run, so a
            # lane past it keeps its memory (it matters for the next epoch).
            run_lane = ~bad_seen
            if E > 1:
                new = jax.tree_util.tree_map(
                    lambda a, b: jnp.where(lax.broadcast_in_dim(run_lane, a.shape, (0,)), a, b), new, mem)
            if accuracy:
                err = ((y > 0.5) != (_sigmoid(s1) > 0.5)).astype(dt)
                bad = jnp.zeros((lanes,), bool)
                add = err
            else:
                err = y - s1
                bad = jnp.isnan(err) | (jnp.abs(err) > max_abs)
                add = err * err
            if return_predictions:
                pvalid_ref[p, :, e * M + j] = jnp.where(alive & run_lane, s1, jnp.nan).astype(dt)
            loss = loss + jnp.where(run_lane, add, 0).astype(dt)
            bad_seen = bad_seen | (run_lane & bad)
            return j + 1, new, alive, loss, bad_seen

        init = (jnp.int32(0), mem, alive, jnp.zeros((lanes,), dt), jnp.zeros((lanes,), bool))
        _, mem, alive, loss, bad_seen = lax.while_loop(valid_cond, valid_body, init)
        if accuracy:
            fit = (1 - loss / M).astype(dt)
        else:
            fit = _rms_fitness(loss / M, dt)
        fit = jnp.where(bad_seen, 0, fit).astype(dt)
        best = jnp.where(alive, jnp.maximum(best, fit), best)
        return mem, alive, best

    _, _, best = lax.fori_loop(0, E, epoch, (mem0, alive0, jnp.zeros((lanes,), dt)))
    out_ref[p, :] = best


class PallasBackend(Backend):
    """One `pallas_call` per batch; a kernel instance evaluates one program on all its tasks (GPU;
    interpret mode on CPU)."""

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
