"""The closed event loop (CJ/T 315 数字城管) as a pure state machine, and closure KPIs (CJ/T 292).

Main line::

    report 上报 -> reported -> verify 核实 -> verified -> file 立案 -> filed
    -> dispatch 派遣 -> dispatched (deadline clock starts) -> handle 处置 -> in_progress
    -> report_back 反馈 -> handled -> check_pass 核查通过 -> checked -> close 结案 -> closed
    -> evaluate 评价 (satisfaction 1-5) -> evaluated

Side branches: cancel 注销 (reported/verified -> cancelled), check_fail 核查不通过 (handled ->
dispatched), return 退回 (the unit says the case is outside its remit: back to ``filed`` at the
dispatcher's level), extension 延时 (request -> ``extension_requested``, approve or reject ->
back to the prior status), backlog 挂账 (dispatched/in_progress -> ``backlog``, reactivate ->
dispatched) and escalate 上报上级 (one level up the ladder; an emergency jumps to the top).

Who may act is relative to the event's ``handling_level`` on an ordered ``ladder`` (default
grid < community < township < county; a four-level place passes its own):

* ``handler``: the actor's level is the handling level;
* ``handler_or_above``: the handling level or any level above it;
* ``above_or_top``: a level strictly above the handler, or the top level (the county command
  centre); the top checks, closes and approves its own cases because nobody is above it;
* ``any``: any level on the ladder.

The rules are the table :data:`RULES` (one row per action and source status, shown by
:func:`rule_rows`); nothing else decides legality, except two checks the table cannot hold:
escalation needs a level above the handling one, and a dispatch may not send a case above the
dispatcher's own level.

===================  =======================  ===================  ================  ======
action               from                     to                   who               reason
===================  =======================  ===================  ================  ======
verify               reported                 verified             handler_or_above
cancel               reported, verified       cancelled            handler_or_above  yes
file                 verified                 filed                handler_or_above
dispatch             filed                    dispatched           handler_or_above
handle               dispatched               in_progress          handler
report_back          in_progress              handled              handler
check_pass           handled                  checked              above_or_top
check_fail           handled                  dispatched           above_or_top      yes
close                checked                  closed               above_or_top
evaluate             closed                   evaluated            any
return               dispatched, in_progress  filed                handler           yes
request_extension    dispatched, in_progress  extension_requested  handler           yes
approve_extension    extension_requested      (prior status)       above_or_top
reject_extension     extension_requested      (prior status)       above_or_top
backlog              dispatched, in_progress  backlog              above_or_top      yes
reactivate           backlog                  dispatched           above_or_top
escalate             reported, verified       (same)               handler_or_above  yes
escalate             filed, dispatched,       filed                handler_or_above  yes
                     in_progress, backlog
reinforce            dispatched, in_progress  (same)               handler_or_above
===================  =======================  ===================  ================  ======

``reinforce`` 增援 records that a further responder was sent to a case that already has one
(the database layer takes it only together with that responder, see
``etl.incidents.assign_responder``); it changes nothing but the version and the history.

Level changes: ``dispatch`` may hand the case to any level at or below the dispatcher's
(``to_level``, default: stays where it is) and remembers the dispatcher's level; ``return``
gives the case back to that dispatcher's level; ``escalate`` moves one level up (emergencies:
straight to the top). Emergencies start at the top level when reported.

The deadline clock starts at the first dispatch and is never reset by returns or escalations
(the resident's wait counts); it is paused while the status is ``extension_requested`` or
``backlog`` (see :func:`clock`). ``closed`` is final except for ``evaluate``; ``cancelled`` and
``evaluated`` are final. Every transition increments ``version`` by one, which the database
layer uses for optimistic concurrency.

>>> from datetime import datetime, timedelta, timezone
>>> at = datetime(2026, 3, 9, 9, 0, tzinfo=timezone(timedelta(hours=8)))
>>> worker = Actor("grid", "grid_worker", "Li")
>>> state, first = report_event(worker, at=at)
>>> state, t = apply(state, Action.VERIFY, worker, at=at)
>>> state.status, state.version, sorted(allowed_actions(state, worker))
(<Status.VERIFIED: 'verified'>, 2, [<Action.CANCEL: 'cancel'>, <Action.ESCALATE: 'escalate'>, \
<Action.FILE: 'file'>])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from enum import StrEnum

__all__ = [
    "DEFAULT_LADDER",
    "PAUSING_STATUSES",
    "RULES",
    "TERMINAL_STATUSES",
    "Action",
    "Actor",
    "ClosureStats",
    "EventState",
    "HistoryMismatch",
    "IllegalTransition",
    "InvalidSatisfaction",
    "InvalidTime",
    "MissingReason",
    "Rule",
    "Status",
    "Transition",
    "UnknownLevel",
    "Who",
    "WorkflowError",
    "allowed_actions",
    "apply",
    "clock",
    "closure_stats",
    "replay",
    "report_event",
    "rule_rows",
]

DEFAULT_LADDER: tuple[str, ...] = ("grid", "community", "township", "county")


class Status(StrEnum):
    REPORTED = "reported"  # 上报
    VERIFIED = "verified"  # 核实
    CANCELLED = "cancelled"  # 注销
    FILED = "filed"  # 立案
    DISPATCHED = "dispatched"  # 派遣
    IN_PROGRESS = "in_progress"  # 处置中
    HANDLED = "handled"  # 已反馈
    CHECKED = "checked"  # 核查通过
    CLOSED = "closed"  # 结案
    EVALUATED = "evaluated"  # 已评价
    EXTENSION_REQUESTED = "extension_requested"  # 延时申请中
    BACKLOG = "backlog"  # 挂账


class Action(StrEnum):
    REPORT = "report"  # 上报 (only through report_event)
    VERIFY = "verify"  # 核实
    CANCEL = "cancel"  # 注销
    FILE = "file"  # 立案
    DISPATCH = "dispatch"  # 派遣
    HANDLE = "handle"  # 处置
    REPORT_BACK = "report_back"  # 反馈
    CHECK_PASS = "check_pass"  # 核查通过
    CHECK_FAIL = "check_fail"  # 核查不通过
    CLOSE = "close"  # 结案
    EVALUATE = "evaluate"  # 评价
    RETURN = "return"  # 退回
    REQUEST_EXTENSION = "request_extension"  # 申请延时
    APPROVE_EXTENSION = "approve_extension"  # 批准延时
    REJECT_EXTENSION = "reject_extension"  # 驳回延时
    BACKLOG = "backlog"  # 挂账
    REACTIVATE = "reactivate"  # 恢复办理
    ESCALATE = "escalate"  # 上报上级
    REINFORCE = "reinforce"  # 增援 (a further responder)


class Who(StrEnum):
    HANDLER = "handler"
    HANDLER_OR_ABOVE = "handler_or_above"
    ABOVE_OR_TOP = "above_or_top"
    ANY = "any"


TERMINAL_STATUSES = frozenset({Status.CANCELLED, Status.CLOSED, Status.EVALUATED})
#: While an event sits in one of these the deadline clock does not run.
PAUSING_STATUSES = frozenset({Status.EXTENSION_REQUESTED, Status.BACKLOG})


class WorkflowError(ValueError):
    """Base class for event-workflow problems."""


class IllegalTransition(WorkflowError):
    """The action is not allowed for this actor in the event's current state."""


