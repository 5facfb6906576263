"""Loaders on real files in real formats, and a gallery of broken files.

Each refusal must name the file, the row or feature and the reason, and leave the database
unchanged.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from sqlalchemy import Connection, text

from etl.errors import CRSMissingError, FileFormatError, LoadError, ValidationFailed
from etl.load import load_file
from geo.coords import wgs84_to_gcj02

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HELSINKI = SHARED / "helsinki_osm.gpkg"
TABLES = ("units", "buildings", "events", "staff", "patrols", "roads", "responders", "etl_runs")


def snapshot(conn: Connection) -> dict[str, int]:
    return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def territory() -> gpd.GeoDataFrame:
    """A county, two townships side by side, two grids in the first — Chinese field names."""
    rows = [
        ("511781", "万源市", None, shapely.box(108.0, 32.0, 108.2, 32.1)),
        ("511781001", "太平镇", "511781", shapely.box(108.0, 32.0, 108.1, 32.1)),
        ("511781002", "古东关街道", "511781", shapely.box(108.1, 32.0, 108.2, 32.1)),
        ("511781001001", "一网格", "511781001", shapely.box(108.0, 32.0, 108.05, 32.1)),
        ("511781001002", "二网格", "511781001", shapely.box(108.05, 32.0, 108.1, 32.1)),
    ]
    return gpd.GeoDataFrame(
        {
            "网格编码": [r[0] for r in rows],
            "网格名称": [r[1] for r in rows],
            "上级编码": [r[2] for r in rows],
        },
        geometry=[r[3] for r in rows],
        crs=4490,
    )


def write_geojson(gdf: gpd.GeoDataFrame, path: Path) -> Path:
    gdf.to_file(path, driver="GeoJSON")
    return path


@pytest.fixture
def loaded_territory(conn: Connection, tmp_path: Path) -> Connection:
    result = load_file(conn, "units", write_geojson(territory(), tmp_path / "units.geojson"))
    assert result.counts.inserted == 5
    return conn


def test_units_geojson_with_chinese_fields_builds_the_tree(loaded_territory: Connection) -> None:
    rows = loaded_territory.execute(
        text("SELECT code, level, unit_path FROM units ORDER BY code")
    ).all()
    levels = {r.code: r.level for r in rows}
    assert levels["511781"] == "county" and levels["511781001001"] == "community"
    assert dict((r.code, r.unit_path) for r in rows)["511781001002"] == [
        "511781",
        "511781001",
        "511781001002",
    ]


def test_same_file_twice_changes_nothing_and_a_change_updates_by_code(
    conn: Connection, tmp_path: Path
) -> None:
    units = territory()
    path = write_geojson(units, tmp_path / "u.geojson")
    load_file(conn, "units", path)
    again = load_file(conn, "units", path)
    assert (again.counts.inserted, again.counts.updated, again.counts.unchanged) == (0, 0, 5)
    units.loc[1, "网格名称"] = "太平镇（改）"
    changed = load_file(conn, "units", write_geojson(units, tmp_path / "u2.geojson"))
    assert (changed.counts.inserted, changed.counts.updated) == (0, 1)
    assert (
        conn.execute(text("SELECT name FROM units WHERE code='511781001'")).scalar()
        == "太平镇（改）"
    )


def _unrepairable(geom: shapely.Geometry) -> bool:
    """Oracle for the repair rule: invalid, and make_valid changes the area by over 1%."""
    if geom.is_valid:
        return False
    fixed = shapely.make_valid(geom)
    area = sum(
        g.area
        for g in getattr(fixed, "geoms", [fixed])
        if g.geom_type in ("Polygon", "MultiPolygon")
    )
    return abs(geom.area) == 0 or abs(area - abs(geom.area)) > 0.01 * abs(geom.area)


def test_helsinki_buildings_and_roads_load_and_are_idempotent(
    conn: Connection, tmp_path: Path
) -> None:
    mapping = {"code": "osm_id|osm_way_id"}
    raw = gpd.read_file(HELSINKI, layer="buildings")
    bad = int(raw.geometry.map(_unrepairable).sum())
    assert 0 < bad < 20
    first = load_file(
        conn,
        "buildings",
        HELSINKI,
        layer="buildings",
        mapping=mapping,
        skip_invalid=True,
        rejects_path=tmp_path / "rej.csv",
    )
    assert (
        first.counts.inserted == len(raw) - bad
        and first.rejected == bad == 489 - first.counts.inserted
    )
    assert conn.execute(text("SELECT bool_and(ST_IsValid(geom)) FROM buildings")).scalar()
    second = load_file(
        conn, "buildings", HELSINKI, layer="buildings", mapping=mapping, skip_invalid=True
    )
    assert second.counts.unchanged == len(raw) - bad and second.counts.inserted == 0
    roads = load_file(conn, "roads", HELSINKI, layer="roads", mapping={"code": "osm_id"})
    n_parts = int(gpd.read_file(HELSINKI, layer="roads").geometry.count_geometries().sum())
    assert roads.counts.inserted == n_parts
    runs = conn.execute(text("SELECT kind, loaded, sha256 FROM etl_runs ORDER BY id")).all()
    assert [r.kind for r in runs] == ["buildings", "buildings", "roads"] and len(
        runs[0].sha256
    ) == 64


def test_buildings_are_assigned_and_totals_refreshed(
    loaded_territory: Connection, tmp_path: Path
) -> None:
    buildings = gpd.GeoDataFrame(
        {
            "楼栋编码": ["B1", "B2", "B3"],
            "户数": [100, 50, 7],
            "人口数": [250, 120, 20],
            "楼栋地址": ["一号楼", "二号楼", "三号楼"],
        },
        geometry=[
            shapely.box(108.01, 32.01, 108.011, 32.011),
            shapely.box(108.06, 32.01, 108.061, 32.011),
            shapely.box(108.15, 32.05, 108.151, 32.051),
        ],
        crs=4490,
    )
    load_file(loaded_territory, "buildings", write_geojson(buildings, tmp_path / "b.geojson"))
    hh = dict(loaded_territory.execute(text("SELECT code, households FROM units")).all())
    assert hh["511781001001"] == 100 and hh["511781001002"] == 50 and hh["511781002"] == 7
    assert hh["511781001"] == 150 and hh["511781"] == 157


def test_point_on_a_shared_edge_goes_to_the_lowest_code(
    loaded_territory: Connection, tmp_path: Path
) -> None:
    csv = tmp_path / "events.csv"
    pd.DataFrame(
        {
            "事件编号": ["E1"],
            "事件类型": ["T1"],
            "上报时间": ["2026-11-20 09:00"],
            "经度": [108.05],
            "纬度": [32.05],
        }
    ).to_csv(csv, index=False)
    loaded_territory.execute(
        text(
            "INSERT INTO event_categories (code, name, default_priority, emergency) "
            "VALUES ('T1', '测试', 3, false)"
        )
    )
    load_file(loaded_territory, "events", csv, crs="4490")
    path = loaded_territory.execute(text("SELECT unit_path FROM events WHERE code='E1'")).scalar()
    assert path[-1] == "511781001001"


def test_gbk_csv_without_declared_encoding_is_detected(
    loaded_territory: Connection, tmp_path: Path
) -> None:
    staff = pd.DataFrame(
        {
            "工号": ["S1", "S2"],
            "姓名": ["张伟", "李娜"],
            "岗位": ["网格长", "专职网格员"],
            "所属网格编码": ["511781001001", "511781001002"],
        }
    )
    path = tmp_path / "staff_gbk.csv"
    path.write_bytes(staff.to_csv(index=False).encode("gbk"))
    load_file(loaded_territory, "staff", path)
    names = loaded_territory.execute(text("SELECT name, role FROM staff ORDER BY code")).all()
    assert [tuple(r) for r in names] == [("张伟", "grid_chief"), ("李娜", "full_time")]


def test_xlsx_events_with_lonlat_in_gcj02(loaded_territory: Connection, tmp_path: Path) -> None:
    loaded_territory.execute(
        text(
            "INSERT INTO event_categories (code, name, default_priority, emergency) "
            "VALUES ('0201', '暴露垃圾', 4, false), ('0601', '火灾', 1, true)"
        )
    )
    gx, gy = wgs84_to_gcj02([108.02, 108.07], [32.02, 32.03])
    path = tmp_path / "events.xlsx"
    pd.DataFrame(
        {
            "事件编号": ["A1", "A2"],
            "事件类型": ["0201", "0601"],
            "上报时间": ["2026-11-20 09:00", "2026-11-20 10:00"],
            "来源": ["12345热线", "110"],
            "经度": gx,
            "纬度": gy,
        }
    ).to_excel(path, index=False)
    load_file(loaded_territory, "events", path, crs="GCJ02")
    rows = loaded_territory.execute(
        text(
            "SELECT code, ST_X(geom) x, ST_Y(geom) y, channel, handling_level, priority FROM events ORDER BY code"
        )
    ).all()
    assert abs(rows[0].x - 108.02) < 1e-6 and abs(rows[0].y - 32.02) < 1e-6
    assert (
        rows[0].channel == "hotline_12345"
        and rows[1].handling_level == "county"
        and rows[1].priority == 1
    )


def test_shapefile_gbk_without_cpg_and_zipped_with_cpg(conn: Connection, tmp_path: Path) -> None:
    units = territory().rename(columns={"网格编码": "DM", "网格名称": "MC", "上级编码": "SJBM"})
    shp = tmp_path / "units.shp"
    units.to_file(shp, encoding="gbk")
    shp.with_suffix(".cpg").unlink(missing_ok=True)
    load_file(conn, "units", shp, mapping={"code": "DM", "name": "MC", "parent_code": "SJBM"})
    assert (
        conn.execute(text("SELECT name FROM units WHERE code='511781002'")).scalar() == "古东关街道"
    )
    zipped = tmp_path / "units.zip"
    units.to_file(tmp_path / "z.shp", encoding="utf-8")
    with zipfile.ZipFile(zipped, "w") as zf:
        for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
            zf.write(tmp_path / f"z{ext}", f"z{ext}")
    again = load_file(
        conn, "units", zipped, mapping={"code": "DM", "name": "MC", "parent_code": "SJBM"}
    )
    assert again.counts.unchanged == 5


def test_kml_responders(loaded_territory: Connection, tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame(
        {"Name": ["消防一队"], "code": ["R1"], "type": ["消防"]},
        geometry=[shapely.Point(108.03, 32.04)],
        crs=4326,
    )
    path = tmp_path / "r.kml"
    gdf.to_file(path, driver="KML")
    load_file(loaded_territory, "responders", path, mapping={"name": "Name"})
    assert loaded_territory.execute(text("SELECT type FROM responders")).scalar() == "fire"


def test_skip_invalid_loads_good_rows_and_writes_rejects(
    loaded_territory: Connection, tmp_path: Path
) -> None:
    staff = pd.DataFrame(
        {
            "工号": ["S1", "S2", "S3"],
            "姓名": ["甲", "乙", "丙"],
            "岗位": ["网格长", "厨师", "兼职网格员"],
            "所属网格编码": ["511781001001", "511781001001", "999"],
        }
    )
    path = tmp_path / "staff.csv"
    staff.to_csv(path, index=False)
    rejects = tmp_path / "rejects.csv"
    result = load_file(loaded_territory, "staff", path, skip_invalid=True, rejects_path=rejects)
    assert result.counts.inserted == 1 and result.rejected == 2
    listed = pd.read_csv(rejects, encoding="utf-8-sig")
    assert listed["row"].tolist() == ["row 3 (code=S2)", "row 4 (code=S3)"]
    assert "unknown role" in listed["reason"][0] and "'999' is not loaded" in listed["reason"][1]


# --- the gallery of broken files: each a clear error, the database unchanged ----------------


def refused(conn: Connection, error: type[Exception], *args, **kwargs) -> str:  # noqa: ANN002, ANN003
    before = snapshot(conn)
    with pytest.raises(error) as info:
        load_file(conn, *args, **kwargs)
    assert snapshot(conn) == before
    return str(info.value)


def test_bow_tie_polygon_is_refused(loaded_territory: Connection, tmp_path: Path) -> None:
    bow = shapely.Polygon([(108.01, 32.01), (108.02, 32.02), (108.02, 32.01), (108.01, 32.02)])
    gdf = gpd.GeoDataFrame(
        {"楼栋编码": ["OK1", "BOW"], "户数": [10, 20]},
        geometry=[shapely.box(108.01, 32.01, 108.011, 32.011), bow],
        crs=4490,
    )
    msg = refused(
        loaded_territory,
        ValidationFailed,
        "buildings",
        write_geojson(gdf, tmp_path / "bow.geojson"),
    )
    assert "feature 2 (code=BOW)" in msg and "Self-intersection" in msg and "bow.geojson" in msg


def test_fixable_invalid_polygon_is_repaired(loaded_territory: Connection, tmp_path: Path) -> None:
    # a ring that touches itself at a point: make_valid keeps its area, so it is repaired
    ring = shapely.Polygon(
        [(108.01, 32.01), (108.03, 32.01), (108.03, 32.03), (108.02, 32.01), (108.01, 32.03)]
    )
    assert not ring.is_valid
    gdf = gpd.GeoDataFrame({"楼栋编码": ["FIX"], "户数": [5]}, geometry=[ring], crs=4490)
    load_file(loaded_territory, "buildings", write_geojson(gdf, tmp_path / "fix.geojson"))
    assert loaded_territory.execute(
        text("SELECT ST_IsValid(geom) FROM buildings WHERE code='FIX'")
    ).scalar()


def test_wrongly_stated_encoding_is_refused(loaded_territory: Connection, tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("工号,姓名,岗位,所属网格编码\nS1,张伟,网格长,511781001001\n".encode("gbk"))
    msg = refused(loaded_territory, FileFormatError, "staff", path, encoding="utf-8")
    assert "gbk.csv" in msg and "utf-8" in msg


def test_swapped_coordinates_are_refused(loaded_territory: Connection, tmp_path: Path) -> None:
    loaded_territory.execute(
        text(
            "INSERT INTO event_categories (code, name, default_priority, emergency) VALUES ('T1','t',3,false)"
        )
    )
    path = tmp_path / "swapped.csv"
    pd.DataFrame(
        {
            "code": ["E1"],
            "category": ["T1"],
            "time": ["2026-11-20 09:00"],
            "lon": [32.02],
            "lat": [108.02],
        }
    ).to_csv(path, index=False)
    msg = refused(loaded_territory, ValidationFailed, "events", path, crs="4326")
    assert "row 2 (code=E1)" in msg and "swapped" in msg


def test_no_crs_is_refused(loaded_territory: Connection, tmp_path: Path) -> None:
    path = tmp_path / "nocrs.csv"
    pd.DataFrame(
        {
            "code": ["E1"],
            "category": ["T1"],
            "time": ["2026-11-20"],
            "lon": [108.02],
            "lat": [32.02],
        }
    ).to_csv(path, index=False)
    assert "states no coordinate system" in refused(
        loaded_territory, CRSMissingError, "events", path
    )
    shp = tmp_path / "noprj.shp"
    territory().rename(
        columns={"网格编码": "code", "网格名称": "name", "上级编码": "parent"}
    ).to_file(shp)
    shp.with_suffix(".prj").unlink()
    assert "noprj.shp" in refused(loaded_territory, CRSMissingError, "units", shp)


def test_duplicate_codes_are_refused(conn: Connection, tmp_path: Path) -> None:
    units = territory()
    units.loc[4, "网格编码"] = "511781001001"
    msg = refused(conn, ValidationFailed, "units", write_geojson(units, tmp_path / "dup.geojson"))
    assert "feature 5 (code=511781001001)" in msg and "duplicate code" in msg


def test_truncated_geojson_is_refused(conn: Connection, tmp_path: Path) -> None:
    text_ = json.dumps(json.loads(territory().to_json()), ensure_ascii=False)
    path = tmp_path / "cut.geojson"
    path.write_text(text_[: len(text_) // 2], encoding="utf-8")
    msg = refused(conn, FileFormatError, "units", path)
    assert "cut.geojson" in msg and "cannot be read" in msg


def test_shapefile_without_dbf_is_refused(conn: Connection, tmp_path: Path) -> None:
    shp = tmp_path / "nodbf.shp"
    territory().to_file(shp)
    shp.with_suffix(".dbf").unlink()
    msg = refused(conn, FileFormatError, "units", shp)
    assert "nodbf.shp" in msg and ".dbf" in msg


def test_child_outside_parent_and_overlapping_siblings_are_refused(
    conn: Connection, tmp_path: Path
) -> None:
    units = territory()
    units.loc[4, "geometry"] = shapely.box(
        108.04, 32.0, 108.12, 32.1
    )  # crosses into the other township
    msg = refused(conn, ValidationFailed, "units", write_geojson(units, tmp_path / "bad.geojson"))
    assert "outside its parent 511781001" in msg and "m²" in msg
    assert "overlaps its sibling 511781001001" in msg


def test_events_outside_territory_and_unknown_category(
    loaded_territory: Connection, tmp_path: Path
) -> None:
    loaded_territory.execute(
        text(
            "INSERT INTO event_categories (code, name, default_priority, emergency) VALUES ('T1','t',3,false)"
        )
    )
    path = tmp_path / "ev.csv"
    pd.DataFrame(
        {
            "code": ["E1", "E2"],
            "category": ["T1", "ZZ"],
            "time": ["2026-11-20", "2026-11-20"],
            "lon": [109.5, 108.02],
            "lat": [32.02, 32.02],
        }
    ).to_csv(path, index=False)
    msg = refused(loaded_territory, ValidationFailed, "events", path, crs="4490")
    assert "row 2 (code=E1): the point lies outside the territory" in msg
    assert "row 3 (code=E2): unknown category code 'ZZ'" in msg


def test_missing_required_column_names_what_is_needed(conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "staff.csv"
    pd.DataFrame({"工号": ["S1"], "姓名": ["甲"]}).to_csv(path, index=False)
    msg = refused(conn, LoadError, "staff", path)
    assert "missing required column(s) ['role', 'unit_code']" in msg and "--map" in msg


def test_cli_exit_code_and_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "cut.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "etl", "load", "units", str(path)],
        capture_output=True,
        text=True,
        env=_test_env(),
    )
    assert proc.returncode == 2 and "cut.geojson" in proc.stderr and "error:" in proc.stderr


def _test_env() -> dict[str, str]:
    import os

    from tests.conftest import database_url

    return {**os.environ, "DATABASE_URL": database_url("_test")}


def small_buildings(tmp_path: Path, prefix: str, n: int) -> Path:
    """``n`` small buildings in a row inside the test territory, coded PREFIX0, PREFIX1, …"""
    boxes = [
        shapely.box(108.01 + i * 0.001, 32.01, 108.0105 + i * 0.001, 32.0105) for i in range(n)
    ]
    gdf = gpd.GeoDataFrame(
        {"楼栋编码": [f"{prefix}{i}" for i in range(n)], "户数": [3] * n}, geometry=boxes, crs=4490
    )
    return write_geojson(gdf, tmp_path / f"{prefix}.geojson")


def test_bulk_path_rebuilds_every_index(
    loaded_territory: Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import etl.write

    monkeypatch.setattr(etl.write, "BULK_MIN_ROWS", 2)
    index_sql = "SELECT indexdef FROM pg_indexes WHERE tablename = 'buildings' ORDER BY indexname"
    before = loaded_territory.execute(text(index_sql)).scalars().all()
    result = load_file(loaded_territory, "buildings", small_buildings(tmp_path, "K", 5))
    assert result.counts.inserted == 5
    assert loaded_territory.execute(text(index_sql)).scalars().all() == before


def test_bulk_path_updates_inserts_and_restores_keys(
    loaded_territory: Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events in the bulk path (batch larger than the table): changed rows updated, new rows
    inserted, unchanged left alone; every index and constraint is back afterwards."""
    import etl.write

    monkeypatch.setattr(etl.write, "BULK_MIN_ROWS", 2)
    conn = loaded_territory
    conn.execute(
        text(
            "INSERT INTO event_categories (code, name, default_priority, emergency) "
            "VALUES ('T1','t',3,false), ('T2','u',2,false)"
        )  # fmt: skip
    )
    # the rebuilt partial predicates print differently (same expression), so compare what each
    # index is: name, method, columns, unique, partial
    shape_sql = """SELECT (SELECT array_agg(c.relname || ' ' || a.amname || ' ' || x.indkey::text || ' '
                                           || x.indisunique || ' ' || (x.indpred IS NOT NULL)
                                           ORDER BY c.relname)
                           FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
                           JOIN pg_am a ON a.oid = c.relam WHERE x.indrelid = 'events'::regclass),
                          (SELECT array_agg(conname || ' ' || pg_get_constraintdef(oid) ORDER BY conname)
                           FROM pg_constraint WHERE conrelid = 'events'::regclass)"""
    before = conn.execute(text(shape_sql)).one()

    def events(codes: list[str], cats: list[str]) -> Path:
        path = tmp_path / f"ev{len(codes)}.csv"
        pd.DataFrame({"code": codes, "category": cats, "time": "2026-11-20 09:00",
                      "lon": 108.02, "lat": 32.02}).to_csv(path, index=False)  # fmt: skip
        return path

    first = load_file(conn, "events", events(["E1", "E2", "E3"], ["T1"] * 3), crs="4490")
    assert (first.counts.inserted, first.counts.updated) == (3, 0)
    second = load_file(
        conn, "events", events(["E1", "E2", "E3", "E4", "E5"], ["T2", "T2", "T1", "T1", "T1"]),
        crs="4490",
    )  # fmt: skip
    assert (second.counts.inserted, second.counts.updated, second.counts.unchanged) == (2, 2, 1)
    rows = dict(conn.execute(text("SELECT code, category_code FROM events")).all())
    assert rows == {"E1": "T2", "E2": "T2", "E3": "T1", "E4": "T1", "E5": "T1"}
    paths = conn.execute(text("SELECT DISTINCT unit_path FROM events")).scalars().all()
    assert paths and all(p and p[0] == "511781" for p in paths)  # path from the assigned unit
    assert conn.execute(text(shape_sql)).one() == before


