"""Shape measures of districts made of blocks (Polsby-Popper, convex-hull ratio)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._crs import to_working, working_crs
from .errors import PlannerInputError


def dissolve(geoms: np.ndarray, district: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of ``geoms`` per district code; returns (sorted unique codes, geometries)."""
    order = np.argsort(district, kind="stable")
    cuts = np.flatnonzero(np.diff(district[order])) + 1
    used = district[order][np.concatenate([[0], cuts])] if len(order) else district[:0]
    return used, np.array([shapely.union_all(g) for g in np.split(geoms[order], cuts)])


def shape_measures(geoms: np.ndarray) -> pd.DataFrame:
    """Area, perimeter (units of the CRS), Polsby-Popper 4πA/P² and area / convex-hull area."""
    area, perimeter = shapely.area(geoms), shapely.length(geoms)
    hull = shapely.area(shapely.convex_hull(geoms))
    safe_p, safe_h = np.where(perimeter > 0, perimeter, 1.0), np.where(hull > 0, hull, 1.0)
    return pd.DataFrame(
        {
            "area_m2": area,
            "perimeter_m": perimeter,
            "polsby_popper": np.where(perimeter > 0, 4 * np.pi * area / safe_p**2, 0.0),
            "hull_ratio": np.where(hull > 0, area / safe_h, 0.0),
        }
    )


def compactness(
    blocks: gpd.GeoDataFrame, labels: Sequence[Hashable] | pd.Series, *, crs: Any = None
) -> pd.DataFrame:
    """Shape measures of the districts formed by giving block i the label ``labels[i]``.

    Measured on the dissolved geometry in a projected CRS, so any partitioner's output can be
    scored the same way.

    >>> import geopandas as gpd, shapely
    >>> b = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)],
    ...                      crs=3857)
    >>> round(float(compactness(b, ["a", "a"]).loc["a", "polsby_popper"]), 3)
    0.698
    """
    values = np.asarray(labels, dtype=object)
    if len(values) != len(blocks):
        raise PlannerInputError(f"{len(values)} labels for {len(blocks)} blocks")
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), sort=True)
    if (codes < 0).any():
        raise PlannerInputError(f"block {blocks.index[codes < 0][0]!r} has no label")
    geoms = np.asarray(to_working(blocks, working_crs(blocks, crs)).values)
    used, unions = dissolve(geoms, codes)
    out = shape_measures(unions)
    out.index = pd.Index(uniques[used], name="district")
    return out
