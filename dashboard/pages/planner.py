"""网格规划: analyse a unit's grids, propose a redraw, edit by hand, save, compare, approve, export.

URL query: ``unit`` (a community, township or county code). The working plan lives in the
browser as building → grid and block → grid (``planner-work``, with undo/redo history); each
change is rebuilt on the server by ``etl.plans.assemble`` so totals, Polsby-Popper and the
contiguity check are always the real ones. Block and building geometry reach the browser once per
unit; colours, selection and moved buildings change ``hideout`` only (assets/planner.js).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import dash
import dash_leaflet as dl
import geopandas as gpd
import pandas as pd
import shapely
from dash import Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard.app import context
from dashboard.auth import may
from dashboard.personal import audit_export
from etl import plans
from etl.access import Perm
from etl.queries import planner as q

PAGE = "planner"
dash.register_page(__name__, path="/planner", name="网格规划", order=5, i18n_key="nav.planner")

JS = "gridgovPlanner"
BAND_COLOURS = {"under": "#3b82f6", "in": "#22c55e", "over": "#ef4444"}
HISTORY = 50
PANEL = {"background": "#111a2e", "padding": "0.5rem", "borderRadius": "0.4rem"}
EMPTY: dict[str, Any] = {"type": "FeatureCollection", "features": []}
INPUT = {"color": "#111", "background": "#f8fafc"}
LABEL = {"color": "#e2e8f0", "marginRight": "0.6rem"}


def _pid(name: str) -> str:
    return f"{PAGE}-{name}"


def fn(name: str) -> dict[str, str]:
    return {"variable": f"{JS}.{name}"}


# --- pure parts: working state and what the page shows -------------------------------------------


def snapshot(proposal: plans.Proposal) -> dict[str, dict[str, str]]:
    """The JSON form of a plan's assignment: building id → grid, block id → grid."""
    return {
        "buildings": {str(k): v for k, v in proposal.assignment["grid_code"].items()},
        "blocks": {str(k): v for k, v in proposal.block_grid.items()},
    }


def push(work: dict[str, Any] | None, snap: dict[str, Any]) -> dict[str, Any]:
    """A new state on top of the current one; the redo tail is dropped, history is bounded."""
    history = list((work or {}).get("history", []))[: (work or {}).get("pos", -1) + 1]
    history = (history + [snap])[-HISTORY:]
    return {**(work or {}), "history": history, "pos": len(history) - 1}


def undo(work: dict[str, Any]) -> dict[str, Any]:
    return {**work, "pos": max(work["pos"] - 1, 0)}


def redo(work: dict[str, Any]) -> dict[str, Any]:
    return {**work, "pos": min(work["pos"] + 1, len(work["history"]) - 1)}


def current(work: dict[str, Any] | None) -> dict[str, Any] | None:
    if not work or not work.get("history"):
        return None
    return work["history"][work["pos"]]


def assignment_series(snap: dict[str, Any]) -> tuple[pd.Series, pd.Series]:
    buildings = pd.Series({int(k): v for k, v in snap["buildings"].items()}, dtype=object)
    return buildings, pd.Series(snap["blocks"], dtype=object)


def moved_buildings(before: dict[str, Any] | None, after: dict[str, Any]) -> list[int]:
    if before is None:
        return []
    old = before["buildings"]
    return sorted(int(b) for b, g in after["buildings"].items() if old.get(b) != g)


def grid_table(before: plans.Proposal | None, after: plans.Proposal) -> list[dict[str, Any]]:
    """One row per grid code in either plan: households, band status, Polsby-Popper, parts."""
    codes = sorted(set(after.grids.index) | set(before.grids.index if before else []))
    rows = []
    for code in codes:
        row: dict[str, Any] = {"code": code}
        for tag, p in (("before", before), ("after", after)):
            g = p.grids.loc[code] if p is not None and code in p.grids.index else None
            row[f"hh_{tag}"] = int(g["households"]) if g is not None else None
            row[f"status_{tag}"] = g["status"] if g is not None else "—"
            row[f"pp_{tag}"] = round(float(g["polsby_popper"]), 3) if g is not None else None
        g = after.grids.loc[code] if code in after.grids.index else None
        row["parts"] = int(g["parts"]) if g is not None else 0
        row["locked"] = bool(g["locked"]) if g is not None else False
        rows.append(row)
    return rows


