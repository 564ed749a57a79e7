"""Privacy: who a data-subject request is about (:class:`Subject`), the controller's rights
over that person's data (:mod:`.rights`) and breach reports (:mod:`.breach`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import BadRequest
from ..events import ANONYMOUS, normalize_number


@dataclass(frozen=True, slots=True)
class Subject:
    """A person, named by phone number (E.164 where it parses) or e-mail (lower-cased)."""

    kind: Literal["phone", "email"]
    value: str

    @classmethod
    def parse(cls, *, phone: str | None = None, email: str | None = None,
              region: str | None = "DE") -> Subject:
        if bool(phone) == bool(email):
            raise BadRequest("name the person by exactly one of phone or email")
        if email:
            value = email.strip().lower()
            if "@" not in value or len(value) > 320:
                raise BadRequest("email is not an e-mail address")
            return cls("email", value)
        number = normalize_number(phone, region)
        if not number or number == ANONYMOUS:
            raise BadRequest("phone is not a phone number")
        return cls("phone", number)
