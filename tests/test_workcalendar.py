"""Working calendar: hand-worked cases, the 2026 notice, and a minute-by-minute oracle."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.workcalendar import (
    CalendarConfigError,
    CalendarError,
    NaiveDatetimeError,
    WorkCalendar,
    china_2026_calendar,
)

CST = ZoneInfo("Asia/Shanghai")
MINUTE = timedelta(minutes=1)
PLAIN = WorkCalendar(holidays=(), makeup_workdays=())


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=CST)


# -- configuration -------------------------------------------------------------------------


def test_default_day_is_seven_hours() -> None:
    assert PLAIN.hours_per_day == 7.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"work_periods": []}, "at least one"),
        ({"work_periods": [(time(12), time(8))]}, "work_periods[0] ends"),
        ({"work_periods": [(time(8), time(12)), (time(11), time(13))]}, "work_periods[1] starts"),
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
        ({"holidays": [date(2026, 3, 7)], "makeup_workdays": [date(2026, 3, 7)]}, "both"),
        ({"holidays": [datetime(2026, 3, 7)]}, "holidays must hold dates"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict, message: str) -> None:
    args = {"holidays": (), "makeup_workdays": ()} | kwargs
    with pytest.raises(CalendarConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        WorkCalendar(**args)


def test_calendar_is_hashable_and_compares_by_value() -> None:
    a = WorkCalendar(holidays=[date(2026, 1, 1)], makeup_workdays=[])
    b = WorkCalendar(holidays={date(2026, 1, 1)}, makeup_workdays=())
    assert a == b and hash(a) == hash(b) and len({a, b, PLAIN}) == 2


def test_is_workday_rules() -> None:
    cal = WorkCalendar(holidays=[date(2026, 3, 9)], makeup_workdays=[date(2026, 3, 7)])
    assert cal.is_workday(date(2026, 3, 6))  # Friday
    assert cal.is_workday(date(2026, 3, 7))  # Saturday, made up
    assert not cal.is_workday(date(2026, 3, 8))  # Sunday
    assert not cal.is_workday(date(2026, 3, 9))  # Monday, holiday
    # an aware datetime is read in the calendar's zone: 17:00 UTC is 01:00 next day in Beijing
    assert not cal.is_workday(datetime(2026, 3, 8, 17, 0, tzinfo=UTC))  # Monday, holiday
    assert not cal.is_workday(datetime(2026, 3, 7, 17, 0, tzinfo=UTC))  # Sunday
    assert cal.is_workday(datetime(2026, 3, 6, 17, 0, tzinfo=UTC))  # Saturday, made up


# -- the 2026 notice -----------------------------------------------------------------------


def _off_run(cal: WorkCalendar, inside: date) -> tuple[date, date]:
    first = last = inside
    while not cal.is_workday(first - timedelta(days=1)):
        first -= timedelta(days=1)
    while not cal.is_workday(last + timedelta(days=1)):
        last += timedelta(days=1)
    return first, last


@pytest.mark.parametrize(
    ("festival", "first", "days"),
    [
        (date(2026, 1, 1), date(2026, 1, 1), 3),  # 元旦 1月1日至3日 共3天
        (date(2026, 2, 17), date(2026, 2, 15), 9),  # 春节 2月15日至23日 共9天
        (date(2026, 4, 5), date(2026, 4, 4), 3),  # 清明节 4月4日至6日 共3天
        (date(2026, 5, 1), date(2026, 5, 1), 5),  # 劳动节 5月1日至5日 共5天
        (date(2026, 6, 19), date(2026, 6, 19), 3),  # 端午节 6月19日至21日 共3天
        (date(2026, 9, 25), date(2026, 9, 25), 3),  # 中秋节 9月25日至27日 共3天
        (date(2026, 10, 1), date(2026, 10, 1), 7),  # 国庆节 10月1日至7日 共7天
    ],
)
def test_2026_breaks_match_the_notice(festival: date, first: date, days: int) -> None:
    assert _off_run(china_2026_calendar(), festival) == (first, first + timedelta(days=days - 1))


def test_2026_makeup_days_are_worked_weekends() -> None:
    cal = china_2026_calendar()
    for d in [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9)]:
        assert d.weekday() >= 5 and cal.is_workday(d)
    assert date(2026, 9, 20).weekday() == 6 and cal.is_workday(date(2026, 9, 20))
    assert date(2026, 10, 10).weekday() == 5 and cal.is_workday(date(2026, 10, 10))
    # 261 weekdays in 2026, 19 of them off for the festivals, 6 weekend days worked
    year = [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    assert sum(map(cal.is_workday, year)) == 261 - 19 + 6
    assert cal.working_hours_between(at(2026, 1, 1), at(2027, 1, 1)) == (261 - 19 + 6) * 7


# -- hand-worked deadlines -----------------------------------------------------------------


def test_friday_five_pm_two_hours_is_monday() -> None:
    friday = at(2026, 3, 6, 17, 0)
    # 30 min left on Friday, 90 min from Monday 8:30
    assert PLAIN.add_working_hours(friday, 2) == at(2026, 3, 9, 10, 0)
    # with the working day starting at 8:00 it is the 9:30 the brief quotes
    early = WorkCalendar(
        holidays=(),
        makeup_workdays=(),
        work_periods=[(time(8), time(12)), (time(14), time(17, 30))],
    )
    assert early.add_working_hours(friday, 2) == at(2026, 3, 9, 9, 30)
    # Monday a holiday: Tuesday; Saturday made up: Saturday
    assert WorkCalendar(holidays=[date(2026, 3, 9)], makeup_workdays=()).add_working_hours(
        friday, 2
    ) == at(2026, 3, 10, 10, 0)
    assert WorkCalendar(holidays=(), makeup_workdays=[date(2026, 3, 7)]).add_working_hours(
        friday, 2
    ) == at(2026, 3, 7, 10, 0)


def test_hours_land_on_period_end_not_next_start() -> None:
    assert PLAIN.add_working_hours(at(2026, 3, 9, 11, 0), 1) == at(2026, 3, 9, 12, 0)
    assert PLAIN.add_working_hours(at(2026, 3, 9, 11, 0), 1.5) == at(2026, 3, 9, 14, 30)


def test_out_of_hours_start_counts_from_next_period() -> None:
    assert PLAIN.add_working_hours(at(2026, 3, 9, 12, 30), 1) == at(2026, 3, 9, 15, 0)
    assert PLAIN.add_working_hours(at(2026, 3, 9, 6, 0), 0.5) == at(2026, 3, 9, 9, 0)
    assert PLAIN.next_working_instant(at(2026, 3, 9, 12, 0)) == at(2026, 3, 9, 14, 0)
    assert PLAIN.next_working_instant(at(2026, 3, 9, 9, 0)) == at(2026, 3, 9, 9, 0)
    assert PLAIN.next_working_instant(at(2026, 3, 7, 9, 0)) == at(2026, 3, 9, 8, 30)


def test_working_days_start_day_not_counted() -> None:
    for hour in (0, 8, 10, 17, 23):  # any hour on Friday: one working day is Monday's close
        assert PLAIN.add_working_days(at(2026, 3, 6, hour), 1) == at(2026, 3, 9, 17, 30)
    assert PLAIN.add_working_days(at(2026, 3, 7, 10), 1) == at(2026, 3, 9, 17, 30)  # Saturday
    assert PLAIN.add_working_days(at(2026, 3, 6, 10), 5) == at(2026, 3, 13, 17, 30)
    cal = china_2026_calendar()
    assert cal.add_working_days(at(2026, 2, 13, 10), 1) == at(2026, 2, 14, 17, 30)  # 调休 Sat
    assert cal.add_working_days(at(2026, 2, 14, 10), 1) == at(2026, 2, 24, 17, 30)  # 春节
    assert cal.add_working_days(at(2026, 9, 30, 10), 3) == at(2026, 10, 10, 17, 30)


def test_zero_hours_is_the_start_and_negative_limits_fail() -> None:
    t = at(2026, 3, 7, 3, 0)
    assert PLAIN.add_working_hours(t, 0) == t
    with pytest.raises(CalendarError, match=">= 0"):
        PLAIN.add_working_hours(t, -1)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(CalendarError, match="whole number >= 1"):
            PLAIN.add_working_days(t, bad)  # type: ignore[arg-type]
    assert PLAIN.add_working_days(t, 2.0) == PLAIN.add_working_days(t, 2)  # type: ignore[arg-type]
    with pytest.raises(CalendarError, match="unit must be one of .*got 'weeks'"):
        PLAIN.due_at(t, 1, "weeks")  # type: ignore[arg-type]


def test_unit_aliases_of_the_category_table() -> None:
    start = at(2026, 3, 6, 17, 0)
    assert PLAIN.due_at(start, 4, "work_hours") == PLAIN.due_at(start, 4, "hours")
    assert PLAIN.due_at(start, 2, "work_days") == PLAIN.due_at(start, 2, "days")
    assert PLAIN.due_at(start, 2, "days") == PLAIN.add_working_days(start, 2)


def test_clock_hours_run_through_nights_and_holidays() -> None:
    fire = at(2026, 2, 16, 22, 30)  # 春节 night
    cal = china_2026_calendar()
    assert cal.due_at(fire, 1, "clock_hours") == at(2026, 2, 16, 23, 30)
    pause = [(at(2026, 2, 16, 23, 0), at(2026, 2, 17, 1, 0))]
    assert cal.due_at(fire, 1, "clock_hours", pauses=pause) == at(2026, 2, 17, 1, 30)
    assert cal.remaining(at(2026, 2, 17, 1, 0), fire, 1, "clock_hours", pauses=pause) == (
        timedelta(minutes=30)
    )
    due = at(2026, 2, 17, 1, 30)
    status = cal.deadline_status
    assert status(at(2026, 2, 16, 23, 45), due, warn_hours=1, unit="clock_hours") == "on_time"
    assert status(at(2026, 2, 17, 0, 30), due, warn_hours=1, unit="clock_hours") == "due_soon"
    # measured in working hours the holiday night is zero hours away from the due time
    assert status(at(2026, 2, 16, 23, 45), due, warn_hours=1) == "due_soon"


def test_between_is_signed_and_timezone_independent() -> None:
    a, b = at(2026, 3, 6, 17, 0), at(2026, 3, 9, 10, 0)
    assert PLAIN.working_hours_between(a, b) == 2.0
    assert PLAIN.working_hours_between(b, a) == -2.0
    assert PLAIN.working_hours_between(a.astimezone(UTC), b.astimezone(UTC)) == 2.0
    assert PLAIN.add_working_hours(a.astimezone(UTC), 2) == b
    assert PLAIN.add_working_hours(a.astimezone(UTC), 2).tzinfo == CST


def test_naive_datetimes_are_refused_with_the_argument_named() -> None:
    naive, aware = datetime(2026, 3, 9, 9, 0), at(2026, 3, 9, 9, 0)
    calls = {
        "start": lambda: PLAIN.add_working_hours(naive, 1),
        "a": lambda: PLAIN.working_hours_between(naive, aware),
        "b": lambda: PLAIN.working_hours_between(aware, naive),
        "started_at": lambda: PLAIN.due_at(naive, 1, "hours"),
        "now": lambda: PLAIN.remaining(naive, aware, 1, "hours"),
        "due": lambda: PLAIN.deadline_status(aware, naive),
        r"pauses\[0\]\[1\]": lambda: PLAIN.due_at(aware, 1, "hours", pauses=[(aware, naive)]),
    }
    for name, call in calls.items():
        with pytest.raises(
            NaiveDatetimeError, match=f"^{name}=2026-03-09T09:00:00 has no time zone"
        ):
            call()


# -- pauses and status ---------------------------------------------------------------------


def test_pause_inside_the_window_extends_by_its_working_time() -> None:
    start = at(2026, 3, 9, 9, 0)
    plain_due = PLAIN.due_at(start, 4, "hours")
    assert plain_due == at(2026, 3, 9, 15, 0)
    # 11:00 Monday to 9:00 Tuesday holds 1 + 3.5 + 0.5 = 5 working hours
    pause = (at(2026, 3, 9, 11, 0), at(2026, 3, 10, 9, 0))
    assert PLAIN.due_at(start, 4, "hours", pauses=[pause]) == at(2026, 3, 10, 11, 0)
    # the same pause given twice, overlapping, counts once
    double = [pause, (at(2026, 3, 9, 16, 0), at(2026, 3, 9, 17, 0))]
    assert PLAIN.due_at(start, 4, "hours", pauses=double) == at(2026, 3, 10, 11, 0)
    # after the due time a pause changes nothing; an open one before it stops the clock
    late = (at(2026, 3, 9, 16, 0), None)
    assert PLAIN.due_at(start, 4, "hours", pauses=[late]) == plain_due
    assert PLAIN.due_at(start, 4, "hours", pauses=[(at(2026, 3, 9, 10, 0), None)]) is None
    with pytest.raises(CalendarError, match="ends .* before it starts"):
        PLAIN.due_at(start, 4, "hours", pauses=[(at(2026, 3, 9, 11), at(2026, 3, 9, 10))])


def test_remaining_freezes_while_paused_and_goes_negative_when_late() -> None:
    start = at(2026, 3, 9, 9, 0)
    pauses = [(at(2026, 3, 9, 10, 0), None)]
    frozen = [
        PLAIN.remaining(t, start, 4, "hours", pauses=pauses)
        for t in (at(2026, 3, 9, 10, 0), at(2026, 3, 9, 16, 0), at(2026, 3, 12, 9, 0))
    ]
    assert frozen == [timedelta(hours=3)] * 3
    assert PLAIN.remaining(at(2026, 3, 9, 8, 0), start, 4, "hours") == timedelta(hours=4)
    assert PLAIN.remaining(at(2026, 3, 10, 9, 0), start, 4, "hours") == -timedelta(hours=3)


def test_deadline_status() -> None:
    due = at(2026, 3, 6, 17, 30)  # Friday close
    status = PLAIN.deadline_status
    assert status(at(2026, 3, 6, 9, 0), due) == "on_time"
    assert status(at(2026, 3, 6, 15, 30), due) == "due_soon"
    assert status(due, due) == "due_soon"
    assert status(at(2026, 3, 6, 18, 0), due) == "overdue"  # late even with no working time gone
    # the warning window is in working hours: Monday 9:00 due, Friday 17:00 is 1 h before
    assert status(at(2026, 3, 6, 17, 0), at(2026, 3, 9, 9, 0), warn_hours=1) == "due_soon"
    assert status(at(2026, 3, 6, 16, 0), at(2026, 3, 9, 9, 0), warn_hours=1) == "on_time"


# -- properties against a minute-by-minute oracle ------------------------------------------

BASE = date(2026, 3, 2)  # a Monday
WINDOW = [BASE + timedelta(days=i) for i in range(21)]


@st.composite
def calendars(draw: st.DrawFn) -> WorkCalendar:
    holidays = draw(st.sets(st.sampled_from(WINDOW), max_size=6))
    weekends = [d for d in WINDOW if d.weekday() >= 5 and d not in holidays]
    makeup = draw(st.sets(st.sampled_from(weekends), max_size=3))
    n = draw(st.integers(1, 3))
    bounds = sorted(draw(st.sets(st.integers(0, 24 * 60 - 1), min_size=2 * n, max_size=2 * n)))
    periods = [(_t(bounds[i]), _t(bounds[i + 1])) for i in range(0, 2 * n, 2)]
    return WorkCalendar(holidays=holidays, makeup_workdays=makeup, work_periods=periods)


def _t(minute: int) -> time:
    return time(minute // 60, minute % 60)


def instants(days: int = 7) -> st.SearchStrategy[datetime]:
    return st.integers(0, days * 24 * 60 - 1).map(
        lambda m: datetime.combine(BASE, time(), tzinfo=CST) + m * MINUTE
    )


class Oracle:
    """Walks minute by minute from its own reading of the calendar's rules."""

    def __init__(self, cal: WorkCalendar, pauses: Sequence[tuple[datetime, datetime | None]] = ()):
        self.cal, self.pauses = cal, pauses
        self.daily = sum(
            (b.hour * 60 + b.minute) - (a.hour * 60 + a.minute) for a, b in cal.work_periods
        )

    def workday(self, d: date) -> bool:
        return d in self.cal.makeup_workdays or (d not in self.cal.holidays and d.weekday() < 5)

    def working(self, m: datetime) -> bool:
        local = m.astimezone(CST)
        in_period = any(a <= local.time() < b for a, b in self.cal.work_periods)
        return in_period and self.workday(local.date())

    def counted(self, m: datetime, clock: bool = False) -> bool:
        paused = any(s <= m and (e is None or m < e) for s, e in self.pauses)
        return (clock or self.working(m)) and not paused

    def between(self, a: datetime, b: datetime) -> int:
        return sum(self.counted(a + i * MINUTE) for i in range(int((b - a) / MINUTE)))

    def add(self, a: datetime, minutes: int) -> datetime:
        m, left = a, minutes
        while left:
            left -= self.counted(m)
            m += MINUTE
        return m

    def day_end(self, a: datetime, days: int) -> datetime:
        d = a.astimezone(CST).date()
        for _ in range(days):
            d += timedelta(days=1)
            while not self.workday(d):
                d += timedelta(days=1)
        return datetime.combine(d, self.cal.work_periods[-1][1], tzinfo=CST)