class MissingReason(WorkflowError):
    """The action needs a written reason (cancel, return, backlog, extension, escalate...)."""


class InvalidSatisfaction(WorkflowError):
    """Satisfaction must be an integer 1-5 on evaluate, and absent otherwise."""


class InvalidTime(WorkflowError):
    """``at`` is naive or earlier than the event's last transition."""


class UnknownLevel(WorkflowError):
    """A level that is not on the ladder."""


class HistoryMismatch(WorkflowError):
    """A stored history does not replay to the transitions it records."""


@dataclass(frozen=True)
class Actor:
    level: str
    role: str
    name: str


@dataclass(frozen=True)
class Rule:
    """One row of the transition table; ``to_status`` None means back to the prior status."""

    action: Action
    from_status: Status
    to_status: Status | None
    who: Who
    reason_required: bool = False


@dataclass(frozen=True)
class EventState:
    status: Status
    handling_level: str
    emergency: bool
    version: int
    updated_at: datetime
    paused_since: datetime | None = None  # clock stopped since (extension request, backlog)
    resume_status: Status | None = None  # where approve/reject extension returns to
    dispatched_by: str | None = None  # level of the last dispatcher; a return goes back there
    dispatched_at: datetime | None = None  # first dispatch: the deadline clock's start
    satisfaction: int | None = None

    def __post_init__(self) -> None:
        # rows read back from the database carry plain strings; keep the enums exact
        object.__setattr__(self, "status", Status(self.status))
        if self.resume_status is not None:
            object.__setattr__(self, "resume_status", Status(self.resume_status))


