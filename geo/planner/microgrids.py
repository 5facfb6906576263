"""Micro-grids: the same planner one level down, with buildings as atoms.

Inside each grid, every building site (representative point; buildings sharing a point form one
site) gets its Voronoi cell clipped to the grid. The cells tile the grid, so rook adjacency of
cells is the Delaunay graph of the sites cut at the grid's edge, and the micro-grids' geometry
tiles the grid without gaps or overlaps.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._crs import require_same_crs, to_working, working_crs
from .blocks import buildings_to_blocks
from .errors import PlannerInputError
from .redraw import Plan, Violation, plan_districts


def nest_microgrids(
    plan: Plan,
    buildings: gpd.GeoDataFrame,
    *,
    band: tuple[float, float] = (30, 100),
    seed: int | np.random.Generator | None = 0,
    id_col: str | None = None,
    households_col: str = "households",
    residents_col: str = "residents",
    crs: Any = None,
    max_steps: int | None = None,
) -> Plan:
    """Micro-grids of ``band`` households inside each grid of ``plan``.

    Buildings go to the grid of ``plan.building_assignment`` (else the grid holding their
    representative point). Returns a ``Plan`` whose ``assignment`` maps building id →
    micro-grid label ``"<grid>/<n>"`` (n in reading order inside the grid) and whose
    ``districts`` carry a ``parent`` column with the grid label. A building alone over the
    ceiling becomes its own micro-grid, flagged.

    >>> import geopandas as gpd, shapely
    >>> from geo.planner import redraw
    >>> cells = [shapely.box(x, 0, x + 1, 1) for x in range(4)]
    >>> blocks = gpd.GeoDataFrame({"households": [40] * 4, "building_ids": [(i,) for i in
    ...                            range(4)]}, geometry=cells, crs=3857)
    >>> houses = gpd.GeoDataFrame({"households": [40] * 4},
    ...                           geometry=[c.centroid.buffer(0.1) for c in cells], crs=3857)
    >>> grids = redraw(blocks, band=(100, 200))
    >>> sorted(nest_microgrids(grids, houses, band=(30, 100)).districts["households"])
    [80, 80]
    """
    require_same_crs(plan.districts, buildings, ("plan districts", "buildings"))
    work = working_crs(buildings, crs)
    sites = _sites(plan, buildings, id_col, households_col, residents_col, work)
    tiles = _tiles(sites, plan, work)
    micro = plan_districts(
        tiles,
        households_col="households",
        band=band,
        current=None,
        locked=(),
        full=True,
        parent_col="grid",
        seed=seed,
        max_steps=max_steps,
        buildings=None,
        id_col=None,
        residents_col="residents",
        graph=None,
        crs=work,
        max_rings=0,
        names=tiles["name"].tolist(),
        nouns=("buildings", "micro-grid"),
    )
    return _relabel(micro, tiles)


def _sites(
    plan: Plan,
    buildings: gpd.GeoDataFrame,
    id_col: str | None,
    households_col: str,
    residents_col: str,
    work: Any,
) -> pd.DataFrame:
    """One row per building site: grid, point (working CRS), tallies and building ids."""
    if households_col not in buildings.columns:
        raise PlannerInputError(f"buildings lack column {households_col!r}")
    ids = pd.Index(buildings.index if id_col is None else buildings[id_col], name="building")
    grid = _grid_of(plan, buildings, id_col, ids)
    points = shapely.point_on_surface(np.asarray(to_working(buildings, work).values))
    xy = np.round(shapely.get_coordinates(points), 3)
    frame = pd.DataFrame(
        {
            "building": ids,
            "grid": grid.to_numpy(),
            "x": xy[:, 0],
            "y": xy[:, 1],
            "households": buildings[households_col].to_numpy(float),
            "residents": (
                buildings[residents_col].to_numpy(float)
                if residents_col in buildings.columns
                else 0.0
            ),
        }
    ).dropna(subset=["grid"])
    return (
        frame.groupby(["grid", "x", "y"], sort=True)
        .agg(
            households=("households", "sum"),
            residents=("residents", "sum"),
            n_buildings=("building", "size"),
            building_ids=("building", tuple),
        )
        .reset_index()
    )


def _grid_of(
    plan: Plan, buildings: gpd.GeoDataFrame, id_col: str | None, ids: pd.Index
) -> pd.Series:
    if plan.building_assignment is not None:
        return plan.building_assignment.reindex(ids)
    return buildings_to_blocks(buildings, plan.districts, id_col=id_col).reindex(ids)


def _tiles(sites: pd.DataFrame, plan: Plan, work: Any) -> gpd.GeoDataFrame:
    grids = to_working(plan.districts, work)
    cells = []
    for grid, group in sites.groupby("grid", sort=True):
        area = grids.loc[grid]
        if len(group) == 1:
            cells.append(area)
            continue
        sites_mp = shapely.multipoints(group[["x", "y"]].to_numpy())
        voronoi = shapely.voronoi_polygons(sites_mp, extend_to=area, ordered=True)
        cells += shapely.intersection(np.asarray(list(voronoi.geoms)), area).tolist()
    tiles = gpd.GeoDataFrame(sites, geometry=cells, crs=work)
    tiles.index = pd.Index([f"{g}|{i}" for i, g in enumerate(tiles["grid"])], name="site")
    tiles["name"] = [
        f"building {b[0]}" if len(b) == 1 else "buildings " + ", ".join(map(str, b))
        for b in tiles["building_ids"]
    ]
    return tiles


def _relabel(micro: Plan, tiles: gpd.GeoDataFrame) -> Plan:
    """``new-N`` labels (numbered by grid, then reading order) become ``<grid>/<n>``."""
    districts = micro.districts.copy()
    order = np.argsort([int(str(lab).split("-")[-1]) for lab in districts.index], kind="stable")
    districts = districts.iloc[order]
    number = districts.groupby("parent", sort=False).cumcount() + 1
    names = {
        old: f"{grid}/{n}"
        for old, grid, n in zip(districts.index, districts["parent"], number, strict=True)
    }
    districts.index = pd.Index([names[i] for i in districts.index], name="micro_grid")
    assignment = micro.building_assignment
    if assignment is None:
        raise PlannerInputError("no buildings fell inside the plan's grids")
    return Plan(
        assignment=assignment.map(names).rename("micro_grid"),
        districts=districts,
        violations=[
            Violation(names[v.district], v.kind, v.households, v.reason) for v in micro.violations
        ],
        metrics={**micro.metrics, "n_buildings": int(tiles["n_buildings"].sum())},
        band=micro.band,
    )
