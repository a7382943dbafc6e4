"""FakeFlowmailer's transport: TLS names, addresses and their modes, keep-alive, pipelining, and what it records."""

from __future__ import annotations

import functools
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from flowmailer.core import ConfigurationError
from flowmailer.testing import API_HOST, LOGIN_HOST, FakeFlowmailer, Fault, Mode, Records
from tests.fake.raw import RawClient, message, request_bytes

SUBMIT = "/10001/messages/submit"


@pytest.fixture
def fake() -> Iterator[FakeFlowmailer]:
    with FakeFlowmailer().running() as running:
        yield running


def test_listens_on_every_address_on_one_port(fake: FakeFlowmailer) -> None:
    assert fake.addresses == ("127.0.0.2", "127.0.0.3", "127.0.0.4")
    for address in fake.addresses:
        with RawClient(fake, address) as client:
            assert client.token(fake.credential()).status == 200
    assert fake.records().connections_by_address == dict.fromkeys(fake.addresses, 1)


@pytest.mark.parametrize("name", [API_HOST, LOGIN_HOST, "localhost"])
def test_certificate_verifies_for_each_name(fake: FakeFlowmailer, name: str) -> None:
    with RawClient(fake, server_hostname=name) as client:
        assert client.token(fake.credential()).status == 200


def test_certificate_does_not_verify_for_an_ip_address(fake: FakeFlowmailer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        RawClient(fake, server_hostname=fake.addresses[0])


def test_origins_and_urls_name_the_fake_hosts_and_port(fake: FakeFlowmailer) -> None:
    assert fake.api_url == f"https://api.flowmailer.test:{fake.port}"
    assert fake.login_origin.host == "login.flowmailer.test"
    assert fake.api_origin.port == fake.port


def test_ca_bundle_exists_only_while_running() -> None:
    fake = FakeFlowmailer()
    with fake.running():
        bundle = fake.ca_bundle
        assert bundle.read_bytes() == fake.ca_pem
    assert not bundle.exists()
    with pytest.raises(ConfigurationError, match="not running"):
        _ = fake.ca_bundle


def test_keep_alive_serves_many_requests_on_one_connection(fake: FakeFlowmailer) -> None:
    with RawClient(fake) as client:
        auth = client.bearer(fake.credential())
        for _ in range(5):
            assert client.request("POST", SUBMIT, headers=auth, body=message()).status == 201
    records = fake.records()
    assert records.requests_per_connection == (6,)
    assert records.handshakes_by_address == {fake.addresses[0]: 1}


def test_pipelined_requests_are_answered_in_order_and_counted(fake: FakeFlowmailer) -> None:
    with RawClient(fake) as client:
        auth = client.bearer(fake.credential())
        subjects = [f"message {i}" for i in range(5)]
        client.send(b"".join(request_bytes("POST", SUBMIT, headers=auth, body=message(subject=s)) for s in subjects))
        locations = [client.read_response().headers["location"] for _ in subjects]
    records = fake.records()
    by_id = {m.message_id: m.body["subject"] for m in records.accepted}
    assert [by_id[loc.rsplit("/", 1)[1]] for loc in locations] == subjects
    assert records.pipelined_requests == 4


def test_connection_close_is_honoured(fake: FakeFlowmailer) -> None:
    with RawClient(fake) as client:
        answer = client.request("GET", "/oauth/token", host=LOGIN_HOST, headers={"Connection": "close"})
        assert answer.headers["connection"] == "close"
        assert client.recv(1) == b""


def test_malformed_request_is_400_and_closed(fake: FakeFlowmailer) -> None:
    with RawClient(fake) as client:
        client.send(b"NONSENSE\r\n\r\n")
        assert client.read_response().status == 400
        assert client.recv(1) == b""


def test_refuse_closes_the_listener_while_running(fake: FakeFlowmailer) -> None:
    address = fake.addresses[1]
    fake.set_mode(address, Mode.REFUSE)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, fake.port), timeout=5).close()
    with RawClient(fake, fake.addresses[0]) as client:
        assert client.token(fake.credential()).status == 200
    fake.set_mode(address, "healthy")
    with RawClient(fake, address) as client:
        assert client.token(fake.credential()).status == 200


def test_refuse_closes_open_connections_to_that_address(fake: FakeFlowmailer) -> None:
    with RawClient(fake) as client:
        assert client.token(fake.credential()).status == 200
        fake.set_mode(fake.addresses[0], Mode.REFUSE)
        assert client.recv(1) == b""


def test_blackhole_accepts_tcp_and_never_answers_the_handshake(fake: FakeFlowmailer) -> None:
    address = fake.addresses[2]
    fake.set_mode(address, Mode.BLACKHOLE)
    with pytest.raises(TimeoutError):
        RawClient(fake, address, timeout=0.2)
    records = fake.wait_until(lambda r: r.connections_by_address.get(address) == 1)
    assert records.handshakes_by_address.get(address) is None


def test_blackhole_silences_open_connections(fake: FakeFlowmailer) -> None:
    with RawClient(fake, timeout=0.2) as client:
        auth = client.bearer(fake.credential())
        fake.set_mode(fake.addresses[0], Mode.BLACKHOLE)
        client.send(request_bytes("POST", SUBMIT, headers=auth, body=message()))
        with pytest.raises(TimeoutError):
            client.read_response()
    assert fake.records().accepted == ()


def test_wrong_certificate_is_refused_by_a_verifying_client(fake: FakeFlowmailer) -> None:
    address = fake.addresses[0]
    fake.set_mode(address, Mode.WRONG_CERTIFICATE)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"wrong\.flowmailer\.test|match"):
        RawClient(fake, address)
    fake.set_mode(address, Mode.HEALTHY)
    with RawClient(fake, address) as client:
        assert client.token(fake.credential()).status == 200


