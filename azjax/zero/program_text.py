"""The program text format: `format_program` writes a program as Setup/Predict/Learn listings in the
instruction set's templates (docs/instruction_set.md), `parse_program` reads them back (round trip exact)."""
from __future__ import annotations

import re
from typing import List, Tuple

import numpy as np

from azjax.zero import ops as ops_lib
from azjax.zero.config import _BANK_NAMES, COMPONENTS, ZeroConfig
from azjax.zero.program import Program, make_program, validate_program

_HEADERS = {"setup": "def Setup():", "predict": "def Predict():", "learn": "def Learn():"}

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
