"""Sans-I/O: the legs of one Webex call session → the canonical events of one customer call.

Webex reports calls per user (every logged-in user's webhooks report that user's own leg,
``callId``); all legs of one call share ``callSessionId``. A queue or hunt-group call rings
several agents: each has a leg, the one who answers gets ``answered``, the others end with
``completedElsewhere: true`` and no ``answered`` — exactly as they do when the caller gives up
(captures ``queue_*``). So one leg never decides the outcome; the session does:

- ``call_id`` is the ``callSessionId``: one call per customer call, whatever the legs;
- **ringing** at the first leg that is not already over; again whenever the set of users
  whose phones ring changes (a card for each, hidden again when their leg stops);
- **answered** when a leg talks (``connected``/``held``/``remoteHeld`` or ``eventType:
  answered``, not a click-to-dial device pickup); again when another user's leg takes over
  (transfer). ``local_user`` is always the user who answered last;
- **ended** once every known leg has ended: at once when someone answered (outcome answered,
  attributed to the last answering user, duration from the first answer to the last end);
  otherwise only after ``grace`` seconds without a new leg (:func:`expire`, run by a periodic
  task), because a colleague's answer may still arrive on another user's webhook. Then
  missed (inbound) or cancelled (outbound), attributed to the only user it rang for, or to
  nobody when it rang for several or none;
- legs whose remote party is internal (``callType`` location/organization) in a session that
  has an external party are the organisation's own side legs (a consultation): they neither
  ring nor answer the customer call. A session with internal parties only is an internal
  call (``internal``);
- deliveries after ``ended`` change nothing (late legs are counted by the caller).

The state is a JSON-ready dict the I/O layer keeps as a call record (``ctx.calls``), keyed by
the session's UUID, which is also how a recording finds its call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from gateway import ANONYMOUS, CallEvent, CallState, Direction, Outcome, RecordingRef

from .ids import session_key
from .parse import OUTBOUND_PERSONALITIES, SOURCE_NAME, CallSnapshot

#: Seconds to wait, after the last leg of an unanswered session ended, for a colleague's
#: answer on another webhook before the call is written as missed (issue 13 research).
DEFAULT_GRACE = 60.0
#: Index of the sessions waiting for their grace time (their state, in ``ctx.calls``).
PENDING_END = "pending-end"
#: Recording formats a CRM can take; Webex documents MP3 as the only call recording format.
RECORDING_FORMATS = frozenset({"mp3", "wav"})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def new_state(snap: CallSnapshot) -> dict[str, Any]:
    """A session before any leg was applied."""
    return {"v": 2, "call_id": snap.session_id, "session": session_key(snap.session_id),
            "direction": None, "remote": None, "internal_remote": None, "local": None,
            "started_at": None, "answered_at": None, "agent": None, "caller": None, "legs": {},
            "ringing": None, "ring_seq": 0, "ended": False, "ended_at": None, "pending_end": None,
            "completed_elsewhere": False, "redirections": []}


def _new_leg(user: str, snap: CallSnapshot) -> dict[str, Any]:
    return {"user": user, "personality": snap.personality, "internal": snap.remote_internal,
            "alerting": False, "answered_at": None, "ended_at": None}


def customer_legs(st: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The legs that face the customer: all of them in an internal call, else the external ones."""
    legs = list(st["legs"].values())
    external = [leg for leg in legs if not leg["internal"]]
    return external or legs


def is_internal(st: Mapping[str, Any]) -> bool:
    """Only the organisation's own parties took part (every leg's remote is internal)."""
    return bool(st["legs"]) and all(leg["internal"] for leg in st["legs"].values())


def ringing_users(st: Mapping[str, Any]) -> list[str]:
    """Users whose phones ring for the call now (inbound legs alerting, not answered, not over)."""
    if st["direction"] == Direction.OUTBOUND.value:
        return []
    return sorted({leg["user"] for leg in customer_legs(st)
                   if leg["alerting"] and not leg["answered_at"] and not leg["ended_at"]})


def _event(st: Mapping[str, Any], kind: CallState, event_id: str, when: datetime, *,
           local_user: str | None, **more: Any) -> CallEvent:
    remote = st["remote"] or st["internal_remote"]
    return CallEvent(
        event_id=event_id, call_id=st["call_id"], direction=Direction(st["direction"] or "in"),
        state=kind, occurred_at=when, remote_number=remote, local_number=st["local"],
        local_user=local_user, started_at=_dt(st["started_at"]), answered_at=_dt(st["answered_at"]),
        internal=is_internal(st),
        extra={"completed_elsewhere": st["completed_elsewhere"], "redirections": list(st["redirections"])},
        **more)


