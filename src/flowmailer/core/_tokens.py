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
    #: Use the current token, and start the one refresh in the background.
    USE_AND_REFRESH = "use and refresh"
    #: Start the one refresh and wait for it.
    REFRESH_AND_WAIT = "refresh and wait"
    #: Another request's refresh is in flight: wait for it, never start a second one.
    WAIT = "wait"


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

    def __attrs_post_init__(self) -> None:
        require_number(self.min_remaining, "TokenPolicy.min_remaining")
        require_number(self.refresh_ahead, "TokenPolicy.refresh_ahead")
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
        lifetime = token.lifetime if isinstance(token, Lived) else None
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

    def action(self, token: Expiring | None, now: float, *, refresh_in_flight: bool) -> TokenAction:
        """Single flight: a refresh starts only when none is in flight, and an expired token is never used."""
        freshness = self.freshness(token, now)
        if freshness is TokenFreshness.EXPIRED:
            return TokenAction.WAIT if refresh_in_flight else TokenAction.REFRESH_AND_WAIT
        if freshness is TokenFreshness.REFRESH_AHEAD and not refresh_in_flight:
            return TokenAction.USE_AND_REFRESH
        return TokenAction.USE
