"""azjax: a JAX-compiled research toolkit for AutoML.

Public API::

    from azjax import zero, nas, search

* ``azjax.zero``   AutoML-Zero: programs of typed instructions, the interpreter, evaluation, tasks.
* ``azjax.nas``    NASNet: the 13 ops, genotypes (NASNET_A), Flax cells and networks, child training.
* ``azjax.search`` the shared search harness: search spaces, strategies, the run loop.
"""
from azjax import search
from azjax import zero
from azjax import nas

__all__ = ["zero", "nas", "search"]
__version__ = "0.1.0"
