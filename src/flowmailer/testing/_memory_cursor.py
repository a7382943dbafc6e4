"""Cursors in a dict, and the conformance check every :class:`flowmailer.ports.CursorStore` must pass."""

from __future__ import annotations

import threading
from collections.abc import Callable

from flowmailer.core import ConfigurationError
from flowmailer.core._cursor import check_cursor, check_cursor_name
from flowmailer.ports import CursorStore

__all__ = ["MemoryCursorStore", "check_cursor_store"]


class MemoryCursorStore:
    """A :class:`flowmailer.ports.CursorStore` for tests: durable for as long as the object lives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursors: dict[str, str] = {}
        #: Every save, in order: a test can assert when the cursor moved.
        self.saved: list[tuple[str, str]] = []

    def load(self, name: str) -> str | None:
        check_cursor_name(name)
        with self._lock:
            return self._cursors.get(name)

    def save(self, name: str, cursor: str) -> None:
        check_cursor_name(name)
        check_cursor(cursor)
        with self._lock:
            self._cursors[name] = cursor
            self.saved.append((name, cursor))


def check_cursor_store(factory: Callable[[], CursorStore]) -> None:
    """Check a fresh, empty store from ``factory``; raises AssertionError saying what failed."""
    store = factory()
    assert store.load("default") is None, "a fresh store holds a cursor"
    store.save("default", "000000000001")
    assert store.load("default") == "000000000001", "a saved cursor does not load back"
    store.save("default", "00000000000a")
    assert store.load("default") == "00000000000a", "a second save does not replace the first"
    assert store.load("bounces") is None, "a name that was never saved loads a cursor"
    store.save("bounces", "000000000002")
    assert store.load("default") == "00000000000a", "saving under one name changed another"
    for name, cursor in (("", "000000000003"), ("default", ""), ("default", "a:b"), ("x" * 201, "000000000003")):
        try:
            store.save(name, cursor)
        except ConfigurationError:
            pass
        else:
            raise AssertionError(f"save({name!r}, {cursor!r}) was accepted")
    assert store.load("default") == "00000000000a", "a refused save changed the cursor"
