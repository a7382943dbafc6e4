"""What the event follower needs: where it keeps its place, and where the events come from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from flowmailer.core import MessageEvent, Page, ReferenceRange, SortOrder

__all__ = ["CursorStore", "EventSource"]


class CursorStore(Protocol):
    """Named cursors into ``message_events``: a follower's place, kept across restarts.

    A bad name or cursor raises ``ConfigurationError`` and writes nothing; storage failures raise
    ``CursorStoreError``.
    """

    def load(self, name: str) -> str | None:
        """The cursor last saved under ``name``, or None when there is none (the follower starts at the beginning)."""
        ...

    def save(self, name: str, cursor: str) -> None:
        """Replace the cursor under ``name``; durable when it returns."""
        ...


class EventSource(Protocol):
    """The one call of :class:`flowmailer.app.Client` the follower makes; a test may pass a small fake instead."""

    def message_events(self, *, start: ReferenceRange, sortorder: SortOrder | None) -> Iterator[Page[MessageEvent]]:
        """Pages from ``start``, fetched as the caller iterates, until a page without ``next_range``."""
        ...
