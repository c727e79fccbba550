"""NASNet-A N=1 (num_cells 3), F=8 on scikit-learn's 8x8 digits: a CPU run of a few minutes."""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = "digits"
    c.num_test = 297  # digits: held-out test images (random, seeded)
    c.num_valid = 200  # carved from the training part: the NAS reward set
    c.seed = 0
    # Child.
    c.num_cells = 3
    c.filters = 8
    c.stem_multiplier = 3.0
    c.num_classes = 10
    c.aux_head = False
    c.drop_path_keep_prob = 1.0
    c.depthwise_impl = "auto"
    # Recipe.
    c.batch_size = 32
    c.num_epochs = 15
    c.num_steps = 0
    c.learning_rate = 0.05
    c.momentum = 0.9
    c.weight_decay = 5e-4
    c.clip_norm = 5.0
    c.pad_crop = 1
    c.flip = False  # digits are not mirror-symmetric
    c.cutout = 0
    c.eval_batch_size = 128
    c.log_every = 40
    c.checkpoint_every = 0
    c.num_devices = 0  # 0: all local devices (data-parallel when > 1); 1: one device
    return c