def colours(proposal: plans.Proposal) -> dict[str, str]:
    return {c: BAND_COLOURS[s] for c, s in proposal.grids["status"].items()}


def feature_collection(frame: gpd.GeoDataFrame, props: list[str]) -> dict[str, Any]:
    """GeoJSON for Leaflet (lon/lat), ids and a few properties only."""
    shapes = shapely.to_geojson(frame.to_crs(4326).geometry.values)
    import json

    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": json.loads(g),
         "properties": {"id": _plain(i), **{p: _plain(frame.at[i, p]) for p in props}}}
        for i, g in zip(frame.index, shapes, strict=True)
    ]}  # fmt: skip


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def neighbours(proposal: plans.Proposal, blocks: list[str]) -> list[str]:
    """Grids that share a boundary with the selected blocks (and are not their own grid)."""
    if not blocks:
        return []
    shape = shapely.union_all(proposal.blocks.loc[blocks].geometry.values)
    own = {proposal.block_grid.get(b) for b in blocks}
    touching = shapely.length(shapely.intersection(proposal.grids.geometry.values, shape.boundary))
    return [
        c for c, t in zip(proposal.grids.index, touching, strict=True) if t > 0 and c not in own
    ]


def bounds_of(area: plans.Area) -> list[list[float]]:
    west, south, east, north = area.communities.to_crs(4326).total_bounds
    return [[south, west], [north, east]]


# --- layout --------------------------------------------------------------------------------------


def _map(name: str, title: str) -> html.Div:
    return html.Div(style={**PANEL, "flex": "1"}, children=[
        html.H4(title, style={"margin": "0 0 0.3rem 0"}),
        dl.Map(id=_pid(f"map-{name}"), center=[32.06, 108.04], zoom=14,
               style={"height": "52vh"}, children=[
            dl.GeoJSON(id=_pid(f"{name}-blocks"), data=EMPTY, style=fn("blockStyle"),
                       onEachFeature=fn("blockTip"), hideout={}),
            dl.GeoJSON(id=_pid(f"{name}-buildings"), data=EMPTY, style=fn("buildingStyle"),
                       hideout={}, interactive=False),
            dl.GeoJSON(id=_pid(f"{name}-grids"), data=EMPTY, style=fn("gridStyle"),
                       onEachFeature=fn("gridLabel"), interactive=False),
            dl.ScaleControl(position="bottomleft", imperial=False),
        ]),
    ])  # fmt: skip


def _num(name: str, value: int, width: str = "5rem") -> dcc.Input:
    return dcc.Input(id=_pid(name), type="number", value=value, style={"width": width, **INPUT})


