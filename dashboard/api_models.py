"""Request bodies and query strings of the incident API as pydantic models.

One model per request: it validates the request (:func:`body`, :func:`form`, :func:`query`) and
generates that request's schema in the OpenAPI document (``dashboard.openapi``), so every rule
is written once. The bounds come from where they are decided: string lengths from the database
columns (``etl.models``), statuses, levels and actions from the workflow, codes from
:func:`etl.schema.code_pattern`, and lon/lat from the territory: the root units' bounding box
plus :data:`MARGIN_DEG`, passed at validation time in a :class:`Context` (China's box when no
unit is loaded; the served document states the same box).

JSON bodies are validated strictly, as JSON Schema reads them (``"5"`` is not an integer,
``1`` is not a date-time); form fields and query parameters are text and are converted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from etl import incidents as inc
from etl.models import Event as EventRow
from etl.models import EventCategory, EventHistory, Responder, Unit
from etl.routing import DEFAULT_TYPES, DEPARTMENT_TYPES
from etl.schema import (
    DESCRIPTION_MAX,
    EARLIEST,
    NOTE_MAX,
    RESERVED_EVENT_CODES,
    code_pattern,
    max_length,
)
from geo import workflow as wf


class Box(NamedTuple):
    """A lon/lat bounding box in degrees (EPSG:4490)."""

    west: float
    south: float
    east: float
    north: float

    def grown(self, margin: float) -> Box:
        return Box(self.west - margin, self.south - margin, self.east + margin, self.north + margin)


CHINA = Box(73.0, 3.0, 136.0, 54.0)
MARGIN_DEG = 0.1  # about 10 km around the territory: a GPS fix just over the border is fine
MAX_BATCH = 1000  # reports per request
MAX_FIXES = 1000  # AVL positions per request
EXTEND_MAX = 1000.0  # hours or working days one approval may add
KPI_DAYS_MAX = 366
REPORT_FUTURE = timedelta(minutes=5)  # clock skew allowed on a report or a fix
QUERY_FUTURE = timedelta(days=1)  # a period may end tomorrow (today's KPIs, end of day)
ID_LIST_MAX = 100  # codes in one Open311 service_request_id list

EVENT_LEN, RESPONDER_LEN = max_length(EventRow, "code"), max_length(Responder, "code")
CATEGORY_LEN, UNIT_LEN = max_length(EventCategory, "code"), max_length(Unit, "code")
EVENT_CODE, RESPONDER_CODE = code_pattern(EVENT_LEN), code_pattern(RESPONDER_LEN)
CATEGORY_CODE, UNIT_CODE = code_pattern(CATEGORY_LEN), code_pattern(UNIT_LEN)
NO_NUL = r"^[^\x00]*$"


def _one_of(values: list[str]) -> str:
    return "(" + "|".join(values) + ")"


def _list_of(item: str) -> str:
    """A pattern for a comma-separated list of ``item`` (or nothing)."""
    return f"^({item}(,{item})*)?$"


STATUS_LIST = _list_of(_one_of([s.value for s in wf.Status]))
TYPE_LIST = _list_of(_one_of(sorted({*DEFAULT_TYPES, *sum(DEPARTMENT_TYPES.values(), ())})))
CODE_LIST = _list_of("(" + EVENT_CODE.strip("^$") + ")")


@dataclass(frozen=True)
class Context:
    """What validation compares with: now, the local zone, the territory and the categories."""

    now: datetime
    tz: ZoneInfo
    box: Box = CHINA
    categories: Mapping[str, inc.Category] | None = None


def _ctx(info: ValidationInfo) -> Context:
    if not isinstance(info.context, Context):
        raise TypeError("validate with context=Context(...)")
    return info.context


def _refuse(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message.replace("{", "(").replace("}", ")"))


# --- field types -----------------------------------------------------------------------------


def _inside_lon(value: float, info: ValidationInfo) -> float:
    box = _ctx(info).box
    if not box.west <= value <= box.east:
        raise _refuse("outside_territory", f"lies outside the territory (longitude "
                                           f"{box.west:.4f} to {box.east:.4f}, EPSG:4490)")  # fmt: skip
    return value


def _inside_lat(value: float, info: ValidationInfo) -> float:
    box = _ctx(info).box
    if not box.south <= value <= box.north:
        raise _refuse("outside_territory", f"lies outside the territory (latitude "
                                           f"{box.south:.4f} to {box.north:.4f}, EPSG:4490)")  # fmt: skip
    return value


Lon = Annotated[
    float,
    Field(ge=CHINA.west, le=CHINA.east, allow_inf_nan=False, json_schema_extra={"x-territory": "lon"},
          description="longitude, degrees EPSG:4490, inside the territory"),
    AfterValidator(_inside_lon),
]  # fmt: skip
Lat = Annotated[
    float,
    Field(ge=CHINA.south, le=CHINA.north, allow_inf_nan=False,
          json_schema_extra={"x-territory": "lat"},
          description="latitude, degrees EPSG:4490, inside the territory"),
    AfterValidator(_inside_lat),
]  # fmt: skip


def _happened(value: datetime, info: ValidationInfo) -> datetime:
    if value < EARLIEST:
        raise _refuse("too_early", f"must not be before {EARLIEST:%Y-%m-%d}")
    if value > _ctx(info).now + REPORT_FUTURE:
        raise _refuse("in_future", "lies in the future")
    return value


def _iso(value: object) -> object:
    if isinstance(value, str):  # ISO 8601 only (pydantic would also read "1700000000")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise _refuse("datetime", "must be an ISO 8601 date-time") from None
    return value


def _in_window(value: datetime, info: ValidationInfo) -> datetime:
    ctx = _ctx(info)
    at = value if value.tzinfo else value.replace(tzinfo=ctx.tz)
    latest = ctx.now + QUERY_FUTURE
    if not EARLIEST <= at <= latest:
        raise _refuse("out_of_window", f"must lie between {EARLIEST:%Y-%m-%d} and "
                                       f"{latest:%Y-%m-%d}")  # fmt: skip
    return at


Happened = Annotated[
    AwareDatetime,
    Field(description="ISO 8601 with offset; not before 2000, not in the future"),
    AfterValidator(_happened),
]
QueryTime = Annotated[
    datetime,
    Field(description="ISO 8601 (no offset: local time), 2000 to tomorrow"),
    BeforeValidator(_iso),
    AfterValidator(_in_window),
]


def _integral(value: object) -> object:
    """3.0 is an integer to JSON Schema: take it as 3 (strict validation would refuse it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _text(max_len: int, *, min_len: int = 0, pattern: str = NO_NUL) -> Any:
    return StringConstraints(min_length=min_len, max_length=max_len, pattern=pattern)


def _known_category(code: str, info: ValidationInfo) -> str:
    categories = _ctx(info).categories
    if categories is None:
        return code
    if code not in categories:
        raise _refuse("unknown_category", f"unknown category {code!r}")
    if not categories[code].leaf:
        raise _refuse("category_group", f"{code!r} is a group; report one of its sub-types")
    return code


def _not_reserved(code: str) -> str:
    if code in RESERVED_EVENT_CODES:
        raise _refuse("reserved_code", f"{code!r} names an API path; choose another code")
    return code


EVENT_CODE_SCHEMA = {"not": {"enum": list(RESERVED_EVENT_CODES)}}
EventCode = Annotated[
    str,
    _text(EVENT_LEN, min_len=1, pattern=EVENT_CODE),
    Field(json_schema_extra=EVENT_CODE_SCHEMA),
    AfterValidator(_not_reserved),
]
ResponderCode = Annotated[str, _text(RESPONDER_LEN, min_len=1, pattern=RESPONDER_CODE)]
CategoryCode = Annotated[
    str, _text(CATEGORY_LEN, min_len=1, pattern=CATEGORY_CODE), AfterValidator(_known_category)
]
ActorName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1,
                      max_length=max_length(EventHistory, "actor"), pattern=NO_NUL),
    Field(description="who acts (a name or staff code)"),
]  # fmt: skip
Role = Annotated[str, _text(max_length(EventHistory, "actor_role"), min_len=1)]
Level = Literal[inc.LADDER]  # type: ignore[valid-type]
Channel = Literal[inc.CHANNELS]  # type: ignore[valid-type]
OneToFive = Annotated[int, BeforeValidator(_integral), Field(ge=1, le=5)]
Version = Annotated[int, BeforeValidator(_integral), Field(ge=1, le=2**31 - 1)]
Description = Annotated[str, _text(DESCRIPTION_MAX)]
Note = Annotated[str, _text(NOTE_MAX)]


