"""The write side of the incident loop: intake, transitions, duplicates, dispatch, AVL.

Legality lives in :mod:`geo.workflow` (the pure state machine); this module only reads the
event's row under a lock, asks the machine, and writes the new state and its history row in the
caller's transaction. Rules decided here:

* Intake assigns the point to its finest unit (lowest code wins on shared edges, as
  ``etl.write.assign_to_leaves``) and hands it to the unit of the place at the handling level
  (事件: 先属地后属主); the category's owning department is kept on the category and shown beside.
* A probable duplicate (same category, within :data:`DUPLICATE_METRES` and
  :data:`DUPLICATE_WINDOW` of a live event) is stored and linked with ``duplicate_of`` to the
  first report, never dropped.
* Concurrency: ``SELECT … FOR UPDATE`` serialises writers on one event; a caller that passes
  the ``version`` it saw gets :class:`VersionConflict` when someone acted in between; the unique
  (event_id, version) index on the history is the last line of defence.
* Deadlines: on the working calendar from the first dispatch, paused while an extension awaits
  approval or the case is backlogged, lengthened by approved extensions (``extend_by``, in the
  category's unit); recomputed from the history after every transition.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, text

from etl.deadlines import UNIT_OF
from etl.models import Event as EventRow
from etl.models import EventHistory
from etl.schema import (
    DESCRIPTION_MAX,
    EARLIEST,
    RESERVED_EVENT_CODES,
    code_pattern,
    max_length,
)
from geo import workflow as wf
from geo.workcalendar import WorkCalendar

LADDER: tuple[str, ...] = wf.DEFAULT_LADDER
"""Handling levels, lowest first (a four-level place would pass its own)."""
DUPLICATE_METRES = 100.0
DUPLICATE_WINDOW = timedelta(hours=2)
CHANNELS = ("patrol", "hotline_12345", "110", "app", "sensor", "instruction", "open311")
RELEASING = frozenset({wf.Status.CLOSED, wf.Status.CANCELLED, wf.Status.EVALUATED})


class IncidentError(Exception):
    """Base class of the incident loop's refusals."""


class NotFound(IncidentError):
    """No event (or responder) with that code."""


class VersionConflict(IncidentError):
    """The event changed since the caller read it (optimistic concurrency)."""


class ResponderUnavailable(IncidentError):
    """The responder is busy, off duty or unknown to the event's dispatch."""


class AlreadyAssigned(ResponderUnavailable):
    """The event already has a responder, and the caller did not ask for reinforcement."""


