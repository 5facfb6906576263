"""Read queries of the event desk, the case card, the responder board and the loop's KPIs.

Every function takes a bind (engine or connection) and a :class:`~etl.queries.Scope`.

KPI definitions (per unit at a chosen level, for the half-open period ``[start, end)``), built
from the history so that closing a case on paper does not make it look solved:

* filed, should_close, closed, closed_on_time, closure_rate, on_time_rate, returns,
  escalations, bounced: :func:`geo.workflow.closure_stats` (CJ/T 292) with each event's stored
  deadline;
* resolution_rate 解决率: closed cases that passed the on-site check the first time (no
  ``check_fail``) and drew no repeat complaint within :data:`REPEAT_DAYS` days / closed cases;
* satisfaction: mean of the 1-5 evaluations given in the period, and the share of 4-5;
* repeats 重复投诉: events reported in the period that repeat an earlier, not cancelled event of
  the same category within :data:`REPEAT_METRES` and the :data:`REPEAT_DAYS` before it, and are
  not linked as its duplicate (a duplicate is the same thing reported twice, a repeat is the
  thing coming back).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from etl.incidents import ACTIONS, LADDER, history, state_of
from etl.queries import Scope
from geo import workflow as wf
from geo.workcalendar import WorkCalendar

Bind = Engine | Connection
OPEN_STATUSES = (
    "reported", "verified", "filed", "dispatched", "in_progress", "handled", "checked",
    "extension_requested", "backlog",
)  # fmt: skip
REPEAT_METRES = 50.0
REPEAT_DAYS = 30
WARN_HOURS = 2.0


def _conn(bind: Bind) -> Any:
    return bind.connect() if isinstance(bind, Engine) else _Borrowed(bind)


class _Borrowed:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        return None


_LIST_SQL = """
    SELECT e.code, e.category_code, c.name AS category, c.name_en AS category_en,
           c.department, c.time_unit, e.priority, e.channel, e.status, e.handling_level,
           e.handling_unit_code, e.unit_path[array_length(e.unit_path, 1)] AS unit_code,
           e.reported_at, e.dispatched_at, e.due_at, e.closed_at, e.version, e.satisfaction,
           ST_X(e.geom) AS lon, ST_Y(e.geom) AS lat, e.description, d.code AS duplicate_of,
           r.code AS responder, e.updated_at
    FROM events e JOIN event_categories c ON c.code = e.category_code
    LEFT JOIN events d ON d.id = e.duplicate_of
    LEFT JOIN responders r ON r.id = e.responder_id
"""


def list_events(
    bind: Bind,
    scope: Scope,
    *,
    statuses: Sequence[str] | None = None,
    level: str | None = None,
    category: str | None = None,
    unit: str | None = None,
    since: datetime | None = None,
    overdue_at: datetime | None = None,
    text_query: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Events newest first, filtered; ``overdue_at`` keeps open events past their deadline."""
    where, params = [scope.sql("e")], dict(scope.params())
    for cond, key, value in (
        ("e.status = ANY(CAST(:statuses AS varchar[]))", "statuses", list(statuses or [])),
        ("e.handling_level = :level", "level", level),
        ("(e.category_code = :cat OR c.parent_code = :cat)", "cat", category),
        ("e.unit_path @> ARRAY[CAST(:unit AS varchar)]", "unit", unit),
        ("e.reported_at >= :since", "since", since),
        ("e.due_at < :overdue AND e.status = ANY(CAST(:open AS varchar[]))", "overdue", overdue_at),
        ("(e.code ILIKE :q OR e.description ILIKE :q)", "q", f"%{text_query}%" if text_query else None),
    ):  # fmt: skip
        if value:
            where.append(cond)
            params[key] = value
    params |= {"open": list(OPEN_STATUSES), "limit": limit, "offset": offset}
    sql = f"{_LIST_SQL} WHERE {' AND '.join(where)} ORDER BY e.reported_at DESC, e.id DESC LIMIT :limit OFFSET :offset"
    with _conn(bind) as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def territory_box(bind: Bind) -> tuple[float, float, float, float] | None:
    """The bounding box (west, south, east, north, degrees EPSG:4490) of the current root units,
    i.e. the territory; None when no unit is loaded. Not scoped: it bounds what may be reported,
    and reveals no more than the map shows. Read through ``territory_extent()`` (migration 0009),
    which sees the root units whatever the caller's row-level-security scope."""
    sql = """SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b)
             FROM (SELECT territory_extent() AS b) x"""
    with _conn(bind) as conn:
        row = conn.execute(text(sql)).one()
    return None if row[0] is None else (row[0], row[1], row[2], row[3])