def _absorb(st: dict[str, Any], snap: CallSnapshot, local_number: str | None, received_at: datetime) -> None:
    """Session facts from one delivery: direction, parties, our number, start, redirections."""
    if st["direction"] is None and snap.personality:
        st["direction"] = (Direction.OUTBOUND if snap.personality in OUTBOUND_PERSONALITIES
                           else Direction.INBOUND).value
    number = snap.remote_number
    if number is not None:
        key = "internal_remote" if snap.remote_internal else "remote"
        if st[key] in (None, ANONYMOUS) or number != ANONYMOUS:
            st[key] = number
    if st["local"] is None:
        st["local"] = snap.redirect_number or local_number
    start = snap.created or snap.event_time or received_at
    if st["started_at"] is None or start < _dt(st["started_at"]):  # type: ignore[operator]
        st["started_at"] = _iso(start)
    st["completed_elsewhere"] = bool(st["completed_elsewhere"] or snap.completed_elsewhere)
    for reason in snap.redirect_reasons:
        if reason not in st["redirections"]:
            st["redirections"].append(reason)


def _update_leg(leg: dict[str, Any], snap: CallSnapshot, received_at: datetime) -> bool:
    """Apply the delivery to its leg; True when the leg newly answered."""
    if leg["ended_at"]:
        return False
    answered = False
    if snap.answered is not None and not leg["answered_at"] and (snap.ends or snap.talking):
        leg["answered_at"] = _iso(snap.answered)
        answered = True
    if snap.ends:
        leg["ended_at"] = _iso(snap.disconnected or snap.event_time or received_at)
        leg["alerting"] = False
        return answered
    if snap.talking and not leg["answered_at"]:
        leg["answered_at"] = _iso(snap.event_time or received_at)
        answered = True
    if not leg["answered_at"] and snap.state in ("alerting", "connecting") and snap.personality == "terminator":
        leg["alerting"] = True
    if leg["answered_at"]:
        leg["alerting"] = False
    return answered


def apply(state: Mapping[str, Any] | None, snap: CallSnapshot, *, user: str, local_number: str | None,
          received_at: datetime, grace: float = DEFAULT_GRACE) -> tuple[dict[str, Any], list[CallEvent]]:
    """Apply one delivery of one user's leg to the session; return the new state and events.

    ``user`` is the leg's owner (the webhook's person), ``local_number`` their own number
    (used as the call's line unless a queue or hunt group redirected the call). A ``grace``
    of 0 decides an unanswered session as soon as its last leg ends.
    """
    st: dict[str, Any] = dict(state) if state else new_state(snap)
    if st["ended"]:
        return st, []
    st["legs"] = {k: dict(v) for k, v in st["legs"].items()}
    st["redirections"] = list(st["redirections"])
    _absorb(st, snap, local_number, received_at)
    if st["direction"] == Direction.OUTBOUND.value and st.get("caller") is None \
            and snap.personality in OUTBOUND_PERSONALITIES:
        st["caller"] = user
    leg = st["legs"].setdefault(snap.call_leg, _new_leg(user, snap))
    leg["internal"] = snap.remote_internal
    newly_answered = _update_leg(leg, snap, received_at)
    events: list[CallEvent] = []
    facing = any(lg is leg for lg in customer_legs(st))
    alive = [lg for lg in st["legs"].values() if not lg["ended_at"]]

    if st["ringing"] is None and alive:
        first = ringing_users(st)
        st["ringing"] = first
        when = _dt(st["started_at"]) or received_at
        events.append(_event(st, CallState.RINGING, _id(st["session"], "ringing", "0"), when,
                             local_user=_owner(st), ringing=tuple(first)))

    if newly_answered and facing and leg["user"] != st["agent"]:
        st["agent"] = leg["user"]
        answered_at = _dt(leg["answered_at"]) or received_at
        if st["answered_at"] is None or answered_at < _dt(st["answered_at"]):  # type: ignore[operator]
            st["answered_at"] = _iso(answered_at)
        if st["ringing"] is not None:  # else the call is first seen at its end: ``ended`` says it all
            events.append(_event(st, CallState.ANSWERED, _id(st["session"], "answered", snap.call_leg,
                                                              leg["answered_at"]), answered_at,
                                 local_user=leg["user"]))

    ends_now = not alive and (st["agent"] is not None or grace <= 0)
    if st["ringing"] is not None and not ends_now:
        rings = ringing_users(st)
        added = set(rings) - set(st["ringing"])
        removed = set(st["ringing"]) - set(rings)
        st["ringing"] = rings
        # new phones ring: show them; phones stop ringing before anyone answered: hide them
        # (after an answer the sink hid every card but the agent's already)
        if added or (removed and st["agent"] is None):
            st["ring_seq"] += 1
            events.append(_event(st, CallState.RINGING, _id(st["session"], "ringing", str(st["ring_seq"])),
                                 received_at, local_user=st["agent"] or st.get("caller"), ringing=tuple(rings)))

    if alive:
        st["pending_end"] = None
    elif ends_now:
        events.append(_end(st))
    elif st["pending_end"] is None:
        st["pending_end"] = _iso(received_at + timedelta(seconds=grace))
    return st, events


