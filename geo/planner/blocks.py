"""Street blocks from road lines, and buildings assigned to blocks."""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from ._crs import require_crs, require_same_crs, to_working, working_crs
from .codes import reading_order
from .errors import PlannerCRSError, PlannerInputError
from .graph import rook_edges


def blocks_from_roads(
    buildings: gpd.GeoDataFrame,
    roads: gpd.GeoDataFrame,
    boundary: BaseGeometry | gpd.GeoSeries | gpd.GeoDataFrame,
    *,
    id_col: str | None = None,
    households_col: str = "households",
    residents_col: str = "residents",
    crs: Any = None,
    merge_empty: bool = False,
    min_area_m2: float = 0.0,
) -> gpd.GeoDataFrame:
    """Street blocks: the faces of roads + boundary lines inside the boundary, with tallies.

    Each building goes to the block holding its representative point; a point on a shared edge
    goes to the lower-numbered block. Blocks come back in the buildings' CRS, ids ``B1..Bn`` in reading
    order (north→south rows, west→east), with columns households, residents, n_buildings,
    building_ids (tuple), area_m2, perimeter_m. Blocks without households are kept unless
    ``merge_empty``; blocks under ``min_area_m2`` (slivers between carriageways) and, with
    ``merge_empty``, empty blocks go to the neighbour sharing the longest boundary. Buildings
    outside every block are listed in ``blocks.attrs["unassigned_buildings"]``. A bare shapely
    ``boundary`` is taken to be in the buildings' CRS; ``crs`` is the projected CRS for
    measuring (default: picked from the data).

    >>> import geopandas as gpd, shapely
    >>> b = gpd.GeoDataFrame({"households": [10, 20]}, crs=3857,
    ...                      geometry=[shapely.box(1, 1, 2, 2), shapely.box(6, 1, 7, 2)])
    >>> r = gpd.GeoDataFrame(geometry=[shapely.LineString([(5, -1), (5, 11)])], crs=3857)
    >>> blocks = blocks_from_roads(b, r, shapely.box(0, 0, 10, 10))
    >>> blocks[["households", "n_buildings"]].values.tolist()
    [[10, 1], [20, 1]]
    """
    out_crs = require_same_crs(buildings, roads, ("buildings", "roads"))
    _require_columns(buildings, [households_col], "buildings")
    work = working_crs(buildings, crs)
    area = _boundary_polygon(boundary, out_crs, work)
    ids = _building_ids(buildings, id_col)
    footprints = np.asarray(to_working(buildings, work).values)
    faces = _faces(np.asarray(to_working(roads, work).values), area)
    faces = _merge_small(
        faces,
        _owner(footprints, faces),
        buildings[households_col].to_numpy(float),
        merge_empty=merge_empty,
        min_area_m2=min_area_m2,
    )
    faces = faces[_reading_order(faces)]
    owner = _owner(footprints, faces)
    blocks = _tally(faces, owner, buildings, ids, households_col, residents_col, work)
    blocks.attrs["unassigned_buildings"] = ids[owner < 0].tolist()
    return blocks.to_crs(out_crs)


def buildings_to_blocks(
    buildings: gpd.GeoDataFrame, blocks: gpd.GeoDataFrame, *, id_col: str | None = None
) -> pd.Series:
    """Block id of each building (NaN when outside every block), by representative point
    (``point_on_surface``, always inside the footprint).

    A point on an edge shared by two blocks intersects both (and is ``within`` neither); it
    goes to the block that comes first in ``blocks``.

    >>> import geopandas as gpd, shapely
    >>> blocks = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)],
    ...                           index=["B1", "B2"], crs=3857)
    >>> houses = gpd.GeoDataFrame(geometry=[shapely.box(12, 2, 14, 4), shapely.box(30, 0, 31, 1)],
    ...                           crs=3857)
    >>> buildings_to_blocks(houses, blocks).tolist()
    ['B2', nan]
    """
    require_same_crs(buildings, blocks, ("buildings", "blocks"))
    owner = _owner(np.asarray(buildings.geometry.values), np.asarray(blocks.geometry.values))
    keys = np.asarray(blocks.index, dtype=object)
    values = [keys[o] if o >= 0 else np.nan for o in owner.tolist()]
    return pd.Series(values, index=pd.Index(_building_ids(buildings, id_col)), name="block")


