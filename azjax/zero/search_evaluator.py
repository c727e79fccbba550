"""The AutoML-Zero evaluator plugged into the search harness: dedup, FEC, compaction, budget accounting.

`ProgramEvaluator(cfg, tasks)(key, programs) -> (fitness [B], info)` combines per-task fitness (mean or
median) for a batch of programs and does as little work as it can:

1. identical programs in the batch are evaluated once;
2. with FEC, each remaining program is first probed (a short evaluation, see `fec.py`); programs whose
   fingerprint is cached on every task take the cached fitness;
3. the misses are compacted to the front of a batch whose padding is marked inactive, padded to the size
   the backend asks for (`Backend.padded_size`).

`info` carries counters the search loop accumulates: `train_steps` (probe and full training steps, the
reference's budget unit), `evaluated` (full evaluations run), `cache_hits`, `duplicates`.
The FEC cache is saved with checkpoints through `get_state`/`set_state`.

Multi-process runs (`jax.distributed`, docs/scaling.md): every process holds the whole batch and runs steps
1-3 on the host identically; only the device work (the probe and the full evaluations) is split over all
processes' devices, and its outputs are gathered onto every process. The FEC cache and the hurdle history are
therefore replicated: each process looks up and inserts the same gathered results, so hits are exact and the
same everywhere, and the search does not depend on the process count.
"""
from __future__ import annotations

import collections
import ctypes
import dataclasses
from typing import Dict, Optional, Tuple, Union

import jax
import numpy as np

from azjax.search import sharding
from azjax.zero import backends
from azjax.zero import ops as ops_lib
from azjax.zero.backends import Backend, KeyRule
from azjax.zero.evaluate import prepare_tasks
from azjax.zero.fec import _KEY, FECCache, FECConfig, _native_lib, _ptr, fingerprints
from azjax.zero.program import Program, ZeroConfig
from azjax.zero.tasks import Tasks

@dataclasses.dataclass(frozen=True)
class HurdleConfig:
    """Hurdles (paper §3.2): evaluate a program on the first `num_tasks` tasks; only if its fitness there
    reaches the `percentile` of the unique fitnesses of the last `window` fully evaluated programs is it
    evaluated on the remaining tasks; otherwise its first-stage fitness is final."""

    num_tasks: int = 1
    percentile: float = 75.0
    window: int = 1000
    min_history: int = 10

    def __post_init__(self):
        for name in ("num_tasks", "window", "min_history"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"HurdleConfig.{name} must be an integer >= 1, got {v!r}")
        if not 0 <= self.percentile <= 100:
            raise ValueError(f"HurdleConfig.percentile must lie in [0, 100], got {self.percentile!r}")


# The reference re-seeds a private RNG to this value for every fingerprint run.
_FEC_SEED = 235732282


def _host_programs(programs: Program, cfg: ZeroConfig) -> Program:
    dt = cfg.np_dtype
    return Program(*(type(c)(instructions=np.asarray(c.instructions, np.int32), data=np.asarray(c.data, dt),
                             size=np.asarray(c.size, np.int32))
                     for c in (programs.setup, programs.predict, programs.learn)))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _multiclass_probe_errors(train_probs, valid_logits, train_labels, valid_labels):
    """FEC probe errors of multi-class tasks: |one-hot - probability| of every class at every training step
    ([U, T, n * K]) and, per validation example, whether the first argmax of its logits is the label and
    all logits are finite (the backends' accuracy rule)."""
    K = train_probs.shape[-1]
    onehot = (train_labels[..., None] == np.arange(K)).astype(train_probs.dtype)
    train_err = np.abs(onehot - train_probs).reshape(train_probs.shape[:2] + (-1,))
    finite = np.all(np.isfinite(valid_logits), axis=-1)
    guess = np.argmax(np.where(np.isnan(valid_logits), -np.inf, valid_logits), axis=-1)
    return train_err, (finite & (guess == valid_labels)).astype(train_err.dtype)


