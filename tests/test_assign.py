"""Tests for geo.assign: fast point-in-polygon assignment against a naive oracle and sjoin."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.assign import (
    AssignInputError,
    CRSMismatchError,
    PointAssigner,
    _assign,
    _auto_cell,
    assign_points,
    assign_polygons_by_representative_point,
)

# --- oracles -----------------------------------------------------------------------------------


def naive(points, polygons, tie_break="lowest_index") -> list[int]:
    """One shapely.intersects call per (point, polygon) pair; the documented tie-break."""
    out = []
    for p in points:
        hits = [i for i, poly in enumerate(polygons) if shapely.intersects(p, poly)]
        pick = min if tie_break == "lowest_index" else max
        out.append(pick(hits) if hits else -1)
    return out


def by_sjoin(points, polygons) -> np.ndarray:
    left = gpd.GeoDataFrame(geometry=list(points), crs=4490)
    right = gpd.GeoDataFrame(geometry=list(polygons), crs=4490)
    joined = gpd.sjoin(left, right, predicate="intersects", how="left")
    lowest = joined["index_right"].groupby(level=0).min()
    return lowest.reindex(left.index).fillna(-1).astype(int).to_numpy()


# --- tessellations -----------------------------------------------------------------------------


def grid_cells(xs: list[float], ys: list[float]) -> list[shapely.Polygon]:
    """Rectangles between consecutive cut lines, numbered row by row."""
    return [
        shapely.box(x0, y0, x1, y1)
        for y0, y1 in zip(ys, ys[1:], strict=False)
        for x0, x1 in zip(xs, xs[1:], strict=False)
    ]


def voronoi_cells(seeds: np.ndarray, box: shapely.Polygon) -> list[shapely.Geometry]:
    cells = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=box)
    return list(shapely.intersection(shapely.get_parts(cells), box))


cuts = st.lists(st.integers(1, 99), min_size=1, max_size=6, unique=True).map(
    lambda v: [0.0, *sorted(x / 10 for x in v), 10.0]
)


@st.composite
def grid_case(draw):
    """A random rectangular tessellation and points inside, on edges and on vertices."""
    xs, ys = draw(cuts), draw(cuts)
    coord = st.floats(-1, 11, allow_nan=False)
    free = st.tuples(coord, coord)
    on_vertical_edge = st.tuples(st.sampled_from(xs), coord)
    on_horizontal_edge = st.tuples(coord, st.sampled_from(ys))
    on_vertex = st.tuples(st.sampled_from(xs), st.sampled_from(ys))
    spot = st.one_of(free, on_vertical_edge, on_horizontal_edge, on_vertex)
    xy = draw(st.lists(spot, min_size=1, max_size=60))
    return grid_cells(xs, ys), list(shapely.points(xy))


@st.composite
def voronoi_case(draw):
    """Voronoi cells of random seeds in a box, with points anywhere and on the cells' vertices."""
    n = draw(st.integers(2, 12))
    seeds = np.array(draw(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)),
                                   min_size=n, max_size=n, unique=True))) / 100  # fmt: skip
    cells = voronoi_cells(seeds, shapely.box(0, 0, 10, 10))
    vertices = shapely.get_coordinates(cells)
    picks = draw(st.lists(st.integers(0, len(vertices) - 1), max_size=20))
    coord = st.floats(-1, 11, allow_nan=False)
    free = draw(st.lists(st.tuples(coord, coord), max_size=30))
    xy = [*vertices[picks].tolist(), *free] or [(5.0, 5.0)]
    return cells, list(shapely.points(xy))


@st.composite
def overlapping_case(draw):
    """Random boxes and discs that may overlap, nest, touch or be empty."""
    corner = st.tuples(st.integers(0, 8), st.integers(0, 8))
    size = st.tuples(st.integers(1, 4), st.integers(1, 4))
    shapes = []
    for (x, y), (w, h), disc in draw(st.lists(st.tuples(corner, size, st.booleans()), max_size=8)):
        shapes.append(shapely.Point(x, y).buffer(w, 4) if disc else shapely.box(x, y, x + w, y + h))
    shapes += draw(st.lists(st.just(None), max_size=1)) + [shapely.Polygon()]
    shapes = draw(st.permutations(shapes))
    coord = st.integers(-2, 24).map(lambda v: v / 2)
    xy = draw(st.lists(st.tuples(coord, coord), min_size=1, max_size=40))
    return list(shapes), [*shapely.points(xy), None, shapely.Point()]


# --- properties against the oracle ---------------------------------------------------------------

CELL_SIZES = [None, 0.05, 0.3, 1.0, 2.5, 40.0]  # None = direct query; others force the raster


