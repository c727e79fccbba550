"""benchmarks/evolution_vs_random.py (paper Fig. 4): the four settings, the label screen, the statistics, tiny runs."""
import importlib.util
import json
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azjax import zero
from azjax.zero.backends import native

_PATH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "evolution_vs_random.py")


def _load():
    # The script defines absl flags at import: load it once per process.
    name = "benchmarks_evolution_vs_random"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


E = _load()
needs_native = pytest.mark.skipif(not native.available(), reason="native backend not built")


@pytest.mark.parametrize("setting", E.SETTINGS)
def test_settings_build_the_papers_spaces_and_valid_programs(setting):
    spec = E.SPECS[setting]
    cfg = spec.cfg
    affine = setting.startswith("affine")
    assert (cfg.num_scalars, cfg.num_vectors, cfg.num_matrices, cfg.features) == ((5 if affine else 4), 3, 1, 8)
    assert (cfg.setup_size, cfg.predict_size, cfg.learn_size) == ((6, 2, 6) if affine else (5, 1, 4))
    assert spec.budget == (100_000 if setting == "affine_full" else 10_000)
    space = E.make_space(setting)
    ref = E.reference_program(setting)
    space.validate(ref)
    programs = jax.jit(jax.vmap(space.sample))(jax.random.split(jax.random.key(0), 16))
    children = jax.jit(jax.vmap(space.mutate))(jax.random.split(jax.random.key(1), 16), programs)
    for c in (programs, children):
        space.validate(c)
        if spec.learn_only:  # Setup and Predict stay the hand-written ones
            for comp in ("setup", "predict"):
                np.testing.assert_array_equal(c.component(comp).instructions,
                                              np.broadcast_to(ref.component(comp).instructions,
                                                              c.component(comp).instructions.shape))
    if spec.learn_only:  # mutations land on Learn only: most children differ from their parents there
        changed = np.any(np.asarray(children.learn.instructions) != np.asarray(programs.learn.instructions), axis=(1, 2))
        assert changed.sum() >= 8
    tasks = E.make_tasks(setting, jax.random.key(1))
    assert tasks.train_features.shape == (3, 1000, 8) and tasks.valid_features.shape == (3, 100, 8)
    # Affine labels have a bias: the best linear fit through the origin leaves a residual.
    x, y = np.asarray(tasks.train_features[0], np.float64), np.asarray(tasks.train_labels[0], np.float64)
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    assert (np.sqrt(np.mean(resid ** 2)) > 1e-3) == affine


@needs_native
@pytest.mark.parametrize("setting", E.SETTINGS)
def test_the_hand_written_program_is_acceptable(setting):
    tasks = E.make_tasks(setting, jax.random.key(2))
    target = E.target_fitness(setting, tasks)
    assert target > 0.999
    fit = zero.combine_fitness(zero.evaluate(E.reference_program(setting), tasks, E.SPECS[setting].cfg,
                                             key=jax.random.key(0), backend="native"))
    assert float(fit) >= target


def test_label_screen_keeps_learners_and_drops_programs_blind_to_the_label():
    cfg = E.SPECS["linear_full"].cfg
    screen = jax.jit(lambda p: E.label_reaches_prediction(p, cfg))
    as_jnp = lambda p: jax.tree_util.tree_map(jnp.asarray, p)  # noqa: E731
    assert bool(screen(as_jnp(E.reference_program("linear_full"))))
    blind = ("def Setup():\n  s2 = 0.1\ndef Predict():\n  s1 = dot(v0, v1)\ndef Learn():\n  s3 = s0 - s1\n"
             "  s3 = s2 * s3\n  v2 = s3 * v0\n  v2 = v1 + v1\n")  # the update never reaches v1
    assert not bool(screen(as_jnp(zero.parse_program(blind, cfg))))
    overwritten = ("def Setup():\n  s2 = 0.1\ndef Predict():\n  s1 = dot(v0, v1)\ndef Learn():\n  s3 = s0 - s1\n"
                   "  s3 = s2 * s2\n  v2 = s3 * v0\n  v1 = v1 + v2\n")  # s3 loses the label before use
    assert not bool(screen(as_jnp(zero.parse_program(overwritten, cfg))))
    # Through a register carried to the next step: Learn writes s3 from the label, Predict reads it.
    carried = ("def Setup():\n  s2 = 0.1\ndef Predict():\n  s1 = s3 + s2\ndef Learn():\n  s3 = s0 - s2\n")
    cfg_s = E.SPECS["affine_full"].cfg
    assert bool(jax.jit(lambda p: E.label_reaches_prediction(p, cfg_s))(as_jnp(zero.parse_program(carried, cfg_s))))


