"""The error root is split by blame, and every message says what to do next."""

from __future__ import annotations

import pickle

import pytest

from flowmailer.core import (
    AmbiguousError,
    AuthenticationError,
    ConfigurationError,
    ErrorDetail,
    FlowmailerError,
    RejectedError,
    TransientError,
)


def test_every_error_is_a_flowmailer_error() -> None:
    errors: list[FlowmailerError] = [
        ConfigurationError("x", "bad", "fix it"),
        RejectedError(400, ()),
        AuthenticationError("client-1", "invalid_client"),
        TransientError("down"),
        AmbiguousError("no answer"),
    ]
    assert all(isinstance(e, FlowmailerError) for e in errors)
    assert isinstance(errors[0], ValueError)


def test_configuration_error_names_the_field_and_the_fix() -> None:
    error = ConfigurationError("sender_address", "is empty", "give an email address")
    assert str(error) == "sender_address: is empty. give an email address"
    assert (error.field, error.problem, error.fix) == ("sender_address", "is empty", "give an email address")


def test_rejected_error_lists_all_errors_and_says_not_to_retry() -> None:
    details = [
        ErrorDetail(code="NotNull", default_message="may not be null", field="recipientAddress"),
        ErrorDetail(code="message.toobig"),
    ]
    error = RejectedError(400, details)
    assert error.errors == tuple(details)
    assert "recipientAddress: may not be null" in str(error)
    assert "message.toobig" in str(error)
    assert "do not retry" in str(error)
    assert "no error details" in str(RejectedError(403, []))
    assert str(RejectedError(404, [], "gone")) == "gone"


def test_authentication_error_names_the_client_id_and_the_lockout() -> None:
    error = AuthenticationError("client-1", "invalid_client")
    assert error.client_id == "client-1"
    assert "'client-1'" in str(error)
    assert "ten minutes" in str(error)


def test_transient_and_ambiguous_carry_what_the_caller_needs() -> None:
    assert TransientError("down", retry_after=2.0).retry_after == 2.0
    assert TransientError("down").retry_after is None
    error = AmbiguousError("reset after write", client_reference="ref:abc")
    assert error.client_reference == "ref:abc"
    assert AmbiguousError("x").client_reference is None


@pytest.mark.parametrize(
    "error",
    [
        ConfigurationError("x", "bad", "fix it"),
        RejectedError(400, [ErrorDetail(code="c", field="f")]),
        AuthenticationError("client-1", "invalid_client"),
        TransientError("down", retry_after=3.0),
        AmbiguousError("x", client_reference="ref:1"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling_across_processes(error: FlowmailerError) -> None:
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
