"""``analyse``: check existing children (grids or micro-grids) against the rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from ._crs import require_crs, require_same_crs, to_working, working_crs
from ._solve import fmt
from .blocks import buildings_to_blocks
from .errors import PlannerCRSError, PlannerInputError


@dataclass(frozen=True)
class Analysis:
    """``children``: one row per child (households, status, deviation, parts, problems);
    ``problems``: one row per problem (child — None for map-wide ones —, kind, detail)."""

    children: pd.DataFrame
    problems: pd.DataFrame


def analyse(
    children: gpd.GeoDataFrame,
    *,
    band: tuple[float, float],
    households_col: str = "households",
    parent: BaseGeometry | gpd.GeoSeries | None = None,
    buildings: gpd.GeoDataFrame | None = None,
    id_col: str | None = None,
    crs: Any = None,
    tolerance_m2: float = 1.0,
) -> Analysis:
    """Per child: households, band status ('under', 'in', 'over'), deviation from the band
    midpoint, number of parts; and the problems: over, under, not_contiguous (more than one
    polygon), crosses_parent and gap (with ``parent``), overlap between siblings, and
    building_without_child (with ``buildings``). Households come from ``households_col`` or,
    when the children lack it, from the buildings by representative point. Areas under
    ``tolerance_m2`` are ignored (digitising noise).

    >>> import geopandas as gpd, shapely
    >>> g = gpd.GeoDataFrame({"households": [250, 400]}, index=["a", "b"], crs=3857,
    ...                      geometry=[shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)])
    >>> analyse(g, band=(300, 500)).children["status"].tolist()
    ['under', 'in']
    """
    low, high = float(band[0]), float(band[1])
    require_crs(children, "children")
    work = working_crs(children, crs)
    geoms = np.asarray(to_working(children, work).values)
    households = _households(children, households_col, buildings, id_col)
    table = _table(children, households, geoms, low, high)
    problems = _band_problems(table, low, high)
    problems += _part_problems(table)
    problems += _overlaps(children.index, geoms, tolerance_m2)
    if parent is not None:
        problems += _parent_problems(children, geoms, parent, work, tolerance_m2)
    if buildings is not None:
        problems += _orphans(children, buildings, id_col)
    found = pd.DataFrame(
        {
            "child": pd.Series([p[0] for p in problems], dtype=object),
            "kind": pd.Series([p[1] for p in problems], dtype=object),
            "detail": pd.Series([p[2] for p in problems], dtype=object),
        }
    )
    kinds = found.dropna(subset=["child"]).groupby("child", sort=False)["kind"].agg(tuple)
    table["problems"] = [kinds.get(c, ()) for c in table.index]
    return Analysis(children=table, problems=found)


def _households(
    children: gpd.GeoDataFrame,
    households_col: str,
    buildings: gpd.GeoDataFrame | None,
    id_col: str | None,
) -> pd.Series:
    if households_col in children.columns:
        return children[households_col].astype(float)
    if buildings is None or households_col not in buildings.columns:
        raise PlannerInputError(
            f"children lack {households_col!r}; pass buildings with that column to count them"
        )
    owner = buildings_to_blocks(buildings, children, id_col=id_col)
    counts = pd.Series(buildings[households_col].to_numpy(float), index=owner.index)
    return counts.groupby(owner.to_numpy()).sum().reindex(children.index, fill_value=0.0)


def _table(
    children: gpd.GeoDataFrame, households: pd.Series, geoms: np.ndarray, low: float, high: float
) -> pd.DataFrame:
    h = households.to_numpy(float)
    parts = shapely.get_num_geometries(geoms)
    return pd.DataFrame(
        {
            "households": h,
            "status": np.where(h < low, "under", np.where(h > high, "over", "in")),
            "deviation": h - (low + high) / 2,
            "parts": np.where(shapely.is_empty(geoms), 0, parts),
        },
        index=children.index,
    )


def _band_problems(table: pd.DataFrame, low: float, high: float) -> list[tuple[Any, str, str]]:
    out = []
    for child, row in table.iterrows():
        if row["status"] == "over":
            gap = f"{fmt(row['households'] - high)} above the {fmt(high)} ceiling"
            out.append((child, "over", f"{fmt(row['households'])} households, {gap}"))
        elif row["status"] == "under":
            gap = f"{fmt(low - row['households'])} below the {fmt(low)} floor"
            out.append((child, "under", f"{fmt(row['households'])} households, {gap}"))
    return out


def _part_problems(table: pd.DataFrame) -> list[tuple[Any, str, str]]:
    return [
        (child, "not_contiguous", f"{n} separate parts")
        for child, n in table["parts"].items()
        if n > 1
    ]


def _overlaps(index: pd.Index, geoms: np.ndarray, tolerance: float) -> list[tuple[Any, str, str]]:
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    area = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    out = []
    for a, b, m2 in zip(left.tolist(), right.tolist(), area.tolist(), strict=True):
        if m2 > tolerance:
            out.append((index[a], "overlap", f"overlaps {index[b]} by {m2:.0f} m²"))
            out.append((index[b], "overlap", f"overlaps {index[a]} by {m2:.0f} m²"))
    return out


def _parent_problems(
    children: gpd.GeoDataFrame, geoms: np.ndarray, parent: Any, work: Any, tolerance: float
) -> list[tuple[Any, str, str]]:
    if isinstance(parent, gpd.GeoSeries | gpd.GeoDataFrame):
        if require_crs(parent, "parent") != require_crs(children, "children"):
            raise PlannerCRSError("parent and children are in different CRSs")
        outline = shapely.union_all(np.asarray(to_working(parent, work).values))
    else:
        outline = shapely.union_all(
            np.asarray(gpd.GeoSeries([parent], crs=children.crs).to_crs(work).values)
        )
    outside = shapely.area(shapely.difference(geoms, outline))
    out = [
        (child, "crosses_parent", f"{m2:.0f} m² outside the parent")
        for child, m2 in zip(children.index, outside.tolist(), strict=True)
        if m2 > tolerance
    ]
    gap = shapely.area(shapely.difference(outline, shapely.union_all(geoms)))
    if gap > tolerance:
        out.append((None, "gap", f"{gap:.0f} m² of the parent belong to no child"))
    return out


def _orphans(
    children: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame, id_col: str | None
) -> list[tuple[Any, str, str]]:
    require_same_crs(children, buildings, ("children", "buildings"))
    owner = buildings_to_blocks(buildings, children, id_col=id_col)
    return [
        (None, "building_without_child", f"building {b} lies in no child")
        for b in owner.index[owner.isna()]
    ]
