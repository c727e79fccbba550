"""Atomic checkpoints of arbitrary pytrees as ``.npz`` files with JSON metadata and a checksum.

One checkpoint is one file ``<directory>/ckpt_<step>.npz`` holding every leaf of the pytree as a
numpy array plus a ``__metadata__`` entry: UTF-8 JSON with the format version, the step, the leaf
paths/dtypes/shapes, a SHA-256 over all leaf bytes and the caller's metadata dict. Nothing is
pickled: typed PRNG keys are stored as ``jax.random.key_data`` and rebuilt with
``jax.random.wrap_key_data``; dtypes numpy cannot store natively (bfloat16, ...) are stored as
unsigned-int views of their bytes.

Writes are atomic: the file is written under a temporary name in the same directory, flushed and
fsynced, then ``os.replace``-d into place, so a crash leaves either the old set of checkpoints or
the new one, never a half-written ``ckpt_*.npz``. A file that fails to load or verify raises
:class:`CheckpointError` (a ``ValueError``) naming the file; such files are never overwritten or
deleted by this module.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import tempfile
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

__all__ = [
    "CheckpointError",
    "checkpoint_path",
    "all_steps",
    "latest_step",
    "save_checkpoint",
    "restore_checkpoint",
    "read_checkpoint",
    "restore_file",
    "write_file",
]

FORMAT = "azjax.search.checkpoint"
VERSION = 1
_META_KEY = "__metadata__"
_NAME_RE = re.compile(r"^ckpt_(\d+)\.npz$")


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, unreadable, or does not match what the caller expects."""


def checkpoint_path(directory: str | os.PathLike, step: int) -> pathlib.Path:
    """The file name used for ``step`` in ``directory``."""
    return pathlib.Path(directory) / f"ckpt_{int(step):010d}.npz"


def all_steps(directory: str | os.PathLike) -> list[int]:
    """Steps of the checkpoint files in ``directory``, ascending (temporary files are ignored)."""
    d = pathlib.Path(directory)
    if not d.is_dir():
        return []
    steps = []
    for entry in d.iterdir():
        m = _NAME_RE.match(entry.name)
        if m and entry.is_file():
            steps.append(int(m.group(1)))
    return sorted(steps)


