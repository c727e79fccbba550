"""The reference demo (run_demo.sh, spec §7.1): banks 4/3/1, F=4, six ops, sizes 10/2/8, P=1000, T=10, FEC,
10 search tasks of 100/100 examples re-drawn per experiment, select on 100 tasks, budget 2e8 train steps."""
from experiments.automl_zero.configs import default


def get_config():
    return default.get_config()
