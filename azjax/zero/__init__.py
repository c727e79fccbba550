"""AutoML-Zero: programs of typed instructions, the lax.switch interpreter, evaluation and tasks.

    cfg = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=1, features=4,
                          setup_ops=(...), predict_ops=(...), learn_ops=(...),
                          setup_size=10, predict_size=2, learn_size=8, dtype="float32")
    prog = zero.parse_program(text, cfg)
    progs = zero.stack_programs([prog, ...])
    tasks = zero.linear_regression_tasks(key, num_tasks, features, num_train, num_valid)
    fit = zero.evaluate(progs, tasks, cfg, key=key)      # (P, T) in [0, 1]
"""
from azjax.zero.ops import OPS, OP_IDS, OpSpec, op_id
from azjax.zero.config import ZeroConfig
from azjax.zero.program import (Component, Program, canonicalize, empty_program, make_program, stack_programs,
                                unstack_programs, validate_program)
from azjax.zero.program_text import format_program, parse_program
from azjax.zero.tasks import (Tasks, affine_regression_tasks, concat_tasks, fixed_tasks,
                              linear_regression_tasks, projected_binary_tasks, projected_multiclass_tasks,
                              teacher_network_tasks, unit_tasks)
from azjax.zero.evaluate import combine_fitness, evaluate, live_instruction_count
from azjax.zero import algorithms
from azjax.zero.export import export_program
from azjax.zero.fec import FECCache, FECConfig
from azjax.zero.initial_programs import initial_program
from azjax.zero.mutations import MutationConfig, mutate
from azjax.zero.search_evaluator import HurdleConfig, ProgramEvaluator
from azjax.zero.space import ProgramSpace
from azjax.zero.tune_constants import TuningResult, tunable_constants, tune_constants
from azjax.zero.program_genome import ProgramGenomeSpace

__all__ = [
    "OPS", "OP_IDS", "OpSpec", "op_id",
    "Component", "Program", "ZeroConfig", "canonicalize", "empty_program", "format_program",
    "make_program", "parse_program", "stack_programs", "unstack_programs", "validate_program",
    "Tasks", "affine_regression_tasks", "concat_tasks", "fixed_tasks", "linear_regression_tasks",
    "projected_binary_tasks", "projected_multiclass_tasks", "teacher_network_tasks", "unit_tasks",
    "combine_fitness", "evaluate", "live_instruction_count", "algorithms",
    "FECCache", "FECConfig", "MutationConfig", "initial_program", "mutate", "HurdleConfig", "ProgramEvaluator", "ProgramSpace", "export_program",
    "TuningResult", "tunable_constants", "tune_constants", "ProgramGenomeSpace",
]