def _require_columns(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PlannerInputError(f"{name} lack column(s) {missing}; have {list(frame.columns)}")


def _building_ids(buildings: gpd.GeoDataFrame, id_col: str | None) -> np.ndarray:
    if id_col is not None:
        _require_columns(buildings, [id_col], "buildings")
    ids = buildings.index.to_numpy() if id_col is None else buildings[id_col].to_numpy()
    missing = np.flatnonzero(pd.isna(ids))
    if len(missing):
        raise PlannerInputError(f"building at row {missing[0]} has no id ({id_col or 'index'})")
    dup = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(dup):
        raise PlannerInputError(
            f"building id {dup[0]!r} appears more than once ({id_col or 'index'})"
        )
    return ids


def _boundary_polygon(boundary: Any, out_crs: Any, work: Any) -> BaseGeometry:
    if isinstance(boundary, gpd.GeoDataFrame | gpd.GeoSeries):
        if require_crs(boundary, "boundary") != out_crs:
            raise PlannerCRSError(
                f"boundary is in {boundary.crs.to_string()} but buildings are in "
                f"{out_crs.to_string()}: reproject one of them first"
            )
        series = boundary.geometry if isinstance(boundary, gpd.GeoDataFrame) else boundary
    elif isinstance(boundary, BaseGeometry):
        series = gpd.GeoSeries([boundary], crs=out_crs)
    else:
        raise PlannerInputError(f"boundary must be a polygon or GeoSeries, got {type(boundary)}")
    polygon = shapely.union_all(np.asarray(series.to_crs(work).values))
    if polygon.is_empty or polygon.area <= 0:
        raise PlannerInputError("boundary has no area")
    return polygon


def _faces(roads: np.ndarray, area: BaseGeometry) -> np.ndarray:
    """Faces of the arrangement of road lines and the boundary, kept when inside the area."""
    lines = shapely.boundary(roads[shapely.get_dimensions(roads) == 2])
    lines = np.concatenate([roads[shapely.get_dimensions(roads) == 1], lines])
    lines = shapely.intersection(lines[shapely.intersects(lines, area)], shapely.buffer(area, 1.0))
    noded = shapely.union_all(np.concatenate([lines, [shapely.boundary(area)]]))
    faces = np.asarray(shapely.get_parts(shapely.polygonize(shapely.get_parts(noded))))
    inside = shapely.within(shapely.point_on_surface(faces), area)
    faces = faces[inside & (shapely.area(faces) > 0)]
    return shapely.make_valid(faces)


def _owner(buildings: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Position of the face holding each building's representative point, -1 when none;
    a point on a shared edge goes to the face that comes first."""
    owner = np.full(len(buildings), -1)
    if len(buildings) == 0 or len(faces) == 0:
        return owner
    points = shapely.point_on_surface(buildings)
    pt, face = shapely.STRtree(faces).query(points, predicate="intersects")
    order = np.lexsort((face, pt))
    first = np.unique(pt[order], return_index=True)[1]
    owner[pt[order][first]] = face[order][first]
    return owner


def _merge_small(
    faces: np.ndarray,
    owner: np.ndarray,
    households: np.ndarray,
    *,
    merge_empty: bool,
    min_area_m2: float,
) -> np.ndarray:
    """Merge slivers (and empty blocks when asked) into their longest-border neighbour."""
    hh = np.bincount(owner[owner >= 0], weights=households[owner >= 0], minlength=len(faces))
    small = (shapely.area(faces) < min_area_m2) | ((hh <= 0) & merge_empty)
    if not small.any():
        return faces
    root = _merge_roots(faces, small)
    keys, inverse = np.unique(root, return_inverse=True)
    return np.array([shapely.union_all(faces[inverse == i]) for i in range(len(keys))])


def _reading_order(faces: np.ndarray) -> np.ndarray:
    points = shapely.point_on_surface(faces)
    tolerance = float(np.median(np.sqrt(shapely.area(faces)))) / 2 if len(faces) else 0.0
    return reading_order(shapely.get_x(points), shapely.get_y(points), row_tolerance=tolerance)


def _merge_roots(faces: np.ndarray, small: np.ndarray) -> np.ndarray:
    edges = rook_edges(faces)
    root = np.arange(len(faces))
    shared: dict[int, dict[int, float]] = {}
    for a, b, w in zip(edges.u.tolist(), edges.v.tolist(), edges.length.tolist(), strict=True):
        shared.setdefault(a, {})[b] = w
        shared.setdefault(b, {})[a] = w
    anchored = ~small
    changed = True
    while changed:
        changed = False
        for face in np.flatnonzero(~anchored).tolist():
            options = {n: w for n, w in shared.get(face, {}).items() if anchored[n]}
            if options:
                target = max(sorted(options), key=lambda n: options[n])
                root[face], anchored[face], changed = root[target], True, True
    return _resolve(root)


def _resolve(root: np.ndarray) -> np.ndarray:
    while not np.array_equal(root, root[root]):
        root = root[root]
    return root


def _tally(
    faces: np.ndarray,
    owner: np.ndarray,
    buildings: gpd.GeoDataFrame,
    ids: np.ndarray,
    households_col: str,
    residents_col: str,
    work: Any,
) -> gpd.GeoDataFrame:
    n, inside = len(faces), owner >= 0
    residents = (
        buildings[residents_col].to_numpy(float)
        if residents_col in buildings.columns
        else np.zeros(len(buildings))
    )
    hh = buildings[households_col].to_numpy(float)
    members: list[list[Any]] = [[] for _ in range(n)]
    for o, i in zip(owner[inside].tolist(), ids[inside].tolist(), strict=True):
        members[o].append(i)
    frame = gpd.GeoDataFrame(
        {
            "households": np.bincount(owner[inside], weights=hh[inside], minlength=n),
            "residents": np.bincount(owner[inside], weights=residents[inside], minlength=n),
            "n_buildings": np.bincount(owner[inside], minlength=n),
            "building_ids": [tuple(m) for m in members],
            "area_m2": shapely.area(faces),
            "perimeter_m": shapely.length(faces),
        },
        geometry=faces,
        crs=work,
    )
    frame.index = pd.Index([f"B{i + 1}" for i in range(n)], name="block")
    if np.allclose(frame["households"], frame["households"].round()):
        frame["households"] = frame["households"].round().astype(int)
    return frame
