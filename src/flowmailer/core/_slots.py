"""One 10-connection limit across relays: a relay's share of its credential's connection slots, as pure decisions.

Flowmailer allows 10 concurrent connections per credential, not per process. Relays that share a credential and a
slot store (the outbox's database) hold leased slots there; this value decides how many to ask for, when to renew,
and how many connections the relay may have open meanwhile. The shell asks the store, feeds the answer back with
the time it asked, and caps its transport and its sends to :meth:`SlotShare.cap`. Both relays (threaded and async)
drive the same value.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import attrs

from flowmailer.core._checks import require, require_number

__all__ = ["MAX_SLOTS", "AcquireSlots", "RenewSlots", "SlotHolding", "SlotRequest", "SlotShare", "slots_to_hold"]

#: Flowmailer's guidelines: at most 10 concurrent connections per credential.
MAX_SLOTS = 10


@attrs.frozen
class SlotHolding:
    """What the slot store answered: the slots this owner holds now, and how many owners share the credential's
    slots (this one included; an owner that asked and holds none counts too, while its lease lasts)."""

    held: int
    owners: int


@attrs.frozen
class AcquireSlots:
    """Hold ``count`` slots in all: take free ones up to it, give back those above it, renew the lease."""

    count: int


@attrs.frozen
class RenewSlots:
    """Renew the lease on the slots held, as many as before."""


SlotRequest: TypeAlias = AcquireSlots | RenewSlots


@attrs.frozen
class SlotShare:
    """A relay's share of its credential's ``limit`` connection slots, leased for ``lease`` seconds at a time.

    The fair share is ``limit`` split over the owners the store reports, rounded up (the store never hands out more
    than ``limit`` in all, so the last owner gets what is left), and never more than ``want``. A relay above its
    share gives slots back, but only as its open connections come down to the share: ``request`` is told how many
    are open. ``margin`` is how long before the lease ends the relay stops using its connections, so that a lease
    the store could hand to another relay is never one still in use: it must cover one request (the transport's
    connect and read timeouts). The lease is renewed every third of what is left, so two renewals can fail before
    the relay has to stop.

    ``valid_until`` and ``next_at`` are on the shell's monotonic clock: a lease granted to a request sent at ``t``
    runs at least until ``t + lease``, whatever the store's own clock says, since the store stamped it after ``t``.
    """

    want: int
    lease: float = 60.0
    margin: float = 20.0
    limit: int = MAX_SLOTS
    held: int = 0
    owners: int = 1
    #: The slots are the relay's at least until then; -inf before the store first answered.
    valid_until: float = -math.inf
    #: When to ask the store next.
    next_at: float = -math.inf

    def __attrs_post_init__(self) -> None:
        require(
            1 <= self.limit <= MAX_SLOTS,
            "SlotShare.limit",
            f"{self.limit!r} is not between 1 and {MAX_SLOTS}",
            f"Flowmailer allows {MAX_SLOTS} connections per credential; give 1 to {MAX_SLOTS}",
        )
        require(
            1 <= self.want <= self.limit,
            "SlotShare.want",
            f"{self.want!r} is not between 1 and the limit of {self.limit}",
            "give the relay's concurrency",
        )
        require_number(self.lease, "SlotShare.lease", strict=True)
        require_number(self.margin, "SlotShare.margin", strict=True)
        require(
            self.margin < self.lease,
            "SlotShare.margin",
            f"{self.margin!r} s leaves nothing of a {self.lease!r} s lease",
            "give a lease longer than the margin (three times the longest request, say)",
        )

    @property
    def renew_every(self) -> float:
        return (self.lease - self.margin) / 3

    def fair(self) -> int:
        """This relay's fair share: the limit split over the owners, rounded up, at most ``want``."""
        return min(self.want, -(-self.limit // max(1, self.owners)))

    def settled(self) -> bool:
        """Holding no more than the fair share and at least the limit split over the owners rounded down: nothing
        to give back, and nothing owed to it that another relay would give back on its next round."""
        return min(self.want, self.limit // max(1, self.owners)) <= self.held <= self.fair()

    def usable(self, now: float) -> int:
        """The slots the relay may use at ``now``: none once the lease is within ``margin`` of its end."""
        return self.held if now < self.valid_until - self.margin else 0

    def cap(self, now: float) -> int:
        """How many connections the relay may have open and how many sends it may run at ``now``."""
        return min(self.usable(now), self.fair())

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def wake_at(self, now: float) -> float:
        """When something changes without an answer from the store: the next request, or the cap falling to 0."""
        stop_using = self.valid_until - self.margin
        return min(self.next_at, stop_using) if self.held and stop_using > now else self.next_at

    def request(self, in_use: int) -> SlotRequest:
        """What to ask the store, with ``in_use`` connections open or sends running now (after capping the
        transport and the sends to :meth:`cap`): up to the fair share, or down to it, never below what is in use."""
        count = max(self.fair(), min(self.held, in_use))
        return RenewSlots() if count == self.held else AcquireSlots(count)

    def answered(self, asked_at: float, holding: SlotHolding) -> SlotShare:
        """The store answered a request sent at ``asked_at`` (a renewal of a lease that ran out holds 0).

        Renewed every third of what the margin leaves; unsettled (slots to give back, or owed), asked again within
        a second, so that a relay joining or leaving moves the shares along in a few rounds."""
        require(
            0 <= holding.held <= self.limit,
            "SlotHolding.held",
            f"{holding.held!r} slots is not between 0 and the limit of {self.limit}",
            "the slot store must never hand out more than the limit",
        )
        share = attrs.evolve(self, held=holding.held, owners=max(1, holding.owners), valid_until=asked_at + self.lease)
        soon = self.renew_every if share.settled() else min(self.renew_every, 1.0)
        return attrs.evolve(share, next_at=asked_at + soon)

    def failed(self, now: float) -> SlotShare:
        """The store did not answer: ask again soon; the slots serve until the lease is within ``margin`` of its
        end, then none do."""
        return attrs.evolve(self, next_at=now + min(self.renew_every, 1.0))

    def released(self) -> SlotShare:
        """Every slot given back (the relay stopped)."""
        return attrs.evolve(self, held=0, valid_until=-math.inf, next_at=-math.inf)


def slots_to_hold(count: int, *, current: int, others: int, limit: int) -> int:
    """What a slot store grants an owner holding ``current`` that asks for ``count`` in all, while the other live
    owners hold ``others``: all of a smaller count (it gives the rest back), else as many more as are free."""
    return count if count <= current else min(count, max(current, limit - others))
