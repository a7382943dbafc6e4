"""Input checks: each refuses bad input with a ConfigurationError naming the field and the fix, before anything runs.

Private and not re-exported by ``flowmailer.core``: the core, the adapters and the shells import them from here,
so generic names like ``check_time`` never land in the public namespace, where one could shadow another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

from flowmailer.core._errors import ConfigurationError
from flowmailer.core._models import SubmitMessage

__all__ = [
    "check_after",
    "check_dedupe_key",
    "check_duration",
    "check_ids",
    "check_instances",
    "check_limit",
    "check_lookup",
    "check_messages",
    "check_owner",
    "check_slot_request",
    "check_time",
    "require",
    "require_number",
]

_T = TypeVar("_T")
_MAX_DEDUPE_KEY = 200


def require(ok: bool, field: str, problem: str, fix: str) -> None:
    """Refuse a bad setting with a ConfigurationError that names the field and the fix."""
    if not ok:
        raise ConfigurationError(field, problem, fix)


def require_number(value: float, field: str, *, minimum: float = 0.0, strict: bool = False) -> None:
    """Refuse NaN, infinities and values below ``minimum`` (or equal to it when ``strict``)."""
    if math.isfinite(value) and (value > minimum if strict else value >= minimum):
        return  # the usual case, on every attempt: no message formatted to be thrown away
    bound = f"greater than {minimum}" if strict else f"at least {minimum}"
    require(False, field, f"{value!r} is not a finite number {bound}", f"give a finite number {bound}")


def _number(value: object, field: str, problem: str, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(field, f"{value!r} {problem}", fix)
    return float(value)


def check_time(value: object, field: str = "at") -> float:
    """A finite point in time, in seconds since the epoch."""
    return _number(value, field, "is not a time", "pass seconds since the epoch, e.g. clock.now() + 30")


def check_duration(value: object, field: str, *, allow_zero: bool = False) -> float:
    """A finite number of seconds, positive (or zero when allowed)."""
    seconds = _number(value, field, "is not a finite number of seconds", "pass seconds as a float")
    require_number(seconds, field, strict=not allow_zero)
    return seconds


def check_instances(values: Iterable[object], kind: type[_T], field: str, fix: str) -> list[_T]:
    """Refuse a batch holding anything but ``kind``, naming the position, before a single row is written."""
    checked = list(values)
    for i, value in enumerate(checked):
        if not isinstance(value, kind):
            raise ConfigurationError(f"{field}[{i}]", f"is a {type(value).__name__}, not a {kind.__name__}", fix)
    return checked  # type: ignore[return-value]


def check_messages(messages: Iterable[object], field: str = "message") -> list[SubmitMessage]:
    """Refuse anything but SubmitMessage values; a lone ``message`` is named without a position."""
    fix = "build the message with SubmitMessage(...)"
    checked = list(messages)
    if len(checked) == 1 and field == "message":
        [message] = checked
        require(isinstance(message, SubmitMessage), field, f"is a {type(message).__name__}, not a SubmitMessage", fix)
        return checked  # type: ignore[return-value]
    return check_instances(checked, SubmitMessage, field, fix)


def check_dedupe_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > _MAX_DEDUPE_KEY:
        raise ConfigurationError(
            "dedupe_key",
            f"{key!r} is not a non-empty string of at most {_MAX_DEDUPE_KEY} characters",
            "pass a string that names the business event, e.g. 'order-1234-confirmation', or None",
        )
    return key


def check_owner(owner: object) -> str:
    if not isinstance(owner, str) or not owner:
        raise ConfigurationError("owner", f"{owner!r} is not a non-empty string", "name the relay, e.g. 'host-1:pid'")
    return owner


def check_slot_request(key: object, owner: object, count: object = 0, limit: int = 10) -> tuple[str, str, int]:
    """A connection slot store's arguments: the credential's client id, the relay, and a count within the limit."""
    if not isinstance(key, str) or not key:
        raise ConfigurationError("key", f"{key!r} is not a non-empty string", "key the slots by the client id")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= limit:
        raise ConfigurationError("count", f"{count!r} is not a whole number from 0 to {limit}", f"ask for 0 to {limit}")
    return key, check_owner(owner), count


def check_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ConfigurationError("limit", f"{limit!r} is not a positive whole number", "ask for at least 1 row")
    return limit


def check_lookup(client_reference: object, recipient: object) -> tuple[str | None, str | None]:
    """Exactly one of the two, as a non-empty string: an outbox looks messages up by one thing at a time."""
    given = [(f, v) for f, v in (("client_reference", client_reference), ("recipient", recipient)) if v is not None]
    if len(given) != 1:
        raise ConfigurationError(
            "client_reference", "give exactly one of client_reference and recipient", "look up by one of them"
        )
    [(field, value)] = given
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(field, f"{value!r} is not a non-empty string", f"give the {field.replace('_', ' ')}")
    return (value, None) if field == "client_reference" else (None, value)


def check_ids(ids: Iterable[object], field: str = "ids") -> list[int]:
    checked = list(ids)
    for value in checked:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigurationError(field, f"{value!r} is not an outbox id", "pass ids that enqueue returned")
    return checked  # type: ignore[return-value]


def check_after(after: object) -> int | None:
    """A paging cursor: None for the first page, else the last id of the page before."""
    if after is None:
        return None
    [checked] = check_ids([after], "after")
    return checked
