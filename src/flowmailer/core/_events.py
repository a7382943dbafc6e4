"""What the shells tell an observer: plain values for metrics and logs. Never a secret in here."""

from __future__ import annotations

import attrs

from flowmailer.core._outcomes import Outcome

__all__ = ["AttemptFinished", "Event"]


@attrs.frozen
class AttemptFinished:
    """One request went out (or tried to) and ended in ``outcome``."""

    operation: str
    address: str
    outcome: Outcome
    duration: float
    attempt: int = 1


Event = AttemptFinished
