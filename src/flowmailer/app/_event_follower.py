"""Follows ``message_events`` from a stored cursor: what happened to every message, without asking per message."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flowmailer.app import _defaults
from flowmailer.core import MessageEvent, ReferenceRange, SortOrder, next_page
from flowmailer.core._checks import check_duration
from flowmailer.core._cursor import check_cursor_name, check_page_size
from flowmailer.ports import Clock, CursorStore, EventSource

__all__ = ["EventFollower"]

#: Oldest first: only then does a stored reference mean "everything after this" (newest first walks backwards).
_ORDER = SortOrder.ASC
#: Cursors a follower remembers having been at, so that a Next-Range pointing back to one is caught across polls.
_REMEMBERED = 10_000


class EventFollower:
    """Reads ``message_events`` oldest first from the cursor stored under ``name``, and moves the cursor on only
    after the caller has the events: delivery is at least once.

    A crash after the events were handed over and before the cursor was saved delivers them again on the next
    start; an event is never skipped. Run one follower per name at a time (two would each deliver everything).
    """

    def __init__(
        self,
        client: EventSource,
        cursors: CursorStore,
        *,
        name: str = "default",
        page_size: int = 100,
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self._cursors = cursors
        self._name = check_cursor_name(name)
        self._page_size = check_page_size(page_size)
        self._clock = clock if clock is not None else _defaults.clock()
        self._pending: ReferenceRange | None = None
        #: References this follower saved, oldest first (a dict keeps order and finds fast).
        self._been_at: dict[str, None] = {}
        #: The cursors of the last poll's pages, remembered once the caller has their events.
        self._passed: list[str] = []

    def poll(self) -> list[MessageEvent]:
        """Every event after the stored cursor, oldest first.

        Calling ``poll()`` again (or ``commit()``) says the caller has the events of the last one: only then is
        the cursor after them saved. Handle a batch before asking for the next.
        """
        self.commit()
        events: list[MessageEvent] = []
        pending = None
        passed = []
        for items, cursor in self._pages():
            events.extend(items)
            pending = cursor if cursor is not None else pending
            passed += [] if cursor is None else [cursor.reference]
        self._passed = passed
        self._pending = pending  # only now: a read that fails midway hands nothing over, so it must save nothing
        return events

    def commit(self) -> None:
        """Save the cursor after the events the last ``poll()`` returned; durable when it returns."""
        if self._pending is not None:
            self._cursors.save(self._name, self._pending.reference)
            self._pending = None
            for reference in self._passed:
                self._remember(reference)

    def follow(
        self, handler: Callable[[MessageEvent], object], *, idle_wait: float = 10.0, stop: Callable[[], bool]
    ) -> int:
        """Hand every event to ``handler``, page by page, until ``stop()`` is true; answers how many it handed over.

        The cursor is saved after each page, once ``handler`` returned for all its events, so a crash or a raising
        handler delivers at most that page again. A poll that moved the cursor nowhere waits ``idle_wait`` seconds.
        """
        wait = check_duration(idle_wait, "idle_wait")
        self.commit()
        handed = 0
        while not stop():
            moved = False
            for items, cursor in self._pages():
                for event in items:
                    handler(event)
                handed += len(items)
                if cursor is not None:
                    self._cursors.save(self._name, cursor.reference)
                    self._remember(cursor.reference)
                    moved = True
                if stop():
                    return handed
            if not moved:  # caught up (or on a page without Next-Range): asking again at once gets the same answer
                self._clock.sleep(wait)
        return handed

    def _pages(self) -> Iterator[tuple[tuple[MessageEvent, ...], ReferenceRange | None]]:
        """Each non-empty page from the stored cursor, with the cursor after it (None if Flowmailer sent none)."""
        start = ReferenceRange(self._cursors.load(self._name) or "", self._page_size)
        self._remember(start.reference)
        for page in self._client.message_events(start=start, sortorder=_ORDER):
            if page.items:
                # A cursor back to where an earlier poll was would hand over its events again: stop before.
                yield page.items, next_page("message_events", page, self._been_at.keys())

    def _remember(self, reference: str) -> None:
        self._been_at.pop(reference, None)
        self._been_at[reference] = None
        if len(self._been_at) > _REMEMBERED:
            del self._been_at[next(iter(self._been_at))]
