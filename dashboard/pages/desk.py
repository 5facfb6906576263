"""The event desk 事件工作台 (/desk): queues per level, filters, the case card with its timeline
and the actions the current state allows (``geo.workflow.allowed_actions``), and a report form.

Callbacks unpack inputs, call one ``etl.queries.events`` read or ``etl.incidents`` write, and
shape the output; the acting user is chosen at the top (level and name) until accounts exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dash
from dash import ALL, Input, Output, State, ctx, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from dashboard.app import context
from dashboard.personal import protect_one, search_refusal
from etl import incidents as inc
from etl.db import transaction
from etl.deadlines import work_calendar
from etl.queries import events as q
from etl.queries.screen import unit_ref
from geo import workflow as wf

dash.register_page(__name__, path="/desk", name="事件工作台", order=2, i18n_key="nav.desk")

LEVEL_NAMES = {"grid": "网格 Grid", "community": "社区 Community", "township": "镇街 Township",
               "county": "县指挥中心 County"}  # fmt: skip
ACTION_NAMES = {
    "verify": "核实 Verify", "cancel": "注销 Cancel", "file": "立案 File",
    "dispatch": "派遣 Dispatch", "handle": "处置 Handle", "report_back": "反馈 Report back",
    "check_pass": "核查通过 Check: pass", "check_fail": "核查不通过 Check: fail",
    "close": "结案 Close", "evaluate": "评价 Evaluate", "return": "退回 Return",
    "request_extension": "申请延时 Ask extension", "approve_extension": "批准延时 Approve",
    "reject_extension": "驳回延时 Reject", "backlog": "挂账 Backlog",
    "reactivate": "恢复办理 Reactivate", "escalate": "上报上级 Escalate",
}  # fmt: skip
FLAG_STYLE = {"overdue": "#c62828", "due_soon": "#ef6c00", "paused": "#6d4c41"}
COLUMNS = [("code", "编号 Code"), ("category", "类别 Category"), ("status", "状态 Status"),
           ("handling_unit_code", "承办单位 Unit"), ("reported", "上报 Reported"),
           ("due", "时限 Due"), ("deadline", "时限状态 Deadline"), ("dup", "重复 Dup of")]  # fmt: skip


def _pid(name: str) -> str:
    return f"desk-{name}"


def _fmt(t: datetime | None) -> str:
    return t.astimezone(context().now().tzinfo).strftime("%m-%d %H:%M") if t else ""


def layout(**_query: Any) -> html.Div:
    return html.Div(className="desk", children=[
        html.Div(className="desk-bar", children=[
            html.Label("身份 Acting as"),
            dcc.Dropdown(id=_pid("level"), value="county", clearable=False, style={"width": 220},
                         options=[{"label": v, "value": k} for k, v in LEVEL_NAMES.items()]),
            dcc.Input(id=_pid("actor"), value="值班员", placeholder="姓名 name", debounce=True),
            dcc.Dropdown(id=_pid("status"), multi=True, placeholder="状态 status",
                         options=list(q.OPEN_STATUSES), style={"minWidth": 220}),
            dcc.Dropdown(id=_pid("category"), placeholder="类别 category", style={"width": 200}),
            dcc.Checklist(id=_pid("overdue"), options=[{"label": " 仅超期 overdue only",
                                                        "value": "overdue"}], value=[]),
            dcc.Input(id=_pid("search"), placeholder="编号/描述 search", debounce=True),
        ], style={"display": "flex", "gap": "8px", "alignItems": "center", "flexWrap": "wrap"}),
        dcc.Tabs(id=_pid("queue"), value="county",
                 children=[dcc.Tab(label=v, value=k) for k, v in LEVEL_NAMES.items()]),
        html.Div(style={"display": "flex", "gap": "12px"}, children=[
            html.Div(style={"flex": "3", "minWidth": 0}, children=[
                dash_table.DataTable(  # type: ignore[attr-defined]
                    id=_pid("table"), columns=[{"id": c, "name": n} for c, n in COLUMNS],
                    page_size=20, sort_action="native", style_table={"overflowX": "auto"},
                    style_cell={"fontSize": 13, "padding": "4px", "textAlign": "left"},
                    style_data_conditional=[
                        {"if": {"filter_query": f'{{deadline}} = "{k}"', "column_id": "deadline"},
                         "color": v, "fontWeight": "bold"} for k, v in FLAG_STYLE.items()],
                ),
                html.Details(open=False, children=[
                    html.Summary("上报事件 Report an event"), _report_form()]),
            ]),
            html.Div(id=_pid("card"), style={"flex": "2", "minWidth": 0}),
        ]),
        dcc.Store(id=_pid("selected")),
        dcc.Store(id=_pid("version")),
        dcc.Store(id=_pid("refresh"), data=0),
        dcc.Interval(id=_pid("tick"), interval=10_000),
    ])  # fmt: skip


def _report_form() -> html.Div:
    return html.Div(className="desk-form", children=[
        dcc.Dropdown(id=_pid("new-category"), placeholder="类别 category"),
        dcc.Input(id=_pid("new-lon"), type="number", placeholder="经度 lon", step="any"),
        dcc.Input(id=_pid("new-lat"), type="number", placeholder="纬度 lat", step="any"),
        dcc.Dropdown(id=_pid("new-channel"), value="patrol", clearable=False,
                     options=list(inc.CHANNELS)),
        dcc.Textarea(id=_pid("new-description"), placeholder="描述 description",
                     style={"width": "100%"}),
        html.Button("提交 Submit", id=_pid("new-submit")),
        html.Div(id=_pid("new-msg")),
    ], style={"display": "grid", "gap": "6px", "maxWidth": 420})  # fmt: skip


@dash.callback(
    Output(_pid("category"), "options"),
    Output(_pid("new-category"), "options"),
    Input(_pid("queue"), "id"),
)
def fill_categories(_id: str) -> tuple[list, list]:
    cats = inc.load_categories(context().engine).values()
    every = [{"label": f"{c.code} {c.name}", "value": c.code} for c in cats]
    return every, [o for o, c in zip(every, cats, strict=True) if c.leaf]


@dash.callback(
    Output(_pid("table"), "data"),
    Output(_pid("queue"), "children"),
    Input(_pid("queue"), "value"),
    Input(_pid("status"), "value"),
    Input(_pid("category"), "value"),
    Input(_pid("overdue"), "value"),
    Input(_pid("search"), "value"),
    Input(_pid("tick"), "n_intervals"),
    Input(_pid("refresh"), "data"),
)
def refresh_queue(level, statuses, category, overdue, search, _tick, _refresh):  # noqa: ANN001, ANN201
    app = context()
    now = app.now()
    if search_refusal(search):  # a phone or ID number finds a person: not without the permission
        search = None
    rows = q.desk_queue(
        app.engine, app.scope, now=now, calendar=work_calendar(app.settings), level=level,
        statuses=statuses or q.OPEN_STATUSES, category=category,
        overdue_at=now if overdue else None, text_query=search or None, limit=500,
    )  # fmt: skip
    counts = q.queue_counts(app.engine, app.scope, now=now)
    tabs = [dcc.Tab(label=f"{name} · {counts[k]['open']}"
                    + (f" (超期 {counts[k]['overdue']})" if counts[k]["overdue"] else ""), value=k)
            for k, name in LEVEL_NAMES.items()]  # fmt: skip
    data = [{"code": r["code"], "category": r["category"], "status": r["status"],
             "handling_unit_code": r["handling_unit_code"], "reported": _fmt(r["reported_at"]),
             "due": _fmt(r["due_at"]), "deadline": r["deadline"] or "",
             "dup": r["duplicate_of"] or ""} for r in rows]  # fmt: skip
    return data, tabs


@dash.callback(
    Output(_pid("selected"), "data"),
    Input(_pid("table"), "active_cell"),
    State(_pid("table"), "derived_viewport_data"),
)
def select_row(cell, view):  # noqa: ANN001, ANN201
    if not cell or not view or cell["row"] >= len(view):
        raise PreventUpdate
    return view[cell["row"]]["code"]


@dash.callback(
    Output(_pid("card"), "children"),
    Output(_pid("version"), "data"),
    Input(_pid("selected"), "data"),
    Input(_pid("level"), "value"),
    Input(_pid("refresh"), "data"),
)
def render_card(code, level, _refresh):  # noqa: ANN001, ANN201
    if not code:
        return html.P("选择一个事件 Select an event"), None
    app = context()
    card = q.event_card(app.engine, app.scope, code, now=app.now(),
                        calendar=work_calendar(app.settings))  # fmt: skip
    if card is None:
        return html.P(f"{code}: 不存在 not found"), None
    card = protect_one(app.engine, card, what=f"desk card {code}")
    allowed = q.allowed_for(card["state"], level)
    return _card(card, allowed), card["version"]


def _card(card: dict, allowed: list[str]) -> html.Div:
    facts = [("状态 Status", card["status"]), ("层级 Level", card["handling_level"]),
             ("承办 Unit", card["handling_unit_code"]), ("主管部门 Owner", card["department"]),
             ("时限 Due", _fmt(card["due_at"])), ("时限状态", card["deadline"] or ""),
             ("重复 Duplicate of", card["duplicate_of"] or ""),
             ("重复报告 Duplicates", ", ".join(card["duplicates"])),
             ("处置力量 Responder", card["responder"] or ""), ("版本 Version", card["version"])]  # fmt: skip
    return html.Div(className="desk-card", children=[
        html.H3(f"{card['code']} · {card['category']}"),
        html.P(card["description"] or ""),
        html.Table([html.Tr([html.Th(k), html.Td(str(v) if v is not None else "")])
                    for k, v in facts]),
        html.H4("可执行操作 Actions"),
        html.Div([html.Button(ACTION_NAMES.get(a, a), id={"type": _pid("action"), "action": a},
                              className="desk-action", style={"margin": "2px"})
                  for a in allowed] or [html.Em("当前身份无可执行操作 nothing for this level")]),
        dcc.Input(id=_pid("reason"), placeholder="理由 reason", style={"width": "100%"}),
        dcc.Dropdown(id=_pid("to-level"), placeholder="派遣至 dispatch to (level)",
                     options=[{"label": v, "value": k} for k, v in LEVEL_NAMES.items()]),
        dcc.Dropdown(id=_pid("satisfaction"), placeholder="满意度 satisfaction 1-5",
                     options=[1, 2, 3, 4, 5]),
        html.Div(id=_pid("msg"), className="desk-msg"),
        html.H4("办理过程 Timeline"),
        html.Ol(className="desk-timeline", children=[
            html.Li(f"{_fmt(h['at'])} {h['actor']} ({h['actor_level']}) {h['action']}: "
                    f"{h['from_status'] or '—'} → {h['to_status']}"
                    + (f" [{h['from_level']}→{h['to_level']}]"
                       if h["from_level"] and h["from_level"] != h["to_level"] else "")
                    + (f" — {h['note']}" if h["note"] else ""))
            for h in card["history"]]),
    ])  # fmt: skip


def _actor_name(app: Any, typed: str | None) -> str:
    """The logged-in user acts; a typed name (e.g. the person on duty) is kept beside it."""
    who = app.principal
    name = who.name if who is not None else "?"
    return (
        f"{name} ({typed.strip()[:24]})"
        if typed and typed.strip() and typed.strip() != name
        else name
    )


def _level_refused(app: Any, level: str | None) -> str | None:
    """A user acts at their own unit's level or below it, never above (escalation by form)."""
    who = app.principal
    ref = unit_ref(app.engine, app.scope, who.unit_code) if who is not None else None
    ladder = list(inc.LADDER)
    own = ref.level if ref is not None and ref.level in ladder else None
    if level not in ladder or own is None or ladder.index(level) > ladder.index(own):
        return f"✗ 无权以 {level} 层级办理 you cannot act at level {level} (yours: {own})"
    return None