FAST = settings(max_examples=150, deadline=None)


@FAST
@given(cal=calendars(), start=instants(), data=st.data())
def test_add_then_between_round_trips_and_matches_oracle(
    cal: WorkCalendar, start: datetime, data: st.DataObject
) -> None:
    oracle = Oracle(cal)
    minutes = data.draw(st.integers(1, 2 * oracle.daily))
    due = cal.add_working_hours(start, minutes / 60)
    assert due == oracle.add(start, minutes)
    assert cal.working_time_between(start, due) == minutes * MINUTE
    assert cal.working_time_between(due, start) == -minutes * MINUTE


@FAST
@given(cal=calendars(), start=instants(), data=st.data())
def test_deadlines_never_land_in_non_working_time(
    cal: WorkCalendar, start: datetime, data: st.DataObject
) -> None:
    due = cal.add_working_hours(start, data.draw(st.floats(0.01, 30.0)))
    local = due.astimezone(CST)
    assert Oracle(cal).workday(local.date())
    assert any(a < local.time() <= b for a, b in cal.work_periods)


@FAST
@given(cal=calendars(), a=instants(14), b=instants(14))
def test_between_matches_oracle(cal: WorkCalendar, a: datetime, b: datetime) -> None:
    lo, hi = min(a, b), max(a, b)
    assert cal.working_time_between(lo, hi) == Oracle(cal).between(lo, hi) * MINUTE


