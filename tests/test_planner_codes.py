"""Codes: reading order (north→south rows, west→east) against a naive oracle; keep; free numbers."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import shapely.affinity
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.planner import PlannerInputError, assign_codes, assign_nested_codes, reading_order
from tests.test_planner_fixtures import lattice

COMMUNITY = "511781001001"


def naive_order(x: list[float], y: list[float], tol: float) -> list[int]:
    """Take the northernmost remaining point; its row is every remaining point within tol
    south of it; emit the row west→east (ties: north first, then position); repeat."""
    left = list(range(len(x)))
    out: list[int] = []
    while left:
        top = max(y[i] for i in left)
        row = [i for i in left if top - y[i] <= tol]
        out += sorted(row, key=lambda i: (x[i], -y[i], i))
        left = [i for i in left if i not in row]
    return out


coords = st.lists(
    st.tuples(st.integers(0, 50).map(float), st.integers(0, 50).map(float)), min_size=1, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(points=coords, tol=st.sampled_from([0.0, 1.0, 2.5, 7.0]))
def test_reading_order_matches_naive_oracle(points: list[tuple[float, float]], tol: float) -> None:
    x, y = [p[0] for p in points], [p[1] for p in points]
    got = reading_order(np.array(x), np.array(y), row_tolerance=tol).tolist()
    assert got == naive_order(x, y, tol)


def test_lattice_codes_run_west_to_east_then_north_to_south() -> None:
    grid = lattice(3, 4, [1] * 12)  # row 0 is the south row
    codes = assign_codes(grid, parent_code=COMMUNITY)
    seq = codes.str[-3:].astype(int)
    expected = (2 - grid["row"]) * 4 + grid["col"] + 1
    assert seq.tolist() == expected.tolist()
    assert codes.str.len().eq(15).all() and codes.str.startswith(COMMUNITY).all()


def test_slightly_ragged_rows_stay_rows() -> None:
    # centres jitter by 10 m north/south: still one row per lattice row (tolerance 50 m)
    grid = lattice(2, 5, [1] * 10)
    jitter = np.where(np.arange(10) % 2, 10.0, -10.0)
    grid = grid.set_geometry(
        [shapely.affinity.translate(g, 0, j) for g, j in zip(grid.geometry, jitter, strict=True)],
        crs=grid.crs,
    )
    seq = assign_codes(grid, parent_code=COMMUNITY).str[-3:].astype(int)
    assert seq.tolist() == ((1 - grid["row"]) * 5 + grid["col"] + 1).tolist()


def test_kept_codes_stay_and_new_ones_take_free_numbers_in_order() -> None:
    grid = lattice(2, 3, [1] * 6)  # reading order: B3 B4 B5 B0 B1 B2
    keep = {"B4": COMMUNITY + "001", "B0": COMMUNITY + "007"}
    codes = assign_codes(grid, parent_code=COMMUNITY, keep=keep, reserved=[COMMUNITY + "002"])
    assert codes["B4"] == keep["B4"] and codes["B0"] == keep["B0"]
    fresh = ["B3", "B5", "B1", "B2"]  # reading order without the kept ones
    assert [codes[b][-3:] for b in fresh] == ["003", "004", "005", "006"]
    assert codes.is_unique


def test_keep_entries_for_absent_labels_are_ignored() -> None:
    grid = lattice(1, 2, [1, 1])
    codes = assign_codes(grid, parent_code=COMMUNITY, keep={"gone": COMMUNITY + "001"})
    assert codes.tolist() == [COMMUNITY + "001", COMMUNITY + "002"]


@pytest.mark.parametrize(
    "keep, message",
    [
        ({"B0": "511781001002001"}, "not a 15-digit code under parent"),
        ({"B0": COMMUNITY + "01"}, "not a 15-digit code"),
        ({"B0": COMMUNITY + "000"}, "sequence 000"),
        ({"B0": COMMUNITY + "001", "B1": COMMUNITY + "001"}, "gives code"),
        ({"B0": "51178100100A001"}, "digits"),
    ],
)
def test_bad_keep_codes_are_refused(keep: dict[str, str], message: str) -> None:
    with pytest.raises(PlannerInputError, match=message):
        assign_codes(lattice(1, 2, [1, 1]), parent_code=COMMUNITY, keep=keep)


def test_more_than_999_children_are_refused() -> None:
    many = lattice(10, 100, [1] * 1000)
    with pytest.raises(PlannerInputError, match="1000 units need new codes"):
        assign_codes(many, parent_code=COMMUNITY)


def test_nested_codes_extend_each_parent() -> None:
    cells = lattice(2, 4, [1] * 8)
    cells["grid"] = np.where(cells["col"] < 2, "west", "east")
    grid_codes = {"west": COMMUNITY + "001", "east": COMMUNITY + "002"}
    codes = assign_nested_codes(cells, parent_col="grid", parent_codes=grid_codes)
    assert codes.str.len().eq(18).all()
    for label, code in codes.items():
        assert code.startswith(grid_codes[cells.loc[label, "grid"]])
    west = codes[cells["grid"] == "west"].str[-3:].astype(int)
    assert sorted(west) == [1, 2, 3, 4]


def test_codes_independent_of_crs() -> None:
    grid = lattice(3, 3, [1] * 9)
    a = assign_codes(grid, parent_code=COMMUNITY)
    b = assign_codes(grid.to_crs(4490), parent_code=COMMUNITY)
    pd.testing.assert_series_equal(a, b)


def test_single_unit_gets_001() -> None:
    one = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], index=["g"], crs=3857)
    assert assign_codes(one, parent_code=COMMUNITY).tolist() == [COMMUNITY + "001"]
