"""Working calendar and case deadlines in working hours (工作时) and working days (工作日).

A :class:`WorkCalendar` is configuration: public holidays, make-up working days (调休, a
Saturday or Sunday that is worked), the working periods of a day and the time zone. Nothing is
hard-coded in the logic; :func:`china_2026_calendar` is a ready-made calendar for 2026.

Rules, decided on purpose:

* A day is a working day if it is a make-up day, else if it is not a holiday and falls Monday to
  Friday.
* Working periods are half-open ``[start, end)`` in local wall-clock time. Time outside them
  does not count; a case started out of hours starts counting at the next working period.
* ``h`` working hours after ``t`` (``h > 0``) land inside a period or exactly at a period's end
  (12:00, not 14:00): the deadline is the moment the allowance runs out.
* ``n`` working days after ``t``: the start day does not count and the deadline is the end of
  the last working period of the ``n``-th working day after it. This follows how Chinese law
  counts periods (民法典 art. 201: the first day is not counted; art. 203: a period ending on a
  holiday runs to the next working day, and ends when business stops). So a case dispatched on
  Friday at any hour with one working day is due on Monday 17:30 when Monday is worked.
* Pauses (e.g. while an extension request awaits approval) stop the clock. The due time is the
  instant the *counted* working time, i.e. working time outside pauses, reaches the allowance;
  a pause before that instant moves it later by exactly the pause's working time, a pause after
  it changes nothing. An open pause (end ``None``) stops the clock for good: no due time yet.
* ``clock_hours`` (自然小时) count every hour, nights and holidays included, for emergencies
  that cannot wait for office hours; pauses still stop that clock.
* Times are computed in the calendar's local wall-clock time, exact for zones without daylight
  saving (all of China). Naive datetimes are refused; results are in the calendar's zone.

>>> from datetime import datetime, timedelta, timezone
>>> cal = WorkCalendar(holidays=(), makeup_workdays=())
>>> friday_five = datetime(2026, 3, 6, 17, 0, tzinfo=timezone(timedelta(hours=8)))
>>> cal.add_working_hours(friday_five, 2).isoformat()
'2026-03-09T10:00:00+08:00'
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_WORK_PERIODS",
    "CalendarConfigError",
    "CalendarError",
    "DeadlineStatus",
    "NaiveDatetimeError",
    "Pause",
    "Unit",
    "WorkCalendar",
    "china_2026_calendar",
]

#: "hours"/"work_hours" 工作时, "days"/"work_days" 工作日, "clock_hours" 自然小时 (24/7).
Unit: TypeAlias = Literal["hours", "work_hours", "days", "work_days", "clock_hours"]
DeadlineStatus: TypeAlias = Literal["on_time", "due_soon", "overdue"]
Pause: TypeAlias = "tuple[datetime, datetime | None]"
Period: TypeAlias = "tuple[time, time]"

DEFAULT_WORK_PERIODS: tuple[Period, ...] = ((time(8, 30), time(12, 0)), (time(14, 0), time(17, 30)))
#: Aliases accepted for a deadline's unit (the event category table says work_hours/work_days).
_UNITS = {
    "hours": "hours",
    "work_hours": "hours",
    "days": "days",
    "work_days": "days",
    "clock_hours": "clock_hours",
}
_DAY = timedelta(days=1)
_ZERO = timedelta(0)


class CalendarError(ValueError):
    """Base class for working-calendar problems."""


class CalendarConfigError(CalendarError):
    """The calendar's configuration is inconsistent (periods, time zone, holiday lists)."""


class NaiveDatetimeError(CalendarError):
    """A datetime without a time zone was given; deadlines need aware datetimes."""


