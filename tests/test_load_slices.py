"""A large GeoPackage of events is read, validated and written in slices (``etl.load``): the
result, the refusals and the row numbers must be exactly those of a whole-file load.

The thresholds are lowered so a few dozen features make several slices.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from sqlalchemy import Connection, text

import etl.load
from etl.errors import LoadError, ValidationFailed
from etl.load import load_file
from etl.readers import read_batches, read_source
from tests.test_load import loaded_territory, snapshot  # noqa: F401  (fixture)

EVENT_COLUMNS = """code, category_code, priority, channel, description, reported_at, status,
    handling_level, unit_id, unit_path, ST_AsEWKT(geom), closed_at, satisfaction"""


@pytest.fixture
def sliced(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(etl.load, "SLICED_MIN_ROWS", 10)
    monkeypatch.setattr(etl.load, "SLICE_ROWS", 7)
    return 7


@pytest.fixture
def categories(loaded_territory: Connection) -> Connection:  # noqa: F811
    loaded_territory.execute(
        text(
            "INSERT INTO event_categories (code, name, default_priority, emergency) "
            "VALUES ('T1','t',3,false), ('T2','u',2,true)"
        )  # fmt: skip
    )
    return loaded_territory


def events_gpkg(path: Path, n: int, *, seed: int = 3) -> gpd.GeoDataFrame:
    """n events over the test territory (two grids in the west, a township in the east), a
    few closed with a satisfaction score, one on the edge the two grids share."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(108.0, 108.2, n), rng.uniform(32.0, 32.1, n)
    x[0] = 108.05  # on the shared edge of grids 001 and 002: the lower code wins
    t0 = pd.Timestamp("2026-03-01 08:00", tz="Asia/Shanghai")
    closed = rng.random(n) < 0.3
    frame = gpd.GeoDataFrame(
        {
            "事件编号": [f"E{i:03d}" for i in range(n)],
            "事件类型": rng.choice(["T1", "T2"], n),
            "上报时间": t0 + pd.to_timedelta(rng.uniform(0, 30 * 86400, n).round(), unit="s"),
            "status": np.where(closed, "closed", "reported"),
            "closed_at": pd.Series(t0 + pd.Timedelta(days=40), index=range(n)).where(closed),
            "satisfaction": pd.Series(np.where(closed, 5, 0)).where(closed).astype("Int64"),
            "description": [f"第{i}号" if i % 3 else None for i in range(n)],
        },
        geometry=shapely.points(x, y),
        crs=4490,
    )
    frame.to_file(path, driver="GPKG", layer="events")
    return frame


