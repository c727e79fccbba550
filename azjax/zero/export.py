"""An evolved program as standalone Python source (NumPy only, no azjax import).

`export_program(prog, cfg)` writes a module that a researcher can paste into a paper's appendix or another
code base. It defines the memory layout (`Memory`: typed banks `s`, `v`, `m`), the three component functions
`setup(mem, rng=None)`, `predict(mem, rng=None)`, `learn(mem, rng=None)` as straight-line code (one line per
live instruction; instructions that cannot affect the prediction are kept as comments), and
`evaluate(train_x, train_y, valid_x, valid_y, eval_type, num_epochs, ...)`, the evaluation loop of
the reference executor as `zero.evaluate` runs it.

Why NumPy rather than jax.numpy: the exported code is meant to be read and run anywhere (a notebook without
accelerators, a paper's supplement); NumPy is everywhere, executes eagerly line by line, and in float64 gives
the same fitness as `zero.evaluate` up to last-bit rounding of a few transcendental functions and sums.

Exact op semantics are kept where the reference is unusual: scalar heaviside is `>= 0` but
vector/matrix heaviside `> 0`; the standard deviations use the one-pass formula; scalar min/max follow C++
`std::min`/`std::max` and matrix (and vector, as azjax does) min/max the hand loops' NaN rules; uniform sets
with low >= high write low (resolved at export time, since the constants are known). Dot products and
norms are written as elementwise products and sums (the kernels' own formulation, no BLAS fused
multiply-adds). Random ops draw from an explicit `numpy.random.Generator` (`rng`), so their numbers differ
from azjax's JAX keys but follow the same distributions (NumPy's uniform is half-open [low, high)).
"""
from __future__ import annotations

import functools
import re
from typing import List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from azjax.zero import liveness
from azjax.zero import ops as ops_lib
from azjax.zero.program import COMPONENTS, Component, Program, ZeroConfig, validate_program

_FUNCTION_NAMES = {"setup": "setup", "predict": "predict", "learn": "learn"}
_DOCS = {
    "setup": "Runs once per task, on zeroed memory.",
    "predict": "Features in v[0] (s[0] = 0); writes the prediction s[1].",
    "learn": "After each training Predict: features in v[0], label in s[0].",
}

# Helpers the generated code may call; only those a program uses are written out.
_HELPERS = {
    "_mean": (
        "def _mean(x, axis=None):\n"
        "    # A true division by the element count (not a multiplication by its reciprocal).\n"
        "    n = x.size if axis is None else x.shape[axis]\n"
        "    return np.sum(x, axis=axis) / n\n"),
    "_std": (
        "def _std(x, axis=None):\n"
        "    # The reference's one-pass formula sqrt(E[x^2] - E[x]^2): NaN when rounding makes it negative.\n"
        "    return np.sqrt(_mean(x * x, axis) - _mean(x, axis) ** 2)\n"),
}
_HELPER_DEPS = {"_std": ("_mean",)}


def _float(x: float, cfg: ZeroConfig) -> str:
    # The shortest text that round-trips in the program's precision (stored values are exact).
    if cfg.dtype == "float32":
        return str(np.float32(x))
    return repr(float(x))


def _index(fraction: float, size: int) -> int:
    # The kernels' floor(F * fraction), clipped (fractions are canonical (i + 0.5) / F).
    return int(min(max(np.floor(size * float(fraction)), 0), size - 1))


