"""An events file with a value the database would refuse mid-COPY, or the workflow could not
handle later, is refused row by row naming the reason (it used to fail with a database error,
or be stored: a code with ``/`` no URL can address, a date in year 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection

from etl.errors import CRSInvalidError, FileFormatError, ValidationFailed
from etl.load import load_file
from tests.test_incidents_net import build_net

HEADER = "事件编号,事件类型,上报时间,经度,纬度,事件描述,状态,优先级\n"
GOOD = ["G1", "0201", "2026-11-19 09:00", "108.005", "32.005", "ok", "reported", "3"]


def _file(tmp_path: Path, **change: str) -> Path:
    names = ["code", "category", "time", "lon", "lat", "description", "status", "priority"]
    row = [change.get(n, v) for n, v in zip(names, GOOD, strict=True)]
    path = tmp_path / "events.csv"
    path.write_text(HEADER + ",".join(row) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"code": "X" * 41}, "code must match"),
        ({"code": "A/B"}, "code must match"),
        ({"code": "two words"}, "code must match"),
        ({"code": "import"}, "names an API path"),
        ({"status": "whatever_status_that_is_long"}, "status must be one of"),
        ({"priority": "99999"}, "priority must be 1-5"),
        ({"time": "0001-01-01 09:00"}, "reported_at lies outside 2000 to 2100"),
        ({"description": "a\x00b"}, "NUL"),
        ({"description": "长" * 4001}, "longer than 4000"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_bad_event_rows_are_named(
    conn: Connection, tmp_path: Path, change: dict[str, str], reason: str
) -> None:
    build_net(conn)
    with pytest.raises(ValidationFailed) as err:
        load_file(conn, "events", _file(tmp_path, **change), crs="4490")
    assert len(err.value.problems) == 1 and reason in err.value.problems[0][1]
    assert load_file(conn, "events", _file(tmp_path), crs="4490").counts.inserted == 1


def test_an_empty_file_and_an_unknown_crs_are_refused(conn: Connection, tmp_path: Path) -> None:
    build_net(conn)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty"):
        load_file(conn, "events", empty, crs="4490")
    with pytest.raises(CRSInvalidError, match="99999"):
        load_file(conn, "events", _file(tmp_path), crs="99999")
