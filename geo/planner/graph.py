"""Rook adjacency between blocks (shared boundary length > 0), with island links.

The planner works on index arrays: ``Edges`` holds pairs of positions, the shared length in
metres and whether the pair is an *island link* (no shared boundary; added only so the graph
is connected). ``adjacency`` wraps the same arrays in a networkx Graph for callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ._crs import to_working, working_crs


@dataclass(frozen=True)
class Edges:
    """Undirected edges between positions ``u < v``; ``length`` is the shared boundary in m."""

    u: np.ndarray
    v: np.ndarray
    length: np.ndarray
    island: np.ndarray

    @classmethod
    def empty(cls) -> Edges:
        return cls(np.zeros(0, int), np.zeros(0, int), np.zeros(0), np.zeros(0, bool))

    def concat(self, other: Edges) -> Edges:
        return Edges(
            np.concatenate([self.u, other.u]),
            np.concatenate([self.v, other.v]),
            np.concatenate([self.length, other.length]),
            np.concatenate([self.island, other.island]),
        )

    def take(self, mask: np.ndarray) -> Edges:
        return Edges(self.u[mask], self.v[mask], self.length[mask], self.island[mask])


def adjacency(blocks: gpd.GeoDataFrame, *, crs: Any = None, tolerance: float = 0.0) -> nx.Graph:
    """Rook adjacency of ``blocks`` as a networkx Graph keyed by the blocks' index.

    Two blocks are neighbours when their boundaries share a length > 0 (measured in a projected
    CRS, see ``crs``; ``tolerance`` in metres also joins blocks separated by slivers narrower
    than it). Parts of the map that touch nothing are joined to their nearest block by an edge
    with ``island=True`` and ``length=0`` so the graph is connected.

    >>> import geopandas as gpd, shapely
    >>> b = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1),
    ...                                shapely.box(5, 5, 6, 6)], crs=3857)
    >>> g = adjacency(b)
    >>> sorted(g.edges(data="island"))
    [(0, 1, False), (1, 2, True)]
    """
    work = working_crs(blocks, crs)
    geoms = np.asarray(to_working(blocks, work).values)
    edges = link_islands(geoms, rook_edges(geoms, tolerance=tolerance))
    return _to_networkx(blocks.index, edges, work)


def rook_edges(geoms: np.ndarray, *, tolerance: float = 0.0) -> Edges:
    """Pairs of polygons whose boundaries share a positive length (projected geometries)."""
    if len(geoms) < 2:
        return Edges.empty()
    tree = shapely.STRtree(geoms)
    if tolerance > 0:
        left, right = tree.query(geoms, predicate="dwithin", distance=tolerance)
    else:
        left, right = tree.query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    rings = shapely.boundary(geoms)
    other = rings[right] if tolerance <= 0 else shapely.buffer(rings[right], tolerance)
    length = shapely.length(shapely.intersection(rings[left], other))
    shared = length > 0
    return Edges(left[shared], right[shared], length[shared], np.zeros(int(shared.sum()), bool))


def link_islands(geoms: np.ndarray, edges: Edges) -> Edges:
    """Add one island link from every component but the largest to its nearest polygon in it."""
    labels = components_of(len(geoms), edges)
    if len(geoms) == 0 or labels.max() == 0:
        return edges
    main = int(np.bincount(labels).argmax())
    main_pos = np.flatnonzero(labels == main)
    other_pos = np.flatnonzero(labels != main)
    tree = shapely.STRtree(geoms[main_pos])
    (src, dst), dist = tree.query_nearest(geoms[other_pos], return_distance=True, all_matches=False)
    order = np.lexsort((other_pos[src], dist, labels[other_pos[src]]))
    first = np.unique(labels[other_pos[src]][order], return_index=True)[1]
    a, b = other_pos[src][order][first], main_pos[dst][order][first]
    links = Edges(np.minimum(a, b), np.maximum(a, b), np.zeros(len(a)), np.ones(len(a), bool))
    return edges.concat(links)


def components_of(n: int, edges: Edges) -> np.ndarray:
    """Connected-component label of each of ``n`` positions."""
    if n == 0:
        return np.zeros(0, int)
    matrix = coo_matrix((np.ones(len(edges.u)), (edges.u, edges.v)), shape=(n, n))
    return connected_components(matrix, directed=False)[1]


def edges_from_networkx(graph: nx.Graph, index: Any) -> Edges:
    """Edges of ``graph`` as positions in ``index`` (the blocks' index)."""
    pos = {key: i for i, key in enumerate(index)}
    rows = [
        (pos[a], pos[b], float(d.get("length", 0.0)), bool(d.get("island", False)))
        for a, b, d in graph.edges(data=True)
        if a in pos and b in pos and a != b
    ]
    if not rows:
        return Edges.empty()
    a, b, length, island = (np.array(col) for col in zip(*rows, strict=True))
    return Edges(np.minimum(a, b), np.maximum(a, b), length.astype(float), island.astype(bool))


def _to_networkx(index: Any, edges: Edges, crs: Any) -> nx.Graph:
    graph = nx.Graph(crs=crs.to_string())
    graph.add_nodes_from(index)
    keys = np.asarray(index, dtype=object)
    graph.add_edges_from(
        (keys[a], keys[b], {"length": float(w), "island": bool(i)})
        for a, b, w, i in zip(edges.u, edges.v, edges.length, edges.island, strict=True)
    )
    return graph
