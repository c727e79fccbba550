"""The restricted linear-regressor space: setup {SCALAR_CONST_SET}, predict
{VECTOR_INNER_PRODUCT}, learn {SCALAR_DIFF, SCALAR_PRODUCT, SCALAR_VECTOR_PRODUCT, VECTOR_SUM}, sizes 5/1/4.
Search tasks: D=3 tasks of 100/100 examples (the paper's Fig. 4 setting; cheaper per evaluation than the
demo's 10). Searching stops as soon as the search fitness passes 0.9999 (then the candidate is checked on
T_select).

Cheaper per evaluation than the demo but, with no spare instruction slots, its solutions are rarer: measured
on seed 0, no SGD learner after 1.0M programs, where the demo space (`linear_demo`, the README's main
command) found one after 0.7M programs on seed 1. See benchmarks/space_difficulty.py."""
from experiments.automl_zero.configs import default


def get_config():
    c = default.get_config()
    c.program.setup_ops = ("SCALAR_CONST_SET",)
    c.program.predict_ops = ("VECTOR_INNER_PRODUCT",)
    c.program.learn_ops = ("SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT", "VECTOR_SUM")
    c.program.setup_size, c.program.predict_size, c.program.learn_size = 5, 1, 4
    c.search_tasks.num_tasks = 3
    c.max_train_steps = 1e8
    c.stop_search_at_fitness = 0.9999
    c.select_tasks.num_tasks = 20
    c.final_tasks.num_tasks = 20
    return c