def event_point(bind: Bind, scope: Scope, code: str) -> dict[str, Any] | None:
    """Where an event is and which department owns its category (for dispatch)."""
    sql = f"""SELECT e.code, ST_X(e.geom) AS lon, ST_Y(e.geom) AS lat, c.department
              FROM events e JOIN event_categories c ON c.code = e.category_code
              WHERE {scope.sql("e")} AND e.code = :code"""
    with _conn(bind) as conn:
        row = conn.execute(text(sql), scope.params() | {"code": code}).mappings().one_or_none()
    return dict(row) if row else None


def deadline_flag(
    row: dict[str, Any], now: datetime, calendar: WorkCalendar, *, warn_hours: float = WARN_HOURS
) -> str | None:
    """on_time / due_soon / overdue (working time, so a deadline on Monday 9:00 is not "soon" on
    Friday night), ``paused`` while the clock stops, None before dispatch or once closed."""
    if row["status"] in ("extension_requested", "backlog"):
        return "paused"
    if row["status"] not in OPEN_STATUSES or row.get("due_at") is None:
        return None
    unit = "clock_hours" if row.get("time_unit") == "clock_hours" else "hours"
    return calendar.deadline_status(now, row["due_at"], warn_hours=warn_hours, unit=unit)  # type: ignore[arg-type]


def desk_queue(
    bind: Bind, scope: Scope, *, now: datetime, calendar: WorkCalendar, **filters: Any
) -> list[dict[str, Any]]:
    """:func:`list_events` of open cases (unless statuses are given) with their deadline flag."""
    filters.setdefault("statuses", OPEN_STATUSES)
    rows = list_events(bind, scope, **filters)
    for row in rows:
        row["deadline"] = deadline_flag(row, now, calendar)
    return rows


def queue_counts(bind: Bind, scope: Scope, *, now: datetime) -> dict[str, dict[str, int]]:
    """Open cases per handling level: total, overdue and awaiting a decision (paused)."""
    sql = f"""
        SELECT handling_level, count(*) AS open,
               count(*) FILTER (WHERE due_at < :now) AS overdue,
               count(*) FILTER (WHERE status IN ('extension_requested', 'backlog')) AS paused,
               count(*) FILTER (WHERE status = 'reported') AS new
        FROM events e WHERE {scope.sql("e")} AND status = ANY(CAST(:open AS varchar[]))
        GROUP BY handling_level"""
    params = scope.params() | {"now": now, "open": list(OPEN_STATUSES)}
    with _conn(bind) as conn:
        rows = conn.execute(text(sql), params).mappings().all()
    out = {lvl: {"open": 0, "overdue": 0, "paused": 0, "new": 0} for lvl in LADDER}
    for r in rows:
        out[r["handling_level"]] = {k: int(r[k]) for k in ("open", "overdue", "paused", "new")}
    return out


def event_card(
    bind: Bind, scope: Scope, code: str, *, now: datetime, calendar: WorkCalendar
) -> dict[str, Any] | None:
    """One case: its row, deadline flag, timeline, duplicates and assignments, and its state."""
    with _conn(bind) as conn:
        rows = conn.execute(
            text(f"{_LIST_SQL} WHERE {scope.sql('e')} AND e.code = :code"),
            scope.params() | {"code": code},
        ).mappings().all()  # fmt: skip
        if not rows:
            return None
        card = dict(rows[0])
        lock = conn.execute(text(_STATE_SQL), {"code": code}).one()
        card["state"] = state_of(lock)
        card["deadline"] = deadline_flag(card, now, calendar)
        card["history"] = [_step_dict(t) for t in history(conn, lock.id)]
        card["duplicates"] = list(conn.execute(
            text("SELECT code FROM events WHERE duplicate_of = :i ORDER BY reported_at"),
            {"i": lock.id}).scalars())  # fmt: skip
        card["assignments"] = [dict(r) for r in conn.execute(text("""
            SELECT r.code AS responder, r.type, a.assigned_at, a.eta_s, a.method, a.released_at
            FROM dispatch_assignments a JOIN responders r ON r.id = a.responder_id
            WHERE a.event_id = :i ORDER BY a.assigned_at"""), {"i": lock.id}).mappings()]  # fmt: skip
    return card


_STATE_SQL = """
    SELECT e.id, e.status, e.handling_level, e.version, e.paused_since, e.resume_status,
           e.dispatched_by, e.dispatched_at, e.satisfaction, c.emergency,
           COALESCE((SELECT max(h.at) FROM event_history h WHERE h.event_id = e.id),
                    e.reported_at) AS last_at
    FROM events e JOIN event_categories c ON c.code = e.category_code WHERE e.code = :code"""


