"""The reports page: layout, the table/map callback and the download, called as plain functions
inside the app's request context (the browser suite covers the served page)."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, text

from dashboard.app import create_app
from etl.access import Role
from etl.settings import Settings
from tests.accounts import acting
from tests.test_export import report_engine, report_url  # noqa: F401  (shared fixtures)
from tests.test_reports_data import ASOF, COUNTY


@pytest.fixture(scope="module")
def page(report_engine: Engine) -> Any:  # noqa: F811
    app = create_app(Settings(), engine=report_engine, clock=lambda: ASOF)
    from dashboard.pages import reports

    with app.server.test_request_context("/reports"), acting(Role.ANALYST, COUNTY):
        yield reports


def _find(component: Any, id_: str) -> Any:
    if getattr(component, "id", None) == id_:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if (
            child is not None
            and not isinstance(child, str)
            and (hit := _find(child, id_)) is not None
        ):
            return hit
    return None


def test_layout_reads_the_url_and_offers_units_above_the_grid(page: Any) -> None:
    root = page.layout(unit="888888001", period="2026-10", indicator="close_rt", lang="en")
    unit = _find(root, "reports-unit")
    codes = [o["value"] for o in unit.options]
    assert unit.value == "888888001" and COUNTY in codes and "888888101W1" in codes
    assert not any(len(c) == 15 for c in codes), "grids are report rows, not report units"
    assert _find(root, "reports-indicator").value == "close_rt"
    assert _find(root, "reports-period").value == "2026-10"
    assert _find(root, "reports-lang").data == "en"
    default = page.layout()
    assert _find(default, "reports-period").value == ASOF.date().isoformat()[:7]


def test_table_callback_shows_rows_map_and_charts(page: Any, report_engine: Engine) -> None:  # noqa: F811
    columns, data, style, map_src, charts_src, status = page.show_report(
        COUNTY, "2026-10", "reported", "zh"
    )
    with report_engine.connect() as conn:
        grids = conn.execute(text("SELECT count(*) FROM units WHERE level = 'grid'")).scalar_one()
        reported = conn.execute(text("""SELECT count(*) FROM events WHERE reported_at >= '2026-10-01+08'
                                        AND reported_at < '2026-11-01+08'""")).scalar_one()  # fmt: skip
    assert sum(r["_kind"] == "grid" for r in data) == grids
    assert data[-1]["_kind"] == "total" and data[-1]["reported"] == reported
    assert {c["name"] for c in columns} >= {"编码", "上报事件", "结案率"}
    assert any(s.get("fontWeight") == "bold" for s in style)
    assert map_src.startswith("data:image/png;base64,") and charts_src.startswith("data:image/png")
    assert str(grids) in status


def test_bad_inputs_give_a_message_not_an_error(page: Any) -> None:
    *_, status = page.show_report(COUNTY, "2026-13", "reported", "zh")
    assert "2026-13" in status
    *_, status = page.show_report("000000", "2026-10", "reported", "en")
    assert "000000" in status
    assert (
        page.check_inputs(None, "2026-10") == "unit" and page.check_inputs(COUNTY, "2026") is None
    )


def test_download_follows_the_filters(page: Any, report_engine: Engine) -> None:  # noqa: F811
    sent = page.download(1, "888888101", "2026-10-01..2026-10-15", "reported", "xlsx", "en")
    assert sent["filename"].endswith(".xlsx")
    ws = load_workbook(io.BytesIO(base64.b64decode(sent["content"]))).active
    header = [c.value for c in ws[3]]
    assert header[:2] == ["Code", "Name"]
    total = {h: c.value for h, c in zip(header, ws[ws.max_row], strict=True)}
    with report_engine.connect() as conn:
        expected = conn.execute(text("""SELECT count(*) FROM events WHERE '888888101' = ANY(unit_path)
                                        AND reported_at >= '2026-10-01+08' AND reported_at < '2026-10-16+08'""")).scalar_one()  # fmt: skip
    assert total["Code"] == "888888101" and total["Reported"] == expected
    with report_engine.connect() as conn:
        audited = conn.execute(text("SELECT detail FROM audit_log WHERE action = 'export' "
                                    "AND target = :t ORDER BY id DESC LIMIT 1"),
                               {"t": sent["filename"]}).scalar()  # fmt: skip
    assert audited == {"unit": "888888101", "period": "2026-10-01..2026-10-15", "format": "xlsx"}
    shp = page.download(1, COUNTY, "2026-10", "reported", "shp", "zh")
    names = zipfile.ZipFile(io.BytesIO(base64.b64decode(shp["content"]))).namelist()
    assert any(n.endswith(".cpg") for n in names)
