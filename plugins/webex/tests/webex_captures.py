"""The pseudonymised captured deliveries (``captures/``, see its README) and deliveries
constructed from them for shapes no capture shows (labelled "constructed" where used).

Constructed deliveries start from a captured one and change only what the shape needs: the
leg id and owner for another agent's leg of the same session, ``eventType``/``state``/
``answered``/``disconnected`` for an answer or an end no capture holds.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import orjson

CAPTURES = Path(__file__).with_name("captures")


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((CAPTURES / f"{name}.json").read_bytes())
    return doc


def webex_id(kind: str, tail: str) -> str:
    """A Webex id as deliveries carry it: base64 (no padding) of ``ciscospark://us/<kind>/<tail>``."""
    return base64.b64encode(f"ciscospark://us/{kind}/{tail}".encode()).decode().rstrip("=")


DIRECT_ANSWERED = [load(n) for n in ("direct_answered_01_created_received", "direct_answered_02_updated_alerting",
                                     "direct_answered_03_updated_answered_connected")]
DIRECT_UNANSWERED = [load(n) for n in ("direct_unanswered_01_created_received",
                                       "direct_unanswered_02_updated_alerting")]
QUEUE_ABANDONED_A = [load(n) for n in ("queue_abandoned_agent_a_01_created_received",
                                       "queue_abandoned_agent_a_02_updated_alerting",
                                       "queue_abandoned_agent_a_03_deleted_disconnected")]
QUEUE_ELSEWHERE_A = [load(n) for n in ("queue_leg_completed_elsewhere_agent_a_01_created_received",
                                       "queue_leg_completed_elsewhere_agent_a_02_updated_alerting",
                                       "queue_leg_completed_elsewhere_agent_a_03_deleted_disconnected")]
CAPTURED_CALLER = "+19055550142"
CAPTURED_QUEUE = "+12895550199"

PERSON_B = webex_id("PEOPLE", "5b0c8a1e-2f4d-4c6e-9a7b-1d2e3f405162")
PERSON_C = webex_id("PEOPLE", "6c1d9b2f-3a5e-4d7f-8b8c-2e3f40516273")


def other_leg(delivery: dict[str, Any], *, leg: int, person: str) -> dict[str, Any]:
    """Constructed: the same delivery for another agent's leg of the same session."""
    out = copy.deepcopy(delivery)
    out["data"]["callId"] = webex_id("CALL", f"callhalf-{leg}:0")
    out["createdBy"] = out["actorId"] = person
    return out


def answered(delivery: dict[str, Any], at: str) -> dict[str, Any]:
    """Constructed: the leg's ``updated``/``answered``/``connected`` delivery, shaped like the
    captured direct answer (``direct_answered_03``): ``answered`` set, redirections dropped."""
    out = copy.deepcopy(delivery)
    out["event"] = "updated"
    data = out["data"]
    data.update(eventType="answered", state="connected", answered=at, eventTimestamp=at, muteCapable=True)
    data.pop("redirections", None)
    return out


def ended(delivery: dict[str, Any], at: str, *, elsewhere: bool = False) -> dict[str, Any]:
    """Constructed: the leg's ``deleted``/``disconnected`` delivery, shaped like the captured
    queue leg ends (``queue_*_03``): ``disconnected`` set, ``redirections``/``appearance``/
    ``endpointId`` dropped, ``completedElsewhere`` as given."""
    out = copy.deepcopy(delivery)
    out["event"] = "deleted"
    data = out["data"]
    for key in ("redirections", "appearance", "endpointId", "endpointType"):
        data.pop(key, None)
    data.update(eventType="disconnected", state="disconnected", disconnected=at, eventTimestamp=at,
                completedElsewhere=elsewhere)
    if isinstance(data.get("remoteParty"), dict) and "  -  " in str(data["remoteParty"].get("name")):
        data["remoteParty"]["name"] = str(data["remoteParty"]["name"]).split("  -  ", 1)[1]
    return out


def with_remote(delivery: dict[str, Any], **party: Any) -> dict[str, Any]:
    """Constructed: the delivery with another ``remoteParty`` (a colleague, a hidden caller)."""
    out = copy.deepcopy(delivery)
    out["data"]["remoteParty"] = party
    return out
