"""Event loop state machine: each rule, each error, random walks, replay and closure KPIs."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import geo.workflow as wf
from geo.workcalendar import WorkCalendar
from geo.workflow import (
    DEFAULT_LADDER,
    PAUSING_STATUSES,
    RULES,
    TERMINAL_STATUSES,
    Action,
    Actor,
    EventState,
    HistoryMismatch,
    IllegalTransition,
    InvalidSatisfaction,
    InvalidTime,
    MissingReason,
    Status,
    Transition,
    UnknownLevel,
    allowed_actions,
    apply,
    clock,
    closure_stats,
    replay,
    report_event,
    rule_rows,
)

CST = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=CST)
ACTORS = {lvl: Actor(lvl, f"{lvl}_staff", f"{lvl}-1") for lvl in DEFAULT_LADDER}
GRID, COMMUNITY, TOWNSHIP, COUNTY = (ACTORS[lvl] for lvl in DEFAULT_LADDER)
REASONED = {r.action for r in RULES if r.reason_required}


def state_at(status: Status, level: str = "community", **kw: object) -> EventState:
    base = EventState(status, level, False, 5, T0, dispatched_by=level, dispatched_at=T0)
    if status in PAUSING_STATUSES:
        kw.setdefault("paused_since", T0)
    if status is Status.EXTENSION_REQUESTED:
        kw.setdefault("resume_status", Status.IN_PROGRESS)
    return replace(base, **kw)  # type: ignore[arg-type]


def go(state: EventState, action: Action, actor: Actor, minutes: int = 10, **kw: object):
    if action in REASONED:
        kw.setdefault("reason", "why")
    if action is Action.EVALUATE:
        kw.setdefault("satisfaction", 4)
    return apply(state, action, actor, at=state.updated_at + timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


def run(steps: list[tuple[Action, Actor, dict]], *, emergency: bool = False, reporter=GRID):
    state, first = report_event(reporter, at=T0, emergency=emergency)
    initial, history = state, [first]
    for action, actor, kw in steps:
        state, row = go(state, action, actor, **kw)
        history.append(row)
    return initial, state, history


# -- the main line and the side branches ---------------------------------------------------

MAIN = [
    (Action.VERIFY, GRID, {}),
    (Action.FILE, GRID, {}),
    (Action.DISPATCH, GRID, {}),
    (Action.HANDLE, GRID, {}),
    (Action.REPORT_BACK, GRID, {}),
    (Action.CHECK_PASS, COMMUNITY, {}),
    (Action.CLOSE, COMMUNITY, {}),
    (Action.EVALUATE, COUNTY, {"satisfaction": 5}),
]


def test_main_line_reaches_evaluated_with_versions_one_by_one() -> None:
    initial, state, history = run(MAIN)
    expected = [
        Status.REPORTED,
        Status.VERIFIED,
        Status.FILED,
        Status.DISPATCHED,
        Status.IN_PROGRESS,
        Status.HANDLED,
        Status.CHECKED,
        Status.CLOSED,
        Status.EVALUATED,
    ]
    assert [t.to_status for t in history] == expected
    assert [t.version for t in history] == list(range(1, 10))
    assert [t.from_status for t in history[1:]] == expected[:-1]
    assert state.satisfaction == 5 and state.handling_level == "grid"
    assert state.dispatched_at == history[3].at
    assert replay(initial, history) == state
    assert replay(initial, history[1:]) == state


def test_emergency_goes_to_the_top_on_arrival() -> None:
    state, row = report_event(GRID, at=T0, emergency=True, level="grid")
    assert (state.handling_level, state.emergency, row.to_level) == ("county", True, "county")
    assert allowed_actions(state, GRID) == set()
    assert allowed_actions(state, COUNTY) == {Action.VERIFY, Action.CANCEL}
    four = ("grid", "village", "area", "town")
    state, _ = report_event(Actor("grid", "w", "x"), at=T0, emergency=True, ladder=four)
    assert state.handling_level == "town"


def test_reported_event_is_handled_at_the_reporters_level_by_default() -> None:
    assert report_event(COMMUNITY, at=T0)[0].handling_level == "community"
    assert report_event(COUNTY, at=T0, level="grid")[0].handling_level == "grid"


def test_cancel_is_terminal() -> None:
    _, state, _ = run([(Action.CANCEL, GRID, {})])
    assert state.status is Status.CANCELLED
    assert all(allowed_actions(state, a) == set() for a in ACTORS.values())


def test_check_fail_sends_back_to_dispatched_same_level() -> None:
    steps = MAIN[:5] + [(Action.CHECK_FAIL, COMMUNITY, {"reason": "still dirty"})]
    _, state, history = run(steps)
    assert (state.status, state.handling_level) == (Status.DISPATCHED, "grid")
    assert history[-1].note == "still dirty"


def test_return_goes_back_to_the_dispatchers_level() -> None:
    steps = [
        (Action.VERIFY, GRID, {}),
        (Action.ESCALATE, GRID, {"reason": "beyond the grid"}),
        (Action.FILE, COUNTY, {}),
        (Action.DISPATCH, COUNTY, {"to_level": "grid"}),
        (Action.RETURN, GRID, {"reason": "not our remit"}),
    ]
    _, state, history = run(steps)
    assert [t.to_level for t in history] == [
        "grid",
        "grid",
        "community",
        "community",
        "grid",
        "county",
    ]
    assert (state.status, state.handling_level, state.dispatched_by) == (
        Status.FILED,
        "county",
        "county",
    )
    assert Action.DISPATCH in allowed_actions(state, COUNTY)


def test_extension_pauses_the_clock_and_returns_to_the_prior_status() -> None:
    for prior, extra in [
        (Status.DISPATCHED, []),
        (Status.IN_PROGRESS, [(Action.HANDLE, GRID, {})]),
    ]:
        for decision in (Action.APPROVE_EXTENSION, Action.REJECT_EXTENSION):
            steps = (
                MAIN[:3] + extra + [(Action.REQUEST_EXTENSION, GRID, {}), (decision, COMMUNITY, {})]
            )
            _, state, history = run(steps)
            asked = history[-2]
            assert asked.to_status is Status.EXTENSION_REQUESTED
            assert state.status is prior and state.paused_since is None
            start, pauses = clock(history)
            assert start == history[3].at and pauses == [(asked.at, history[-1].at)]


def test_backlog_pauses_and_reactivate_resumes() -> None:
    steps = MAIN[:4] + [(Action.BACKLOG, COMMUNITY, {"reason": "needs a budget"})]
    _, parked, history = run(steps)
    assert parked.status is Status.BACKLOG and parked.paused_since == history[-1].at
    assert clock(history)[1] == [(history[-1].at, None)]
    resumed, row = go(parked, Action.REACTIVATE, COMMUNITY)
    assert (resumed.status, resumed.paused_since) == (Status.DISPATCHED, None)
    assert clock([*history, row])[1] == [(history[-1].at, row.at)]


def test_escalate_moves_one_level_and_emergencies_jump_to_the_top() -> None:
    _, state, _ = run(MAIN[:4] + [(Action.ESCALATE, GRID, {"reason": "too big"})])
    assert (state.status, state.handling_level) == (Status.FILED, "community")
    emergency, _ = report_event(GRID, at=T0, emergency=True)
    for action, actor, kw in [
        (Action.VERIFY, COUNTY, {}),
        (Action.FILE, COUNTY, {}),
        (Action.DISPATCH, COUNTY, {"to_level": "grid"}),
        (Action.ESCALATE, GRID, {}),
    ]:
        emergency, row = go(emergency, action, actor, **kw)
    assert (row.from_level, row.to_level, emergency.status) == ("grid", "county", Status.FILED)
    with pytest.raises(IllegalTransition, match="already at the top level 'county'"):
        go(emergency, Action.ESCALATE, COUNTY)


def test_a_four_level_ladder_is_data() -> None:
    ladder = ("grid", "village", "area", "town")
    grid, village = Actor("grid", "w", "a"), Actor("village", "secretary", "b")
    state, _ = report_event(grid, at=T0, ladder=ladder)
    state, row = apply(state, Action.ESCALATE, grid, at=T0, reason="r", ladder=ladder)
    assert row.to_level == "village"
    assert Action.VERIFY in allowed_actions(state, village, ladder=ladder)
    with pytest.raises(UnknownLevel, match="'county' is not on the ladder"):
        allowed_actions(state, COUNTY, ladder=ladder)
    with pytest.raises(UnknownLevel, match="distinct"):
        allowed_actions(state, grid, ladder=("grid", "grid"))


# -- who may act: the brief's rules, written out by hand ------------------------------------

LEVELS = list(DEFAULT_LADDER)


@pytest.mark.parametrize(
    ("status", "action", "handler", "allowed_levels"),
    [
        (Status.REPORTED, Action.VERIFY, "community", ["community", "township", "county"]),
        (Status.VERIFIED, Action.FILE, "community", ["community", "township", "county"]),
        (Status.FILED, Action.DISPATCH, "community", ["community", "township", "county"]),
        (Status.DISPATCHED, Action.HANDLE, "community", ["community"]),
        (Status.IN_PROGRESS, Action.REPORT_BACK, "community", ["community"]),
        (Status.HANDLED, Action.CHECK_PASS, "community", ["township", "county"]),
        (Status.HANDLED, Action.CHECK_FAIL, "county", ["county"]),
        (Status.CHECKED, Action.CLOSE, "grid", ["community", "township", "county"]),
        (Status.CHECKED, Action.CLOSE, "county", ["county"]),
        (Status.CLOSED, Action.EVALUATE, "community", LEVELS),
        (Status.IN_PROGRESS, Action.RETURN, "township", ["township"]),
        (Status.DISPATCHED, Action.REQUEST_EXTENSION, "grid", ["grid"]),
        (Status.EXTENSION_REQUESTED, Action.APPROVE_EXTENSION, "grid", LEVELS[1:]),
        (Status.EXTENSION_REQUESTED, Action.REJECT_EXTENSION, "township", ["county"]),
        (Status.DISPATCHED, Action.BACKLOG, "community", ["township", "county"]),
        (Status.BACKLOG, Action.REACTIVATE, "community", ["township", "county"]),
        (Status.IN_PROGRESS, Action.ESCALATE, "grid", LEVELS),
        (Status.FILED, Action.ESCALATE, "township", ["township", "county"]),
        (Status.FILED, Action.ESCALATE, "county", []),
        (Status.REPORTED, Action.CANCEL, "township", ["township", "county"]),
    ],
)
def test_who_may_act(
    status: Status, action: Action, handler: str, allowed_levels: list[str]
) -> None:
    state = state_at(status, handler)
    got = [lvl for lvl in LEVELS if action in allowed_actions(state, ACTORS[lvl])]
    assert got == allowed_levels


@pytest.mark.parametrize("status", list(Status))
def test_terminal_statuses_allow_nothing_but_evaluate_after_close(status: Status) -> None:
    union = set().union(*(allowed_actions(state_at(status), a) for a in ACTORS.values()))
    if status is Status.CLOSED:
        assert union == {Action.EVALUATE}
    elif status in TERMINAL_STATUSES:
        assert union == set()
    else:
        assert union


def test_report_is_not_an_apply_step() -> None:
    with pytest.raises(IllegalTransition, match="'report' is not a step from this status"):
        go(state_at(Status.REPORTED), Action.REPORT, COUNTY)


# -- errors and their messages ---------------------------------------------------------------


def test_illegal_transition_names_status_action_and_actor_level() -> None:
    state = state_at(Status.DISPATCHED, "community")
    with pytest.raises(IllegalTransition) as err:
        go(state, Action.CLOSE, COUNTY)
    msg = str(err.value)
    assert "cannot close" in msg and "'dispatched'" in msg and "level 'county'" in msg
    assert "only from ['checked']" in msg
    with pytest.raises(
        IllegalTransition, match=r"as grid_staff 'grid-1' at level 'grid': requires"
    ):
        go(state, Action.BACKLOG, GRID)
    with pytest.raises(IllegalTransition, match="only the handling level 'community' may do this"):
        go(state, Action.HANDLE, TOWNSHIP)
    with pytest.raises(IllegalTransition, match="a level above 'community' or the top level"):
        go(state_at(Status.HANDLED), Action.CHECK_PASS, COMMUNITY)
    with pytest.raises(IllegalTransition, match="'community' or a level above it"):
        go(state_at(Status.REPORTED), Action.VERIFY, GRID)


@pytest.mark.parametrize("rule", [r for r in RULES if r.reason_required], ids=str)
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_mandatory_reasons(rule: wf.Rule, reason: str | None) -> None:
    state = state_at(rule.from_status, "community")
    actor = next(a for a in ACTORS.values() if rule.action in allowed_actions(state, a))
    with pytest.raises(MissingReason, match=f"{rule.action.value} from status .* needs a reason"):
        go(state, rule.action, actor, reason=reason)


def test_satisfaction_rules() -> None:
    closed = state_at(Status.CLOSED)
    for bad in (None, 0, 6, True, 3.0, "5"):
        with pytest.raises(InvalidSatisfaction, match="evaluate needs satisfaction 1-5"):
            go(closed, Action.EVALUATE, GRID, satisfaction=bad)
    with pytest.raises(InvalidSatisfaction, match="only given with evaluate, not verify"):
        go(state_at(Status.REPORTED), Action.VERIFY, COMMUNITY, satisfaction=3)
    assert [go(closed, Action.EVALUATE, GRID, satisfaction=s)[0].satisfaction for s in (1, 5)] == [
        1,
        5,
    ]


def test_time_must_be_aware_and_not_go_backwards() -> None:
    state = state_at(Status.REPORTED)
    with pytest.raises(InvalidTime, match="timezone-aware"):
        apply(state, Action.VERIFY, COMMUNITY, at=datetime(2026, 3, 2, 9, 0))
    with pytest.raises(InvalidTime, match="before the last transition"):
        apply(state, Action.VERIFY, COMMUNITY, at=T0 - timedelta(seconds=1))
    with pytest.raises(InvalidTime, match="timezone-aware"):
        report_event(GRID, at=datetime(2026, 3, 2, 9, 0))


def test_levels_and_targets() -> None:
    with pytest.raises(UnknownLevel, match="actor level 'province'"):
        go(state_at(Status.REPORTED), Action.VERIFY, Actor("province", "x", "y"))
    with pytest.raises(IllegalTransition, match="to_level is only given with dispatch"):
        go(state_at(Status.REPORTED), Action.VERIFY, COMMUNITY, to_level="grid")
    with pytest.raises(IllegalTransition, match="may not send a case above the dispatcher's level"):
        go(state_at(Status.FILED, "community"), Action.DISPATCH, COMMUNITY, to_level="county")
    with pytest.raises(UnknownLevel, match="target level 'moon'"):
        go(state_at(Status.FILED, "community"), Action.DISPATCH, COMMUNITY, to_level="moon")


def test_replay_detects_tampered_history() -> None:
    initial, _, history = run(MAIN)
    forged = [*history]
    forged[4] = replace(history[4], to_status=Status.HANDLED)
    with pytest.raises(
        HistoryMismatch, match="row 3 .*to_status: replayed .*'in_progress'.* vs stored"
    ):
        replay(initial, forged)
    skipped = history[:3] + history[4:]
    with pytest.raises(HistoryMismatch, match="version 5 after 3"):
        replay(initial, skipped)
    wrong_actor = [*history]
    wrong_actor[6] = replace(history[6], actor=GRID)
    with pytest.raises(HistoryMismatch, match="does not replay: cannot check_pass"):
        replay(initial, wrong_actor)
    with pytest.raises(HistoryMismatch, match="report row"):
        replay(replace(initial, handling_level="county"), history)


# -- the table is data, and the docstring shows the same table -------------------------------


def test_rule_table_has_one_row_per_action_and_status_and_rows_render() -> None:
    keys = [(r.action, r.from_status) for r in RULES]
    assert len(keys) == len(set(keys))
    rows = rule_rows()
    assert len(rows) == len(RULES) and set(rows[0]) == {"action", "from", "to", "who", "reason"}
    assert {
        "action": "approve_extension",
        "from": "extension_requested",
        "to": "(prior status)",
        "who": "above_or_top",
        "reason": "",
    } in rows


def _docstring_table() -> set[tuple[str, str, str, str, bool]]:
    lines = (wf.__doc__ or "").splitlines()
    rules = [i for i, ln in enumerate(lines) if ln.startswith("====")]
    assert len(rules) == 3, "the docstring holds one reST simple table"
    merged: list[list[str]] = []
    for ln in lines[rules[1] + 1 : rules[2]]:
        cells = re.split(r"\s{2,}", ln.rstrip())
        if ln.startswith(" ") and merged:  # continuation of the "from" cell
            merged[-1][1] += " " + cells[-1].strip()
        else:
            merged.append(cells)
    out = set()
    for cells in merged:
        action, froms, to, who = cells[:4]
        reason = len(cells) > 4 and cells[4] == "yes"
        for f in re.split(r",\s*", froms.strip()):
            out.add((action, f, f if to == "(same)" else to, who, reason))
    return out


def test_docstring_table_matches_rules() -> None:
    def target(r: wf.Rule) -> str:
        if r.to_status is None:
            return "(prior status)"
        return r.to_status.value

    table = {
        (r.action.value, r.from_status.value, target(r), r.who.value, r.reason_required)
        for r in RULES
    }
    assert _docstring_table() == table


# -- random walks ----------------------------------------------------------------------------

ALL_ACTIONS = list(Action)


def _expected_error(state: EventState, action: Action, actor: Actor, kw: dict) -> type | None:
    """The error an allowed action still raises for bad arguments, by the documented order."""
    rule = next(r for r in RULES if (r.action, r.from_status) == (action, state.status))
    reason = kw.get("reason")
    if rule.reason_required and not (reason and reason.strip()):
        return MissingReason
    sat = kw.get("satisfaction")
    if action is Action.EVALUATE and sat not in (1, 2, 3, 4, 5):
        return InvalidSatisfaction
    if action is not Action.EVALUATE and sat is not None:
        return InvalidSatisfaction
    to_level = kw.get("to_level")
    if to_level is not None and action is not Action.DISPATCH:
        return IllegalTransition
    if to_level is not None and LEVELS.index(to_level) > LEVELS.index(actor.level):
        return IllegalTransition
    return None


@settings(max_examples=150, deadline=None)
@given(
    emergency=st.booleans(),
    reporter=st.sampled_from(LEVELS),
    data=st.data(),
)
def test_random_walks_stay_legal_and_replay(
    emergency: bool, reporter: str, data: st.DataObject
) -> None:
    state, first = report_event(ACTORS[reporter], at=T0, emergency=emergency)
    assert state.handling_level == ("county" if emergency else reporter)
    initial, history = state, [first]
    for _ in range(data.draw(st.integers(1, 40))):
        actor = ACTORS[data.draw(st.sampled_from(LEVELS))]
        allowed = allowed_actions(state, actor)
        guided = allowed and data.draw(st.integers(0, 9)) < 8
        action = data.draw(st.sampled_from(sorted(allowed) if guided else ALL_ACTIONS))
        kw = {
            "reason": data.draw(st.sampled_from([None, "", "reason"])),
            "satisfaction": data.draw(st.sampled_from([None, None, 0, 3, 6])),
            "to_level": data.draw(st.sampled_from([None, None, None, *LEVELS])),
        }
        at = state.updated_at + timedelta(minutes=data.draw(st.integers(0, 600)))
        expected = (
            IllegalTransition
            if action not in allowed
            else _expected_error(state, action, actor, kw)
        )
        if expected is not None:
            with pytest.raises(expected):
                apply(state, action, actor, at=at, **kw)
            continue
        new, row = apply(state, action, actor, at=at, **kw)
        _check_step(state, new, row)
        state = new
        history.append(row)
    assert [t.version for t in history] == list(range(1, len(history) + 1))
    assert replay(initial, history) == state


def _check_step(old: EventState, new: EventState, row: Transition) -> None:
    rule = next(r for r in RULES if (r.action, r.from_status) == (row.action, old.status))
    assert row.to_status == (rule.to_status or old.resume_status) == new.status
    assert new.status in Status and new.handling_level in LEVELS
    assert new.version == old.version + 1 == row.version
    assert old.status not in TERMINAL_STATUSES or (old.status, row.action) == (
        Status.CLOSED,
        Action.EVALUATE,
    )
    assert (new.paused_since is not None) == (new.status in PAUSING_STATUSES)
    assert (row.from_level, row.to_level) == (old.handling_level, new.handling_level)
    if row.action is Action.ESCALATE:
        top = LEVELS[-1]
        step_up = LEVELS[LEVELS.index(old.handling_level) + 1]
        assert new.handling_level == (top if old.emergency else step_up)
    elif row.action not in (Action.DISPATCH, Action.RETURN):
        assert new.handling_level == old.handling_level


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_allowed_actions_is_exactly_what_apply_accepts(data: st.DataObject) -> None:
    status = data.draw(st.sampled_from(list(Status)))
    state = state_at(status, data.draw(st.sampled_from(LEVELS)), emergency=data.draw(st.booleans()))
    actor = ACTORS[data.draw(st.sampled_from(LEVELS))]
    allowed = allowed_actions(state, actor)
    for action in ALL_ACTIONS:
        if action in allowed:
            go(state, action, actor)  # well-formed arguments: must succeed
        else:
            with pytest.raises(IllegalTransition):
                go(state, action, actor)


# -- closure KPIs ----------------------------------------------------------------------------


def day(d: int, month: int = 3) -> datetime:
    return datetime(2026, month, d, 10, 0, tzinfo=CST)


def history_of(
    filed: datetime, closed: datetime | None, *, cancel: bool = False
) -> list[Transition]:
    state, first = report_event(GRID, at=filed - timedelta(hours=1))
    rows = [first]
    if cancel:
        return [first, go(state, Action.CANCEL, GRID)[1]]
    plan = [(Action.VERIFY, GRID), (Action.FILE, GRID)]
    times = [filed - timedelta(minutes=30), filed]
    if closed is not None:
        plan += [
            (Action.DISPATCH, GRID),
            (Action.HANDLE, GRID),
            (Action.REPORT_BACK, GRID),
            (Action.CHECK_PASS, COMMUNITY),
            (Action.CLOSE, COMMUNITY),
        ]
        times += [filed + timedelta(minutes=i) for i in (1, 2, 3, 4)] + [closed]
    else:
        plan += [(Action.DISPATCH, GRID)]
        times += [filed + timedelta(minutes=1)]
    for (action, actor), t in zip(plan, times, strict=True):
        state, row = apply(state, action, actor, at=t)
        rows.append(row)
    return rows


def test_closure_stats_hand_worked_month() -> None:
    events = {  # name: (filed, due, closed)
        "closed early, on time": (day(2), day(5), day(4)),
        "closed late": (day(2), day(10), day(12)),
        "due next month, closed now": (day(20), day(3, 4), day(25)),
        "due next month, open": (day(25), day(3, 4), None),
        "carried over, closed late": (day(20, 2), day(25, 2), day(3)),
        "closed last month": (day(20, 2), day(3), day(27, 2)),
        "due this month, open": (day(10), day(20), None),
    }
    histories = [history_of(f, c) for f, _, c in events.values()]
    histories.append(history_of(day(1), None, cancel=True))
    dues = {id(h): d for h, (_, d, _) in zip(histories, events.values(), strict=False)}
    stats = closure_stats(histories, (day(1), day(1, 4)), due_of=lambda h: dues.get(id(h)))
    assert (stats.filed, stats.should_close, stats.closed, stats.closed_on_time) == (5, 5, 4, 2)
    assert (stats.closure_rate, stats.on_time_rate) == (0.8, 0.4)
    partial = closure_stats(
        histories, (day(1), day(1, 4)), due_of=lambda h: dues.get(id(h)), as_of=day(15)
    )
    assert (partial.filed, partial.should_close, partial.closed, partial.closed_on_time) == (
        3,
        3,
        3,
        1,
    )
    empty = closure_stats([], (day(1), day(1, 4)), due_of=lambda h: None)
    assert (empty.should_close, empty.closure_rate, empty.on_time_rate) == (0, None, None)


def test_returns_escalations_and_bounces() -> None:
    steps = [
        (Action.ESCALATE, GRID, {"minutes": 60 * 24}),  # day 3: grid -> community (up)
        (Action.VERIFY, COMMUNITY, {}),
        (Action.FILE, COMMUNITY, {}),
        (Action.DISPATCH, COMMUNITY, {"to_level": "grid"}),  # down
        (Action.RETURN, GRID, {}),  # up: first down-then-up
        (Action.DISPATCH, COMMUNITY, {"to_level": "grid", "minutes": 60 * 24 * 10}),  # down
        (Action.ESCALATE, GRID, {}),  # up: second, on day ~13
    ]
    _, _, history = run(steps)
    second_up = history[-1].at
    kw = {"due_of": lambda h: None}
    whole = closure_stats([history], (day(1), day(1, 4)), **kw)
    assert (whole.returns, whole.escalations, whole.bounced) == (1, 2, 1)
    before = closure_stats([history], (day(1), second_up), **kw)
    assert (before.returns, before.escalations, before.bounced) == (1, 1, 0)


def _random_history(rng: random.Random, start: datetime, steps: int = 25) -> list[Transition]:
    state, first = report_event(ACTORS[rng.choice(LEVELS)], at=start, emergency=rng.random() < 0.1)
    history = [first]
    for _ in range(rng.randint(0, steps)):
        actor = ACTORS[rng.choice(LEVELS)]
        options = sorted(allowed_actions(state, actor))
        if not options:
            continue
        action = rng.choice(options)
        to_level = rng.choice(LEVELS[: LEVELS.index(actor.level) + 1])
        kw = {"to_level": to_level} if action is Action.DISPATCH else {}
        state, row = go(state, action, actor, minutes=rng.randint(0, 60 * 24 * 3), **kw)
        history.append(row)
    return history


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), cut=st.integers(1, 59))
def test_closure_counts_add_up_over_adjacent_periods(seed: int, cut: int) -> None:
    rng = random.Random(seed)
    histories = [
        _random_history(rng, day(1) + timedelta(hours=rng.randint(0, 24 * 40))) for _ in range(30)
    ]

    def due_of(h: list[Transition]) -> datetime | None:
        start, _ = clock(h)
        return None if start is None else start + timedelta(days=2)

    lo, mid, hi = day(1), day(1) + timedelta(days=cut), day(1, 9)
    whole, a, b = (
        closure_stats(histories, p, due_of=due_of) for p in [(lo, hi), (lo, mid), (mid, hi)]
    )
    for name in ("filed", "closed", "closed_on_time", "returns", "escalations", "bounced"):
        assert getattr(whole, name) == getattr(a, name) + getattr(b, name), name
    for s in (whole, a, b):
        assert 0 <= s.closed_on_time <= s.closed <= s.should_close
    assert whole.filed == sum(any(t.action is Action.FILE for t in h) for h in histories)
    assert whole.closed == sum(any(t.action is Action.CLOSE for t in h) for h in histories)


def test_random_histories_exercise_every_rule() -> None:
    rng = random.Random(20260302)
    used = {(t.action, t.from_status) for _ in range(400) for t in _random_history(rng, T0, 80)[1:]}
    assert used == {(r.action, r.from_status) for r in RULES}


def test_rows_read_back_as_strings_become_enums() -> None:
    initial, state, history = run(MAIN[:4])
    as_db = [
        replace(
            t,
            action=t.action.value,
            from_status=t.from_status and t.from_status.value,
            to_status=t.to_status.value,
        )
        for t in history
    ]
    assert as_db == history and all(type(t.action) is Action for t in as_db)
    from_db = replace(initial, status="reported")  # type: ignore[arg-type]
    assert replay(from_db, as_db) == state and type(from_db.status) is Status
    with pytest.raises(ValueError, match="'lost' is not a valid Status"):
        replace(state, status="lost")  # type: ignore[arg-type]


def test_wiring_with_the_working_calendar() -> None:
    """How the database layer is meant to join the two modules: clock() feeds due_at()."""
    cal = WorkCalendar(holidays=(), makeup_workdays=())
    friday_five = datetime(2026, 3, 6, 17, 0, tzinfo=CST)
    state, first = report_event(GRID, at=friday_five - timedelta(minutes=30))
    history = [first]
    for action, actor, at, kw in [
        (Action.VERIFY, GRID, friday_five - timedelta(minutes=20), {}),
        (Action.FILE, GRID, friday_five - timedelta(minutes=10), {}),
        (Action.DISPATCH, GRID, friday_five, {}),
        (Action.REQUEST_EXTENSION, GRID, datetime(2026, 3, 9, 9, 0, tzinfo=CST), {"reason": "r"}),
        (Action.APPROVE_EXTENSION, COMMUNITY, datetime(2026, 3, 9, 10, 0, tzinfo=CST), {}),
    ]:
        state, row = apply(state, action, actor, at=at, **kw)
        history.append(row)
    start, pauses = clock(history)
    # exposed rubbish (0201): 4 working hours. Friday 17:00-17:30 and Monday 8:30-9:00 use one,
    # the pause 9:00-10:00 does not count, 10:00-12:00 and 14:00-15:00 use the other three.
    assert start == friday_five
    assert cal.due_at(start, 4, "work_hours", pauses=pauses) == datetime(
        2026, 3, 9, 15, 0, tzinfo=CST
    )
