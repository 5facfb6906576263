"""Builders: data in, Dash components out. No queries here, no callbacks.

Map layers are dash-leaflet ``GeoJSON`` components whose look is decided in the browser by the
functions in ``assets/screen.js`` (``window.gridgov``), referenced as ``{"variable": ...}``; data
reaches the browser once and colouring/filtering change ``hideout`` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dash_leaflet as dl
from dash import html

from dashboard.i18n import TEXT, t, table

JS = "gridgov"
LAYER_KEYS = ("bounds", "bands", "buildings", "heat", "events", "responders")
"""Overlay keys, in the order of the layers control; the URL's ``layers=`` uses these."""

BAND_COLOURS = {"under": "#3b82f6", "inside": "#22c55e", "over": "#ef4444", "none": "#64748b"}
STATUS_COLOURS = {
    "reported": "#f59e0b", "verified": "#f59e0b", "filed": "#f59e0b", "dispatched": "#38bdf8",
    "in_progress": "#38bdf8", "handled": "#a78bfa", "checked": "#a78bfa", "closed": "#22c55e",
    "evaluated": "#22c55e", "cancelled": "#64748b", "extension_requested": "#fb923c",
    "backlog": "#fb7185",
}  # fmt: skip
CATEGORY_ICONS = {"01": "⚖", "02": "♻", "03": "⚙", "04": "♥", "05": "⚠", "06": "🔥"}
RESPONDER_ICONS = {"police": "警", "fire": "消", "medical": "医", "power": "电", "grid_team": "网"}


@dataclass(frozen=True)
class KpiSpec:
    key: str
    fmt: str  # "int" | "pct" | "min" | "h" | "score"
    target: float | None
    higher_is_better: bool


KPI_SPECS = (
    KpiSpec("reported", "int", None, False),
    KpiSpec("open", "int", None, False),
    KpiSpec("overdue", "int", 0, False),
    KpiSpec("closure_rate", "pct", 0.95, True),  # 蓬莱 ≥ 95 %; 江阴 reached 98.91 %
    KpiSpec("on_time_rate", "pct", 0.90, True),
    KpiSpec("response_min", "min", 30, False),
    KpiSpec("handling_h", "h", 24, False),
    KpiSpec("satisfaction", "score", 4.5, True),
    KpiSpec("patrol_coverage", "pct", 1.0, True),  # 蓬莱: every grid patrolled daily
)
"""The KPI strip; targets are the domain's published figures (see DOMAIN.md)."""


def _label(prefix: str, key: str, lang: str) -> str:
    """The translated label of a coded value, or the code itself when the table lacks it."""
    return t(f"{prefix}.{key}", lang) if f"{prefix}.{key}" in TEXT else key


def fn(name: str) -> dict[str, str]:
    """A reference to a client-side function in ``assets/screen.js``."""
    return {"variable": f"{JS}.{name}"}


def one_point(lon: float, lat: float, **properties: Any) -> dict[str, Any]:
    """A one-feature collection: the anchor for a plugin layer spawned by ``pointToLayer``."""
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
               "properties": properties}  # fmt: skip
    return {"type": "FeatureCollection", "features": [feature]}


EMPTY: dict[str, Any] = {"type": "FeatureCollection", "features": []}


# --- map ---------------------------------------------------------------------------------------