def layout(unit: str | None = None, **_query: Any) -> html.Div:
    """Controls, two maps (current | plan), tables; callbacks fill everything."""
    app = context()
    grid_band = app.settings.band("grid") or (300, 500)
    micro_band = app.settings.band("microgrid") or (30, 100)
    with app.engine.connect() as conn:
        units = q.planning_units(conn, app.scope)
    options = [{"label": f"{u['code']} {u['name']}", "value": u["code"]} for u in units]
    bar = {"display": "flex", "gap": "0.6rem", "alignItems": "center", "flexWrap": "wrap"}
    return html.Div(id=_pid("root"), style={"height": "100%", "overflow": "auto", "padding": "0.5rem"}, children=[
        dcc.Store(id=_pid("work")), dcc.Store(id=_pid("base")), dcc.Store(id=_pid("selected"), data=[]),
        dcc.Download(id=_pid("download")),
        html.Div(style=bar, children=[
            dcc.Dropdown(id=_pid("unit"), options=options, value=unit, placeholder="选择社区/乡镇/县",
                         style={"width": "22rem", "color": "#111"}),
            html.Span("网格户数"), _num("low", grid_band[0]), html.Span("–"), _num("high", grid_band[1]),
            html.Span("微网格"), _num("mlow", micro_band[0]), html.Span("–"), _num("mhigh", micro_band[1]),
            dcc.Checklist(id=_pid("opts"), options=[{"label": "全面重划", "value": "full"},
                                                    {"label": "生成微网格", "value": "micro"}],
                          value=["micro"], inline=True, labelStyle=LABEL),
            html.Span("种子"), _num("seed", 0, "4rem"),
            dcc.Dropdown(id=_pid("lock"), multi=True, placeholder="锁定网格（不调整）",
                         style={"minWidth": "14rem", "color": "#111"}),
            html.Button("生成方案", id=_pid("propose"), n_clicks=0),
        ]),
        html.Div(id=_pid("message"), style={"margin": "0.3rem 0", "color": "#facc15"}),
        html.Div(style={"display": "flex", "gap": "0.5rem"}, children=[
            _map("current", "现状网格"), _map("plan", "调整方案（点击街区选择）"),
        ]),
        html.Div(style={**bar, "margin": "0.4rem 0"}, children=[
            html.Span(id=_pid("selection"), children="未选择街区"),
            dcc.Dropdown(id=_pid("target"), placeholder="移入相邻网格", style={"width": "14rem", "color": "#111"}),
            html.Button("移入", id=_pid("move"), n_clicks=0),
            html.Button("撤销", id=_pid("undo"), n_clicks=0), html.Button("重做", id=_pid("redo"), n_clicks=0),
            dcc.Input(id=_pid("name"), placeholder="方案名称", style={"width": "12rem", **INPUT}),
            html.Button("保存方案", id=_pid("save"), n_clicks=0),
        ]),
        html.Div(id=_pid("totals"), style=PANEL),
        html.Div(style={**bar, "margin": "0.4rem 0"}, children=[
            dcc.Dropdown(id=_pid("plans"), placeholder="已保存方案", style={"width": "18rem", "color": "#111"}),
            dcc.DatePickerSingle(id=_pid("effective"), date=str(app.now().date()), display_format="YYYY-MM-DD"),
            html.Button("批准生效", id=_pid("approve"), n_clicks=0),
            dcc.RadioItems(id=_pid("fmt"), value="gpkg", inline=True, labelStyle=LABEL, options=[
                {"label": "GeoPackage", "value": "gpkg"}, {"label": "Shapefile", "value": "shp"},
                {"label": "CSV 对照表", "value": "csv"}]),
            html.Button("导出", id=_pid("export"), n_clicks=0),
            dcc.Dropdown(id=_pid("compare-b"), placeholder="与…比较", style={"width": "18rem", "color": "#111"}),
            html.Button("比较", id=_pid("compare"), n_clicks=0),
        ]),
        html.Div(id=_pid("compare-out"), style=PANEL),
        html.H4("现状分析"), html.Div(id=_pid("analysis"), style=PANEL),
    ])  # fmt: skip


# --- rendering helpers (pure) ---------------------------------------------------------------------


def table_component(rows: list[dict[str, Any]]) -> html.Table:
    head = ["网格编码", "现状户数", "状态", "PP", "方案户数", "状态", "PP", "块数", "锁定"]
    body = [
        html.Tr([
            html.Td(r["code"]), html.Td(_n(r["hh_before"])), html.Td(r["status_before"]),
            html.Td(_n(r["pp_before"])), html.Td(_n(r["hh_after"])),
            html.Td(r["status_after"], style={"color": BAND_COLOURS.get(r["status_after"], "#ccc")}),
            html.Td(_n(r["pp_after"])),
            html.Td(r["parts"], style={"color": "#ef4444"} if r["parts"] > 1 else {}),
            html.Td("🔒" if r["locked"] else ""),
        ])
        for r in rows
    ]  # fmt: skip
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)],
                      id=_pid("grid-table"))  # fmt: skip


