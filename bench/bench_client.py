"""The Client beside a bare urllib3 pool and a naive requests client: 10 threads submitting 2 KB messages.

The servers run in other processes, so the CPU time measured here is the clients' alone: FakeFlowmailer (a child
Python process) and nginx answering 201 (skipped, with how to install it, when nginx is missing).
Targets: the Client at >= 0.8x the bare pool's requests/s, and >= 5x the naive client's. The machine's load average
is printed before and after: on a shared machine, compare only figures from one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import requests
import trustme
import urllib3
from requests.adapters import HTTPAdapter

from flowmailer.adapters import Urllib3Transport
from flowmailer.app import Client
from flowmailer.core import Credentials, SubmitMessage, message_to_json
from flowmailer.testing import StaticResolver

HERE = Path(__file__).parent
THREADS = 10
MESSAGES = int(os.environ.get("BENCH_CLIENT_MESSAGES", "3000"))
NAIVE_MESSAGES = max(THREADS, MESSAGES // 10)
#: The Client and the bare pool alternate this many times; each keeps its best round (the machine is shared).
ROUNDS = int(os.environ.get("BENCH_CLIENT_ROUNDS", "3"))
API_HOST = "api.flowmailer.test"
LOGIN_HOST = "login.flowmailer.test"
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
MEDIA_TYPE = "application/vnd.flowmailer.v1.12+json"


@attrs.frozen
class Target:
    """Where a server listens and how to talk to it."""

    name: str
    addresses: tuple[str, ...]
    port: int
    ca_bundle: str
    account_id: str
    client_id: str
    client_secret: str

    def url(self, host: str) -> str:
        return f"https://{host}:{self.port}"


@attrs.frozen
class Row:
    target: str
    client: str
    messages: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.messages


def message(n: int) -> SubmitMessage:
    """About 2 KB of JSON once tagged with a client reference."""
    return SubmitMessage(
        sender_address="bench@example.test",
        recipient_address=f"someone{n}@example.test",
        subject="Benchmark",
        text="x" * 1850,
        tags=("bench",),
    )


def measure(target: str, client: str, messages: int, submit: Callable[[int], None]) -> Row:
    """Run ``submit(i)`` for every i from THREADS threads; wall time and this process's CPU time."""
    counter = iter(range(messages))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                submit(i)
            except BaseException as e:  # noqa: BLE001 - reported after the run
                failures.append(e)
                return

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, t0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if failures:
        raise RuntimeError(f"{client} against {target} failed: {failures[0]!r}") from failures[0]
    return Row(target, client, messages, elapsed, usage.ru_utime + usage.ru_stime - cpu0)


def run_flowmailer(target: Target) -> Row:
    resolver = StaticResolver({API_HOST: target.addresses, LOGIN_HOST: target.addresses})
    credentials = Credentials(target.account_id, target.client_id, target.client_secret)
    transport = Urllib3Transport(ca_bundle=target.ca_bundle)
    with Client(
        credentials,
        api_url=target.url(API_HOST),
        login_url=target.url(LOGIN_HOST),
        transport=transport,
        resolver=resolver,
    ) as client:
        client.submit(message(-1))  # warm: the token and a first connection
        messages = [message(i) for i in range(MESSAGES)]  # the application's work, as the bare pool's body is
        return measure(target.name, "flowmailer Client", MESSAGES, lambda i: _ignore(client.submit(messages[i])))


def _ignore(_: object) -> None:
    return None


def fetch_token(target: Target, session: requests.Session) -> str:
    answer = session.post(
        f"https://{target.addresses[0]}:{target.port}/oauth/token",
        headers={"Host": LOGIN_HOST, "Accept": "application/json"},
        data={
            "client_id": target.client_id,
            "client_secret": target.client_secret,
            "grant_type": "client_credentials",
            "scope": "api",
        },
        verify=target.ca_bundle,  # per request: REQUESTS_CA_BUNDLE would override the session's
        timeout=30,
    )
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


class _PinnedName(HTTPAdapter):
    """Lets requests connect to an IP while TLS checks the DNS name, as /etc/hosts would."""

    def __init__(self, host: str) -> None:
        self._host = host
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._host
        kwargs["assert_hostname"] = self._host
        super().init_poolmanager(*args, **kwargs)


def _session(target: Target, host: str) -> requests.Session:
    session = requests.Session()
    session.mount("https://", _PinnedName(host))
    return session


def run_naive(target: Target) -> Row:
    """What the existing Python client does: a new session and a new token for every message."""
    body = message_to_json(message(0).with_client_reference("naive"))

    def submit(i: int) -> None:
        with _session(target, LOGIN_HOST) as login:
            token = fetch_token(target, login)
        with _session(target, API_HOST) as api:
            address = target.addresses[i % len(target.addresses)]
            answer = api.post(
                f"https://{address}:{target.port}/{target.account_id}/messages/submit",
                headers={
                    "Host": API_HOST,
                    "Accept": MEDIA_TYPE,
                    "Content-Type": MEDIA_TYPE,
                    "Authorization": f"Bearer {token}",
                },
                data=body,
                verify=target.ca_bundle,
                timeout=30,
            )
        if answer.status_code != 201:
            raise RuntimeError(f"HTTP {answer.status_code}")

    return measure(target.name, "naive requests", NAIVE_MESSAGES, submit)


