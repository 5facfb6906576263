"""The atom table: blocks (and pieces of split blocks) as arrays in the working CRS."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .errors import PlannerInputError
from .graph import Edges
from .split import split_block


@dataclass(frozen=True)
class Table:
    """One row per atom; ``block`` is the block an atom comes from (itself when unsplit)."""

    ids: np.ndarray  # object
    households: np.ndarray
    residents: np.ndarray
    buildings: np.ndarray
    parent: np.ndarray  # object
    current: np.ndarray  # object, None when unassigned
    block: np.ndarray  # object
    members: list[tuple[Hashable, ...] | None]  # building ids, None when unknown
    names: list[str]  # how reasons name the atom
    geoms: np.ndarray  # shapely, working CRS

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, keep: np.ndarray) -> Table:
        pos = np.flatnonzero(keep).tolist()
        arrays = {f: getattr(self, f)[keep] for f in _ARRAYS}
        return Table(
            **arrays,
            members=[self.members[i] for i in pos],
            names=[self.names[i] for i in pos],
            geoms=self.geoms[keep],
        )

    def append(self, other: Table) -> Table:
        arrays = {f: np.concatenate([getattr(self, f), getattr(other, f)]) for f in _ARRAYS}
        return Table(
            **arrays,
            members=self.members + other.members,
            names=self.names + other.names,
            geoms=np.concatenate([self.geoms, other.geoms]),
        )


_ARRAYS = ("ids", "households", "residents", "buildings", "parent", "current", "block")


@dataclass(frozen=True)
class BuildingData:
    """Buildings indexed by id: representative points (working CRS), households, residents."""

    points: pd.Series
    households: pd.Series
    residents: pd.Series


def split_oversized(
    table: Table,
    edges: Edges,
    data: BuildingData | None,
    *,
    high: float,
    locked: set[Hashable],
) -> tuple[Table, Edges, list[Hashable]]:
    """Replace every block over ``high`` (outside locked districts) by pieces of its buildings.

    Returns the new table, edges on its positions, and the ids of the blocks that were split.
    Edges of the pieces are measured afresh (pieces of two neighbouring split blocks touch);
    island links of split blocks are dropped and re-made per parent by the caller.
    """
    over = [
        i
        for i in np.flatnonzero(table.households > high).tolist()
        if table.current[i] not in locked and table.members[i] and data is not None
    ]
    pieces = [(i, _pieces_of(table, i, data, high)) for i in over]  # type: ignore[arg-type]
    pieces = [(i, p) for i, p in pieces if len(p) > 1]
    if not pieces:
        return table, edges, []
    grown = table
    for _, piece_table in pieces:
        grown = grown.append(piece_table)
    dropped = np.zeros(len(grown), bool)
    dropped[[i for i, _ in pieces]] = True
    kept = edges.take(~(dropped[edges.u] | dropped[edges.v]))
    fresh = _edges_touching(grown.geoms, np.arange(len(table), len(grown)), dropped)
    both = kept.concat(fresh)
    remap = np.cumsum(~dropped) - 1
    both = replace(both, u=remap[both.u], v=remap[both.v])
    return grown.take(~dropped), both, [table.ids[i] for i, _ in pieces]


def _edges_touching(geoms: np.ndarray, new: np.ndarray, dropped: np.ndarray) -> Edges:
    """Rook edges between the ``new`` positions and every position not ``dropped``."""
    left, right = shapely.STRtree(geoms).query(geoms[new], predicate="intersects")
    left = new[left]
    keep = ~dropped[right] & (left != right) & ((left < right) | ~np.isin(right, new))
    a, b = np.minimum(left[keep], right[keep]), np.maximum(left[keep], right[keep])
    length = shapely.length(
        shapely.intersection(shapely.boundary(geoms[a]), shapely.boundary(geoms[b]))
    )
    shared = length > 0
    return Edges(a[shared], b[shared], length[shared], np.zeros(int(shared.sum()), bool))


def _pieces_of(table: Table, i: int, data: BuildingData, high: float) -> Table:
    known = [b for b in table.members[i] or () if b in data.points.index]
    if len(known) < 2:
        return table.take(np.arange(len(table)) == i)
    hh = data.households.loc[known].to_numpy(float)
    groups = split_block(table.geoms[i], np.asarray(data.points.loc[known].values), hh, high=high)
    res = data.residents.loc[known].to_numpy(float)
    block = table.ids[i]
    ids: list[str] = []
    names: list[str] = []
    members: list[tuple[Hashable, ...] | None] = []
    for n, (group, _) in enumerate(groups, start=1):
        ids.append(f"{block}/{n}")
        bids = tuple(known[g] for g in group)
        members.append(bids)
        names.append(
            f"building {bids[0]} in block {block}"
            if len(bids) == 1
            else f"piece {block}/{n} of block {block}"
        )
    m = len(groups)
    return Table(
        ids=np.array(ids, dtype=object),
        households=np.array([hh[g].sum() for g, _ in groups]),
        residents=np.array([res[g].sum() for g, _ in groups]),
        buildings=np.array([float(len(g)) for g, _ in groups]),
        parent=np.array([table.parent[i]] * m, dtype=object),
        current=np.array([table.current[i]] * m, dtype=object),
        block=np.array([block] * m, dtype=object),
        members=members,
        names=names,
        geoms=np.array([geom for _, geom in groups], dtype=object),
    )


def building_data(
    buildings: gpd.GeoDataFrame | None,
    *,
    id_col: str | None,
    households_col: str,
    residents_col: str,
    work: Any,
) -> BuildingData | None:
    """Building points and counts in the working CRS, or None when no buildings are given."""
    if buildings is None:
        return None
    if households_col not in buildings.columns:
        raise PlannerInputError(f"buildings lack column {households_col!r}")
    ids = pd.Index(buildings.index if id_col is None else buildings[id_col], name="building")
    if ids.has_duplicates:
        raise PlannerInputError(f"building id {ids[ids.duplicated()][0]!r} appears twice")
    points = shapely.point_on_surface(np.asarray(buildings.geometry.to_crs(work).values))
    residents = (
        buildings[residents_col].to_numpy(float)
        if residents_col in buildings.columns
        else np.zeros(len(buildings))
    )
    return BuildingData(
        points=pd.Series(points, index=ids),
        households=pd.Series(buildings[households_col].to_numpy(float), index=ids),
        residents=pd.Series(residents, index=ids),
    )
