"""NASNet-A CIFAR 6@768 with the paper's recipe: an accelerator run.

Needs the extracted ``cifar-10-batches-py`` directory: pass ``--config.data_dir=...``.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = "cifar10"
    c.data_dir = ""
    c.num_valid = 5000  # NASNet: a random 5k held out from the 50k training images
    c.random_split = True  # False: the last 5k (ENAS)
    c.seed = 0
    # Child: 6@768.
    c.num_cells = 18
    c.filters = 32
    c.stem_multiplier = 3.0
    c.num_classes = 10
    c.aux_head = True
    c.aux_weight = 0.4
    c.drop_path_keep_prob = 0.6
    c.depthwise_impl = "auto"
    # Recipe: momentum SGD, single-period cosine, batch 32, 600 epochs, clip 5, L2 5e-4.
    c.batch_size = 32
    c.num_epochs = 600
    c.num_steps = 0
    c.learning_rate = 0.025
    c.momentum = 0.9
    c.weight_decay = 5e-4
    c.clip_norm = 5.0
    c.pad_crop = 4
    c.flip = True
    c.cutout = 16  # the "+cutout" variant; 0 for the plain recipe
    c.eval_batch_size = 500
    c.log_every = 500
    c.checkpoint_every = 0
    c.num_devices = 0  # 0: all local devices (data-parallel when > 1); 1: one device
    return c
