"""报表: per-grid coverage report of a unit and period, with its map, charts and downloads.

URL query (every key optional): ``unit`` unit code · ``period`` YYYY, YYYY-MM, YYYY-MM-DD or
YYYY-MM-DD..YYYY-MM-DD · ``indicator`` the map's colour column · ``lang`` zh|en.
The download follows exactly what is on screen: same unit, period, language and indicator.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output, State, dcc, html, no_update
from dash.dash_table import FormatTemplate
from dash.dash_table.DataTable import DataTable
from dash.dash_table.Format import Format, Scheme
from dash.exceptions import PreventUpdate

from dashboard.app import context
from dashboard.i18n import normalise
from dashboard.personal import audit_export
from etl.export import (
    FORMATS,
    display_table,
    export_bytes,
    numeric_indicators,
    render_charts,
    render_map,
)
from etl.queries import reports as q

PAGE = "reports"
dash.register_page(__name__, path="/reports", name="报表", order=40, i18n_key="nav.reports")

TEXT: dict[str, tuple[str, str]] = {
    "unit": ("单位", "Unit"),
    "period": ("统计期", "Period"),
    "period.help": ("如 2026-10、2026、2026-10-01..2026-10-15", "e.g. 2026-10, 2026, 2026-10-01..2026-10-15"),
    "indicator": ("地图指标", "Map indicator"),
    "format": ("格式", "Format"),
    "download": ("下载", "Download"),
    "empty": ("请选择单位", "Choose a unit"),
    "rows": ("{grids} 个网格，{subs} 个小计行", "{grids} grids, {subs} subtotal rows"),
}  # fmt: skip
TABLE_COLUMNS = ("code", "name", "level", "grids", "hh", "band", "chief", "ft", "pt", "aux",
                 "hh_per_ft", "patrol_cov", "visits", "reported", "filed", "should", "closed",
                 "ontime", "overdue", "close_rt", "ontime_rt", "resp_min", "handl_h", "satisf",
                 "returns", "escal", "top_cat", "gi_class", "kde")  # fmt: skip


def _pid(name: str) -> str:
    return f"{PAGE}-{name}"


def _t(key: str, lang: str, **values: object) -> str:
    zh, en = TEXT[key]
    return (en if lang == "en" else zh).format(**values)


# --- pure parts --------------------------------------------------------------------------------


def initial_state(query: dict[str, Any], *, default_lang: str, today: str) -> dict[str, Any]:
    """The page state from the URL query; the period defaults to the current month."""
    indicator = query.get("indicator")
    return {
        "unit": query.get("unit") or None,
        "period": query.get("period") or today[:7],
        "indicator": indicator if indicator in numeric_indicators() else "reported",
        "lang": normalise(query.get("lang"), default_lang),
    }


def check_inputs(unit: str | None, period: str | None) -> str | None:
    """An error message for the inputs, or None when a report can be asked for."""
    if not unit:
        return "unit"
    try:
        q.parse_period(period or "")
    except q.BadPeriod as exc:
        return str(exc)
    return None


def table_props(report: q.Report, lang: str) -> dict[str, Any]:
    """DataTable columns, rows and styles: subtotal rows bold, the total shaded."""
    rows = display_table(report, lang=lang)[list(TABLE_COLUMNS)]
    kinds = report.rows["row_kind"].tolist()
    data = [
        {**rec, "_kind": kind} for rec, kind in zip(rows.to_dict("records"), kinds, strict=True)
    ]
    columns = [_column(k, lang) for k in TABLE_COLUMNS]
    style = [
        {"if": {"filter_query": '{_kind} = "subtotal"'}, "fontWeight": "bold"},
        {"if": {"filter_query": '{_kind} = "total"'}, "fontWeight": "bold", "backgroundColor": "#FFF2CC"},
    ]  # fmt: skip
    return {"columns": columns, "data": data, "style_data_conditional": style}


def _column(key: str, lang: str) -> dict[str, Any]:
    col = q.COLUMN_BY_KEY[key]
    spec: dict[str, Any] = {"id": key, "name": col.zh if lang == "zh" else col.en}
    if col.kind == "pct":
        spec.update(type="numeric", format=FormatTemplate.percentage(1))
    elif col.kind == "float":
        spec.update(type="numeric", format=Format(precision=1, scheme=Scheme.fixed))
    elif col.kind == "int":
        spec.update(type="numeric")
    return spec


def _png_src(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _report(unit: str, period: str) -> q.Report:
    app = context()
    return q.coverage_report(app.engine, app.scope, unit=unit, period=period, asof=app.now(),
                             tz=app.settings.timezone, bands=app.settings.bands)  # fmt: skip


# --- layout ------------------------------------------------------------------------------------


def layout(**query: Any) -> html.Div:
    app = context()
    state = initial_state(
        query, default_lang=app.settings.language, today=app.now().date().isoformat()
    )
    lang = state["lang"]
    units = q.units_for_picker(app.engine, app.scope)
    unit_options = [{"label": f"{'  ' * u['depth']}{u['name']} {u['code']}", "value": u["code"]}
                    for u in units]  # fmt: skip
    indicator_options = [{"label": lab, "value": k}
                         for k, lab in zip(numeric_indicators(), q.labels(numeric_indicators(), lang), strict=True)]  # fmt: skip
    return html.Div(className="reports", children=[
        dcc.Store(id=_pid("lang"), data=lang),
        html.Div(className="reports-bar", children=[
            html.Label([_t("unit", lang), dcc.Dropdown(id=_pid("unit"), options=unit_options,
                                                       value=state["unit"] or (units[0]["code"] if units else None),
                                                       clearable=False, style={"minWidth": "280px"})]),
            html.Label([_t("period", lang), dcc.Input(id=_pid("period"), value=state["period"], debounce=True,
                                                      placeholder=_t("period.help", lang))]),
            html.Label([_t("indicator", lang), dcc.Dropdown(id=_pid("indicator"), options=indicator_options,
                                                            value=state["indicator"], clearable=False,
                                                            style={"minWidth": "180px"})]),
            html.Label([_t("format", lang), dcc.Dropdown(id=_pid("format"), options=list(FORMATS),
                                                         value="xlsx", clearable=False)]),
            html.Button(_t("download", lang), id=_pid("download-btn"), n_clicks=0, className="btn"),
            dcc.Download(id=_pid("download")),
        ]),
        html.Div(id=_pid("status"), className="reports-status"),
        dcc.Loading(html.Div(className="reports-figures", children=[
            html.Img(id=_pid("map"), style={"width": "49%"}),
            html.Img(id=_pid("charts"), style={"width": "49%"}),
        ])),
        DataTable(id=_pid("table"), page_size=50, sort_action="native",
                             fixed_rows={"headers": True}, fixed_columns={"headers": True, "data": 2},
                             style_table={"minWidth": "100%", "overflowX": "auto", "maxHeight": "60vh"},
                             style_cell={"fontSize": 12, "padding": "2px 6px", "minWidth": 70},
                             style_header={"fontWeight": "bold", "whiteSpace": "normal"}),
    ])  # fmt: skip


# --- callbacks ---------------------------------------------------------------------------------


@dash.callback(
    Output(_pid("table"), "columns"),
    Output(_pid("table"), "data"),
    Output(_pid("table"), "style_data_conditional"),
    Output(_pid("map"), "src"),
    Output(_pid("charts"), "src"),
    Output(_pid("status"), "children"),
    Input(_pid("unit"), "value"),
    Input(_pid("period"), "value"),
    Input(_pid("indicator"), "value"),
    State(_pid("lang"), "data"),
)
def show_report(unit, period, indicator, lang):  # type: ignore[no-untyped-def]
    problem = check_inputs(unit, period)
    if problem:
        message = _t("empty", lang) if problem == "unit" else problem
        return no_update, [], no_update, None, None, message
    try:
        report = _report(unit, period)
    except q.ReportError as exc:
        return no_update, [], no_update, None, None, str(exc)
    props = table_props(report, lang)
    status = _t("rows", lang, grids=len(report.grids), subs=len(report.rows) - len(report.grids))
    return (props["columns"], props["data"], props["style_data_conditional"],
            _png_src(render_map(report, indicator=indicator, lang=lang, dpi=100)),
            _png_src(render_charts(report, lang=lang, dpi=100)), status)  # fmt: skip


@dash.callback(
    Output(_pid("download"), "data"),
    Input(_pid("download-btn"), "n_clicks"),
    State(_pid("unit"), "value"),
    State(_pid("period"), "value"),
    State(_pid("indicator"), "value"),
    State(_pid("format"), "value"),
    State(_pid("lang"), "data"),
    prevent_initial_call=True,
)
def download(n_clicks, unit, period, indicator, fmt, lang):  # type: ignore[no-untyped-def]
    if not n_clicks or check_inputs(unit, period):
        raise PreventUpdate
    report = _report(unit, period)
    with tempfile.TemporaryDirectory() as tmp:
        name, content = export_bytes(
            report, fmt=fmt, lang=lang, indicator=indicator, workdir=Path(tmp)
        )
    audit_export(context().engine, name, unit=unit, period=period, format=fmt)
    return dcc.send_bytes(content, name)
