"""Programs, their configuration, validation and the program text format.

A program is three component functions (Setup, Predict, Learn). Each component is a fixed-length array of
instructions padded with NO_OPs, so a population of programs is a pytree of dense arrays that `vmap`,
`jit` and sharding handle directly:

* `Component.instructions`  int32 [..., L, 4]: op id (global, 0-64), in1, in2, out (bank addresses);
* `Component.data`          float [..., L, 3]: the constants f0, f1, f2 (SCALAR_CONST_SET's value is f0;
                             VECTOR_CONST_SET f0 = index fraction, f1 = value; MATRIX_CONST_SET f0, f1 index
                             fractions, f2 value; uniform f0 low, f1 high; gaussian f0 mean, f1 sd);
* `Component.size`          int32 [...]: the used length; instructions beyond it are NO_OPs.

Memory is typed banks: scalars s0..s{S-1}, vectors v0..v{V-1} (length F), matrices m0..m{M-1} (F×F).
`s0` is the label, `s1` the prediction, `v0` the features; `s0` and `v0` are never written by a program.
In a multi-class config (`ZeroConfig.num_classes >= 2`, docs/automl_zero.md "Multi-class tasks") the label
is the one-hot vector `v1` (never written by a program either) and the prediction the vector `v2`.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable, List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from azjax.zero import ops as ops_lib

COMPONENTS = ("setup", "predict", "learn")
_HEADERS = {"setup": "def Setup():", "predict": "def Predict():", "learn": "def Learn():"}
_BANK_NAMES = {"s": "num_scalars", "v": "num_vectors", "m": "num_matrices"}
# Lowest writable address per bank: s0 (label) and v0 (features) are written only by the harness.
_FIRST_WRITABLE = {"s": 1, "v": 1, "m": 0}
# Multi-class configs: v1 holds the one-hot label, written only by the harness too.
_FIRST_WRITABLE_MULTICLASS = {"s": 1, "v": 2, "m": 0}
# The reserved vector addresses of the multi-class layout (the reference's kLabelsVectorAddress and
# kPredictionsVectorAddress).
LABEL_VECTOR, PREDICTION_VECTOR = 1, 2


@dataclasses.dataclass(frozen=True)
class ZeroConfig:
    """The static description of an AutoML-Zero program space and its execution.

    Attributes:
      num_scalars, num_vectors, num_matrices: bank sizes (>= 2, >= 1, >= 0: s0, s1 and v0 are reserved).
      features: F, the vector length (any positive integer).
      setup_ops, predict_ops, learn_ops: op names allowed in each component (NO_OP is always allowed; an
        empty tuple freezes the component as NO_OPs).
      setup_size, predict_size, learn_size: maximum component lengths (array lengths).
      dtype: "float32" or "float64" (float64 matches the C++ reference's doubles).
      max_abs_error: training stops when |label - prediction| exceeds it (reference: 100).
      num_classes: 0 (default) for the scalar layout of regression and binary tasks (label s0, prediction
        s1); K >= 2 for K-class tasks (`Tasks.eval_type == "multiclass"`): the one-hot label is written to
        v1 (never writable, like s0), the K logits are read from v2[:K]; needs K <= features and
        num_vectors >= 3 (docs/automl_zero.md, "Multi-class tasks").
    """

    num_scalars: int = 4
    num_vectors: int = 3
    num_matrices: int = 1
    features: int = 4
    setup_ops: Tuple[str, ...] = ()
    predict_ops: Tuple[str, ...] = ()
    learn_ops: Tuple[str, ...] = ()
    setup_size: int = 10
    predict_size: int = 2
    learn_size: int = 8
    dtype: str = "float32"
    max_abs_error: float = 100.0
    num_classes: int = 0

    def __post_init__(self):
        def check_int(field, value, minimum):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"ZeroConfig.{field} must be an integer >= {minimum}, got {value!r}")
            object.__setattr__(self, field, int(value))

        check_int("num_scalars", self.num_scalars, 2)
        check_int("num_vectors", self.num_vectors, 1)
        check_int("num_matrices", self.num_matrices, 0)
        check_int("features", self.features, 1)
        for c in COMPONENTS:
            # At least one slot (an empty component is a NO_OP-padded one of size 0).
            check_int(f"{c}_size", getattr(self, f"{c}_size"), 1)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"ZeroConfig.dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not self.max_abs_error > 0:
            raise ValueError(f"ZeroConfig.max_abs_error must be > 0, got {self.max_abs_error!r}")
        check_int("num_classes", self.num_classes, 0)
        if self.num_classes == 1:
            raise ValueError("ZeroConfig.num_classes must be 0 (scalar label) or >= 2, got 1")
        if self.num_classes:
            if self.num_classes > self.features:
                raise ValueError(f"ZeroConfig.num_classes={self.num_classes} must be <= features={self.features} "
                                 "(the label and prediction vectors hold one entry per class)")
            if self.num_vectors < 3:
                raise ValueError(f"ZeroConfig.num_vectors must be >= 3 for num_classes >= 2 (v0 features, v1 "
                                 f"label, v2 prediction), got {self.num_vectors}")
        for c in COMPONENTS:
            field = f"{c}_ops"
            names = getattr(self, field)
            if isinstance(names, str):
                raise ValueError(f"ZeroConfig.{field} must be a sequence of op names, got a string")
            canonical = []
            for name in names:
                if str(name).upper() in ("NO_OP", "NO_OP_OP"):
                    continue  # always allowed
                try:
                    op = ops_lib.OPS[ops_lib.op_id(name)]
                except ValueError as e:
                    raise ValueError(f"ZeroConfig.{field}: {e}") from None
                for role in ("in1", "in2", "out"):
                    t = getattr(op, role)
                    if t is None:
                        continue
                    available = self.bank_size(t) - (self.first_writable(t) if role == "out" else 0)
                    if available <= 0:
                        raise ValueError(
                            f"ZeroConfig.{field}: op {op.name} needs a {'writable ' if role == 'out' else ''}"
                            f"{_BANK_NAMES[t][4:]} address but {_BANK_NAMES[t]}={self.bank_size(t)}")
                if op.name not in canonical:
                    canonical.append(op.name)
            object.__setattr__(self, field, tuple(canonical))

    @property
    def multiclass(self) -> bool:
        """Whether programs use the multi-class layout (vector label v1, vector prediction v2)."""
        return self.num_classes >= 2

    def first_writable(self, kind: str) -> int:
        """The lowest address of bank `kind` ("s", "v", "m") that instructions may write."""
        return (_FIRST_WRITABLE_MULTICLASS if self.num_classes >= 2 else _FIRST_WRITABLE)[kind]

    def bank_size(self, kind: str) -> int:
        return {"s": self.num_scalars, "v": self.num_vectors, "m": self.num_matrices}[kind]

    def ops(self, component: str) -> Tuple[str, ...]:
        return getattr(self, f"{component}_ops")

    def size(self, component: str) -> int:
        return getattr(self, f"{component}_size")

    @property
    def jnp_dtype(self):
        return jnp.float64 if self.dtype == "float64" else jnp.float32

    @property
    def np_dtype(self):
        return np.float64 if self.dtype == "float64" else np.float32

    @property
    def used_op_ids(self) -> Tuple[int, ...]:
        """Sorted ids of every op some component may contain (NO_OP included)."""
        ids = {ops_lib.NO_OP}
        for c in COMPONENTS:
            ids.update(ops_lib.OP_IDS[n] for n in self.ops(c))
        return tuple(sorted(ids))


@struct.dataclass
class Component:
    """One component function: instructions int32 [..., L, 4], data float [..., L, 3], size int32 [...]."""

    instructions: jax.Array
    data: jax.Array
    size: jax.Array


@struct.dataclass
class Program:
    """An AutoML-Zero program (or a population of them, with leading axes)."""

    setup: Component
    predict: Component
    learn: Component

    def component(self, name: str) -> Component:
        return getattr(self, name)


Instruction = Tuple  # (op name or id, in1=0, in2=0, out=0, f0=0., f1=0., f2=0.)


def _component_arrays(cfg: ZeroConfig, name: str, instructions: Sequence[Instruction]):
    length = cfg.size(name)
    if len(instructions) > length:
        raise ValueError(f"{name}: {len(instructions)} instructions exceed {name}_size={length}")
    ins = np.zeros((length, 4), np.int32)
    data = np.zeros((length, 3), cfg.np_dtype)
    for k, instr in enumerate(instructions):
        instr = tuple(instr) + (0,) * (7 - len(instr))
        ins[k] = (ops_lib.op_id(instr[0]),) + tuple(int(x) for x in instr[1:4])
        data[k] = instr[4:7]
    return Component(instructions=ins, data=data, size=np.int32(len(instructions)))


def make_program(cfg: ZeroConfig, setup: Sequence[Instruction] = (), predict: Sequence[Instruction] = (),
                 learn: Sequence[Instruction] = (), validate: bool = True) -> Program:
    """Builds a program from instruction tuples `(op, in1, in2, out, f0, f1, f2)` (trailing fields optional).

    Unused fields are zeroed (canonical form) and the result is validated against `cfg`. Leaves are numpy
    arrays (so float64 constants stay exact whether or not jax_enable_x64 is on).
    """
    prog = Program(setup=_component_arrays(cfg, "setup", setup),
                   predict=_component_arrays(cfg, "predict", predict),
                   learn=_component_arrays(cfg, "learn", learn))
    prog = jax.tree_util.tree_map(np.asarray, canonicalize(prog, cfg, xp=np))
    if validate:
        validate_program(prog, cfg)
    # Host (numpy) leaves keep float64 constants exact even when jax_enable_x64 is off.
    return prog


def empty_program(cfg: ZeroConfig) -> Program:
    """The all-NO_OP program of size 0 in every component."""
    return make_program(cfg)


def stack_programs(programs: Iterable[Program]) -> Program:
    """Stacks programs into one with a leading population axis."""
    programs = list(programs)
    if not programs:
        raise ValueError("stack_programs: need at least one program")
    def stack(*xs):
        return np.stack(xs) if all(isinstance(x, np.ndarray) for x in xs) else jnp.stack(xs)

    return jax.tree_util.tree_map(stack, *programs)


def unstack_programs(programs: Program) -> List[Program]:
    """Splits a population (leading axis) into a list of programs."""
    n = programs.setup.size.shape[0]
    return [jax.tree_util.tree_map(lambda x: x[i], programs) for i in range(n)]


# Per-op tables, derived from the instruction-set table (re-exported here for validation and older imports).
IN1_TYPE, IN2_TYPE, OUT_TYPE = ops_lib.IN1_TYPE, ops_lib.IN2_TYPE, ops_lib.OUT_TYPE
NUM_DATA, IS_INDEX = ops_lib.NUM_DATA, ops_lib.IS_INDEX

# Per op: in1/in2/out used, constant slots kept, slots that are index fractions, slots stored as float32.
_CANONICAL_RULES = np.concatenate([np.stack([IN1_TYPE >= 0, IN2_TYPE >= 0, OUT_TYPE >= 0], axis=1),
                                   np.arange(3)[None, :] < NUM_DATA[:, None], IS_INDEX,
                                   ops_lib.STORED_FLOAT32], axis=1)


def canonical_rows(instructions, data, size, features: int, xp=jnp):
    """The canonical form of instruction rows [..., L, 4] / constants [..., L, 3] with sizes [...].

    Rows past the size become NO_OPs, unused fields become 0, constants the reference stores as float32
    are rounded to float32, and index fractions snap to the centre (i + 0.5) / F of the element they pick
    (truncating F * f in float32, as the reference does), so equal programs are equal arrays. `xp` is jnp
    (jittable) or np.
    """
    F, dtype = features, data.dtype
    used = xp.arange(instructions.shape[-2]) < size[..., None]
    op = xp.where(used, instructions[..., 0], 0)
    rule = xp.asarray(_CANONICAL_RULES)[op]  # [..., L, 12]
    ins = xp.concatenate([op[..., None], xp.where(rule[..., 0:3], instructions[..., 1:], 0)], axis=-1)
    narrow = data.astype(np.float32)
    stored = xp.where(rule[..., 9:12], narrow.astype(dtype), data)
    # A centre table computed by numpy and stored as float32: XLA CPU divides by multiplying with a
    # reciprocal (one ulp off). NaN would cast to an arbitrary integer, so it reads as 0 here (a NaN index
    # fails validation; other slots discard the snapped value).
    centers = xp.asarray(((np.arange(F) + 0.5) / F).astype(np.float32).astype(dtype))
    scaled = xp.where(xp.isnan(narrow), np.float32(0), narrow) * np.float32(F)
    snapped = centers[xp.clip(xp.floor(scaled), 0, F - 1).astype(np.int32)]
    data = xp.where(rule[..., 6:9], snapped, stored)
    data = xp.where(rule[..., 3:6], data, 0).astype(dtype)
    return ins.astype(np.int32), data


def canonicalize(prog: Program, cfg: ZeroConfig, xp=jnp) -> Program:
    """`canonical_rows` applied to every component: equal programs become equal arrays.

    Works on any leading batch shape; `xp` is jnp (jittable) or np.
    """
    def fix(comp: Component) -> Component:
        ins, data = canonical_rows(comp.instructions, comp.data, comp.size, cfg.features, xp)
        return Component(instructions=ins, data=data, size=comp.size)

    return Program(*(fix(prog.component(c)) for c in COMPONENTS))


def validate_program(prog: Program, cfg: ZeroConfig) -> None:
    """Checks arrays (any leading batch shape) against `cfg`; raises ValueError naming the bad field."""
    for c in COMPONENTS:
        comp = prog.component(c)
        try:
            ins = np.asarray(comp.instructions)
            data = np.asarray(comp.data)
            size = np.asarray(comp.size)
        except Exception as e:  # noqa: BLE001 - anything that is not array-like
            raise ValueError(f"program.{c}: not an array pytree ({e})") from None
        length = cfg.size(c)
        if ins.ndim < 2 or ins.shape[-2:] != (length, 4):
            raise ValueError(f"program.{c}.instructions: expected shape [..., {length}, 4], got {ins.shape}")
        if not np.issubdtype(ins.dtype, np.integer):
            raise ValueError(f"program.{c}.instructions: expected an integer dtype, got {ins.dtype}")
        batch = ins.shape[:-2]
        if data.shape != batch + (length, 3):
            raise ValueError(f"program.{c}.data: expected shape {batch + (length, 3)}, got {data.shape}")
        if not np.issubdtype(data.dtype, np.floating):
            raise ValueError(f"program.{c}.data: expected a float dtype, got {data.dtype}")
        if size.shape != batch:
            raise ValueError(f"program.{c}.size: expected shape {batch}, got {size.shape}")
        if np.any((size < 0) | (size > length)):
            raise ValueError(f"program.{c}.size: values must lie in [0, {length}], got {size.ravel()[:8]}")
        op = ins[..., 0]
        if np.any((op < 0) | (op >= ops_lib.NUM_OPS)):
            bad = op[(op < 0) | (op >= ops_lib.NUM_OPS)].ravel()[0]
            raise ValueError(f"program.{c}.instructions[..., 0] (op): id {bad} out of range [0, 64]")
        used = np.arange(length) < size[..., None]
        if np.any(~used & (op != ops_lib.NO_OP)):
            raise ValueError(f"program.{c}.instructions: ops beyond program.{c}.size must be NO_OP")
        allowed = np.zeros(ops_lib.NUM_OPS, bool)
        allowed[ops_lib.NO_OP] = True
        for name in cfg.ops(c):
            allowed[ops_lib.OP_IDS[name]] = True
        if not np.all(allowed[op]):
            bad = ops_lib.OPS[int(op[~allowed[op]].ravel()[0])].name
            raise ValueError(f"program.{c}: op {bad} is not allowed in {c} (ZeroConfig.{c}_ops)")
        for col, role, types in ((1, "in1", IN1_TYPE), (2, "in2", IN2_TYPE), (3, "out", OUT_TYPE)):
            t = types[op]
            addr = ins[..., col]
            for code, kind in enumerate("svm"):
                sel = t == code
                lo = cfg.first_writable(kind) if role == "out" else 0
                bad = sel & ((addr < lo) | (addr >= cfg.bank_size(kind)))
                if np.any(bad):
                    a = int(addr[bad].ravel()[0])
                    what = ("writes reserved " if role == "out" and a < lo else "addresses out-of-range ")
                    raise ValueError(f"program.{c}.instructions[..., {col}] ({role}): {what}{kind}{a} "
                                     f"(bank {_BANK_NAMES[kind]}={cfg.bank_size(kind)})")
        index = IS_INDEX[op]
        if np.any(index & ((data < 0) | (data >= 1) | ~np.isfinite(data))):
            raise ValueError(f"program.{c}.data: element-index fractions must lie in [0, 1)")


# ----------------------------------------------------------------------------------------------------------
# Text format.

_FLOAT = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan))"
_ADDR = r"([svm]\d+)"


def _template_regex(text: str) -> Tuple[re.Pattern, List[str]]:
    fields = []
    pattern = ""
    for part in re.split(r"(\{[a-z]\})", text):
        if part.startswith("{") and part.endswith("}"):
            name = part[1]
            fields.append(name)
            pattern += {"o": _ADDR, "a": _ADDR, "b": _ADDR, "x": _FLOAT, "y": _FLOAT, "z": _FLOAT,
                        "i": r"(\d+)", "j": r"(\d+)"}[name]
        else:
            pattern += re.escape(part).replace(r"\ ", r"\s*")
    return re.compile(r"^\s*" + pattern + r"\s*$"), fields


_TEMPLATES = [(op, *_template_regex(op.text)) for op in ops_lib.OPS]


def _format_float(x: float, dtype) -> str:
    """The shortest text that parses back to the same value of ``dtype``: ``inf``, ``-inf`` and ``nan``
    for the non-finite ones."""
    if np.isnan(x):
        return "nan"
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    if dtype == np.float32:
        return str(np.float32(x))
    return repr(float(x))


def _parse_float(text: str, dtype, fail) -> float:
    """A constant of the text format. ``inf``, ``-inf`` and ``nan`` stand for themselves; a finite literal
    that does not fit ``dtype`` (``1e400``, or ``1e39`` in float32) is an error rather than a silent
    ``inf``."""
    value = float(text)
    if text.lstrip("+-") in ("inf", "nan"):
        return value
    with np.errstate(over="ignore"):
        stored = dtype(value)
    if not np.isfinite(stored):
        fail(f"constant {text} overflows {np.dtype(dtype).name} (write inf or -inf if that is meant)")
    return value


def format_program(prog: Program, cfg: ZeroConfig) -> str:
    """The program's canonical text. `prog` must be a single (unbatched) program."""
    validate_program(prog, cfg)
    if np.asarray(prog.setup.size).ndim != 0:
        raise ValueError("format_program: expected one program, got a batch (use unstack_programs)")
    F = cfg.features
    lines = []
    for c in COMPONENTS:
        comp = prog.component(c)
        ins = np.asarray(comp.instructions)
        data = np.asarray(comp.data)
        lines.append(_HEADERS[c])
        n = int(comp.size)
        if n == 0:
            lines.append("  pass")
        for k in range(n):
            op = ops_lib.OPS[int(ins[k, 0])]
            subs = {}
            if op.in1:
                subs["a"] = f"{op.in1}{ins[k, 1]}"
            if op.in2:
                subs["b"] = f"{op.in2}{ins[k, 2]}"
            if op.out:
                subs["o"] = f"{op.out}{ins[k, 3]}"
            values = [_format_float(v, cfg.np_dtype) for v in data[k]]
            # Index slots are validated to lie in [0, 1); other slots may hold any value.
            indices = [str(min(int(F * float(v)), F - 1)) if np.isfinite(v) else "0" for v in data[k]]
            if op.name == "VECTOR_CONST_SET":
                subs.update(i=indices[0], y=values[1])
            elif op.name == "MATRIX_CONST_SET":
                subs.update(i=indices[0], j=indices[1], z=values[2])
            else:
                subs.update(x=values[0], y=values[1])
            lines.append("  " + op.text.format(**subs))
    return "\n".join(lines) + "\n"


def parse_program(text: str, cfg: ZeroConfig) -> Program:
    """Parses the text format into a validated Program; errors name the line number and its text."""
    F = cfg.features
    components = {c: [] for c in COMPONENTS}
    current = None
    order = list(COMPONENTS)
    seen = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue

        def fail(msg):
            raise ValueError(f"line {lineno}: {msg}: {raw.strip()!r}")

        stripped = line.strip()
        header = [c for c, h in _HEADERS.items() if stripped == h]
        if header:
            expected = order[len(seen)] if len(seen) < 3 else None
            if header[0] != expected:
                fail(f"expected header {_HEADERS[expected]!r}" if expected else "extra header")
            seen.append(header[0])
            current = header[0]
            continue
        if current is None:
            fail("instruction before 'def Setup():'")
        if stripped == "pass":
            continue
        instr = None
        for op, regex, fields in _TEMPLATES:
            m = regex.match(line)
            if not m:
                continue
            values = dict(zip(fields, m.groups()))
            ok = True
            for f, role in (("o", "out"), ("a", "in1"), ("b", "in2")):
                if f in values and values[f][0] != getattr(op, role):
                    ok = False
            if not ok:
                continue
            addr = {f: int(values[f][1:]) for f in ("o", "a", "b") if f in values}
            for f, role in (("o", "out"), ("a", "in1"), ("b", "in2")):
                if f not in addr:
                    continue
                kind = getattr(op, role)
                if addr[f] >= cfg.bank_size(kind):
                    fail(f"address {kind}{addr[f]} out of range ({_BANK_NAMES[kind]}={cfg.bank_size(kind)})")
                if role == "out" and addr[f] < cfg.first_writable(kind):
                    fail(f"cannot write {kind}{addr[f]} (reserved: written only by the harness)")
            d = [0.0, 0.0, 0.0]
            const = {f: _parse_float(values[f], cfg.np_dtype, fail) for f in ("x", "y", "z") if f in values}
            if op.name == "VECTOR_CONST_SET":
                idx = [int(values["i"])]
                d = [None, const["y"], 0.0]
            elif op.name == "MATRIX_CONST_SET":
                idx = [int(values["i"]), int(values["j"])]
                d = [None, None, const["z"]]
            else:
                idx = []
                if "x" in const:
                    d[0] = const["x"]
                if "y" in const:
                    d[1] = const["y"]
            for k, i in enumerate(idx):
                if not 0 <= i < F:
                    fail(f"element index {i} out of range [0, {F})")
                d[k] = (i + 0.5) / F
            instr = (op.id, addr.get("a", 0), addr.get("b", 0), addr.get("o", 0), *d)
            break
        if instr is None:
            fail("not an instruction of the program text format")
        if instr[0] != ops_lib.NO_OP and ops_lib.OPS[instr[0]].name not in cfg.ops(current):
            fail(f"op {ops_lib.OPS[instr[0]].name} is not allowed in {current} (ZeroConfig.{current}_ops)")
        if len(components[current]) >= cfg.size(current):
            fail(f"too many instructions in {current} ({current}_size={cfg.size(current)})")
        components[current].append(instr)
    if seen != order:
        missing = [c for c in order if c not in seen]
        raise ValueError(f"missing header(s): {', '.join(_HEADERS[c] for c in missing)}")
    return make_program(cfg, **components)
