"""Genotype encoding, NASNet-A, concat rules, JSON I/O and validation (pure Python)."""
import json

import numpy as np
import pytest

from azjax import nas


def test_nasnet_a_matches_slim_encoding():
    g = nas.NASNET_A
    names = lambda cell: [nas.OP_NAMES[o] for b in cell for o in (b[2], b[3])]
    inputs = lambda cell: [i for b in cell for i in (b[0], b[1])]
    assert inputs(g.normal) == [0, 1, 1, 1, 0, 1, 1, 1, 0, 0]
    assert names(g.normal) == ["sep_conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_3x3",
                               "avg_pool_3x3", "identity", "avg_pool_3x3", "avg_pool_3x3",
                               "sep_conv_3x3", "identity"]
    assert inputs(g.reduce) == [0, 1, 0, 1, 0, 1, 3, 2, 2, 0]
    assert names(g.reduce) == ["sep_conv_5x5", "sep_conv_7x7", "max_pool_3x3", "sep_conv_7x7",
                               "avg_pool_3x3", "sep_conv_5x5", "identity", "avg_pool_3x3",
                               "sep_conv_3x3", "max_pool_3x3"]
    assert all(b[4] == 0 for b in g.normal + g.reduce)  # every combiner is add
    assert g.normal_concat == (1, 2, 3, 4, 5, 6) and g.reduce_concat == (3, 4, 5, 6)
    assert g.normal_array.shape == (5, 5) and g.normal_array.dtype == np.int32
    assert len(nas.OP_NAMES) == 13 and len(set(nas.OP_NAMES)) == 13


def test_loose_ends_rule():
    assert nas.loose_ends(nas.NASNET_A.normal) == (2, 3, 4, 5, 6)
    assert nas.loose_ends(nas.NASNET_A.reduce) == (4, 5, 6)
    assert nas.NASNET_A_LOOSE_ENDS.normal_concat == (2, 3, 4, 5, 6)
    assert nas.NASNET_A_LOOSE_ENDS.reduce == nas.NASNET_A.reduce


def test_hashable_and_equal():
    g2 = nas.Genotype(nas.NASNET_A.normal_array, nas.NASNET_A.reduce_array,
                      [1, 2, 3, 4, 5, 6], np.array([3, 4, 5, 6]))
    assert g2 == nas.NASNET_A and hash(g2) == hash(nas.NASNET_A)


def test_json_roundtrip(tmp_path):
    path = tmp_path / "g.json"
    g = nas.NASNET_A.with_loose_ends()
    nas.save_genotype(g, path)
    d = json.loads(path.read_text())
    assert d["normal"][0] == {"inputs": [0, 1], "ops": ["sep_conv_5x5", "sep_conv_3x3"],
                              "combine": "add"}
    assert nas.load_genotype(path) == g
    assert not (tmp_path / "g.json.tmp").exists()


def _bad(cell_field, block, field, value):
    normal = nas.NASNET_A.normal_array.copy()
    normal[block, field] = value
    return normal


@pytest.mark.parametrize("block,field,value,pattern", [
    (0, 0, 2, r"normal, block 0, field 'input 1': 2 not in \[0, 2\)"),
    (3, 1, 5, r"normal, block 3, field 'input 2': 5 not in \[0, 5\)"),
    (2, 2, 13, r"normal, block 2, field 'op 1'"),
    (4, 3, -1, r"normal, block 4, field 'op 2'"),
    (1, 4, 2, r"normal, block 1, field 'combine'"),
])
def test_validation_names_block_and_field(block, field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        nas.Genotype(_bad("normal", block, field, value), nas.NASNET_A.reduce, (2,), (2,))


def test_validation_concat_and_json_errors(tmp_path):
    with pytest.raises(ValueError, match="reduce_concat: state 7"):
        nas.Genotype(nas.NASNET_A.normal, nas.NASNET_A.reduce, (2,), (7,))
    with pytest.raises(ValueError, match="normal_concat: repeated"):
        nas.Genotype(nas.NASNET_A.normal, nas.NASNET_A.reduce, (2, 2), (3,))
    d = nas.NASNET_A.to_dict()
    d["reduce"][2]["ops"][1] = "sep_conv_9x9"
    with pytest.raises(ValueError, match=r"reduce, block 2, field 'op 2': unknown op"):
        nas.Genotype.from_dict(d)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        nas.load_genotype(tmp_path / "bad.json")
