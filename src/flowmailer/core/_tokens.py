"""When to use the bearer token, when to refresh it ahead of expiry, and when to wait for a new one."""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

import attrs

from flowmailer.core._checks import require, require_number

__all__ = ["Expiring", "Lived", "TokenAction", "TokenFreshness", "TokenPolicy"]


class Expiring(Protocol):
    """Anything with an expiry time, like ``AccessToken`` (same clock as the ``now`` passed to the policy)."""

    @property
    def expires_at(self) -> float: ...


@runtime_checkable
class Lived(Protocol):
    """An expiring token that also knows how long it was issued for (``AccessToken``; None if unknown)."""

    @property
    def expires_at(self) -> float: ...

    @property
    def lifetime(self) -> float | None: ...


class TokenFreshness(enum.Enum):
    FRESH = "fresh"
    #: Still usable, but close enough to expiry that a refresh should start now.
    REFRESH_AHEAD = "refresh ahead"
    #: Missing, expired, or too close to expiry to send: fetch a token before the request.
    EXPIRED = "expired"


class TokenAction(enum.Enum):
    """What a request does about the token; at most one refresh is ever in flight per credential."""

    USE = "use"
    #: This caller refreshes now, inline, as the one refresh in flight, while other callers keep using the current
    #: token; if the refresh fails, the current token serves this caller too.
    USE_AND_REFRESH = "use and refresh"
    #: Start the one refresh and wait for it.
    REFRESH_AND_WAIT = "refresh and wait"
    #: Another request's refresh is in flight: wait for it, never start a second one.
    WAIT = "wait"
    #: A refresh failed moments ago and none may start before its back-off ends: fail as it did, ask nothing.
    FAIL = "fail"


@attrs.frozen
class TokenPolicy:
    """Flowmailer's tokens live 60 s: refresh 10 s ahead, and never send one with less than 1 s to live.

    Seconds, because what they cover (a token request's round trip, a request in flight outliving its token)
    does not scale with the lifetime; but never more than a fraction of a token's lifetime, or a token shorter
    than the margin would be refreshed on nearly every request.
    """

    #: Refresh starts this many seconds before expiry, while the token keeps serving.
    refresh_ahead: float = 10.0
    #: A token with less than this left counts as expired: a request sent with it could arrive too late.
    min_remaining: float = 1.0
    #: At most this fraction of a token's lifetime is spent refreshing ahead (a 2 s token: the last 0.4 s).
    refresh_fraction: float = 0.2
    #: At most this fraction of a token's lifetime counts as too close to expiry to send.
    min_remaining_fraction: float = 0.05
    #: After a failed refresh the next waits this long, doubling with each failure in a row up to the cap: while
    #: the login host is down, every request of the process must not ask it again at once.
    failure_backoff: float = 1.0
    failure_backoff_cap: float = 5.0

    def __attrs_post_init__(self) -> None:
        require_number(self.min_remaining, "TokenPolicy.min_remaining")
        require_number(self.refresh_ahead, "TokenPolicy.refresh_ahead")
        require_number(self.failure_backoff, "TokenPolicy.failure_backoff")
        require_number(self.failure_backoff_cap, "TokenPolicy.failure_backoff_cap", minimum=self.failure_backoff)
        for name in ("refresh_fraction", "min_remaining_fraction"):
            value = getattr(self, name)
            require_number(value, f"TokenPolicy.{name}")
            require(value < 1.0, f"TokenPolicy.{name}", f"{value!r} is not below 1", "give a fraction such as 0.2")
        require(
            self.refresh_fraction >= self.min_remaining_fraction,
            "TokenPolicy.refresh_fraction",
            f"{self.refresh_fraction!r} is less than min_remaining_fraction {self.min_remaining_fraction!r}",
            "refresh ahead at least as early as the token stops being used",
        )
        require(
            self.refresh_ahead >= self.min_remaining,
            "TokenPolicy.refresh_ahead",
            f"{self.refresh_ahead!r} is less than min_remaining {self.min_remaining!r}",
            "refresh ahead at least as early as the token stops being used",
        )

    def margins(self, token: Expiring) -> tuple[float, float]:
        """How long before ``token``'s expiry a refresh starts, and the least time left it is sent with."""
        # Not isinstance(token, Lived): a runtime protocol check costs more than the rest of this, every request.
        lifetime: float | None = getattr(token, "lifetime", None)
        if lifetime is None or lifetime <= 0:
            return self.refresh_ahead, self.min_remaining
        return (
            min(self.refresh_ahead, self.refresh_fraction * lifetime),
            min(self.min_remaining, self.min_remaining_fraction * lifetime),
        )

    def freshness(self, token: Expiring | None, now: float) -> TokenFreshness:
        if token is None:
            return TokenFreshness.EXPIRED
        ahead, least = self.margins(token)
        if now >= token.expires_at - least:
            return TokenFreshness.EXPIRED
        if now >= token.expires_at - ahead:
            return TokenFreshness.REFRESH_AHEAD
        return TokenFreshness.FRESH

    def retry_at(self, failed_at: float, failures: int) -> float:
        """When a refresh may start again after ``failures`` failed in a row, the last at ``failed_at``."""
        require(failures >= 1, "failures", f"{failures!r} failures", "count failed refreshes from 1")
        try:
            wait = min(self.failure_backoff_cap, self.failure_backoff * 2.0 ** (failures - 1))
        except OverflowError:
            wait = self.failure_backoff_cap
        return failed_at + wait

    def action(
        self, token: Expiring | None, now: float, *, refresh_in_flight: bool, retry_at: float | None = None
    ) -> TokenAction:
        """Single flight: a refresh starts only when none is in flight and no failure's back-off (``retry_at``)
        runs, and an expired token is never used."""
        freshness = self.freshness(token, now)
        backing_off = retry_at is not None and now < retry_at
        if freshness is TokenFreshness.EXPIRED:
            if refresh_in_flight:
                return TokenAction.WAIT
            return TokenAction.FAIL if backing_off else TokenAction.REFRESH_AND_WAIT
        if freshness is TokenFreshness.REFRESH_AHEAD and not refresh_in_flight and not backing_off:
            return TokenAction.USE_AND_REFRESH
        return TokenAction.USE
