"""The pytest plugin (entry point ``pytest11``): a FakeFlowmailer per test, and a client and an outbox wired to it.

Loaded by pytest wherever flowmailer is installed; the fixtures need the ``testing`` extra (``trustme``), imported
only when a test asks for one, so that a project without it runs its tests as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from flowmailer.app import Client
    from flowmailer.ports import Outbox
    from flowmailer.testing import FakeFlowmailer

__all__ = ["fake_flowmailer", "flowmailer_client", "flowmailer_outbox"]


@pytest.fixture
def fake_flowmailer() -> Iterator[FakeFlowmailer]:
    """A FakeFlowmailer on 127.0.0.1, started for the test and stopped after it: each test sees its own records."""
    from flowmailer.testing import FakeFlowmailer

    with FakeFlowmailer(addresses=("127.0.0.1",)).running() as fake:
        yield fake


@pytest.fixture
def flowmailer_client(fake_flowmailer: FakeFlowmailer) -> Iterator[Client]:
    """A Client of the fake's account (an ADMIN credential), trusting only the fake's CA."""
    from flowmailer.app import Client

    url = f"https://localhost:{fake_flowmailer.port}"  # the fake's certificate names localhost
    with Client(
        fake_flowmailer.client_credentials(), api_url=url, login_url=url, ca_bundle=str(fake_flowmailer.ca_bundle)
    ) as client:
        yield client


@pytest.fixture
def flowmailer_outbox(tmp_path: Path) -> Iterator[Outbox]:
    """A SQLite outbox in the test's own folder; drain it with ``Relay(flowmailer_outbox, flowmailer_client)``."""
    from flowmailer.adapters import SQLiteOutbox

    outbox = SQLiteOutbox(tmp_path / "flowmailer-outbox.db")
    try:
        yield outbox
    finally:
        outbox.close()
