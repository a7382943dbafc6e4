"""Turns a Config into the adapters a sub-command works with; the one place the command builds them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flowmailer.cli._config import DEFAULT_SOURCE, Config, PostgresLocation, SqliteLocation
from flowmailer.core import ConfigurationError

if TYPE_CHECKING:
    from flowmailer.adapters import Urllib3Transport
    from flowmailer.adapters.anyio_transport import AnyioTransport
    from flowmailer.app import Client
    from flowmailer.app.async_client import AsyncClient
    from flowmailer.core import Credentials
    from flowmailer.ports import ConnectionSlots, Observer, Outbox, ReportStore, Resolver, TokenStore, Transport

__all__ = [
    "build_async_clients",
    "build_async_transport",
    "build_client",
    "build_clients",
    "open_outbox",
    "open_slots",
    "resolver",
    "store_path",
]


def resolver(config: Config) -> Resolver:
    """The system's resolver, behind the configured pins if there are any."""
    from flowmailer.adapters import PinnedResolver, SystemResolver

    return PinnedResolver(config.resolve, SystemResolver()) if config.resolve else SystemResolver()


def open_outbox(config: Config, *, create: bool = False, read_only: bool = False) -> Outbox:
    """The configured outbox; unless ``create``, a SQLite file must exist and be an outbox already (a typo must not
    start an empty outbox, nor turn another program's database into one); ``read_only`` writes nothing to it."""
    location = config.require_outbox()
    if isinstance(location, SqliteLocation):
        from flowmailer.adapters.sqlite_outbox import SQLiteOutbox

        if not create and not location.path.exists():
            if config.sources.get("outbox") == DEFAULT_SOURCE:
                raise ConfigurationError(
                    "outbox",
                    f"the default file {str(location.path)!r} does not exist",
                    "create it with `flowmailer outbox init`, or name your outbox with --outbox or FLOWMAILER_OUTBOX",
                )
            raise ConfigurationError(
                "outbox",
                f"{str(location.path)!r} does not exist",
                "check the path, or create the outbox with `flowmailer outbox init`",
            )
        try:
            return SQLiteOutbox(location.path, create=create, read_only=read_only)
        except ConfigurationError as e:
            raise ConfigurationError("outbox", e.problem, e.fix) from None
    assert isinstance(location, PostgresLocation)
    from flowmailer.adapters.postgres_outbox import PostgresOutbox

    outbox = PostgresOutbox(location.dsn)
    if create:
        try:
            outbox.create_schema()
        except BaseException:
            outbox.close()
            raise
    return outbox


def open_slots(config: Config, *, create: bool = False) -> ConnectionSlots:
    """The connection slots the relays on the configured outbox share: a table in its SQLite file, or one table
    (``public.flowmailer_connection_slots``) for every outbox in its PostgreSQL database, made now if ``create``."""
    location = config.require_outbox()
    if isinstance(location, SqliteLocation):
        from flowmailer.adapters.sqlite_connection_slots import SQLiteConnectionSlots

        return SQLiteConnectionSlots(location.path)
    assert isinstance(location, PostgresLocation)
    from flowmailer.adapters.postgres_connection_slots import PostgresConnectionSlots

    slots = PostgresConnectionSlots(location.dsn)
    if create:
        try:
            slots.create_schema()
        except BaseException:
            slots.close()
            raise
    return slots


def store_path(config: Config, given: str | None, flag: str) -> Path:
    """Where ``events follow`` keeps its cursors and ``stats`` its counts: the file ``flag`` names, else the
    configured SQLite outbox's own file (a PostgreSQL outbox has no file, so ``flag`` must name one)."""
    if given is not None:
        return Path(given)
    location = config.require_outbox()
    if isinstance(location, PostgresLocation):
        raise ConfigurationError(
            flag,
            f"is not given, and the outbox ({location.describe()}) is not a SQLite file to keep it in",
            f"name a SQLite file with {flag} FILE",
        )
    return location.path