def _n(value: Any) -> str:
    return "—" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def violations_component(proposal: plans.Proposal) -> html.Ul:
    return html.Ul(
        [html.Li(f"{v['code']} {v['kind']}: {v['reason']}") for v in proposal.violations]
        or [html.Li("全部网格在户数范围内，且连片")],
        id=_pid("violations"),
    )


def totals_component(proposal: plans.Proposal) -> html.Div:
    m = proposal.metrics
    pp = m.get("mean_polsby_popper")
    head = (f"{m['n_grids']} 个网格（现状 {m['n_grids_before']}），{m['n_microgrids']} 个微网格；"
            f"超出范围 {m['n_out_of_band']}；调整楼栋 {m['buildings_moved']}，"
            f"涉及 {m['households_moved']:,} 户；平均 Polsby–Popper {pp:.3f}" if pp is not None else "")  # fmt: skip
    return html.Div([html.Div(head), violations_component(proposal)])


def analysis_component(table: pd.DataFrame, problems: pd.DataFrame) -> html.Div:
    rows = [
        html.Tr([html.Td(code), html.Td(r["name"]), html.Td(f"{r['households']:,.0f}"),
                 html.Td(f"{r['residents']:,}"), html.Td(r["buildings"]), html.Td(r["status"]),
                 html.Td(f"{r['deviation']:+,.0f}"), html.Td("、".join(r["problems"]))])
        for code, r in table.iterrows()
    ]  # fmt: skip
    head = ["编码", "名称", "户数", "人口", "楼栋", "状态", "偏差", "问题"]
    notes = [
        html.Li(f"{p.child or '（整体）'} {p.kind}: {p.detail}") for p in problems.itertuples()
    ]
    return html.Div([
        html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)]),
        html.Ul(notes),
    ])  # fmt: skip


# --- callbacks -----------------------------------------------------------------------------------


def _bands(low: Any, high: Any, mlow: Any, mhigh: Any, opts: list[str] | None) -> tuple:
    if low is None or high is None or int(low) > int(high):
        raise plans.PlanError("户数范围无效：下限须不大于上限")
    micro = (int(mlow), int(mhigh)) if "micro" in (opts or []) and mlow is not None else None
    return (int(low), int(high)), micro


def _rebuild(unit: str, snap: dict[str, Any], band: tuple, micro: tuple | None,
             locked: list[str] | None = None) -> tuple[plans.Area, plans.Proposal]:  # fmt: skip
    app = context()
    with app.engine.connect() as conn:
        area = plans.read_area(conn, app.scope, unit)
    blocks = plans.street_blocks(area)
    buildings, block_grid = assignment_series(snap)
    proposal = plans.assemble(area, blocks, buildings, block_grid.reindex(blocks.index),
                              band=band, micro_band=micro, locked=tuple(locked or ()))  # fmt: skip
    return area, proposal