@dataclass(frozen=True, init=False)
class WorkCalendar:
    """Working days and hours of one place; immutable and hashable.

    >>> from datetime import date
    >>> cal = WorkCalendar(holidays=[date(2026, 1, 1)], makeup_workdays=[date(2026, 1, 4)])
    >>> cal.is_workday(date(2026, 1, 1)), cal.is_workday(date(2026, 1, 4))
    (False, True)
    """

    holidays: frozenset[date]
    makeup_workdays: frozenset[date]
    work_periods: tuple[Period, ...]
    tz: str

    def __init__(
        self,
        *,
        holidays: Iterable[date],
        makeup_workdays: Iterable[date],
        work_periods: Iterable[Period] = DEFAULT_WORK_PERIODS,
        tz: str = "Asia/Shanghai",
    ) -> None:
        object.__setattr__(self, "holidays", _dates(holidays, "holidays"))
        object.__setattr__(self, "makeup_workdays", _dates(makeup_workdays, "makeup_workdays"))
        object.__setattr__(self, "work_periods", _check_periods(work_periods))
        object.__setattr__(self, "tz", _check_tz(tz))
        both = sorted(self.holidays & self.makeup_workdays)
        if both:
            raise CalendarConfigError(f"dates listed both as holiday and make-up workday: {both}")

    # -- days and periods -------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def hours_per_day(self) -> float:
        """Working hours in one working day (7.0 with the default periods)."""
        return self._daily / timedelta(hours=1)

    def is_workday(self, d: date) -> bool:
        """Whether ``d`` (a date, or an aware datetime taken in the calendar's zone) is worked."""
        if isinstance(d, datetime):
            d = self._local(d, "d").date()
        if d in self.makeup_workdays:
            return True
        return d not in self.holidays and d.weekday() < 5

    def next_working_instant(self, t: datetime) -> datetime:
        """``t`` itself if it lies in a working period, else the start of the next period."""
        local = self._local(t, "t")
        day = local.date()
        while True:
            for start, end in self._periods_on(day):
                if local < end:
                    return self._aware(max(start, local))
            day += _DAY

    # -- adding and measuring working time --------------------------------------------------

    def add_working_time(self, start: datetime, amount: timedelta) -> datetime:
        """The instant when ``amount`` of working time has elapsed after ``start``."""
        local = self._local(start, "start")
        if amount < _ZERO:
            raise CalendarError(f"working time to add must be >= 0, got {amount}")
        if amount == _ZERO:
            return self._aware(local)
        return self._aware(self._walk(local, amount))

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """``hours`` working hours after ``start``; out-of-hours starts count from the next period.

        >>> from datetime import datetime, timedelta, timezone
        >>> cal = WorkCalendar(holidays=(), makeup_workdays=())
        >>> t = datetime(2026, 3, 9, 11, 0, tzinfo=timezone(timedelta(hours=8)))
        >>> cal.add_working_hours(t, 2).strftime("%a %H:%M")
        'Mon 15:00'
        """
        return self.add_working_time(start, _hours(hours))

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """End of the ``days``-th working day after the start's date (the start day not counted).

        >>> from datetime import date, datetime, timedelta, timezone
        >>> cal = WorkCalendar(holidays=[date(2026, 3, 9)], makeup_workdays=())
        >>> t = datetime(2026, 3, 6, 10, 0, tzinfo=timezone(timedelta(hours=8)))  # a Friday
        >>> cal.add_working_days(t, 1).strftime("%a %d %H:%M")
        'Tue 10 17:30'
        """
        day = self._local(start, "start").date()
        days = _whole_days(days)
        for _ in range(days):
            day = self._next_workday(day)
        return self._aware(datetime.combine(day, self.work_periods[-1][1]))

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time in ``[a, b)``; negative when ``b`` is before ``a``."""
        la, lb = self._local(a, "a"), self._local(b, "b")
        if lb < la:
            return -self._between(lb, la)
        return self._between(la, lb)

    def working_hours_between(self, a: datetime, b: datetime) -> float:
        """:meth:`working_time_between` in hours."""
        return self.working_time_between(a, b) / timedelta(hours=1)

    # -- deadlines -------------------------------------------------------------------------

    def allowance(self, started_at: datetime, limit: float, unit: Unit) -> timedelta:
        """Time a case started at ``started_at`` is given by ``limit`` ``unit`` (see :data:`Unit`).

        Working time for working hours and days; wall-clock time for ``clock_hours``.
        """
        kind = _unit(unit)
        self._local(started_at, "started_at")
        if kind == "days":
            due = self.add_working_days(started_at, _whole_days(limit))
            return self.working_time_between(started_at, due)
        return _hours(limit)

    def due_at(
        self,
        started_at: datetime,
        limit: float,
        unit: Unit,
        *,
        pauses: Sequence[Pause] = (),
    ) -> datetime | None:
        """Deadline of a case whose clock started at ``started_at``; ``None`` while paused for good.

        >>> from datetime import datetime, timedelta, timezone
        >>> cst = timezone(timedelta(hours=8))
        >>> cal = WorkCalendar(holidays=(), makeup_workdays=())
        >>> start = datetime(2026, 3, 9, 9, 0, tzinfo=cst)
        >>> pause = (datetime(2026, 3, 9, 10, 0, tzinfo=cst), datetime(2026, 3, 9, 11, 0, tzinfo=cst))
        >>> cal.due_at(start, 2, "hours", pauses=[pause]).strftime("%H:%M")
        '12:00'
        """
        budget = self.allowance(started_at, limit, unit)
        between, walk = self._measure(unit)
        cursor = self._local(started_at, "started_at")
        for p_start, p_end in self._merged_pauses(pauses, cursor, None):
            run = between(cursor, p_start) if p_start > cursor else _ZERO
            if run >= budget:
                break
            budget -= run
            if p_end is None:
                return None
            cursor = max(cursor, p_end)
        return self._aware(walk(cursor, budget) if budget > _ZERO else cursor)

    def remaining(
        self,
        now: datetime,
        started_at: datetime,
        limit: float,
        unit: Unit,
        *,
        pauses: Sequence[Pause] = (),
    ) -> timedelta:
        """Working time left at ``now`` (negative: working time overdue); an open pause ends now."""
        budget = self.allowance(started_at, limit, unit)
        between, _ = self._measure(unit)
        start, end = self._local(started_at, "started_at"), self._local(now, "now")
        if end <= start:
            return budget
        merged = self._merged_pauses(pauses, start, end)
        paused = sum((between(ps, pe or end) for ps, pe in merged), _ZERO)
        return budget - (between(start, end) - paused)

    def deadline_status(
        self, now: datetime, due: datetime, *, warn_hours: float = 2.0, unit: Unit = "hours"
    ) -> DeadlineStatus:
        """``overdue`` after ``due``; ``due_soon`` within ``warn_hours`` of it.

        The warning window is measured like the deadline's ``unit``: working time, or wall-clock
        time for ``clock_hours``.
        """
        local_now, local_due = self._local(now, "now"), self._local(due, "due")
        if local_now > local_due:
            return "overdue"
        between, _ = self._measure(unit)
        return "due_soon" if between(local_now, local_due) <= _hours(warn_hours) else "on_time"

    # -- internals (local naive wall-clock datetimes) ---------------------------------------

    def _measure(
        self, unit: Unit
    ) -> tuple[
        Callable[[datetime, datetime], timedelta], Callable[[datetime, timedelta], datetime]
    ]:
        """How a unit measures time between two instants and adds time to one."""
        if _unit(unit) == "clock_hours":
            return _wall_between, operator.add
        return self._between, self._walk

    @property
    def _daily(self) -> timedelta:
        return sum((_length(s, e) for s, e in self.work_periods), _ZERO)

    def _local(self, t: datetime, name: str) -> datetime:
        if not isinstance(t, datetime):
            raise CalendarError(f"{name} must be a datetime, got {type(t).__name__}")
        if t.tzinfo is None or t.utcoffset() is None:
            raise NaiveDatetimeError(
                f"{name}={t.isoformat()} has no time zone; pass an aware datetime "
                f"(e.g. tzinfo=ZoneInfo({self.tz!r}))"
            )
        return t.astimezone(self.zone).replace(tzinfo=None)

    def _aware(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self.zone)

    def _periods_on(self, day: date) -> list[tuple[datetime, datetime]]:
        if not self.is_workday(day):
            return []
        return [(datetime.combine(day, s), datetime.combine(day, e)) for s, e in self.work_periods]

    def _next_workday(self, day: date) -> date:
        day += _DAY
        while not self.is_workday(day):
            day += _DAY
        return day

    def _work_in_day(self, day: date, lo: datetime, hi: datetime) -> timedelta:
        spans = (min(e, hi) - max(s, lo) for s, e in self._periods_on(day))
        return sum((span for span in spans if span > _ZERO), _ZERO)

    def _workdays_in(self, first: date, stop: date) -> int:
        """Working days in ``[first, stop)`` by arithmetic plus the calendar's exceptions."""
        if stop <= first:
            return 0
        weeks, extra = divmod((stop - first).days, 7)
        weekdays = weeks * 5 + sum((first + timedelta(days=i)).weekday() < 5 for i in range(extra))
        off = sum(first <= h < stop and h.weekday() < 5 for h in self.holidays)
        on = sum(first <= m < stop and m.weekday() >= 5 for m in self.makeup_workdays)
        return weekdays - off + on

    def _between(self, a: datetime, b: datetime) -> timedelta:
        """Working time in ``[a, b)`` for ``a <= b``."""
        da, db = a.date(), b.date()
        if da == db:
            return self._work_in_day(da, a, b)
        head = self._work_in_day(da, a, datetime.combine(da + _DAY, time()))
        tail = self._work_in_day(db, datetime.combine(db, time()), b)
        return head + self._workdays_in(da + _DAY, db) * self._daily + tail

    def _walk(self, local: datetime, amount: timedelta) -> datetime:
        """Instant after ``local`` when ``amount > 0`` of working time has elapsed."""
        day = local.date()
        while True:
            for start, end in self._periods_on(day):
                avail = end - max(start, local)
                if avail <= _ZERO:
                    continue
                if amount <= avail:
                    return max(start, local) + amount
                amount -= avail
            day += _DAY

    def _merged_pauses(
        self, pauses: Sequence[Pause], lo: datetime, hi: datetime | None
    ) -> list[tuple[datetime, datetime | None]]:
        """Pauses in local time, clipped to ``[lo, hi]``, sorted and merged; open ones last."""
        clipped: list[tuple[datetime, datetime | None]] = []
        for i, (p_start, p_end) in enumerate(pauses):
            s = self._local(p_start, f"pauses[{i}][0]")
            e = None if p_end is None else self._local(p_end, f"pauses[{i}][1]")
            if e is not None and e < s:
                raise CalendarError(f"pauses[{i}] ends ({p_end}) before it starts ({p_start})")
            if hi is not None:
                e = hi if e is None else min(e, hi)
            s = max(s, lo)
            if (e is None or e > s) and (hi is None or s < hi):
                clipped.append((s, e))
        return _merge(sorted(clipped, key=lambda p: p[0]))


