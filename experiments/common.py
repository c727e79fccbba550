"""Small helpers shared by the launchers: multi-host start-up and the one-writer rule.

With ``--multihost`` every host runs the same program: :func:`initialize` calls
``jax.distributed.initialize()`` (coordinator, process count and id are auto-detected on TPU VMs,
Slurm and Open MPI, or given by ``--coordinator_address``, ``--num_processes``, ``--process_id``)
before any other JAX call, the launchers split their work over the processes (AutoML-Zero: each
process runs its share of the islands, or the evaluation is split over all processes' devices;
nasnet: one data-parallel mesh over all processes' devices; nas_search: each batch of children
split over the processes; docs/scaling.md), and only process 0 logs, prints and writes files
(:func:`is_main_process`); every process reads checkpoints from storage all hosts can see.
:func:`pop_none_overrides` and :func:`apply_none_overrides` let ``--config.FIELD=None`` set an
optional field to ``None`` from the command line.
"""
from __future__ import annotations

import json
import logging as pylogging
import os
import re
from typing import Any

import jax
import ml_collections
from absl import flags, logging


def define_multihost_flags() -> None:
    """The launchers' ``--multihost`` flag and the optional explicit cluster description (for
    clusters JAX does not detect, and several processes on one machine; docs/scaling.md)."""
    flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first: every process runs the "
                      "same command and the work is split over the processes (AutoML-Zero: islands per process "
                      "when num_islands is divisible by the process count; nasnet: data-parallel over "
                      "all processes' devices; nas_search: the children of each batch; docs/scaling.md).")
    flags.DEFINE_string("coordinator_address", None, "With --multihost: host:port of process 0 (default: "
                        "detected on TPU VMs, Slurm and Open MPI).")
    flags.DEFINE_integer("num_processes", None, "With --multihost: the number of processes (default: detected).")
    flags.DEFINE_integer("process_id", None, "With --multihost: this process's index (default: detected).")


def initialize_from_flags() -> None:
    """:func:`initialize` with the flags of :func:`define_multihost_flags`."""
    f = flags.FLAGS
    initialize(f.multihost, coordinator_address=f.coordinator_address, num_processes=f.num_processes,
               process_id=f.process_id)


def initialize(multihost: bool, coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Start the multi-host runtime when ``multihost`` (cluster settings left ``None`` are detected by
    ``jax.distributed.initialize``); silence INFO logs off process 0."""
    if multihost:
        kw = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
        jax.distributed.initialize(**{k: v for k, v in kw.items() if v is not None})
    elif any(v is not None for v in (coordinator_address, num_processes, process_id)):
        raise ValueError("coordinator_address, num_processes and process_id need --multihost")
    if not is_main_process():
        logging.set_verbosity(logging.WARNING)
        pylogging.getLogger("azjax").setLevel(pylogging.WARNING)


def is_main_process() -> bool:
    """True on process 0 (and in every single-process run)."""
    return jax.process_index() == 0


def write_json(path: str | os.PathLike, obj: Any, indent: int = 1, sort_keys: bool = False) -> None:
    """Writes ``obj`` as JSON (and a final newline) atomically: a temporary file, then
    ``os.replace``, so a reader never sees half a file."""
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")
    os.replace(tmp, path)


_NONE_OVERRIDE = re.compile(r"^--(config\.[A-Za-z_][\w.]*)=(?:None|none|null)$")


def pop_none_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Splits ``--config.FIELD=None`` flags off ``argv`` (the config flag parser cannot turn text
    into ``None``); returns the remaining argv and the dotted fields, for
    :func:`apply_none_overrides`."""
    rest, fields = [], []
    for i, arg in enumerate(argv):
        m = _NONE_OVERRIDE.match(arg) if i > 0 else None
        if m:
            fields.append(m.group(1)[len("config."):])
        else:
            rest.append(arg)
    return rest, fields


def apply_none_overrides(config, fields: list[str]) -> None:
    """Sets each dotted field of ``config`` to ``None``; a field that does not exist or cannot be
    ``None`` (it is not optional in the config) is a ``ValueError`` naming the flag."""
    for field in fields:
        *parents, leaf = field.split(".")
        node = config
        try:
            for part in parents:
                node = node[part]
            if leaf not in node:
                raise KeyError(leaf)
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"--config.{field}=None: the config has no field {field} "
                             f"({type(e).__name__}: {e})") from None
        # Optional fields are placeholders (config_dict.placeholder(float)) or hold None already.
        ref = getattr(node, "_fields", {}).get(leaf)
        optional = isinstance(ref, ml_collections.FieldReference) or node[leaf] is None
        if not optional:
            raise ValueError(f"--config.{field}=None: {field} is not optional (its value is "
                             f"{node[leaf]!r}); give a value")
        node[leaf] = None
