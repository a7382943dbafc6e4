"""SingleClaimOutcomes: the one-claim shorthands every outbox here inherits, each one ``settle``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flowmailer.core import Claim, LeaseLostError, SubmissionState, SubmitMessage
from flowmailer.testing import FakeClock, MemoryOutbox

_S = SubmissionState
MESSAGE = SubmitMessage(sender_address="s@example.com", recipient_address="r@example.com", text="x")
SHORTHANDS: dict[str, tuple[Callable[[MemoryOutbox, Claim, float], None], SubmissionState]] = {
    "mark_accepted": (lambda o, c, at: o.mark_accepted(c, "m-1"), _S.ACCEPTED),
    "schedule_retry": (lambda o, c, at: o.schedule_retry(c, at, "HTTP 503"), _S.RETRY_SCHEDULED),
    "schedule_reconcile": (lambda o, c, at: o.schedule_reconcile(c, at, "read timeout"), _S.RECONCILING),
    "mark_dead": (lambda o, c, at: o.mark_dead(c, "HTTP 400"), _S.DEAD),
    "release": (lambda o, c, at: o.release(c), _S.QUEUED),
}


@pytest.mark.parametrize("name", sorted(SHORTHANDS))
def test_each_shorthand_settles_its_claim_and_raises_lease_lost_when_it_no_longer_holds_it(name: str) -> None:
    record, state = SHORTHANDS[name]
    clock = FakeClock()
    outbox = MemoryOutbox(clock)
    outbox_id = outbox.enqueue(MESSAGE)
    [claim] = outbox.claim("a", 1, 30.0)
    record(outbox, claim, clock.now() + 5)
    status = outbox.status(outbox_id)
    assert status is not None
    assert status.state is state
    with pytest.raises(LeaseLostError):
        record(outbox, claim, clock.now() + 5)
    assert outbox.status(outbox_id) == status
