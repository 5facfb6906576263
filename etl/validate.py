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
    """Empty, wrong type, invalid (repaired when safe): returns the repaired series and problems.

    Vectorised: only the features that fail a check are visited one by one.
    """
    problems: list[Problem] = []
    values = np.asarray(geoms.values, dtype=object)
    # force_2d rebuilds every geometry, so only when needed; repairs below write into the copy
    values = shapely.force_2d(values) if shapely.has_z(values).any() else values.copy()
    allowed = EXPECTED_TYPES[expected]
    missing = pd.isna(values) | shapely.is_empty(values)
    type_names = np.array(
        [
            "Point",
            "LineString",
            "LinearRing",
            "Polygon",
            "MultiPoint",
            "MultiLineString",
            "MultiPolygon",
            "GeometryCollection",
        ]
    )
    type_ids = shapely.get_type_id(values)
    wrong = ~missing & ~np.isin(type_ids, [i for i, n in enumerate(type_names) if n in allowed])
    invalid = ~missing & ~wrong & ~shapely.is_valid(values)
    for i in np.flatnonzero(missing):
        problems.append((int(i), "geometry is empty or missing"))
    for i in np.flatnonzero(wrong):
        problems.append((int(i), f"expected a {expected}, got a {type_names[type_ids[i]]}"))
    for i in np.flatnonzero(invalid):
        repaired, why = _repair(values[i], expected)
        if repaired is None:
            problems.append((int(i), why))
        else:
            values[i] = repaired
    if expected == "point":  # a place is one point: a MultiPoint of one is that point
        multi = np.flatnonzero(~missing & ~wrong & (type_ids == 4))
        parts = shapely.get_num_geometries(values[multi])
        values[multi[parts == 1]] = shapely.get_geometry(values[multi[parts == 1]], 0)
        problems += [
            (int(i), f"a MultiPoint of {n} points; give one point per row")
            for i, n in zip(multi[parts != 1], parts[parts != 1], strict=True)
        ]
    return gpd.GeoSeries(values, index=geoms.index, crs=geoms.crs), problems


def _repair(geom: shapely.Geometry, expected: str) -> tuple[shapely.Geometry | None, str]:
    reason = shapely.is_valid_reason(geom)
    if expected != "polygon":
        return None, f"invalid geometry ({reason})"
    fixed = shapely.make_valid(geom)
    polys = [
        g for g in getattr(fixed, "geoms", [fixed]) if g.geom_type in ("Polygon", "MultiPolygon")
    ]
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
    values = np.asarray(geoms.values, dtype=object)
    ok = ~(pd.isna(values) | shapely.is_empty(values))
    positions = np.flatnonzero(ok)
    pts = values[ok]
    if len(pts) and not (shapely.get_type_id(pts) == 0).all():
        pts = shapely.point_on_surface(pts)
    x, y = shapely.get_x(pts), shapely.get_y(pts)
    swapped = detect_swapped_lonlat(x, y)
    bad = check_lonlat_range(x, y)
    problems: list[Problem] = []
    for k in np.flatnonzero(swapped | bad):
        if swapped[k]:
            why = f"coordinates ({x[k]:.5f}, {y[k]:.5f}) look like lat/lon swapped"
        else:
            why = f"coordinates ({x[k]}, {y[k]}) are out of lon/lat range"
        problems.append((int(positions[k]), why))
    return problems


def check_required(frame: pd.DataFrame, required: tuple[str, ...]) -> list[Problem]:
    problems: list[Problem] = []
    for field in required:
        column = frame[field]
        missing = column.isna()
        if column.dtype == object or pd.api.types.is_string_dtype(column):
            missing = missing | (column.astype(str).str.strip() == "")
        problems += [
            (int(i), f"required field {field!r} is empty") for i in np.flatnonzero(missing)
        ]
    return problems


def check_duplicates(codes: pd.Series, earlier: set[str] | None = None) -> list[Problem]:
    """Every repeat of a code after its first row. ``earlier``: codes of the rows before this
    frame (a file read in slices); this frame's codes are added to it."""
    dup = codes.duplicated(keep="first") & codes.notna()
    if earlier is not None:
        present = np.flatnonzero(codes.notna().to_numpy())
        values = codes.to_numpy(dtype=object)[present]
        if not earlier.isdisjoint(values):  # rare: only then row by row
            seen = np.fromiter((c in earlier for c in values), bool, count=len(values))
            again = np.zeros(len(codes), dtype=bool)
            again[present[seen]] = True
            dup = dup | again
        earlier.update(values)
    return [(int(i), f"duplicate code {codes.iloc[i]!r}") for i in np.flatnonzero(dup.to_numpy())]


def row_label(frame: pd.DataFrame, pos: int, *, tabular: bool, first_row: int = 0) -> str:
    """'row 5 (code=…)' for CSV/XLSX (line numbers incl. header), 'feature 4 (code=…)' otherwise.
    ``first_row``: the position in the file of the frame's first row (a file read in slices)."""
    number = first_row + pos
    base = f"row {number + 2}" if tabular else f"feature {number + 1}"
    code = frame["code"].iloc[pos] if "code" in frame else None
    present = code is not None and not pd.isna(code) and str(code).strip() != ""
    return f"{base} (code={code})" if present else base


def overlap_problems(
    units: gpd.GeoDataFrame, projected: gpd.GeoSeries, *, group_col: str, min_area_m2: float = 1.0
) -> list[tuple[int, int, float]]:
    """Pairs of siblings (same ``group_col``) overlapping by more than ``min_area_m2`` or one part
    in a million of the smaller one (floating-point noise along long shared boundaries)."""
    geoms = projected.values
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    groups = units[group_col].to_numpy()
    keep = (left < right) & (groups[left] == groups[right])
    areas = shapely.area(geoms)
    pairs = []
    for a, b in zip(left[keep], right[keep], strict=True):
        area = shapely.intersection(geoms[a], geoms[b]).area
        if area > max(min_area_m2, 1e-6 * min(areas[a], areas[b])):
            pairs.append((int(a), int(b), float(area)))
    return pairs