def map_component(
    *,
    page: str,
    center: tuple[float, float],
    zoom: float,
    tile_url: str | None,
    attribution: str,
    checked: Sequence[str],
    lang: str,
    bounds: list[list[float]] | None = None,
) -> dl.Map:
    """The map with every layer empty; callbacks fill ``data`` and ``hideout`` later. With
    ``bounds`` it opens on them (no first move, which would redraw every layer)."""
    name = {k: t(f"layer.{k}", lang) for k in LAYER_KEYS}
    bases = [dl.BaseLayer(dl.LayerGroup([
        dl.GeoJSON(id=f"{page}-roads", data=EMPTY, style=fn("roadStyle"), interactive=False),
        dl.GeoJSON(id=f"{page}-outline", data=EMPTY, style=fn("outlineStyle"), interactive=False),
    ]), name=t("layer.offline", lang), checked=not tile_url)]  # fmt: skip
    if tile_url:  # online tiles only when configured (e.g. Tianditu with a key)
        bases.append(dl.BaseLayer(dl.TileLayer(url=tile_url, attribution=attribution),
                                  name=t("layer.online", lang), checked=True))  # fmt: skip
    overlays = [
        dl.Overlay(dl.GeoJSON(id=f"{page}-bands", data=EMPTY, style=fn("bandStyle"),
                              onEachFeature=fn("labelDetail"), hideout={}),
                   name=name["bands"], checked="bands" in checked),
        dl.Overlay(dl.GeoJSON(id=f"{page}-bounds", data=EMPTY, style=fn("boundsStyle"),
                              hoverStyle=fn("hoverStyle"), onEachFeature=fn("labelChild"),
                              hideout={}),
                   name=name["bounds"], checked="bounds" in checked),
        dl.Overlay(dl.GeoJSON(id=f"{page}-buildings", data=EMPTY, pointToLayer=fn("buildingTiles"),
                              hideout={}),
                   name=name["buildings"], checked="buildings" in checked),
        dl.Overlay(dl.GeoJSON(id=f"{page}-heat", data=EMPTY, pointToLayer=fn("heatLayer"),
                              hideout={}),
                   name=name["heat"], checked="heat" in checked),
        dl.Overlay(dl.GeoJSON(id=f"{page}-events", data=EMPTY, cluster=True,
                              pointToLayer=fn("eventMarker"), clusterToLayer=fn("clusterIcon"),
                              filter=fn("eventFilter"), hideout={}, zoomToBoundsOnClick=True,
                              superClusterOptions={"radius": 90, "maxZoom": 16}),
                   name=name["events"], checked="events" in checked),
        dl.Overlay(dl.LayerGroup([
            dl.GeoJSON(id=f"{page}-dispatch", data=EMPTY, style=fn("dispatchStyle"), interactive=False),
            dl.GeoJSON(id=f"{page}-responders", data=EMPTY, cluster=True, pointToLayer=fn("responderMarker"),
                       clusterToLayer=fn("responderCluster"), zoomToBoundsOnClick=True, hideout={},
                       superClusterOptions={"radius": 80, "maxZoom": 15}),
        ]), name=name["responders"], checked="responders" in checked),
    ]  # fmt: skip
    opening = (
        {"viewport": {"bounds": bounds, "transition": "fitBounds", "options": {"animate": False}}}
        if bounds
        else {}
    )
    if bounds:  # dash-leaflet applies center/zoom after fitting: make them agree with the bounds
        center, zoom = view_of(bounds)
    return dl.Map(
        id=f"{page}-map", center=list(center), zoom=zoom, **opening, preferCanvas=True, zoomSnap=0.25,
        className="map", attributionControl=bool(attribution), children=[
            dl.LayersControl(bases + overlays, id=f"{page}-layers", collapsed=False,
                             overlays=[name[k] for k in LAYER_KEYS if k in checked]),
            dl.ScaleControl(position="bottomleft", imperial=False),
        ],
    )  # fmt: skip


def view_of(
    bounds: list[list[float]], *, px: tuple[int, int] = (860, 560)
) -> tuple[tuple[float, float], float]:
    """Centre and zoom (quarter steps) that show ``[[south, west], [north, east]]`` in a map of
    about ``px`` pixels (a little inside the wall's centre panel at 1080p).

    >>> (lat, lon), zoom = view_of([[31.9, 107.9], [32.2, 108.2]])
    >>> round(lat, 2), round(lon, 2), zoom
    (32.05, 108.05, 11.0)
    """
    (s, w), (n, e) = bounds
    mid_lat = math.radians((s + n) / 2)
    lon_zoom = math.log2(360 * px[0] / (256 * max(e - w, 1e-6)))
    lat_zoom = math.log2(360 * px[1] / (256 * max(n - s, 1e-6) / math.cos(mid_lat)))
    zoom = math.floor(min(lon_zoom, lat_zoom, 18) * 4) / 4
    return ((s + n) / 2, (w + e) / 2), zoom


def layer_names(lang: str) -> dict[str, str]:
    """Translated overlay name -> key (the layers control reports names)."""
    return {t(f"layer.{k}", lang): k for k in LAYER_KEYS}


def event_hideout(
    lang: str,
    categories: Sequence[dict[str, Any]],
    *,
    now: datetime,
    cats: Sequence[str],
    cutoff: float | None = None,
    mode: str = "all",
) -> dict[str, Any]:
    """What the event style/filter/popup functions read: names, colours, filters, the clock."""
    key = "name_en" if lang == "en" else "name"
    return {
        "cats": list(cats), "cutoff": cutoff, "now": now.timestamp(), "mode": mode,
        "catNames": {c["code"]: c[key] for c in categories}, "icons": CATEGORY_ICONS,
        "statusColours": STATUS_COLOURS, "status": table("status", lang),
        "levels": table("level", lang), "badges": table("badge", lang),
        "card": table("card", lang), "lang": lang,
    }  # fmt: skip


