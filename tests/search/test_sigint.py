"""A real Ctrl-C (SIGINT) delivered to a running search, then a resume in another process."""
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import chex
import jax
import pytest

from azjax import search
from tests.search import toy

SCRIPT = textwrap.dedent("""
    import os, pathlib, sys, time
    import jax, numpy as np
    from azjax import search
    from tests.search import toy

    marker = pathlib.Path(sys.argv[2])
    calls = [0]

    def evaluator(key, genomes):
        calls[0] += 1
        if calls[0] == 30:
            marker.write_text("running")
        time.sleep(0.002)
        return toy.onemax_evaluator(key, genomes)

    search.run(toy.SPACE, toy.EVO, evaluator, jax.random.key(0), max_evaluations=10**9,
               workdir=sys.argv[1], checkpoint_every_seconds=1000)
""")


@pytest.mark.slow
def test_sigint_then_resume_equals_uninterrupted(tmp_path):
    root = pathlib.Path(__file__).resolve().parents[2]
    marker = tmp_path / "marker"
    env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "wd"), str(marker)],
                            env=env, cwd=root)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the search process died"
            assert time.monotonic() < deadline, "the search never started"
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) != 0  # KeyboardInterrupt is re-raised after saving
    finally:
        if proc.poll() is None:
            proc.kill()
    step = search.latest_step(tmp_path / "wd")
    assert step is not None and step >= 30
    total = (step + 7) * toy.EVO.batch_size
    resumed = search.run(toy.SPACE, toy.EVO, toy.onemax_evaluator, jax.random.key(0),
                         max_evaluations=total, workdir=tmp_path / "wd")
    assert resumed.resumed_from == step
    full = search.run(toy.SPACE, toy.EVO, toy.onemax_evaluator, jax.random.key(0),
                      max_evaluations=total)
    chex.assert_trees_all_equal(resumed.state, full.state)
    assert resumed.counters == full.counters
