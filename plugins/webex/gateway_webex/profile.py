"""Sans-I/O mapping of ``GET /people/me`` to the gateway's :class:`TelephonyUser`."""

from __future__ import annotations

from typing import Any

from gateway import TelephonyUser, normalize_number


def user_from_profile(me: dict[str, Any], region: str | None = "DE") -> TelephonyUser:
    """The directory entry for a logged-in person: id, display name, e-mail, extension, numbers."""
    person = me.get("id")
    if not isinstance(person, str) or not person:
        raise ValueError("profile without id")
    emails = me.get("emails")
    email = next((e for e in emails if isinstance(e, str) and e), None) if isinstance(emails, list) else None
    name = me.get("displayName")
    extension = me.get("extension") if isinstance(me.get("extension"), str) else None
    numbers: list[str] = []
    phone_numbers = me.get("phoneNumbers")
    for item in phone_numbers if isinstance(phone_numbers, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            continue
        if item.get("type") == "work_extension":
            extension = extension or item["value"].strip() or None
            continue
        number = normalize_number(item["value"], region)
        if number and number not in numbers:
            numbers.append(number)
    return TelephonyUser(user_id=person, name=name if isinstance(name, str) else None, email=email,
                         extension=extension or None, numbers=tuple(numbers), status="active")
