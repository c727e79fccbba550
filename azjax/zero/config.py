"""The configuration of an AutoML-Zero program space: memory banks, op lists, component lengths, dtype.

`ZeroConfig` is a frozen, hashable dataclass (the static part of every jitted function over programs). The
reserved addresses: `s0` is the label, `s1` the prediction, `v0` the features; `s0` and `v0` are never
written by a program. In a multi-class config (`ZeroConfig.num_classes >= 2`, docs/automl_zero.md
"Multi-class tasks") the label is the one-hot vector `v1` (never written by a program either) and the
prediction the vector `v2`.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import jax.numpy as jnp
import numpy as np

from azjax.zero import ops as ops_lib

COMPONENTS = ("setup", "predict", "learn")
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