@dataclass(frozen=True)
class Transition:
    """One history row: what happened, who did it, when, and the states either side."""

    version: int
    action: Action
    actor: Actor
    at: datetime
    from_status: Status | None
    to_status: Status
    from_level: str | None
    to_level: str
    note: str | None = None
    satisfaction: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", Action(self.action))
        object.__setattr__(self, "to_status", Status(self.to_status))
        if self.from_status is not None:
            object.__setattr__(self, "from_status", Status(self.from_status))


def _rule(
    action: Action, froms: Iterable[Status], to: Status | None, who: Who, reason: bool = False
) -> list[Rule]:
    return [Rule(action, s, to, who, reason) for s in froms]


_S, _A, _W = Status, Action, Who
_WORKING = (_S.DISPATCHED, _S.IN_PROGRESS)
RULES: tuple[Rule, ...] = tuple(
    [
        *_rule(_A.VERIFY, [_S.REPORTED], _S.VERIFIED, _W.HANDLER_OR_ABOVE),
        *_rule(_A.CANCEL, [_S.REPORTED, _S.VERIFIED], _S.CANCELLED, _W.HANDLER_OR_ABOVE, True),
        *_rule(_A.FILE, [_S.VERIFIED], _S.FILED, _W.HANDLER_OR_ABOVE),
        *_rule(_A.DISPATCH, [_S.FILED], _S.DISPATCHED, _W.HANDLER_OR_ABOVE),
        *_rule(_A.HANDLE, [_S.DISPATCHED], _S.IN_PROGRESS, _W.HANDLER),
        *_rule(_A.REPORT_BACK, [_S.IN_PROGRESS], _S.HANDLED, _W.HANDLER),
        *_rule(_A.CHECK_PASS, [_S.HANDLED], _S.CHECKED, _W.ABOVE_OR_TOP),
        *_rule(_A.CHECK_FAIL, [_S.HANDLED], _S.DISPATCHED, _W.ABOVE_OR_TOP, True),
        *_rule(_A.CLOSE, [_S.CHECKED], _S.CLOSED, _W.ABOVE_OR_TOP),
        *_rule(_A.EVALUATE, [_S.CLOSED], _S.EVALUATED, _W.ANY),
        *_rule(_A.RETURN, _WORKING, _S.FILED, _W.HANDLER, True),
        *_rule(_A.REQUEST_EXTENSION, _WORKING, _S.EXTENSION_REQUESTED, _W.HANDLER, True),
        *_rule(_A.APPROVE_EXTENSION, [_S.EXTENSION_REQUESTED], None, _W.ABOVE_OR_TOP),
        *_rule(_A.REJECT_EXTENSION, [_S.EXTENSION_REQUESTED], None, _W.ABOVE_OR_TOP),
        *_rule(_A.BACKLOG, _WORKING, _S.BACKLOG, _W.ABOVE_OR_TOP, True),
        *_rule(_A.REACTIVATE, [_S.BACKLOG], _S.DISPATCHED, _W.ABOVE_OR_TOP),
        *_rule(_A.ESCALATE, [_S.REPORTED], _S.REPORTED, _W.HANDLER_OR_ABOVE, True),
        *_rule(_A.ESCALATE, [_S.VERIFIED], _S.VERIFIED, _W.HANDLER_OR_ABOVE, True),
        *_rule(_A.ESCALATE, [*_WORKING, _S.FILED, _S.BACKLOG], _S.FILED, _W.HANDLER_OR_ABOVE, True),
        *_rule(_A.REINFORCE, [_S.DISPATCHED], _S.DISPATCHED, _W.HANDLER_OR_ABOVE),
        *_rule(_A.REINFORCE, [_S.IN_PROGRESS], _S.IN_PROGRESS, _W.HANDLER_OR_ABOVE),
    ]
)
_TABLE: dict[tuple[Action, Status], Rule] = {(r.action, r.from_status): r for r in RULES}


