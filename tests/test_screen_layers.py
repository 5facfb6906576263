"""The command centre's trend bars: plain HTML whose bar heights are the counts over the peak."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dashboard import layers as L


def _rows(counts: list[tuple[int, int]]) -> list[dict[str, Any]]:
    t0 = datetime(2026, 11, 1)
    return [{"t": t0 + timedelta(hours=i), "reported": r, "closed": c}
            for i, (r, c) in enumerate(counts)]  # fmt: skip


def _heights(div: Any) -> list[tuple[float, float]]:
    cols = div.children[1].children
    return [tuple(float(b.style["height"].rstrip("%")) for b in col.children[0].children)
            for col in cols]  # fmt: skip


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), min_size=1, max_size=60))
def test_bar_heights_are_counts_over_the_peak(counts: list[tuple[int, int]]) -> None:
    div = L.trend_bars(_rows(counts), lang="zh", bucket="hour")
    peak = max(1, max(max(p) for p in counts))
    for (rep, clo), (h_rep, h_clo) in zip(counts, _heights(div), strict=True):
        # one decimal is written: half a tenth off at most
        assert abs(h_rep - 100 * rep / peak) <= 0.051 and abs(h_clo - 100 * clo / peak) <= 0.051


def test_labels_are_sparse_and_titles_carry_the_counts() -> None:
    div = L.trend_bars(_rows([(3, 1)] * 24), lang="en", bucket="hour")
    cols = div.children[1].children
    labels = [c.children[1].children for c in cols if c.children[1].children]
    assert 4 <= len(labels) <= 8 and labels[0] == "00:00"
    assert "Reported 3" in cols[5].title and "Closed 1" in cols[5].title


def test_empty_trend_draws_nothing() -> None:
    div = L.trend_bars([], lang="zh", bucket="day")
    assert div.children[1].children == []


def test_the_opening_view_agrees_with_the_unit_bounds() -> None:
    """dash-leaflet applies center/zoom after fitting the bounds, so both must show the unit:
    a township's map opened on a dot at the county's zoom."""
    from dashboard.layers import map_component, view_of

    town = [[31.9, 107.9], [32.2, 108.2]]
    (lat, lon), zoom = view_of(town)
    assert 31.9 < lat < 32.2 and 107.9 < lon < 108.2 and 10 <= zoom <= 12
    county = view_of([[31.4, 107.4], [32.6, 108.6]])[1]
    assert county < zoom
    m = map_component(page="t", center=(30.0, 106.0), zoom=7, tile_url=None, attribution="",
                      checked=[], lang="zh", bounds=town)  # fmt: skip
    assert m.zoom == zoom and list(m.center) == [lat, lon]