class InvalidReport(IncidentError):
    """A report or action request with field-level problems: ``errors`` = [(field, reason)]."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{f}: {r}" for f, r in self.errors))


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    name_en: str | None
    priority: int
    time_limit: float | None
    time_unit: str | None
    department: str | None
    emergency: bool
    leaf: bool


@dataclass(frozen=True)
class Report:
    """A validated report (上报); ``code`` is an idempotency key when the client gives one."""

    category_code: str
    lon: float
    lat: float
    reported_at: datetime
    channel: str = "app"
    description: str | None = None
    priority: int | None = None
    reporter: str = "resident"
    reporter_level: str = "grid"
    reporter_role: str = "resident"
    code: str | None = None


def load_categories(bind: Engine | Connection) -> dict[str, Category]:
    sql = """SELECT c.code, c.name, c.name_en, c.default_priority, c.time_limit, c.time_unit,
                    c.department, c.emergency,
                    NOT EXISTS (SELECT 1 FROM event_categories k WHERE k.parent_code = c.code) AS leaf
             FROM event_categories c ORDER BY c.code"""
    with _connect(bind) as conn:
        rows = conn.execute(text(sql)).all()
    return {
        r.code: Category(r.code, r.name, r.name_en, r.default_priority,
                         float(r.time_limit) if r.time_limit is not None else None,
                         r.time_unit, r.department, bool(r.emergency), bool(r.leaf))
        for r in rows
    }  # fmt: skip


# --- validation ------------------------------------------------------------------------------


def parse_report(
    payload: Mapping[str, Any], categories: Mapping[str, Category], *, now: datetime
) -> Report:
    """Validate a JSON-like report; every problem is named by field (:class:`InvalidReport`)."""
    errors: list[tuple[str, str]] = []
    if not isinstance(payload, Mapping):
        raise InvalidReport([("body", "must be a JSON object")])
    cat = _category_field(payload.get("category_code"), categories, errors)
    lon = _number(payload, "lon", -180, 180, errors)
    lat = _number(payload, "lat", -90, 90, errors)
    at = _time_field(payload.get("reported_at"), now, errors)
    channel = payload.get("channel", "app")
    if channel not in CHANNELS:
        errors.append(("channel", f"must be one of {list(CHANNELS)}"))
    level = payload.get("reporter_level", "grid")
    if level not in LADDER:
        errors.append(("reporter_level", f"must be one of {list(LADDER)}"))
    priority = payload.get("priority")
    if priority is not None and (type(priority) is not int or not 1 <= priority <= 5):
        errors.append(("priority", "must be an integer 1-5"))
    texts = {k: payload.get(k) for k in ("description", "reporter", "reporter_role", "code")}
    for key, value in texts.items():
        if value is not None and not isinstance(value, str):
            errors.append((key, "must be a string"))
    errors += _text_rules(texts)
    if errors:
        raise InvalidReport(errors)
    return Report(
        category_code=cat, lon=lon, lat=lat, reported_at=at, channel=channel,
        description=texts["description"], priority=priority,
        reporter=texts["reporter"] or "resident", reporter_level=level,
        reporter_role=texts["reporter_role"] or "resident", code=texts["code"],
    )  # fmt: skip


# the same rules as the API's request models and the loader (the desk's form comes through here)
_TEXT_MAX = {"description": DESCRIPTION_MAX, "reporter": max_length(EventHistory, "actor"),
             "reporter_role": max_length(EventHistory, "actor_role")}  # fmt: skip
_EVENT_CODE = code_pattern(max_length(EventRow, "code"))


def _text_rules(texts: Mapping[str, object]) -> list[tuple[str, str]]:
    errors = []
    for key, value in texts.items():
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            errors.append((key, "must not contain a NUL byte"))
        if key in _TEXT_MAX and len(value) > _TEXT_MAX[key]:
            errors.append((key, f"must be at most {_TEXT_MAX[key]} characters"))
    code = texts.get("code")
    if isinstance(code, str) and (
        re.fullmatch(_EVENT_CODE, code) is None or code in RESERVED_EVENT_CODES
    ):
        errors.append(("code", f"must match {_EVENT_CODE}, and not be one of "
                               f"{list(RESERVED_EVENT_CODES)}"))  # fmt: skip
    return errors


def _category_field(value: object, categories: Mapping[str, Category], errors: list) -> str:
    if not isinstance(value, str) or not value:
        errors.append(("category_code", "is required (a category code, e.g. 0201)"))
        return ""
    if value not in categories:
        errors.append(("category_code", f"unknown category {value!r}"))
    elif not categories[value].leaf:
        errors.append(("category_code", f"{value!r} is a group; report one of its sub-types"))
    return value


def _number(payload: Mapping[str, Any], key: str, lo: float, hi: float, errors: list) -> float:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.append((key, "is required and must be a number"))
        return math.nan
    if not lo <= value <= hi:
        errors.append((key, f"must be between {lo} and {hi} (lon/lat in degrees, EPSG:4490)"))
    return float(value)


def _time_field(value: object, now: datetime, errors: list) -> datetime:
    if value is None:
        return now
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        errors.append(("reported_at", "must be an ISO 8601 date-time"))
        return now
    if at.tzinfo is None:
        errors.append(("reported_at", "must carry a time zone offset (e.g. +08:00)"))
        return now
    if at > now + timedelta(minutes=5):
        errors.append(("reported_at", "lies in the future"))
    elif at < EARLIEST:
        errors.append(("reported_at", f"must not be before {EARLIEST:%Y-%m-%d}"))
    return at


# --- intake ----------------------------------------------------------------------------------

_INTAKE_SQL = text("""
WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) AS g),
leaf AS (
    SELECT u.id, u.unit_path FROM units u, pt
    WHERE u.valid_to IS NULL AND u.geom && pt.g AND ST_Intersects(u.geom, pt.g)
      AND NOT EXISTS (SELECT 1 FROM units c WHERE c.parent_id = u.id AND c.valid_to IS NULL)
    ORDER BY u.code LIMIT 1),