# --- bodies ----------------------------------------------------------------------------------


class _Json(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class Report(_Json):
    """One report (上报). ``code`` is the client's idempotency key: sending it again returns
    the stored event."""

    category_code: CategoryCode
    lon: Lon
    lat: Lat
    reported_at: Happened | None = None
    channel: Channel = "app"
    description: Description | None = None
    priority: OneToFive | None = None
    reporter: ActorName = "resident"
    reporter_level: Level = "grid"
    reporter_role: Role = "resident"
    code: EventCode | None = Field(None, description="idempotency key")

    def to_report(self, now: datetime) -> inc.Report:
        return inc.Report(**{**self.model_dump(), "reported_at": self.reported_at or now})


ReportBatch: TypeAdapter[list[Report]] = TypeAdapter(
    Annotated[list[Report], Field(min_length=1, max_length=MAX_BATCH)]
)


class _Acting(_Json):
    """Who acts. With a login or token: by default that user at their unit's level, and never
    above it; without one (a bare blueprint), actor and actor_level are required."""

    actor: ActorName | None = None
    actor_level: Level | None = None
    actor_role: Role = "staff"


class ActionRequest(_Acting):
    """A workflow action on a case; ``version`` is the one you last saw (409 when stale)."""

    action: Literal[inc.ACTIONS]  # type: ignore[valid-type]
    version: Version | None = None
    reason: Note | None = None
    satisfaction: OneToFive | None = None
    to_level: Level | None = None
    extend_by: Annotated[float, Field(gt=0, le=EXTEND_MAX)] | None = Field(
        None, description="with approve_extension: hours or working days (the category's unit)"
    )
    responder: ResponderCode | None = Field(None, description="also send this responder")


class DispatchRequest(_Acting):
    """Send a responder: the named one, or the fastest available of a suitable type. A case
    that already has one takes another only with ``reinforcement: true``."""

    responder: ResponderCode | None = None
    reinforcement: bool = False


class Fix(_Json):
    """One AVL position; ``at`` defaults to now."""

    lon: Lon
    lat: Lat
    at: Happened | None = None


class Positions(_Json):
    positions: Annotated[list[Fix], Field(min_length=1, max_length=MAX_FIXES)]


class _Form(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class ImportForm(_Form):
    """multipart/form-data of an import."""

    file: str = Field(json_schema_extra={"format": "binary"},
                      description="CSV, XLSX, GeoJSON, GeoPackage, zipped Shapefile or KML")  # fmt: skip
    crs: Annotated[str, _text(16, pattern=r"^((EPSG:)?[0-9]{4,5}|GCJ-?02|BD-?09)?$")] | None = (
        Field(None, description="source CRS when the file states none, e.g. 4490 or GCJ02")
    )
    skip_invalid: Literal["true", "false", "1", "0", "yes", "no"] = "false"


class Open311Report(_Form):
    """GeoReport v2 POST requests.json (form fields; attributes beyond these are ignored)."""

    service_code: CategoryCode
    lat: Lat
    long: Lon
    description: Annotated[str, _text(DESCRIPTION_MAX - 300)] | None = None
    address_string: Annotated[str, _text(256)] | None = None
    first_name: Annotated[str, _text(31)] | None = None
    last_name: Annotated[str, _text(31)] | None = None
    email: Annotated[str, _text(254)] | None = None
    phone: Annotated[str, _text(32)] | None = None
    device_id: Annotated[str, _text(64)] | None = None
    account_id: Annotated[str, _text(64)] | None = None
    media_url: Annotated[str, _text(2048)] | None = None

    def to_report(self, now: datetime) -> inc.Report:
        who = " ".join(x for x in (self.first_name, self.last_name) if x) or "open311"
        text = " / ".join(x for x in (self.description, self.address_string) if x) or None
        return inc.Report(category_code=self.service_code, lon=self.long, lat=self.lat,
                          reported_at=now, channel="open311", description=text, reporter=who,
                          reporter_role="resident")  # fmt: skip


# --- query strings ---------------------------------------------------------------------------


class EventsQuery(_Form):
    status: Annotated[str, Field(pattern=STATUS_LIST, description="statuses, comma-separated")] = ""
    level: Level | None = None
    category: Annotated[str, _text(CATEGORY_LEN, pattern=CATEGORY_CODE)] | None = Field(
        None, description="a category or a group of them"
    )
    unit: Annotated[str, _text(UNIT_LEN, pattern=UNIT_CODE)] | None = None
    since: QueryTime | None = None
    overdue: Literal["1", "true", "0", "false"] = "false"
    q: Annotated[str, _text(100)] | None = Field(None, description="text in code or description")
    limit: Annotated[int, Field(ge=0, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=100_000)] = 0


class CardQuery(_Form):
    actor_level: Level | None = Field(None, description="list the actions this level may take")


class CandidatesQuery(_Form):
    types: Annotated[
        str, Field(pattern=TYPE_LIST, description="responder types, comma-separated")
    ] = ""
    limit: Annotated[int, Field(ge=0, le=100)] = 10


class KpisQuery(_Form):
    level: Level = "grid"
    start: QueryTime | None = Field(
        None, description=f"default: 30 days before end; at most {KPI_DAYS_MAX} days before it"
    )
    end: QueryTime | None = Field(None, description="default: now")

    def period(self, now: datetime) -> tuple[datetime, datetime]:
        """[start, end): start before end, at most :data:`KPI_DAYS_MAX` days apart."""
        end = self.end or now
        start = self.start or end - timedelta(days=30)
        if start >= end:
            raise inc.InvalidReport([("start", "must lie before end")])
        if end - start > timedelta(days=KPI_DAYS_MAX):
            raise inc.InvalidReport([("start", f"the period may span at most {KPI_DAYS_MAX} days")])
        return start, end


class Open311Query(_Form):
    service_request_id: Annotated[
        str, Field(pattern=CODE_LIST, max_length=(EVENT_LEN + 1) * ID_LIST_MAX)
    ] = ""
    service_code: Annotated[str, _text(CATEGORY_LEN, pattern=CATEGORY_CODE)] | None = None
    start_date: QueryTime | None = None
    end_date: QueryTime | None = None
    status: Literal["open", "closed"] | None = None


# --- validation ------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def body(model: type[M], raw: bytes, ctx: Context, *, prefix: str = "") -> M:
    """A JSON body (raw bytes) validated strictly; :class:`etl.incidents.InvalidReport` naming
    each bad field otherwise."""
    try:
        return model.model_validate_json(raw or b"{}", context=ctx)
    except ValidationError as exc:
        raise inc.InvalidReport(problems(exc, prefix=prefix)) from None


def batch(raw: bytes, ctx: Context) -> list[Report]:
    try:
        return ReportBatch.validate_json(raw, context=ctx)
    except ValidationError as exc:
        raise inc.InvalidReport(problems(exc)) from None


def form(model: type[M], values: Mapping[str, Any], ctx: Context) -> M:
    """Form fields or query parameters (text, converted)."""
    try:
        return model.model_validate(dict(values), context=ctx)
    except ValidationError as exc:
        raise inc.InvalidReport(problems(exc)) from None


query = form


def problems(exc: ValidationError, *, prefix: str = "") -> list[tuple[str, str]]:
    """pydantic's errors as (field, reason): ``[1].priority``, ``positions[3].lon``."""
    out = []
    for err in exc.errors(include_url=False):
        where = prefix
        for part in err["loc"]:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        out.append((where or "body", _reason(err)))
    return out


def _reason(err: Any) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field of this request"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern")
        return "must not contain a NUL byte" if pattern == NO_NUL else f"must match {pattern}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    return str(err["msg"])
