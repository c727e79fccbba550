"""How often the XLA backends agree with `native` bit for bit, on random programs.

    python benchmarks/backend_agreement.py

For the demo space and for every arithmetic op (the 52 deterministic ops that are not transcendental),
float32 and float64: 300 random programs x 3 linear tasks x 20/10 examples; prints the share of prediction
steps (s1 after each Predict) that are bitwise equal to `native`'s, the share of equal fitnesses and their largest difference.
"""
import jax
import numpy as np

from azjax import zero
from azjax.zero import ops as ops_lib
from azjax.zero import random_programs

TRANSCENDENTAL = ("SIN", "COS", "TAN", "ARC", "EXP", "LOG")
SPACES = {
    "demo": zero.algorithms.LINEAR_OPS,
    "arithmetic": tuple(op.name for op in ops_lib.OPS[1:59] if not any(t in op.name for t in TRANSCENDENTAL)),
}


def main():
    for dtype in ("float32", "float64"):
        for name, ops in SPACES.items():
            cfg = zero.ZeroConfig(num_scalars=4, num_vectors=3, num_matrices=2, features=4, setup_ops=ops,
                                  predict_ops=ops, learn_ops=ops, setup_size=6, predict_size=4, learn_size=6,
                                  dtype=dtype, max_abs_error=1e300)
            progs = random_programs.random_programs(jax.random.key(1), cfg, 300)
            tasks = zero.linear_regression_tasks(jax.random.key(2), 3, 4, 20, 10, dtype=dtype)
            out = {}
            for b in ("native", "select", "cond"):
                fit, preds = zero.evaluate(progs, tasks, cfg, key=jax.random.key(0), backend=b,
                                           return_predictions=True)
                steps = np.concatenate([np.asarray(preds[k]).reshape(300, -1) for k in ("train", "valid")], 1)
                out[b] = (np.asarray(fit), steps)
            word = np.int64 if dtype == "float64" else np.int32
            for b in ("select", "cond"):
                p0, p1 = out["native"][1], out[b][1]
                same = (p0.view(word) == p1.view(word)) | (np.isnan(p0) & np.isnan(p1))
                f0, f1 = out["native"][0], out[b][0]
                print(f"{dtype} {name:10s} {b:6s}: predictions bitwise equal {same.mean() * 100:6.2f}% of "
                      f"{same.size}; fitness equal {np.mean(f0 == f1) * 100:5.1f}%, "
                      f"max |difference| {np.nanmax(np.abs(f1 - f0)):.1e}")


if __name__ == "__main__":
    main()
