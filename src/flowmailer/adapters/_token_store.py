"""The in-memory token store: thread-safe, single flight, refresh ahead of expiry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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
from flowmailer.ports import Clock

__all__ = ["MemoryTokenStore"]

_log = logging.getLogger(__name__)


@attrs.define
class _Slot:
    token: AccessToken | None = None
    refreshing: bool = False
    #: Bumped whenever a refresh ends, so waiters know their refresh is over.
    generation: int = 0
    failure: FlowmailerError | None = None
    refused: AuthenticationError | None = None
    #: Refreshes failed in a row, and when the next may start (None: at once).
    failures: int = 0
    retry_at: float | None = None


class MemoryTokenStore:
    """A :class:`flowmailer.ports.TokenStore` for one process; the policy decides, this class only keeps state.

    A refresh that fails while the old token still has time left is logged and the old token keeps serving.
    """

    def __init__(self, clock: Clock, policy: TokenPolicy | None = None) -> None:
        self._clock = clock
        self._policy = policy if policy is not None else TokenPolicy()
        self._changed = threading.Condition()
        self._slots: dict[tuple[str, str], _Slot] = {}

    def token(self, credentials: Credentials, fetch: Callable[[], AccessToken]) -> AccessToken:
        slot = self._slots.get(_key(credentials))
        current = slot.token if slot is not None else None
        if current is not None and self._policy.freshness(current, self._clock.now()) is TokenFreshness.FRESH:
            return current  # a fresh token is used whatever else is going on: no lock on the hot path
        slot, action, current = self._decide(credentials)
        if action is TokenAction.USE:
            assert current is not None
            return current
        try:
            new = fetch()
        except AuthenticationError as e:
            self._finish(slot, None, e, refused=True)
            raise
        except FlowmailerError as e:
            self._finish(slot, None, e)
            if action is TokenAction.USE_AND_REFRESH and current is not None:
                still = self._policy.freshness(current, self._clock.now())
                if still is not TokenFreshness.EXPIRED:
                    _log.warning(
                        "token refresh for client id %s failed, the current token serves on: %s",
                        credentials.client_id,
                        e,
                    )
                    return current
            raise
        except BaseException:
            self._finish(slot, None, None)  # a bug or a KeyboardInterrupt: the next caller fetches, none waits forever
            raise
        self._finish(slot, new, None)
        return new

    def invalidate(self, credentials: Credentials, token: AccessToken) -> None:
        with self._changed:
            slot = self._slots.get(_key(credentials))
            if slot is not None and slot.token == token:
                slot.token = None

    def _decide(self, credentials: Credentials) -> tuple[_Slot, TokenAction, AccessToken | None]:
        """Wait while another thread's refresh is the one to use; claim the refresh when this thread must fetch."""
        with self._changed:
            slot = self._slots.setdefault(_key(credentials), _Slot())
            waited = False
            while True:
                if slot.refused is not None:
                    raise slot.refused
                action = self._policy.action(
                    slot.token, self._clock.now(), refresh_in_flight=slot.refreshing, retry_at=slot.retry_at
                )
                if action is TokenAction.FAIL:
                    assert slot.failure is not None
                    raise slot.failure  # the last refresh failed moments ago: its back-off runs
                if action is TokenAction.WAIT:
                    generation = slot.generation
                    while slot.generation == generation:
                        self._changed.wait()
                    waited = True
                    continue
                if waited and action is TokenAction.REFRESH_AND_WAIT and slot.failure is not None:
                    raise slot.failure  # the refresh this thread waited for failed: one attempt per wait
                if action is not TokenAction.USE:
                    slot.refreshing = True
                return slot, action, slot.token

    def _finish(
        self, slot: _Slot, token: AccessToken | None, error: FlowmailerError | None, *, refused: bool = False
    ) -> None:
        with self._changed:
            if token is not None:
                slot.token = token
            slot.failure = error
            if error is None:
                slot.failures, slot.retry_at = 0, None
            else:
                slot.failures += 1
                slot.retry_at = self._policy.retry_at(self._clock.now(), slot.failures)
            if refused:
                assert isinstance(error, AuthenticationError)
                slot.refused = error
                slot.token = None
            slot.refreshing = False
            slot.generation += 1
            self._changed.notify_all()


def _key(credentials: Credentials) -> tuple[str, str]:
    return credentials.account_id, credentials.client_id
