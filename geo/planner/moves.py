"""Moves ``(State, rng) -> State``: flip one boundary atom to a neighbouring district.

States are mutable for speed, so a move flips in place and returns the same state; a caller that
must reject a move rolls it back with ``State.rollback`` (see ``run_chain``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from .constraints import Constraint
from .state import State

Move = Callable[[State, np.random.Generator], State]


def random_flip(state: State, rng: np.random.Generator) -> State:
    """Flip one endpoint of a random cut edge into the other endpoint's district, keeping the
    source connected and non-empty; frozen districts are neither source nor destination.
    Leaves the state unchanged when no such flip exists."""
    edges = state.atoms.edges
    cut = sorted(state.cut_edges)
    for e in rng.permutation(len(cut)).tolist():
        p, q = edges[cut[e]]
        pair = (p, q) if rng.random() < 0.5 else (q, p)
        for node, other in (pair, pair[::-1]):
            src, dst = state.assign[node], state.assign[other]
            if src in state.frozen or dst in state.frozen:
                continue
            if state.atoms.parent[node] != state.atoms.parent[other]:
                continue
            if state.can_remove(node):
                state.flip(node, dst)
                return state
    return state


def run_chain(
    state: State,
    move: Move,
    constraints: Iterable[Constraint],
    *,
    steps: int,
    rng: int | np.random.Generator | None = None,
    on_step: Callable[[State], None] | None = None,
) -> State:
    """Apply ``move`` ``steps`` times, rolling back any step that breaks a constraint.

    >>> import numpy as np
    >>> from geo.planner.graph import Edges
    >>> from geo.planner.state import Atoms, State
    >>> from geo.planner.constraints import contiguous
    >>> cols = {c: np.ones(3) for c in ("households", "residents", "buildings", "area",
    ...                                 "perimeter", "x", "y")}
    >>> e = Edges(np.array([0, 1]), np.array([1, 2]), np.ones(2), np.zeros(2, bool))
    >>> s = run_chain(State(Atoms.build(cols, e), [0, 0, 1]), random_flip, [contiguous], steps=5)
    >>> contiguous(s)
    True
    """
    gen = np.random.default_rng(rng)
    checks = list(constraints)
    for _ in range(steps):
        mark = state.checkpoint()
        move(state, gen)
        if not all(check(state) for check in checks):
            state.rollback(mark)
        if on_step is not None:
            on_step(state)
    return state
