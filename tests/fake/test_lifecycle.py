"""Running FakeFlowmailer: from sync code, from async code (asyncio and trio), and a hundred times over without
leaking."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading

import anyio
import pytest

from flowmailer.core import Credentials
from flowmailer.testing import API_HOST, FakeFlowmailer, Mode
from tests.fake.raw import RawClient, message, request_bytes


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_starting_and_stopping_100_times_leaks_no_thread_socket_or_fd() -> None:
    with FakeFlowmailer().running():
        pass  # warm up lazy imports and caches
    threads, fds = set(threading.enumerate()), _open_fds()
    for i in range(100):
        fake = FakeFlowmailer(addresses=["127.0.0.2", "127.0.0.3"])
        fake.set_mode("127.0.0.3", Mode.BLACKHOLE)
        with fake.running():
            idle = RawClient(fake)  # still open when the fake stops
            blackholed = socket.create_connection(("127.0.0.3", fake.port))
            with RawClient(fake) as client:
                assert client.token(fake.credential()).status == 200
            if i % 10 == 0:
                fake.set_mode("127.0.0.2", Mode.REFUSE)
                fake.set_mode("127.0.0.2", Mode.HEALTHY)
            fake.wait_until(lambda r: len(r.connections) == 3)
        idle.close()
        blackholed.close()
    assert set(threading.enumerate()) - threads == set()  # one that existed may end (trio's idle workers do)
    assert _open_fds() == fds


@pytest.mark.anyio
async def test_serving_runs_the_fake_for_async_code() -> None:
    async with FakeFlowmailer().serving() as fake:
        stream = await anyio.connect_tcp(
            fake.addresses[0],
            fake.port,
            ssl_context=fake.client_ssl_context(),
            tls_hostname=API_HOST,
            tls_standard_compatible=False,
        )
        await stream.send(request_bytes("GET", "/10001/messages", headers={"Connection": "close"}))
        answer = b""
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                answer += await stream.receive()
        await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 401 ")


def test_client_ssl_context_trusts_only_the_fake_ca() -> None:
    fake = FakeFlowmailer()
    context = fake.client_ssl_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1


def test_a_restarted_fake_keeps_its_port_messages_and_records() -> None:
    fake = FakeFlowmailer()
    with fake.running(), RawClient(fake) as client:
        auth = client.bearer(fake.credential())
        location = client.request("POST", "/10001/messages/submit", headers=auth, body=message()).headers["location"]
        port = fake.port
    with fake.running(), RawClient(fake) as client:
        assert fake.port == port
        message_id = location.rsplit("/", 1)[1]
        assert client.request("GET", f"/10001/messages/{message_id}", headers=auth).status == 200
    assert [m.message_id for m in fake.records().accepted] == [message_id]


def test_client_credentials_are_the_core_value_for_a_role() -> None:
    fake = FakeFlowmailer()
    assert fake.client_credentials("FEATURE_SUBMITMESSAGE") == Credentials(
        "10001", "fake-submitter", "fake-submitter-secret"
    )


def test_repr_says_whether_it_runs() -> None:
    fake = FakeFlowmailer(addresses=["127.0.0.2"])
    assert repr(fake) == "<FakeFlowmailer addresses=('127.0.0.2',) stopped>"
    with fake.running():
        assert repr(fake) == f"<FakeFlowmailer addresses=('127.0.0.2',) port={fake.port}, running>"
