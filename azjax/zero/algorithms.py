"""Hand-written algorithms of the reference as program texts and programs.

* Linear regression by SGD (LINEAR_ALGORITHM): learning rate in s2, weights in v1.
* A 2-layer ReLU network trained by backprop (NEURAL_NET_ALGORITHM): first layer m0, bias v1, output
  weights v2, output bias s2, learning rate s3; needs >= 5 scalars, 9 vectors, 2 matrices. As in the
  reference, the hidden-layer gradient uses the already-updated output weights.
* The "damaged" network (its two Gaussian initialisations removed) that the nonlinear integration test
  asks evolution to repair.
* For multi-class configs (`ZeroConfig.num_classes >= 2`: one-hot label in v1, logits in v2, softmax
  written back before Learn; docs/automl_zero.md "Multi-class tasks"): softmax regression (weights m0) and
  the same 2-layer network with a matrix output layer, both trained by SGD on the cross-entropy, whose
  gradient with respect to the logits is v1 - v2.
"""
from __future__ import annotations

from azjax.zero.program import Program, ZeroConfig
from azjax.zero.program_text import parse_program

LINEAR_OPS = ("SCALAR_CONST_SET", "VECTOR_INNER_PRODUCT", "SCALAR_DIFF", "SCALAR_PRODUCT",
              "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM")
NEURAL_NETWORK_SETUP_OPS = ("SCALAR_CONST_SET", "VECTOR_GAUSSIAN_SET", "MATRIX_GAUSSIAN_SET")
NEURAL_NETWORK_PREDICT_OPS = ("MATRIX_VECTOR_PRODUCT", "VECTOR_SUM", "VECTOR_MAX", "VECTOR_INNER_PRODUCT",
                              "SCALAR_SUM")
NEURAL_NETWORK_LEARN_OPS = ("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_SUM", "SCALAR_VECTOR_PRODUCT",
                            "VECTOR_SUM", "VECTOR_HEAVYSIDE", "VECTOR_PRODUCT", "VECTOR_OUTER_PRODUCT",
                            "MATRIX_SUM")


def linear_regression_text(learning_rate: float = 0.01) -> str:
    """Linear regression trained by SGD on the squared error."""
    return (
        "def Setup():\n"
        f"  s2 = {learning_rate!r}\n"
        "def Predict():\n"
        "  s1 = dot(v1, v0)\n"
        "def Learn():\n"
        "  s3 = s0 - s1\n"
        "  s3 = s2 * s3\n"
        "  v2 = s3 * v0\n"
        "  v1 = v1 + v2\n")


def neural_network_text(learning_rate: float = 0.01, init_sd: float = 0.1, damaged: bool = False) -> str:
    """The reference's 2-layer ReLU network trained by backprop (or its damaged variant)."""
    init = "" if damaged else (f"  v2 = gaussian(0.0, {init_sd!r})\n"
                               f"  m0 = gaussian(0.0, {init_sd!r})\n")
    return (
        "def Setup():\n"
        + init +
        f"  s3 = {learning_rate!r}\n"
        "def Predict():\n"
        "  v3 = dot(m0, v0)\n"
        "  v3 = v3 + v1\n"
        "  v4 = maximum(v3, v5)\n"
        "  s1 = dot(v4, v2)\n"
        "  s1 = s1 + s2\n"
        "def Learn():\n"
        "  s4 = s0 - s1\n"
        "  s4 = s3 * s4\n"
        "  s2 = s2 + s4\n"
        "  v6 = s4 * v4\n"
        "  v2 = v2 + v6\n"
        "  v7 = s4 * v2\n"
        "  v8 = heaviside(v3)\n"
        "  v7 = v8 * v7\n"
        "  v1 = v1 + v7\n"
        "  m1 = outer(v7, v0)\n"
        "  m0 = m0 + m1\n")


MULTICLASS_NETWORK_SETUP_OPS = ("SCALAR_CONST_SET", "MATRIX_GAUSSIAN_SET")
MULTICLASS_NETWORK_PREDICT_OPS = ("MATRIX_VECTOR_PRODUCT", "VECTOR_SUM", "VECTOR_MAX")
MULTICLASS_NETWORK_LEARN_OPS = ("VECTOR_DIFF", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM", "VECTOR_OUTER_PRODUCT",
                                "MATRIX_SUM", "MATRIX_TRANSPOSE", "MATRIX_VECTOR_PRODUCT", "VECTOR_HEAVYSIDE",
                                "VECTOR_PRODUCT")


def softmax_regression_text(learning_rate: float = 0.01) -> str:
    """Multi-class softmax regression (multinomial logistic regression) trained by SGD: logits v2 = m0 v0;
    Learn sees the probabilities in v2 and the one-hot label in v1, so (v1 - v2) v0^T is the descent
    direction of the cross-entropy."""
    return (
        "def Setup():\n"
        f"  s2 = {learning_rate!r}\n"
        "def Predict():\n"
        "  v2 = dot(m0, v0)\n"
        "def Learn():\n"
        "  v3 = v1 - v2\n"
        "  v3 = s2 * v3\n"
        "  m1 = outer(v3, v0)\n"
        "  m0 = m0 + m1\n")


