"""Pictures for notebooks: search curves, NASNet cell graphs, program listings with live code highlighted.

matplotlib is an optional dependency (the `viz` extra): it is imported inside the functions that draw, so
`import azjax.viz` and the text/HTML listing work without it.

    ax = viz.plot_fitness_curves("workdir")            # or a search.History
    ax = viz.draw_cell(nas.NASNET_A, "reduction")
    print(viz.program_listing(prog, cfg))              # '*' marks live lines, '# dead' dead ones
    HTML(viz.program_listing(prog, cfg, html=True))    # in a notebook
"""
from __future__ import annotations

import html as html_lib
import json
import os
import pathlib
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

_LIVE_COLOR = "#1a1a1a"
_DEAD_COLOR = "#a0a0a0"
_LIVE_BACKGROUND = "#fff2a8"


def _axes(ax, figsize):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt  # lazy: optional dependency

    _, ax = plt.subplots(figsize=figsize)
    return ax


# ----------------------------------------------------------------------------------------------------------
# Fitness curves.

def _read_metrics(path: pathlib.Path) -> List[Dict[str, Any]]:
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        raise ValueError(f"workdir_or_history: no metrics file at {str(path)!r}")
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"workdir_or_history: {path} line {i + 1} is not JSON ({e})") from None
    return rows


def fitness_series(workdir_or_history) -> Dict[str, Dict[str, np.ndarray]]:
    """Best and mean fitness against evaluations, per experiment.

    Args:
      workdir_or_history: a launcher workdir (its metrics.jsonl), the path of a metrics .jsonl file, or a
        `search.History` (anything with a `records` list of metrics dicts).

    Returns:
      {experiment label: {"evaluations", "best_fitness", "mean_fitness"}} as float arrays, in file order.
      Rows without `best_fitness` (e.g. per-experiment summaries) are skipped.
    """
    if hasattr(workdir_or_history, "records"):
        rows = list(workdir_or_history.records)
    elif isinstance(workdir_or_history, (str, os.PathLike)):
        rows = _read_metrics(pathlib.Path(workdir_or_history))
    else:
        raise ValueError(f"workdir_or_history: expected a path or a search.History, got "
                         f"{type(workdir_or_history).__name__}")
    series: Dict[str, Dict[str, list]] = {}
    for row in rows:
        if "best_fitness" not in row or "evaluations" not in row:
            continue
        label = str(row.get("experiment", ""))
        s = series.setdefault(label, {"evaluations": [], "best_fitness": [], "mean_fitness": []})
        s["evaluations"].append(float(row["evaluations"]))
        s["best_fitness"].append(float(row["best_fitness"]))
        s["mean_fitness"].append(float(row.get("mean_fitness", np.nan)))
    if not series:
        raise ValueError("workdir_or_history: no metrics rows with 'evaluations' and 'best_fitness'")
    return {k: {n: np.asarray(v, np.float64) for n, v in s.items()} for k, s in series.items()}


def plot_fitness_curves(workdir_or_history, ax=None):
    """Plots best (solid) and mean (dashed) fitness against evaluations; one colour per experiment.

    Args:
      workdir_or_history: a launcher workdir, a metrics .jsonl path, or a `search.History`.
      ax: a matplotlib Axes to draw on (a new figure if None).

    Returns:
      the Axes.
    """
    series = fitness_series(workdir_or_history)
    ax = _axes(ax, (6, 4))
    colors = [f"C{i % 10}" for i in range(len(series))]
    for color, (label, s) in zip(colors, series.items()):
        name = f"experiment {label}: " if label else ""
        ax.plot(s["evaluations"], s["best_fitness"], "-", color=color, label=f"{name}best")
        if np.isfinite(s["mean_fitness"]).any():
            ax.plot(s["evaluations"], s["mean_fitness"], "--", color=color, label=f"{name}mean")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("fitness")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return ax


# ----------------------------------------------------------------------------------------------------------
# NASNet cells.

