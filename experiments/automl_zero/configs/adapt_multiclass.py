"""§4.3 "multiple classes": search on projected 10-class tasks (softmax output, accuracy fitness; the paper
used CIFAR-10 with a 45K/5K split); the paper's evolved algorithms then used a transformed mean of the
weight matrix as their learning rate (24 of 30 runs vs 0 of 30 binary controls).

    --config=experiments/automl_zero/configs/adapt_multiclass.py              # 10 classes
    --config=experiments/automl_zero/configs/adapt_multiclass.py:control      # the control: binary tasks

Both search tasks of 800 examples x 10 epochs (250 on digits, whose class pairs have about 360 images; see
`adaptations.py`); with CIFAR-10 (`--config.data_dir=DIR`) the paper's 10-class split is
`--config.search_tasks.num_train=45000 --config.search_tasks.num_valid=5000` (and the same for
select/final). The §4.3 space and the small run settings are in `adaptations.py`.
"""
from experiments.automl_zero.configs import adaptations


def get_config(variant=None):
    variant = adaptations.check_variant(variant)
    c = adaptations.base_config(num_classes=10 if variant == "experiment" else 0, num_train=800, num_epochs=10)
    c.max_train_steps = 1e6  # about 200 programs
    return c