def _numpy_line(op: ops_lib.OpSpec, ins, data, cfg: ZeroConfig) -> Tuple[str, Tuple[str, ...]]:
    """The NumPy statement of one instruction and the helpers it needs."""
    a = f"{op.in1}[{ins[1]}]" if op.in1 else None
    b = f"{op.in2}[{ins[2]}]" if op.in2 else None
    o = f"{op.out}[{ins[3]}]" if op.out else None
    n = op.name
    F = cfg.features
    x, y, z = (_float(v, cfg) for v in data)
    elementwise_unary = {"ABS": "np.abs({a})", "RECIPROCAL": "1.0 / {a}"}
    binary = {"SUM": "+", "DIFF": "-", "PRODUCT": "*", "DIVISION": "/"}
    kind, _, rest = n.partition("_")
    if n == "NO_OP":
        return "pass", ()
    if kind in ("SCALAR", "VECTOR", "MATRIX") and rest in binary and op.in1 == op.in2 == op.out:
        return f"{o} = {a} {binary[rest]} {b}", ()
    if kind in ("SCALAR", "VECTOR", "MATRIX") and rest in elementwise_unary:
        return f"{o} = " + elementwise_unary[rest].format(a=a), ()
    if kind == "SCALAR" and rest in ("SIN", "COS", "TAN", "ARCSIN", "ARCCOS", "ARCTAN", "EXP", "LOG"):
        return f"{o} = np.{rest.lower()}({a})", ()
    table = {
        # Scalar heaviside is >= 0, vector/matrix heaviside > 0; NaN gives 0 in all three.
        "SCALAR_HEAVYSIDE": f"{o} = 1.0 if {a} >= 0 else 0.0",
        "VECTOR_HEAVYSIDE": f"{o} = np.where({a} > 0, 1.0, 0.0)",
        "MATRIX_HEAVYSIDE": f"{o} = np.where({a} > 0, 1.0, 0.0)",
        "SCALAR_VECTOR_PRODUCT": f"{o} = {a} * {b}",
        "SCALAR_BROADCAST": f"{o} = {a}",
        "VECTOR_NORM": f"{o} = np.sqrt(np.sum({a} * {a}))",
        "VECTOR_INNER_PRODUCT": f"{o} = np.sum({a} * {b})",
        "VECTOR_OUTER_PRODUCT": f"{o} = np.outer({a}, {b})",
        "SCALAR_MATRIX_PRODUCT": f"{o} = {a} * {b}",
        "MATRIX_VECTOR_PRODUCT": f"{o} = np.sum({a} * {b}, axis=1)",
        "VECTOR_COLUMN_BROADCAST": f"{o} = {a}[:, None]",
        "VECTOR_ROW_BROADCAST": f"{o} = {a}[None, :]",
        "MATRIX_NORM": f"{o} = np.sqrt(np.sum({a} * {a}))",
        "MATRIX_COLUMN_NORM": f"{o} = np.sqrt(np.sum({a} * {a}, axis=0))",
        "MATRIX_ROW_NORM": f"{o} = np.sqrt(np.sum({a} * {a}, axis=1))",
        "MATRIX_TRANSPOSE": f"{o} = {a}.T.copy()",
        "MATRIX_MATRIX_PRODUCT": f"{o} = np.sum({a}[:, :, None] * {b}[None, :, :], axis=1)",
        # C++ comparison semantics with NaN.
        "SCALAR_MIN": f"{o} = {b} if {b} < {a} else {a}",
        "SCALAR_MAX": f"{o} = {b} if {a} < {b} else {a}",
        "VECTOR_MIN": f"{o} = np.where({a} < {b}, {a}, {b})",
        "MATRIX_MIN": f"{o} = np.where({a} < {b}, {a}, {b})",
        "VECTOR_MAX": f"{o} = np.where({a} > {b}, {a}, {b})",
        "MATRIX_MAX": f"{o} = np.where({a} > {b}, {a}, {b})",
        "VECTOR_MEAN": f"{o} = _mean({a})",
        "MATRIX_MEAN": f"{o} = _mean({a})",
        "MATRIX_ROW_MEAN": f"{o} = _mean({a}, axis=1)",
        "MATRIX_ROW_ST_DEV": f"{o} = _std({a}, axis=1)",
        "VECTOR_ST_DEV": f"{o} = _std({a})",
        "MATRIX_ST_DEV": f"{o} = _std({a})",
        "SCALAR_CONST_SET": f"{o} = {x}",
        "VECTOR_CONST_SET": f"{o}[{_index(data[0], F)}] = {y}",
        "MATRIX_CONST_SET": f"{o}[{_index(data[0], F)}, {_index(data[1], F)}] = {z}",
    }
    if n in table:
        line = table[n]
        helpers = tuple(h for h in ("_mean", "_std") if h + "(" in line)
        return line, helpers
    shape = {"s": "", "v": ", FEATURES", "m": ", (FEATURES, FEATURES)"}[op.out]
    if rest.endswith("UNIFORM_SET"):
        if not float(data[0]) < float(data[1]):
            # abseil's Uniform returns low for an empty or inverted interval.
            return f"{o} = {x}", ()
        return f"{o} = rng.uniform({x}, {y}{shape})", ()
    if rest.endswith("GAUSSIAN_SET"):
        size = {"s": "", "v": "FEATURES", "m": "(FEATURES, FEATURES)"}[op.out]
        return f"{o} = {x} + {y} * rng.standard_normal({size})", ()
    raise ValueError(f"export_program: op {n} has no NumPy template")  # pragma: no cover - all 65 covered