_INPUT_LABELS = {0: "$h_i$", 1: "$h_{i-1}$"}


def cell_graph(genotype, which: str = "normal") -> Tuple[Dict[str, Tuple[str, float, float]],
                                                         List[Tuple[str, str]]]:
    """The drawn DAG of one cell: nodes {id: (label, x, y)} and edges [(from id, to id)].

    Nodes: the two inputs (state 1 = h_{i-1}, state 0 = h_i), two op nodes and one combine node per block,
    and the concatenated output. Layout by hand: a block sits one column pair right of the deepest state it
    reads; blocks in the same column are stacked.
    """
    from azjax.nas.genotype import COMBINE_NAMES, OP_NAMES

    if which not in ("normal", "reduction", "reduce"):
        raise ValueError(f"which: expected 'normal' or 'reduction', got {which!r}")
    cell = genotype.normal if which == "normal" else genotype.reduce
    concat = genotype.normal_concat if which == "normal" else genotype.reduce_concat
    depth = {0: 0, 1: 0}
    for j, block in enumerate(cell):
        depth[2 + j] = 1 + max(depth[block[0]], depth[block[1]])
    columns: Dict[int, List[int]] = {}
    for j in range(len(cell)):
        columns.setdefault(depth[2 + j], []).append(j)
    tallest = max(len(v) for v in columns.values())
    height = 2.0 * tallest
    nodes: Dict[str, Tuple[str, float, float]] = {}
    edges: List[Tuple[str, str]] = []

    def state_node(s):
        return f"in{s}" if s < 2 else f"b{s - 2}"

    nodes["in1"] = (_INPUT_LABELS[1], 0.0, height / 2 + 1.0)
    nodes["in0"] = (_INPUT_LABELS[0], 0.0, height / 2 - 1.0)
    for d, blocks in columns.items():
        top = height / 2 + (len(blocks) - 1)  # centre each column's stack
        for row, j in enumerate(blocks):
            y = top - 2.0 * row
            a, b, op1, op2, comb = cell[j]
            x_op, x_comb = 2.0 * d - 0.9, 2.0 * d
            nodes[f"b{j}op1"] = (OP_NAMES[op1], x_op, y + 0.45)
            nodes[f"b{j}op2"] = (OP_NAMES[op2], x_op, y - 0.45)
            nodes[f"b{j}"] = (f"{COMBINE_NAMES[comb]} ({2 + j})", x_comb, y)
            edges += [(state_node(a), f"b{j}op1"), (state_node(b), f"b{j}op2"),
                      (f"b{j}op1", f"b{j}"), (f"b{j}op2", f"b{j}")]
    out_x = 2.0 * max(columns) + 1.4
    nodes["out"] = ("concat\n$h_{i+1}$", out_x, height / 2)
    edges += [(state_node(s), "out") for s in concat]
    return nodes, edges


def draw_cell(genotype, which: str = "normal", ax=None):
    """Draws a NASNet cell as a DAG: inputs, each block's two ops and combiner, the concatenated output.

    Args:
      genotype: a `nas.Genotype`.
      which: "normal" or "reduction" ("reduce" is accepted too).
      ax: a matplotlib Axes (a new figure if None).

    Returns:
      the Axes. Node labels are `Text` artists with gid "node", edges `FancyArrowPatch`es with gid "edge".
    """
    from matplotlib.patches import FancyArrowPatch  # lazy: optional dependency

    nodes, edges = cell_graph(genotype, which)
    xs = [x for _, x, _ in nodes.values()]
    ys = [y for _, _, y in nodes.values()]
    ax = _axes(ax, (1.6 * (max(xs) - min(xs) + 2), 0.9 * (max(ys) - min(ys) + 2)))
    styles = {"in": ("#cfe2f3", "round,pad=0.3"), "op": ("#ffffff", "square,pad=0.3"),
              "comb": ("#d9ead3", "round,pad=0.3"), "out": ("#f4cccc", "round,pad=0.3")}
    for nid, (label, x, y) in nodes.items():
        kind = "in" if nid.startswith("in") else "out" if nid == "out" else "op" if "op" in nid else "comb"
        face, box = styles[kind]
        ax.text(x, y, label, ha="center", va="center", fontsize=8, zorder=3, gid="node",
                bbox=dict(boxstyle=box, facecolor=face, edgecolor="#444444"))
    for a, b in edges:
        (_, x0, y0), (_, x1, y1) = nodes[a], nodes[b]
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=10, color="#555555",
                                     shrinkA=22, shrinkB=22, zorder=1, gid="edge",
                                     connectionstyle="arc3,rad=0.08" if abs(y1 - y0) > 1e-9 else "arc3"))
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.set_axis_off()
    title = "Normal Cell" if which == "normal" else "Reduction Cell"
    ax.set_title(title)
    return ax