def rule_rows() -> list[dict[str, str]]:
    """The transition table as plain rows, for display and audit."""
    return [
        {
            "action": r.action.value,
            "from": r.from_status.value,
            "to": r.to_status.value if r.to_status else "(prior status)",
            "who": r.who.value,
            "reason": "required" if r.reason_required else "",
        }
        for r in RULES
    ]


# -- ladder -------------------------------------------------------------------------------


def _rank(ladder: Sequence[str], level: str, what: str) -> int:
    try:
        return list(ladder).index(level)
    except ValueError:
        raise UnknownLevel(f"{what} level {level!r} is not on the ladder {list(ladder)}") from None


def _check_ladder(ladder: Sequence[str]) -> tuple[str, ...]:
    out = tuple(ladder)
    if not out or len(set(out)) != len(out) or not all(isinstance(x, str) and x for x in out):
        raise UnknownLevel(f"ladder must be distinct non-empty level names, got {out!r}")
    return out


def _who_allows(who: Who, actor_rank: int, handler_rank: int, top: int) -> bool:
    return {
        Who.HANDLER: actor_rank == handler_rank,
        Who.HANDLER_OR_ABOVE: actor_rank >= handler_rank,
        Who.ABOVE_OR_TOP: actor_rank > handler_rank or actor_rank == top,
        Who.ANY: True,
    }[who]


def _who_text(who: Who, handler: str, top: str) -> str:
    return {
        Who.HANDLER: f"only the handling level {handler!r} may do this",
        Who.HANDLER_OR_ABOVE: f"requires the handling level {handler!r} or a level above it",
        Who.ABOVE_OR_TOP: f"requires a level above {handler!r} or the top level {top!r}",
        Who.ANY: "anyone may do this",
    }[who]


def _refusal(
    state: EventState, action: Action, actor: Actor, ladder: tuple[str, ...]
) -> str | None:
    """Why ``actor`` may not take ``action`` now, or None if it may."""
    rule = _TABLE.get((action, state.status))
    if rule is None:
        froms = sorted(r.from_status.value for r in RULES if r.action == action)
        return f"{action.value!r} is not a step from this status (only from {froms})"
    a, h = _rank(ladder, actor.level, "actor"), _rank(ladder, state.handling_level, "handling")
    if not _who_allows(rule.who, a, h, len(ladder) - 1):
        return _who_text(rule.who, state.handling_level, ladder[-1])
    if action is Action.ESCALATE and h == len(ladder) - 1:
        return f"the event is already at the top level {ladder[-1]!r}"
    return None


# -- the machine ---------------------------------------------------------------------------


def report_event(
    actor: Actor,
    *,
    at: datetime,
    emergency: bool = False,
    level: str | None = None,
    note: str | None = None,
    ladder: Sequence[str] = DEFAULT_LADDER,
) -> tuple[EventState, Transition]:
    """A new event (上报) handled at ``level`` (default the reporter's); emergencies at the top."""
    ladder = _check_ladder(ladder)
    _check_at(at, None)
    level = ladder[-1] if emergency else (level or actor.level)
    _rank(ladder, actor.level, "actor")
    _rank(ladder, level, "handling")
    state = EventState(Status.REPORTED, level, bool(emergency), 1, at)
    return state, Transition(1, Action.REPORT, actor, at, None, Status.REPORTED, None, level, note)


