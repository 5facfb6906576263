"""Every piece of UI text, in one table: key -> (Chinese, English). Chinese is the default.

Pages call :func:`t`; client-side code receives the table slice it needs through ``hideout``.
A missing key raises, so a typo is found by the tests instead of showing a blank on the wall.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")

TEXT: dict[str, tuple[str, str]] = {
    # application frame
    "app.title": ("网格化服务管理指挥中心", "Grid Governance Command Centre"),
    "nav.command": ("一屏监测", "Command screen"),
    "nav.desk": ("事件工作台", "Event desk"),
    "nav.planner": ("网格规划", "Grid planner"),
    "nav.reports": ("报表", "Reports"),
    "role.admin": ("管理员", "administrator"),
    "role.commander": ("指挥长", "commander"),
    "role.dispatcher": ("调度员", "dispatcher"),
    "role.planner": ("规划员", "planner"),
    "role.analyst": ("分析员", "analyst"),
    "role.grid_worker": ("网格员", "grid worker"),
    "role.wall": ("大屏", "wall screen"),
    "lang.switch": ("English", "中文"),
    "live.ok": ("实时", "Live"),
    "live.stale": ("数据已 {s} 秒未更新", "No update for {s} s"),
    "live.down": ("数据库连接中断，显示的是旧数据", "Database unreachable: showing stale data"),
    # time window and playback
    "win.label": ("时间", "Time"),
    "win.today": ("今日", "Today"),
    "win.7d": ("近7天", "7 days"),
    "win.30d": ("近30天", "30 days"),
    "win.custom": ("自定义", "Custom"),
    "play.play": ("▶ 回放", "▶ Play"),
    "play.pause": ("❚❚ 暂停", "❚❚ Pause"),
    "play.live": ("实时", "Live"),
    "play.until": ("回放至 {t}", "Playback to {t}"),
    "cats.label": ("类别", "Categories"),
    "cats.all": ("全部类别", "All categories"),
    # KPIs
    "kpi.reported": ("今日事件", "Events today"),
    "kpi.reported.win": ("期间事件", "Events in period"),
    "kpi.open": ("在办", "Open"),
    "kpi.overdue": ("超期", "Overdue"),
    "kpi.closure_rate": ("办结率", "Closure rate"),
    "kpi.on_time_rate": ("按期办结率", "On-time closure"),
    "kpi.response_min": ("响应时长中位数", "Median response"),
    "kpi.handling_h": ("处置时长中位数", "Median handling"),
    "kpi.satisfaction": ("满意度", "Satisfaction"),
    "kpi.patrol_coverage": ("今日巡查覆盖率", "Patrol coverage today"),
    "kpi.patrol_coverage.win": ("巡查覆盖率", "Patrol coverage"),
    "kpi.vs.yesterday": ("较昨日", "vs yesterday"),
    "kpi.vs.previous": ("较上期", "vs previous"),
    "kpi.target": ("目标", "Target"),
    "unit.min": ("分钟", "min"),
    "unit.h": ("小时", "h"),
    "unit.score": ("分", "/5"),
    # panels
    "panel.ranking": ("辖区排名", "Jurisdictions"),
    "panel.feed": ("实时事件", "Live events"),
    "panel.trend": ("事件趋势", "Event trend"),
    "rank.open": ("在办", "Open"),
    "rank.overdue": ("超期", "Overdue"),
    "rank.reported": ("上报", "Reported"),
    "rank.closure": ("办结率", "Closed"),
    "trend.reported": ("上报", "Reported"),
    "trend.closed": ("办结", "Closed"),
    "feed.empty": ("暂无事件", "No events"),
    # map layers and legend
    "layer.offline": ("离线底图（道路与边界）", "Offline basemap (roads, boundaries)"),
    "layer.online": ("在线底图", "Online basemap"),
    "layer.bounds": ("辖区边界", "Unit boundaries"),
    "layer.bands": ("网格户数分档", "Households per unit"),
    "layer.buildings": ("楼栋（放大后显示）", "Buildings (zoom in)"),
    "layer.heat": ("事件热力", "Incident heatmap"),
    "layer.events": ("事件", "Events"),
    "layer.responders": ("处置力量与派遣", "Responders and dispatch"),
    "legend.title": ("图例", "Legend"),
    "legend.under": ("低于 {lo} 户", "under {lo} households"),
    "legend.inside": ("{lo}–{hi} 户", "{lo}–{hi} households"),
    "legend.over": ("超过 {hi} 户", "over {hi} households"),
    "legend.overdue": ("超期（闪烁）", "Overdue (pulsing)"),
    "legend.dispatch": ("派遣路线", "Dispatch line"),
    "legend.level": ("角标：当前处置层级", "Badge: level now handling"),
    # statuses
    "status.reported": ("待核实", "Reported"),
    "status.verified": ("已核实", "Verified"),
    "status.filed": ("已立案", "Filed"),
    "status.dispatched": ("已派遣", "Dispatched"),
    "status.in_progress": ("处置中", "In progress"),
    "status.handled": ("已反馈", "Handled"),
    "status.checked": ("已核查", "Checked"),
    "status.closed": ("已办结", "Closed"),
    "status.evaluated": ("已评价", "Evaluated"),
    "status.cancelled": ("已注销", "Cancelled"),
    "status.extension_requested": ("延时申请", "Extension requested"),
    "status.backlog": ("挂账", "Backlog"),
    # handling levels (badges and card)
    "level.grid": ("网格", "Grid"),
    "level.community": ("社区", "Community"),
    "level.township": ("乡镇", "Township"),
    "level.county": ("县级", "County"),
    "badge.grid": ("格", "G"),
    "badge.community": ("社", "C"),
    "badge.township": ("镇", "T"),
    "badge.county": ("县", "X"),
    # responders
    "resp.police": ("公安", "Police"),
    "resp.fire": ("消防", "Fire"),
    "resp.medical": ("医疗", "Medical"),
    "resp.power": ("电力", "Power"),
    "resp.grid_team": ("网格队伍", "Grid team"),
    "resp.available": ("待命", "Available"),
    "resp.busy": ("出勤", "On task"),
    "resp.dispatched": ("出勤", "On task"),
    "resp.offline": ("离线", "Offline"),
    # event card
    "card.code": ("编号", "Case"),
    "card.category": ("类别", "Category"),
    "card.status": ("状态", "Status"),
    "card.priority": ("优先级", "Priority"),
    "card.channel": ("来源", "Channel"),
    "card.reported": ("上报时间", "Reported"),
    "card.due": ("办理时限", "Due"),
    "card.level": ("处置层级", "Handled at"),
    "card.overdue": ("已超期", "OVERDUE"),
    # wall mode scenes
    "scene.overview": ("全域总览", "Overview"),
    "scene.hotspots": ("热点区域", "Hot spots"),
    "scene.overdue": ("超期事件", "Overdue events"),
    "scene.dispatch": ("力量调度", "Dispatch"),
    "misc.none": ("—", "—"),
}


def t(key: str, lang: str = "zh", **values: object) -> str:
    """The text of ``key`` in ``lang`` (falls back to Chinese), with ``{name}`` fields filled in."""
    zh, en = TEXT[key]
    text = en if lang == "en" else zh
    return text.format(**values) if values else text


def table(prefix: str, lang: str) -> dict[str, str]:
    """Every key under ``prefix.`` (without the prefix) in one language, for client-side code."""
    start = prefix + "."
    return {k[len(start) :]: t(k, lang) for k in TEXT if k.startswith(start)}


def normalise(lang: str | None, default: str = "zh") -> Lang:
    return "en" if (lang or default) == "en" else "zh"