@settings(max_examples=60, deadline=None)
@given(case=grid_case())
def test_grid_matches_naive_oracle_for_every_path(case):
    polygons, points = case
    expected = naive(points, polygons)
    assert assign_points(points, polygons).tolist() == expected
    assert by_sjoin(points, polygons).tolist() == expected
    for cell in CELL_SIZES:
        got = _assign(np.array(points), np.array(polygons), tie_break="lowest_index", cell=cell)
        assert got.tolist() == expected, cell


@settings(max_examples=40, deadline=None)
@given(case=voronoi_case())
def test_voronoi_matches_naive_oracle_for_every_path(case):
    polygons, points = case
    expected = naive(points, polygons)
    for cell in CELL_SIZES:
        got = _assign(np.array(points), np.array(polygons), tie_break="lowest_index", cell=cell)
        assert got.tolist() == expected, cell


@settings(max_examples=60, deadline=None)
@given(case=overlapping_case(), tie_break=st.sampled_from(["lowest_index", "highest_index"]))
def test_overlaps_follow_tie_break(case, tie_break):
    polygons, points = case
    expected = naive(points, polygons, tie_break)
    assert assign_points(points, polygons, tie_break=tie_break).tolist() == expected
    for cell in CELL_SIZES[1:]:
        got = _assign(
            np.array(points, dtype=object), np.array(polygons, dtype=object),
            tie_break=tie_break, cell=cell,
        )  # fmt: skip
        assert got.tolist() == expected, cell


def test_shared_edges_and_vertices_go_to_lowest_index():
    cells = grid_cells([0, 1, 2], [0, 1, 2])  # 0 1 / 2 3 (row by row from the bottom)
    pts = shapely.points([(1, 0.5), (0.5, 1), (1, 1), (1.5, 1), (1, 1.5), (2, 2), (0, 0)])
    assert assign_points(pts, cells).tolist() == [0, 0, 0, 1, 2, 3, 0]
    assert assign_points(pts, cells, tie_break="highest_index").tolist() == [1, 2, 3, 3, 3, 3, 0]


def test_raster_lines_on_polygon_edges():
    # Cell size 1 puts every raster line exactly on a polygon edge: the margin must cope.
    cells = np.array(grid_cells(list(range(11)), list(range(11))))
    rng = np.random.default_rng(7)
    xy = np.vstack([rng.integers(0, 21, (300, 2)) / 2, rng.uniform(0, 10, (300, 2))])
    pts = shapely.points(xy)
    expected = naive(pts, cells)
    for cell in (1.0, 0.5, 0.25, 1 / 3):
        assert _assign(pts, cells, tie_break="lowest_index", cell=cell).tolist() == expected


def test_holes_and_multipolygons():
    ring = shapely.box(0, 0, 10, 10).difference(shapely.box(3, 3, 7, 7))
    islands = shapely.MultiPolygon([shapely.box(3, 3, 5, 5), shapely.box(20, 20, 21, 21)])
    polygons = [ring, islands]
    pts = shapely.points([(1, 1), (4, 4), (6, 6), (3, 3), (20.5, 20.5), (15, 15), (7, 5)])
    expected = naive(pts, polygons)
    assert expected == [0, 1, -1, 0, 1, -1, 0]  # (4, 4) is in the hole, on the island
    for cell in CELL_SIZES:
        assert _assign(pts, np.array(polygons), tie_break="lowest_index", cell=cell).tolist() == (
            expected
        )


# --- the raster path at the size it is chosen automatically --------------------------------------


@pytest.fixture(scope="module")
def big_voronoi():
    rng = np.random.default_rng(20240611)
    box = shapely.box(107.9, 31.9, 108.1, 32.1)
    cells = voronoi_cells(rng.uniform([107.9, 31.9], [108.1, 32.1], (400, 2)), box)
    vertices = shapely.get_coordinates(cells)
    xy = np.vstack([rng.uniform([107.88, 31.88], [108.12, 32.12], (40_000, 2)), vertices])
    return np.array(cells), shapely.points(xy)


def test_batch_assigner_reuses_its_raster_and_matches_one_call(big_voronoi):
    polygons, points = big_voronoi
    assigner = PointAssigner(polygons, expected_points=len(points))
    assert assigner._index.raster is not None  # sized for all the points: the raster path
    batches = [assigner(points[lo : lo + 7_000]) for lo in range(0, len(points), 7_000)]
    np.testing.assert_array_equal(np.concatenate(batches), assign_points(points, polygons))
    assert (assigner(shapely.points([(500.0, 500.0)])) == -1).all()


