"""azjax.nas: NASNet: the 13 ops, genotypes (NASNET_A), Flax cells and networks, child training.

Example::

    from azjax import nas
    model = nas.NASNet(genotype=nas.NASNET_A, num_cells=18, filters=32, stem="cifar",
                       num_classes=10, aux_head=False)
"""
from azjax.nas.cell import Cell, cell_output_width
from azjax.nas.genotype import (
    COMBINE_NAMES,
    NASNET_A,
    NASNET_A_LOOSE_ENDS,
    OP_INDEX,
    OP_NAMES,
    Genotype,
    load_genotype,
    loose_ends,
    save_genotype,
    validate_cell,
)
from azjax.nas.network import (
    AuxHead,
    NASNet,
    count_params,
    drop_path_keep_prob,
    init_shapes,
    reduction_indices,
)
from azjax.nas.ops import (
    DEPTHWISE_IMPLS,
    FactorizedReduction,
    depthwise_conv,
    drop_path,
    make_op,
    resolve_depthwise_impl,
)
from azjax.nas.train import (
    TrainConfig,
    TrainState,
    augment,
    create_train_state,
    cutout,
    evaluate,
    make_eval_step,
    make_model,
    make_optimizer,
    make_train_step,
    random_flip,
    random_pad_crop,
    restore_checkpoint,
    save_checkpoint,
    train_and_evaluate,
    train_step_fn,
    weight_decay_mask,
)

__all__ = [
    "AuxHead", "COMBINE_NAMES", "Cell", "DEPTHWISE_IMPLS", "FactorizedReduction", "Genotype",
    "NASNET_A", "NASNET_A_LOOSE_ENDS", "NASNet", "OP_INDEX", "OP_NAMES", "TrainConfig",
    "TrainState", "augment", "cell_output_width", "count_params", "create_train_state", "cutout",
    "depthwise_conv", "drop_path", "drop_path_keep_prob", "evaluate", "init_shapes",
    "load_genotype", "loose_ends", "make_eval_step", "make_model", "make_op", "make_optimizer",
    "make_train_step", "random_flip", "random_pad_crop", "reduction_indices",
    "resolve_depthwise_impl", "restore_checkpoint", "save_checkpoint", "save_genotype",
    "train_and_evaluate", "train_step_fn", "validate_cell", "weight_decay_mask",
]

# NAS search: the cell space, the genotype-as-data supercell, child evaluators.
from azjax.nas.search import (  # noqa: E402
    ChildTrainer,
    CombinedState,
    Leaderboard,
    SharedWeightsTrainer,
    make_supernet,
)
from azjax.nas.space import AMOEBA_OPS, ENAS_OPS, CellSpace  # noqa: E402
from azjax.nas.supercell import (  # noqa: E402
    SuperCell,
    SuperNet,
    embed_static_params,
    init_variables,
    loose_end_mask,
    variable_shapes,
)

__all__ += [
    "AMOEBA_OPS", "CellSpace", "ChildTrainer", "CombinedState", "ENAS_OPS", "Leaderboard",
    "SharedWeightsTrainer", "SuperCell", "SuperNet", "embed_static_params", "init_variables",
    "loose_end_mask", "make_supernet", "variable_shapes",
]
