"""The reference demo (run_demo.sh): banks 4/3/1, F=4, six ops, sizes 10/2/8, P=1000, T=10, FEC, 10 search
tasks of 100/100 examples re-drawn per experiment, select on 100 tasks, budget 2e8 train steps.

One difference from the reference's sequential loop: each ask draws 1000 children (one tournament each)
and the next tell replaces the 1000 oldest. The large batch amortizes the host work of a search step; it
was the fastest of the batch sizes measured to a solution on the CPU (docs/backends.md has the numbers).
`--config.batch_size=1` is the reference's loop.
"""
from experiments.automl_zero.configs import default


def get_config():
    config = default.get_config()
    config.batch_size = 1000
    return config
