"""The operating system's resolver, for the default wiring, and pins in front of it (``--resolve``)."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from flowmailer.core import ConfigurationError, NotSent, Resolution
from flowmailer.ports import Resolver

__all__ = ["PinnedResolver", "SystemResolver"]


class SystemResolver:
    """``getaddrinfo``: every A and AAAA record, trusted for a configured ``ttl`` (the OS hides the real TTLs)."""

    def __init__(self, ttl: float = 60.0) -> None:
        if not ttl > 0:
            raise ConfigurationError("ttl", f"{ttl!r} is not a positive number of seconds", "use e.g. ttl=60")
        self._ttl = ttl

    def resolve(self, host: str, port: int) -> Resolution | NotSent:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            return NotSent(f"could not resolve {host!r}: {e}")
        addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos if info[0] in _FAMILIES))
        if not addresses:
            return NotSent(f"{host!r} has no A or AAAA record")
        return Resolution(addresses, self._ttl)


_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class PinnedResolver:
    """A :class:`flowmailer.ports.Resolver` that answers the host names ``--resolve`` pins, and asks ``fallback``
    for every other one."""

    def __init__(self, pins: Mapping[str, tuple[str, ...]], fallback: Resolver, *, ttl: float = 300.0) -> None:
        self._pins = dict(pins)
        self._fallback = fallback
        self._ttl = ttl

    def resolve(self, host: str, port: int) -> Resolution | NotSent:
        addresses = self._pins.get(host.lower().rstrip("."))
        if addresses is None:
            return self._fallback.resolve(host, port)
        return Resolution(addresses, self._ttl)
