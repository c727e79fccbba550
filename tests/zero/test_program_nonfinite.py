"""Non-finite constants in the program text: inf, -inf and nan round-trip exactly; a finite literal
that overflows the dtype is rejected with its line number."""
import numpy as np
import pytest

from azjax import zero


def _cfg(dtype):
    return zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                           setup_ops=("SCALAR_CONST_SET", "VECTOR_CONST_SET", "MATRIX_CONST_SET",
                                      "SCALAR_GAUSSIAN_SET"),
                           predict_ops=("VECTOR_INNER_PRODUCT",), learn_ops=("SCALAR_DIFF",),
                           setup_size=5, predict_size=1, learn_size=4, dtype=dtype)


def _text(line):
    return f"def Setup():\n  {line}\ndef Predict():\n  pass\ndef Learn():\n  pass\n"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("line", ["s2 = nan", "s2 = inf", "s2 = -inf", "v1[2] = -inf", "m0[1, 3] = nan",
                                  "s3 = gaussian(nan, inf)"])
def test_non_finite_constants_round_trip(dtype, line):
    cfg = _cfg(dtype)
    prog = zero.parse_program(_text(line), cfg)
    text = zero.format_program(prog, cfg)
    assert text == _text(line)
    again = zero.parse_program(text, cfg)
    np.testing.assert_array_equal(again.setup.data, prog.setup.data)  # NaN compares equal here


@pytest.mark.parametrize("dtype, literal", [("float32", "1e39"), ("float32", "-1e400"), ("float64", "1e400")])
def test_overflowing_literal_is_rejected_with_its_line(dtype, literal):
    with pytest.raises(ValueError, match=rf"line 2: constant {literal} overflows {dtype}"):
        zero.parse_program(_text(f"s2 = {literal}"), _cfg(dtype))


def test_format_program_of_evolved_inf_constant():
    cfg = _cfg("float32")
    prog = zero.make_program(cfg, setup=[("SCALAR_CONST_SET", 0, 0, 2, np.inf)])
    assert "s2 = inf" in zero.format_program(prog, cfg)
