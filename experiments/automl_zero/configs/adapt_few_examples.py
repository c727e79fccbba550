"""§4.3 "few training examples": search on projected binary tasks of 80 examples x 100 epochs (25 on
digits, see `adaptations.py`); the paper's evolved algorithms then added noise to the input of the ReLU (a
dropout-like regularizer, 8 of 30 runs vs 0 of 30 controls).

    --config=experiments/automl_zero/configs/adapt_few_examples.py            # 80 examples x 100 epochs
    --config=experiments/automl_zero/configs/adapt_few_examples.py:control    # the control: 800 x 100 (250 on digits)

The §4.3 space and the small run settings are in `adaptations.py`; CIFAR-10 with `--config.data_dir=DIR`.
"""
from experiments.automl_zero.configs import adaptations


def get_config(variant=None):
    variant = adaptations.check_variant(variant)
    c = adaptations.base_config(num_train=80 if variant == "experiment" else 800, num_epochs=100)
    c.max_train_steps = 1e6 if variant == "experiment" else 1e7  # about 200 programs of each variant
    return c