def build_client(
    config: Config,
    *,
    observer: Observer | None = None,
    credentials: Credentials | None = None,
    transport: Transport | None = None,
    report_store: ReportStore | None = None,
    token_store: TokenStore | None = None,
) -> Client:
    """A Client for the configured account, with ``credentials`` or else the main ones (which must all be there),
    over ``transport`` or a new one, keeping its tokens in ``token_store`` or its own."""
    from flowmailer.app import Client

    return Client(
        credentials if credentials is not None else config.require_credentials(),
        api_url=config.api_url,
        login_url=config.login_url,
        transport=transport if transport is not None else build_transport(config),
        resolver=resolver(config),
        observer=observer,
        report_store=report_store,
        token_store=token_store,
    )


def build_clients(
    config: Config, *, observer: Observer | None = None, max_connections: int = 10, transport: Transport | None = None
) -> tuple[Client, Client | None]:
    """The submitting client and the reconciling one (None: the submitting one reconciles) of a relay.

    Both share one transport, so that the process never holds more than ``max_connections`` (at most 10)
    connections to Flowmailer, and one token store, so that a credential configured for both is refreshed once
    for the whole process, and a failed refresh backed off for both.
    """
    from flowmailer.adapters import MemoryTokenStore, SystemClock

    reconcile = config.reconcile_credentials()
    transport = transport if transport is not None else build_transport(config, max_connections)
    tokens = MemoryTokenStore(SystemClock())
    submitter = build_client(config, observer=observer, transport=transport, token_store=tokens)
    if reconcile is None:
        return submitter, None
    second = build_client(config, observer=observer, credentials=reconcile, transport=transport, token_store=tokens)
    return submitter, second


def build_transport(config: Config, max_connections: int = 10) -> Urllib3Transport:
    from flowmailer.adapters import Urllib3Transport
    from flowmailer.core import AddressPolicy

    return Urllib3Transport(
        ca_bundle=None if config.ca_bundle is None else str(config.ca_bundle),
        max_connections=max_connections,
        max_connection_age=AddressPolicy().max_connection_age,
    )


def build_async_transport(config: Config, max_connections: int, pipeline_depth: int) -> AnyioTransport:
    """The async relay's transport: ``max_connections`` connections, each pipelining up to ``pipeline_depth``."""
    with needs_extra("--pipeline-depth", "async", "anyio", "h11"):
        from flowmailer.adapters.anyio_transport import AnyioTransport
    from flowmailer.core import AddressPolicy

    return AnyioTransport(
        ca_bundle=None if config.ca_bundle is None else str(config.ca_bundle),
        max_connections=max_connections,
        pipeline_depth=pipeline_depth,
        max_connection_age=AddressPolicy().max_connection_age,
    )


def build_async_clients(
    config: Config, *, transport: AnyioTransport, observer: Observer | None = None
) -> tuple[AsyncClient, AsyncClient | None]:
    """``build_clients`` for the async relay: the same credentials, one transport and one token store for both."""
    from flowmailer.adapters.anyio_token_store import AnyioTokenStore
    from flowmailer.app.async_client import AsyncClient

    tokens = AnyioTokenStore()
    clients = [
        AsyncClient(
            credentials,
            api_url=config.api_url,
            login_url=config.login_url,
            transport=transport,
            resolver=resolver(config),
            observer=observer,
            token_store=tokens,
        )
        for credentials in (config.require_credentials(), config.reconcile_credentials())
        if credentials is not None
    ]
    return clients[0], clients[1] if len(clients) > 1 else None


@contextlib.contextmanager
def needs_extra(flag: str, extra: str, *modules: str) -> Iterator[None]:
    """An import in the block that finds one of ``modules`` missing is a ConfigurationError naming ``flag`` and the
    extra that brings it, at start, before any work."""
    try:
        yield
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in modules:
            raise
        missing = f"needs {e.name}, which is not installed"
        raise ConfigurationError(flag, missing, f"pip install 'flowmailer[{extra}]'") from e