def rows(conn: Connection) -> list[tuple]:
    return [
        tuple(r) for r in conn.execute(text(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY code"))
    ]


def test_slices_read_like_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "ev.gpkg"
    events_gpkg(path, 30)
    whole = read_source(path).frame
    slices = list(read_batches(path, rows=7))
    assert [start for start, _ in slices] == [0, 7, 14, 21, 28]
    joined = pd.concat([s.frame for _, s in slices], ignore_index=True)
    pd.testing.assert_frame_equal(joined.drop(columns="geometry"), whole.drop(columns="geometry"))
    assert shapely.equals_exact(joined.geometry.values, whole.geometry.values, 0).all()
    assert slices[0][1].stated_crs is not None and slices[0][1].stated_crs.to_epsg() == 4490


def test_sliced_load_writes_what_a_whole_load_writes(
    categories: Connection, tmp_path: Path, sliced: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = categories
    path = tmp_path / "ev.gpkg"
    events_gpkg(path, 30)
    progress: list[str] = []
    result = load_file(conn, "events", path, progress=progress.append)
    assert result.counts.inserted == 30 and result.total == 30
    assert any("in slices of 7" in m for m in progress)
    assert any("28 of 30 validated" in m for m in progress)
    sliced_rows = rows(conn)
    edge = next(r for r in sliced_rows if r[0] == "E000")
    assert edge[9] == ["511781", "511781001", "511781001001"]  # lowest code wins on the edge
    emergency = {r[0]: r[7] for r in sliced_rows}
    assert {emergency[r[0]] for r in sliced_rows if r[1] == "T2"} == {"county"}

    # every value as the file has it (binary COPY: times, small ints, NULLs, arrays, EWKB)
    source = events_gpkg(tmp_path / "same.gpkg", 30).set_index("事件编号")
    for (
        code,
        cat,
        prio,
        _ch,
        desc,
        reported,
        status,
        _lvl,
        unit_id,
        path_,
        ewkt,
        closed,
        sat,
    ) in sliced_rows:
        want = source.loc[code]
        assert cat == want["事件类型"] and prio == {"T1": 3, "T2": 2}[cat]
        assert reported == want["上报时间"] and status == want["status"]
        assert desc == want["description"] if desc is not None else pd.isna(want["description"])
        assert (closed, sat) == ((want["closed_at"], 5) if status == "closed" else (None, None))
        point = shapely.from_wkt(ewkt.split(";")[1])
        assert ewkt.startswith("SRID=4490;") and point.equals_exact(want["geometry"], 1e-12)
        west = point.x < 108.1  # two grids in the western township, none in the eastern
        assert unit_id is not None and path_[:2] == ["511781", "511781001" if west else "511781002"]
        assert len(path_) == (3 if west else 2)

    conn.execute(text("DELETE FROM events"))
    monkeypatch.setattr(etl.load, "SLICED_MIN_ROWS", 10**9)
    assert load_file(conn, "events", path).counts.inserted == 30
    assert rows(conn) == sliced_rows


def test_sliced_load_twice_changes_nothing_and_a_change_updates(
    categories: Connection, tmp_path: Path, sliced: int
) -> None:
    conn = categories
    path = tmp_path / "ev.gpkg"
    frame = events_gpkg(path, 25)
    load_file(conn, "events", path)
    before = rows(conn)
    again = load_file(conn, "events", path)
    assert (again.counts.inserted, again.counts.updated, again.counts.unchanged) == (0, 0, 25)
    assert rows(conn) == before
    frame.loc[frame["事件编号"] == "E020", "事件类型"] = (
        "T1" if frame["事件类型"][20] == "T2" else "T2"
    )
    changed = tmp_path / "ev2.gpkg"
    frame.to_file(changed, driver="GPKG", layer="events")
    third = load_file(conn, "events", changed)
    assert (third.counts.inserted, third.counts.updated, third.counts.unchanged) == (0, 1, 24)


def test_bad_rows_in_several_slices_are_all_named_and_nothing_is_written(
    categories: Connection, tmp_path: Path, sliced: int
) -> None:
    conn = categories
    path = tmp_path / "ev.gpkg"
    frame = events_gpkg(path, 30)
    frame.loc[3, "事件类型"] = "ZZ"  # unknown category, first slice
    frame.loc[16, "事件编号"] = "E002"  # a code of the first slice again, third slice
    frame.loc[29, "geometry"] = shapely.Point(100.0, 20.0)  # outside the territory, last slice
    frame.to_file(path, driver="GPKG", layer="events")
    before = snapshot(conn)
    with pytest.raises(ValidationFailed) as refused:
        load_file(conn, "events", path)
    where = [w for w, _ in refused.value.problems]
    assert where == ["feature 4 (code=E003)", "feature 17 (code=E002)", "feature 30 (code=E029)"]
    reasons = " ".join(why for _, why in refused.value.problems)
    assert "unknown category code 'ZZ'" in reasons and "duplicate code 'E002'" in reasons
    assert "outside the territory" in reasons
    assert str(path) in str(refused.value)
    assert snapshot(conn) == before


def test_skip_invalid_loads_the_good_slices_and_lists_the_rejects(
    categories: Connection, tmp_path: Path, sliced: int
) -> None:
    conn = categories
    path = tmp_path / "ev.gpkg"
    frame = events_gpkg(path, 20)
    frame.loc[[1, 12], "事件类型"] = "ZZ"
    frame.to_file(path, driver="GPKG", layer="events")
    rejects = tmp_path / "rejects.csv"
    result = load_file(conn, "events", path, skip_invalid=True, rejects_path=rejects)
    assert (result.counts.inserted, result.rejected) == (18, 2)
    listed = pd.read_csv(rejects, encoding="utf-8-sig")
    assert listed["row"].tolist() == ["feature 2 (code=E001)", "feature 13 (code=E012)"]
    codes = set(conn.execute(text("SELECT code FROM events")).scalars())
    assert len(codes) == 18 and not codes & {"E001", "E012"}
    run = conn.execute(
        text("SELECT loaded, rejected, sha256 FROM etl_runs ORDER BY id DESC")
    ).first()
    assert run is not None and (run.loaded, run.rejected) == (18, 2) and len(run.sha256) == 64


def test_bulk_load_into_an_empty_table_draws_ids_in_one_block(
    categories: Connection, tmp_path: Path, sliced: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With indexes dropped and the table locked, ids and revs come from one block per
    sequence; later writes draw after it, and the restored keys hold."""
    import etl.write

    monkeypatch.setattr(etl.write, "BULK_MIN_ROWS", 10)
    conn = categories
    path = tmp_path / "ev.gpkg"
    events_gpkg(path, 30)
    before = conn.execute(text("SELECT nextval('events_id_seq'), nextval('event_rev_seq')")).one()
    oids_sql = text("SELECT relname, oid FROM pg_class WHERE relname LIKE 'ix_events_%'")
    oids = dict(conn.execute(oids_sql).all())
    assert load_file(conn, "events", path).counts.inserted == 30
    rebuilt = {name for name, oid in conn.execute(oids_sql).all() if oids.get(name) != oid}
    # partial indexes over columns the file does not write stay; the rest were rebuilt
    assert {"ix_events_responder", "ix_events_duplicate_of"}.isdisjoint(rebuilt)
    assert {"ix_events_geom", "ix_events_path", "ix_events_closed"} <= rebuilt
    ids, revs, lo_id, hi_id = conn.execute(
        text("SELECT count(DISTINCT id), count(DISTINCT rev), min(id), max(id) FROM events")
    ).one()
    assert (ids, revs) == (30, 30) and (lo_id, hi_id) == (before[0] + 1, before[0] + 30)
    conn.execute(
        text("""INSERT INTO events (code, geom, category_code, priority, channel, reported_at,
                                    status, handling_level)
                VALUES ('LATE', ST_SetSRID(ST_MakePoint(108.01, 32.01), 4490), 'T1', 3, 'app',
                        now(), 'reported', 'grid')""")
    )  # fmt: skip
    late = conn.execute(text("SELECT id, rev FROM events WHERE code = 'LATE'")).one()
    max_rev = conn.execute(text("SELECT max(rev) FROM events WHERE code <> 'LATE'")).scalar_one()
    assert late.id > hi_id and late.rev > max_rev
    with pytest.raises(Exception, match="events_code_key"), conn.begin_nested():
        conn.execute(
            text("""INSERT INTO events (code, geom, category_code, priority, channel,
                                            reported_at, status, handling_level)
                        SELECT code, geom, category_code, priority, channel, reported_at, status,
                               handling_level FROM events WHERE code = 'E005'""")
        )  # fmt: skip


def test_read_ahead_hands_over_items_errors_and_stops_with_the_consumer() -> None:
    from etl.readers import ReadAhead

    assert list(ReadAhead(iter(range(10)), depth=2)) == list(range(10))

    def failing():  # noqa: ANN202
        yield 1
        raise ValueError("slice 2 is broken")

    got = []
    with pytest.raises(ValueError, match="slice 2 is broken"):
        for item in ReadAhead(failing()):
            got.append(item)
    assert got == [1]

    produced = []

    def endless():  # noqa: ANN202
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    items = ReadAhead(endless(), depth=2)
    assert next(items) == 0
    items.close()  # the consumer stops: the worker must stop too (close joins it)
    assert len(produced) <= 4 and not items._worker.is_alive()

    with ReadAhead(endless(), depth=1) as unread:  # never consumed: leaving still stops it
        pass
    assert not unread._worker.is_alive()


def test_a_broken_geometry_blob_mid_file_is_refused_naming_the_file(
    categories: Connection, tmp_path: Path, sliced: int
) -> None:
    import sqlite3

    conn = categories
    path = tmp_path / "ev.gpkg"
    events_gpkg(path, 30)
    with sqlite3.connect(path) as db:  # feature 20 (third slice): a blob that is no geometry
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for (trigger,) in triggers:  # the R-tree triggers call SpatiaLite functions
            db.execute(f'DROP TRIGGER "{trigger}"')
        db.execute("UPDATE events SET geom = X'4750000100000000DEADBEEF' WHERE fid = 20")
    before = snapshot(conn)
    with pytest.raises(LoadError, match=f"{path}: cannot be read"):
        load_file(conn, "events", path)
    assert snapshot(conn) == before


def test_a_refusal_in_the_first_slice_stops_the_reader(
    categories: Connection, tmp_path: Path, sliced: int
) -> None:
    import threading

    from etl.errors import CRSMissingError

    path = tmp_path / "nocrs.gpkg"
    events_gpkg(tmp_path / "ev.gpkg", 30).set_crs(None, allow_override=True).to_file(
        path, driver="GPKG", layer="events"
    )
    with pytest.raises(CRSMissingError, match=f"{path}: the file states no coordinate system"):
        load_file(categories, "events", path)
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]