def multiclass_neural_network_text(learning_rate: float = 0.01, init_sd: float = 0.1,
                                   damaged: bool = False) -> str:
    """The 2-layer ReLU network for multi-class configs: hidden layer m0 with bias v4, output layer m1 with
    bias v7, learning rate s2; as in the binary network, the hidden-layer gradient uses the already-updated
    output weights. Needs >= 3 scalars, 11 vectors and 4 matrices."""
    init = "" if damaged else (f"  m0 = gaussian(0.0, {init_sd!r})\n"
                               f"  m1 = gaussian(0.0, {init_sd!r})\n")
    return (
        "def Setup():\n"
        + init +
        f"  s2 = {learning_rate!r}\n"
        "def Predict():\n"
        "  v3 = dot(m0, v0)\n"
        "  v3 = v3 + v4\n"
        "  v5 = maximum(v3, v6)\n"
        "  v2 = dot(m1, v5)\n"
        "  v2 = v2 + v7\n"
        "def Learn():\n"
        "  v8 = v1 - v2\n"
        "  v8 = s2 * v8\n"
        "  v7 = v7 + v8\n"
        "  m2 = outer(v8, v5)\n"
        "  m1 = m1 + m2\n"
        "  m3 = transpose(m1)\n"
        "  v9 = dot(m3, v8)\n"
        "  v10 = heaviside(v3)\n"
        "  v9 = v10 * v9\n"
        "  v4 = v4 + v9\n"
        "  m2 = outer(v9, v0)\n"
        "  m0 = m0 + m2\n")


def softmax_regression_config(features: int = 16, num_classes: int = 10, dtype: str = "float32",
                              **overrides) -> ZeroConfig:
    """A multi-class config in which the softmax-regression program is valid (banks 3/4/2)."""
    kw = dict(num_scalars=3, num_vectors=4, num_matrices=2, features=features, num_classes=num_classes,
              setup_ops=("SCALAR_CONST_SET",), predict_ops=("MATRIX_VECTOR_PRODUCT",),
              learn_ops=("VECTOR_DIFF", "SCALAR_VECTOR_PRODUCT", "VECTOR_OUTER_PRODUCT", "MATRIX_SUM"),
              setup_size=1, predict_size=1, learn_size=4, dtype=dtype)
    kw.update(overrides)
    return ZeroConfig(**kw)


def multiclass_neural_network_config(features: int = 16, num_classes: int = 10, dtype: str = "float32",
                                     **overrides) -> ZeroConfig:
    """A multi-class config in which the multi-class network is valid (banks 3/11/4)."""
    kw = dict(num_scalars=3, num_vectors=11, num_matrices=4, features=features, num_classes=num_classes,
              setup_ops=MULTICLASS_NETWORK_SETUP_OPS, predict_ops=MULTICLASS_NETWORK_PREDICT_OPS,
              learn_ops=MULTICLASS_NETWORK_LEARN_OPS, setup_size=3, predict_size=5, learn_size=12, dtype=dtype)
    kw.update(overrides)
    return ZeroConfig(**kw)


def linear_regression_config(features: int = 4, dtype: str = "float32", **overrides) -> ZeroConfig:
    """A config in which the linear-regression program is valid (the reference demo's banks 4/3/1)."""
    kw = dict(num_scalars=4, num_vectors=3, num_matrices=1, features=features, setup_ops=LINEAR_OPS,
              predict_ops=LINEAR_OPS, learn_ops=LINEAR_OPS, setup_size=10, predict_size=2, learn_size=8,
              dtype=dtype)
    kw.update(overrides)
    return ZeroConfig(**kw)


def neural_network_config(features: int = 4, dtype: str = "float32", **overrides) -> ZeroConfig:
    """A config in which the network program is valid (banks 5/9/2, the reference's minimum)."""
    kw = dict(num_scalars=5, num_vectors=9, num_matrices=2, features=features,
              setup_ops=NEURAL_NETWORK_SETUP_OPS, predict_ops=NEURAL_NETWORK_PREDICT_OPS,
              learn_ops=NEURAL_NETWORK_LEARN_OPS, setup_size=7, predict_size=5, learn_size=11, dtype=dtype)
    kw.update(overrides)
    return ZeroConfig(**kw)


def linear_regression_program(cfg: ZeroConfig, learning_rate: float = 0.01) -> Program:
    return parse_program(linear_regression_text(learning_rate), cfg)


def neural_network_program(cfg: ZeroConfig, learning_rate: float = 0.01, init_sd: float = 0.1,
                           damaged: bool = False) -> Program:
    return parse_program(neural_network_text(learning_rate, init_sd, damaged), cfg)


def softmax_regression_program(cfg: ZeroConfig, learning_rate: float = 0.01) -> Program:
    return parse_program(softmax_regression_text(learning_rate), cfg)


def multiclass_neural_network_program(cfg: ZeroConfig, learning_rate: float = 0.01, init_sd: float = 0.1,
                                      damaged: bool = False) -> Program:
    return parse_program(multiclass_neural_network_text(learning_rate, init_sd, damaged), cfg)