hunit AS (
    SELECT u.code FROM units u, leaf
    WHERE u.code = ANY(leaf.unit_path) AND u.valid_to IS NULL AND u.level = :level LIMIT 1),
dup AS (
    SELECT COALESCE(e.duplicate_of, e.id) AS id FROM events e, pt
    WHERE e.category_code = :cat AND e.status <> 'cancelled'
      AND e.reported_at BETWEEN CAST(:at AS timestamptz) - CAST(:win AS interval)
                            AND CAST(:at AS timestamptz) + CAST(:win AS interval)
      AND e.geom && ST_MakeEnvelope(:lon - :dlon, :lat - :dlat, :lon + :dlon, :lat + :dlat, 4490)
      AND ST_DWithin(e.geom::geography, pt.g::geography, :metres)
    ORDER BY e.reported_at, e.id LIMIT 1),
ins AS (
    INSERT INTO events (code, geom, category_code, priority, channel, description, reported_at,
                        status, unit_id, unit_path, handling_level, handling_unit_code,
                        duplicate_of, version)
    SELECT :code, pt.g, :cat, :priority, :channel, :description, :at, 'reported',
           leaf.id, leaf.unit_path, :level, (SELECT code FROM hunit), (SELECT id FROM dup), 1
    FROM pt, leaf
    ON CONFLICT (code) DO NOTHING
    RETURNING id, unit_path, handling_unit_code, duplicate_of)
SELECT (SELECT count(*) FROM leaf) AS inside, ins.id, ins.unit_path, ins.handling_unit_code,
       ins.duplicate_of
FROM (SELECT 1) one LEFT JOIN ins ON TRUE
""")
# A statement of its own: under row-level security the history row's policy looks for its event,
# which the same statement's snapshot does not hold yet (one statement was refused for every
# report through the app's role).
_FIRST_STEP_SQL = text("""
INSERT INTO event_history (event_id, at, actor, actor_level, actor_role, action, from_status,
                           to_status, from_level, to_level, note, version)
VALUES (:id, :at, :actor, :actor_level, :actor_role, 'report', NULL, 'reported', NULL, :level,
        :note, 1)