def test_modes_of_unknown_addresses_are_refused(fake: FakeFlowmailer) -> None:
    with pytest.raises(ConfigurationError, match="address"):
        fake.set_mode("127.0.0.99", Mode.REFUSE)


def test_mode_set_before_start_applies_when_it_starts() -> None:
    fake = FakeFlowmailer()
    fake.set_mode("127.0.0.2", Mode.REFUSE)
    with fake.running(), pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", fake.port), timeout=5).close()


def _open_now(n: int, records: Records) -> bool:
    return records.open_connections == n


def test_records_the_most_connections_open_at_once_and_when_each_opened_and_closed(fake: FakeFlowmailer) -> None:
    clients = [RawClient(fake, fake.addresses[i % 3]) for i in range(4)]
    for left, c in reversed(list(enumerate(clients))):
        c.close()
        fake.wait_until(functools.partial(_open_now, left))  # each noticed closed before the next
    with RawClient(fake) as client:
        client.token(fake.credential())
    records = fake.records()
    assert records.max_open_connections == 4
    assert len(records.connections) == 5
    counts = [n for _, n in records.open_timeline]
    assert counts[:9] == [1, 2, 3, 4, 3, 2, 1, 0, 1]  # a timeline of every opening and closing, in order
    assert max(counts) == records.max_open_connections
    times = [t for t, _ in records.open_timeline]
    assert times == sorted(times)


def test_a_client_holding_one_connection_at_a_time_is_never_counted_holding_two(fake: FakeFlowmailer) -> None:
    """Each connection closed before the next opens, across the addresses: however the acceptor and the serving
    threads interleave (one closing its socket while the other counts), the fake counts at most one open. Before
    the serving thread counted its connection closed in the same lock hold as it left the poll, a run like this
    counted up to four."""
    n = 2000
    for i in range(n):
        socket.create_connection((fake.addresses[i % 3], fake.port), timeout=5).close()
    records = fake.wait_until(lambda r: len(r.connections) == n and r.open_connections == 0, timeout=60)
    assert records.max_open_connections <= 1  # 0 when each was closed before the fake accepted it
    assert {count for _, count in records.open_timeline} <= {0, 1}


def test_records_requests_per_status(fake: FakeFlowmailer) -> None:
    with RawClient(fake) as client:
        auth = client.bearer(fake.credential())
        client.request("POST", SUBMIT, headers=auth, body=message())
        client.request("POST", SUBMIT, headers=auth, body=message(senderAddress=None))
    assert fake.records().statuses == {200: 1, 201: 1, 400: 1}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"addresses": ["10.0.0.1"]}, "addresses"),
        ({"addresses": []}, "addresses"),
        ({"addresses": ["127.0.0.2", "127.0.0.2"]}, "addresses"),
        ({"port": 70000}, "port"),
        ({"token_lifetime": 0}, "token_lifetime"),
        ({"credentials": []}, "credentials"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        FakeFlowmailer(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_a_port_in_use_is_a_configuration_error() -> None:
    with FakeFlowmailer(addresses=["127.0.0.5"]).running() as first:
        second = FakeFlowmailer(addresses=["127.0.0.5"], port=first.port)
        with pytest.raises(ConfigurationError, match="port"), second.running():
            pass


def test_starting_twice_is_refused(fake: FakeFlowmailer) -> None:
    with pytest.raises(ConfigurationError, match="already running"), fake.running():
        pass


def test_expect_100_continue_is_answered_before_the_body(fake: FakeFlowmailer) -> None:
    with RawClient(fake) as client:
        auth = client.bearer(fake.credential())
        body = message()
        head, _, _ = request_bytes("POST", SUBMIT, headers={**auth, "Expect": "100-continue"}, body=body).partition(
            b"\r\n\r\n"
        )
        client.send(head + b"\r\n\r\n")
        assert client.read_response().status == 100
        client.send(body)
        assert client.read_response().status == 201


def test_an_address_taken_while_refusing_cannot_come_back(fake: FakeFlowmailer) -> None:
    fake.set_mode("127.0.0.3", Mode.REFUSE)
    with socket.create_server(("127.0.0.3", fake.port)), pytest.raises(ConfigurationError) as caught:
        fake.set_mode("127.0.0.3", Mode.HEALTHY)
    assert caught.value.field == "address"
    assert fake.mode("127.0.0.3") is Mode.REFUSE


def test_a_request_in_a_later_tls_record_counts_as_pipelined(fake: FakeFlowmailer) -> None:
    with RawClient(fake) as client:
        auth = client.bearer(fake.credential())
        request = request_bytes("POST", SUBMIT, headers=auth, body=message())
        client.send(request, request)  # the fake reads one record at a time: the second is not read yet
        assert [client.read_response().status for _ in range(2)] == [201, 201]
    assert fake.records().pipelined_requests == 1


def test_close_idle_connections_closes_only_those_waiting_for_a_request(fake: FakeFlowmailer) -> None:
    with RawClient(fake) as idle, RawClient(fake) as busy:
        auth = idle.bearer(fake.credential())
        fake.set_faults([Fault.delay(3600, path="submit")])
        busy.send(request_bytes("POST", SUBMIT, headers=auth, body=message()))
        fake.wait_until(lambda r: r.faults.get("delay") == 1)
        # The idle connection's thread goes back to waiting a moment after its answer left: poll, with a deadline.
        deadline = time.monotonic() + 10
        pause = threading.Event()  # never set: a polling interval that yields the core to the fake's threads
        while (closed := fake.close_idle_connections()) == 0 and time.monotonic() < deadline:
            pause.wait(0.005)
        assert closed == 1
        assert idle.recv(1) == b""
    assert fake.close_idle_connections() == 0
