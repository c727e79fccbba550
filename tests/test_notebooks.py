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
# a second step (`python -m pytest -q -n 2 -m slow tests/test_notebooks.py`). Wall seconds of one notebook
# run alone under nbclient / CPU seconds of its kernel, measured while other jobs loaded the machine (load
# average 7-11 on 2 cores), so the wall times are pessimistic:
#   00_quickstart                  ~85 s (60 s of it is the search's MAX_SECONDS)
#   01_instruction_set, 03_nasnet_cells   fast
#   02_rediscover_backprop         TODO
#   04_controller_vs_evolution     TODO
#   05_multi_device                TODO
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
