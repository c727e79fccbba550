"""Rediscovering backprop on teacher-network tasks (paper Fig. 5): banks 4/8/2, F=8, sizes
21/3/9, setup {SCALAR_CONST_SET, VECTOR_GAUSSIAN_SET, MATRIX_GAUSSIAN_SET}, predict {VECTOR_INNER_PRODUCT,
MATRIX_VECTOR_PRODUCT, VECTOR_MAX}, learn {SCALAR_DIFF, SCALAR_PRODUCT, VECTOR_HEAVYSIDE,
SCALAR_VECTOR_PRODUCT, VECTOR_SUM, VECTOR_PRODUCT, VECTOR_OUTER_PRODUCT, MATRIX_DIFF}; P=1000, T=10, FEC."""
from experiments.automl_zero.configs import default


def get_config():
    c = default.get_config()
    c.program.num_scalars, c.program.num_vectors, c.program.num_matrices = 4, 8, 2
    c.program.features = 8
    c.program.setup_ops = ("SCALAR_CONST_SET", "VECTOR_GAUSSIAN_SET", "MATRIX_GAUSSIAN_SET")
    c.program.predict_ops = ("VECTOR_INNER_PRODUCT", "MATRIX_VECTOR_PRODUCT", "VECTOR_MAX")
    c.program.learn_ops = ("SCALAR_DIFF", "SCALAR_PRODUCT", "VECTOR_HEAVYSIDE", "SCALAR_VECTOR_PRODUCT",
                           "VECTOR_SUM", "VECTOR_PRODUCT", "VECTOR_OUTER_PRODUCT", "MATRIX_DIFF")
    c.program.setup_size, c.program.predict_size, c.program.learn_size = 21, 3, 9
    for t in (c.search_tasks, c.select_tasks, c.final_tasks):
        t.kind = "teacher"
    c.search_tasks.num_train = 1000
    c.select_tasks.num_tasks = c.final_tasks.num_tasks = 20
    c.max_train_steps = 1e10
    c.sufficient_fitness = 0.9
    return c