@needs_native
@pytest.mark.slow
def test_label_screen_drops_no_program_that_learns():
    # Screened-out programs predict without the labels: on these tasks none gets near the acceptance bar.
    setting = "linear_learn_only"
    cfg = E.SPECS[setting].cfg
    space = E.make_space(setting)
    programs = jax.vmap(space.sample)(jax.random.split(jax.random.key(3), 400))
    keep = np.asarray(jax.jit(jax.vmap(lambda p: E.label_reaches_prediction(p, cfg)))(programs))
    assert 0 < keep.sum() < len(keep)
    fit = np.asarray(zero.combine_fitness(zero.evaluate(programs, E.make_tasks(setting, jax.random.key(4)), cfg,
                                                        key=jax.random.key(0), backend="native", validate=False)))
    assert np.nanmax(fit[~keep]) < 0.5


def test_interval_and_ratio_arithmetic():
    lo, hi = E.clopper_pearson(0, 10)
    assert lo == 0 and math.isclose(hi, 1 - 0.025 ** 0.1, rel_tol=1e-9)
    lo, hi = E.clopper_pearson(10, 10)
    assert math.isclose(lo, 0.025 ** 0.1, rel_tol=1e-9) and hi == 1
    lo, hi = E.poisson_interval(0)
    assert lo == 0 and math.isclose(hi, -math.log(0.025), rel_tol=1e-9)  # 3.689
    lo, hi = E.poisson_interval(10)
    assert math.isclose(lo, 4.7954, rel_tol=1e-4) and math.isclose(hi, 18.3904, rel_tol=1e-4)
    s = E.efficiency(evo_successes=4, experiments=100, budget=10_000, rs_hits=2, rs_programs=10_000_000)
    assert math.isclose(s["evo_rate"], 4e-6) and math.isclose(s["rs_rate"], 2e-7)
    assert math.isclose(s["ratio"], 20.0)
    lo, hi = s["ratio_interval"]
    assert lo < 20 < hi
    e_lo, e_hi = s["evo_interval"]
    r_lo, r_hi = s["rs_interval"]
    assert math.isclose(lo, e_lo / r_hi) and math.isclose(hi, e_hi / r_lo)
    none = E.efficiency(0, 10, 10_000, 0, 1000)
    assert math.isnan(none["ratio"]) and none["ratio_interval"][1] == float("inf")


@needs_native
def test_tiny_random_search_run_appends_rows_and_summarizes(tmp_path):
    out = str(tmp_path / "r.jsonl")
    setting = "linear_learn_only"
    E.run_random(setting, programs=128, chunk=64, chunks_per_taskset=2, out=out, log=lambda s: None)
    E.run_random(setting, programs=64, chunk=64, chunks_per_taskset=2, out=out, log=lambda s: None)  # resumes
    rows = [json.loads(line) for line in open(out)]
    assert [(r["method"], r["seed"], r["taskset"]) for r in rows] == [("random", 0, 10**6), ("random", 1, 10**6),
                                                                      ("random", 2, 10**6 + 1)]
    assert all(r["programs"] == 64 and 0 < r["ran"] < 64 and r["hits"] == 0 for r in rows)
    summary = E.summarize(rows, log=lambda s: None)
    assert summary[(setting, 10_000)]["experiments"] == 0 and summary[(setting, 10_000)]["rs_programs"] == 192
    assert summary[(setting, 10_000)]["rs_hits"] == 0
    for r in rows:  # one bar per reference learning rate; a smaller rate trains less, so its bar is lower
        bars = [r["targets"][repr(lr)] for lr in E.REFERENCE_LRS]
        assert bars[0] == r["target"] and all(a > b for a, b in zip(bars[1:], bars[2:]))
        assert list(r["bar_hits"]) == [repr(lr) for lr in E.REFERENCE_LRS]
    assert {k[3] for k in summary if len(k) == 4} == set(E.REFERENCE_LRS)


@needs_native
def test_looser_bars_count_more_programs_and_the_label_screen_is_checked(tmp_path):
    # At the loosest bar programs that learn slowly pass; without the screen every program runs and the rows
    # count the screened-out programs that would pass (none can: they predict without the labels).
    out = str(tmp_path / "r.jsonl")
    fn = E.make_random("linear_full", 256, False)
    tasks = E.make_tasks("linear_full", jax.random.key(5))
    targets = E.target_fitnesses("linear_full", tasks)
    hits, best, ran, blind = jax.device_get(fn(jax.random.key(6), E.prepare_tasks(tasks, E.SPECS["linear_full"].cfg),
                                               jnp.asarray(targets)))
    assert ran == 256 and np.all(np.diff(hits) >= 0) and np.all(blind == 0)
    E.run_random("linear_full", programs=64, chunk=64, chunks_per_taskset=1, out=out, log=lambda s: None,
                 label_screen=False)
    row = json.loads(open(out).readline())
    assert row["ran"] == 64 and set(row["blind_hits"]) == set(row["bar_hits"])


