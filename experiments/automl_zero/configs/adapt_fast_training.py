"""§4.3 "fast training": search on projected binary tasks of 800 examples x 10 epochs (250 on digits, see
`adaptations.py`); the paper's evolved algorithms then decayed their learning rate (an iterated arctan map,
30 of 30 runs vs 3 of 30 controls).

    --config=experiments/automl_zero/configs/adapt_fast_training.py           # 800 examples x 10 epochs
    --config=experiments/automl_zero/configs/adapt_fast_training.py:control   # the control: 800 x 100 (250 on digits)

The §4.3 space and the small run settings are in `adaptations.py`; CIFAR-10 with `--config.data_dir=DIR`.
"""
from experiments.automl_zero.configs import adaptations


def get_config(variant=None):
    variant = adaptations.check_variant(variant)
    c = adaptations.base_config(num_train=800, num_epochs=10 if variant == "experiment" else 100)
    c.max_train_steps = 1e6 if variant == "experiment" else 1e7  # about 200 programs of each variant
    return c
