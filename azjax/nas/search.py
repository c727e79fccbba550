"""NAS on the shared search harness, one module per concept (this module gathers their names):

* :mod:`~azjax.nas.child_trainer`: :class:`ChildTrainer`, NASNet-style (children trained from
  scratch, reward = validation accuracy);
* :mod:`~azjax.nas.shared_weights`: :class:`SharedWeightsTrainer`, ENAS-style (weights shared
  across children, an ExtraState);
* :mod:`~azjax.nas.supernet_steps`: :class:`SupernetSteps`, the jitted supernet computations both
  use, and :func:`make_supernet`;
* :mod:`~azjax.nas.leaderboard`: :class:`Leaderboard`, every evaluated genome and its reward;
* :class:`~azjax.search.CombinedState` (in :mod:`azjax.search`) bundles several extra states.
"""
from azjax.nas.child_trainer import ChildTrainer
from azjax.nas.leaderboard import Leaderboard
from azjax.nas.shared_weights import SharedWeightsTrainer
from azjax.nas.supernet_steps import SupernetSteps, make_supernet
from azjax.nas.train import prepare_data
from azjax.search.extra_state import CombinedState

__all__ = ["ChildTrainer", "SharedWeightsTrainer", "Leaderboard", "CombinedState",
           "SupernetSteps", "make_supernet", "prepare_data"]