@settings(max_examples=40, deadline=None)
@given(
    holidays=st.sets(st.dates(date(2025, 12, 1), date(2027, 3, 1)), max_size=40),
    span=st.tuples(st.dates(date(2026, 1, 1), date(2026, 12, 31)), st.integers(0, 400)),
)
def test_long_spans_match_a_day_by_day_sum(holidays: set[date], span: tuple[date, int]) -> None:
    weekends = {d + timedelta(days=1) for d in holidays if d.weekday() == 4} - holidays
    cal = WorkCalendar(holidays=holidays, makeup_workdays=weekends)
    first, n = span
    days = [first + timedelta(days=i) for i in range(n)]
    expected = sum(Oracle(cal).workday(d) for d in days) * 7
    a = datetime.combine(first, time(), tzinfo=CST)
    assert cal.working_hours_between(a, a + timedelta(days=n)) == expected


@FAST
@given(cal=calendars(), start=instants(), days=st.integers(1, 3))
def test_working_days_match_oracle(cal: WorkCalendar, start: datetime, days: int) -> None:
    assert cal.add_working_days(start, days) == Oracle(cal).day_end(start, days)


@st.composite
def pause_lists(draw: st.DrawFn, start: datetime) -> list[tuple[datetime, datetime | None]]:
    out: list[tuple[datetime, datetime | None]] = []
    for _ in range(draw(st.integers(0, 3))):
        s = start + draw(st.integers(-600, 4 * 24 * 60)) * MINUTE
        length = draw(st.one_of(st.none(), st.integers(0, 2 * 24 * 60)))
        out.append((s, None if length is None else s + length * MINUTE))
    return out


