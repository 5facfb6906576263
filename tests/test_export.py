"""Every export opened with an independent reader (csv, openpyxl, pyogrio, pypdf, zipfile) and its
numbers checked against a direct SQL recount; the CLI run end to end in a subprocess."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyogrio
import pypdf
import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, create_engine, text

from etl import migrate
from etl.export import ExportError, export, export_bytes, write_csv, write_xlsx
from etl.queries import Scope
from etl.queries.reports import COLUMN_BY_KEY, COLUMN_KEYS, Report, coverage_report
from etl.settings import PROJECT_ROOT
from tests.conftest import database_url, ensure_database
from tests.test_reports_data import ASOF, COUNTY, build_report_territory

LO, HI = "2026-10-01T00:00:00+08:00", "2026-11-01T00:00:00+08:00"


@pytest.fixture(scope="module")
def report_url() -> str:
    """The hand-made territory committed in its own database, so a subprocess can read it."""
    url = database_url("_test_reports")
    ensure_database(url, fresh=True)
    migrate.upgrade(url)
    eng = create_engine(url)
    with eng.begin() as conn:
        build_report_territory(conn)
    eng.dispose()
    return url


@pytest.fixture(scope="module")
def report_engine(report_url: str) -> Iterator[Engine]:
    eng = create_engine(report_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def report(report_engine: Engine) -> Report:
    return coverage_report(report_engine, Scope(), unit=COUNTY, period="2026-10", asof=ASOF)


@pytest.fixture(scope="module")
def recount(report_engine: Engine, report: Report) -> dict[str, dict[str, int]]:
    """Per row code: reported, households, full-time staff and visits, one plain query each."""
    sql = {
        "reported": "SELECT count(*) FROM events WHERE :c = ANY(unit_path) AND reported_at >= :lo "
                    "AND reported_at < :hi",
        "hh": "SELECT coalesce(sum(households), 0) FROM units WHERE level = 'grid' AND :c = ANY(unit_path)",
        "ft": "SELECT count(*) FROM staff WHERE role = 'full_time' AND :c = ANY(unit_path)",
        "visits": "SELECT count(*) FROM patrols WHERE kind = 'visit' AND :c = ANY(unit_path) "
                  "AND at >= :lo AND at < :hi",
    }  # fmt: skip
    out: dict[str, dict[str, int]] = {}
    with report_engine.connect() as conn:
        for code in report.rows["code"]:
            p = {"c": code, "lo": LO, "hi": HI}
            out[code] = {k: int(conn.execute(text(q), p).scalar_one()) for k, q in sql.items()}
    return out


def _num(value: object) -> float:
    return float(value)  # type: ignore[arg-type]


def test_csv_has_a_bom_chinese_headers_and_the_recounted_numbers(
    report: Report, recount: dict, tmp_path: Path
) -> None:
    path = export(report, tmp_path / "r.csv", fmt="csv")[0]
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [COLUMN_BY_KEY[k].zh for k in COLUMN_KEYS]
    assert {r["编码"] for r in rows} == set(recount)
    for r in rows:
        expected = recount[r["编码"]]
        assert int(r["上报事件"]) == expected["reported"] and int(r["户数"]) == expected["hh"]
        assert int(r["走访次数"]) == expected["visits"]
    assert "测试市" in {r["名称"] for r in rows}
    english = export(report, tmp_path / "en.csv", fmt="csv", lang="en")[0]
    header = english.read_text(encoding="utf-8-sig").splitlines()[0]
    assert header.startswith("Code,Name,Level") and "Closure rate" in header


def test_xlsx_is_formatted_and_matches_the_recount(
    report: Report, recount: dict, tmp_path: Path
) -> None:
    path = export(report, tmp_path / "r.xlsx", fmt="xlsx")[0]
    wb = load_workbook(path)
    ws = wb["报表"]
    assert ws.freeze_panes == "C4" and "测试市" in ws["A1"].value
    header = [c.value for c in ws[3]]
    assert header == [COLUMN_BY_KEY[k].zh for k in COLUMN_KEYS]
    col = {h: i for i, h in enumerate(header)}
    seen = set()
    for row in ws.iter_rows(min_row=4):
        code, kind = row[col["编码"]].value, row[col["行类型"]].value
        seen.add(code)
        assert row[col["上报事件"]].value == recount[code]["reported"]
        assert row[col["专职网格员"]].value == recount[code]["ft"]
        assert row[0].font.bold == (kind != "网格"), f"{code}: subtotal rows bold, grid rows not"
        rate = row[col["结案率"]]
        assert rate.number_format == "0.0%"
        expected = report.rows.set_index("code").loc[code, "close_rt"]
        assert rate.value is None or abs(_num(rate.value) - float(expected)) < 1e-9
    assert seen == set(recount)
    assert [c.value for c in wb["字段说明"][1]][:2] == ["field", "header_zh"]


def test_geopackage_layers_keep_geometry_and_chinese_names(
    report: Report, recount: dict, report_engine: Engine, tmp_path: Path
) -> None:
    path = export(report, tmp_path / "r.gpkg", fmt="gpkg")[0]
    layers = dict(pyogrio.list_layers(path))
    assert set(layers) == {"grids", "subtotals", "fields"}
    grids = pyogrio.read_dataframe(path, layer="grids")
    assert grids.crs.to_epsg() == 4490 and len(grids) == 12
    with report_engine.connect() as conn:
        area = dict(
            conn.execute(text("SELECT code, ST_Area(geom) FROM units WHERE level = 'grid'")).all()
        )
    for g in grids.itertuples():
        assert abs(g.geometry.area - area[g.code]) < 1e-9
        assert g.reported == recount[g.code]["reported"] and g.hh == recount[g.code]["hh"]
    assert grids["name"].str.contains("网格").all()
    subtotals = pyogrio.read_dataframe(path, layer="subtotals")
    assert set(subtotals["level"]) == {"county", "township", "work_area", "community"}
    fields = pyogrio.read_dataframe(path, layer="fields", read_geometry=False)
    assert set(fields["field"]) == set(COLUMN_KEYS)


def test_shapefile_has_short_fields_a_cpg_and_a_dictionary(
    report: Report, recount: dict, tmp_path: Path
) -> None:
    files = export(report, tmp_path / "r.shp", fmt="shp")
    names = {f.name for f in files}
    assert {"r.shp", "r.dbf", "r.cpg", "r.prj", "r_subtotals.shp", "r.fields.csv"} <= names
    assert (tmp_path / "r.cpg").read_text().strip().upper() in ("UTF-8", "UTF8")
    info = pyogrio.read_info(tmp_path / "r.shp")
    assert all(len(f.encode()) <= 10 for f in info["fields"])
    grids = pyogrio.read_dataframe(tmp_path / "r.shp")
    assert grids.crs.to_epsg() == 4490
    for g in grids.itertuples():
        assert g.reported == recount[g.code]["reported"]
    assert "东风1-1网格" in set(grids["name"])
    with (tmp_path / "r.fields.csv").open(encoding="utf-8-sig") as f:
        documented = {r["field"] for r in csv.DictReader(f)}
    assert set(info["fields"]) <= documented


def test_pdf_text_map_and_table(report: Report, recount: dict, tmp_path: Path) -> None:
    path = export(report, tmp_path / "r.pdf", fmt="pdf", indicator="close_rt")[0]
    reader = pypdf.PdfReader(path)
    text_ = "\n".join(p.extract_text() for p in reader.pages)
    assert "测试市网格工作报表" in text_ and "东风1-1网格" in text_
    assert f"上报事件 {recount[COUNTY]['reported']}" in text_
    assert all(code in text_ for code in recount)
    assert len(reader.pages[0].images) >= 2  # map and charts
    en = pypdf.PdfReader(export(report, tmp_path / "en.pdf", fmt="pdf", lang="en")[0])
    assert "Grid coverage report" in en.pages[0].extract_text()


def test_download_bytes_and_bad_options(report: Report, tmp_path: Path) -> None:
    name, content = export_bytes(report, fmt="shp", workdir=tmp_path)
    assert name.endswith(".zip")
    members = zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert any(m.endswith(".cpg") for m in members) and any(
        m.endswith(".fields.csv") for m in members
    )
    with pytest.raises(ExportError, match="format"):
        export(report, tmp_path / "x.doc", fmt="doc")
    with pytest.raises(ExportError, match="indicator"):
        export(report, tmp_path / "x.pdf", fmt="pdf", indicator="name")


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "etl", "report", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_cli_writes_the_report_and_refuses_bad_input(
    report_url: str, recount: dict, tmp_path: Path
) -> None:
    out = tmp_path / "oct.xlsx"
    done = _cli(report_url, "--unit", COUNTY, "--period", "2026-10", "--out", str(out),
                "--asof", ASOF.isoformat())  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "grids" in done.stderr  # progress goes to stderr
    ws = load_workbook(out).active
    header = [c.value for c in ws[3]]
    total = [c.value for c in ws[ws.max_row]]
    assert total[header.index("上报事件")] == recount[COUNTY]["reported"]
    bad_unit = _cli(report_url, "--unit", "000000", "--period", "2026-10", "--out", str(out))
    assert bad_unit.returncode == 2 and "000000" in bad_unit.stderr
    bad_period = _cli(report_url, "--unit", COUNTY, "--period", "2026-13", "--out", str(out))
    assert bad_period.returncode == 2 and "period" in bad_period.stderr


def test_a_name_that_is_a_formula_is_exported_as_text(report: Report, tmp_path: Path) -> None:
    """A unit named like a spreadsheet formula (from a loaded file) cannot run in Excel."""
    import dataclasses

    from openpyxl import load_workbook

    rows = report.rows.copy()
    rows.loc[rows.index[0], "name"] = '=HYPERLINK("http://evil.example","x")'
    evil = dataclasses.replace(report, rows=rows)
    (csv_path,) = write_csv(evil, tmp_path / "r.csv")
    assert "'=HYPERLINK" in csv_path.read_text(encoding="utf-8-sig")
    (xlsx_path,) = write_xlsx(evil, tmp_path / "r.xlsx")
    cell = load_workbook(xlsx_path).active.cell(row=4, column=2).value
    assert cell == "'" + '=HYPERLINK("http://evil.example","x")'
