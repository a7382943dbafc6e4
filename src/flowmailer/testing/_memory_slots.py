"""Connection slots in a dict: the fake for relay tests, and the reference the slot stores are held to."""

from __future__ import annotations

import threading

from flowmailer.core import MAX_SLOTS, SlotHolding, slots_to_hold
from flowmailer.core._checks import check_duration, check_slot_request, require
from flowmailer.ports import Clock

__all__ = ["MemoryConnectionSlots"]


class MemoryConnectionSlots:
    """A :class:`flowmailer.ports.ConnectionSlots` for relays in one process. Thread-safe.

    Each key's owners map to (slots held, lease end on ``clock``); every call first forgets the leases that ran out.
    """

    def __init__(self, clock: Clock, *, limit: int = MAX_SLOTS) -> None:
        require(1 <= limit <= MAX_SLOTS, "limit", f"{limit!r} is not between 1 and {MAX_SLOTS}", "give 1 to 10")
        self._clock = clock
        self._limit = limit
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, tuple[int, float]]] = {}

    def _live(self, key: str, now: float) -> dict[str, tuple[int, float]]:
        rows = {o: row for o, row in self._rows.get(key, {}).items() if row[1] > now}
        self._rows[key] = rows
        return rows

    def acquire(self, key: str, owner: str, count: int, lease: float) -> SlotHolding:
        key, owner, count = check_slot_request(key, owner, count, self._limit)
        lease = check_duration(lease, "lease")
        with self._lock:
            now = self._clock.now()
            rows = self._live(key, now)
            current = rows.get(owner, (0, 0.0))[0]
            others = sum(n for o, (n, _) in rows.items() if o != owner)
            held = slots_to_hold(count, current=current, others=others, limit=self._limit)
            rows[owner] = (held, now + lease)
            return SlotHolding(held, len(rows))

    def renew(self, key: str, owner: str, lease: float) -> SlotHolding:
        key, owner, _ = check_slot_request(key, owner)
        lease = check_duration(lease, "lease")
        with self._lock:
            now = self._clock.now()
            rows = self._live(key, now)
            if owner not in rows:
                return SlotHolding(0, len(rows))
            rows[owner] = (rows[owner][0], now + lease)
            return SlotHolding(rows[owner][0], len(rows))

    def release(self, key: str, owner: str) -> None:
        key, owner, _ = check_slot_request(key, owner)
        with self._lock:
            self._rows.get(key, {}).pop(owner, None)

    def close(self) -> None:
        pass
