"""geo.hotspots against naive oracles: the Gi* formula written out, pairwise contiguity, a
double-loop kernel sum, cell-by-cell zonal means."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from geo.hotspots import (
    HotspotCRSError,
    HotspotInputError,
    classify,
    getis_ord,
    kernel_density,
    projected_crs,
    queen_neighbours,
    zonal_mean,
)

GK = 4545  # CGCS2000 / 3-degree Gauss-Kruger CM 108E


def _lattice(nx: int, ny: int, values: list[float], size: float = 500.0) -> gpd.GeoDataFrame:
    boxes = [shapely.box(500000 + i * size, 3550000 + j * size, 500000 + (i + 1) * size,
                         3550000 + (j + 1) * size) for j in range(ny) for i in range(nx)]  # fmt: skip
    return gpd.GeoDataFrame({"n": values}, geometry=boxes, crs=GK)


def _naive_neighbours(frame: gpd.GeoDataFrame) -> dict[int, list[int]]:
    g = list(frame.geometry)
    return {i: [j for j in range(len(g)) if j != i and g[i].distance(g[j]) <= 0.5]
            for i in range(len(g))}  # fmt: skip


def _naive_gi_star(x: np.ndarray, nb: dict[int, list[int]]) -> np.ndarray:
    """Getis & Ord (1992) Gi* with binary weights and the self-weight, straight from the paper."""
    n, mean = len(x), x.mean()
    s = math.sqrt((x**2).mean() - mean**2)
    out = []
    for i in range(n):
        members = [i, *nb[i]]
        w = len(members)
        den = s * math.sqrt((n * w - w * w) / (n - 1))
        out.append((x[members].sum() - mean * w) / den if den > 0 else math.nan)
    return np.array(out)


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 6), st.integers(3, 6), st.data())
def test_gi_star_equals_the_formula(nx: int, ny: int, data: st.DataObject) -> None:
    values = data.draw(st.lists(st.integers(0, 50), min_size=nx * ny, max_size=nx * ny))
    if len(set(values)) == 1:
        values[0] += 1
    frame = _lattice(nx, ny, [float(v) for v in values])
    nb = queen_neighbours(frame)
    assert nb == _naive_neighbours(frame)
    got = getis_ord(frame, value="n")
    expected = _naive_gi_star(np.array(values, dtype=float), nb)
    finite = np.isfinite(expected)  # a neighbourhood spanning every polygon has no variance
    np.testing.assert_allclose(
        got["gi_z"].to_numpy()[finite], expected[finite], rtol=1e-9, atol=1e-9
    )
    p = 2 * stats.norm.sf(np.abs(expected[finite]))
    np.testing.assert_allclose(got["gi_p"].to_numpy()[finite], p, rtol=1e-9, atol=1e-12)


def test_classes_follow_the_two_sided_cut_offs() -> None:
    z = np.array([2.6, 2.0, 1.7, 1.6, -1.7, -2.0, -2.6, np.nan])
    p = 2 * stats.norm.sf(np.abs(z))
    assert classify(z, p).tolist() == [
        "hot_99", "hot_95", "hot_90", "not_significant", "cold_90", "cold_95", "cold_99",
        "not_significant",
    ]  # fmt: skip


def test_a_planted_cluster_is_hot_and_its_mirror_cold() -> None:
    values = np.ones(64)
    corner = [0, 1, 8, 9]
    values[corner] = 20
    hot = getis_ord(_lattice(8, 8, values.tolist()), value="n")
    assert set(hot.index[hot["gi_class"] == "hot_99"]) >= set(corner)
    assert not hot["gi_class"].str.startswith("cold").any()
    cold = getis_ord(_lattice(8, 8, (21 - values).tolist()), value="n")
    assert set(cold.index[cold["gi_class"] == "cold_99"]) >= set(corner)


def test_permutation_p_values_are_reproducible() -> None:
    frame = _lattice(5, 5, [float(i % 7) for i in range(25)])
    a = getis_ord(frame, value="n", permutations=99, rng=3)
    b = getis_ord(frame, value="n", permutations=99, rng=3)
    assert a["gi_psim"].tolist() == b["gi_psim"].tolist()
    assert ((a["gi_psim"] > 0) & (a["gi_psim"] <= 1)).all()


def test_gi_star_refuses_bad_input() -> None:
    frame = _lattice(3, 3, [1.0] * 9)
    assert getis_ord(frame, value="n")["gi_class"].eq("not_significant").all()
    with pytest.raises(HotspotInputError, match="'missing'"):
        getis_ord(frame, value="missing")
    with pytest.raises(HotspotInputError, match="at least 3"):
        getis_ord(frame.iloc[:2], value="n")
    with pytest.raises(HotspotCRSError, match="no CRS"):
        getis_ord(frame.set_crs(None, allow_override=True), value="n")
    frame.loc[4, "n"] = np.nan
    with pytest.raises(HotspotInputError, match="row 4"):
        getis_ord(frame, value="n")


def test_contiguity_forgives_tiny_gaps_but_not_real_ones() -> None:
    a = shapely.box(500000, 3550000, 500100, 3550100)
    near = shapely.box(500100.2, 3550000, 500200, 3550100)
    far = shapely.box(500105, 3550200, 500200, 3550300)
    nb = queen_neighbours(gpd.GeoSeries([a, near, far], crs=GK))
    assert nb == {0: [1], 1: [0], 2: []}


def _naive_density(xy: np.ndarray, cx: np.ndarray, cy: np.ndarray, h: float) -> np.ndarray:
    out = np.zeros(cx.shape)
    for x, y in xy:
        d2 = (cx - x) ** 2 + (cy - y) ** 2
        out += np.where(d2 <= (4 * h) ** 2, np.exp(-d2 / (2 * h * h)), 0.0)
    return out * 1e6 / (2 * np.pi * h * h)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 3000), st.floats(0, 2000)), min_size=1, max_size=30),
       st.floats(80, 600))  # fmt: skip
def test_kernel_density_equals_the_double_loop(pts: list[tuple[float, float]], h: float) -> None:
    xy = np.array(pts) + [500000, 3550000]
    points = gpd.GeoSeries(gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=GK)
    surface = kernel_density(points, bandwidth=h, cell=h / 2)
    cx, cy = surface.centres()
    np.testing.assert_allclose(surface.values, _naive_density(xy, cx, cy, h), rtol=1e-9, atol=1e-12)
    mass = surface.values.sum() * (surface.cell / 1000) ** 2
    assert mass == pytest.approx(len(pts), rel=0.01)  # the default extent holds the kernels


def test_density_in_lon_lat_is_computed_in_the_gauss_kruger_zone() -> None:
    pts = gpd.GeoSeries([shapely.Point(108.04, 32.06), shapely.Point(108.05, 32.06)], crs=4490)
    surface = kernel_density(pts, bandwidth=300, cell=100, weights=np.array([1.0, 3.0]))
    assert surface.crs.to_epsg() == GK
    assert surface.values.sum() * 0.01 == pytest.approx(4.0, rel=0.01)
    with pytest.raises(HotspotInputError, match="weights"):
        kernel_density(pts, bandwidth=300, cell=100, weights=np.array([1.0]))
    with pytest.raises(HotspotInputError, match="bandwidth"):
        kernel_density(pts, bandwidth=0, cell=100)
    with pytest.raises(HotspotCRSError, match="projected"):
        kernel_density(pts, bandwidth=300, cell=100, crs=4326)


def test_zonal_mean_is_the_mean_of_cells_inside() -> None:
    frame = _lattice(3, 2, [0.0] * 6, size=1000)
    rng = np.random.default_rng(1)
    xy = rng.uniform([500000, 3550000], [503000, 3552000], size=(40, 2))
    points = gpd.GeoSeries(gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=GK)
    surface = kernel_density(points, bandwidth=400, cell=100, extent=frame)
    cx, cy = surface.centres()
    got = zonal_mean(surface, frame.to_crs(4490))  # other CRS in: projected back
    for i, poly in enumerate(frame.geometry):
        x0, y0, x1, y1 = poly.bounds
        inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
        assert got[i] == pytest.approx(surface.values[inside].mean(), rel=1e-6)


def test_projected_crs_picks_the_zone() -> None:
    at = gpd.GeoSeries([shapely.Point(108.04, 32.06)], crs=4490)
    assert projected_crs(at).to_epsg() == 4545
    assert projected_crs(gpd.GeoSeries([shapely.Point(120.3, 31.9)], crs=4490)).to_epsg() == 4549
    with pytest.raises(HotspotCRSError, match="outside"):
        projected_crs(gpd.GeoSeries([shapely.Point(10.0, 50.0)], crs=4326))