def _step_dict(t: wf.Transition) -> dict[str, Any]:
    return {
        "version": t.version, "action": t.action.value, "at": t.at, "actor": t.actor.name,
        "actor_level": t.actor.level, "actor_role": t.actor.role,
        "from_status": t.from_status.value if t.from_status else None,
        "to_status": t.to_status.value, "from_level": t.from_level, "to_level": t.to_level,
        "note": t.note, "satisfaction": t.satisfaction,
    }  # fmt: skip


def allowed_for(state: wf.EventState, level: str, role: str = "staff") -> list[str]:
    """The actions someone at ``level`` may take now with ``etl.incidents.act`` (sorted, for
    buttons; a reinforcement is sent through dispatch, with its responder)."""
    if level not in LADDER:
        return []
    allowed = wf.allowed_actions(state, wf.Actor(level, role, ""), ladder=LADDER)
    return sorted(a.value for a in allowed if a in ACTIONS)


def responder_board(bind: Bind, scope: Scope) -> list[dict[str, Any]]:
    """Every responder with its status, last fix and current case."""
    sql = f"""
        SELECT r.code, r.name, r.type, r.status, r.position_at, ST_X(r.geom) AS lon,
               ST_Y(r.geom) AS lat, e.code AS event, a.assigned_at, a.eta_s, a.method
        FROM responders r
        LEFT JOIN dispatch_assignments a ON a.responder_id = r.id AND a.released_at IS NULL
        LEFT JOIN events e ON e.id = a.event_id
        WHERE {scope.sql("r") if scope.unit_codes else "TRUE"}
        ORDER BY r.type, r.code"""
    with _conn(bind) as conn:
        return [dict(r) for r in conn.execute(text(sql), scope.params()).mappings()]


# --- KPIs ------------------------------------------------------------------------------------


def kpis(
    bind: Bind,
    scope: Scope,
    *,
    level: str,
    period: tuple[datetime, datetime],
    as_of: datetime | None = None,
) -> list[dict[str, Any]]:
    """Per unit at ``level``: the closure KPIs plus resolution, satisfaction and repeats."""
    lo, hi = period
    with _conn(bind) as conn:
        events = _kpi_events(conn, scope, level, lo, hi)
        steps = _kpi_histories(conn, [e["id"] for e in events])
        repeats = _repeats(conn, scope, level, lo, hi)
    return _kpi_rows(events, steps, repeats, lo, hi, as_of)


def _near(a: str, b: str) -> str:
    """SQL: ``a.geom`` lies within ``:metres`` of ``b.geom``. The box test comes first so that
    the GiST index on events.geom answers it (the distance on the spheroid cannot use it)."""
    return (
        f"{a}.geom && ST_Expand({b}.geom, :dlat / greatest(cos(radians(ST_Y({b}.geom))), 0.05), "
        f":dlat) AND ST_DWithin({a}.geom::geography, {b}.geom::geography, :metres)"
    )


def _near_params(metres: float) -> dict[str, float]:
    return {"metres": metres, "dlat": metres / 111_000 * 1.2}


# In the correlated look-ups below the time window is written as a difference of the two times:
# a plain range on reported_at makes the planner AND in the reported_at index, and a 30-day
# window holds thousands of events where the 60 m box holds a handful (a year of KPIs over 25,000
# events went from 60 s to 3 s). The look-ups are LATERAL with LIMIT 1 so that they stay
# per-event index probes instead of becoming a hash join over every pair of one category.
def _kpi_events(conn: Connection, scope: Scope, level: str, lo: datetime, hi: datetime) -> list:
    sql = f"""
        SELECT e.id, u.code AS unit, u.name AS unit_name, e.due_at, e.closed_at,
               back.hit IS NOT NULL AS came_back
        FROM events e JOIN units u ON u.code = ANY(e.unit_path) AND u.level = :level
                                   AND u.valid_to IS NULL
        LEFT JOIN LATERAL (
            SELECT 1 AS hit FROM events r
            WHERE e.closed_at >= :lo AND e.closed_at < :hi AND {_near("r", "e")}
              AND r.category_code = e.category_code AND r.id <> e.id
              AND r.duplicate_of IS DISTINCT FROM e.id
              AND r.reported_at - e.closed_at > interval '0'
              AND r.reported_at - e.closed_at <= make_interval(days => :days)
            LIMIT 1) back ON TRUE
        WHERE {scope.sql("e")} AND e.reported_at < :hi AND e.status <> 'cancelled'
          AND (e.closed_at IS NULL OR e.closed_at >= :lo)"""
    params = scope.params() | _near_params(REPEAT_METRES) | {
        "level": level, "lo": lo, "hi": hi, "days": REPEAT_DAYS}  # fmt: skip
    return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def _kpi_histories(conn: Connection, ids: list[int]) -> dict[int, list[wf.Transition]]:
    rows = conn.execute(text("""
        SELECT event_id, version, action, actor, actor_level, actor_role, at, from_status,
               to_status, from_level, to_level, note, satisfaction
        FROM event_history WHERE event_id = ANY(:ids) ORDER BY event_id, version NULLS FIRST, at, id"""),
        {"ids": ids}).all()  # fmt: skip
    out: dict[int, list[wf.Transition]] = defaultdict(list)
    for r in rows:
        out[r.event_id].append(wf.Transition(
            version=r.version or 0, action=r.action,
            actor=wf.Actor(r.actor_level or "", r.actor_role or "", r.actor), at=r.at,
            from_status=r.from_status, to_status=r.to_status, from_level=r.from_level,
            to_level=r.to_level or "", note=r.note, satisfaction=r.satisfaction))  # fmt: skip
    return out


