"""azjax.viz: fitness curves, cell drawings and program listings (Agg backend, no display)."""
from __future__ import annotations

import json

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from azjax import nas, search, viz, zero  # noqa: E402
from azjax.zero import algorithms, export  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def write_metrics(workdir):
    rows = []
    for exp in ("0", "1"):
        for i in range(1, 6):
            rows.append({"iteration": i, "evaluations": 10.0 * i, "best_fitness": 0.1 * i,
                         "mean_fitness": 0.05 * i, "experiment": exp})
        rows.append({"experiment_index": float(exp), "select_fitness": 0.4, "evaluations": 50.0})
    (workdir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_fitness_curves_from_workdir(tmp_path):
    write_metrics(tmp_path)
    series = viz.fitness_series(tmp_path)
    assert sorted(series) == ["0", "1"]  # summary rows skipped
    np.testing.assert_allclose(series["1"]["best_fitness"], [0.1, 0.2, 0.3, 0.4, 0.5])
    ax = viz.plot_fitness_curves(str(tmp_path))
    lines = ax.get_lines()
    assert len(lines) == 4  # best + mean per experiment
    np.testing.assert_allclose(lines[0].get_xdata(), [10, 20, 30, 40, 50])
    np.testing.assert_allclose(lines[1].get_ydata(), [0.05, 0.1, 0.15, 0.2, 0.25])
    out = tmp_path / "curves.png"
    ax.figure.savefig(out)
    assert out.stat().st_size > 1000


def test_fitness_curves_from_history_and_bad_input(tmp_path):
    history = search.History()
    for i in range(3):
        history({"evaluations": i + 1, "best_fitness": 0.5 + i / 10, "mean_fitness": 0.2})
    fig, ax = plt.subplots()
    assert viz.plot_fitness_curves(history, ax=ax) is ax
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.5, 0.6, 0.7])
    with pytest.raises(ValueError, match="workdir_or_history"):
        viz.plot_fitness_curves(tmp_path / "missing")
    with pytest.raises(ValueError, match="workdir_or_history"):
        viz.plot_fitness_curves(42)


@pytest.mark.parametrize("which", ["normal", "reduction"])
def test_draw_cell_nodes_and_edges(which, tmp_path):
    g = nas.NASNET_A
    cell = g.normal if which == "normal" else g.reduce
    concat = g.normal_concat if which == "normal" else g.reduce_concat
    ax = viz.draw_cell(g, which)
    nodes = [t for t in ax.texts if t.get_gid() == "node"]
    edges = [p for p in ax.patches if p.get_gid() == "edge"]
    # 2 inputs + (2 ops + 1 combine) per block + the output; per block 2 input and 2 combine edges.
    assert len(nodes) == 2 + 3 * len(cell) + 1
    assert len(edges) == 4 * len(cell) + len(concat)
    labels = [t.get_text() for t in nodes]
    for block in cell:
        for op in block[2:4]:
            assert nas.OP_NAMES[op] in labels
    assert "$h_{i-1}$" in labels and "$h_i$" in labels
    ax.figure.savefig(tmp_path / f"{which}.png")
    assert (tmp_path / f"{which}.png").stat().st_size > 1000


def test_cell_graph_layout_follows_dependencies():
    nodes, edges = viz.cell_graph(nas.NASNET_A, "reduction")
    # NASNet-A reduction: block 3 reads block 1's output (state 3), so it sits right of block 1.
    assert nodes["b3"][1] > nodes["b1"][1]
    assert ("b1", "b3op1") in edges
    assert {a for a, b in edges if b == "out"} == {"b1", "b2", "b3", "b4"}
    with pytest.raises(ValueError, match="which"):
        viz.cell_graph(nas.NASNET_A, "stem")


TEXT = ("def Setup():\n  s2 = 0.01\n  s3 = 0.5\n"
        "def Predict():\n  s1 = dot(v1, v0)\n  v2 = s1 * v0\n"
        "def Learn():\n  s3 = s0 - s1\n  s3 = s2 * s3\n  v2 = s3 * v0\n  v1 = v1 + v2\n")


def test_program_listing_marks_match_liveness():
    cfg = algorithms.linear_regression_config()
    prog = zero.parse_program(TEXT, cfg)
    flags = [f[:int(prog.component(c).size)] for f, c in zip(export.live_flags(prog, cfg),
                                                             zero.program.COMPONENTS)]
    expected = [bool(x) for f in flags for x in f]
    text = viz.program_listing(prog, cfg)
    lines = text.splitlines()
    assert len(lines) == 3 + 8
    instr = [ln for ln in lines if "def " not in ln]
    assert [ln.startswith("* ") for ln in instr] == expected
    assert [ln.endswith("# dead") for ln in instr] == [not e for e in expected]
    assert expected.count(False) == 2
    # The text without markers is the canonical format.
    assert "\n".join(ln[2:].replace("  # dead", "") for ln in lines) + "\n" == zero.format_program(prog, cfg)
    html = viz.program_listing(prog, cfg, html=True)
    assert html.count('class="azjax-live"') == expected.count(True)
    assert html.count('class="azjax-dead"') == expected.count(False)
    assert "\033[1m" in viz.program_listing(prog, cfg, color=True)


def test_program_listing_on_axes_and_empty_component():
    cfg = algorithms.linear_regression_config()
    prog = zero.parse_program(TEXT.replace("  s2 = 0.01\n  s3 = 0.5\n", "  pass\n"), cfg)
    fig, ax = plt.subplots()
    assert viz.program_listing(prog, cfg, ax=ax) is ax
    gids = [t.get_gid() for t in ax.texts]
    assert gids.count("header") == 4  # three headers + Setup's 'pass'
    assert gids.count("live") + gids.count("dead") == 6
    dead = [t for t in ax.texts if t.get_gid() == "dead"]
    assert dead and all(t.get_color() == "#a0a0a0" for t in dead)
