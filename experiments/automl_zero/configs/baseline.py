"""The reference baseline (run_baseline.sh, paper S10 "Basic"): projected binary CIFAR-10
(needs `--config.search_tasks.data_dir=DIR` etc., or `--config.data_dir=DIR` for all three), banks 5/9/2,
F=16, 8000/1000 examples, empty (NO_OP) initial programs of sizes 1/1/1 growing up to 7/11/23, no FEC,
P=100, T=10, budget 1e11 train steps."""
from experiments.automl_zero.configs import default


def get_config():
    c = default.get_config()
    c.data_dir = ""
    c.program.num_scalars, c.program.num_vectors, c.program.num_matrices = 5, 9, 2
    c.program.features = 16
    c.program.setup_ops = ("SCALAR_CONST_SET", "SCALAR_GAUSSIAN_SET", "SCALAR_UNIFORM_SET",
                           "VECTOR_GAUSSIAN_SET", "VECTOR_UNIFORM_SET", "MATRIX_GAUSSIAN_SET",
                           "MATRIX_UNIFORM_SET")
    c.program.predict_ops = ("SCALAR_SUM", "MATRIX_VECTOR_PRODUCT", "VECTOR_MAX", "VECTOR_INNER_PRODUCT",
                             "VECTOR_SUM")
    c.program.learn_ops = ("SCALAR_SUM", "SCALAR_DIFF", "SCALAR_PRODUCT", "SCALAR_VECTOR_PRODUCT",
                           "VECTOR_SUM", "VECTOR_HEAVYSIDE", "VECTOR_PRODUCT", "VECTOR_OUTER_PRODUCT",
                           "MATRIX_SUM")
    # Arrays one longer than the reference's max sizes 7/11/23, whose insert guard reaches 6/10/22.
    c.program.setup_size, c.program.predict_size, c.program.learn_size = 7, 11, 23
    c.mutation.types = ("ALTER_PARAM", "RANDOMIZE_COMPONENT_FUNCTION", "INSERT_INSTRUCTION",
                        "REMOVE_INSTRUCTION")
    c.mutation.setup_size_min = c.mutation.predict_size_min = c.mutation.learn_size_min = 1
    c.mutation.setup_size_max, c.mutation.predict_size_max, c.mutation.learn_size_max = 7, 11, 23
    c.initial = "NO_OP"
    c.sizes_init = (1, 1, 1)
    for t in (c.search_tasks, c.select_tasks, c.final_tasks):
        t.kind = "projected_binary"
        t.source = "cifar10"
        t.num_train, t.num_valid = 8000, 1000
    c.search_tasks.num_tasks = c.select_tasks.num_tasks = 10
    c.final_tasks.num_tasks = 100
    c.final_tasks.held_out_pairs = True
    c.randomize_task_seeds = False
    c.fec.enabled = False
    c.train_budget_factor = 2.0
    c.population_size = 100
    c.batch_size = 10
    c.max_train_steps = 1e11
    c.max_experiments = 1
    return c
