"""End-to-end: the launcher's digits config trains NASNet-A (num_cells 3, filters 8) to >= 90%.

Slow (about 4-5 minutes on 2 CPU cores: ~2 minutes of compiles); not in the default run.
"""
import json
import os

import pytest


@pytest.mark.slow
def test_nasnet_a_digits_reaches_90_percent(tmp_path):
    from experiments.nasnet import train
    from experiments.nasnet.configs import digits_tiny

    cfg = digits_tiny.get_config()
    metrics = train.run(cfg, str(tmp_path))
    assert metrics["test_accuracy"] >= 0.90, metrics
    assert metrics["valid_accuracy"] >= 0.90, metrics
    assert json.load(open(os.path.join(tmp_path, "metrics.json")))["steps"] == metrics["steps"]
    # Running again resumes from the final checkpoint: no more steps, same accuracy.
    again = train.run(cfg, str(tmp_path))
    assert again["steps"] == metrics["steps"]
    assert again["test_accuracy"] == metrics["test_accuracy"]