def allowed_actions(
    state: EventState, actor: Actor, *, ladder: Sequence[str] = DEFAULT_LADDER
) -> set[Action]:
    """Actions ``actor`` may take on an event in ``state`` (see the module's table)."""
    ladder = _check_ladder(ladder)
    candidates = {r.action for r in RULES if r.from_status == state.status}
    return {a for a in candidates if _refusal(state, a, actor, ladder) is None}


def apply(
    state: EventState,
    action: Action,
    actor: Actor,
    *,
    at: datetime,
    reason: str | None = None,
    satisfaction: int | None = None,
    to_level: str | None = None,
    ladder: Sequence[str] = DEFAULT_LADDER,
) -> tuple[EventState, Transition]:
    """Take ``action``: the new state and the history row, or an error saying why not.

    ``reason`` is stored as the row's note (mandatory where the table says so);
    ``satisfaction`` (1-5) only with evaluate; ``to_level`` only with dispatch.
    """
    ladder = _check_ladder(ladder)
    action = Action(action)
    _check_at(at, state.updated_at)
    refusal = _refusal(state, action, actor, ladder)
    if refusal is not None:
        raise IllegalTransition(
            f"cannot {action.value} an event in status {state.status.value!r} handled at "
            f"{state.handling_level!r} as {actor.role} {actor.name!r} at level "
            f"{actor.level!r}: {refusal}"
        )
    rule = _TABLE[(action, state.status)]
    _check_reason(rule, reason, state, actor)
    _check_satisfaction(action, satisfaction)
    new_level = _next_level(state, action, actor, to_level, ladder)
    return _step(state, rule, actor, at, new_level, reason, satisfaction)


def replay(
    initial: EventState,
    transitions: Sequence[Transition],
    *,
    ladder: Sequence[str] = DEFAULT_LADDER,
) -> EventState:
    """Rebuild the state by re-applying a history to the state :func:`report_event` returned.

    A leading report row matching ``initial`` is skipped. Raises :class:`HistoryMismatch` if a
    row is not exactly what re-applying its action produces (tampered or out-of-order history).
    """
    rows = list(transitions)
    if rows and rows[0].action is Action.REPORT:
        _check_report_row(initial, rows.pop(0))
    state = initial
    for i, row in enumerate(rows):
        if row.version != state.version + 1:
            raise HistoryMismatch(f"row {i}: version {row.version} after {state.version}")
        to_level = row.to_level if row.action is Action.DISPATCH else None
        try:
            state, produced = apply(
                state,
                row.action,
                row.actor,
                at=row.at,
                reason=row.note,
                satisfaction=row.satisfaction,
                to_level=to_level,
                ladder=ladder,
            )
        except WorkflowError as exc:
            raise HistoryMismatch(
                f"row {i} (version {row.version}) does not replay: {exc}"
            ) from exc
        if produced != row:
            raise HistoryMismatch(
                f"row {i} (version {row.version}) differs: {_diff(produced, row)}"
            )
    return state


def _check_at(at: datetime, after: datetime | None) -> None:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidTime(f"at={at!r} must be a timezone-aware datetime")
    if after is not None and at < after:
        raise InvalidTime(
            f"at={at.isoformat()} is before the last transition ({after.isoformat()})"
        )


def _check_reason(rule: Rule, reason: str | None, state: EventState, actor: Actor) -> None:
    if rule.reason_required and not (isinstance(reason, str) and reason.strip()):
        raise MissingReason(
            f"{rule.action.value} from status {state.status.value!r} needs a reason "
            f"(actor {actor.role} {actor.name!r} at level {actor.level!r})"
        )


def _check_satisfaction(action: Action, satisfaction: int | None) -> None:
    if action is Action.EVALUATE:
        ok = isinstance(satisfaction, int) and not isinstance(satisfaction, bool)
        if not ok or not 1 <= satisfaction <= 5:  # type: ignore[operator]
            raise InvalidSatisfaction(f"evaluate needs satisfaction 1-5, got {satisfaction!r}")
    elif satisfaction is not None:
        raise InvalidSatisfaction(f"satisfaction is only given with evaluate, not {action.value}")


