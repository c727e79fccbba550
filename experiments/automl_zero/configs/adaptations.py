"""The search space of the paper's §4.3 adaptation experiments, shared by `adapt_few_examples`,
`adapt_fast_training` and `adapt_multiclass` (docs/automl_zero.md, "Adaptation experiments").

Space: banks 10/16/4, F=16, maximum component sizes 21/21/45; Setup may use the nine constant/random set ops
(ids 56-64), Predict and Learn the 55 arithmetic ops plus the two Gaussian vector/matrix sets (ids 1-55, 63,
64: the paper's list, with its Gaussian-for-uniform swap); the paper's mutation distribution (Suppl. S3);
every search starts from the hand-written 2-layer network (`algorithms.neural_network_text`, or its
multi-class version with a matrix output layer), as §4.3 did; FEC on.

Tasks are projected digits by default (scikit-learn's bundled 8x8 images, no download), or projected
CIFAR-10 with `--config.data_dir=DIR` (the cifar-10-batches-py folder; every task section then reads it).
A digits class pair has only about 360 images, so on digits every example count is the paper's scaled by
DIGITS_SCALE = 250/800 (800 -> 250, 80 -> 25) with 100 validation examples; for the paper's counts on
CIFAR-10 set `--config.{search,select,final}_tasks.num_train` (and `num_valid`) as well.
The paper ran 1,000 processes for days with D = 10 or 100 search tasks; these configs keep its task shapes
(examples x epochs) but a small population, few tasks and a budget that ends in minutes on a CPU: raise
`population_size`, `search_tasks.num_tasks`, `max_train_steps` and `max_experiments` for real runs.
"""
from typing import Optional

from azjax import zero
from azjax.zero import algorithms
from experiments.automl_zero.configs import default

SETUP_OPS = tuple(op.name for op in zero.OPS[56:65])
PREDICT_LEARN_OPS = tuple(op.name for op in zero.OPS[1:56]) + ("VECTOR_GAUSSIAN_SET", "MATRIX_GAUSSIAN_SET")
VARIANTS = ("experiment", "control")
DIGITS_SCALE = 250 / 800  # training examples per task on digits, relative to the paper's


def check_variant(variant: Optional[str]) -> str:
    """The variant named by the config string (`--config=FILE.py:control`); default "experiment"."""
    variant = variant or "experiment"
    if variant not in VARIANTS:
        raise ValueError(f"config variant must be one of {VARIANTS} (--config=FILE.py:VARIANT), got {variant!r}")
    return variant


def base_config(num_classes: int = 0, num_train: int = 800, num_epochs: int = 100):
    """The §4.3 space with binary (num_classes=0) or K-class projected tasks of the given shape (`num_train`
    is the paper's count; digits tasks get DIGITS_SCALE of it)."""
    c = default.get_config()
    c.data_dir = ""
    c.program.num_scalars, c.program.num_vectors, c.program.num_matrices = 10, 16, 4
    c.program.features = 16
    c.program.num_classes = num_classes
    c.program.setup_ops = SETUP_OPS
    c.program.predict_ops = PREDICT_LEARN_OPS
    c.program.learn_ops = PREDICT_LEARN_OPS
    c.program.setup_size, c.program.predict_size, c.program.learn_size = 21, 21, 45
    c.mutation.paper_variant = True
    c.mutation.setup_size_min = c.mutation.predict_size_min = c.mutation.learn_size_min = 1
    c.initial = "NEURAL_NET"
    # The hand-written network as written (no NO_OP padding): its own component sizes.
    net = (algorithms.multiclass_neural_network_text() if num_classes else algorithms.neural_network_text())
    c.sizes_init = tuple(len(part.strip().splitlines()) - 1
                         for part in net.split("def ")[1:])
    kind = "projected_multiclass" if num_classes else "projected_binary"
    for t in (c.search_tasks, c.select_tasks, c.final_tasks):
        t.kind = kind
        t.num_train, t.num_valid, t.num_epochs = round(num_train * DIGITS_SCALE), 100, num_epochs
        if num_classes:
            t.num_classes = num_classes
    c.search_tasks.num_tasks, c.select_tasks.num_tasks, c.final_tasks.num_tasks = 2, 4, 4
    if not num_classes:
        c.final_tasks.held_out_pairs = True
    c.randomize_task_seeds = True
    c.population_size, c.tournament_size, c.batch_size = 20, 5, 10
    c.mutate_prob = 0.9
    c.max_experiments = 1
    c.sufficient_fitness = 1.0
    return c
