"""Genotypes: both NASNet cells as integer arrays plus explicit output-concat lists.

A cell is ``B`` blocks; each block is five integers::

    (input 1, input 2, op 1, op 2, combine)

Hidden-state indices follow the TF-slim convention: ``0`` is ``h_i`` (the previous cell's output
after this cell's ReLU-1x1-BN projection), ``1`` is ``h_{i-1}`` (the cell before that, shape
aligned), ``2 + k`` is the output of block ``k``. So block ``j`` may read indices ``0 .. 1 + j``.
Ops index :data:`OP_NAMES`; combine is ``0`` (add) or ``1`` (concat along channels).

The cell output concatenates the states listed in the explicit concat list. The reference code
(TF-slim) hard-codes which states are concatenated, and that differs from the paper's
"loose ends" rule (§1.6); storing the list lets both conventions be expressed.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np

# The 13 candidate ops, in the paper's order.
OP_NAMES: tuple[str, ...] = (
    "identity",
    "conv_1x3_3x1",
    "conv_1x7_7x1",
    "dil_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)
OP_INDEX = {name: i for i, name in enumerate(OP_NAMES)}
COMBINE_NAMES: tuple[str, ...] = ("add", "concat")
NUM_BLOCKS = 5
FIELDS = ("input 1", "input 2", "op 1", "op 2", "combine")
FORMAT = "azjax.nas.genotype/1"

Cell = tuple[tuple[int, int, int, int, int], ...]


def _as_cell(blocks: Any) -> Cell:
    arr = np.asarray(blocks)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"cell: expected an int array of shape [B, 5], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"cell: expected integers, got dtype {arr.dtype}")
    return tuple(tuple(int(v) for v in row) for row in arr)


def validate_cell(cell: Cell, concat: Sequence[int], name: str = "cell") -> None:
    """Raise ``ValueError`` naming the cell, block and field of the first invalid entry."""
    if len(cell) < 1:
        raise ValueError(f"{name}: needs at least one block")
    for j, block in enumerate(cell):
        if len(block) != 5:
            raise ValueError(f"{name}, block {j}: expected 5 fields {FIELDS}, got {len(block)}")
        limits = (2 + j, 2 + j, len(OP_NAMES), len(OP_NAMES), len(COMBINE_NAMES))
        for field, value, hi in zip(FIELDS, block, limits):
            if not 0 <= value < hi:
                raise ValueError(f"{name}, block {j}, field '{field}': {value} not in [0, {hi})")
    num_states = 2 + len(cell)
    concat = tuple(concat)
    if not concat:
        raise ValueError(f"{name}_concat: must not be empty")
    for c in concat:
        if not 0 <= c < num_states:
            raise ValueError(f"{name}_concat: state {c} not in [0, {num_states})")
    if len(set(concat)) != len(concat):
        raise ValueError(f"{name}_concat: repeated state in {list(concat)}")


def loose_ends(cell: Cell) -> tuple[int, ...]:
    """The paper's output rule: block outputs (indices >= 2) not consumed by any other block."""
    used = {b[0] for b in cell} | {b[1] for b in cell}
    return tuple(2 + k for k in range(len(cell)) if 2 + k not in used)


