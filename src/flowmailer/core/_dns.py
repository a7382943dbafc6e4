"""What a resolver hands back."""

from __future__ import annotations

import attrs

__all__ = ["Resolution"]


@attrs.frozen
class Resolution:
    """Every address a DNS name resolved to (A and AAAA), and how long the answer may be trusted."""

    addresses: tuple[str, ...]
    ttl: float
