"""Stored event cursors: the names they are kept under, the values they hold, and the error when storage fails."""

from __future__ import annotations

from flowmailer.core._errors import ConfigurationError, FlowmailerError
from flowmailer.core._ranges import ReferenceRange

__all__ = ["CursorStoreError"]

_MAX_NAME = 200


class CursorStoreError(FlowmailerError):
    """The cursor store's storage failed (disk, lock timeout); the cursor may not have been saved."""


def check_cursor_name(name: object) -> str:
    """A follower's name: the key its cursor is stored under."""
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        raise ConfigurationError(
            "name",
            f"{name!r} is not a non-empty string of at most {_MAX_NAME} characters",
            "name the follower, e.g. 'default' or 'bounces'",
        )
    return name


def check_cursor(cursor: object) -> str:
    """A reference Flowmailer sent in a ``Next-Range``: non-empty, and fit to travel in a ``Range`` header again."""
    if not isinstance(cursor, str) or not cursor:
        raise ConfigurationError(
            "cursor", f"{cursor!r} is not a non-empty string", "save the reference of a Next-Range"
        )
    ReferenceRange(cursor)  # raises ConfigurationError naming the reference
    return cursor


def check_page_size(page_size: object) -> int:
    """Events per ``message_events`` request: what a ``Range`` header can carry."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 999_999_999:
        raise ConfigurationError(
            "page_size", f"{page_size!r} is not a whole number from 1 to 999999999", "give e.g. 100"
        )
    return page_size
