"""The default wiring: the one app module that builds concrete adapters (and reads the environment when asked).

The async adapters are imported inside the functions that build them, so that ``import flowmailer`` never loads
anyio or h11.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from flowmailer.adapters import (
    MAX_CONNECTIONS,
    MemoryTokenStore,
    PinnedResolver,
    SystemClock,
    SystemResolver,
    Urllib3Transport,
)
from flowmailer.core import ConfigurationError, Credentials, parse_resolve
from flowmailer.ports import AsyncTokenStore, AsyncTransport, Clock, Resolver, TokenStore, Transport

__all__ = [
    "MAX_CONNECTIONS",
    "async_token_store",
    "async_transport",
    "clock",
    "resolver",
    "settings_from_env",
    "token_store",
    "transport",
]

_REQUIRED = {
    "account_id": "FLOWMAILER_ACCOUNT_ID",
    "client_id": "FLOWMAILER_CLIENT_ID",
    "client_secret": "FLOWMAILER_CLIENT_SECRET",
}
_OPTIONAL = {"api_url": "FLOWMAILER_API_URL", "login_url": "FLOWMAILER_LOGIN_URL", "ca_bundle": "FLOWMAILER_CA_BUNDLE"}


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """Client keyword arguments from the environment; a missing variable is named, a secret is never shown."""
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for field, name in _REQUIRED.items():
        value = env.get(name, "").strip()
        if not value:
            raise ConfigurationError(name, "is not set", f"export {name} (see the Flowmailer dashboard's credentials)")
        values[field] = value
    settings: dict[str, object] = {"credentials": Credentials(**values)}
    settings.update({field: env[name] for field, name in _OPTIONAL.items() if env.get(name, "").strip()})
    if pins := env.get("FLOWMAILER_RESOLVE", "").strip():  # as `flowmailer simulate` prints it
        try:
            settings["resolver"] = PinnedResolver(parse_resolve(pins), SystemResolver())
        except ConfigurationError as e:
            raise ConfigurationError("FLOWMAILER_RESOLVE", e.problem, e.fix) from None
    return settings


def clock() -> Clock:
    return SystemClock()


def resolver() -> Resolver:
    return SystemResolver()


def token_store(clock: Clock) -> TokenStore:
    return MemoryTokenStore(clock)


def transport(*, ca_bundle: str | None, max_connections: int, max_connection_age: float, clock: Clock) -> Transport:
    return Urllib3Transport(
        ca_bundle=ca_bundle, max_connections=max_connections, max_connection_age=max_connection_age, clock=clock
    )


def async_transport(*, ca_bundle: str | None, max_connections: int, max_connection_age: float) -> AsyncTransport:
    from flowmailer.adapters.anyio_transport import AnyioTransport

    return AnyioTransport(ca_bundle=ca_bundle, max_connections=max_connections, max_connection_age=max_connection_age)


def async_token_store(now: Callable[[], float]) -> AsyncTokenStore:
    from flowmailer.adapters.anyio_token_store import AnyioTokenStore

    return AnyioTokenStore(now)
