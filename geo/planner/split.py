"""Cutting an over-full block into groups of its buildings.

Buildings are ordered along a Hilbert curve (neighbours on the curve are neighbours on the
ground), then the sequence is cut into the fewest runs that each stay under the ceiling, as
even as possible. A building alone over the ceiling is its own run. Each run becomes a piece:
the union of its buildings' Voronoi cells clipped to the block, so the pieces tile the block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from .graph import link_islands, rook_edges
from .search import EPS, repair_band, repair_fragments
from .state import Atoms, State

_HILBERT_BITS = 16


def hilbert_index(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Position of each point on a Hilbert curve over the points' bounding box.

    >>> hilbert_index(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0, 0.0])).argsort()
    array([0, 1, 2, 3])
    """
    side = 2**_HILBERT_BITS - 1
    xi = _scale(np.asarray(x, float), side)
    yi = _scale(np.asarray(y, float), side)
    d = np.zeros(len(xi), dtype=np.int64)
    s = 2 ** (_HILBERT_BITS - 1)
    while s > 0:
        rx = (xi & s) > 0
        ry = (yi & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        # Rotate the quadrant so the curve stays continuous (the classic xy2d step).
        flip = ~ry
        swap_x = np.where(flip & rx, side - xi, xi)
        swap_y = np.where(flip & rx, side - yi, yi)
        xi, yi = np.where(flip, swap_y, xi), np.where(flip, swap_x, yi)
        s //= 2
    return d


def _scale(v: np.ndarray, side: int) -> np.ndarray:
    span = np.ptp(v) if len(v) else 0.0
    if span <= 0:
        return np.zeros(len(v), dtype=np.int64)
    return np.round((v - v.min()) / span * side).astype(np.int64)


def group_runs(weights: np.ndarray, order: np.ndarray, high: float) -> list[list[int]]:
    """Fewest runs of ``order`` each ≤ ``high`` (items over ``high`` stand alone), cut where the
    running total is nearest to equal shares."""
    return next(r for r in run_candidates(weights, order, high) if _fits(r, weights, high))


def run_candidates(
    weights: np.ndarray, order: np.ndarray, high: float
) -> Iterator[list[list[int]]]:
    """Cuts of ``order`` into m = fewest possible, m + 1, … runs of near-equal totals; items
    over ``high`` always stand alone. The last candidate is one run per item."""
    solo = [[int(i)] for i in order if weights[i] > high]
    rest = np.array([i for i in order if weights[i] <= high], dtype=int)
    if len(rest) == 0:
        yield solo
        return
    csum = np.concatenate([[0.0], np.cumsum(weights[rest])])
    for m in range(max(1, math.ceil(csum[-1] / high)), len(rest) + 1):
        targets = csum[-1] * np.arange(1, m) / m
        cuts = np.unique(np.clip(_nearest(csum, targets), 1, len(rest) - 1))
        yield solo + [r.tolist() for r in np.split(rest, cuts)]
    yield solo + [[int(i)] for i in rest]


def _fits(runs: list[list[int]], weights: np.ndarray, high: float) -> bool:
    return all(len(r) == 1 or weights[r].sum() <= high for r in runs)


def _nearest(csum: np.ndarray, targets: np.ndarray) -> np.ndarray:
    right = np.searchsorted(csum, targets)
    left = np.maximum(right - 1, 0)
    right = np.minimum(right, len(csum) - 1)
    return np.where(targets - csum[left] <= csum[right] - targets, left, right)


def split_block(
    block: BaseGeometry, points: np.ndarray, weights: np.ndarray, *, high: float
) -> list[tuple[list[int], BaseGeometry]]:
    """Groups of building positions and their piece of ``block`` (projected coordinates).

    ``points`` are the buildings' representative points; buildings sharing a point stay
    together. Hilbert runs seed the groups; a run whose cells fall apart gives the stray cells
    to a neighbouring run (then runs are rebalanced), so every piece is one connected set of
    cells. Returns a single group when the block cannot be cut.
    """
    xy = shapely.get_coordinates(points)
    keys, site_of = np.unique(np.round(xy, 3), axis=0, return_inverse=True)
    site_of = site_of.ravel()
    site_w = np.bincount(site_of, weights=weights, minlength=len(keys))
    everyone = list(range(len(points)))
    if len(keys) < 2 or site_w.sum() <= high:
        return [(everyone, block)]
    voronoi = shapely.voronoi_polygons(shapely.multipoints(keys), extend_to=block, ordered=True)
    cells = _clean_cells(shapely.intersection(np.asarray(list(voronoi.geoms)), block), keys)
    groups = _connected_groups(cells, site_w, keys, high)
    members = [np.flatnonzero(np.isin(site_of, g)).tolist() for g in groups]
    return [(m, shapely.union_all(cells[g])) for m, g in zip(members, groups, strict=True)]


def _clean_cells(cells: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Keep the part of each clipped cell that holds its site; every stray part (a concave
    block can cut a cell in two) joins the cell it shares the longest boundary with."""
    out = list(cells)
    strays = []
    for i, (cell, site) in enumerate(zip(cells, shapely.points(keys), strict=True)):
        parts = shapely.get_parts(cell)
        if len(parts) > 1:
            home = next((j for j, part in enumerate(parts) if part.intersects(site)), 0)
            out[i] = parts[home]
            strays += [part for j, part in enumerate(parts) if j != home]
    for stray in strays:
        rings = shapely.boundary(np.asarray(out, dtype=object))
        shared = shapely.length(shapely.intersection(rings, stray.boundary))
        if shared.max() > 0:
            i = int(shared.argmax())
            out[i] = shapely.union(out[i], stray)
    return np.asarray(out, dtype=object)


def _connected_groups(
    cells: np.ndarray, weights: np.ndarray, keys: np.ndarray, high: float
) -> list[list[int]]:
    atoms = _cell_atoms(cells, weights, keys)
    order = np.argsort(hilbert_index(keys[:, 0], keys[:, 1]), kind="stable")
    state = None
    for runs in run_candidates(weights, order, high):
        assign = np.zeros(len(weights), int)
        for d, run in enumerate(runs):
            assign[run] = d
        solo = {d for d, run in enumerate(runs) if len(run) == 1 and weights[run[0]] > high}
        state = State(atoms, assign.tolist(), frozen=solo)
        free = set(range(state.k)) - solo
        repair_fragments(state, free)
        repair_band(state, free, 0.0, high, max_steps=10 * len(weights) + 100)
        if all(state.households[d] <= high + EPS for d in free):
            break
    assert state is not None
    return [sorted(m) for m in state.members if m]


def _cell_atoms(cells: np.ndarray, weights: np.ndarray, keys: np.ndarray) -> Atoms:
    columns = {
        "households": weights,
        "residents": np.zeros(len(weights)),
        "buildings": np.zeros(len(weights)),
        "area": shapely.area(cells),
        "perimeter": shapely.length(cells),
        "x": keys[:, 0],
        "y": keys[:, 1],
    }
    return Atoms.build(columns, link_islands(cells, rook_edges(cells)))