def _next_level(
    state: EventState, action: Action, actor: Actor, to_level: str | None, ladder: tuple[str, ...]
) -> str:
    if to_level is not None and action is not Action.DISPATCH:
        raise IllegalTransition(f"to_level is only given with dispatch, not {action.value}")
    if action is Action.DISPATCH:
        target = to_level or state.handling_level
        if _rank(ladder, target, "target") > _rank(ladder, actor.level, "actor"):
            raise IllegalTransition(
                f"cannot dispatch to {target!r} as {actor.role} {actor.name!r} at level "
                f"{actor.level!r}: a dispatch may not send a case above the dispatcher's level"
            )
        return target
    if action is Action.RETURN:
        return state.dispatched_by or state.handling_level
    if action is Action.ESCALATE:
        up = _rank(ladder, state.handling_level, "handling") + 1
        return ladder[-1] if state.emergency else ladder[up]
    return state.handling_level


def _step(
    state: EventState,
    rule: Rule,
    actor: Actor,
    at: datetime,
    level: str,
    reason: str | None,
    satisfaction: int | None,
) -> tuple[EventState, Transition]:
    # only approve/reject extension lack a fixed target; the request stored where to go back
    to = rule.to_status or state.resume_status
    assert to is not None, "extension_requested always records resume_status"
    pausing = to in PAUSING_STATUSES
    dispatch = rule.action is Action.DISPATCH
    new = replace(
        state,
        status=to,
        handling_level=level,
        version=state.version + 1,
        updated_at=at,
        paused_since=(state.paused_since or at) if pausing else None,
        resume_status=state.status if to is Status.EXTENSION_REQUESTED else None,
        dispatched_by=actor.level if dispatch else state.dispatched_by,
        dispatched_at=(state.dispatched_at or at) if dispatch else state.dispatched_at,
        satisfaction=satisfaction if satisfaction is not None else state.satisfaction,
    )
    row = Transition(
        version=new.version,
        action=rule.action,
        actor=actor,
        at=at,
        from_status=state.status,
        to_status=to,
        from_level=state.handling_level,
        to_level=level,
        note=reason,
        satisfaction=satisfaction,
    )
    return new, row


def _check_report_row(initial: EventState, row: Transition) -> None:
    expected = (initial.version, initial.status, initial.handling_level, initial.updated_at)
    if (row.version, row.to_status, row.to_level, row.at) != expected:
        raise HistoryMismatch(f"report row {row} does not match the initial state {initial}")


def _diff(a: Transition, b: Transition) -> str:
    names = [f.name for f in fields(Transition) if getattr(a, f.name) != getattr(b, f.name)]
    return ", ".join(f"{n}: replayed {getattr(a, n)!r} vs stored {getattr(b, n)!r}" for n in names)


# -- history helpers and KPIs -------------------------------------------------------------


def clock(
    history: Sequence[Transition],
) -> tuple[datetime | None, list[tuple[datetime, datetime | None]]]:
    """Deadline clock of one event: (start = first dispatch or None, pauses with None = open).

    Pauses are the spans spent in :data:`PAUSING_STATUSES`; pass both to
    ``WorkCalendar.due_at``.
    """
    start = next((t.at for t in history if t.action is Action.DISPATCH), None)
    pauses: list[tuple[datetime, datetime | None]] = []
    for t in history:
        was, now = t.from_status in PAUSING_STATUSES, t.to_status in PAUSING_STATUSES
        if now and not was:
            pauses.append((t.at, None))
        elif was and not now and pauses:
            pauses[-1] = (pauses[-1][0], t.at)
    return start, pauses


@dataclass(frozen=True)
class ClosureStats:
    """CJ/T 292-style closure figures of one period; rates are fractions, None when 0/0."""

    filed: int  # 立案数
    should_close: int  # 应结案数
    closed: int  # 结案数
    closed_on_time: int  # 按期结案数
    closure_rate: float | None  # 结案率 = closed / should_close
    on_time_rate: float | None  # 按期结案率 = closed_on_time / should_close
    returns: int  # 退回次数
    escalations: int  # 上报上级次数
    bounced: int  # events that went down and back up the ladder twice or more