@dash.callback(
    Output(_pid("current-blocks"), "data"), Output(_pid("plan-blocks"), "data"),
    Output(_pid("current-buildings"), "data"), Output(_pid("plan-buildings"), "data"),
    Output(_pid("current-grids"), "data"), Output(_pid("current-blocks"), "hideout"),
    Output(_pid("map-current"), "viewport"), Output(_pid("map-plan"), "viewport"),
    Output(_pid("base"), "data"), Output(_pid("work"), "data"), Output(_pid("lock"), "options"),
    Output(_pid("plans"), "options"), Output(_pid("compare-b"), "options"),
    Output(_pid("analysis"), "children"), Output(_pid("message"), "children", allow_duplicate=True),
    Input(_pid("unit"), "value"),
    State(_pid("low"), "value"), State(_pid("high"), "value"),
    prevent_initial_call="initial_duplicate",
)  # fmt: skip
def load_unit(unit: str | None, low: Any, high: Any) -> tuple:
    if not unit:
        raise PreventUpdate
    app = context()
    try:
        with app.engine.connect() as conn:
            area = plans.read_area(conn, app.scope, unit)
            table, problems = plans.analyse_unit(conn, app.scope, unit_child_parent(area),
                                                 bands=app.settings.bands)  # fmt: skip
            saved = q.list_plans(conn, app.scope, unit)
        blocks = plans.street_blocks(area)
        band = (int(low or 300), int(high or 500))
        base = (
            plans.current_proposal(area, band=band, blocks=blocks) if not area.grids.empty else None
        )
    except plans.PlanError as exc:
        return (*[no_update] * 14, str(exc))
    block_fc = feature_collection(blocks.assign(households=blocks["households"]), ["households"])
    house_fc = feature_collection(area.buildings, ["households"])
    snap = snapshot(base) if base is not None else None
    hide = {"grid": snap["blocks"], "colours": colours(base)} if base and snap else {}
    grids_fc = feature_collection(base.grids, ["households"]) if base is not None else EMPTY
    _fix_code(grids_fc)
    bounds = {"bounds": bounds_of(area), "transition": "fitBounds"}
    plan_opts = [{"label": f"{p['name']}（{p['status']}）", "value": p["id"]} for p in saved]
    lock_opts = [{"label": c, "value": c} for c in area.grids.index]
    work = push(None, snap) if snap else None
    return (block_fc, block_fc, house_fc, house_fc, grids_fc, hide, bounds, bounds, snap, work,
            lock_opts, plan_opts, plan_opts, analysis_component(table, problems), "")  # fmt: skip


def unit_child_parent(area: plans.Area) -> str:
    """The unit whose children the analysis lists: the community itself when one is chosen."""
    return str(area.unit["code"])


def _fix_code(fc: dict[str, Any]) -> None:
    for f in fc["features"]:
        f["properties"]["code"] = str(f["properties"]["id"])


@dash.callback(
    Output(_pid("work"), "data", allow_duplicate=True),
    Output(_pid("message"), "children", allow_duplicate=True),
    Input(_pid("propose"), "n_clicks"), Input(_pid("move"), "n_clicks"),
    Input(_pid("undo"), "n_clicks"), Input(_pid("redo"), "n_clicks"),
    State(_pid("unit"), "value"), State(_pid("work"), "data"), State(_pid("selected"), "data"),
    State(_pid("target"), "value"), State(_pid("low"), "value"), State(_pid("high"), "value"),
    State(_pid("mlow"), "value"), State(_pid("mhigh"), "value"), State(_pid("opts"), "value"),
    State(_pid("seed"), "value"), State(_pid("lock"), "value"),
    prevent_initial_call=True,
)  # fmt: skip
def edit(_p: int, _m: int, _u: int, _r: int, unit: str | None, work: dict | None,
         selected: list[str], target: str | None, low: Any, high: Any, mlow: Any, mhigh: Any,
         opts: list[str] | None, seed: Any, locked: list[str] | None) -> tuple:  # fmt: skip
    if not unit:
        raise PreventUpdate
    what = ctx.triggered_id
    if what == _pid("undo") and work:
        return undo(work), ""
    if what == _pid("redo") and work:
        return redo(work), ""
    app = context()
    try:
        band, micro = _bands(low, high, mlow, mhigh, opts)
        if what == _pid("propose"):
            with app.engine.connect() as conn:
                area = plans.read_area(conn, app.scope, unit)
            proposal = plans.propose(area, band=band, micro_band=micro, seed=int(seed or 0),
                                     full="full" in (opts or []), locked=locked or ())  # fmt: skip
            return push(work, snapshot(proposal)), f"方案已生成：{len(proposal.violations)} 项问题"
        snap = current(work)
        if snap is None or not selected or not target:
            return no_update, "先点击方案图中的街区，再选择相邻网格"
        area, proposal = _rebuild(unit, snap, band, None, locked)
        moved = plans.move(proposal, area, blocks=selected, to=target)
        return push(work, snapshot(moved)), f"已将 {len(selected)} 个街区移入 {target}"
    except plans.PlanError as exc:
        return no_update, str(exc)


