"""一屏监测: the one-screen command centre (map, KPIs, ranking, live feed, trend).

URL query (bookmarkable; every key optional):
``unit`` selected unit code · ``win`` today|7d|30d|custom · ``from``/``to`` YYYY-MM-DD for custom ·
``layers`` comma list of bounds,bands,buildings,heat,events,responders · ``cats`` comma list of
top-level category codes · ``lang`` zh|en · ``wall=1`` wall mode · ``cycle`` seconds per wall scene.

Live updates: every ``settings.live_interval_ms`` the tick callback asks for ``max(rev)`` and, only
when it moved, fetches the rows changed after the cursor; the browser merges them into the
events layer and the numbers refresh. A failing database shows the staleness badge until it is back.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from datetime import date, datetime, timedelta
from typing import Any

import dash
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate
from sqlalchemy.exc import DBAPIError

from dashboard import layers as L
from dashboard.app import context
from dashboard.auth import narrow_to
from dashboard.i18n import normalise, t, table
from dashboard.markup import to_html
from etl.queries import screen as q

PAGE = "cmd"
dash.register_page(__name__, path="/", name="一屏监测", order=0, i18n_key="nav.command")

WINDOWS = ("today", "7d", "30d", "custom")
DEFAULT_LAYERS = L.LAYER_KEYS
SCENES = ("overview", "hotspots", "overdue", "dispatch")
FEED_SIZE = 15
RANK_SIZE = 20  # rows the ranking panel shows
# Two levels are drawn (children outlined, grandchildren by band) unless the grandchildren are
# more than this: 2,000 communities of a province cost the browser ~0.5 s and their labels could
# not be read at that zoom anyway; they appear on drill-down.
DETAIL_MAX = 800


def _pid(name: str) -> str:
    return f"{PAGE}-{name}"


# --- state ---------------------------------------------------------------------------------------


def initial_state(query: dict[str, Any], default_lang: str) -> dict[str, Any]:
    """The page state from the URL query (unknown values fall back to defaults)."""
    layers = [k for k in (query.get("layers") or "").split(",") if k in L.LAYER_KEYS]
    return {
        "unit": query.get("unit") or None,
        "win": query.get("win") if query.get("win") in WINDOWS else "today",
        "from": query.get("from"), "to": query.get("to"),
        "layers": layers if query.get("layers") is not None else list(DEFAULT_LAYERS),
        "cats": [c for c in (query.get("cats") or "").split(",") if c],
        "lang": normalise(query.get("lang"), default_lang),
        "wall": query.get("wall") in ("1", "true", "yes"),
        "cycle": max(2, int(query["cycle"])) if str(query.get("cycle") or "").isdigit() else 15,
    }  # fmt: skip


def query_key(state: dict[str, Any]) -> dict[str, Any]:
    """The part of the state that changes what is fetched (not which layers are shown)."""
    return {k: state.get(k) for k in ("unit", "win", "from", "to", "cats", "lang")}


def window_of(state: dict[str, Any], now: datetime) -> tuple[q.Window, int, str]:
    """The time window, its number of playback steps and the trend bucket."""
    day0 = now.replace(hour=0, minute=0, second=0, microsecond=0)
    span = {"today": 1, "7d": 7, "30d": 30}.get(state["win"])
    if span is None:
        start_d = _date(state.get("from")) or day0.date()
        end_d = max(_date(state.get("to")) or day0.date(), start_d)
        start = day0.replace(year=start_d.year, month=start_d.month, day=start_d.day)
        span = (end_d - start_d).days + 1
    else:
        start = day0 - timedelta(days=span - 1)
    window = q.Window(start, start + timedelta(days=span), now)
    steps = 24 if span == 1 else 28 if span == 7 else min(span, 60)
    return window, steps, "hour" if span == 1 else "day"


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


# --- layout --------------------------------------------------------------------------------------


def layout(**query: Any) -> html.Div:
    """Controls and empty panels; every figure arrives through the callbacks below."""
    app = context()
    settings = app.settings
    state = initial_state(query, settings.language)
    lang = state["lang"]
    today = app.now().date()
    try:
        opening = selected_unit(query_key(state))
    except DBAPIError:  # the page still opens; the callbacks retry
        opening = None
    return html.Div(id=_pid("root"), className="cmd wall" if state["wall"] else "cmd", children=[
        dcc.Store(id=_pid("state"), data=state),
        dcc.Store(id=_pid("query"), data=query_key(state)),
        dcc.Store(id=_pid("view")), dcc.Store(id=_pid("evdata")), dcc.Store(id=_pid("delta")),
        dcc.Store(id=_pid("cursor"), data=0), dcc.Store(id=_pid("live")), dcc.Store(id=_pid("pick")),
        dcc.Store(id=_pid("panels")), dcc.Store(id=_pid("responders-hash")),
        dcc.Store(id=_pid("layer-names"), data=L.layer_names(lang)),
        dcc.Store(id=_pid("ev-style")), dcc.Store(id=_pid("heat-style")), dcc.Store(id=_pid("scenes")),
        dcc.Store(id=_pid("scene"), data={"mode": "all", "name": "overview"}),
        dcc.Store(id=_pid("text"), data={**table("live", lang), **table("play", lang)}),
        dcc.Interval(id=_pid("tick"), interval=settings.live_interval_ms),
        dcc.Interval(id=_pid("slow"), interval=5000),
        dcc.Interval(id=_pid("after-first"), interval=2000, max_intervals=1),
        dcc.Interval(id=_pid("play-tick"), interval=700, disabled=True),
        dcc.Interval(id=_pid("wall-tick"), interval=state["cycle"] * 1000, disabled=not state["wall"]),
        html.Div(className="cmd-bar", children=[
            html.Div(id=_pid("crumbs"), className="crumbs"),
            html.Div(id=_pid("scene-title"), className="scene-title"),
            html.Div(className="controls", children=[
                dcc.RadioItems(id=_pid("win"), value=state["win"], inline=True, className="seg",
                               options=[{"label": t(f"win.{w}", lang), "value": w} for w in WINDOWS]),
                dcc.DatePickerRange(id=_pid("range"), start_date=state["from"] or str(today - timedelta(days=6)),
                                    end_date=state["to"] or str(today), display_format="YYYY-MM-DD",
                                    className="range" if state["win"] == "custom" else "range hidden"),
                dcc.Dropdown(id=_pid("cats"), multi=True, value=state["cats"], className="cats",
                             placeholder=t("cats.all", lang), options=[]),
                html.Button(t("play.play", lang), id=_pid("play"), n_clicks=0, className="btn"),
                html.A(t("lang.switch", lang), id=_pid("lang"), className="btn", href="?lang=en"),
            ]),
            html.Div(id=_pid("live-badge"), className="live-badge"),
        ]),
        html.Div(id=_pid("kpis"), className="kpis"),
        html.Div(className="cmd-main", children=[
            html.Section(className="panel left", children=[
                html.H3(t("panel.ranking", lang)), html.Div(id=_pid("ranking"), className="rank-wrap"),
                html.H3(t("panel.trend", lang)),
                html.Div(id=_pid("trend"), className="trend"),
            ]),
            html.Section(className="panel centre", children=[
                L.map_component(page=PAGE, center=settings.map_center, zoom=settings.map_zoom,
                                tile_url=settings.tile_url, attribution=settings.tile_attribution,
                                checked=state["layers"], lang=lang,
                                bounds=[list(p) for p in opening.bounds] if opening else None),
                html.Div(id=_pid("legend")),
                html.Div(className="playback", children=[
                    dcc.Slider(id=_pid("slider"), min=0, max=24, step=1, value=24, marks=None,
                               updatemode="drag", allow_direct_input=False),
                    html.Span(id=_pid("play-label"), className="play-label"),
                ]),
            ]),
            html.Section(className="panel right", children=[
                html.H3(t("panel.feed", lang)), html.Ul(id=_pid("feed"), className="feed"),
            ]),
        ]),
    ])  # fmt: skip


# --- callbacks: state ----------------------------------------------------------------------------


# Every control writes the one page state; the fetch key changes only when data must. Reduced in
# the browser (screen.js gridgov.reduceState, the same rules as ``initial_state``/``query_key``):
# a drill-down then starts fetching without a round trip first.
dash.clientside_callback(
    "function(win, start, end, cats, overlays, click, pick, state, key, names){"
    " return window.gridgov.reduceState(win, start, end, cats, overlays, click, pick, state, key, names); }",
    Output(_pid("state"), "data"),
    Output(_pid("query"), "data"),
    Input(_pid("win"), "value"),
    Input(_pid("range"), "start_date"),
    Input(_pid("range"), "end_date"),
    Input(_pid("cats"), "value"),
    Input(_pid("layers"), "overlays"),
    Input(_pid("bounds"), "clickData"),
    Input(_pid("pick"), "data"),
    State(_pid("state"), "data"),
    State(_pid("query"), "data"),
    State(_pid("layer-names"), "data"),
    prevent_initial_call=True,
)


dash.clientside_callback(
    "function(state){ return window.gridgov.syncUrl(state); }",
    Output(_pid("lang"), "href"),
    Input(_pid("state"), "data"),
)
dash.clientside_callback(
    "function(v, view){ return window.gridgov.rememberViewport(v, view); }",
    Output(_pid("scene-title"), "title"),
    Input(_pid("map"), "viewport"),
    Input(_pid("view"), "data"),
)
dash.clientside_callback(
    "function(win){ return win === 'custom' ? 'range' : 'range hidden'; }",
    Output(_pid("range"), "className"),
    Input(_pid("win"), "value"),
)


# --- callbacks: the selected unit ----------------------------------------------------------------


def selected_unit(key: dict[str, Any]) -> q.UnitRef | None:
    """The unit the query asks for (the root when none or unknown), resolved by every callback
    that needs it, so the map, the events and the numbers are fetched side by side."""
    app = context()
    engine, scope = app.engine, app.scope
    ref = (q.unit_ref(engine, scope, key["unit"]) if key["unit"] else None) or q.root_unit(
        engine, scope
    )
    if ref is not None:  # found under the user's scope: look at it through its own
        narrow_to(ref.code)
    return ref


@dash.callback(
    Output(_pid("view"), "data"),
    Output(_pid("bounds"), "data"),
    Output(_pid("bounds"), "hideout"),
    Output(_pid("bands"), "data"),
    Output(_pid("bands"), "hideout"),
    Output(_pid("outline"), "data"),
    Output(_pid("roads"), "data"),
    Output(_pid("buildings"), "data"),
    Output(_pid("buildings"), "hideout"),
    Output(_pid("map"), "viewport"),
    Output(_pid("crumbs"), "children"),
    Output(_pid("legend"), "children"),
    Output(_pid("cats"), "options"),
    Input(_pid("query"), "data"),
    State(_pid("view"), "data"),
)
def show_unit(key, view):  # type: ignore[no-untyped-def]
    """Geometry of the selection: children outlined and labelled, the next level by band."""
    if view and view["requested"] == key["unit"] and view["lang"] == key["lang"]:
        raise PreventUpdate
    app = context()
    engine, scope, lang = app.engine, app.scope, key["lang"]
    ref = selected_unit(key)
    if ref is None:
        raise PreventUpdate
    (s, w), (n, e) = ref.bounds
    tol = max(n - s, e - w) / 1500  # about a pixel of a wall screen showing the whole unit
    children = q.unit_layer(engine, scope, within=ref.code, depth=ref.depth + 1, tolerance=tol)
    detail = q.unit_layer(engine, scope, within=ref.code, depth=ref.depth + 2, tolerance=tol)
    if len(detail["features"]) > DETAIL_MAX:  # too fine to read at this zoom: one level only
        detail = L.EMPTY
    if not children["features"]:  # a leaf (grid): show itself
        children = q.unit_layer(engine, scope, within=ref.code, depth=ref.depth, tolerance=tol / 4)
    band_layer = detail if detail["features"] else _unlabelled(children)
    band_level = (
        band_layer["features"][0]["properties"]["level"] if band_layer["features"] else None
    )
    band = app.settings.band(band_level) if band_level else None
    root = q.root_unit(engine, scope)
    outline = (
        q.unit_layer(engine, scope, within=root.code, depth=root.depth, tolerance=tol)
        if root
        else L.EMPTY
    )
    roads = q.roads_layer(engine, bounds=ref.bounds, tolerance=tol)
    new_view = {"requested": key["unit"], "lang": lang, "code": ref.code, "depth": ref.depth,
                "level": ref.level, "bounds": [[s, w], [n, e]], "name": ref.name}  # fmt: skip
    cats = [{"label": c["name_en" if lang == "en" else "name"], "value": c["code"]}
            for c in q.categories(engine) if not c["parent_code"]]  # fmt: skip
    return (
        new_view, children, {"selected": ref.code, "lang": lang}, band_layer,
        {"bands": app.settings.bands, "colours": L.BAND_COLOURS},
        outline, roads, L.one_point((w + e) / 2, (s + n) / 2),
        {"url": "/tiles/buildings/{z}/{x}/{y}.pbf", "minZoom": 14},
        _viewport([[s, w], [n, e]], first=view is None),
        _crumbs(ref.path), L.legend(lang, band), cats,
    )  # fmt: skip


def _unlabelled(layer: dict[str, Any]) -> dict[str, Any]:
    """The same features for the band layer, marked so they are not labelled a second time."""
    features = [
        {**f, "properties": {**f["properties"], "nolabel": True}} for f in layer["features"]
    ]
    return {**layer, "features": features}


def _viewport(bounds: list[list[float]], *, first: bool) -> Any:
    """Fly to a drilled unit. The map opens on the first one (see ``layout``): moving it again
    would redraw every layer, and a flight redraws them every frame (~0.3 s of main thread at
    province scale)."""
    return no_update if first else {"bounds": bounds, "transition": "flyToBounds"}


def _crumbs(path: tuple[tuple[str, str], ...]) -> list[Any]:
    items: list[Any] = []
    for i, (code, name) in enumerate(path):
        if i:
            items.append(html.Span("›", className="crumb-sep"))
        last = i == len(path) - 1
        code_attr: dict[str, Any] = {"data-code": code}  # read by screen.js's click handler
        items.append(html.Button(name, className="crumb pick current" if last else "crumb pick",
                                 **code_attr))  # fmt: skip
    return items


# --- callbacks: events, numbers, live ------------------------------------------------------------


@dash.callback(
    Output(_pid("evdata"), "data"),
    Output(_pid("cursor"), "data"),
    Output(_pid("ev-style"), "data"),
    Output(_pid("heat"), "data"),
    Output(_pid("heat-style"), "data"),
    Output(_pid("slider"), "max"),
    Output(_pid("slider"), "value"),
    Input(_pid("query"), "data"),
)
def load_events(key):  # type: ignore[no-untyped-def]
    """Events of the window as column arrays, the heat cells, and the wall-mode scene frames."""
    ref = selected_unit(key)
    if ref is None:
        raise PreventUpdate
    app = context()
    engine, scope, lang, now = app.engine, app.scope, key["lang"], app.now()
    window, steps, _bucket = window_of(key, now)
    cursor = q.max_rev(engine)  # read first: a change racing the fetch comes again as a delta
    rows = q.map_events(engine, scope, within=ref.code, window=window)
    (s, w), (n, e) = ref.bounds
    cell = max(max(n - s, e - w) / 120, 0.0005)
    cells = q.heat_cells(engine, scope, within=ref.code, window=window, cell=cell, steps=steps,
                         categories=key["cats"])  # fmt: skip
    style = L.event_hideout(lang, q.categories(engine), now=now, cats=key["cats"])
    style.update(
        tz=app.settings.timezone,
        start=window.start.timestamp(),
        stepS=(window.end - window.start).total_seconds() / steps,
    )
    heat = L.one_point((w + e) / 2, (s + n) / 2, cells=cells)
    data = {"cols": list(q.EVENT_COLUMNS), "rows": rows, "asof": now.timestamp()}
    return data, cursor, style, heat, {"steps": steps}, steps, steps


@dash.callback(
    Output(_pid("scenes"), "data"),
    Input(_pid("view"), "data"),
    Input(_pid("query"), "data"),
    State(_pid("state"), "data"),
)
def wall_scenes(view, key, state):  # type: ignore[no-untyped-def]
    """Frames of the wall-mode scenes; only computed on a wall screen."""
    if not view or not state.get("wall"):
        raise PreventUpdate
    app = context()
    window, _steps, _bucket = window_of(key, app.now())
    hot = q.hottest_child(app.engine, app.scope, within=view["code"], window=window)
    hot_ref = q.unit_ref(app.engine, app.scope, hot) if hot else None
    return {"overview": view["bounds"],
            "hotspots": [list(p) for p in hot_ref.bounds] if hot_ref else view["bounds"],
            "titles": {s: t(f"scene.{s}", key["lang"]) for s in SCENES}}  # fmt: skip


@dash.callback(
    Output(_pid("delta"), "data"),
    Output(_pid("cursor"), "data", allow_duplicate=True),
    Output(_pid("live"), "data"),
    Input(_pid("tick"), "n_intervals"),
    State(_pid("cursor"), "data"),
    State(_pid("view"), "data"),
    prevent_initial_call=True,
)
def tick(n, cursor, view):  # type: ignore[no-untyped-def]
    """One index probe per second; rows are fetched only when the cursor moved."""
    if not view or not cursor:
        raise PreventUpdate
    app = context()
    try:
        top = q.max_rev(app.engine)
        if top <= cursor:
            return no_update, no_update, {"ok": True, "n": n}
        rows = q.events_after(app.engine, app.scope, rev=cursor, within=view["code"])
    except DBAPIError:  # database restarting or gone: keep showing what we have, marked stale
        return no_update, no_update, {"ok": False, "n": n}
    new_cursor = max([top, *(r[-1] for r in rows)])
    return {"rows": rows, "cursor": new_cursor}, new_cursor, {"ok": True, "n": n}


dash.clientside_callback(
    "function(base, delta){ return window.gridgov.mergeEvents(base, delta); }",
    Output(_pid("events"), "data"),
    Input(_pid("evdata"), "data"),
    Input(_pid("delta"), "data"),
)


@dash.callback(
    Output(_pid("panels"), "data"),
    Input(_pid("query"), "data"),
    Input(_pid("delta"), "data"),
)
def numbers(key, _delta):  # type: ignore[no-untyped-def]
    """KPIs against the previous period and target, ranking, trend and the feed, as HTML that
    screen.js sets in one go (see dashboard.markup)."""
    try:
        ref = selected_unit(key)
    except DBAPIError:
        raise PreventUpdate from None
    if ref is None:
        raise PreventUpdate
    app = context()
    engine, scope, lang, now = app.engine, app.scope, key["lang"], app.now()
    window, _steps, bucket = window_of(key, now)
    tz, code = app.settings.timezone, ref.code
    # Independent reads on their own connections: the database runs them side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [
            # each worker runs in a copy of this request's context: its database scope with it
            pool.submit(
                copy_context().run, q.kpis, engine, scope, within=code, window=window, tz=tz
            ),
            pool.submit(
                copy_context().run,
                q.kpis,
                engine,
                scope,
                within=code,
                window=window.previous(),
                tz=tz,
            ),
            pool.submit(
                copy_context().run,
                q.ranking,
                engine,
                scope,
                within=code,
                window=window,
                limit=RANK_SIZE,
            ),
            pool.submit(
                copy_context().run,
                q.trend,
                engine,
                scope,
                within=code,
                window=window,
                bucket=bucket,
                tz=tz,
            ),
        ]
    try:
        current, previous, ranks, trend = (job.result() for job in jobs)
        feed = q.latest_changes(engine, scope, within=code, limit=FEED_SIZE)
    except DBAPIError:
        raise PreventUpdate from None
    if lang == "en":
        feed = [{**r, "category": r["category_en"] or r["category"]} for r in feed]
    return {
        _pid("kpis"): to_html(L.kpi_cards(current, previous, lang=lang, one_day=window.days == 1, page=PAGE)),
        _pid("ranking"): to_html(L.ranking_table(ranks, lang=lang, page=PAGE)),
        _pid("trend"): to_html(L.trend_bars(trend, lang=lang, bucket=bucket)),
        _pid("feed"): to_html(L.feed_items(feed, lang=lang, now=now)),
    }  # fmt: skip


dash.clientside_callback(
    "function(panels){ return window.gridgov.fillPanels(panels); }",
    Output(_pid("panels"), "modified_timestamp"),
    Input(_pid("panels"), "data"),
)


@dash.callback(
    Output(_pid("responders"), "data"),
    Output(_pid("dispatch"), "data"),
    Output(_pid("responders-hash"), "data"),
    Input(_pid("query"), "data"),
    Input(_pid("slow"), "n_intervals"),
    Input(_pid("after-first"), "n_intervals"),
    State(_pid("responders-hash"), "data"),
    prevent_initial_call=True,
)
def show_responders(key, _n, _first, shown):  # type: ignore[no-untyped-def]
    """Positions every few seconds; sent only when they changed (redrawing hundreds of
    responders for nothing cost the page 0.1-0.2 s every five seconds). On a new page they come
    just after the first view is drawn, not in the same burst as the map, events and numbers."""
    app = context()
    try:
        ref = selected_unit(key)
        if ref is None:
            raise PreventUpdate
        rows = q.responders(app.engine, app.scope, within=ref.code)
    except DBAPIError:
        raise PreventUpdate from None
    layers = L.responders_geojson(rows, key["lang"]), L.dispatch_geojson(rows)
    digest = hashlib.blake2b(
        json.dumps(layers, sort_keys=True).encode(), digest_size=16
    ).hexdigest()
    if digest == shown:
        raise PreventUpdate
    return *layers, digest


# --- client-side: live badge, playback, wall mode ------------------------------------------------

dash.clientside_callback(
    "function(live, n, text){ return window.gridgov.liveBadge(live, n, text); }",
    Output(_pid("live-badge"), "children"),
    Output(_pid("live-badge"), "className"),
    Input(_pid("live"), "data"),
    Input(_pid("tick"), "n_intervals"),
    State(_pid("text"), "data"),
)
dash.clientside_callback(
    "function(n, nt, value, max, disabled, text){"
    " return window.gridgov.playback(n, nt, value, max, disabled, text); }",
    Output(_pid("slider"), "value", allow_duplicate=True),
    Output(_pid("play-tick"), "disabled"),
    Output(_pid("play"), "children"),
    Input(_pid("play"), "n_clicks"),
    Input(_pid("play-tick"), "n_intervals"),
    State(_pid("slider"), "value"),
    State(_pid("slider"), "max"),
    State(_pid("play-tick"), "disabled"),
    State(_pid("text"), "data"),
    prevent_initial_call=True,
)
dash.clientside_callback(
    "function(style, value, max, scene, text){"
    " return window.gridgov.eventHideout(style, value, max, scene, text); }",
    Output(_pid("events"), "hideout"),
    Output(_pid("play-label"), "children"),
    Input(_pid("ev-style"), "data"),
    Input(_pid("slider"), "value"),
    Input(_pid("slider"), "max"),
    Input(_pid("scene"), "data"),
    State(_pid("text"), "data"),
)
dash.clientside_callback(
    "function(style, value, max){ return window.gridgov.heatHideout(style, value, max); }",
    Output(_pid("heat"), "hideout"),
    Input(_pid("heat-style"), "data"),
    Input(_pid("slider"), "value"),
    Input(_pid("slider"), "max"),
)
dash.clientside_callback(
    "function(n, scenes, events, responders){"
    " return window.gridgov.wallScene(n, scenes, events, responders); }",
    Output(_pid("map"), "viewport", allow_duplicate=True),
    Output(_pid("scene"), "data"),
    Output(_pid("scene-title"), "children"),
    Input(_pid("wall-tick"), "n_intervals"),
    State(_pid("scenes"), "data"),
    State(_pid("events"), "data"),
    State(_pid("responders"), "data"),
    prevent_initial_call=True,
)
