"""CRS checks and the choice of a projected CRS for measuring (metres)."""

from __future__ import annotations

from typing import Any

import geopandas as gpd
from pyproj import CRS

from .errors import PlannerCRSError

# CGCS2000 3-degree Gauss-Kruger zones: EPSG:4534 is CM 75E, then one code per 3 degrees to 135E.
_GK3_FIRST_EPSG = 4534
_GK3_FIRST_CM = 75
_GK3_LAST_CM = 135
_CHINA_BOUNDS = (73.0, 17.0, 136.0, 54.0)


def require_crs(frame: gpd.GeoDataFrame | gpd.GeoSeries, name: str) -> CRS:
    """Return the CRS of ``frame`` or refuse a layer that has none."""
    if frame.crs is None:
        raise PlannerCRSError(f"{name} has no CRS: set one (e.g. EPSG:4490) before planning")
    return CRS.from_user_input(frame.crs)


def require_same_crs(
    a: gpd.GeoDataFrame | gpd.GeoSeries, b: gpd.GeoDataFrame | gpd.GeoSeries, names: tuple[str, str]
) -> CRS:
    """Refuse two layers in different CRSs (mixing silently shifts features)."""
    crs_a, crs_b = require_crs(a, names[0]), require_crs(b, names[1])
    if crs_a != crs_b:
        raise PlannerCRSError(
            f"{names[0]} is in {crs_a.to_string()} but {names[1]} is in {crs_b.to_string()}: "
            "reproject one of them first"
        )
    return crs_a


def working_crs(frame: gpd.GeoDataFrame | gpd.GeoSeries, crs: Any = None) -> CRS:
    """Projected CRS for areas and lengths: ``crs`` if given, the layer's own if projected,
    else the CGCS2000 3-degree Gauss-Kruger zone inside China and UTM elsewhere."""
    if crs is not None:
        chosen = CRS.from_user_input(crs)
        if not chosen.is_projected:
            raise PlannerCRSError(f"crs={chosen.to_string()} is not projected: areas need metres")
        return chosen
    own = require_crs(frame, "layer")
    if own.is_projected:
        return own
    return _zone_for(frame.to_crs(4326).total_bounds, frame)


def _zone_for(bounds: Any, frame: gpd.GeoDataFrame | gpd.GeoSeries) -> CRS:
    lon = (bounds[0] + bounds[2]) / 2
    lat = (bounds[1] + bounds[3]) / 2
    west, south, east, north = _CHINA_BOUNDS
    if west <= lon <= east and south <= lat <= north:
        cm = min(max(round(lon / 3) * 3, _GK3_FIRST_CM), _GK3_LAST_CM)
        return CRS.from_epsg(_GK3_FIRST_EPSG + (cm - _GK3_FIRST_CM) // 3)
    return CRS.from_user_input(frame.estimate_utm_crs())


def to_working(frame: gpd.GeoDataFrame | gpd.GeoSeries, crs: CRS) -> gpd.GeoSeries:
    """Geometries of ``frame`` in the working CRS (no copy when already there)."""
    geoms = frame.geometry if isinstance(frame, gpd.GeoDataFrame) else frame
    return geoms if CRS.from_user_input(geoms.crs) == crs else geoms.to_crs(crs)
