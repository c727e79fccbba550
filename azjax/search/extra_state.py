"""User state that :func:`azjax.search.run` checkpoints and restores with the search state.

An :class:`ExtraState` is anything with ``get_state() -> pytree`` and ``set_state(pytree)``: an
evaluator's fitness cache, shared network weights, a leaderboard. :class:`CombinedState` bundles
several of them into the one ``extra_state`` that ``run`` takes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol

PyTree = Any

__all__ = ["CombinedState", "ExtraState"]


class ExtraState(Protocol):
    """User state saved with the search state, e.g. an evaluator's cache.

    ``get_state`` returns a pytree of arrays; ``set_state`` receives the restored pytree (its leaves
    may differ in shape from the fresh state's, so a growing cache can be stored as is). For exact
    resumption the state should only change when an evaluator call returns.
    """

    def get_state(self) -> PyTree:
        ...

    def set_state(self, state: PyTree) -> None:
        ...


@dataclasses.dataclass
class CombinedState:
    """Several ExtraStates saved as one dict, keyed by name (``None`` members are skipped)."""

    members: Mapping[str, ExtraState | None]

    def get_state(self) -> PyTree:
        """``{name: member.get_state()}`` over the members that are not ``None``."""
        return {k: v.get_state() for k, v in self.members.items() if v is not None}

    def set_state(self, state: PyTree) -> None:
        """Hands each member its entry of ``state``."""
        for k, v in self.members.items():
            if v is not None:
                v.set_state(state[k])
