"""Every notebook runs top to bottom (nbclient, a fresh python3 kernel, CPU, non-interactive matplotlib)."""
from __future__ import annotations

import os
import pathlib
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")  # provides the python3 kernel
pytest.importorskip("matplotlib")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
# Measured on the project's 2-core CPU (cold compilation cache); > 60 s ones are slow tests, which CI runs in
# a second step (`python -m pytest -q -n 2 -m slow tests/test_notebooks.py`). Seconds for one notebook run
# by itself under nbclient: wall / CPU of its kernel. Other jobs loaded the machine (load average 4-5 on
# 2 cores), so the wall times are pessimistic; CPU seconds approximate an idle machine. 02 and 05 are under
# 60 s there but stay slow: on a shared machine (or under -n 2 next to another notebook) they exceed it.
#   00_quickstart                 ~75 wall (60 of them the search's MAX_SECONDS)
#   01_instruction_set            fast (default suite)
#   02_rediscover_backprop         54 / 47   (115-170 wall at load 7-11)
#   03_nasnet_cells               fast (default suite)
#   04_controller_vs_evolution     86 / 83   (tabular benchmark, 10 seeds x 4 strategies x 2 tables)
#   05_multi_device                47 / 45   (slow: two searches, 1 and 8 fake devices, compile apart)
# The whole slow step above, cold compilation cache, 2 workers, load ~4 from other jobs: 187 s wall
# (04: 131 s, 02: 76 s, 00: 74 s, 05: 46 s; 226 CPU-s in all).
SLOW = {"00_quickstart.ipynb", "02_rediscover_backprop.ipynb", "04_controller_vs_evolution.ipynb",
        "05_multi_device.ipynb"}
BUDGET_SECONDS = 180  # issue 7: each notebook runs in <= 3 minutes on a 2-core CPU


def notebook_params():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def test_notebooks_are_stored_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: stored outputs"
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert first_code.source.startswith("# Parameters"), f"{path.name}: no parameters cell at the top"


def test_multi_device_notebook_sets_xla_flags_before_importing_jax():
    # The fake device count is read once, when JAX starts: the flag must come before any jax import.
    nb = nbformat.read(NOTEBOOKS / "05_multi_device.ipynb", as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    first_jax = next(i for i, src in enumerate(sources) if "import jax" in src or "from azjax" in src)
    flag = next(i for i, src in enumerate(sources) if "xla_force_host_platform_device_count" in src)
    assert flag < first_jax and "XLA_FLAGS" in sources[flag]


@pytest.mark.parametrize("name", notebook_params())
def test_notebook_runs(name, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    # The kernel must import this checkout's azjax, wherever the notebook's directory is.
    root = str(NOTEBOOKS.parent)
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=BUDGET_SECONDS, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    start = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert elapsed < BUDGET_SECONDS, f"{name} took {elapsed:.0f} s"
