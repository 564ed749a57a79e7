"""Sans-I/O ``batch``: several REST commands of one call in one request (one rate-limit slot).

Used only where the commands of one call run in their fixed order anyway (register → finish →
attachRecord): ``halt=1`` stops at the first failing command, so a later one never runs after
an earlier one failed, and the answers are read per command. A value may be a reference to an
earlier answer (``$result[register][CALL_ID]``); it is sent unencoded, which Bitrix24 reads the
same whether it substitutes before or after parsing the query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from gateway import RetryableError

from .responses import ErrorBody, error_of

#: Bitrix24 refuses more commands per batch (``ERROR_BATCH_LENGTH_EXCEEDED``).
MAX_COMMANDS = 50


@dataclass(frozen=True, slots=True)
class Ref:
    """A value taken from an earlier command's answer: ``$result[<command>][<field>]``."""

    command: str
    field: str

    def __str__(self) -> str:
        return f"$result[{self.command}][{self.field}]"


def command(method: str, params: Mapping[str, Any]) -> str:
    """``method?query`` for ``cmd``: scalars, and lists as ``KEY[0]=..&KEY[1]=..`` (PHP arrays,
    e.g. the ``USER_ID`` list of ``externalCall.hide``)."""
    plain: list[tuple[str, Any]] = []
    for k, v in params.items():
        if isinstance(v, (list, tuple)):
            plain.extend((f"{k}[{i}]", item) for i, item in enumerate(v))
        elif not isinstance(v, Ref):
            plain.append((k, v))
    refs = [f"{quote(k)}={v}" for k, v in params.items() if isinstance(v, Ref)]
    query = "&".join(filter(None, [urlencode(plain), *refs]))
    return f"{method}?{query}"


def batch_params(commands: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The ``batch`` body (without ``auth``): ``{"halt": 1, "cmd": {key: "method?query"}}``."""
    if not commands or len(commands) > MAX_COMMANDS:
        raise ValueError("a batch takes 1 to 50 commands")
    return {"halt": 1, "cmd": {key: command(method, params) for key, (method, params) in commands.items()}}


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """Per command: its ``result`` (when it ran and succeeded) or its error body."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, ErrorBody] = field(default_factory=dict)

    def ran(self, key: str) -> bool:
        return key in self.results


def parse_batch(result: Any) -> BatchAnswer:
    """Read the ``result`` of a ``batch`` answer. Empty maps arrive as ``[]`` (PHP arrays)."""
    if not isinstance(result, dict):
        raise RetryableError("batch answered without a usable body", code="BATCH_BODY")
    results = result.get("result")
    errors = result.get("result_error")
    results = results if isinstance(results, dict) else {}
    errors = errors if isinstance(errors, dict) else {}
    parsed = {key: err for key, raw in errors.items() if (err := error_of(raw)) is not None}
    return BatchAnswer({str(k): v for k, v in results.items()}, {str(k): v for k, v in parsed.items()})
