"""Row and geometry checks shared by every loader. Pure functions over frames; each returns
a list of (row label, reason) problems so a load can refuse or skip precisely."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo.coords import check_lonlat_range, detect_swapped_lonlat

Problem = tuple[int, str]  # (position in the frame, reason)
EXPECTED_TYPES = {
    "polygon": ("Polygon", "MultiPolygon"),
    "point": ("Point", "MultiPoint"),
    "line": ("LineString", "MultiLineString"),
}
# make_valid is "safe" when it keeps the area within this fraction (a bow-tie's signed area is 0)
SAFE_REPAIR_AREA_CHANGE = 0.01


def check_geometry(geoms: gpd.GeoSeries, expected: str) -> tuple[gpd.GeoSeries, list[Problem]]:
    """Empty, wrong type, invalid (repaired when safe): returns the repaired series and problems."""
    problems: list[Problem] = []
    values = shapely.force_2d(np.asarray(geoms.values, dtype=object))
    allowed = EXPECTED_TYPES[expected]
    for i, geom in enumerate(values):
        if geom is None or shapely.is_empty(geom):
            problems.append((i, "geometry is empty or missing"))
        elif geom.geom_type not in allowed:
            problems.append((i, f"expected a {expected}, got a {geom.geom_type}"))
        elif not geom.is_valid:
            repaired, why = _repair(geom, expected)
            if repaired is None:
                problems.append((i, why))
            else:
                values[i] = repaired
    return gpd.GeoSeries(values, index=geoms.index, crs=geoms.crs), problems


def _repair(geom: shapely.Geometry, expected: str) -> tuple[shapely.Geometry | None, str]:
    reason = shapely.is_valid_reason(geom)
    if expected != "polygon":
        return None, f"invalid geometry ({reason})"
    fixed = shapely.make_valid(geom)
    polys = [g for g in getattr(fixed, "geoms", [fixed]) if g.geom_type in ("Polygon", "MultiPolygon")]
    fixed = shapely.union_all(polys) if polys else None
    before = abs(geom.area)
    if fixed is None or before == 0 or abs(fixed.area - before) > SAFE_REPAIR_AREA_CHANGE * before:
        return None, (
            f"invalid polygon ({reason}); repairing it would change its shape "
            "(e.g. a bow-tie), so fix it at the source"
        )
    return fixed, ""


def check_coordinates(geoms: gpd.GeoSeries, *, geographic: bool) -> list[Problem]:
    """Out-of-range and likely swapped lon/lat, judged on each feature's representative point."""
    if not geographic:
        return []
    ok = ~(geoms.isna() | geoms.is_empty)
    pts = shapely.point_on_surface(np.asarray(geoms[ok].values, dtype=object))
    x, y = shapely.get_x(pts), shapely.get_y(pts)
    positions = np.flatnonzero(ok.to_numpy())
    swapped = detect_swapped_lonlat(x, y)
    bad = check_lonlat_range(x, y)
    problems: list[Problem] = []
    for pos, s, b, xi, yi in zip(positions, swapped, bad, x, y, strict=True):
        if s:
            problems.append((int(pos), f"coordinates ({xi:.5f}, {yi:.5f}) look like lat/lon swapped"))
        elif b:
            problems.append((int(pos), f"coordinates ({xi}, {yi}) are out of lon/lat range"))
    return problems


def check_required(frame: pd.DataFrame, required: tuple[str, ...]) -> list[Problem]:
    problems: list[Problem] = []
    for field in required:
        missing = frame[field].isna() | (frame[field].astype(str).str.strip() == "")
        problems += [(int(i), f"required field {field!r} is empty") for i in np.flatnonzero(missing)]
    return problems


def check_duplicates(codes: pd.Series) -> list[Problem]:
    dup = codes.duplicated(keep="first") & codes.notna()
    return [(int(i), f"duplicate code {codes.iloc[i]!r}") for i in np.flatnonzero(dup.to_numpy())]


def row_labels(frame: pd.DataFrame, *, tabular: bool, code_col: str | None) -> list[str]:
    """'row 5 (code=…)' for CSV/XLSX (line numbers incl. header), 'feature 4 (code=…)' otherwise."""
    labels = []
    codes = frame[code_col].astype(str).tolist() if code_col and code_col in frame else None
    for i in range(len(frame)):
        base = f"row {i + 2}" if tabular else f"feature {i + 1}"
        labels.append(f"{base} (code={codes[i]})" if codes and codes[i] not in ("", "nan") else base)
    return labels


def overlap_problems(
    units: gpd.GeoDataFrame, projected: gpd.GeoSeries, *, group_col: str, min_area_m2: float = 1.0
) -> list[tuple[int, int, float]]:
    """Pairs of siblings (same ``group_col``) that overlap by more than ``min_area_m2``."""
    tree = shapely.STRtree(projected.values)
    left, right = tree.query(projected.values, predicate="intersects")
    keep = (left < right) & (units[group_col].to_numpy()[left] == units[group_col].to_numpy()[right])
    pairs = []
    for a, b in zip(left[keep], right[keep], strict=True):
        area = shapely.intersection(projected.values[a], projected.values[b]).area
        if area > min_area_m2:
            pairs.append((int(a), int(b), float(area)))
    return pairs