@dataclasses.dataclass(frozen=True)
class Genotype:
    """Both cells of a NASNet child. Immutable and hashable (usable as a Flax module field).

    Attributes:
      normal: ``B`` blocks of ``(input 1, input 2, op 1, op 2, combine)`` for the Normal Cell.
      reduce: the same for the Reduction Cell.
      normal_concat: hidden-state indices concatenated into the Normal Cell output.
      reduce_concat: the same for the Reduction Cell.
    """

    normal: Cell
    reduce: Cell
    normal_concat: tuple[int, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self):
        # Normalise any array-like input to nested tuples so the object stays hashable.
        object.__setattr__(self, "normal", _as_cell(self.normal))
        object.__setattr__(self, "reduce", _as_cell(self.reduce))
        object.__setattr__(self, "normal_concat", tuple(int(c) for c in self.normal_concat))
        object.__setattr__(self, "reduce_concat", tuple(int(c) for c in self.reduce_concat))
        validate_cell(self.normal, self.normal_concat, "normal")
        validate_cell(self.reduce, self.reduce_concat, "reduce")

    @property
    def normal_array(self) -> np.ndarray:
        """The Normal Cell as an int32 ``[B, 5]`` array."""
        return np.asarray(self.normal, np.int32)

    @property
    def reduce_array(self) -> np.ndarray:
        """The Reduction Cell as an int32 ``[B, 5]`` array."""
        return np.asarray(self.reduce, np.int32)

    def with_loose_ends(self) -> "Genotype":
        """The same cells with the paper's loose-ends output rule instead of the stored lists."""
        return dataclasses.replace(
            self, normal_concat=loose_ends(self.normal), reduce_concat=loose_ends(self.reduce))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with op and combiner names (readable without this package)."""

        def cell_dict(cell):
            return [
                {"inputs": [b[0], b[1]], "ops": [OP_NAMES[b[2]], OP_NAMES[b[3]]],
                 "combine": COMBINE_NAMES[b[4]]}
                for b in cell
            ]

        return {
            "format": FORMAT,
            "state_indices": "0 = h_i (previous cell), 1 = h_{i-1}, 2 + k = block k",
            "normal": cell_dict(self.normal),
            "normal_concat": list(self.normal_concat),
            "reduce": cell_dict(self.reduce),
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Genotype":
        """Inverse of :meth:`to_dict`; errors name the cell, block and field."""
        if not isinstance(d, dict):
            raise ValueError(f"genotype: expected a dict, got {type(d).__name__}")
        if d.get("format", FORMAT) != FORMAT:
            raise ValueError(f"format: expected {FORMAT!r}, got {d.get('format')!r}")
        cells = {}
        for name in ("normal", "reduce"):
            if name not in d:
                raise ValueError(f"{name}: missing from genotype")
            if name + "_concat" not in d:
                raise ValueError(f"{name}_concat: missing from genotype")
            rows = []
            for j, b in enumerate(d[name]):
                where = f"{name}, block {j}"
                try:
                    inputs, ops, combine = b["inputs"], b["ops"], b.get("combine", "add")
                except (KeyError, TypeError) as e:
                    raise ValueError(f"{where}: missing field {e}") from e
                if len(inputs) != 2 or len(ops) != 2:
                    raise ValueError(f"{where}: 'inputs' and 'ops' need two entries each")
                for field, op in zip(("op 1", "op 2"), ops):
                    if op not in OP_INDEX:
                        raise ValueError(f"{where}, field '{field}': unknown op {op!r}")
                if combine not in COMBINE_NAMES:
                    raise ValueError(f"{where}, field 'combine': unknown combiner {combine!r}")
                rows.append((int(inputs[0]), int(inputs[1]), OP_INDEX[ops[0]], OP_INDEX[ops[1]],
                             COMBINE_NAMES.index(combine)))
            cells[name] = np.asarray(rows, np.int64).reshape(-1, 5)
        return cls(normal=cells["normal"], reduce=cells["reduce"],
                   normal_concat=d["normal_concat"], reduce_concat=d["reduce_concat"])

    def __str__(self) -> str:
        def cell_str(cell, concat):
            blocks = "; ".join(
                f"b{j}={COMBINE_NAMES[b[4]]}({OP_NAMES[b[2]]}[{b[0]}], {OP_NAMES[b[3]]}[{b[1]}])"
                for j, b in enumerate(cell))
            return f"{blocks}; out=concat{list(concat)}"

        return (f"normal: {cell_str(self.normal, self.normal_concat)}\n"
                f"reduce: {cell_str(self.reduce, self.reduce_concat)}")


def save_genotype(genotype: Genotype, path: str | os.PathLike) -> None:
    """Write a genotype as JSON (atomically: temp file then ``os.replace``)."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(genotype.to_dict(), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def load_genotype(path: str | os.PathLike) -> Genotype:
    """Read a genotype JSON file written by :func:`save_genotype`."""
    path = os.fspath(path)
    with open(path) as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"genotype file {path!r} is not valid JSON: {e}") from e
    return Genotype.from_dict(d)


def _cell(inputs: Sequence[int], ops: Sequence[str]) -> np.ndarray:
    """Build a cell from slim-style flat lists (two inputs and two ops per block, all add)."""
    rows = [(inputs[2 * j], inputs[2 * j + 1], OP_INDEX[ops[2 * j]], OP_INDEX[ops[2 * j + 1]], 0)
            for j in range(len(ops) // 2)]
    return np.asarray(rows, np.int64)


# NASNet-A exactly as TF-slim builds it. Output concat lists follow the slim
# `used_hiddenstates` masks: normal concatenates h_{i-1} and all blocks (6F), reduction b1..b4 (4F).
NASNET_A = Genotype(
    normal=_cell(
        [0, 1, 1, 1, 0, 1, 1, 1, 0, 0],
        ["sep_conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_3x3", "avg_pool_3x3",
         "identity", "avg_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "identity"]),
    reduce=_cell(
        [0, 1, 0, 1, 0, 1, 3, 2, 2, 0],
        ["sep_conv_5x5", "sep_conv_7x7", "max_pool_3x3", "sep_conv_7x7", "avg_pool_3x3",
         "sep_conv_5x5", "identity", "avg_pool_3x3", "sep_conv_3x3", "max_pool_3x3"]),
    normal_concat=(1, 2, 3, 4, 5, 6),
    reduce_concat=(3, 4, 5, 6),
)

# The same cells under the paper's strict loose-ends rule (normal 5F, reduction 3F), as DARTS
# re-encodes NASNet-A.
NASNET_A_LOOSE_ENDS = NASNET_A.with_loose_ends()
