"""The metrics and logging hook."""

from __future__ import annotations

from typing import Protocol

from flowmailer.core import Event

__all__ = ["Observer"]


class Observer(Protocol):
    """Receives every event the shells emit. Must be fast and must not raise."""

    def on_event(self, event: Event) -> None: ...