@dash.callback(
    Output(_pid("msg"), "children"),
    Output(_pid("refresh"), "data", allow_duplicate=True),
    Input({"type": _pid("action"), "action": ALL}, "n_clicks"),
    State(_pid("selected"), "data"),
    State(_pid("version"), "data"),
    State(_pid("level"), "value"),
    State(_pid("actor"), "value"),
    State(_pid("reason"), "value"),
    State(_pid("to-level"), "value"),
    State(_pid("satisfaction"), "value"),
    State(_pid("refresh"), "data"),
    prevent_initial_call=True,
)
def take_action(clicks, code, version, level, actor, reason, to_level, sat, refresh):  # noqa: ANN001, ANN201
    if not code or not any(clicks or []) or not isinstance(ctx.triggered_id, dict):
        raise PreventUpdate
    action = ctx.triggered_id["action"]
    app = context()
    refused = _level_refused(app, level)
    if refused:
        return html.Span(refused, style={"color": "#c62828"}), dash.no_update
    try:
        with transaction(app.engine) as conn:
            inc.act(conn, code, action, wf.Actor(level, "desk", _actor_name(app, actor)),
                    calendar=work_calendar(app.settings), version=version, reason=reason or None,
                    satisfaction=sat if action == "evaluate" else None,
                    to_level=to_level if action == "dispatch" else None, at=app.now())  # fmt: skip
    except (inc.IncidentError, wf.WorkflowError) as exc:
        return html.Span(str(exc), style={"color": "#c62828"}), dash.no_update
    return f"✓ {ACTION_NAMES.get(action, action)}", (refresh or 0) + 1


