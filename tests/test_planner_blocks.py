"""blocks_from_roads, buildings_to_blocks, adjacency tolerance, analyse."""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.planner import (
    PlannerCRSError,
    PlannerInputError,
    adjacency,
    analyse,
    blocks_from_roads,
    buildings_to_blocks,
)
from tests.test_planner_fixtures import ORIGIN

X0, Y0 = ORIGIN
CRS = 4545


def street_grid() -> tuple[gpd.GeoDataFrame, shapely.Polygon]:
    """Roads at x = 100, 200 and y = 100 (overshooting), boundary 300 x 200: six blocks."""
    lines = [shapely.LineString([(X0 + x, Y0 - 50), (X0 + x, Y0 + 250)]) for x in (100, 200)]
    lines.append(shapely.LineString([(X0 - 50, Y0 + 100), (X0 + 350, Y0 + 100)]))
    roads = gpd.GeoDataFrame({"highway": ["residential"] * 3}, geometry=lines, crs=CRS)
    return roads, shapely.box(X0, Y0, X0 + 300, Y0 + 200)


def houses(xy: list[tuple[float, float]], households: list[int]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "bid": [f"h{i}" for i in range(len(xy))],
            "households": households,
            "residents": [3 * h for h in households],
        },
        geometry=[shapely.box(X0 + x - 4, Y0 + y - 4, X0 + x + 4, Y0 + y + 4) for x, y in xy],
        crs=CRS,
    )


def naive_owner(buildings: gpd.GeoDataFrame, blocks: gpd.GeoDataFrame) -> list[object]:
    """Loop over blocks in order; first block that intersects the representative point."""
    out: list[object] = []
    for geom in buildings.geometry:
        point = geom.representative_point()
        out.append(next((b for b, g in blocks.geometry.items() if g.intersects(point)), None))
    return out


def test_six_blocks_numbered_in_reading_order() -> None:
    roads, boundary = street_grid()
    blocks = blocks_from_roads(houses([(50, 150)], [10]), roads, boundary, id_col="bid")
    assert len(blocks) == 6
    assert blocks["area_m2"].to_numpy() == pytest.approx(np.full(6, 10_000.0))
    corners = [(round(g.bounds[0] - X0), round(g.bounds[1] - Y0)) for g in blocks.geometry]
    assert corners == [(0, 100), (100, 100), (200, 100), (0, 0), (100, 0), (200, 0)]
    assert blocks.loc["B1", "building_ids"] == ("h0",)
    assert blocks["households"].tolist() == [10, 0, 0, 0, 0, 0]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([5.0, 50.0, 100.0, 150.0, 200.0, 295.0, 320.0]),
            st.sampled_from([5.0, 50.0, 100.0, 195.0, 240.0]),
            st.integers(0, 60),
        ),
        min_size=1,
        max_size=25,
        unique_by=lambda t: (t[0], t[1]),
    )
)
def test_buildings_and_tallies_match_naive_oracle(spec: list[tuple[float, float, int]]) -> None:
    roads, boundary = street_grid()
    buildings = houses([(x, y) for x, y, _ in spec], [h for *_, h in spec])
    blocks = blocks_from_roads(buildings, roads, boundary, id_col="bid")
    expected = naive_owner(buildings, blocks)  # points on roads go to the lower block number
    got = buildings_to_blocks(buildings, blocks, id_col="bid")
    assert [None if pd.isna(v) else v for v in got] == expected
    for block, row in blocks.iterrows():
        mine = [i for i, o in enumerate(expected) if o == block]
        assert row["households"] == sum(buildings["households"].iloc[mine])
        assert row["residents"] == sum(buildings["residents"].iloc[mine])
        assert set(row["building_ids"]) == set(buildings["bid"].iloc[mine])
    outside = {b for b, o in zip(buildings["bid"], expected, strict=True) if o is None}
    assert set(blocks.attrs["unassigned_buildings"]) == outside


def test_merge_empty_and_slivers() -> None:
    roads, boundary = street_grid()
    sliver = shapely.LineString([(X0 - 50, Y0 + 198), (X0 + 350, Y0 + 198)])
    roads = pd.concat([roads, gpd.GeoDataFrame(geometry=[sliver], crs=CRS)])
    buildings = houses([(50, 150), (150, 50), (250, 50)], [10, 20, 30])
    plain = blocks_from_roads(buildings, roads, boundary, id_col="bid")
    assert len(plain) == 9  # six blocks plus three 2 m slivers along the north edge
    merged = blocks_from_roads(buildings, roads, boundary, id_col="bid", min_area_m2=500)
    assert len(merged) == 6
    both = blocks_from_roads(
        buildings, roads, boundary, id_col="bid", min_area_m2=500, merge_empty=True
    )
    assert sorted(both["households"]) == [10, 20, 30]
    for frame in (merged, both):
        assert frame["area_m2"].sum() == pytest.approx(boundary.area)
        assert frame["households"].sum() == 60
        assert nx.is_connected(adjacency(frame))