# ----------------------------------------------------------------------------------------------------------
# Program listings.

def listing_lines(prog, cfg) -> List[Tuple[str, Union[bool, None]]]:
    """(text, live) per line of the program text: live is True/False for instructions, None for headers."""
    from azjax.zero.export import live_flags
    from azjax.zero.program import COMPONENTS
    from azjax.zero.program_text import format_program

    text = format_program(prog, cfg).splitlines()
    flags = live_flags(prog, cfg)
    out: List[Tuple[str, Union[bool, None]]] = []
    comp = -1
    k = 0
    for line in text:
        if line.startswith("def "):
            comp += 1
            k = 0
            out.append((line, None))
        elif line.strip() == "pass" and int(np.asarray(prog.component(COMPONENTS[comp]).size)) == 0:
            out.append((line, None))
        else:
            out.append((line, bool(flags[comp][k])))
            k += 1
    return out


def program_listing(prog, cfg, ax=None, html: bool = False, color: bool = False):
    """The program in the text format, instructions that affect the prediction highlighted, dead code greyed.

    Args:
      prog: one program; cfg: its `zero.ZeroConfig`.
      ax: if given, the listing is drawn on this matplotlib Axes (live lines bold, dead lines grey) and the
        Axes is returned.
      html: return an HTML `<pre>` block (for `IPython.display.HTML`) instead of plain text.
      color: plain text with ANSI colours (bold live, dim dead) for terminals.

    Returns:
      plain text (default): each line starts with a marker column, '*' for a live instruction and ' '
      otherwise, and dead lines end with '  # dead'; or the HTML string; or the Axes.
    """
    lines = listing_lines(prog, cfg)
    if ax is not None:
        for i, (text, live) in enumerate(lines):
            ax.text(0.0, -i, text, family="monospace", fontsize=9, va="top", ha="left",
                    color=_DEAD_COLOR if live is False else _LIVE_COLOR,
                    fontweight="bold" if live else "normal",
                    backgroundcolor=_LIVE_BACKGROUND if live else "none",
                    gid={True: "live", False: "dead", None: "header"}[live])
        ax.set_xlim(0, 1)
        ax.set_ylim(-len(lines), 1)
        ax.set_axis_off()
        return ax
    if html:
        spans = []
        for text, live in lines:
            t = html_lib.escape(text)
            if live is True:
                spans.append(f'<span class="azjax-live" style="background:{_LIVE_BACKGROUND};'
                             f'font-weight:bold">{t}</span>')
            elif live is False:
                spans.append(f'<span class="azjax-dead" style="color:{_DEAD_COLOR}">{t}  # dead</span>')
            else:
                spans.append(f'<span class="azjax-header">{t}</span>')
        return ('<pre class="azjax-program" style="line-height:1.3">' + "\n".join(spans) + "</pre>")
    out = []
    for text, live in lines:
        if live is True:
            out.append(("* " + text) if not color else f"* \033[1m{text}\033[0m")
        elif live is False:
            out.append(("  " + text + "  # dead") if not color else f"  \033[2m{text}  # dead\033[0m")
        else:
            out.append("  " + text)
    return "\n".join(out) + "\n"
