"""TrioTransport: the conformance suite, the configuration it refuses, and pipelining over real TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from flowmailer.adapters.trio_transport import TrioTransport
from flowmailer.testing._async_transport_conformance import check_async_transport
from tests.adapters.tls_server import TlsServer, tls_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TlsServer]:
    with tls_server(tmp_path) as s:
        yield s


@pytest.mark.parametrize("depth", [1, 3])
def test_trio_transport_passes_the_conformance_suite(server: TlsServer, depth: int) -> None:
    def factory() -> TrioTransport:
        return TrioTransport(ca_bundle=server.ca_bundle, connect_timeout=0.5, pipeline_depth=depth)

    trio.run(check_async_transport, factory, server)
