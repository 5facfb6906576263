"""Solving one parent (community): a full redraw or a minimal repair of current grids."""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

from .search import (
    EPS,
    bisect_nodes,
    choose_k,
    dissolve_district,
    group_components,
    improve_compactness,
    repair_band,
    repair_fragments,
    split_district,
    total_violation,
    violation,
    within_rings,
)
from .state import Atoms, State


def fmt(h: float) -> str:
    """Households as people write them: whole numbers without decimals."""
    return f"{h:.0f}" if abs(h - round(h)) < 1e-6 else f"{h:.1f}"


@dataclass
class Problem:
    """One parent's atoms and the rules to plan them."""

    atoms: Atoms
    names: list[str]
    current: list[Hashable | None]
    locked: set[Hashable]
    low: float
    high: float
    where: str  # "community C1" or "the area", for reasons
    rng: np.random.Generator
    max_steps: int
    max_rings: int = 3
    nouns: tuple[str, str] = ("blocks", "grid")


@dataclass
class Solution:
    """Districts of one parent: ``labels[d]`` is None for a new district."""

    assign: list[int]
    labels: list[Hashable | None]
    notes: dict[int, str] = field(default_factory=dict)
    locked: set[int] = field(default_factory=set)
    state: State | None = None


def _new(sol: Solution, label: Hashable | None = None) -> int:
    sol.labels.append(label)
    return len(sol.labels) - 1


def _ceiling_note(p: Problem, node: int) -> str:
    return (
        f"{p.names[node]} alone holds {fmt(p.atoms.households[node])} households, above the "
        f"{fmt(p.high)} ceiling: made its own {p.nouns[1]} and flagged"
    )


def _freeze_locked(p: Problem, sol: Solution) -> None:
    by_label: dict[Hashable, int] = {}
    for i, label in enumerate(p.current):
        if label is not None and label in p.locked:
            if label not in by_label:
                by_label[label] = _new(sol, label)
                sol.locked.add(by_label[label])
            sol.assign[i] = by_label[label]
    for d in sol.locked:
        sol.notes[d] = "locked: left unchanged"


def _isolate_oversized(p: Problem, sol: Solution, *, keep_label: bool) -> set[int]:
    """Atoms over the ceiling become frozen districts of their own."""
    frozen = set()
    sizes: dict[int, int] = {}
    for d in sol.assign:
        sizes[d] = sizes.get(d, 0) + 1
    for i, h in enumerate(p.atoms.households):
        if h <= p.high or sol.assign[i] in sol.locked:
            continue
        d = sol.assign[i]
        if not (keep_label and d >= 0 and sizes[d] == 1):
            d = _new(sol)
            sol.assign[i] = d
        frozen.add(d)
        sol.notes[d] = _ceiling_note(p, i)
    return frozen


def _count_note(p: Problem, total: float, k: int, subject: str) -> str | None:
    """Why ``subject`` (e.g. "community C1 has") cannot be cut into in-band districts."""
    lo, hi = p.low, p.high
    grid = p.nouns[1]
    if total < lo:
        return f"{subject} {fmt(total)} households, below the {fmt(lo)} floor: kept as one {grid}"
    fewest = math.ceil(total / hi - EPS) if hi > 0 else 1
    most = math.floor(total / lo + EPS) if lo > 0 else fewest
    if total > hi and fewest > most:
        return (
            f"{subject} {fmt(total)} households: no number of {grid}s fits {fmt(lo)}–{fmt(hi)} "
            f"({most} would be over the ceiling, {fewest} below the floor): made {k}"
        )
    return None


def _subject(p: Problem, n: int, *, cut_off: bool, unassigned: bool = False) -> str:
    atoms, grid = p.nouns
    if unassigned:
        return f"{n} unassigned {atoms} in {p.where} hold"
    if cut_off:
        return f"{n} {atoms} cut off from the rest of {p.where} by locked or oversized {grid}s hold"
    return f"{p.where} has"


def _partition(p: Problem, sol: Solution, nodes: list[int], *, subject: str) -> list[int]:
    """Bisect a connected group of unassigned atoms into new districts."""
    total = sum(p.atoms.households[i] for i in nodes)
    k = choose_k(total, p.low, p.high)
    made = []
    for group in bisect_nodes(p.atoms, nodes, k):
        d = _new(sol)
        made.append(d)
        for i in group:
            sol.assign[i] = d
    note = _count_note(p, total, k, subject)
    if note is not None:
        for d in made:
            sol.notes[d] = note
    return made


def solve_full(p: Problem) -> Solution:
    """Locked grids stay; every other atom is re-partitioned from scratch."""
    sol = Solution(assign=[-1] * p.atoms.n, labels=[])
    _freeze_locked(p, sol)
    frozen = set(sol.locked) | _isolate_oversized(p, sol, keep_label=False)
    rest = [i for i, d in enumerate(sol.assign) if d < 0]
    groups = group_components(p.atoms, rest)
    for nodes in groups:
        cut_off = len(nodes) < p.atoms.n
        _partition(p, sol, nodes, subject=_subject(p, len(nodes), cut_off=cut_off))
    state = State(p.atoms, sol.assign, n_districts=len(sol.labels), frozen=frozen)
    free = set(range(state.k)) - frozen
    repair_fragments(state, free)
    repair_band(state, free, p.low, p.high, max_steps=p.max_steps, rng=p.rng)
    improve_compactness(state, free, p.low, p.high, p.rng)
    return _finish(sol, state)


