"""Which IP address the next request goes to: the least loaded, rotation, cool-down of failing ones, DNS freshness."""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

from flowmailer.core._checks import require, require_number
from flowmailer.core._dns import Resolution
from flowmailer.core._outcomes import Ambiguous, NotSent, TransportResult

__all__ = ["AddressBook", "AddressHealth", "AddressPolicy"]


@attrs.frozen
class AddressPolicy:
    """How long failing addresses rest, how long DNS answers and connections are trusted."""

    #: The first failure rests an address this long; each further consecutive failure doubles it, up to the cap.
    cool_down: float = 1.0
    cool_down_cap: float = 60.0
    #: A DNS answer is trusted for at least this long, so a TTL of 0 does not mean a lookup per request.
    min_ttl: float = 5.0
    #: Connections older than this are closed after their current request, so traffic follows a DNS change
    #: even when steady load keeps every connection busy.
    max_connection_age: float = 300.0

    def __attrs_post_init__(self) -> None:
        require_number(self.cool_down, "AddressPolicy.cool_down", strict=True)
        require_number(self.cool_down_cap, "AddressPolicy.cool_down_cap", minimum=self.cool_down)
        require_number(self.min_ttl, "AddressPolicy.min_ttl")
        require_number(self.max_connection_age, "AddressPolicy.max_connection_age", strict=True)

    def rest(self, failures: int) -> float:
        """The cool-down after ``failures`` consecutive failures."""
        try:
            return min(self.cool_down_cap, self.cool_down * 2.0 ** (failures - 1))
        except OverflowError:  # far past any cap
            return self.cool_down_cap


@attrs.frozen
class AddressHealth:
    """One address and its consecutive failures; it is not picked before ``cooling_until`` if another can be."""

    address: str
    failures: int = 0
    cooling_until: float = -math.inf

    def cooling(self, now: float) -> bool:
        return now < self.cooling_until


def _check(resolution: Resolution) -> None:
    require(
        bool(resolution.addresses),
        "resolution.addresses",
        "is empty",
        "a resolver returns NotSent when a name does not resolve; keep the current addresses then",
    )
    require_number(resolution.ttl, "resolution.ttl")


@attrs.frozen
class AddressBook:
    """Every address of one DNS name with its health, as of the last resolution. Build with ``from_resolution``."""

    entries: tuple[AddressHealth, ...]
    resolved_at: float
    ttl: float
    policy: AddressPolicy = AddressPolicy()
    #: Where round-robin rotation continues.
    cursor: int = 0

    def __attrs_post_init__(self) -> None:
        require(bool(self.entries), "AddressBook.entries", "is empty", "build the book with from_resolution")

    @classmethod
    def from_resolution(cls, resolution: Resolution, now: float, policy: AddressPolicy | None = None) -> AddressBook:
        _check(resolution)
        entries = tuple(AddressHealth(a) for a in dict.fromkeys(resolution.addresses))
        return cls(entries, now, resolution.ttl, policy or AddressPolicy())

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(e.address for e in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def pick(
        self, now: float, avoid: str | None = None, load: Mapping[str, int] | None = None
    ) -> tuple[str, AddressBook]:
        """The address not cooling down with the fewest requests in flight by ``load`` (the transport's count; an
        address it leaves out has none), the next in rotation among equals; never ``avoid`` while another exists.

        Load decides because each address has its own connections: a request sent to a busy address waits for one
        of them while another address's connection idles. Without a load, plain rotation. When every candidate is
        cooling down, the one whose cool-down ends first: there is always an answer.
        """
        n = len(self.entries)
        first = self.entries[self.cursor % n]
        if first.address != avoid and not first.cooling(now) and not (load and load.get(first.address)):
            return first.address, AddressBook(  # the common case: healthy and idle, so no search
                self.entries, self.resolved_at, self.ttl, self.policy, (self.cursor + 1) % n
            )
        order = [self.entries[(self.cursor + i) % n] for i in range(n)]
        candidates = [e for e in order if e.address != avoid] or order
        ready = [e for e in candidates if not e.cooling(now)]
        if ready:
            chosen = min(ready, key=lambda e: load.get(e.address, 0)) if load else ready[0]  # min keeps the first
        else:
            chosen = min(candidates, key=lambda e: e.cooling_until)
        index = self.entries.index(chosen)
        return chosen.address, attrs.evolve(self, cursor=(index + 1) % n)

    def _with(self, address: str, health: AddressHealth) -> AddressBook:
        return attrs.evolve(self, entries=tuple(health if e.address == address else e for e in self.entries))

    def mark_failed(self, address: str, now: float) -> AddressBook:
        """Rest ``address``, longer for each consecutive failure. An address no longer in the book is ignored."""
        for e in self.entries:
            if e.address == address:
                failures = e.failures + 1
                return self._with(address, AddressHealth(address, failures, now + self.policy.rest(failures)))
        return self

    def mark_ok(self, address: str) -> AddressBook:
        """``address`` answered: it is healthy again at once (the same book when nothing changes)."""
        for e in self.entries:
            if e.address == address:
                fresh = e.failures == 0 and e.cooling_until == -math.inf
                return self if fresh else self._with(address, AddressHealth(address))
        return self

    def record(self, address: str, result: TransportResult, now: float) -> AddressBook:
        """What one request says about ``address``: not reaching it (NotSent, Ambiguous) rests it, an answer from
        it makes it healthy, a local NotSent (busy pool, closed transport) says nothing (the same book)."""
        if isinstance(result, NotSent) and result.local:
            return self
        if isinstance(result, NotSent | Ambiguous):
            return self.mark_failed(address, now)
        return self.mark_ok(address)

    def needs_resolve(self, now: float) -> bool:
        return now >= self.resolved_at + max(self.ttl, self.policy.min_ttl)

    def updated(self, resolution: Resolution, now: float) -> AddressBook:
        """A fresh resolution: addresses that remain keep their health, vanished ones are dropped."""
        _check(resolution)
        known = {e.address: e for e in self.entries}
        entries = tuple(known.get(a, AddressHealth(a)) for a in dict.fromkeys(resolution.addresses))
        return attrs.evolve(
            self, entries=entries, resolved_at=now, ttl=resolution.ttl, cursor=self.cursor % len(entries)
        )

    def resolve_failed(self, now: float) -> AddressBook:
        """Re-resolution failed: keep serving the known addresses and ask DNS again after ``min_ttl``."""
        return attrs.evolve(self, resolved_at=now, ttl=0.0)