def latest_step(directory: str | os.PathLike) -> int | None:
    """The newest checkpoint step in ``directory``, or ``None`` when there is none."""
    steps = all_steps(directory)
    return steps[-1] if steps else None


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_storable(leaf: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """A numpy array numpy can save without pickling, and how to rebuild the leaf."""
    info: dict[str, Any] = {}
    if _is_key(leaf):
        info["key_impl"] = str(jax.random.key_impl(leaf))
        leaf = jax.random.key_data(leaf)
    arr = np.asarray(leaf)
    info["dtype"] = arr.dtype.name
    info["shape"] = list(arr.shape)
    if arr.dtype.kind not in "biufc" or arr.dtype.name not in np.sctypeDict:
        # e.g. bfloat16 (kind 'V'): store the raw bytes as unsigned ints of the same width.
        if arr.dtype.kind == "O":
            raise ValueError(f"cannot checkpoint an object array (dtype {arr.dtype})")
        arr = arr.view(np.dtype(f"u{arr.dtype.itemsize}"))
    # (np.ascontiguousarray would turn 0-d arrays into 1-d ones)
    return (arr if arr.flags.c_contiguous else arr.copy(order="C")), info


def _from_storable(arr: np.ndarray, info: dict[str, Any], like: Any) -> Any:
    """Rebuilds a leaf; host leaves (numpy / Python scalars in the template) stay numpy arrays,
    so e.g. float64 counters keep their precision when jax runs in 32-bit mode."""
    dtype = jnp.dtype(info["dtype"])
    if arr.dtype != dtype:
        arr = arr.view(dtype)
    if "key_impl" in info:
        return jax.random.wrap_key_data(jnp.asarray(arr), impl=info["key_impl"])
    if isinstance(like, jax.Array):
        return jnp.asarray(arr)
    return arr


def _checksum(names: list[str], arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in names:
        arr = arrays[name]
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(np.array(arr, order="C").reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def _fsync_directory(directory: pathlib.Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. platforms without directory handles; the file itself was fsynced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(directory: str | os.PathLike, step: int, tree: PyTree,
                    metadata: dict[str, Any] | None = None, *, keep: int | None = None,
                    overwrite: bool = False) -> pathlib.Path:
    """Writes ``tree`` atomically as the checkpoint of ``step``; returns the file path.

    Args:
        directory: created if missing.
        step: non-negative int; also the file name.
        tree: any pytree of arrays / scalars / typed PRNG keys.
        metadata: a JSON-serialisable dict stored alongside (e.g. the config).
        keep: if given, afterwards delete all but the newest ``keep`` checkpoints, skipping any file
            that fails verification (corrupt files are left for a human to inspect).
        overwrite: allow replacing an existing checkpoint of the same step.

    Raises:
        ValueError: a bad ``step``/``keep``, a non-JSON metadata, or an existing file for ``step``
            (naming it) when ``overwrite`` is false.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError(f"keep must be a positive int or None, got {keep!r}")
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, step)
    if path.exists() and not overwrite:
        raise ValueError(f"checkpoint file {path} already exists; refusing to overwrite it")

    write_file(path, step, tree, metadata)
    if keep is not None:
        _prune(directory, keep, protect=int(step))
    return path


def write_file(path: str | os.PathLike, step: int, tree: PyTree,
               metadata: dict[str, Any] | None = None) -> None:
    """Writes ``tree`` to ``path`` in the checkpoint format, atomically (temporary file in the
    same directory, fsync, ``os.replace``, directory fsync); replaces an existing file.

    The single-file primitive under :func:`save_checkpoint`, for callers that keep one file (the
    NAS trainer). ``step`` is recorded in the file; the directory must exist.

    Raises:
        ValueError: a non-JSON metadata or a leaf that cannot be stored (object arrays).
    """
    path = pathlib.Path(path)
    leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    arrays: dict[str, np.ndarray] = {}
    leaves_meta = []
    for i, (key_path, leaf) in enumerate(leaves_with_paths):
        arr, info = _to_storable(leaf)
        name = f"leaf_{i:06d}"
        arrays[name] = arr
        leaves_meta.append({"name": name, "path": jax.tree_util.keystr(key_path), **info})
    names = [m["name"] for m in leaves_meta]
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "leaves": leaves_meta,
        "checksum": _checksum(names, arrays),
        "metadata": metadata or {},
    }
    try:
        meta_bytes = json.dumps(meta, sort_keys=True, allow_nan=True).encode("utf-8")
    except TypeError as e:
        raise ValueError(f"metadata must be JSON-serialisable: {e}") from None
    arrays[_META_KEY] = np.frombuffer(meta_bytes, dtype=np.uint8)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave our temporary file behind.
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    _fsync_directory(path.parent)


def _prune(directory: pathlib.Path, keep: int, protect: int) -> None:
    steps = all_steps(directory)
    for old in steps[:-keep] if len(steps) > keep else []:
        if old == protect:
            continue
        old_path = checkpoint_path(directory, old)
        try:
            read_checkpoint(old_path)
        except CheckpointError:
            continue  # never delete a file we cannot verify
        try:
            old_path.unlink()
        except OSError:
            pass


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Loads and verifies one checkpoint file.

    Returns:
        ``(meta, arrays)``: the full JSON metadata (``meta["metadata"]`` is the caller's dict,
        ``meta["leaves"]`` the leaf descriptions) and the stored arrays by leaf name.

    Raises:
        CheckpointError: naming the file, if it cannot be read, is not an azjax checkpoint, or
            its checksum does not match.
    """
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise CheckpointError(
            f"checkpoint file {path} is unreadable ({type(e).__name__}: {e})") from e
    if magic != b"PK\x03\x04":
        # np.load would read any other bytes as a pickle and suggest loading it unsafely.
        raise CheckpointError(
            f"checkpoint file {path} is corrupt: not an .npz archive (it starts with {magic!r}); "
            "it was left in place")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _META_KEY not in npz.files:
                raise CheckpointError(f"checkpoint file {path} has no {_META_KEY} entry")
            meta = json.loads(bytes(npz[_META_KEY]).decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise CheckpointError(f"checkpoint file {path} is not an azjax checkpoint")
            if meta.get("version") != VERSION:
                raise CheckpointError(
                    f"checkpoint file {path} has format version {meta.get('version')}, "
                    f"expected {VERSION}")
            names = [leaf["name"] for leaf in meta["leaves"]]
            arrays = {name: npz[name] for name in names}
    except CheckpointError:
        raise
    except Exception as e:  # zip/CRC/JSON/missing-entry errors: all mean "corrupt"
        raise CheckpointError(
            f"checkpoint file {path} is corrupt or unreadable ({type(e).__name__}: {e}); "
            "it was left in place") from e
    if _checksum(names, arrays) != meta.get("checksum"):
        raise CheckpointError(
            f"checkpoint file {path} is corrupt: checksum mismatch; it was left in place")
    return meta, arrays


def restore_checkpoint(
    directory: str | os.PathLike,
    template: PyTree,
    *,
    step: int | None = None,
    check_shapes: bool | Callable[[str], bool] = True,
    check_metadata: Callable[[dict[str, Any], pathlib.Path], None] | None = None,
    on_corrupt: Callable[[pathlib.Path, CheckpointError], None] | None = None,
) -> tuple[PyTree, dict[str, Any]] | None:
    """Restores the checkpoint of ``step`` (default: the newest) into the structure of ``template``.

    Args:
        directory: where :func:`save_checkpoint` wrote.
        template: a pytree with the structure (and, if checked, shapes and dtypes) to restore into;
            only its tree structure and leaf paths are used, never its values.
        step: which checkpoint; default the newest.
        check_shapes: require stored shapes and dtypes to equal the template's; or a predicate
            on the leaf path (``jax.tree_util.keystr``) saying which leaves to check (leaves that
            may grow, e.g. a cache, can be exempted).
        check_metadata: called with the caller's metadata and the file path before the structure
            is matched; raise to reject the file (e.g. a different config).
        on_corrupt: only with ``step=None``: when the newest file is corrupt or unreadable, call
            ``on_corrupt(path, error)`` and try the next older one (a file that reads fine but does
            not match is still an error). Without it, a corrupt newest file raises.

    Returns:
        ``(tree, metadata)`` or ``None`` when the directory holds no checkpoint.

    Raises:
        CheckpointError: naming the file, if it is corrupt or does not match ``template`` (with
            ``on_corrupt``: if every file is corrupt).
    """
    if step is None:
        steps = all_steps(directory)
        if not steps:
            return None
        if on_corrupt is None:
            steps = steps[-1:]
        for i, candidate in enumerate(reversed(steps)):
            path = checkpoint_path(directory, candidate)
            try:
                meta, arrays = read_checkpoint(path)
            except CheckpointError as e:
                if on_corrupt is None:
                    raise
                on_corrupt(path, e)
                if i == len(steps) - 1:
                    raise CheckpointError(
                        f"every checkpoint file in {directory} is corrupt or unreadable; they "
                        "were left in place") from e
                continue
            break
    else:
        path = checkpoint_path(directory, step)
        if not path.exists():
            raise CheckpointError(f"checkpoint file {path} does not exist")
        meta, arrays = read_checkpoint(path)
    if check_metadata is not None:
        check_metadata(meta["metadata"], path)

    return _match(path, meta, arrays, template, check_shapes)


def restore_file(path: str | os.PathLike, template: PyTree, *,
                 check_shapes: bool | Callable[[str], bool] = True) -> tuple[PyTree, dict[str, Any]]:
    """Reads and verifies one file written by :func:`write_file` (or :func:`save_checkpoint`)
    into the structure of ``template``; returns ``(tree, metadata)``.

    Raises:
        CheckpointError: naming the file, if it is corrupt or does not match ``template``.
    """
    path = pathlib.Path(path)
    meta, arrays = read_checkpoint(path)
    return _match(path, meta, arrays, template, check_shapes)


def _match(path: pathlib.Path, meta: dict[str, Any], arrays: dict[str, np.ndarray],
           template: PyTree, check_shapes: bool | Callable[[str], bool]
           ) -> tuple[PyTree, dict[str, Any]]:
    """The stored leaves rebuilt in the structure of ``template`` (see :func:`restore_checkpoint`)."""
    template_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    want = [jax.tree_util.keystr(p) for p, _ in template_leaves]
    have = [leaf["path"] for leaf in meta["leaves"]]
    if want != have:
        missing = [p for p in want if p not in have]
        extra = [p for p in have if p not in want]
        raise CheckpointError(
            f"checkpoint file {path} does not match the expected state structure "
            f"(missing leaves {missing[:5]}, unexpected leaves {extra[:5]}"
            f"{', different order' if not missing and not extra else ''})")
    leaves = []
    for (key_path, tmpl), info in zip(template_leaves, meta["leaves"]):
        name = info["path"]
        checked = check_shapes(name) if callable(check_shapes) else bool(check_shapes)
        stored_is_key = "key_impl" in info
        if stored_is_key != _is_key(tmpl):
            raise CheckpointError(
                f"checkpoint file {path}: leaf {name} is "
                f"{'a' if stored_is_key else 'not a'} PRNG key in the file but "
                f"{'a' if _is_key(tmpl) else 'not a'} PRNG key in the template")
        if checked:
            if stored_is_key:
                t_shape, t_dtype = tuple(jax.random.key_data(tmpl).shape), "uint32"
            else:
                t_arr = tmpl if isinstance(tmpl, jax.Array) else np.asarray(tmpl)
                t_shape, t_dtype = tuple(t_arr.shape), jnp.dtype(t_arr.dtype).name
            if tuple(info["shape"]) != t_shape or info["dtype"] != t_dtype:
                raise CheckpointError(
                    f"checkpoint file {path}: leaf {name} has shape {tuple(info['shape'])} and "
                    f"dtype {info['dtype']}, expected {t_shape} and {t_dtype}")
        leaves.append(_from_storable(arrays[info["name"]], info, tmpl))
    return jax.tree_util.tree_unflatten(treedef, leaves), meta["metadata"]
