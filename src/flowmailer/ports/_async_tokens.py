"""Where bearer tokens live between requests, for the async shell."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from flowmailer.core import AccessToken, Credentials

__all__ = ["AsyncTokenStore"]


class AsyncTokenStore(Protocol):
    """The async-coloured twin of :class:`TokenStore`: one token per credential, at most one refresh in flight.

    ``fetch`` asks Flowmailer for a new token and raises a ``FlowmailerError`` when it cannot. After an
    ``AuthenticationError`` the store never calls ``fetch`` for that credential again and re-raises it instead.
    """

    async def token(self, credentials: Credentials, fetch: Callable[[], Awaitable[AccessToken]]) -> AccessToken:
        """A token with time left to live: the stored one, or a new one from ``fetch``."""
        ...

    def invalidate(self, credentials: Credentials, token: AccessToken) -> None:
        """Flowmailer refused ``token`` (401 invalid_token): the next ``token`` call fetches, unless it was replaced."""
        ...
