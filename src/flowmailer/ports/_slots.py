"""Connection slots shared by relays on one credential, and the transport's side: a cap on its open connections."""

from __future__ import annotations

from typing import Protocol

from flowmailer.core import SlotHolding

__all__ = ["AsyncConnectionCap", "ConnectionCap", "ConnectionSlots"]


class ConnectionSlots(Protocol):
    """Leased slots per credential (``key``, its client id): never more than the store's limit held in all.

    Each owner (a relay) holds a count of slots under one lease. A lease that runs out is gone, and with it the
    owner's slots, so a relay that died or hung gives its slots back within one lease without anyone's help.
    Owners that asked and hold none still count in ``owners`` while their lease lasts, so that those holding more
    than a fair share learn to give some back. Times come from the store's clock; ``lease`` is in seconds.
    """

    def acquire(self, key: str, owner: str, count: int, lease: float) -> SlotHolding:
        """Hold ``count`` slots in all: take free (or expired) ones up to it, give back those above it, and renew
        the lease; what the owner holds then (less than ``count`` when too few are free)."""
        ...

    def renew(self, key: str, owner: str, lease: float) -> SlotHolding:
        """Extend the owner's lease, holding as many as before; ``held`` is 0 if its lease had already run out."""
        ...

    def release(self, key: str, owner: str) -> None:
        """Give back every slot the owner holds, and stop counting it as an owner."""
        ...

    def close(self) -> None: ...


class ConnectionCap(Protocol):
    """A transport whose connection cap can be lowered (and raised back) while it runs."""

    def limit_connections(self, limit: int) -> int:
        """Hold at most ``limit`` connections from now on (never more than it was built with): idle ones over it
        close at once, those in use when they come back. Returns how many are open after closing the idle ones."""
        ...


class AsyncConnectionCap(Protocol):
    """:class:`ConnectionCap` for an async transport (closing a connection is awaited there)."""

    async def limit_connections(self, limit: int) -> int:
        """As :meth:`ConnectionCap.limit_connections`; a pipelining transport closes a busy connection once every
        request on it is answered, and gives it no new one meanwhile."""
        ...
