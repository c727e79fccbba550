"""The tabular NAS benchmark (azjax.nas.tabular): lookups, ranks, metrics, and that the search
strategies separate from random search on a table with structure."""
import os

import jax
import numpy as np
import pytest

from azjax import nas, search
from azjax.nas import tabular

TABLE = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks",
                     "nas_tabular_digits.npz")


def test_index_canonical_and_cell_space_genome_agree_with_the_space():
    choices = tabular.choices(2, 2)
    genomes = tabular.all_genomes(choices)
    assert genomes.shape == (576, 8)
    np.testing.assert_array_equal(tabular.index_of(genomes, choices), np.arange(576))
    # Swapping a block's two (input, op) pairs gives the same canonical row.
    g = np.array([[1, 0, 1, 0, 2, 0, 1, 1]])
    swapped = np.array([[0, 1, 0, 1, 0, 2, 1, 1]])
    np.testing.assert_array_equal(tabular.canonical(g, 2), tabular.canonical(swapped, 2))
    assert len(np.unique(tabular.canonical(genomes, 2), axis=0)) == 210
    space = nas.CellSpace(ops=("sep_conv_3x3", "max_pool_3x3"), combiners=("add",),
                          num_blocks=2)
    for row in tabular.cell_space_genome(genomes[::37], 2):
        space.validate(row)


def test_rank_threshold_and_summary():
    table = tabular.Table(np.linspace(0.0, 1.0, 576).astype(np.float32)[::-1], 2,
                          ("sep_conv_3x3", "max_pool_3x3"))
    np.testing.assert_array_equal(table.rank(np.array([1.0, 0.0])), [1, 576])
    assert np.sum(table.reward >= table.threshold(0.01)) == 6
    traces = np.array([[0.1, 0.2, 0.999, 0.3], [0.1, 0.2, 0.3, 0.4]])
    m = tabular.summarize(table, traces)
    np.testing.assert_array_equal(m["first_top"], [3, 5])  # 5 = not found within 4
    np.testing.assert_array_equal(m["best_rank"], table.rank(np.array([0.999, 0.4])))
    with pytest.raises(ValueError, match="reward"):
        tabular.Table(np.zeros(10), 2, ("a", "b"))


def test_digits_table_loads_and_looks_up():
    table = tabular.Table.load(TABLE)
    genomes = tabular.all_genomes(table.num_choices)
    r = table.lookup(genomes)
    np.testing.assert_array_equal(r, table.reward)
    # Equal networks have equal rewards.
    np.testing.assert_array_equal(table.lookup(tabular.canonical(genomes, table.num_blocks)), r)
    assert 0.1 < np.median(r) < np.max(r) <= 1.0


def test_evolution_finds_the_top_percent_sooner_than_random_search():
    table = tabular.additive_table(jax.random.key(0))
    space = table.space
    strategies = {
        "evolution": search.RegularizedEvolution(space, population_size=10, tournament_size=5,
                                                 mutate_prob=1.0, batch_size=5),
        "random": search.RandomSearch(space, batch_size=5),
    }
    traces = tabular.compare(table, strategies, seeds=8, budget=150)
    first = {k: tabular.summarize(table, v)["first_top"] for k, v in traces.items()}
    # Random search's draws to the first top-1% genome are geometric whatever the structure:
    # median log(1/2) / log(1 - p).
    p = np.mean(table.reward >= table.threshold(0.01))
    random_median = np.log(0.5) / np.log1p(-p)
    assert 60 < random_median < 75
    assert np.median(first["evolution"]) < 0.6 * random_median, first
    assert np.median(first["evolution"]) < np.median(first["random"]), first
    assert np.all(first["evolution"] <= 150), first