def test_auto_raster_matches_sjoin_and_direct(big_voronoi):
    polygons, points = big_voronoi
    assert _auto_cell(len(points), polygons) is not None  # this size takes the raster path
    got = assign_points(points, polygons)
    direct = _assign(points, polygons, tie_break="lowest_index", cell=None)
    np.testing.assert_array_equal(got, direct)
    np.testing.assert_array_equal(got, by_sjoin(points, polygons))
    assert (got == -1).sum() > 0 and len(np.unique(got)) == len(polygons) + 1


def test_geoseries_inputs_keep_positions_not_labels(big_voronoi):
    polygons, points = big_voronoi
    pts = gpd.GeoSeries(points[:500], index=np.arange(500) * 7 + 3, crs=4490)
    polys = gpd.GeoSeries(polygons, index=np.arange(len(polygons))[::-1], crs=4490)
    np.testing.assert_array_equal(
        assign_points(pts, polys), naive(points[:500], polygons)
    )  # positions, not index labels, are returned


# --- buildings ------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(case=grid_case(), data=st.data())
def test_footprints_go_where_their_surface_point_is(case, data):
    polygons, _ = case
    corners = st.tuples(st.integers(-5, 104), st.integers(-5, 104)).map(
        lambda c: (c[0] / 10, c[1] / 10)
    )
    feet = [
        shapely.box(x, y, x + 0.3, y + 0.2) for x, y in data.draw(st.lists(corners, max_size=20))
    ]
    got = assign_polygons_by_representative_point(feet, polygons).tolist()
    assert got == naive(shapely.point_on_surface(feet), polygons)
    for foot, unit in zip(feet, got, strict=True):
        assert unit == -1 or shapely.intersects(foot, polygons[unit])


def test_concave_footprint_uses_point_on_surface_not_centroid():
    cells = [shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)]
    # A U-shaped building whose centroid falls in its courtyard, in the other cell.
    u_shape = shapely.Polygon([(5, 1), (15, 1), (15, 9), (13, 9), (13, 3), (7, 3), (7, 9), (5, 9)])
    assert assign_polygons_by_representative_point([u_shape], cells).tolist() == naive(
        [shapely.point_on_surface(u_shape)], cells
    )


# --- validation ------------------------------------------------------------------------------------


def test_crs_mismatch_is_refused():
    pts = gpd.GeoSeries([shapely.Point(108, 32)], crs=4490)
    polys = gpd.GeoSeries([shapely.box(107, 31, 109, 33)], crs=4326)
    with pytest.raises(CRSMismatchError, match="EPSG:4490.*EPSG:4326"):
        assign_points(pts, polys)
    with pytest.raises(CRSMismatchError, match="no CRS"):
        assign_points(pts.set_crs(None, allow_override=True), polys)
    assert assign_points(pts, polys.set_crs(4490, allow_override=True)).tolist() == [0]


def test_geodataframes_are_accepted():
    pts = gpd.GeoDataFrame({"id": [1]}, geometry=[shapely.Point(108, 32)], crs=4490)
    polys = gpd.GeoDataFrame({"code": ["a"]}, geometry=[shapely.box(107, 31, 109, 33)], crs=4490)
    assert assign_points(pts, polys).tolist() == [0]


@pytest.mark.parametrize(
    ("points", "polygons", "message"),
    [
        ([shapely.Point(0, 0), shapely.LineString([(0, 0), (1, 1)])], [shapely.box(0, 0, 1, 1)],
         r"points\[1\] is LineString"),
        ([shapely.Point(0, 0), "x"], [shapely.box(0, 0, 1, 1)], r"points\[1\] is a str"),
        ([shapely.Point(0, 0)], [shapely.box(0, 0, 1, 1), shapely.Point(0, 0)],
         r"polygons\[1\] is Point"),
        ([[shapely.Point(0, 0)]], [shapely.box(0, 0, 1, 1)], "flat sequence"),
    ],
)  # fmt: skip
def test_bad_geometries_are_named(points, polygons, message):
    with pytest.raises(AssignInputError, match=message):
        assign_points(points, polygons)


def test_unknown_tie_break():
    with pytest.raises(ValueError, match="tie_break"):
        assign_points([shapely.Point(0, 0)], [shapely.box(0, 0, 1, 1)], tie_break="first")


def test_empty_inputs():
    assert assign_points([], [shapely.box(0, 0, 1, 1)]).tolist() == []
    assert assign_points([shapely.Point(0, 0)], []).tolist() == [-1]
    many = shapely.points(np.zeros((25_000, 2)))
    assert (assign_points(many, [None, shapely.Polygon()]) == -1).all()
