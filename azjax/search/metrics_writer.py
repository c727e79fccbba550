"""A metrics callback for :func:`azjax.search.run` that appends one JSON line per metrics dict
(and TensorBoard scalars when ``tensorboardX`` is installed); :mod:`azjax.viz` reads these files.

Given to ``search.run`` as ``on_start`` too (:meth:`MetricsWriter.start`), it first drops the rows
a killed session wrote after the checkpoint the new session resumes from, so no row appears twice.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping

import numpy as np

__all__ = ["MetricsWriter"]


class MetricsWriter:
    """Appends the numeric entries of each metrics dict as a JSON line to ``path``.

    Args:
        path: the ``.jsonl`` file (created on the first row).
        prefix: with several searches in one file (e.g. one per experiment), every row carries
            ``"experiment": prefix``, :meth:`start` drops only this prefix's rows and the
            TensorBoard scalars go to ``tensorboard/experiment_<prefix>`` next to ``path``.
        enabled: ``False`` writes nothing (multi-host: every process but process 0).
    """

    def __init__(self, path: str | os.PathLike, prefix: str = "", enabled: bool = True):
        self.path = pathlib.Path(path)
        self.prefix = prefix
        self.enabled = enabled
        self._tb = None
        self._tb_tried = False
        self._purge_step: int | None = None

    def start(self, where: Mapping[str, Any]) -> None:
        """Drops this writer's rows past iteration ``where["iteration"]`` (where the session
        starts; ``search.run``'s ``on_start`` argument)."""
        if not self.enabled or not self.path.exists():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if (row.get("experiment", "") == self.prefix
                    and row.get("iteration", 0) > where["iteration"]):
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
        if kept != lines:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(kept))
            os.replace(tmp, self.path)
        # TensorBoard drops this run's events at or after the purge step (evaluations restart per
        # search, hence one run directory per prefix).
        self._purge_step = (int(where["evaluations"]) + 1
                            if where.get("resumed_from") is not None else None)

    def _tensorboard(self):
        if not self._tb_tried:
            self._tb_tried = True
            try:  # Optional: only when the user has it.
                from tensorboardX import SummaryWriter  # type: ignore
                logdir = self.path.parent / "tensorboard"
                if self.prefix:
                    logdir = logdir / f"experiment_{self.prefix}"
                self._tb = SummaryWriter(str(logdir), purge_step=self._purge_step)
            except Exception:  # noqa: BLE001
                self._tb = None
        return self._tb

    def __call__(self, metrics: Mapping[str, Any]) -> None:
        """Appends the numeric scalars of ``metrics`` (arrays and other values are skipped)."""
        if not self.enabled:
            return
        row: dict[str, Any] = {}
        for k, v in metrics.items():
            arr = np.asarray(v)
            if arr.ndim == 0 and arr.dtype.kind in "biuf":
                row[k] = arr.item()
        if self.prefix:
            row["experiment"] = self.prefix
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        tb = self._tensorboard()
        if tb is not None:
            step = int(row.get("evaluations", 0))
            for k, v in row.items():
                if k != "experiment":
                    tb.add_scalar(k, v, step)