def closure_stats(
    histories: Iterable[Sequence[Transition]],
    period: tuple[datetime, datetime],
    *,
    due_of: Callable[[Sequence[Transition]], datetime | None],
    as_of: datetime | None = None,
    ladder: Sequence[str] = DEFAULT_LADDER,
) -> ClosureStats:
    """Closure KPIs over event histories for the half-open ``period`` ``[start, end)``.

    ``due_of(history)`` gives each event's deadline (e.g. ``WorkCalendar.due_at`` fed by
    :func:`clock` and the category's limit), None if its clock has not started. ``as_of``
    cuts a running period short: deadlines after it are not yet due. Group the histories by
    region, department or post before calling to get CJ/T 292's per-unit evaluation.

    * 立案数 filed: events first filed in the period.
    * 应结案数 should_close: filed events that are due in the period and were not closed
      before it, plus events closed in the period before their deadline (due later).
    * 结案数 closed: should-close events closed in the period.
    * 按期结案数 closed_on_time: of those, closed at or before the deadline.
    * 结案率 = closed / should_close; 按期结案率 = closed_on_time / should_close.
    * returns, escalations: return and escalate transitions in the period.
    * bounced: events whose second down-then-up move on the ladder happened in the period
      (e.g. dispatched to the grid, returned, dispatched again, escalated): 推诿 ping-pong.
    """
    ladder = _check_ladder(ladder)
    lo, hi = period[0], min(period[1], as_of) if as_of is not None else period[1]
    _check_at(lo, None)
    _check_at(hi, None)
    tally = {"filed": 0, "should": 0, "closed": 0, "on_time": 0, "ret": 0, "esc": 0, "bounced": 0}
    for history in histories:
        for key, value in _event_tally(history, lo, hi, due_of, ladder).items():
            tally[key] += value
    should = tally["should"]
    return ClosureStats(
        filed=tally["filed"],
        should_close=should,
        closed=tally["closed"],
        closed_on_time=tally["on_time"],
        closure_rate=tally["closed"] / should if should else None,
        on_time_rate=tally["on_time"] / should if should else None,
        returns=tally["ret"],
        escalations=tally["esc"],
        bounced=tally["bounced"],
    )


def _first_at(history: Sequence[Transition], action: Action) -> datetime | None:
    return next((t.at for t in history if t.action is action), None)


def _event_tally(
    history: Sequence[Transition],
    lo: datetime,
    hi: datetime,
    due_of: Callable[[Sequence[Transition]], datetime | None],
    ladder: tuple[str, ...],
) -> dict[str, int]:
    filed_at, closed_at = _first_at(history, Action.FILE), _first_at(history, Action.CLOSE)
    due = due_of(history) if filed_at is not None else None
    closed_in = closed_at is not None and lo <= closed_at < hi
    due_in = due is not None and lo <= due < hi and not (closed_at is not None and closed_at < lo)
    should = filed_at is not None and (due_in or closed_in)
    on_time = closed_in and due is not None and closed_at <= due  # type: ignore[operator]
    second_bounce = _second_bounce_at(history, ladder)
    return {
        "filed": int(filed_at is not None and lo <= filed_at < hi),
        "should": int(should),
        "closed": int(should and closed_in),
        "on_time": int(should and on_time),
        "ret": sum(t.action is Action.RETURN and lo <= t.at < hi for t in history),
        "esc": sum(t.action is Action.ESCALATE and lo <= t.at < hi for t in history),
        "bounced": int(second_bounce is not None and lo <= second_bounce < hi),
    }


def _second_bounce_at(history: Sequence[Transition], ladder: tuple[str, ...]) -> datetime | None:
    """When the event completed its second down-then-up move on the ladder, if it did."""
    last_move, ups_after_down = 0, 0
    for t in history:
        if t.from_level is None or t.from_level == t.to_level:
            continue
        move = 1 if _rank(ladder, t.to_level, "to") > _rank(ladder, t.from_level, "from") else -1
        if move == 1 and last_move == -1:
            ups_after_down += 1
            if ups_after_down == 2:
                return t.at
        last_move = move
    return None