""")


def new_code(at: datetime) -> str:
    """An event code: date plus random hex (no central counter to contend on)."""
    return f"EV{at:%Y%m%d}{secrets.token_hex(5).upper()}"


def report(conn: Connection, rep: Report, categories: Mapping[str, Category]) -> dict[str, Any]:
    """Store a report (上报) with its first history row; ``created`` False on an idempotent retry.

    Raises :class:`InvalidReport` when the point is outside every loaded unit.
    """
    cat = categories[rep.category_code]
    state, first = wf.report_event(
        wf.Actor(rep.reporter_level, rep.reporter_role, rep.reporter),
        at=rep.reported_at, emergency=cat.emergency, level="grid", ladder=LADDER,
    )  # fmt: skip
    code = rep.code or new_code(rep.reported_at)
    params = _intake_params(rep, cat, state, first, code)
    row = conn.execute(_INTAKE_SQL, params).one()
    if row.id is not None:
        conn.execute(_FIRST_STEP_SQL, params | {"id": row.id})
    if not row.inside:
        raise InvalidReport(
            [("lon/lat", "the point lies outside the territory (no unit holds it)")]
        )
    if row.id is None:  # the code exists: an idempotent retry returns what is stored
        existing = conn.execute(text("SELECT id FROM events WHERE code = :c"), {"c": code}).one()
        return {"id": existing.id, "code": code, "created": False}
    return {
        "id": row.id, "code": code, "created": True, "status": state.status.value,
        "handling_level": state.handling_level, "handling_unit_code": row.handling_unit_code,
        "unit_code": row.unit_path[-1] if row.unit_path else None,
        "duplicate_of": row.duplicate_of, "emergency": cat.emergency,
    }  # fmt: skip


def _intake_params(
    rep: Report, cat: Category, state: wf.EventState, first: wf.Transition, code: str
) -> dict[str, Any]:
    dlat = DUPLICATE_METRES / 111_000 * 1.2
    dlon = dlat / max(math.cos(math.radians(rep.lat)), 0.05)
    return {
        "lon": rep.lon, "lat": rep.lat, "level": state.handling_level, "cat": rep.category_code,
        "at": rep.reported_at, "win": f"{int(DUPLICATE_WINDOW.total_seconds())} seconds",
        "dlat": dlat, "dlon": dlon, "metres": DUPLICATE_METRES, "code": code,
        "priority": rep.priority or cat.priority, "channel": rep.channel,
        "description": rep.description, "actor": first.actor.name,
        "actor_level": first.actor.level, "actor_role": first.actor.role,
        "note": f"channel {rep.channel}",
    }  # fmt: skip


def finish_import(conn: Connection, *, actor: str = "import", note: str = "bulk import") -> int:
    """After a bulk load (``etl.load.load_file``): history, handling unit and duplicate links for
    events that have no history yet. Returns how many events it completed."""
    sql = text("""
        WITH fresh AS (
            SELECT e.id FROM events e
            WHERE NOT EXISTS (SELECT 1 FROM event_history h WHERE h.event_id = e.id)),
        hist AS (
            INSERT INTO event_history (event_id, at, actor, actor_level, actor_role, action,
                                       from_status, to_status, from_level, to_level, note, version)
            SELECT e.id, e.reported_at, :actor, e.handling_level, 'import', 'report', NULL,
                   e.status, NULL, e.handling_level, :note, 1
            FROM events e JOIN fresh USING (id) RETURNING event_id),
        unit AS (
            UPDATE events e SET handling_unit_code = (
                SELECT u.code FROM units u WHERE u.code = ANY(e.unit_path)
                  AND u.valid_to IS NULL AND u.level = e.handling_level LIMIT 1),
              duplicate_of = (
                SELECT COALESCE(o.duplicate_of, o.id) FROM events o
                WHERE o.id <> e.id AND o.category_code = e.category_code
                  AND o.status <> 'cancelled'
                  AND (o.reported_at, o.id) < (e.reported_at, e.id)
                  AND o.reported_at >= e.reported_at - CAST(:win AS interval)
                  AND ST_DWithin(o.geom::geography, e.geom::geography, :metres)
                ORDER BY o.reported_at, o.id LIMIT 1)
            FROM fresh WHERE e.id = fresh.id RETURNING e.id)
        SELECT (SELECT count(*) FROM hist), (SELECT count(*) FROM unit)""")
    params = {"actor": actor, "note": note, "metres": DUPLICATE_METRES,
              "win": f"{int(DUPLICATE_WINDOW.total_seconds())} seconds"}  # fmt: skip
    return int(conn.execute(sql, params).one()[0])


# --- transitions -----------------------------------------------------------------------------

_LOCK_SQL = text("""
    SELECT e.id, e.code, e.status, e.handling_level, e.version, e.paused_since, e.resume_status,
           e.dispatched_by, e.dispatched_at, e.satisfaction, e.reported_at, e.unit_path,
           e.extension, e.responder_id, c.emergency, c.time_limit, c.time_unit,
           COALESCE((SELECT max(h.at) FROM event_history h WHERE h.event_id = e.id),
                    e.reported_at) AS last_at
    FROM events e JOIN event_categories c ON c.code = e.category_code
    WHERE e.code = :code FOR UPDATE OF e""")


def state_of(row: Any) -> wf.EventState:
    """The workflow state stored on an events row (as read by ``_LOCK_SQL``)."""
    return wf.EventState(
        status=row.status, handling_level=row.handling_level, emergency=bool(row.emergency),
        version=row.version, updated_at=row.last_at, paused_since=row.paused_since,
        resume_status=row.resume_status, dispatched_by=row.dispatched_by,
        dispatched_at=row.dispatched_at, satisfaction=row.satisfaction,
    )  # fmt: skip


def act(
    conn: Connection,
    code: str,
    action: str,
    actor: wf.Actor,
    *,
    calendar: WorkCalendar,
    version: int | None = None,
    reason: str | None = None,
    satisfaction: int | None = None,
    to_level: str | None = None,
    extend_by: float | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Take one workflow action on event ``code`` and record it; returns the new state.

    Raises :class:`NotFound`, :class:`VersionConflict` (``version`` given and stale), any
    :class:`geo.workflow.WorkflowError` (illegal, missing reason, …) or :class:`InvalidReport`.
    """
    row = _locked(conn, code, version)
    return _apply(
        conn, row, _action(action), actor, calendar=calendar, reason=reason,
        satisfaction=satisfaction, to_level=to_level, extend_by=extend_by, at=at,
    )  # fmt: skip


