"""Constraints: callables ``State -> bool`` (GerryChain style).

Each checks the whole state so it can serve as an oracle; the searches use the cheaper
per-flip test ``State.can_remove`` for contiguity and never propose a flip across parents.
"""

from __future__ import annotations

from collections.abc import Callable

from .state import State

Constraint = Callable[[State], bool]


def contiguous(state: State) -> bool:
    """Every non-empty district is connected in the adjacency graph (island links count)."""
    return all(len(state.district_components(d)) <= 1 for d in range(state.k))


def nested(state: State) -> bool:
    """No district holds atoms of two parents (communities)."""
    parent = state.atoms.parent
    return all(len({parent[p] for p in members}) <= 1 for members in state.members)


def within_band(low: float, high: float) -> Constraint:
    """Every non-empty, non-frozen district holds between ``low`` and ``high`` households."""

    def check(state: State) -> bool:
        return all(
            low <= state.households[d] <= high
            for d in range(state.k)
            if state.members[d] and d not in state.frozen
        )

    return check


def no_empty(state: State) -> bool:
    """No district lost all its atoms."""
    return all(state.members)