def _wrap_key_data(fn):
    """`fn` taking its lane keys (argument 6) as raw uint32 key data."""
    def wrapped(programs, train_x, train_y, valid_x, valid_y, orders, keys, active):
        return fn(programs, train_x, train_y, valid_x, valid_y, orders, jax.random.wrap_key_data(keys), active)
    return wrapped


def _first_appearance(leaves, B: int) -> Tuple[np.ndarray, np.ndarray]:
    """(first [U], inverse [B]) of the rows of `leaves` (arrays with a leading axis B): row `first[u]` is the first
    of group u, `inverse[r]` the group of row r; rows are equal when all their leaves' bytes are. Grouped by a
    hash and compared byte for byte where the native library is built, else sorted with NumPy."""
    leaves = [np.ascontiguousarray(x) for x in leaves]
    lib = _native_lib()
    if lib is not None and B:
        pointers = (ctypes.c_void_p * len(leaves))(*(x.ctypes.data for x in leaves))
        widths = np.asarray([x.nbytes // B for x in leaves], np.int64)
        first, inverse = np.empty(B, np.int64), np.empty(B, np.int64)
        U = lib.azjax_dedup_rows(pointers, _ptr(widths), len(leaves), B, _ptr(first), _ptr(inverse))
        return first[:U], inverse
    rows = np.ascontiguousarray(np.concatenate([x.reshape(B, -1).view(np.uint8) for x in leaves], axis=1))
    rows = rows.view(np.dtype((np.void, rows.shape[1])))[:, 0]
    _, first_index, inverse_sorted = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(first_index, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first_index[order], rank[np.reshape(inverse_sorted, -1)]


def deduplicate(programs: Program) -> Tuple[Program, np.ndarray]:
    """(unique programs in order of first appearance, inverse [B]): `unique[inverse]` is the batch. Programs
    are equal when all their arrays are (canonical programs: when they are the same program)."""
    first, inverse = _first_appearance(jax.tree_util.tree_leaves(programs), programs.setup.size.shape[0])
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[first], programs), inverse


def probe_errors(train_pred, valid_pred, train_labels, valid_labels, eval_type: str):
    """The FEC probe's errors (train [U, T, n], valid [U, T, m]) from its predictions, per eval type: |label -
    prediction| (after the sigmoid in training for binary tasks), and for validation of classification tasks
    whether the example is classified correctly."""
    if eval_type == "multiclass":
        return _multiclass_probe_errors(train_pred, valid_pred, train_labels, valid_labels)
    train_err = np.abs(train_labels - train_pred)
    if eval_type == "accuracy":
        return train_err, ((valid_labels > 0.5) == (_sigmoid(valid_pred) > 0.5)).astype(train_err.dtype)
    return train_err, np.abs(valid_labels - valid_pred)


def fingerprint_leaders(keys: np.ndarray, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(same_as [U], leader [U]): among `rows`, the first of each group of equal FEC keys leads and the
    others follow it (`same_as` points to the leader; every other row is its own leader)."""
    U = len(keys)
    same_as = np.arange(U)
    idx = np.flatnonzero(rows)
    if len(idx):
        first, inverse = _first_appearance([keys[idx]], len(idx))
        same_as[idx] = idx[first[inverse]]
    return same_as, same_as == np.arange(U)


class _ProbeMemo:
    """Pruned-code key -> FEC keys [T] of its probe, bounded (cleared when full), held by the native library.
    Only a cache of a pure function: results never depend on what it holds, so it is not checkpointed."""

    def __init__(self, num_tasks: int, capacity: int = 1 << 16):
        from azjax.zero.fec import _native_lib

        self._lib = _native_lib()
        self.num_tasks = num_tasks
        self._handle = ctypes.c_void_p(self._lib.azjax_memo_new(num_tasks, capacity))

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            self._lib.azjax_memo_free(self._handle)
            self._handle = None

    def __len__(self) -> int:
        return int(self._lib.azjax_memo_size(self._handle))

    def lookup(self, code: np.ndarray, want: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(keys [U, T], missing [U]) for the rows in `want`; missing rows must be probed."""
        code = np.ascontiguousarray(code)
        keys = np.zeros((len(code), self.num_tasks), _KEY)
        missing = np.zeros(len(code), np.uint8)
        want = np.ascontiguousarray(want, np.uint8)
        self._lib.azjax_memo_lookup(self._handle, _ptr(code), _ptr(want), len(code), _ptr(keys), _ptr(missing))
        return keys, missing.astype(bool)

    def insert(self, code: np.ndarray, keys: np.ndarray, rows: np.ndarray) -> None:
        code, keys = np.ascontiguousarray(code), np.ascontiguousarray(keys, _KEY)
        rows = np.ascontiguousarray(rows, np.uint8)
        self._lib.azjax_memo_insert(self._handle, _ptr(code), _ptr(keys), _ptr(rows), len(code))


class ProgramEvaluator:
    """Host-side evaluator of program batches for `azjax.search.run`.

    Args:
      cfg: the program config.
      tasks: the search tasks (T_search).
      combine: "mean" or "median" over tasks.
      fec: FEC settings, or None to disable the cache.
      backend: interpreter backend ("native", "select", "cond", "pallas" or a Backend; default: native on CPU, select
        on accelerators).
      train_budget_factor: if set, the reference's op-cost train budget (docs/automl_zero.md): programs costlier than
        this factor times the hand-written network get fitness 0 without being evaluated.
      hurdle: if set, hurdles (paper §3.2, see HurdleConfig).
      num_devices: local devices the batch is sharded over (default: all); in a multi-process run, the devices
        of each process, and the batch is split over all of them. Keys are split per (program, task) before
        sharding, so fitness does not depend on the device or process count.
      process_local: in a multi-process run, evaluate each process's own batch on its own devices (every
        process then runs its own search, e.g. its own islands) instead of splitting one replicated batch over
        all processes' devices.
      strategy: deprecated alias of `backend`.
    """

    def __init__(self, cfg: ZeroConfig, tasks: Tasks, *, combine: str = "mean",
                 fec: Optional[FECConfig] = FECConfig(), backend: Union[None, str, Backend] = None,
                 train_budget_factor: Optional[float] = None, hurdle: Optional[HurdleConfig] = None,
                 num_devices: Optional[int] = None, process_local: bool = False,
                 strategy: Optional[str] = None):
        if combine not in ("mean", "median"):
            raise ValueError(f"combine must be 'mean' or 'median', got {combine!r}")
        if train_budget_factor is not None and not train_budget_factor > 0:
            raise ValueError(f"train_budget_factor must be > 0 or None, got {train_budget_factor!r}")
        self.train_budget_factor = train_budget_factor
        if hurdle is not None and not hurdle.num_tasks < tasks.num_tasks:
            raise ValueError(f"HurdleConfig.num_tasks ({hurdle.num_tasks}) must be smaller than the number of "
                             f"tasks ({tasks.num_tasks})")
        self.hurdle = hurdle
        self._hurdle_window = collections.deque(maxlen=hurdle.window if hurdle else 1)
        self.cfg = cfg
        self.tasks = tasks
        self.combine = combine
        self.fec = fec
        self.backend = backends.resolve(backend, cfg, tasks.num_tasks, strategy=strategy,
                                        eval_type=tasks.eval_type)
        self.cache = FECCache(fec) if fec is not None else None
        self.eval_type = tasks.eval_type
        with jax.enable_x64(cfg.dtype == "float64"):
            self._task_arrays = prepare_tasks(tasks, cfg)
            if fec is not None:
                n, m = min(fec.num_train, tasks.num_train), min(fec.num_valid, tasks.num_valid)
                tx, ty, vx, vy, _ = self._task_arrays
                probe = Tasks(tx[:, :n], ty[:, :n], vx[:, :m], vy[:, :m], eval_type=tasks.eval_type,
                              num_epochs=1, num_classes=tasks.num_classes)
                self._probe_arrays = prepare_tasks(probe, cfg)
        self.mesh = sharding.make_mesh(num_devices, global_mesh=jax.process_count() > 1 and not process_local)
        # Multi-process (docs/scaling.md): the mesh holds every process's devices; each process runs the
        # same host-side steps on the whole batch, its devices evaluate their slice, and the outputs are
        # gathered onto every device, so dedup, FEC and hurdles see the same results everywhere.
        self._global = sharding.spans_processes(self.mesh)
        if self.mesh.size == 1:
            self._full = self.backend.jitted(cfg, tasks.eval_type, tasks.num_epochs, False, True)
            self._probe = self.backend.jitted(cfg, tasks.eval_type, 1, True, True)
        else:
            # Programs, keys and the active mask are split over devices; task data is replicated.
            split = (True, False, False, False, False, False, True, True)
            full = self.backend.make_evaluate_fn(cfg, tasks.eval_type, tasks.num_epochs, False, True)
            probe = self.backend.make_evaluate_fn(cfg, tasks.eval_type, 1, True, True)
            if self._global:  # lane keys travel as raw key data (global arrays are built from NumPy)
                full, probe = _wrap_key_data(full), _wrap_key_data(probe)
            self._full = sharding.shard_population_fn(full, self.mesh, split, replicate_outputs=self._global)
            self._probe = sharding.shard_population_fn(probe, self.mesh, split, replicate_outputs=self._global)
        self._steps_full = tasks.num_train * tasks.num_epochs
        # A backend that hashes the probe's errors itself (native) returns 16 bytes per (program, task)
        # instead of every prediction; sharded runs keep the predictions path.
        fp_fn = (self.backend.make_fingerprint_fn(cfg, tasks.eval_type, self._steps_full)
                 if fec is not None and self.mesh.size == 1 else None)
        self._probe_fingerprints = jax.jit(fp_fn) if fp_fn is not None else None
        # On one device a backend may run on the host arrays directly (native: no jit dispatch, no padding to a
        # compiled shape); the same results as the jitted functions.
        self._host_fns = set()
        if self.mesh.size == 1:
            host_full = self.backend.make_host_fn(cfg, tasks.eval_type, tasks.num_epochs)
            if host_full is not None:
                self._full = host_full
                self._host_fns.add(host_full)
            host_fp = (self.backend.make_host_fn(cfg, tasks.eval_type, 1, self._steps_full)
                       if fp_fn is not None else None)
            if host_fp is not None:
                self._probe_fingerprints = host_fp
                self._host_fns.add(host_fp)
        self._probe_memo = _ProbeMemo(tasks.num_tasks) if self._probe_fingerprints is not None else None
        self._probe_keys: Dict[Tuple[int, int], object] = {}
        self._fec_seed_data = np.asarray(jax.random.key_data(jax.random.key(_FEC_SEED)))
        self._global_tasks: Dict[int, tuple] = {}
        # evaluated_here: programs fully evaluated on this process's devices (= evaluated in one process).
        self.counters = {"evaluated": 0, "cache_hits": 0, "duplicates": 0, "evaluated_here": 0}

    # -- ExtraState protocol (checkpointing the cache and the hurdle history) --
    def get_state(self):
        state = {"cache": self.cache.get_state()} if self.cache is not None else {}
        if self.hurdle is not None:
            state["hurdle_window"] = np.asarray(self._hurdle_window, np.float64)
        return state

    def set_state(self, state) -> None:
        if self.cache is not None and "cache" in state:
            self.cache.set_state({k: np.asarray(v) for k, v in state["cache"].items()})
        if self.hurdle is not None and "hurdle_window" in state:
            self._hurdle_window.clear()
            self._hurdle_window.extend(np.asarray(state["hurdle_window"], np.float64).tolist())

    def _combine(self, per_task: np.ndarray) -> np.ndarray:
        T = per_task.shape[1]
        return per_task.mean(1) if self.combine == "mean" else np.sort(per_task, 1)[:, T // 2]

    def _full_evaluation(self, programs: Program, key, batch: int):
        """(per-task fitness [n, T], train steps, passed-all-stages mask) of n programs."""
        n = programs.setup.size.shape[0]
        compact = self._pad(programs, batch, self._full)
        active = np.arange(compact.setup.size.shape[0]) < n
        if self.hurdle is None:
            fit = np.asarray(self._run(self._full, self._task_arrays, compact, key, active))[:n]
            return fit, n * self.tasks.num_tasks * self._steps_full, np.ones(n, bool)
        k, T = self.hurdle.num_tasks, self.tasks.num_tasks
        first = tuple(a[:k] for a in self._task_arrays)
        rest = tuple(a[k:] for a in self._task_arrays)
        fit = np.full((n, T), np.nan)
        fit[:, :k] = np.asarray(self._run(self._full, first, compact, key, active))[:n]
        steps = n * k * self._steps_full
        partial = self._combine(fit[:, :k])
        window = np.unique(np.asarray(self._hurdle_window))
        threshold = (np.percentile(window, self.hurdle.percentile)
                     if len(self._hurdle_window) >= self.hurdle.min_history else -np.inf)
        passed = partial >= threshold
        if passed.any():
            second = self._pad(jax.tree_util.tree_map(lambda x: x[passed], programs), batch, self._full)
            active2 = np.arange(second.setup.size.shape[0]) < int(passed.sum())
            out = np.asarray(self._run(self._full, rest, second, jax.random.fold_in(key, 1), active2))
            fit[passed, k:] = out[:int(passed.sum())]
            steps += int(passed.sum()) * (T - k) * self._steps_full
            self._hurdle_window.extend(self._combine(fit[passed]).tolist())
        # Programs stopped at the hurdle keep their first-stage fitness on every task.
        fit[~passed] = partial[~passed, None]
        return fit, steps, passed

    def _run(self, fn, task_arrays, programs: Program, key, active):
        P, T = programs.setup.size.shape[0], task_arrays[0].shape[0]
        if fn in self._host_fns:  # the base key's data: the kernel derives the lane keys by the same rule
            key_data = self._fec_seed_data if key is None else np.asarray(jax.random.key_data(key))
            if fn is self._full:
                self.counters["evaluated_here"] += int(np.sum(active))
            return fn(_host_programs(programs, self.cfg), *task_arrays, key_data, active)
        cache_key = None
        if key is None:  # the FEC probe: one fixed key, so its lane keys are derived once per shape
            cache_key = (P, T)
            if cache_key not in self._probe_keys:
                with jax.enable_x64(self.cfg.dtype == "float64"):
                    self._probe_keys[cache_key] = KeyRule.lane_keys(jax.random.key(_FEC_SEED), P, T)
            keys = self._probe_keys[cache_key]
        with jax.enable_x64(self.cfg.dtype == "float64"):
            if cache_key is None:
                keys = (self.backend.lane_keys(key, P, T) if self.mesh.size == 1
                        else KeyRule.lane_keys(key, P, T))  # sharded: every device gets its programs' lanes
            active = np.asarray(active)
            if self.mesh.size == 1:
                if fn is self._full:
                    self.counters["evaluated_here"] += int(active.sum())
                # NumPy arrays go to the jitted function as they are (its fast argument path), in the dtypes
                # it was compiled for.
                return fn(_host_programs(programs, self.cfg), *task_arrays, keys, active)
            # Sharded: the batch's rows (active programs first) are dealt round-robin over the devices, so
            # every device gets an equal share of the work; each program takes its lane keys along, so its
            # result does not depend on where it runs (docs/scaling.md).
            pos = sharding.interleave(P, self.mesh.size)
            order = np.argsort(pos)
            progs = jax.tree_util.tree_map(lambda x: x[order], _host_programs(programs, self.cfg))
            raw_keys = np.asarray(jax.random.key_data(keys))[order]
            active = active[order]
            if not self._global:
                if fn is self._full:
                    self.counters["evaluated_here"] += int(active.sum())
                out = fn(progs, *task_arrays, jax.random.wrap_key_data(raw_keys), active)
            else:
                if fn is self._full:
                    self.counters["evaluated_here"] += int(active[sharding.local_rows(self.mesh, P)].sum())
                out = fn(*self._global_args(progs, task_arrays, raw_keys, active))
            return jax.tree_util.tree_map(lambda x: np.asarray(x)[pos], out)

    def _global_args(self, programs: Program, task_arrays, raw_keys, active):
        """The arguments of a multi-process call as global arrays: this process's devices get their
        slice of the programs, lane keys and mask, and a copy of the task data (built once per task set)."""
        mesh = self.mesh
        progs = jax.tree_util.tree_map(lambda x: sharding.global_array(mesh, x, True), programs)
        tasks = self._global_tasks.get(id(task_arrays))
        if tasks is None or tasks[0] is not task_arrays:
            tasks = (task_arrays, tuple(sharding.global_array(mesh, a, False) for a in task_arrays))
            if task_arrays is self._task_arrays or task_arrays is getattr(self, "_probe_arrays", None):
                self._global_tasks[id(task_arrays)] = tasks
        return (progs, *tasks[1], sharding.global_array(mesh, raw_keys, True),
                sharding.global_array(mesh, active, True))

    def __call__(self, key: jax.Array, programs: Program) -> Tuple[np.ndarray, Dict[str, float]]:
        host = jax.tree_util.tree_map(np.asarray, programs)  # CPU arrays: views, no copies
        B = host.setup.size.shape[0]
        # 1. Identical (canonical) programs are evaluated once.
        unique, inverse = deduplicate(host)
        U = unique.setup.size.shape[0]
        per_task = np.zeros((U, self.tasks.num_tasks), np.float64)
        need = np.ones(U, bool)
        if self.train_budget_factor is not None:
            # Over-budget programs are trained on 0 examples in the reference: fitness 0, no evaluation.
            need &= within_train_budget(unique, self._steps_full, self.train_budget_factor)
        # 2. FEC: probe, look the fingerprints up; misses with equal fingerprints within this batch are
        # evaluated once (the reference, sequential, would hit).
        keys_fp, train_steps, cache_hit = None, 0.0, np.zeros(U, bool)
        if self.cache is not None and need.any():
            keys_fp, train_steps = self._fec_keys(unique, need, B)
            cached, found = self.cache.lookup_batch(keys_fp, need)
            per_task[found] = cached[found]
            same_as, leader = fingerprint_leaders(keys_fp, need & ~found)
            need &= ~found & leader
            cache_hit = found | ~leader
        else:
            same_as = np.arange(U)
        # 3. Full evaluation of the misses, compacted into one fixed-size batch.
        miss = np.flatnonzero(need)
        if len(miss):
            fit, steps, complete = self._full_evaluation(jax.tree_util.tree_map(lambda x: x[miss], unique), key, B)
            per_task[miss] = fit
            train_steps += steps
            if keys_fp is not None:  # a fitness cut short by a hurdle is not cached
                self.cache.insert_batch(keys_fp[miss[complete]], fit[complete])
        per_task = per_task[same_as]
        info = {"train_steps": float(train_steps), "evaluated": float(len(miss)),
                "cache_hits": float(np.sum(cache_hit)), "duplicates": float(B - U)}
        for k in ("evaluated", "cache_hits", "duplicates"):
            self.counters[k] += int(info[k])
        return self._combine(per_task)[inverse].astype(np.float32), info

    def _fec_keys(self, unique: Program, need: np.ndarray, batch: int) -> Tuple[np.ndarray, float]:
        """(FEC keys [U, T], the probe's training steps): hashed by the backend's kernel where it can, else
        from the probe's predictions."""
        U, T = unique.setup.size.shape[0], self.tasks.num_tasks
        steps = float(U * T * self._probe_arrays[0].shape[1])
        if self._probe_fingerprints is not None:
            return self._kernel_fingerprints(unique, need, batch), steps
        padded = self._pad(unique, batch)
        active = np.arange(padded.setup.size.shape[0]) < U
        _, preds = self._run(self._probe, self._probe_arrays, padded, None, active)
        _, ty, _, vy, _ = self._probe_arrays
        train_err, valid_err = probe_errors(np.asarray(preds["train"])[:U, :, 0], np.asarray(preds["valid"])[:U, :, 0],
                                            np.asarray(ty)[None], np.asarray(vy)[None], self.eval_type)
        return fingerprints(train_err, valid_err, self._steps_full), steps

    def _kernel_fingerprints(self, unique: Program, need: np.ndarray, batch: int) -> np.ndarray:
        """FEC keys [U, T] of the needed rows, hashed by the backend's kernel. A program whose pruned code was
        probed before (and has no live random op) takes the remembered keys; the others are probed in their
        own rows (a random op's lane key depends on the row), the rest of the batch inactive."""
        U = unique.setup.size.shape[0]
        code = self.backend.live_code_keys(unique, self.cfg)
        if code is None:
            probe = need.copy()
            keys_fp = np.zeros((U, self.tasks.num_tasks), _KEY)
        else:
            code, has_random = code
            keys_fp, probe = self._probe_memo.lookup(code, need & ~has_random)
            probe |= need & has_random
        if probe.any():
            padded = self._pad(unique, batch, self._probe_fingerprints)
            active = np.zeros(padded.setup.size.shape[0], bool)
            active[:U] = probe
            words = np.asarray(self._run(self._probe_fingerprints, self._probe_arrays, padded, None, active))
            keys_fp[probe] = np.ascontiguousarray(words[:U]).view(_KEY)[..., 0][probe]
            if code is not None:
                self._probe_memo.insert(code, keys_fp, probe & ~has_random)
        return keys_fp

    @property
    def strategy(self) -> str:
        """Deprecated: the backend's name."""
        return self.backend.name

    def _pad(self, programs: Program, size: int, fn=None) -> Program:
        """`programs` padded to the backend's compiled batch size for `size` (not for a host function `fn`)."""
        n = programs.setup.size.shape[0]
        if fn is not None and fn in self._host_fns:
            return programs
        size = self.backend.padded_size(n, size, self.tasks.num_tasks, self.mesh.size)
        if n == size:
            return programs
        return jax.tree_util.tree_map(
            lambda x: np.concatenate([x, np.repeat(x[:1], size - n, axis=0)]), programs)


# Per-op relative costs (the reference's) and the reference NN's component costs.
_OP_COST = np.asarray([op.cost for op in ops_lib.OPS], np.float64)
_NN_SETUP_COST = 358_864_510.0
_NN_STEP_COST = 81_904_713.0


def component_costs(programs: Program) -> Tuple[np.ndarray, np.ndarray]:
    """(setup cost, per-example predict + learn cost) of each program in a batch."""
    def cost(comp):
        ops = np.asarray(comp.instructions)[..., 0]
        used = np.arange(ops.shape[-1]) < np.asarray(comp.size)[..., None]
        return np.sum(np.where(used, _OP_COST[ops], 0.0), axis=-1)

    return cost(programs.setup), cost(programs.predict) + cost(programs.learn)


def within_train_budget(programs: Program, num_train_steps: int, factor: float) -> np.ndarray:
    """The reference's train budget: S + N·C <= factor · (S_nn + N·C_nn) for the hand-written network."""
    setup, step = component_costs(programs)
    return setup + num_train_steps * step <= factor * (_NN_SETUP_COST + num_train_steps * _NN_STEP_COST)