def _apply(
    conn: Connection,
    row: Any,
    action: wf.Action,
    actor: wf.Actor,
    *,
    calendar: WorkCalendar,
    reason: str | None = None,
    satisfaction: int | None = None,
    to_level: str | None = None,
    extend_by: float | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """:func:`act` on an event row already locked by ``_locked``."""
    at = at or datetime.now(ZoneInfo(calendar.tz))
    new, step = wf.apply(
        state_of(row), action, actor, at=at, reason=reason, satisfaction=satisfaction,
        to_level=to_level, ladder=LADDER,
    )  # fmt: skip
    extension = _extension(row, action, extend_by)
    due = _due(conn, row, step, new, calendar, extension)
    _write(conn, row, new, step, due, extension)
    if new.status in RELEASING:
        release_responders(conn, row.id, at=at)
    return {"id": row.id, "code": row.code, "status": new.status.value, "version": new.version,
            "handling_level": new.handling_level, "due_at": due}  # fmt: skip


def _locked(conn: Connection, code: str, version: int | None) -> Any:
    row = conn.execute(_LOCK_SQL, {"code": code}).one_or_none()
    if row is None:
        raise NotFound(f"no event with code {code!r}")
    if version is not None and row.version != version:
        raise VersionConflict(
            f"event {code} is at version {row.version}, not {version}: someone acted on it in "
            "the meantime; reload and try again"
        )
    return row


_NOT_ACTED = (wf.Action.REPORT, wf.Action.REINFORCE)
ACTIONS: tuple[str, ...] = tuple(a.value for a in wf.Action if a not in _NOT_ACTED)
"""What :func:`act` takes: a report is made by :func:`report`, a reinforcement is recorded by
:func:`assign_responder` together with the responder it sends."""


def _action(action: str) -> wf.Action:
    if action not in ACTIONS:
        hint = "; send reinforcement through dispatch" if action == wf.Action.REINFORCE else ""
        raise InvalidReport(
            [("action", f"unknown action {action!r}; one of {list(ACTIONS)}{hint}")]
        )
    return wf.Action(action)


def _extension(row: Any, action: wf.Action, extend_by: float | None) -> Decimal:
    current = Decimal(row.extension or 0)
    if extend_by is None:
        return current
    if action is not wf.Action.APPROVE_EXTENSION:
        raise InvalidReport([("extend_by", "is only given with approve_extension")])
    days = row.time_unit == "work_days"
    if extend_by <= 0 or (days and extend_by != int(extend_by)):
        unit = "whole working days" if days else "hours"
        raise InvalidReport([("extend_by", f"must be a positive number of {unit}")])
    return current + Decimal(str(extend_by))


def history(conn: Connection, event_id: int) -> list[wf.Transition]:
    """The stored history as workflow transitions, oldest first."""
    rows = conn.execute(text("""
        SELECT version, action, actor, actor_level, actor_role, at, from_status, to_status,
               from_level, to_level, note, satisfaction
        FROM event_history WHERE event_id = :id ORDER BY version NULLS FIRST, at, id"""),
        {"id": event_id}).all()  # fmt: skip
    return [
        wf.Transition(
            version=r.version or 0, action=r.action,
            actor=wf.Actor(r.actor_level or "", r.actor_role or "", r.actor), at=r.at,
            from_status=r.from_status, to_status=r.to_status, from_level=r.from_level,
            to_level=r.to_level or "", note=r.note, satisfaction=r.satisfaction,
        )
        for r in rows
    ]  # fmt: skip


def due_at(
    calendar: WorkCalendar,
    steps: Sequence[wf.Transition],
    limit: float | None,
    unit: str | None,
) -> datetime | None:
    """Deadline from a history: clock from the first dispatch, minus pauses (None: no clock)."""
    if limit is None or unit is None:
        return None
    start, pauses = wf.clock(steps)
    if start is None:
        return None
    return calendar.due_at(start, limit, UNIT_OF[unit], pauses=pauses)  # type: ignore[arg-type]


def _due(
    conn: Connection,
    row: Any,
    step: wf.Transition,
    new: wf.EventState,
    calendar: WorkCalendar,
    extension: Decimal,
) -> datetime | None:
    if new.dispatched_at is None or row.time_limit is None:
        return None
    steps = [*history(conn, row.id), step]
    return due_at(calendar, steps, float(row.time_limit) + float(extension), row.time_unit)


def _write(
    conn: Connection,
    row: Any,
    new: wf.EventState,
    step: wf.Transition,
    due: datetime | None,
    extension: Decimal,
) -> None:
    updated = conn.execute(text("""
        UPDATE events SET status = CAST(:status AS varchar), version = :version,
            handling_level = CAST(:level AS varchar),
            paused_since = :paused, resume_status = :resume, dispatched_by = :by,
            dispatched_at = :dispatched, satisfaction = :sat, due_at = :due, extension = :ext,
            handling_unit_code = CASE WHEN CAST(:level AS varchar) = handling_level
                THEN handling_unit_code ELSE (
                SELECT u.code FROM units u WHERE u.code = ANY(events.unit_path)
                  AND u.valid_to IS NULL AND u.level = CAST(:level AS varchar) LIMIT 1) END,
            handled_at = CASE WHEN CAST(:status AS varchar) = 'handled'
                THEN CAST(:at AS timestamptz) ELSE handled_at END,
            closed_at = CASE WHEN CAST(:status AS varchar) = 'closed'
                THEN CAST(:at AS timestamptz) ELSE closed_at END
        WHERE id = :id AND version = :old"""), {
        "status": new.status.value, "level": new.handling_level, "version": new.version,
        "paused": new.paused_since, "resume": new.resume_status.value if new.resume_status else None,
        "by": new.dispatched_by, "dispatched": new.dispatched_at, "sat": new.satisfaction,
        "due": due, "ext": extension, "at": step.at, "id": row.id, "old": row.version,
    })  # fmt: skip
    if updated.rowcount != 1:  # cannot happen under FOR UPDATE; refuse rather than fork history
        raise VersionConflict(f"event {row.code} changed while being updated")
    conn.execute(text("""
        INSERT INTO event_history (event_id, at, actor, actor_level, actor_role, action,
            from_status, to_status, from_level, to_level, note, version, satisfaction)
        VALUES (:id, :at, :actor, :level, :role, :action, :from_s, :to_s, :from_l, :to_l, :note,
                :version, :sat)"""), {
        "id": row.id, "at": step.at, "actor": step.actor.name, "level": step.actor.level,
        "role": step.actor.role, "action": step.action.value,
        "from_s": step.from_status.value if step.from_status else None,
        "to_s": step.to_status.value, "from_l": step.from_level, "to_l": step.to_level,
        "note": step.note, "version": step.version, "sat": step.satisfaction,
    })  # fmt: skip


def replay_event(conn: Connection, code: str) -> wf.EventState:
    """Rebuild an event's state from its stored history (audit; raises HistoryMismatch)."""
    row = conn.execute(text("""
        SELECT e.id, c.emergency FROM events e JOIN event_categories c ON c.code = e.category_code
        WHERE e.code = :code"""), {"code": code}).one_or_none()  # fmt: skip
    if row is None:
        raise NotFound(f"no event with code {code!r}")
    steps = history(conn, row.id)
    if not steps or steps[0].action is not wf.Action.REPORT:
        raise wf.HistoryMismatch(f"event {code} has no report row")
    first = steps[0]
    initial = wf.EventState(first.to_status, first.to_level, bool(row.emergency), 1, first.at)
    return wf.replay(initial, steps, ladder=LADDER)


# --- responders ------------------------------------------------------------------------------


_DISPATCH_LOCK_SQL = text("""
    SELECT e.id, e.status, (SELECT r.code FROM dispatch_assignments a
                            JOIN responders r ON r.id = a.responder_id
                            WHERE a.event_id = e.id AND a.released_at IS NULL
                            ORDER BY a.assigned_at, a.id LIMIT 1) AS responder
    FROM events e WHERE e.code = :c FOR UPDATE OF e""")


def lock_for_dispatch(conn: Connection, code: str, *, reinforcement: bool = False) -> Any:
    """Lock event ``code`` (``SELECT … FOR UPDATE``, held to the end of the transaction) and
    check that a responder may be sent now: the case is dispatched or in progress, and has no
    responder yet unless this is ``reinforcement``. A caller that picks the responder (the
    fastest available) takes this lock first, so two dispatchers of one case cannot both pick.

    Raises :class:`NotFound`, :class:`ResponderUnavailable` or :class:`AlreadyAssigned`.
    """
    event = conn.execute(_DISPATCH_LOCK_SQL, {"c": code}).one_or_none()
    if event is None:
        raise NotFound(f"no event with code {code!r}")
    if event.status not in ("dispatched", "in_progress"):
        raise ResponderUnavailable(
            f"event {code} is {event.status!r}; dispatch it before sending a responder"
        )
    if event.responder is not None and not reinforcement:
        raise AlreadyAssigned(
            f"event {code} already has responder {event.responder}; send another only as "
            "reinforcement (reinforcement: true)"
        )
    return event


def assign_responder(
    conn: Connection,
    code: str,
    responder_code: str,
    *,
    actor: wf.Actor,
    at: datetime,
    calendar: WorkCalendar,
    reinforcement: bool = False,
    eta_s: float | None = None,
    distance_m: float | None = None,
    method: str = "straight_line",
) -> dict[str, Any]:
    """Send an available responder to a dispatched event: responder busy, events.responder_id.

    A second responder only with ``reinforcement``: recorded as the workflow step
    ``reinforce`` (history row naming the responder, version bumped). Raises as
    :func:`lock_for_dispatch`, and :class:`NotFound` or :class:`ResponderUnavailable` for the
    responder.
    """
    event = lock_for_dispatch(conn, code, reinforcement=reinforcement)
    resp = conn.execute(
        text("SELECT id, status FROM responders WHERE code = :c FOR UPDATE"), {"c": responder_code}
    ).one_or_none()
    if resp is None:
        raise NotFound(f"no responder with code {responder_code!r}")
    if resp.status != "available":
        raise ResponderUnavailable(f"responder {responder_code} is {resp.status!r}")
    out: dict[str, Any] = {"event": code, "responder": responder_code, "eta_s": eta_s,
                           "method": method, "reinforcement": event.responder is not None}  # fmt: skip
    if event.responder is not None:
        row = _locked(conn, code, None)
        note = f"reinforcement: responder {responder_code} joins {event.responder}"
        out["version"] = _apply(conn, row, wf.Action.REINFORCE, actor, calendar=calendar,
                                reason=note, at=at)["version"]  # fmt: skip
    conn.execute(text("UPDATE responders SET status = 'busy' WHERE id = :r"), {"r": resp.id})
    conn.execute(  # the case records its lead responder; reinforcements are in its assignments
        text("UPDATE events SET responder_id = :r WHERE id = :e AND responder_id IS NULL"),
        {"r": resp.id, "e": event.id},
    )
    conn.execute(text("""
        INSERT INTO dispatch_assignments (event_id, responder_id, assigned_at, actor, eta_s,
                                          distance_m, method)
        VALUES (:e, :r, :at, :actor, :eta, :dist, :method)"""),
        {"e": event.id, "r": resp.id, "at": at, "actor": actor.name, "eta": eta_s,
         "dist": distance_m, "method": method})  # fmt: skip
    return out


def release_responders(conn: Connection, event_id: int, *, at: datetime) -> int:
    """Free the responders of a finished event (status back to available)."""
    rows = conn.execute(text("""
        UPDATE dispatch_assignments SET released_at = :at
        WHERE event_id = :e AND released_at IS NULL RETURNING responder_id"""),
        {"e": event_id, "at": at}).scalars().all()  # fmt: skip
    if rows:
        conn.execute(text("UPDATE responders SET status = 'available' WHERE id = ANY(:ids)"),
                     {"ids": list(rows)})  # fmt: skip
    return len(rows)


def record_positions(
    conn: Connection, responder_code: str, fixes: Sequence[tuple[datetime, float, float]]
) -> int:
    """Append AVL fixes (at, lon, lat) to the track; the newest becomes the responder's place."""
    rid = conn.execute(
        text("SELECT id FROM responders WHERE code = :c"), {"c": responder_code}
    ).scalar_one_or_none()
    if rid is None:
        raise NotFound(f"no responder with code {responder_code!r}")
    if not fixes:
        return 0
    conn.execute(text("""
        INSERT INTO responder_positions (responder_id, at, geom)
        VALUES (:r, :at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490))"""),
        [{"r": rid, "at": at, "lon": lon, "lat": lat} for at, lon, lat in fixes])  # fmt: skip
    at, lon, lat = max(fixes, key=lambda f: f[0])
    conn.execute(text("""
        UPDATE responders SET geom = ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), position_at = :at
        WHERE id = :r AND (position_at IS NULL OR position_at <= :at)"""),
        {"r": rid, "at": at, "lon": lon, "lat": lat})  # fmt: skip
    return len(fixes)


class _connect:
    """``with _connect(bind) as conn``: a connection from an engine, or the caller's."""

    def __init__(self, bind: Engine | Connection) -> None:
        self.bind: Engine | Connection = bind
        self.own: Connection | None = None

    def __enter__(self) -> Connection:
        if isinstance(self.bind, Connection):
            return self.bind
        own = self.bind.connect()
        self.own = own
        return own

    def __exit__(self, *exc: object) -> None:
        if self.own is not None:
            self.own.close()