@FAST
@given(cal=calendars(), start=instants(), data=st.data())
def test_due_with_pauses_matches_oracle(
    cal: WorkCalendar, start: datetime, data: st.DataObject
) -> None:
    pauses = data.draw(pause_lists(start))
    oracle = Oracle(cal, pauses)
    unit = data.draw(st.sampled_from(["hours", "work_hours", "days", "work_days", "clock_hours"]))
    if unit.endswith("days"):
        limit: float = data.draw(st.integers(1, 2))
        allowance = Oracle(cal).between(start, oracle.day_end(start, int(limit)))
    else:
        limit = data.draw(st.integers(1, 2 * oracle.daily)) / 60
        allowance = round(limit * 60)
    due = cal.due_at(start, limit, unit, pauses=pauses)  # type: ignore[arg-type]
    # the oracle's clock stops for good if an open pause begins before the allowance is used
    reached = _oracle_due(oracle, start, allowance, clock=unit == "clock_hours")
    assert due == reached
    if due is not None:
        assert cal.remaining(due, start, limit, unit, pauses=pauses) == timedelta(0)  # type: ignore[arg-type]


def _oracle_due(oracle: Oracle, start: datetime, allowance: int, clock: bool) -> datetime | None:
    open_from = min((s for s, e in oracle.pauses if e is None), default=None)
    m, left = start, allowance
    while left:
        if open_from is not None and m >= max(open_from, start):
            return None
        left -= oracle.counted(m, clock)
        m += MINUTE
    return m


@FAST
@given(cal=calendars(), start=instants(), data=st.data())
def test_closed_pause_extends_due_by_its_working_time(
    cal: WorkCalendar, start: datetime, data: st.DataObject
) -> None:
    oracle = Oracle(cal)
    hours = data.draw(st.integers(1, 2 * oracle.daily)) / 60
    plain = cal.due_at(start, hours, "hours")
    assert plain is not None
    span = int((plain - start) / MINUTE)
    p0 = start + data.draw(st.integers(0, span)) * MINUTE
    p1 = p0 + data.draw(st.integers(0, span)) * MINUTE
    p1 = min(p1, plain)  # wholly inside [start, plain due]
    paused = cal.due_at(start, hours, "hours", pauses=[(p0, p1)])
    assert paused is not None
    assert cal.working_time_between(plain, paused) == cal.working_time_between(p0, p1)
