"""What the relay needs from clients: prove the credential works, send one message, and find messages by tag."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any, Protocol

from flowmailer.core import Message, SubmitMessage

__all__ = ["AsyncReconciler", "AsyncSubmitter", "Reconciler", "Submitter"]


class Submitter(Protocol):
    """The calls of :class:`flowmailer.app.Client` the relay makes; a test may pass a small fake instead.

    ``check_credentials`` gets a token (or uses the one held) and returns when it expires; the relay calls it once
    at start, so that refused credentials stop it at once rather than at the first message. ``submit`` returns
    Flowmailer's message id after a 201 and otherwise raises a ``FlowmailerError`` (``RejectedError``,
    ``TransientError``, ``AmbiguousError``, ``AuthenticationError``).
    """

    def check_credentials(self) -> float: ...

    def submit(self, message: SubmitMessage) -> str: ...

    def messages_by_tag(self, tag: str) -> Iterable[Message]: ...


class Reconciler(Protocol):
    """Finds messages by tag: how the relay learns whether Flowmailer has an ambiguous submission.

    A :class:`flowmailer.app.Client` whose credential's role may read messages; a submit-only
    (FEATURE_SUBMITMESSAGE) credential is refused with ``RejectedError`` 403. ``check_credentials``, as for
    :class:`Submitter`, is asked once at start.
    """

    def check_credentials(self) -> float: ...

    def messages_by_tag(self, tag: str) -> Iterable[Message]: ...


class AsyncSubmitter(Protocol):
    """:class:`Submitter` for the async relay: the calls of ``AsyncClient`` it makes, each awaited."""

    def check_credentials(self) -> Coroutine[Any, Any, float]: ...

    def submit(self, message: SubmitMessage) -> Coroutine[Any, Any, str]: ...

    def messages_by_tag(self, tag: str) -> AsyncIterator[Message]: ...


class AsyncReconciler(Protocol):
    """:class:`Reconciler` for the async relay: an ``AsyncClient`` whose credential may read messages."""

    def check_credentials(self) -> Coroutine[Any, Any, float]: ...

    def messages_by_tag(self, tag: str) -> AsyncIterator[Message]: ...
