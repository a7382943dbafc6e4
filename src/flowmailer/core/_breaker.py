"""The relay's circuit breaker: when Flowmailer or the network is down, stop sending and probe with one message.

Pure: the shell passes in the time each attempt started and ended, and does the waiting itself.
"""

from __future__ import annotations

import enum

import attrs

from flowmailer.core._checks import require, require_number
from flowmailer.core._outcomes import Ambiguous, NotSent, Transient

__all__ = ["BreakerState", "CircuitBreaker", "Permit", "says_down"]


class BreakerState(enum.Enum):
    #: Flowmailer answers: send freely.
    CLOSED = "closed"
    #: Flowmailer looked down: send nothing until the cool-down is over.
    OPEN = "open"
    #: The cool-down is over: one probe may go, or is out.
    HALF_OPEN = "half-open"


class Permit(enum.Enum):
    """What :meth:`CircuitBreaker.admit` allows the caller."""

    #: Closed: send.
    SEND = "send"
    #: Half-open: send exactly one message, the probe, and report how it ended.
    PROBE = "probe"
    #: Open, or the probe is still out: send nothing.
    HOLD = "hold"


def says_down(result: object) -> bool:
    """Whether what a request to Flowmailer ended in says Flowmailer or the network is down: a 5xx or 429, nothing
    sent, no answer. Anything else (accepted, refused, a search's answer) says it answered."""
    return isinstance(result, Transient | NotSent | Ambiguous)


@attrs.frozen
class CircuitBreaker:
    """Opens after ``threshold`` failures in a row, stays open for a cool-down, then lets one probe through.

    A relay draining a large backlog while Flowmailer is down would otherwise send every message in turn, each
    failing, so the load would grow with the backlog. Open, it sends nothing; after the cool-down (``cooldown``
    seconds, times ``multiplier`` for each probe that failed since, at most ``max_cooldown``, and never sooner
    than a ``Retry-After``) it is half-open and lets exactly one probe through. The probe's success closes it,
    and any other success too: Flowmailer answers again, so the backlog goes out at full speed at once.

    A failure counts only if its attempt started after the breaker last opened or closed: sends already in flight
    when it opened tell nothing new, and neither does the end of one begun before the outage was over.
    """

    threshold: int = 5
    cooldown: float = 1.0
    max_cooldown: float = 5.0
    multiplier: float = 2.0
    #: Failures in a row while closed.
    failures: int = 0
    #: Times it opened since the last success: the cool-down grows with each.
    trips: int = 0
    #: While open: when the cool-down ends and a probe may go. None while closed.
    open_until: float | None = None
    #: When the probe now out started; None when none is.
    probe_since: float | None = None
    #: When it last opened or closed; None before it ever did.
    changed_at: float | None = None

    def __attrs_post_init__(self) -> None:
        require(
            self.threshold >= 1,
            "CircuitBreaker.threshold",
            f"{self.threshold!r} failures would never open it",
            "give 1 or more failures in a row",
        )
        require_number(self.cooldown, "CircuitBreaker.cooldown", strict=True)
        require_number(self.max_cooldown, "CircuitBreaker.max_cooldown", minimum=self.cooldown)
        require_number(self.multiplier, "CircuitBreaker.multiplier", minimum=1.0)

    def state(self, now: float) -> BreakerState:
        if self.open_until is None:
            return BreakerState.CLOSED
        if self.probe_since is None and now < self.open_until:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def wait(self, now: float) -> float:
        """Seconds until a probe may go: 0 when closed, or half-open with no probe out."""
        if self.open_until is None or self.probe_since is not None:
            return 0.0
        return max(0.0, self.open_until - now)

    def admit(self, now: float) -> tuple[Permit, CircuitBreaker]:
        """May a message be sent at ``now``? A PROBE is the only one until it is reported (or withdrawn)."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return Permit.SEND, self
        if state is BreakerState.OPEN or self.probe_since is not None:
            return Permit.HOLD, self
        return Permit.PROBE, attrs.evolve(self, probe_since=now)

    def withdraw_probe(self) -> CircuitBreaker:
        """The probe was not sent after all (nothing was due, or its claim was lost): the next caller probes."""
        return attrs.evolve(self, probe_since=None)

    def succeeded(self, now: float) -> CircuitBreaker:
        """Flowmailer answered: closed, with no failure counted."""
        if self.open_until is None:
            return self if self.failures == 0 else attrs.evolve(self, failures=0)
        return attrs.evolve(self, failures=0, trips=0, open_until=None, probe_since=None, changed_at=now)

    def failed(self, now: float, *, started_at: float, retry_after: float | None = None) -> CircuitBreaker:
        """An attempt begun at ``started_at`` ended at ``now`` in an outcome that says Flowmailer is down."""
        if self.changed_at is not None and started_at < self.changed_at:
            return self  # begun before the last change: it was counted already, or the outage is over
        if self.open_until is None:
            if self.failures + 1 < self.threshold:
                return attrs.evolve(self, failures=self.failures + 1)
            return self._open(now, 1, retry_after)
        if self.probe_since is not None and started_at >= self.probe_since:
            return self._open(now, self.trips + 1, retry_after)
        return self  # a send begun before it opened, finishing while it is open: nothing new

    def _open(self, now: float, trips: int, retry_after: float | None) -> CircuitBreaker:
        try:
            cooldown = min(self.max_cooldown, self.cooldown * self.multiplier ** (trips - 1))
        except OverflowError:
            cooldown = self.max_cooldown
        until = now + max(cooldown, retry_after or 0.0)
        return attrs.evolve(self, failures=0, trips=trips, open_until=until, probe_since=None, changed_at=now)