def _text_line(op: ops_lib.OpSpec, ins, data, cfg: ZeroConfig) -> str:
    """The instruction in the program text format."""
    subs = {}
    if op.in1:
        subs["a"] = f"{op.in1}{ins[1]}"
    if op.in2:
        subs["b"] = f"{op.in2}{ins[2]}"
    if op.out:
        subs["o"] = f"{op.out}{ins[3]}"
    F = cfg.features
    if op.name == "VECTOR_CONST_SET":
        subs.update(i=_index(data[0], F), y=_float(data[1], cfg))
    elif op.name == "MATRIX_CONST_SET":
        subs.update(i=_index(data[0], F), j=_index(data[1], F), z=_float(data[2], cfg))
    else:
        subs.update(x=_float(data[0], cfg), y=_float(data[1], cfg))
    return op.text.format(**subs)


def _component_source(prog: Program, cfg: ZeroConfig, name: str, live: np.ndarray,
                      helpers: set) -> List[str]:
    comp = prog.component(name)
    ins = np.asarray(comp.instructions)
    data = np.asarray(comp.data, np.float64)
    size = int(np.asarray(comp.size))
    body: List[str] = []
    uses_rng = False
    num_live = 0
    for k in range(size):
        op = ops_lib.OPS[int(ins[k, 0])]
        text = _text_line(op, ins[k], data[k], cfg)
        if op.name == "NO_OP":
            body.append("# no_op")
            continue
        if not live[k]:
            body.append(f"# {text}  (dead: cannot affect the prediction)")
            continue
        line, needed = _numpy_line(op, ins[k], data[k], cfg)
        helpers.update(needed)
        uses_rng |= "rng." in line
        num_live += 1
        if re.sub(r"([svm])\[(\d+)\]", r"\1\2", line) != text:
            note = "  (low >= high gives low)" if op.name.endswith("UNIFORM_SET") and "rng" not in line else ""
            line += f"  # {text}{note}"
        body.append(line)
    lines = [f"def {_FUNCTION_NAMES[name]}(mem, rng=None):",
             f'    """{_DOCS[name]} {num_live} of {size} instructions live."""']
    if uses_rng:
        lines += ["    if rng is None:",
                  f"        raise ValueError('rng: {name}() draws random numbers; pass a numpy.random.Generator')"]
    if num_live:
        lines.append("    s, v, m = mem.s, mem.v, mem.m")
    lines += ["    " + b for b in body]
    if not num_live:
        lines.append("    pass")
    return lines


