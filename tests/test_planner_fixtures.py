"""Shared builders and naive oracles for the planner tests (plus checks of the oracles)."""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Hashable

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import shapely

from geo.planner import Plan, adjacency

PLANNER_MODULES = [
    f"geo.planner.{name}"
    for name in (
        "analyse",
        "blocks",
        "codes",
        "graph",
        "metrics",
        "microgrids",
        "moves",
        "redraw",
        "split",
    )
]
CELL = 100.0  # metres
ORIGIN = (500_000.0, 3_500_000.0)  # inside EPSG:4545's zone


def lattice(
    rows: int, cols: int, households: np.ndarray | list[int], *, crs: int = 4545
) -> gpd.GeoDataFrame:
    """rows x cols square blocks (row 0 in the south), ids B0..; households row-major."""
    i = np.arange(rows * cols)
    x = ORIGIN[0] + (i % cols) * CELL
    y = ORIGIN[1] + (i // cols) * CELL
    return gpd.GeoDataFrame(
        {"households": np.asarray(households, dtype=int), "row": i // cols, "col": i % cols},
        geometry=shapely.box(x, y, x + CELL, y + CELL),
        index=pd.Index([f"B{k}" for k in i], name="block"),
        crs=crs,
    )


def random_lattice(
    rows: int, cols: int, seed: int, low: int = 5, high: int = 80
) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    return lattice(rows, cols, rng.integers(low, high + 1, rows * cols))


def naive_rook_graph(blocks: gpd.GeoDataFrame) -> nx.Graph:
    """O(n²) rook adjacency: every pair whose boundaries share a positive length."""
    graph = nx.Graph()
    graph.add_nodes_from(blocks.index)
    items = list(blocks.geometry.items())
    for a, (ka, ga) in enumerate(items):
        for kb, gb in items[a + 1 :]:
            if ga.boundary.intersection(gb.boundary).length > 0:
                graph.add_edge(ka, kb)
    return graph


def district_members(assignment: pd.Series) -> dict[Hashable, set[Hashable]]:
    return {label: set(group.index) for label, group in assignment.groupby(assignment, sort=False)}


def assert_contiguous(plan: Plan, graph: nx.Graph) -> None:
    """Every district is connected in ``graph`` (the atoms' adjacency, island links included)."""
    for label, members in district_members(plan.assignment).items():
        assert nx.is_connected(graph.subgraph(members)), f"district {label} is not connected"


def assert_tallies(plan: Plan, blocks: gpd.GeoDataFrame) -> None:
    """District households equal a recount from the assignment (no split blocks)."""
    recount = blocks["households"].groupby(plan.assignment.reindex(blocks.index)).sum()
    got = plan.districts["households"].reindex(recount.index)
    np.testing.assert_allclose(got.to_numpy(float), recount.to_numpy(float))


def assert_band_or_flagged(plan: Plan) -> None:
    low, high = plan.band
    h = plan.districts["households"]
    out = set(h.index[(h < low) | (h > high)])
    flagged = {v.district for v in plan.violations if v.kind in ("under", "over")}
    assert out == flagged
    assert all(v.reason for v in plan.violations)


@pytest.mark.parametrize("module", PLANNER_MODULES)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_lattice_ids_and_geometry() -> None:
    blocks = lattice(2, 3, [1, 2, 3, 4, 5, 6])
    assert blocks.loc["B4", ["row", "col"]].tolist() == [1, 1]
    assert blocks.geometry.area.eq(CELL * CELL).all()


def test_adjacency_matches_naive_pairs() -> None:
    blocks = random_lattice(5, 6, seed=3)
    fast, slow = adjacency(blocks), naive_rook_graph(blocks)
    assert {frozenset(e) for e in fast.edges} == {frozenset(e) for e in slow.edges}
    assert all(d["length"] == CELL and not d["island"] for *_, d in fast.edges(data=True))
