"""State: incremental tallies and constraints equal a naive recount after every move."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.planner.constraints import contiguous, nested, no_empty, within_band
from geo.planner.graph import link_islands, rook_edges
from geo.planner.moves import random_flip, run_chain
from geo.planner.search import bisect_nodes, improve_compactness, repair_band, repair_fragments
from geo.planner.state import Atoms, State, polsby_popper
from tests.test_planner_fixtures import random_lattice


def build(rows: int, cols: int, seed: int, k: int, parents: int = 1) -> tuple[State, np.ndarray]:
    """A connected lattice state split into k districts by bisection, per parent (west/east)."""
    blocks = random_lattice(rows, cols, seed, low=0)
    geoms = np.asarray(blocks.geometry.values)
    points = shapely.point_on_surface(geoms)
    parent = (blocks["col"].to_numpy() * parents) // cols
    columns = {
        "households": blocks["households"].to_numpy(float),
        "residents": blocks["households"].to_numpy(float) * 2.5,
        "buildings": (blocks["households"].to_numpy() // 10).astype(float),
        "area": shapely.area(geoms),
        "perimeter": shapely.length(geoms),
        "x": shapely.get_x(points),
        "y": shapely.get_y(points),
        "parent": parent,
    }
    atoms = Atoms.build(columns, link_islands(geoms, rook_edges(geoms)))
    assign = np.zeros(len(blocks), int)
    next_id = 0
    for p in range(parents):
        nodes = np.flatnonzero(parent == p).tolist()
        for group in bisect_nodes(atoms, nodes, k):
            assign[group] = next_id
            next_id += 1
    state = State(atoms, assign.tolist())
    repair_fragments(state, range(state.k))  # bisection runs can end diagonal to each other
    state.commit()
    return state, geoms


def naive_check(state: State, geoms: np.ndarray) -> None:
    """Every tally against a recount from the assignment; perimeters from dissolved geometry."""
    a = state.atoms
    assign = np.asarray(state.assign)
    for d in range(state.k):
        members = np.flatnonzero(assign == d)
        assert state.members[d] == set(members.tolist())
        for tally, column in (
            (state.households, a.households),
            (state.residents, a.residents),
            (state.buildings, a.buildings),
            (state.area, a.area),
        ):
            assert tally[d] == pytest.approx(sum(column[i] for i in members), abs=1e-6)
        union = shapely.union_all(geoms[members]) if len(members) else shapely.Polygon()
        assert state.perimeter[d] == pytest.approx(union.length, abs=1e-6)
        assert state.pp(d) == pytest.approx(polsby_popper(union.area, union.length), abs=1e-9)
    cut = {e for e, (p, q) in enumerate(a.edges) if assign[p] != assign[q]}
    assert state.cut_edges == cut


def naive_contiguous(state: State) -> bool:
    graph = nx.Graph(state.atoms.edges)
    graph.add_nodes_from(range(state.atoms.n))
    assign = np.asarray(state.assign)
    return all(
        nx.is_connected(graph.subgraph(np.flatnonzero(assign == d).tolist()))
        for d in range(state.k)
        if (assign == d).any()
    )


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(2, 6),
    cols=st.integers(2, 6),
    k=st.integers(2, 5),
    seed=st.integers(0, 10_000),
    parents=st.integers(1, 2),
)
def test_random_flips_keep_tallies_equal_to_recount(
    rows: int, cols: int, k: int, seed: int, parents: int
) -> None:
    state, geoms = build(rows, cols, seed, k, parents)
    rng = np.random.default_rng(seed)
    for _ in range(15):
        random_flip(state, rng)
        naive_check(state, geoms)
        assert contiguous(state) == naive_contiguous(state)
        assert contiguous(state)  # random_flip only makes flips that keep districts whole
        assert nested(state)  # and never across parents
        assert no_empty(state)


def test_long_seeded_chain_and_rollback() -> None:
    state, geoms = build(8, 9, seed=5, k=6)
    rng = np.random.default_rng(1)
    band = within_band(0, math.inf)
    for step in range(150):
        mark = state.checkpoint()
        random_flip(state, rng)
        if step % 10 == 0:
            before = (list(state.assign), list(state.households), list(state.perimeter))
            random_flip(state, rng)
            state.rollback(state.checkpoint() - 1)
            assert (state.assign, state.households) == (before[0], before[1])
            assert state.perimeter == pytest.approx(before[2])
        assert state.checkpoint() >= mark
        naive_check(state, geoms)
        assert band(state)
    state.rollback(0)
    fresh, _ = build(8, 9, seed=5, k=6)
    assert state.assign == fresh.assign
    naive_check(state, geoms)


def test_run_chain_rolls_back_rejected_moves() -> None:
    state, geoms = build(6, 6, seed=2, k=4)
    floor = min(state.households) - 1
    band = within_band(floor, max(state.households) + 1)
    seen = []
    run_chain(state, random_flip, [band, contiguous], steps=60, rng=7, on_step=seen.append)
    assert len(seen) == 60
    assert band(state) and naive_contiguous(state)
    naive_check(state, geoms)


def test_searches_keep_tallies_and_contiguity() -> None:
    state, geoms = build(10, 10, seed=9, k=7)
    allowed = set(range(state.k))
    repair_band(state, allowed, 300, 500, max_steps=500)
    naive_check(state, geoms)
    assert naive_contiguous(state)
    before = sum(state.pp(d) for d in range(state.k))
    improve_compactness(state, allowed, 300, 500, np.random.default_rng(0))
    naive_check(state, geoms)
    assert naive_contiguous(state)
    assert sum(state.pp(d) for d in range(state.k)) >= before - 1e-9


def test_can_remove_matches_bfs_oracle() -> None:
    state, _ = build(7, 7, seed=4, k=5)
    for node in range(state.atoms.n):
        d = state.assign[node]
        rest = [i for i in state.members[d] if i != node]
        graph = nx.Graph(state.atoms.edges).subgraph(rest)
        expected = bool(rest) and nx.is_connected(graph)
        assert state.can_remove(node) == expected, node