@dash.callback(
    Output(_pid("plan-blocks"), "hideout"), Output(_pid("plan-buildings"), "hideout"),
    Output(_pid("plan-grids"), "data"), Output(_pid("totals"), "children"),
    Output(_pid("target"), "options"), Output(_pid("selection"), "children"),
    Input(_pid("work"), "data"), Input(_pid("selected"), "data"),
    State(_pid("unit"), "value"), State(_pid("base"), "data"),
    State(_pid("low"), "value"), State(_pid("high"), "value"), State(_pid("mlow"), "value"),
    State(_pid("mhigh"), "value"), State(_pid("opts"), "value"), State(_pid("lock"), "value"),
)  # fmt: skip
def render(work: dict | None, selected: list[str], unit: str | None, base: dict | None,
           low: Any, high: Any, mlow: Any, mhigh: Any, opts: list[str] | None,
           locked: list[str] | None) -> tuple:  # fmt: skip
    snap = current(work)
    if not unit or snap is None:
        raise PreventUpdate
    band, micro = _bands(low, high, mlow, mhigh, opts)
    area, proposal = _rebuild(unit, snap, band, micro, locked)
    before = (
        plans.assemble(area, proposal.blocks, *_series(base, proposal.blocks), band=band)
        if base
        else None
    )
    grids_fc = feature_collection(proposal.grids, ["households"])
    _fix_code(grids_fc)
    hide = {"grid": snap["blocks"], "colours": colours(proposal), "selected": selected or []}
    moved = {"moved": moved_buildings(base, snap)}
    totals = html.Div([totals_component(proposal), table_component(grid_table(before, proposal))])
    targets = [{"label": c, "value": c} for c in neighbours(proposal, selected or [])]
    label = f"已选 {len(selected)} 个街区：{'、'.join(selected)}" if selected else "未选择街区"
    return hide, moved, grids_fc, totals, targets, label  # fmt: skip


def _series(snap: dict[str, Any], blocks: gpd.GeoDataFrame) -> tuple[pd.Series, pd.Series]:
    buildings, block_grid = assignment_series(snap)
    return buildings, block_grid.reindex(blocks.index)


@dash.callback(
    Output(_pid("selected"), "data"),
    Input(_pid("plan-blocks"), "clickData"),
    State(_pid("selected"), "data"),
    prevent_initial_call=True,
)
def toggle_block(click: dict | None, selected: list[str] | None) -> list[str]:
    if not click:
        raise PreventUpdate
    block = click["properties"]["id"]
    chosen = list(selected or [])
    return [b for b in chosen if b != block] if block in chosen else chosen + [block]