def run_bare(target: Target) -> Row:
    """The floor: one urllib3 pool of 10 keep-alive connections, one token, one prebuilt body."""
    with _session(target, LOGIN_HOST) as login:
        token = fetch_token(target, login)
    body = message_to_json(message(0).with_client_reference("bare"))
    headers = {
        "Host": API_HOST,
        "Accept": MEDIA_TYPE,
        "Content-Type": MEDIA_TYPE,
        "Authorization": f"Bearer {token}",
    }
    path = f"/{target.account_id}/messages/submit"
    with urllib3.HTTPSConnectionPool(
        target.addresses[0],
        target.port,
        maxsize=THREADS,
        block=True,
        ca_certs=target.ca_bundle,
        server_hostname=API_HOST,
        assert_hostname=API_HOST,
    ) as pool:

        def submit(i: int) -> None:
            answer = pool.urlopen("POST", path, body=body, headers=headers, retries=False)
            if answer.status != 201:
                raise RuntimeError(f"HTTP {answer.status}")

        submit(-1)
        return measure(target.name, "bare urllib3 pool", MESSAGES, submit)


# --- servers ---------------------------------------------------------------------------------------------------


def serve_fake() -> None:
    """The child process: run FakeFlowmailer, describe it on stdout, stop when stdin closes."""
    from flowmailer.testing import FakeFlowmailer

    fake = FakeFlowmailer(ADDRESSES)
    with fake.running():
        credential = fake.credential()
        info = {
            "port": fake.port,
            "ca_bundle": str(fake.ca_bundle),
            "account_id": fake.account_id,
            "client_id": credential.client_id,
            "client_secret": credential.client_secret,
        }
        print(json.dumps(info), flush=True)
        sys.stdin.read()


@contextlib.contextmanager
def fake_server() -> Iterator[Target]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        yield Target("FakeFlowmailer", ADDRESSES, **info)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def _free_port() -> int:
    for _ in range(50):
        with socket.create_server((ADDRESSES[0], 0)) as s:
            port: int = s.getsockname()[1]
        with contextlib.ExitStack() as stack:
            try:
                for a in ADDRESSES:
                    stack.enter_context(socket.create_server((a, port)))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on every address")


@contextlib.contextmanager
def nginx_server() -> Iterator[Target | None]:
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if nginx is None:
        print("nginx is not installed, so its column is skipped: apt-get install -y nginx", flush=True)
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(f"{tmp}/ca.pem")
        leaf = ca.issue_cert(API_HOST, LOGIN_HOST)
        leaf.cert_chain_pems[0].write_to_path(f"{tmp}/cert.pem")
        for pem in leaf.cert_chain_pems[1:]:
            pem.write_to_path(f"{tmp}/cert.pem", append=True)
        leaf.private_key_pem.write_to_path(f"{tmp}/key.pem")
        port = _free_port()
        listen = "\n".join(f"        listen {a}:{port} ssl;" for a in ADDRESSES)
        config = (HERE / "nginx-bench.conf").read_text()
        config = config.format(tmp=tmp, port=port, listen=listen, cert=f"{tmp}/cert.pem", key=f"{tmp}/key.pem")
        Path(f"{tmp}/nginx.conf").write_text(config)
        child = subprocess.Popen([nginx, "-p", tmp, "-c", f"{tmp}/nginx.conf", "-e", f"{tmp}/error.log"])
        try:
            _wait_listening(ADDRESSES[0], port, child)
            yield Target("nginx", ADDRESSES, port, f"{tmp}/ca.pem", "10001", "bench", "bench-secret")
        finally:
            child.terminate()
            child.wait(timeout=30)


def _wait_listening(address: str, port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"nginx exited with {child.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError("nginx did not start listening within 10 s")


# --- report ----------------------------------------------------------------------------------------------------


@attrs.frozen
class Best:
    """One client's rounds against one server: the highest rate and the lowest CPU per request, each on its own."""

    target: str
    client: str
    rate: float
    cpu_ms: float

    @classmethod
    def of(cls, rows: list[Row]) -> Best:
        return cls(rows[0].target, rows[0].client, max(r.rate for r in rows), min(r.cpu_ms for r in rows))


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def report(rows: list[Best], before: str) -> None:
    print(
        f"{THREADS} threads, {MESSAGES} messages (naive: {NAIVE_MESSAGES}), best of {ROUNDS} alternating rounds for "
        "the Client and the bare pool; client CPU is this process's (getrusage), the servers run in others"
    )
    print(f"before: {before}; after: {load()}")
    print(f"{'server':<16}{'client':<20}{'requests/s':>12}{'CPU ms/request':>16}")
    for r in rows:
        print(f"{r.target:<16}{r.client:<20}{r.rate:>12.0f}{r.cpu_ms:>16.3f}")
    for target in dict.fromkeys(r.target for r in rows):
        by = {r.client: r for r in rows if r.target == target}
        ours, bare, naive = by["flowmailer Client"], by["bare urllib3 pool"], by["naive requests"]
        print(
            f"{target}: Client/bare = {ours.rate / bare.rate:.2f}x requests/s (target >= 0.8), "
            f"{ours.cpu_ms / bare.cpu_ms:.2f}x CPU per request; "
            f"Client/naive = {ours.rate / naive.rate:.1f}x requests/s (target >= 5), "
            f"{ours.cpu_ms / naive.cpu_ms:.3f}x CPU per request"
        )


def main() -> int:
    before = load()
    rows: list[Best] = []
    with fake_server() as fake:
        rows += run_all(fake)
    with nginx_server() as nginx:
        if nginx is not None:
            rows += run_all(nginx)
    report(rows, before)
    return 0


def run_all(target: Target) -> list[Best]:
    bare: list[Row] = []
    ours: list[Row] = []
    for _ in range(ROUNDS):
        bare.append(run_bare(target))
        ours.append(run_flowmailer(target))
    return [Best.of(bare), Best.of(ours), Best.of([run_naive(target)])]


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-fake"]:
        serve_fake()
    else:
        sys.exit(main())
