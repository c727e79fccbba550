"""ProgramSpace: AutoML-Zero programs as a `azjax.search` SearchSpace.

    cfg = zero.algorithms.linear_regression_config()
    space = ProgramSpace(cfg, MutationConfig(), initial="RANDOM")
    strategy = search.RegularizedEvolution(space, population_size=1000, tournament_size=10)

`sample` draws an initial program of the configured kind, `mutate` applies exactly one
mutation, `validate` checks a program against the config. The space is a frozen
dataclass of hashable, immutable fields, so it can be the static part of jitted strategies.

There is no `genome_spec`: a program is not a fixed vector of categorical genes with fixed choice
counts (an address's range depends on its op's operand type, sizes vary and constants are unbounded
reals). `zero.ProgramGenomeSpace(space)` wraps a ProgramSpace with such a view (constants on a grid) for
the RL controller.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import jax

from azjax.zero.initial_programs import INITIAL_KINDS, check_sizes, initial_program
from azjax.zero.mutations import MutationConfig, mutate
from azjax.zero.program import Program, ZeroConfig, validate_program

__all__ = ["ProgramSpace"]


@dataclasses.dataclass(frozen=True)
class ProgramSpace:
    """AutoML-Zero programs of `cfg`, mutated as `mutation_config` says.

    Attributes:
      cfg: the program config (banks, op lists, component array lengths).
      mutation_config: the mutation types and size bounds (default: the reference demo's types,
        fixed sizes).
      initial: the initial population kind: NO_OP, RANDOM, LINEAR, NEURAL_NET or DAMAGED_NEURAL_NET.
      sizes_init: the reference's (setup, predict, learn) *_size_init; None = the array lengths.

    Raises:
      ValueError: naming the field, for a bad kind, sizes, mutation config, or a hand-written
        initial program that does not fit `cfg` (all checked here, before anything is traced).
    """

    cfg: ZeroConfig
    mutation_config: MutationConfig = MutationConfig()
    initial: str = "RANDOM"
    sizes_init: Optional[Tuple[int, int, int]] = None

    def __post_init__(self):
        if not isinstance(self.cfg, ZeroConfig):
            raise ValueError(
                f"ProgramSpace.cfg must be a ZeroConfig, got {type(self.cfg).__name__}"
            )
        if not isinstance(self.mutation_config, MutationConfig):
            raise ValueError(
                "ProgramSpace.mutation_config must be a MutationConfig, got "
                f"{type(self.mutation_config).__name__}"
            )
        if not isinstance(self.initial, str) or self.initial.upper() not in INITIAL_KINDS:
            raise ValueError(
                f"ProgramSpace.initial must be one of {', '.join(INITIAL_KINDS)}, "
                f"got {self.initial!r}"
            )
        object.__setattr__(self, "initial", self.initial.upper())
        object.__setattr__(
            self, "sizes_init", check_sizes(self.cfg, self.sizes_init, "ProgramSpace.sizes_init")
        )
        self.mutation_config.check(self.cfg)
        # Builds (and caches) hand-written programs now, so a config that cannot hold them fails
        # here.
        if self.initial not in ("NO_OP", "RANDOM"):
            initial_program(jax.random.key(0), self.cfg, self.initial, self.sizes_init)

    def sample(self, key: jax.Array) -> Program:
        """One initial program (jittable, vmappable)."""
        return initial_program(key, self.cfg, self.initial, self.sizes_init)

    def mutate(self, key: jax.Array, genome: Program) -> Program:
        """One mutation of `genome` (jittable, vmappable; canonical and valid)."""
        return mutate(key, genome, self.cfg, self.mutation_config)

    def validate(self, genome: Program) -> None:
        """Raises ValueError naming the field if `genome` is not a valid program of `cfg`."""
        if not isinstance(genome, Program):
            raise ValueError(f"genome: expected a Program, got {type(genome).__name__}")
        validate_program(genome, self.cfg)
