"""What each kind of file must hold, and the Chinese/English column names we recognise.

A target field is found by the first synonym present (case-insensitive); ``--map
target=source`` overrides. Values are normalised (roles, kinds, channels) to the stored codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

KINDS = ("units", "buildings", "events", "staff", "responders", "patrols", "roads")


@dataclass(frozen=True)
class KindSchema:
    kind: str
    geometry: str | None  # "polygon", "point", "line" or None (no geometry)
    required: tuple[str, ...]
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)


SCHEMAS: dict[str, KindSchema] = {
    "units": KindSchema(
        "units",
        "polygon",
        ("code", "name"),
        {
            "code": (
                "code",
                "网格编码",
                "单元编码",
                "区划代码",
                "编码",
                "统一编码",
                "grid_code",
                "unit_code",
                "dm",
            ),
            "name": ("name", "网格名称", "单元名称", "名称", "区划名称", "grid_name", "mc"),
            "level": ("level", "层级", "级别", "网格层级"),
            "parent_code": (
                "parent_code",
                "上级编码",
                "所属社区编码",
                "所属编码",
                "parent",
                "sjbm",
            ),
            "kind": ("kind", "类型", "网格类型", "grid_type"),
        },
    ),
    "buildings": KindSchema(
        "buildings",
        "polygon",
        ("code",),
        {
            "code": ("code", "楼栋编码", "建筑编码", "建筑物编码", "id", "osm_id", "fid", "bm"),
            "address": ("address", "楼栋地址", "地址", "门牌地址", "addr", "name"),
            "floors": ("floors", "层数", "楼层数", "building:levels", "levels"),
            "households": ("households", "户数", "住户数", "hh"),
            "residents": ("residents", "人口数", "居住人数", "人数", "population"),
        },
    ),
    "events": KindSchema(
        "events",
        "point",
        ("code", "category_code", "reported_at"),
        {
            "code": ("code", "事件编号", "编号", "案件编号", "event_id", "id"),
            "category_code": (
                "category_code",
                "事件类型",
                "类别编码",
                "事件类别",
                "category",
                "小类编码",
            ),
            "reported_at": ("reported_at", "上报时间", "发生时间", "受理时间", "time", "datetime"),
            "channel": ("channel", "来源", "事件来源", "上报渠道", "source"),
            "description": ("description", "事件描述", "描述", "内容", "desc"),
            "priority": ("priority", "优先级", "紧急程度"),
            "status": ("status", "状态", "办理状态"),
            "handling_level": ("handling_level", "处置层级", "办理层级"),
            "dispatched_at": ("dispatched_at", "派遣时间"),
            "handled_at": ("handled_at", "处置时间", "反馈时间"),
            "closed_at": ("closed_at", "结案时间", "办结时间"),
            "due_at": ("due_at", "截止时间", "处置时限"),
            "satisfaction": ("satisfaction", "满意度", "评价"),
        },
    ),
    "staff": KindSchema(
        "staff",
        None,
        ("code", "name", "role", "unit_code"),
        {
            "code": ("code", "工号", "人员编号", "编号", "id"),
            "name": ("name", "姓名", "名字"),
            "role": ("role", "岗位", "角色", "职务", "人员类型"),
            "phone": ("phone", "电话", "手机", "联系电话", "手机号"),
            "unit_code": ("unit_code", "所属网格编码", "网格编码", "所属单元", "grid_code"),
        },
    ),
    "responders": KindSchema(
        "responders",
        "point",
        ("code", "name", "type"),
        {
            "code": ("code", "编号", "队伍编号", "id"),
            "name": ("name", "名称", "队伍名称"),
            "type": ("type", "类型", "力量类型"),
            "status": ("status", "状态"),
        },
    ),
    "patrols": KindSchema(
        "patrols",
        "point",
        ("staff_code", "at"),
        {
            "staff_code": ("staff_code", "工号", "网格员编号", "人员编号"),
            "kind": ("kind", "类型", "打卡类型"),
            "at": ("at", "时间", "打卡时间", "巡查时间", "time"),
        },
    ),
    "roads": KindSchema(
        "roads",
        "line",
        ("code",),
        {
            "code": ("code", "道路编码", "id", "osm_id", "fid"),
            "name": ("name", "道路名称", "名称"),
            "road_class": ("road_class", "道路等级", "等级", "highway", "fclass"),
            "speed_kmh": ("speed_kmh", "限速", "设计速度", "maxspeed", "speed"),
        },
    ),
}

ROLE_VALUES = {
    "网格长": "grid_chief",
    "grid_chief": "grid_chief",
    "chief": "grid_chief",
    "专职网格员": "full_time",
    "专职": "full_time",
    "full_time": "full_time",
    "兼职网格员": "part_time",
    "兼职": "part_time",
    "part_time": "part_time",
    "网格辅助员": "auxiliary",
    "辅助员": "auxiliary",
    "楼栋长": "auxiliary",
    "志愿者": "auxiliary",
    "auxiliary": "auxiliary",
}
KIND_VALUES = {
    "城镇": "urban",
    "城市": "urban",
    "urban": "urban",
    "社区": "urban",
    "农村": "rural",
    "乡村": "rural",
    "rural": "rural",
    "村": "rural",
    "专属": "special",
    "专属网格": "special",
    "special": "special",
}
CHANNEL_VALUES = {
    "巡查": "patrol",
    "网格员巡查": "patrol",
    "patrol": "patrol",
    "12345": "hotline_12345",
    "12345热线": "hotline_12345",
    "hotline_12345": "hotline_12345",
    "110": "110",
    "app": "app",
    "微信": "app",
    "小程序": "app",
    "居民app": "app",
    "传感器": "sensor",
    "物联感知": "sensor",
    "sensor": "sensor",
    "上级交办": "instruction",
    "领导交办": "instruction",
    "instruction": "instruction",
}
RESPONDER_TYPES = {
    "公安": "police",
    "police": "police",
    "消防": "fire",
    "fire": "fire",
    "医疗": "medical",
    "120": "medical",
    "medical": "medical",
    "电力": "power",
    "power": "power",
    "网格队伍": "grid_team",
    "grid_team": "grid_team",
}
PATROL_KINDS = {"巡查": "patrol", "patrol": "patrol", "走访": "visit", "visit": "visit"}
ROAD_SPEEDS = {
    "motorway": 80,
    "trunk": 70,
    "primary": 60,
    "secondary": 50,
    "tertiary": 40,
    "residential": 30,
    "unclassified": 30,
    "service": 20,
    "track": 20,
    "living_street": 15,
}
LEVEL_BY_CODE_LENGTH = {6: "county", 9: "township", 12: "community", 15: "grid", 18: "microgrid"}

# Values every way in (a loaded file, the API) must respect. Times: an event, check-in or fix
# before 2000 is a typo (a year 1, a Unix epoch 0), not history this product holds.
EARLIEST = datetime(2000, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
LATEST_LOADED = datetime(2100, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
DESCRIPTION_MAX = 4000  # characters of an event's description
NOTE_MAX = 2000  # characters of a reason or note in the history


# Event codes that name a fixed path beside /api/v1/events/<code>: such an event could not be read
RESERVED_EVENT_CODES = ("import",)


def code_pattern(max_length: int) -> str:
    """Codes a URL can address as one path segment: letters, digits, ``.``, ``_`` and ``-``,
    starting with a letter or digit (no spaces, no ``/``), at most ``max_length`` long."""
    return rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{max_length - 1}}}$"


def max_length(model: type, column: str) -> int:
    """The declared length of a varchar column of a model in ``etl.models`` (the database is
    where a length is decided; validation reads it from there)."""
    length = getattr(model.__table__.c[column].type, "length", None)  # type: ignore[attr-defined]
    if not isinstance(length, int):
        raise TypeError(f"{model.__name__}.{column} has no declared length")
    return length


def resolve_columns(columns: list[str], kind: str, overrides: dict[str, str]) -> dict[str, str]:
    """Map target field -> source column. Overrides (``--map``) win over recognised names."""
    schema = SCHEMAS[kind]
    lowered = {c.strip().lower(): c for c in columns}
    found: dict[str, str] = {}
    for target, names in schema.synonyms.items():
        if target in overrides:
            continue
        hit = next((lowered[n.lower()] for n in names if n.lower() in lowered), None)
        if hit is not None and hit not in found.values():
            found[target] = hit
    for target, source in overrides.items():
        for part in source.split("|"):  # "a|b": the first non-empty of a, b
            if part not in columns:
                raise KeyError(f"--map {target}={source}: the file has no column {part!r}")
        found[target] = source
    return found


def parse_map(text: str | None) -> dict[str, str]:
    """``"code=BM,name=MC"`` -> {"code": "BM", "name": "MC"}."""
    if not text:
        return {}
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"--map expects target=source[,target=source...], got {text!r}")
    return {t.strip(): s.strip() for t, s in pairs}