@needs_native
@pytest.mark.slow
def test_tiny_evolution_run_resumes_and_summarizes(tmp_path):
    out = str(tmp_path / "r.jsonl")
    setting = "linear_learn_only"
    for _ in range(2):  # the second call continues at the next seed
        E.run_evolution(setting, experiments=1, budget=100, batch_size=50, out=out, log=lambda s: None)
    rows = [json.loads(line) for line in open(out)]
    assert [(r["method"], r["seed"]) for r in rows] == [("evolution", 0), ("evolution", 1)]
    assert all(r["evaluations"] == 100 or r["success"] for r in rows)
    for r in rows:  # the default bar is the first; a looser bar is met no later than a stricter one
        hit = [r["bars"][repr(lr)] for lr in E.REFERENCE_LRS]
        assert hit[0] == (r["evaluations"] if r["success"] else -1)
        assert all(b < 0 or 0 < a <= b for a, b in zip(hit[1:], hit[:-1]))
    summary = E.summarize(rows, log=lambda s: None)[(setting, 100)]
    assert summary["experiments"] == 2 and summary["rs_programs"] == 0


def test_importance_sampling_templates_and_weights():
    cfg = E.SPECS["linear_learn_only"].cfg
    templates = E.learn_templates(cfg)
    assert templates.shape == (24, 4)  # the orderings of the four Learn ops
    w_t, w_o = E.importance_weights(cfg)
    # p(template) = 24/256; q(template) = 1/2 + 1/2 * 24/256; the weights make q * w = p on both parts.
    q_t = 0.5 + 0.5 * 24 / 256
    assert math.isclose(q_t * w_t, 24 / 256) and math.isclose((1 - q_t) * w_o, 1 - 24 / 256)
    affine = E.SPECS["affine_learn_only"].cfg
    assert len(E.learn_templates(affine)) == 1800  # length-6 sequences over 5 ops using all 5: 5! * C(6, 2)
    rows = [dict(programs=1000, hits_template=3, hits_other=0, weight_template=w_t, weight_other=w_o)]
    rate, (lo, hi), n, h_t, h_o = E.importance_rate(rows)
    assert math.isclose(rate, 3 * w_t / 1000) and lo < rate < hi and (n, h_t, h_o) == (1000, 3, 0)


def test_learn_order_enumeration_covers_every_address_once():
    programs = E.learn_order_programs("linear_learn_only")
    learn = np.asarray(programs.learn.instructions)
    assert learn.shape == (48 * 48 * 24 * 18, 4, 4)
    codes = learn[:, :, 1:].reshape(len(learn), -1).astype(np.int64) @ (4 ** np.arange(12, dtype=np.int64))
    assert len(np.unique(codes)) == len(learn)  # addresses are < 4, so the codes are distinct iff the rows are
    ref = np.asarray(E.reference_program("linear_learn_only").learn.instructions)
    assert np.all(learn == ref[None], axis=(1, 2)).sum() == 1
    zero.ProgramSpace(E.SPECS["linear_learn_only"].cfg).validate(jax.tree_util.tree_map(lambda x: x[::9973], programs))


@needs_native
def test_sgd_with_its_update_applied_at_the_next_example_is_acceptable():
    # Learn's registers persist between examples, so SGD's instructions rotated (the update computed for one
    # example is added to the weights at the start of the next) still learn: plain random search finds such
    # programs, which enumerating only the orders that apply the update last misses (docs/paper_map.md, Fig. 4).
    setting = "linear_learn_only"
    cfg = E.SPECS[setting].cfg
    rotated = ("def Setup():\n  s2 = 0.1\ndef Predict():\n  s1 = dot(v0, v1)\ndef Learn():\n  v1 = v1 + v2\n"
               "  s1 = s0 - s1\n  s3 = s1 * s2\n  v2 = s3 * v0\n")
    program = zero.parse_program(rotated, cfg)
    tasks = E.make_tasks(setting, jax.random.key(7))
    fit = zero.combine_fitness(zero.evaluate(program, tasks, cfg, key=jax.random.key(0), backend="native"))
    assert float(fit) >= E.target_fitness(setting, tasks)
    reference_ops = np.asarray(E.reference_program(setting).learn.instructions)[:, 0]
    assert not np.array_equal(np.asarray(program.learn.instructions)[:, 0], reference_ops)  # another op order