def test_bulk_load_by_a_role_that_does_not_own_the_table(
    loaded_territory: Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A role with write grants but not ownership (the app's, under row-level security) cannot
    drop indexes: the bulk batch goes through the ordinary upsert instead of failing."""
    import etl.write
    from etl.db import DbScope, set_scope
    from etl.settings import APP_ROLE

    monkeypatch.setattr(etl.write, "BULK_MIN_ROWS", 2)
    conn = loaded_territory
    root = conn.execute(text("SELECT code FROM units WHERE parent_id IS NULL LIMIT 1")).scalar_one()
    conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
    set_scope(conn, DbScope((root,), "admin"))
    result = load_file(conn, "buildings", small_buildings(tmp_path, "R", 4))
    assert result.counts.inserted == 4
    conn.execute(text("RESET ROLE"))


def test_events_as_multipoints_one_place_each(loaded_territory: Connection, tmp_path: Path) -> None:
    """A MultiPoint of one point is that point; one of several is refused by feature (it used
    to fail inside the assignment, naming no feature)."""
    conn = loaded_territory
    conn.execute(
        text("INSERT INTO event_categories (code, name, default_priority, emergency) "
             "VALUES ('T1','t',3,false)")
    )  # fmt: skip
    frame = gpd.GeoDataFrame(
        {"code": ["M1", "M2"], "category": ["T1", "T1"], "time": ["2026-11-20 09:00"] * 2},
        geometry=[
            shapely.MultiPoint([(108.01, 32.01)]),
            shapely.MultiPoint([(108.01, 32.01), (108.02, 32.02)]),
        ],
        crs=4490,
    )
    path = write_geojson(frame, tmp_path / "multi.geojson")
    before = snapshot(conn)
    with pytest.raises(ValidationFailed, match=r"feature 2 \(code=M2\): a MultiPoint of 2 points"):
        load_file(conn, "events", path)
    assert snapshot(conn) == before
    result = load_file(conn, "events", path, skip_invalid=True)
    assert (result.counts.inserted, result.rejected) == (1, 1)
    stored = conn.execute(text("SELECT code, ST_AsText(geom) FROM events")).all()
    assert [tuple(r) for r in stored] == [("M1", "POINT(108.01 32.01)")]
