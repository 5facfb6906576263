"""The working calendar from settings, and deadlines of events from their category limits."""

from __future__ import annotations

from datetime import date

from etl.settings import Settings
from geo.workcalendar import Unit, WorkCalendar, china_2026_calendar


def work_calendar(settings: Settings) -> WorkCalendar:
    """Holidays and make-up working days from settings, else China's official 2026 schedule."""
    if settings.holidays is None and settings.makeup_workdays is None:
        return china_2026_calendar()
    return WorkCalendar(
        holidays=[date.fromisoformat(d) for d in settings.holidays or []],
        makeup_workdays=[date.fromisoformat(d) for d in settings.makeup_workdays or []],
        tz=settings.timezone,
    )


UNIT_OF: dict[str, Unit] = {
    "work_hours": "work_hours",
    "work_days": "work_days",
    "clock_hours": "clock_hours",
}
