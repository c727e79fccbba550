"""The notebooks are stored executed, and every one runs top to bottom here.

They are committed with their outputs and figures, so a reader sees the plots, program listings and cell
drawings on the repository page without running anything; `test_notebook_runs` re-executes an in-memory
copy of each (nbclient, a fresh python3 kernel, CPU, non-interactive matplotlib) and leaves the file alone.

After changing a notebook (or the library code it shows), execute it and store it with its outputs, with
the same settings as the test:

    python tests/test_notebooks.py                       # all notebooks
    python tests/test_notebooks.py 00_quickstart.ipynb   # some
"""
from __future__ import annotations

import os
import pathlib
import re
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")  # provides the python3 kernel
pytest.importorskip("matplotlib")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
# The slow ones run in CI's second step (`python -m pytest -q -n 2 -m slow tests/test_notebooks.py`). Wall
# seconds of one notebook run by itself (`python tests/test_notebooks.py NAME`, cold compilation cache), pinned
# to one core of the project's 2-core CPU while other jobs loaded it (load average in brackets), so an idle
# machine is faster; measured when they were stored:
#   00_quickstart                 99 (6)    the search reaches fitness > 0.9999 after 154k programs, in 53 s
#   01_instruction_set            81 (7)    default suite (three backends compile: native, select, cond)
#   02_rediscover_backprop       140 (5)
#   03_nasnet_cells               41 (6)    default suite
#   04_controller_vs_evolution   164 (4.5)  tabular benchmark, 10 seeds x 4 strategies x 2 tables
#   05_multi_device              178 (5.5)  two searches, 1 and 8 fake devices, compile apart
SLOW = {"00_quickstart.ipynb", "01_instruction_set.ipynb", "02_rediscover_backprop.ipynb",
        "03_nasnet_cells.ipynb", "04_controller_vs_evolution.ipynb", "05_multi_device.ipynb"}
BUDGET_SECONDS = 180  # each notebook runs in <= 3 minutes on a 2-core CPU
MAX_STORED_BYTES = 300_000  # per stored notebook, outputs and figures included
# What the kernel runs with, in the test and when storing: CPU, a non-interactive matplotlib backend (the
# notebooks select the inline one themselves), and this checkout's azjax wherever the notebook is.
KERNEL_ENV = {"MPLBACKEND": "Agg", "JAX_PLATFORMS": "cpu"}


def notebook_params():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def kernel_env() -> dict:
    root = str(NOTEBOOKS.parent)
    return dict(KERNEL_ENV, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))


def execute(nb, timeout=BUDGET_SECONDS) -> float:
    """Runs `nb` in place in a fresh kernel started in notebooks/ (the caller sets `kernel_env()`); seconds."""
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    start = time.monotonic()
    client.execute()
    return time.monotonic() - start


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def error_outputs(nb):
    return [o for c in code_cells(nb) for o in c.outputs if o.output_type == "error"]


def stream_text(nb) -> str:
    return "".join(o.get("text", "") for c in code_cells(nb) for o in c.outputs if o.output_type == "stream")


def test_notebooks_are_stored_executed():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert paths
    for path in paths:
        size = path.stat().st_size
        assert size < MAX_STORED_BYTES, f"{path.name}: {size} bytes stored (figures too large?)"
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        cells = code_cells(nb)
        assert cells[0].source.startswith("# Parameters"), f"{path.name}: no parameters cell at the top"
        counts = [c.execution_count for c in cells]
        assert counts == list(range(1, len(cells) + 1)), f"{path.name}: not executed top to bottom: {counts}"
        assert not error_outputs(nb), f"{path.name}: stored error output"
        assert not any("execution" in c.metadata for c in cells), f"{path.name}: timing metadata stored"


def test_quickstart_stored_run_reaches_the_learner():
    # The notebook says evolution rediscovers the learner within its time budget; its stored run shows it.
    nb = nbformat.read(NOTEBOOKS / "00_quickstart.ipynb", as_version=4)
    max_seconds = float(re.search(r"^MAX_SECONDS = ([0-9_.]+)", code_cells(nb)[0].source, re.M).group(1))
    summary = re.search(r"(\d+) programs evaluated in ([0-9.]+) s \(stopped by (\w+)\); best fitness ([0-9.]+)",
                        stream_text(nb))
    assert summary, "00_quickstart: no stored search summary"
    seconds, reason, best = float(summary.group(2)), summary.group(3), float(summary.group(4))
    assert best > 0.999 and reason == "sufficient_fitness", summary.group(0)
    assert seconds <= max_seconds, summary.group(0)


def test_multi_device_notebook_sets_xla_flags_before_importing_jax():
    # The fake device count is read once, when JAX starts: the flag must come before any jax import.
    nb = nbformat.read(NOTEBOOKS / "05_multi_device.ipynb", as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    first_jax = next(i for i, src in enumerate(sources) if "import jax" in src or "from azjax" in src)
    flag = next(i for i, src in enumerate(sources) if "xla_force_host_platform_device_count" in src)
    assert flag < first_jax and "XLA_FLAGS" in sources[flag]


@pytest.mark.parametrize("name", notebook_params())
def test_notebook_runs(name, monkeypatch):
    for var, value in kernel_env().items():
        monkeypatch.setenv(var, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)   # an in-memory copy: the stored file is left alone
    elapsed = execute(nb)
    assert not error_outputs(nb)
    assert elapsed < BUDGET_SECONDS, f"{name} took {elapsed:.0f} s"


def store(names) -> None:
    """Executes each notebook and writes it back with its outputs, without volatile metadata.

    No time limit per cell: on a busy machine a notebook may need longer than the test's budget.
    """
    os.environ.update(kernel_env())
    for name in names:
        path = NOTEBOOKS / name
        nb = nbformat.read(path, as_version=4)
        load = os.getloadavg()[0]
        elapsed = execute(nb, timeout=None)
        for cell in code_cells(nb):
            cell.metadata.pop("execution", None)
        assert not error_outputs(nb), f"{name}: error output"
        nbformat.write(nb, path)
        print(f"{name}: {elapsed:.0f} s wall (load average {load:.1f} -> {os.getloadavg()[0]:.1f}), "
              f"{path.stat().st_size} bytes", flush=True)


if __name__ == "__main__":
    store(sys.argv[1:] or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