def china_2026_calendar(
    *, work_periods: Iterable[Period] = DEFAULT_WORK_PERIODS, tz: str = "Asia/Shanghai"
) -> WorkCalendar:
    """Mainland China, 2026: the State Council General Office's notice of 4 November 2025.

    国务院办公厅关于2026年部分节假日安排的通知: every day off in each holiday span, and the
    six make-up working days. Outside 2026 it is a plain Monday-Friday calendar.

    >>> from datetime import date
    >>> cal = china_2026_calendar()
    >>> cal.is_workday(date(2026, 2, 14)), cal.is_workday(date(2026, 2, 16))
    (True, False)
    """
    spans = [
        ((1, 1), (1, 3)),  # 元旦
        ((2, 15), (2, 23)),  # 春节
        ((4, 4), (4, 6)),  # 清明节
        ((5, 1), (5, 5)),  # 劳动节
        ((6, 19), (6, 21)),  # 端午节
        ((9, 25), (9, 27)),  # 中秋节
        ((10, 1), (10, 7)),  # 国庆节
    ]
    holidays = [
        d for first, last in spans for d in _date_range(date(2026, *first), date(2026, *last))
    ]
    makeup = [date(2026, m, d) for m, d in [(1, 4), (2, 14), (2, 28), (5, 9), (9, 20), (10, 10)]]
    return WorkCalendar(holidays=holidays, makeup_workdays=makeup, work_periods=work_periods, tz=tz)