@dash.callback(
    Output(_pid("message"), "children", allow_duplicate=True),
    Output(_pid("plans"), "options", allow_duplicate=True),
    Output(_pid("compare-b"), "options", allow_duplicate=True),
    Input(_pid("save"), "n_clicks"), Input(_pid("approve"), "n_clicks"),
    State(_pid("unit"), "value"), State(_pid("work"), "data"), State(_pid("name"), "value"),
    State(_pid("plans"), "value"), State(_pid("effective"), "date"),
    State(_pid("low"), "value"), State(_pid("high"), "value"), State(_pid("mlow"), "value"),
    State(_pid("mhigh"), "value"), State(_pid("opts"), "value"), State(_pid("lock"), "value"),
    prevent_initial_call=True,
)  # fmt: skip
def save_or_approve(_s: int, _a: int, unit: str | None, work: dict | None, name: str | None,
                    plan_id: int | None, effective: str | None, low: Any, high: Any, mlow: Any,
                    mhigh: Any, opts: list[str] | None, locked: list[str] | None) -> tuple:  # fmt: skip
    app = context()
    try:
        if ctx.triggered_id == _pid("save"):
            snap = current(work)
            name = (name or "").strip()
            if not unit or snap is None or not name:
                return "先生成方案并填写名称", no_update, no_update
            band, micro = _bands(low, high, mlow, mhigh, opts)
            _, proposal = _rebuild(unit, snap, band, micro, locked)
            new_id = plans.save_plan(app.engine, app.scope, proposal, name=name,
                                     created_by=app.scope.user)  # fmt: skip
            message = f"方案“{name}”已保存（编号 {new_id}）"
        else:
            if not may(Perm.PLANS_APPROVE):
                return "无权批准方案 you may not approve plans", no_update, no_update
            if not plan_id or not effective:
                return "先选择已保存方案和生效日期", no_update, no_update
            result = plans.approve_plan(app.engine, app.scope, int(plan_id),
                                        effective=date.fromisoformat(effective[:10]),
                                        actor=app.scope.user)  # fmt: skip
            message = (f"方案 {plan_id} 已批准，{result.effective} 起生效：新建 {len(result.created)}，"
                       f"停用 {len(result.closed)}，保留 {len(result.untouched)}")  # fmt: skip
    except plans.PlanError as exc:
        return str(exc), no_update, no_update
    with app.engine.connect() as conn:
        saved = q.list_plans(conn, app.scope, unit)
    options = [{"label": f"{p['name']}（{p['status']}）", "value": p["id"]} for p in saved]
    return message, options, options


@dash.callback(
    Output(_pid("download"), "data"),
    Input(_pid("export"), "n_clicks"),
    State(_pid("plans"), "value"), State(_pid("fmt"), "value"),
    prevent_initial_call=True,
)  # fmt: skip
def export(_n: int, plan_id: int | None, fmt: str) -> dict[str, Any]:
    if not plan_id:
        raise PreventUpdate
    app = context()
    with app.engine.connect() as conn:
        filename, data = plans.export_plan(conn, app.scope, int(plan_id), fmt)
    audit_export(app.engine, filename, plan=int(plan_id), format=fmt)
    return dcc.send_bytes(data, filename)


@dash.callback(
    Output(_pid("compare-out"), "children"),
    Input(_pid("compare"), "n_clicks"),
    State(_pid("plans"), "value"), State(_pid("compare-b"), "value"),
    prevent_initial_call=True,
)  # fmt: skip
def compare(_n: int, a: int | None, b: int | None) -> Any:
    if not a or not b:
        return "选择两个方案进行比较"
    app = context()
    with app.engine.connect() as conn:
        result = q.compare_plans(conn, app.scope, int(a), int(b))
    return compare_component(result)


def compare_component(result: q.PlanComparison) -> html.Div:
    s = result.summary
    rows = [html.Tr([html.Td(code), html.Td(f"{r.households_a:,.0f}"), html.Td(f"{r.households_b:,.0f}")])
            for code, r in result.grids.iterrows()]  # fmt: skip
    return html.Div([
        html.Div(f"调整楼栋 {s['buildings_moved']}，涉及 {s['households_moved']:,} 户；"
                 f"方案A {s['grids_a']} 个网格，方案B {s['grids_b']} 个；仅A：{'、'.join(s['only_in_a']) or '无'}；"
                 f"仅B：{'、'.join(s['only_in_b']) or '无'}"),
        html.Table([html.Thead(html.Tr([html.Th("网格"), html.Th("A 户数"), html.Th("B 户数")])),
                    html.Tbody(rows)]),
    ])  # fmt: skip
