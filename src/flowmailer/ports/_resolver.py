"""How a DNS name becomes addresses."""

from __future__ import annotations

from typing import Protocol

from flowmailer.core import NotSent, Resolution

__all__ = ["Resolver"]


class Resolver(Protocol):
    """Resolves ``host`` to every A and AAAA address, with a TTL; ``NotSent`` when the name does not resolve."""

    def resolve(self, host: str, port: int) -> Resolution | NotSent: ...