_EVALUATE = '''

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(z):
    """Softmax of the logits z, maximum taken left to right (NaN if any logit is NaN)."""
    top = z[0]
    for x in z[1:]:
        top = DTYPE(np.nan) if (np.isnan(top) or np.isnan(x)) else max(top, x)
    e = np.exp(z - top)
    total = e[0]
    for x in e[1:]:
        total = total + x
    return e / total


def evaluate(train_x, train_y, valid_x, valid_y, eval_type="rms", num_epochs=1, orders=None, rng=None,
             shuffle_seed=0, max_abs_error=MAX_ABS_ERROR):
    """Fitness in [0, 1] of this program on one task (the AutoML-Zero evaluation loop).

    Memory starts at zero and Setup runs once. Each epoch trains on every example (epoch 0 in stored
    order, later ones in `orders[e]`, or a permutation from `shuffle_seed` if `orders` is None):
    v0 = x, s0 = 0, Predict; for "accuracy" s1 = sigmoid(s1) is written back; the run stops if
    |y - s1| is NaN or > max_abs_error (fitness 0 in the first epoch, else the best earlier epoch);
    then v0 = x, s0 = y, Learn. After every epoch, validation runs Predict only (s0 = 0) on the
    validation examples in order; "rms" fitness is 1 - (2 / pi) * arctan(RMSE) (0 at the first error
    that is NaN or > max_abs_error), "accuracy" fitness is the fraction classified right by
    sigmoid(s1) > 0.5. The best epoch counts. `rng` (a numpy.random.Generator) feeds random ops.
    "multiclass" (programs exported from a config with NUM_CLASSES = K >= 2; labels are class ids):
    the label vector v1 is zeroed before every Predict and holds the one-hot label before every
    Learn (s0 stays 0); training writes the softmax of the logits v2[:K] back to v2 (zeros beyond K)
    and stops on a NaN probability; an example is validated right when its K logits are finite and
    the first largest is the label; fitness is the accuracy.
    """
    if eval_type not in ("rms", "accuracy", "multiclass"):
        raise ValueError(f"eval_type must be 'rms', 'accuracy' or 'multiclass', got {eval_type!r}")
    if (eval_type == "multiclass") != (NUM_CLASSES >= 2):
        raise ValueError(f"eval_type {eval_type!r} does not fit this program's memory layout "
                         f"(NUM_CLASSES = {NUM_CLASSES}: 'multiclass' needs >= 2, the others 0)")
    train_x, train_y = np.asarray(train_x, DTYPE), np.asarray(train_y, DTYPE)
    valid_x, valid_y = np.asarray(valid_x, DTYPE), np.asarray(valid_y, DTYPE)
    if train_x.shape[-1] != FEATURES or valid_x.shape[-1] != FEATURES:
        raise ValueError(f"train_x/valid_x: expected {FEATURES} features, got {train_x.shape}, {valid_x.shape}")
    n, m_valid = train_y.shape[0], valid_y.shape[0]
    if orders is None:
        shuffler = np.random.default_rng(shuffle_seed)
        orders = [np.arange(n)] + [shuffler.permutation(n) for _ in range(num_epochs - 1)]
    accuracy = eval_type == "accuracy"
    multiclass = eval_type == "multiclass"
    K = NUM_CLASSES
    mem = Memory()
    best = DTYPE(0.0)
    with np.errstate(all="ignore"):  # IEEE inf / NaN flow through, as in the reference
        setup(mem, rng)
        for epoch in range(num_epochs):
            for i in orders[epoch]:
                mem.v[0], mem.s[0] = train_x[i], 0.0
                if multiclass:
                    mem.v[1] = 0.0
                predict(mem, rng)
                if multiclass:
                    probs = _softmax(mem.v[2][:K])
                    mem.v[2] = 0.0
                    mem.v[2][:K] = probs
                    if np.any(np.isnan(probs)):
                        return DTYPE(0.0) if epoch == 0 else best
                    mem.v[0], mem.s[0] = train_x[i], 0.0
                    mem.v[1] = 0.0
                    mem.v[1][int(train_y[i])] = 1.0
                    learn(mem, rng)
                    continue
                if accuracy:
                    mem.s[1] = _sigmoid(mem.s[1])
                err = abs(train_y[i] - mem.s[1])
                if np.isnan(err) or err > max_abs_error:
                    return DTYPE(0.0) if epoch == 0 else best
                mem.v[0], mem.s[0] = train_x[i], train_y[i]
                learn(mem, rng)
            loss = DTYPE(0.0)
            failed = False
            for i in range(m_valid):
                mem.v[0], mem.s[0] = valid_x[i], 0.0
                if multiclass:
                    mem.v[1] = 0.0
                predict(mem, rng)
                if multiclass:
                    z = mem.v[2][:K]
                    right = bool(np.all(np.isfinite(z))) and int(np.argmax(z)) == int(valid_y[i])
                    loss += DTYPE(not right)
                elif accuracy:
                    loss += DTYPE((valid_y[i] > 0.5) != (_sigmoid(mem.s[1]) > 0.5))
                else:
                    e = valid_y[i] - mem.s[1]
                    if np.isnan(e) or abs(e) > max_abs_error:
                        failed = True  # the reference returns at its first bad validation example
                        break
                    loss += e * e
            if failed:
                fitness = DTYPE(0.0)
            elif accuracy or multiclass:
                fitness = DTYPE(1 - loss / m_valid)
            else:
                rmse = np.sqrt(loss / m_valid)
                fitness = DTYPE(1 - (2 / np.pi) * np.arctan(rmse)) if np.isfinite(rmse) else DTYPE(0.0)
            best = max(best, fitness)
    return best
'''