def solve_minimal(p: Problem) -> Solution:
    """Keep current grids; move only what out-of-band grids and their neighbours need."""
    sol = Solution(assign=[-1] * p.atoms.n, labels=[])
    _freeze_locked(p, sol)
    _seed_current(p, sol)
    frozen = set(sol.locked) | _isolate_oversized(p, sol, keep_label=True)
    fresh = _place_unassigned(p, sol, frozen)
    state = State(p.atoms, sol.assign, n_districts=len(sol.labels), frozen=frozen)
    repair_fragments(state, fresh)
    improve_compactness(state, set(fresh), p.low, p.high, p.rng)
    _ring_repair(p, state)
    _split_over(p, state)
    _dissolve_under(p, state)
    _ring_repair(p, state)
    _note_infeasible(p, sol, state)
    return _finish(sol, state)


def _seed_current(p: Problem, sol: Solution) -> None:
    """Current labels as districts; only the largest connected part of each keeps its label."""
    by_label: dict[Hashable, int] = {}
    members: dict[int, list[int]] = {}
    for i, label in enumerate(p.current):
        if sol.assign[i] < 0 and label is not None:
            if label not in by_label:
                by_label[label] = _new(sol, label)
            sol.assign[i] = by_label[label]
            members.setdefault(by_label[label], []).append(i)
    for nodes in members.values():
        for part in group_components(p.atoms, nodes)[1:]:
            for i in part:
                sol.assign[i] = -1


def _place_unassigned(p: Problem, sol: Solution, frozen: set[int]) -> list[int]:
    """Unassigned groups: big enough ones become new grids, small ones join their lightest
    neighbouring grid. Returns the new districts."""
    fresh: list[int] = []
    groups = group_components(p.atoms, [i for i, d in enumerate(sol.assign) if d < 0])
    hh = _district_households(p, sol)
    for nodes in groups:
        total = sum(p.atoms.households[i] for i in nodes)
        around = sorted(
            {sol.assign[q] for i in nodes for q in p.atoms.nbrs[i]} - {-1} - frozen,
            key=lambda d: (hh.get(d, 0.0), d),
        )
        if total >= p.low or not around:
            subject = _subject(p, len(nodes), cut_off=False, unassigned=True)
            fresh += _partition(p, sol, nodes, subject=subject)
            continue
        for i in nodes:
            sol.assign[i] = around[0]
        hh[around[0]] = hh.get(around[0], 0.0) + total
    return fresh


def _district_households(p: Problem, sol: Solution) -> dict[int, float]:
    out: dict[int, float] = {}
    for i, d in enumerate(sol.assign):
        out[d] = out.get(d, 0.0) + p.atoms.households[i]
    return out


def _violators(p: Problem, state: State) -> list[int]:
    return [
        d
        for d in range(state.k)
        if state.members[d]
        and d not in state.frozen
        and violation(state.households[d], p.low, p.high) > EPS
    ]


def _ring_repair(p: Problem, state: State) -> None:
    """Repair with the fewest rings of neighbours; keep a ring's flips only if they help."""
    for rings in range(1, p.max_rings + 1):
        bad = _violators(p, state)
        if not bad:
            return
        allowed = within_rings(state, bad, rings) - state.frozen
        before = total_violation(state, allowed, p.low, p.high)
        mark = state.checkpoint()
        repair_band(state, allowed, p.low, p.high, max_steps=p.max_steps, rng=p.rng)
        if total_violation(state, allowed, p.low, p.high) >= before - EPS:
            state.rollback(mark)


def _split_over(p: Problem, state: State) -> None:
    for d in _violators(p, state):
        h = state.households[d]
        k = choose_k(h, p.low, p.high)
        if h <= p.high or k < 2:
            continue
        parts = split_district(state, d, k)
        allowed = (set(parts) | within_rings(state, parts, 1)) - state.frozen
        repair_band(state, allowed, p.low, p.high, max_steps=p.max_steps, rng=p.rng)
        improve_compactness(state, set(parts), p.low, p.high, p.rng)


def _dissolve_under(p: Problem, state: State) -> None:
    for d in _violators(p, state):
        if state.households[d] < p.low:
            dissolve_district(state, d, state.neighbour_districts(d) - state.frozen, p.high)


def _note_infeasible(p: Problem, sol: Solution, state: State) -> None:
    """Explain violations that no plan could avoid: too few or an unfittable number of
    households in a connected group of grids that may change."""
    free = [i for i, d in enumerate(state.assign) if d not in state.frozen]
    for nodes in group_components(p.atoms, free):
        total = sum(p.atoms.households[i] for i in nodes)
        districts = {state.assign[i] for i in nodes}
        subject = _subject(p, len(nodes), cut_off=len(nodes) < p.atoms.n)
        note = _count_note(p, total, len(districts), subject)
        for d in districts:
            if note is not None and d not in sol.notes:
                sol.notes[d] = note


def _finish(sol: Solution, state: State) -> Solution:
    sol.assign = list(state.assign)
    sol.labels += [None] * (state.k - len(sol.labels))
    sol.state = state
    return sol
