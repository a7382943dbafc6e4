"""The in-memory token store for async code: single flight with an anyio.Event (asyncio or trio), the core's
TokenPolicy deciding."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import anyio
import attrs

from flowmailer.core import (
    AccessToken,
    AuthenticationError,
    Credentials,
    FlowmailerError,
    TokenAction,
    TokenFreshness,
    TokenPolicy,
)

__all__ = ["AnyioTokenStore"]

_log = logging.getLogger(__name__)


@attrs.define
class _Slot:
    token: AccessToken | None = None
    refreshing: bool = False
    #: Set when the refresh in flight ends; replaced by each new refresh.
    done: anyio.Event = attrs.Factory(anyio.Event)
    failure: FlowmailerError | None = None
    refused: AuthenticationError | None = None
    #: Refreshes failed in a row, and when the next may start (None: at once).
    failures: int = 0
    retry_at: float | None = None


class AnyioTokenStore:
    """A :class:`flowmailer.ports.AsyncTokenStore` for the tasks of one event loop (asyncio or trio).

    ``now`` is wall time in epoch seconds (token expiry is wall time): give it the AsyncClient's ``wall_clock``.
    A refresh that fails while the old token still has time
    left is logged and the old token keeps serving.
    """

    def __init__(self, now: Callable[[], float] = time.time, policy: TokenPolicy | None = None) -> None:
        self._now = now
        self._policy = policy if policy is not None else TokenPolicy()
        self._slots: dict[tuple[str, str], _Slot] = {}

    async def token(self, credentials: Credentials, fetch: Callable[[], Awaitable[AccessToken]]) -> AccessToken:
        key = (credentials.account_id, credentials.client_id)
        slot = self._slots.get(key)
        if slot is None:  # not setdefault: a _Slot (and its Event) made for every call only to be thrown away
            slot = self._slots[key] = _Slot()
        waited = False
        while True:
            if slot.refused is not None:
                raise slot.refused
            action = self._policy.action(
                slot.token, self._now(), refresh_in_flight=slot.refreshing, retry_at=slot.retry_at
            )
            if action is TokenAction.FAIL:
                assert slot.failure is not None
                raise slot.failure  # the last refresh failed moments ago: its back-off runs
            if action is TokenAction.WAIT:
                await slot.done.wait()
                waited = True
                continue
            if waited and action is TokenAction.REFRESH_AND_WAIT and slot.failure is not None:
                raise slot.failure  # the refresh this task waited for failed: one attempt per wait
            if action is TokenAction.USE:
                assert slot.token is not None
                return slot.token
            break
        current = slot.token
        slot.refreshing, slot.done, slot.failure = True, anyio.Event(), None
        try:
            new = await fetch()
        except AuthenticationError as e:
            slot.refused, slot.token, slot.failure = e, None, e
            raise
        except FlowmailerError as e:
            slot.failure = e
            slot.failures += 1
            slot.retry_at = self._policy.retry_at(self._now(), slot.failures)
            still = None if current is None else self._policy.freshness(current, self._now())
            if action is TokenAction.USE_AND_REFRESH and current is not None and still is not TokenFreshness.EXPIRED:
                _log.warning(
                    "token refresh for client id %s failed, the current token serves on: %s", credentials.client_id, e
                )
                return current
            raise
        else:
            slot.token, slot.failures, slot.retry_at = new, 0, None
        finally:
            slot.refreshing = False
            slot.done.set()
        return new

    def invalidate(self, credentials: Credentials, token: AccessToken) -> None:
        slot = self._slots.get((credentials.account_id, credentials.client_id))
        if slot is not None and slot.token == token:
            slot.token = None