# -- module helpers ------------------------------------------------------------------------


def _date_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _dates(values: Iterable[date], name: str) -> frozenset[date]:
    out = frozenset(values)
    bad = [v for v in out if not isinstance(v, date) or isinstance(v, datetime)]
    if bad:
        raise CalendarConfigError(f"{name} must hold dates, got {bad[0]!r}")
    return out


def _length(start: time, end: time) -> timedelta:
    return datetime.combine(date.min, end) - datetime.combine(date.min, start)


def _check_periods(periods: Iterable[Period]) -> tuple[Period, ...]:
    out = tuple((s, e) for s, e in periods)
    if not out:
        raise CalendarConfigError("work_periods must hold at least one (start, end) period")
    for i, (s, e) in enumerate(out):
        if not (isinstance(s, time) and isinstance(e, time)) or s.tzinfo or e.tzinfo:
            raise CalendarConfigError(f"work_periods[{i}] must be two naive datetime.time values")
        if e <= s:
            raise CalendarConfigError(f"work_periods[{i}] ends ({e}) at or before it starts ({s})")
        if i and s < out[i - 1][1]:
            raise CalendarConfigError(
                f"work_periods[{i}] starts ({s}) before work_periods[{i - 1}] ends "
                f"({out[i - 1][1]}); list periods in order without overlap"
            )
    return out


def _check_tz(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise CalendarConfigError(f"unknown time zone {tz!r}") from exc
    return tz


def _wall_between(a: datetime, b: datetime) -> timedelta:
    return b - a


def _unit(unit: Unit) -> str:
    try:
        return _UNITS[unit]
    except (KeyError, TypeError):
        raise CalendarError(f"unit must be one of {sorted(_UNITS)}, got {unit!r}") from None


def _whole_days(days: float) -> int:
    if isinstance(days, float) and days.is_integer():
        days = int(days)  # 3.0 from a numeric DB column means 3
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise CalendarError(f"a limit in working days must be a whole number >= 1, got {days!r}")
    return days


def _hours(hours: float) -> timedelta:
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not hours >= 0:
        raise CalendarError(f"a limit in working hours must be a number >= 0, got {hours!r}")
    return timedelta(hours=hours)


def _merge(
    pauses: list[tuple[datetime, datetime | None]],
) -> list[tuple[datetime, datetime | None]]:
    merged: list[tuple[datetime, datetime | None]] = []
    for s, e in pauses:
        last_e = merged[-1][1] if merged else s
        if merged and (last_e is None or s <= last_e):
            merged[-1] = (merged[-1][0], None if e is None or last_e is None else max(last_e, e))
        else:
            merged.append((s, e))
    return merged