def _repeats(conn: Connection, scope: Scope, level: str, lo: datetime, hi: datetime) -> dict:
    sql = f"""
        SELECT u.code AS unit, count(*) AS n FROM events e
        JOIN units u ON u.code = ANY(e.unit_path) AND u.level = :level AND u.valid_to IS NULL
        CROSS JOIN LATERAL (
            SELECT 1 FROM events p
            WHERE {_near("p", "e")} AND p.category_code = e.category_code
              AND p.id <> e.id AND p.status <> 'cancelled'
              AND e.duplicate_of IS DISTINCT FROM p.id
              AND e.duplicate_of IS DISTINCT FROM p.duplicate_of
              AND e.reported_at - p.reported_at > interval '0'
              AND e.reported_at - p.reported_at <= make_interval(days => :days)
            LIMIT 1) earlier
        WHERE {scope.sql("e")} AND e.reported_at >= :lo AND e.reported_at < :hi
        GROUP BY u.code"""
    params = scope.params() | _near_params(REPEAT_METRES) | {
        "level": level, "lo": lo, "hi": hi, "days": REPEAT_DAYS}  # fmt: skip
    return {r.unit: int(r.n) for r in conn.execute(text(sql), params)}


def _kpi_rows(
    events: list, steps: dict, repeats: dict, lo: datetime, hi: datetime, as_of: datetime | None
) -> list[dict[str, Any]]:
    by_unit: dict[str, list] = defaultdict(list)
    names: dict[str, str] = {}
    for e in events:
        by_unit[e["unit"]].append(e)
        names[e["unit"]] = e["unit_name"]
    out = []
    for unit in sorted(set(by_unit) | set(repeats)):
        group = by_unit.get(unit, [])
        hist = [steps.get(e["id"], []) for e in group]
        due = {id(h): e["due_at"] for h, e in zip(hist, group, strict=True)}
        stats = wf.closure_stats(hist, (lo, hi), due_of=_lookup(due), as_of=as_of,
                                 ladder=LADDER)  # fmt: skip
        out.append({"unit": unit, "unit_name": names.get(unit), **stats.__dict__,
                    **_quality(group, hist, lo, hi), "repeats": repeats.get(unit, 0)})  # fmt: skip
    return out


def _lookup(
    due: dict[int, datetime | None],
) -> Callable[[Sequence[wf.Transition]], datetime | None]:
    return lambda history: due[id(history)]


def _quality(group: list, hist: list, lo: datetime, hi: datetime) -> dict[str, Any]:
    closed = [(e, h) for e, h in zip(group, hist, strict=True)
              if e["closed_at"] is not None and lo <= e["closed_at"] < hi]  # fmt: skip
    solved = [e for e, h in closed
              if not e["came_back"] and not any(t.action is wf.Action.CHECK_FAIL for t in h)]  # fmt: skip
    sats = [t.satisfaction for h in hist for t in h
            if t.action is wf.Action.EVALUATE and t.satisfaction and lo <= t.at < hi]  # fmt: skip
    return {
        "resolution_rate": len(solved) / len(closed) if closed else None,
        "satisfaction": sum(sats) / len(sats) if sats else None,
        "satisfied_share": sum(s >= 4 for s in sats) / len(sats) if sats else None,
        "evaluations": len(sats),
    }