@dash.callback(
    Output(_pid("new-msg"), "children"),
    Output(_pid("refresh"), "data", allow_duplicate=True),
    Input(_pid("new-submit"), "n_clicks"),
    State(_pid("new-category"), "value"),
    State(_pid("new-lon"), "value"),
    State(_pid("new-lat"), "value"),
    State(_pid("new-channel"), "value"),
    State(_pid("new-description"), "value"),
    State(_pid("actor"), "value"),
    State(_pid("level"), "value"),
    State(_pid("refresh"), "data"),
    prevent_initial_call=True,
)
def submit_report(_n, cat, lon, lat, channel, desc, actor, level, refresh):  # noqa: ANN001, ANN201
    app = context()
    refused = _level_refused(app, level)
    if refused:
        return html.Span(refused, style={"color": "#c62828"}), dash.no_update
    payload = {"category_code": cat, "lon": lon, "lat": lat, "channel": channel,
               "description": desc or None, "reporter": _actor_name(app, actor),
               "reporter_level": level, "reporter_role": "desk"}  # fmt: skip
    try:
        cats = inc.load_categories(app.engine)
        rep = inc.parse_report(payload, cats, now=app.now())
        with transaction(app.engine) as conn:
            out = inc.report(conn, rep, cats)
    except inc.InvalidReport as exc:
        return html.Ul(
            [html.Li(f"{f}: {r}", style={"color": "#c62828"}) for f, r in exc.errors]
        ), dash.no_update
    dup = (
        f" (疑似重复 probable duplicate of #{out['duplicate_of']})"
        if out.get("duplicate_of")
        else ""
    )
    return f"✓ {out['code']} → {out.get('handling_unit_code')}{dup}", (refresh or 0) + 1
