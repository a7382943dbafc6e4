"""FakeFlowmailer under load: 2 KB submits over 10 keep-alive TLS connections, driven by wrk.

The fake runs in this process (so its CPU time is measured exactly); wrk runs on the other core with one thread.
Installs nothing: without wrk it says how to get it and exits 0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from flowmailer.testing import FakeFlowmailer

HERE = Path(__file__).parent
CONNECTIONS = 10
SECONDS = int(os.environ.get("BENCH_FAKE_SECONDS", "10"))
BAR = 3000.0


def submit_body() -> str:
    """A 2,048-byte SubmitMessage whose reference tag wrk fills in (``%REF%`` becomes 12 digits)."""
    message = {
        "messageType": "EMAIL",
        "senderAddress": "bench@example.test",
        "recipientAddress": "someone@example.test",
        "subject": "Benchmark",
        "tags": ["bench", "ref:%REF%"],
        "text": "",
    }
    size = len(json.dumps(message, separators=(",", ":"))) + len("000000000000") - len("%REF%")
    message["text"] = "x" * (2048 - size)
    body = json.dumps(message, separators=(",", ":"))
    assert len(body) - len("%REF%") + 12 == 2048
    return body


def token(fake: FakeFlowmailer) -> str:
    credential = fake.credential()
    form = urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": credential.client_id,
            "client_secret": credential.client_secret,
            "scope": "api",
        }
    ).encode()
    raw = socket.create_connection((fake.addresses[0], fake.port))
    with fake.client_ssl_context().wrap_socket(raw, server_hostname="login.flowmailer.test") as sock:
        head = (
            "POST /oauth/token HTTP/1.1\r\nHost: login.flowmailer.test\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\n\r\n"
        )
        sock.sendall(head.encode() + form)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    access: str = json.loads(answer.partition(b"\r\n\r\n")[2])["access_token"]
    return access


def main() -> int:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("bench_fake: wrk is not installed, so nothing was measured. Install it with `apt-get install wrk`")
        print("(Debian/Ubuntu) or `brew install wrk` (macOS), then run `just bench fake` again.")
        return 0
    fake = FakeFlowmailer(addresses=("127.0.0.2",), token_lifetime=24 * 3600)
    with fake.running():
        env = dict(
            os.environ,
            FLOWMAILER_TOKEN=token(fake),
            FLOWMAILER_PATH=f"/{fake.account_id}/messages/submit",
            FLOWMAILER_BODY=submit_body(),
        )
        command = [
            wrk,
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{SECONDS}s",
            "--latency",
            "-s",
            str(HERE / "submit.lua"),
            f"https://{fake.addresses[0]}:{fake.port}/",
        ]
        cpu0, wall0 = time.process_time(), time.monotonic()
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        records = fake.records()
    accepted = len(records.accepted)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    latency = re.search(r"99%\s+(\S+)", out)
    copies = set(records.copies_by_reference.values())
    handshakes = sum(records.handshakes_by_address.values())
    per_request = cpu / max(accepted, 1) * 1e6
    print(f"wrk: 1 thread, {CONNECTIONS} keep-alive TLS connections, {SECONDS} s of 2,048-byte submits")
    print(f"submits/s (wrk)        {rate:10.0f}   (bar: {BAR:.0f}; {rate / BAR:.2f}x the bar)")
    print(f"accepted by the fake   {accepted:10d}   of {records.requests} requests; statuses {dict(records.statuses)}")
    print(f"connections            {len(records.connections):10d}   (TLS handshakes {handshakes})")
    print(f"p99 latency            {latency[1] if latency else '?':>10}")
    print(f"fake CPU per request   {per_request:10.1f} us ({cpu / wall:.0%} of one core over {wall:.1f} s)")
    print(f"copies per reference   {sorted(copies)} (exactly one each: {copies == {1}})")
    if rate < BAR:
        print(f"BELOW THE BAR: {rate:.0f} < {BAR:.0f} submits/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