def responders_geojson(rows: Sequence[dict[str, Any]], lang: str) -> dict[str, Any]:
    """Responder points (clustered on the map when they crowd: 500 lettered icons at province
    scale held the first render for ~0.25 s)."""
    features: list[dict[str, Any]] = []
    for r in rows:
        props = {"kind": "responder", "code": r["code"], "name": r["name"], "type": r["type"],
                 "status": r["status"], "icon": RESPONDER_ICONS.get(r["type"], "•"),
                 "typeName": _label("resp", r["type"], lang),
                 "statusName": _label("resp", r["status"], lang)}  # fmt: skip
        point = {"type": "Point", "coordinates": [r["lon"], r["lat"]]}
        features.append({"type": "Feature", "geometry": point, "properties": props})
    return {"type": "FeatureCollection", "features": features}


def dispatch_geojson(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A line from each dispatched responder to its event."""
    features = [
        {"type": "Feature", "properties": {"kind": "dispatch", "event": r["event_id"]},
         "geometry": {"type": "LineString",
                      "coordinates": [[r["lon"], r["lat"]], [r["event_lon"], r["event_lat"]]]}}
        for r in rows if r["event_id"] is not None
    ]  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def legend(lang: str, band: tuple[int, int] | None) -> html.Div:
    """The map legend: household bands, event status colours, badges, dispatch lines."""
    rows: list[Any] = [html.Div(t("legend.title", lang), className="legend-title")]
    if band:
        lo, hi = band
        for key in ("under", "inside", "over"):
            rows.append(_swatch(BAND_COLOURS[key], t(f"legend.{key}", lang, lo=lo, hi=hi)))
    for status in ("reported", "in_progress", "handled", "closed"):
        rows.append(_swatch(STATUS_COLOURS[status], t(f"status.{status}", lang), dot=True))
    rows.append(_swatch("#ef4444", t("legend.overdue", lang), dot=True, cls="pulse"))
    rows.append(_swatch("#fb923c", t("legend.dispatch", lang), line=True))
    rows.append(html.Div(t("legend.level", lang), className="legend-note"))
    return html.Div(rows, className="legend")


def _swatch(
    colour: str, label: str, *, dot: bool = False, line: bool = False, cls: str = ""
) -> html.Div:
    shape = "legend-dot" if dot else "legend-line" if line else "legend-box"
    return html.Div([html.Span(className=f"{shape} {cls}", style={"background": colour}),
                     html.Span(label)], className="legend-row")  # fmt: skip


# --- panels ------------------------------------------------------------------------------------


def format_value(value: float | None, fmt: str, lang: str) -> str:
    if value is None:
        return t("misc.none", lang)
    if fmt == "pct":
        return f"{value * 100:.1f}%"
    if fmt == "min":
        return f"{value:.0f} {t('unit.min', lang)}"
    if fmt == "h":
        return f"{value:.1f} {t('unit.h', lang)}"
    if fmt == "score":
        return (
            f"{value:.2f}{t('unit.score', lang)}"
            if lang == "en"
            else f"{value:.2f} {t('unit.score', lang)}"
        )
    return f"{int(value):,}"


def _delta(now: float | None, before: float | None, spec: KpiSpec) -> tuple[str, str]:
    if now is None or before is None:
        return "", "flat"
    diff = now - before
    if abs(diff) < 1e-9:
        return "±0", "flat"
    text = (
        f"{diff * 100:+.1f}pt"
        if spec.fmt == "pct"
        else f"{diff:+,.0f}"
        if spec.fmt == "int"
        else f"{diff:+.1f}"
    )
    good = (diff > 0) == spec.higher_is_better
    return text, "good" if good else "bad"


def _meets(value: float | None, spec: KpiSpec) -> str:
    if value is None or spec.target is None:
        return ""
    ok = value >= spec.target if spec.higher_is_better else value <= spec.target
    return "kpi-ok" if ok else "kpi-miss"


def kpi_cards(
    current: dict[str, Any], previous: dict[str, Any], *, lang: str, one_day: bool, page: str
) -> list[html.Div]:
    """One card per KPI: value, change against the previous period, target."""
    vs = t("kpi.vs.yesterday" if one_day else "kpi.vs.previous", lang)
    cards = []
    for spec in KPI_SPECS:
        label_key = f"kpi.{spec.key}" + (
            "" if one_day or spec.key not in ("reported", "patrol_coverage") else ".win"
        )
        value = current.get(spec.key)
        diff, tone = _delta(value, previous.get(spec.key), spec)
        target = (
            ""
            if spec.target is None
            else f"{t('kpi.target', lang)} {format_value(spec.target, spec.fmt, lang)}"
        )
        cards.append(html.Div(id=f"{page}-kpi-{spec.key}", className=f"kpi {_meets(value, spec)}", children=[
            html.Div(t(label_key, lang), className="kpi-label"),
            html.Div(format_value(value, spec.fmt, lang), className="kpi-value"),
            html.Div([html.Span(f"{vs} {diff}" if diff else "", className=f"kpi-delta {tone}"),
                      html.Span(target, className="kpi-target")], className="kpi-foot"),
        ]))  # fmt: skip
    return cards


def ranking_table(rows: Sequence[dict[str, Any]], *, lang: str, page: str) -> html.Table:
    """Children of the selection, worst first; a row click drills down (``.pick[data-code]``:
    one delegated click handler in screen.js, not a pattern-matching input per row)."""
    head = html.Tr([html.Th("#"), html.Th(""), html.Th(t("rank.open", lang)),
                    html.Th(t("rank.overdue", lang)), html.Th(t("rank.reported", lang)),
                    html.Th(t("rank.closure", lang))])  # fmt: skip
    body = [
        html.Tr(className="rank-row pick", **{"data-code": r["code"]}, children=[
            html.Td(i + 1), html.Td(r["name"], className="rank-name"), html.Td(f"{r['open']:,}"),
            html.Td(f"{r['overdue']:,}", className="bad" if r["overdue"] else ""),
            html.Td(f"{r['reported']:,}"), html.Td(format_value(r["closure_rate"], "pct", lang)),
        ])
        for i, r in enumerate(rows)
    ]  # fmt: skip
    return html.Table([html.Thead(head), html.Tbody(body)], className="rank")


def feed_items(
    rows: Sequence[dict[str, Any]], *, lang: str, now: datetime
) -> list[html.Li] | html.Div:
    """The live feed: newest change first, overdue marked."""
    if not rows:
        return html.Div(t("feed.empty", lang), className="feed-empty")
    items = []
    for r in rows:
        overdue = (
            r["due_at"] is not None
            and r["due_at"] < now
            and r["status"] not in ("closed", "evaluated", "cancelled")
        )
        status = _label("status", r["status"], lang)
        items.append(html.Li(className="feed-item overdue" if overdue else "feed-item",
                             **{"data-code": r["code"]}, children=[
            html.Span(r["reported_at"].astimezone(now.tzinfo).strftime("%m-%d %H:%M"), className="feed-time"),
            html.Span(CATEGORY_ICONS.get(r["category_code"][:2], "•"), className="feed-icon"),
            html.Span(r["category"], className="feed-cat"),
            html.Span(r["unit_name"] or "", className="feed-unit"),
            html.Span(status, className="feed-status", style={"color": STATUS_COLOURS.get(r["status"], "#ccc")}),
            html.Span(r["code"], className="feed-code"),
        ]))  # fmt: skip
    return items


def trend_bars(rows: Sequence[dict[str, Any]], *, lang: str, bucket: str) -> html.Div:
    """Reported and closed per bucket as plain HTML bars, readable from across the room.

    Plain elements rather than a Plotly figure: loading and drawing plotly.js held the main
    thread for over a second at first view, which a wall screen must not do.
    """
    top = max([1, *(max(r["reported"], r["closed"]) for r in rows)])
    every = max(1, len(rows) // 6)  # about six time labels whatever the bucket count
    fmt = "%H:%M" if bucket == "hour" else "%m-%d"
    names = (t("trend.reported", lang), t("trend.closed", lang))
    cols = [_trend_column(r, top=top, fmt=fmt, names=names, label=i % every == 0)
            for i, r in enumerate(rows)]  # fmt: skip
    legend = html.Div(className="trend-legend", children=[
        html.Span(names[0], className="key rep"), html.Span(names[1], className="key clo"),
        html.Span(f"max {top}", className="trend-max"),
    ])  # fmt: skip
    return html.Div([legend, html.Div(cols, className="trend-cols")], className="trend-bars")


def _trend_column(
    row: dict[str, Any], *, top: int, fmt: str, names: tuple[str, str], label: bool
) -> html.Div:
    when = row["t"].strftime(fmt)
    return html.Div(className="trend-col", title=f"{when}  {names[0]} {row['reported']} · "
                    f"{names[1]} {row['closed']}", children=[
        html.Div(className="trend-pair", children=[
            html.Div(className="bar rep", style={"height": f"{100 * row['reported'] / top:.1f}%"}),
            html.Div(className="bar clo", style={"height": f"{100 * row['closed'] / top:.1f}%"}),
        ]),
        html.Span(when if label else "", className="trend-x"),
    ])  # fmt: skip
