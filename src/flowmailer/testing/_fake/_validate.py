"""Submit validation, written from flowmailer-api.md alone: an oracle that shares no code with the client's models."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

__all__ = ["MAX_MESSAGE_BYTES", "error_detail", "validate_submit"]

MAX_MESSAGE_BYTES = 10_485_760
_OBJECT = "submitMessage"
_EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+$")
_PHONE = re.compile(r"^\+?[0-9]{3,20}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})$")
_STRINGS = (
    "subject",
    "html",
    "text",
    "mimedata",
    "flowSelector",
    "headerFromAddress",
    "headerFromName",
    "headerToAddress",
    "headerToName",
)
_ENUMS = {
    "messageType": ("EMAIL", "SMS", "LETTER"),
    "deliveryNotificationType": ("NONE", "FAILURE", "DELIVERY_AND_FAILURE"),
}


def error_detail(
    code: str, message: str, field: str | None, value: object = None, *, object_name: str | None = _OBJECT
) -> dict[str, Any]:
    """One entry of Flowmailer's ``allErrors``."""
    return {
        "code": code,
        "defaultMessage": message,
        "field": field,
        "objectName": object_name,
        "rejectedValue": value,
        "arguments": [],
    }


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def validate_submit(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The parsed SubmitMessage and Flowmailer's ``allErrors`` for it, empty when it would be accepted."""
    if len(body) > MAX_MESSAGE_BYTES:
        # A validation error like any other (400 with allErrors), not an HTTP 413: the sizes ride in arguments.
        too_big = error_detail("message.toobig", f"Message too big {len(body)} > {MAX_MESSAGE_BYTES}", None)
        return {}, [{**too_big, "arguments": [len(body), MAX_MESSAGE_BYTES]}]
    try:
        msg = json.loads(body)
    except ValueError:
        return {}, [error_detail("message.unreadable", "The request body is not valid JSON", None)]
    if not isinstance(msg, dict):
        return {}, [error_detail("message.unreadable", "The request body is not a JSON object", None)]
    return msg, _errors(msg)


def _errors(msg: dict[str, Any]) -> list[dict[str, Any]]:
    required = ("messageType", "senderAddress", "recipientAddress")
    errors = [error_detail("NotNull", "may not be null", name) for name in required if msg.get(name) is None]
    for name, allowed in _ENUMS.items():
        value = msg.get(name)
        if value is not None and value not in allowed:
            errors.append(error_detail("typeMismatch", f"must be one of {', '.join(allowed)}", name, value))
    kind = msg.get("messageType")
    for name in ("senderAddress", "recipientAddress"):
        value = msg.get(name)
        if value is None:
            continue
        pattern = _PHONE if kind == "SMS" else _EMAIL
        if not isinstance(value, str) or not pattern.match(value):
            what = "a phone number" if kind == "SMS" else "an email address without a display name"
            errors.append(error_detail("invalid", f"must be {what}", name, value))
    for name in _STRINGS:
        value = msg.get(name)
        if value is not None and not isinstance(value, str):
            errors.append(error_detail("typeMismatch", "must be a string", name, value))
    mimedata = msg.get("mimedata")
    if isinstance(mimedata, str) and not _is_base64(mimedata):
        errors.append(error_detail("invalid", "must be base64", "mimedata", mimedata[:64]))
    schedule = msg.get("scheduleAt")
    if schedule is not None and not (isinstance(schedule, str) and _DATE.match(schedule)):
        errors.append(error_detail("typeMismatch", "must be a date like 2021-12-30T13:04:07Z", "scheduleAt", schedule))
    data = msg.get("data")
    if data is not None and not isinstance(data, dict):
        errors.append(error_detail("typeMismatch", "must be an object", "data", data))
    tags = msg.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) and t for t in tags)):
        errors.append(error_detail("typeMismatch", "must be a list of non-empty strings", "tags", tags))
    errors.extend(_validate_list(msg.get("headers"), "headers", _header_errors))
    errors.extend(_validate_list(msg.get("attachments"), "attachments", _attachment_errors))
    return errors


def _validate_list(value: object, name: str, check: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [error_detail("typeMismatch", "must be a list", name, value)]
    errors: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            errors.append(error_detail("typeMismatch", "must be an object", where, item))
        else:
            errors.extend(check(item, where))
    return errors


def _header_errors(item: dict[str, Any], where: str) -> list[dict[str, Any]]:
    return [
        error_detail("NotNull", "may not be null", f"{where}.{k}")
        for k in ("name", "value")
        if not isinstance(item.get(k), str)
    ]


def _attachment_errors(item: dict[str, Any], where: str) -> list[dict[str, Any]]:
    errors = []
    if not isinstance(item.get("contentType"), str):
        errors.append(error_detail("NotNull", "may not be null", f"{where}.contentType"))
    content = item.get("content")
    if content is not None and not (isinstance(content, str) and _is_base64(content)):
        errors.append(error_detail("invalid", "must be base64", f"{where}.content"))
    disposition = item.get("disposition")
    if disposition is not None and disposition not in ("attachment", "inline", "related"):
        errors.append(
            error_detail("typeMismatch", "must be attachment, inline or related", f"{where}.disposition", disposition)
        )
    if disposition == "related" and not isinstance(item.get("contentId"), str):
        errors.append(error_detail("NotNull", "is required for a related attachment", f"{where}.contentId"))
    return errors