def _owner(st: Mapping[str, Any]) -> str | None:
    """Who an unanswered call belongs to: the caller of an outbound call, else the only user
    it rings (or rang) for; ``None`` when it is several or nobody known."""
    if st["direction"] == Direction.OUTBOUND.value:
        caller: str | None = st.get("caller")
        return caller
    users = {lg["user"] for lg in customer_legs(st) if lg["alerting"] or lg["answered_at"] or lg["ended_at"]}
    return next(iter(users)) if len(users) == 1 else None


def _end(st: dict[str, Any]) -> CallEvent:
    """The session's ``ended`` event (every leg is over); marks the state ended."""
    ends = [_dt(lg["ended_at"]) for lg in st["legs"].values() if lg["ended_at"]]
    ended = max(e for e in ends if e is not None)
    st["ended"] = True
    st["ended_at"] = _iso(ended)
    st["pending_end"] = None
    answered = _dt(st["answered_at"])
    if st["agent"] is not None and answered is not None:
        outcome, user, duration = Outcome.ANSWERED, st["agent"], max(0, int((ended - answered).total_seconds()))
    else:
        outcome = Outcome.CANCELLED if st["direction"] == Direction.OUTBOUND.value else Outcome.MISSED
        user, duration = _owner(st), 0
    return _event(st, CallState.ENDED, _id(st["session"], "ended"), ended, local_user=user,
                  outcome=outcome, ended_at=ended, duration=duration)


def due(state: Mapping[str, Any], now: datetime) -> bool:
    """An unanswered session whose grace time is over."""
    deadline = _dt(state.get("pending_end"))
    return not state.get("ended") and deadline is not None and now >= deadline


def expire(state: Mapping[str, Any], now: datetime) -> tuple[dict[str, Any], list[CallEvent]]:
    """End an unanswered session whose grace time is over (no new leg came): missed or
    cancelled. Anything else is returned unchanged, without events."""
    if not due(state, now):
        return dict(state), []
    st = dict(state)
    if any(not lg["ended_at"] for lg in st["legs"].values()):
        st["pending_end"] = None
        return st, []
    return st, [_end(st)]


def recording_format(given: str | None) -> str:
    """The file format of a Webex call recording: what the notice says, else MP3 (the only
    format Webex documents for call recordings)."""
    value = (given or "mp3").strip().lower()
    return value if value in RECORDING_FORMATS else "mp3"


def recording_event(state: Mapping[str, Any], recording_id: str, *, owner: str | None,
                    received_at: datetime, file_format: str | None = None) -> CallEvent:
    """The ``recording`` event for a session whose state is known (joined by call session)."""
    return CallEvent(
        event_id=_id("recording", recording_id), call_id=state["call_id"],
        direction=Direction(state.get("direction") or "in"), state=CallState.RECORDING,
        occurred_at=received_at, remote_number=state.get("remote") or state.get("internal_remote"),
        local_number=state.get("local"), local_user=state.get("agent") or owner,
        started_at=_dt(state.get("started_at")), answered_at=_dt(state.get("answered_at")),
        ended_at=_dt(state.get("ended_at")), internal=is_internal(state),
        recording=RecordingRef(source=SOURCE_NAME, ref=recording_id, format=recording_format(file_format)))