def test_geographic_input_comes_back_geographic() -> None:
    roads, boundary = street_grid()
    buildings = houses([(50, 150)], [10]).to_crs(4490)
    outline = gpd.GeoSeries([boundary], crs=CRS).to_crs(4490)
    blocks = blocks_from_roads(buildings, roads.to_crs(4490), outline, id_col="bid")
    assert blocks.crs.to_epsg() == 4490
    assert blocks["area_m2"].sum() == pytest.approx(60_000, rel=1e-3)


def test_mixed_crs_and_bad_ids_are_refused() -> None:
    roads, boundary = street_grid()
    buildings = houses([(50, 150), (60, 150)], [10, 5])
    with pytest.raises(PlannerCRSError, match="roads is in"):
        blocks_from_roads(buildings, roads.to_crs(4490), boundary)
    with pytest.raises(PlannerCRSError, match="boundary is in"):
        blocks_from_roads(buildings, roads, gpd.GeoSeries([boundary], crs=CRS).to_crs(4490))
    twins = buildings.assign(bid=["x", "x"])
    with pytest.raises(PlannerInputError, match="building id 'x' appears more than once"):
        blocks_from_roads(twins, roads, boundary, id_col="bid")


def test_adjacency_tolerance_bridges_thin_gaps() -> None:
    cells = [shapely.box(0, 0, 100, 100), shapely.box(100.5, 0, 200, 100)]
    blocks = gpd.GeoDataFrame(geometry=cells, crs=3857)
    strict = adjacency(blocks)
    assert strict.edges[0, 1]["island"] is True
    loose = adjacency(blocks, tolerance=1.0)
    assert loose.edges[0, 1]["island"] is False
    assert loose.edges[0, 1]["length"] == pytest.approx(100, rel=0.05)


# --- analyse ----------------------------------------------------------------------------------


def test_analyse_finds_each_kind_of_problem() -> None:
    box = shapely.box
    children = gpd.GeoDataFrame(
        {"households": [250, 400, 600, 350, 320]},
        geometry=[
            box(0, 0, 100, 100),
            box(100, 0, 200, 100),
            box(200, 0, 300, 100),
            shapely.MultiPolygon([box(0, 100, 50, 150), box(100, 100, 150, 150)]),
            box(250, 50, 350, 150),  # overlaps the third, leaves the parent
        ],
        index=pd.Index(["a", "b", "c", "d", "e"], name="grid"),
        crs=3857,
    )
    parent = box(0, 0, 300, 150)
    strays = gpd.GeoDataFrame({"households": [5]}, geometry=[box(60, 120, 70, 130)], crs=3857)
    result = analyse(children, band=(300, 500), parent=parent, buildings=strays)
    table = result.children
    assert table["status"].tolist() == ["under", "in", "over", "in", "in"]
    assert table["deviation"].tolist() == [-150, 0, 200, -50, -80]
    assert table.loc["d", "parts"] == 2
    kinds = {(c, k) for c, k, _ in result.problems.itertuples(index=False)}
    assert {
        ("a", "under"),
        ("c", "over"),
        ("d", "not_contiguous"),
        ("e", "crosses_parent"),
        ("c", "overlap"),
        ("e", "overlap"),
        (None, "gap"),
        (None, "building_without_child"),
    } == kinds
    assert set(table.loc["e", "problems"]) == {"crosses_parent", "overlap"}
    detail = result.problems.set_index("kind").loc["crosses_parent", "detail"]
    assert detail == "5000 m² outside the parent"


def test_analyse_counts_households_from_buildings() -> None:
    roads, boundary = street_grid()
    buildings = houses([(50, 150), (60, 150), (250, 50)], [120, 200, 90])
    blocks = blocks_from_roads(buildings, roads, boundary, id_col="bid")
    children = blocks.drop(columns="households")
    result = analyse(children, band=(300, 500), buildings=buildings, id_col="bid")
    assert result.children.loc["B1", "households"] == 320
    assert result.children.loc["B6", "households"] == 90
    assert result.children["households"].sum() == 410
    with pytest.raises(PlannerInputError, match="lack 'households'"):
        analyse(children, band=(300, 500))
