"""What a log record is about: the message a relay worker is sending, carried into every record on the way.

A relay worker sets the message's context once (``about``); the client's records of the requests it makes for
that message pick it up (``context``), so a handler sees the outbox id, client reference and attempt in each
record's ``extra`` without the client knowing about outboxes. Plain values only: never a secret, a token or a body.
"""

from __future__ import annotations

import contextlib
import contextvars
import types
from collections.abc import Iterator, Mapping

from flowmailer.core import Claim

__all__ = ["about", "about_claim", "context"]

_NONE: Mapping[str, object] = types.MappingProxyType({})
_CONTEXT: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar("flowmailer_log_context", default=_NONE)


@contextlib.contextmanager
def about(**fields: object) -> Iterator[None]:
    """Records logged inside the block (in this thread or task) carry ``fields`` as extra attributes."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def about_claim(claim: Claim, **fields: object) -> dict[str, object]:
    """The context of a record about one claimed outbox row: its id, client reference and send attempt."""
    return {"outbox_id": claim.id, "client_reference": claim.client_reference, "attempt": claim.attempts, **fields}


def context(**fields: object) -> dict[str, object]:
    """The ``extra`` of a record: the message in hand (if any), and ``fields``."""
    return {**_CONTEXT.get(), **fields}