def live_flags(prog: Program, cfg: ZeroConfig) -> List[np.ndarray]:
    """Per component (setup, predict, learn), bool [L]: which instructions can affect the prediction."""
    # liveness works on jax arrays (it indexes with traced positions); only the int fields matter.
    ints = Program(*(Component(instructions=jnp.asarray(np.asarray(prog.component(c).instructions), jnp.int32),
                               data=jnp.zeros(np.shape(prog.component(c).data), jnp.float32),
                               size=jnp.asarray(np.asarray(prog.component(c).size), jnp.int32))
                     for c in COMPONENTS))
    return [np.asarray(f) for f in _live_fn(cfg)(ints)]


@functools.lru_cache(maxsize=16)
def _live_fn(cfg: ZeroConfig):
    # One compile per config: eager while_loop/scan would re-trace on every call (seconds per program).
    return jax.jit(lambda p: liveness.live_instructions(p, cfg))


def export_program(prog: Program, cfg: ZeroConfig, name: str = "evolved") -> str:
    """Standalone NumPy source of one program: `Memory`, `setup`/`predict`/`learn` and `evaluate`.

    Args:
      prog: a single (unbatched) program valid for `cfg`.
      cfg: its config (bank sizes, F, dtype).
      name: a name used in the module docstring.

    Returns:
      Python source (a str) that imports only numpy; `exec` it or save it as a module.
    """
    if not isinstance(cfg, ZeroConfig):
        raise ValueError(f"cfg: expected a zero.ZeroConfig, got {type(cfg).__name__}")
    if not isinstance(name, str) or not name.strip() or '"""' in name:
        raise ValueError(f"name: expected a non-empty string without triple quotes, got {name!r}")
    validate_program(prog, cfg)
    if np.ndim(prog.setup.size) != 0:
        raise ValueError("prog: expected one program, got a batch (use zero.unstack_programs)")
    flags = live_flags(prog, cfg)
    helpers: set = set()
    functions = []
    for c, live in zip(COMPONENTS, flags):
        functions.append("\n".join(_component_source(prog, cfg, c, live, helpers)))
    for h in list(helpers):
        helpers.update(_HELPER_DEPS.get(h, ()))
    dtype = "np.float64" if cfg.dtype == "float64" else "np.float32"
    layout = ("s[0] is the label (0 during Predict), s[1] the prediction, v[0] the features." if not cfg.multiclass
              else f"Multi-class layout ({cfg.num_classes} classes): v[1] is the one-hot label (0 during Predict), "
                   f"v[2][:{cfg.num_classes}]\nthe logits (probabilities after the softmax in training), v[0] the "
                   "features.")
    header = f'''"""AutoML-Zero program {name!r}, exported by azjax.zero.export (standalone: NumPy only).

Memory: {cfg.num_scalars} scalars s[i], {cfg.num_vectors} vectors v[i] of length F={cfg.features}, \
{cfg.num_matrices} matrices m[i] (F x F), all {cfg.dtype}.
{layout}
Lines kept as comments are instructions that cannot affect the prediction (dead code).
"""
import numpy as np

NUM_SCALARS = {cfg.num_scalars}
NUM_VECTORS = {cfg.num_vectors}
NUM_MATRICES = {cfg.num_matrices}
FEATURES = {cfg.features}
DTYPE = {dtype}
MAX_ABS_ERROR = {float(cfg.max_abs_error)!r}
NUM_CLASSES = {cfg.num_classes}


class Memory:
    """The typed memory banks, zeroed."""

    def __init__(self):
        self.s = np.zeros(NUM_SCALARS, DTYPE)
        self.v = np.zeros((NUM_VECTORS, FEATURES), DTYPE)
        self.m = np.zeros((NUM_MATRICES, FEATURES, FEATURES), DTYPE)
'''
    parts = [header]
    parts += [_HELPERS[h] for h in ("_mean", "_std") if h in helpers]
    parts += [f + "\n" for f in functions]
    return "\n\n".join(p.rstrip("\n") + "\n" for p in parts) + _EVALUATE
