"""FakeFlowmailer under load: 2 KB submits over 10 keep-alive TLS connections, driven by wrk.

The fake runs in this process (so its CPU time is measured exactly); wrk runs on the other core with one thread.
Installs nothing: without wrk it says how to get it and exits 0. Run: .venv/bin/python bench/bench_fake.py

Measured 2026-11-28 on the 2-core machine (the bar is 3,000/s), with other engineers' test suites running beside:
- load average 2.4 before the run: rounds of 4,852, 4,981 and 3,857 submits/s; best 4,981/s at 165 us of the
  fake's CPU per request (170-290 us across rounds: more when the fake's threads spread over both cores);
- load average 5.9 to 7.7: 3,287, 2,784 and 2,694/s at 178-191 us, the fake getting about half a core.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import attrs

from flowmailer.testing import FakeFlowmailer

HERE = Path(__file__).parent
CONNECTIONS = 10
SECONDS = int(os.environ.get("BENCH_FAKE_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_FAKE_ROUNDS", "3"))
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


@attrs.frozen
class Round:
    rate: float
    cpu_per_request: float
    core_share: float
    p99: str
    accepted: int
    requests: int
    connections: int
    handshakes: int
    one_copy_each: bool


def run_round(wrk: str) -> Round:
    """One wrk run against a fresh fake (fresh references, so every copy count must be exactly one)."""
    fake = FakeFlowmailer(addresses=("127.0.0.2",), token_lifetime=24 * 3600)
    with fake.running():
        env = dict(
            os.environ,
            FLOWMAILER_TOKEN=token(fake),
            FLOWMAILER_PATH=f"/{fake.account_id}/messages/submit",
            FLOWMAILER_BODY=submit_body(),
        )
        script, url = str(HERE / "submit.lua"), f"https://{fake.addresses[0]}:{fake.port}/"
        command = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", script, url]
        cpu0, wall0 = time.process_time(), time.monotonic()
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        records = fake.records()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    if rate is None or p99 is None:
        raise SystemExit(f"bench_fake: cannot read wrk's output:\n{out}")
    accepted = len(records.accepted)
    return Round(
        rate=float(rate[1]),
        cpu_per_request=cpu / max(accepted, 1),
        core_share=cpu / wall,
        p99=p99[1],
        accepted=accepted,
        requests=records.requests,
        connections=len(records.connections),
        handshakes=sum(records.handshakes_by_address.values()),
        one_copy_each=set(records.copies_by_reference.values()) == {1},
    )


def main() -> int:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("bench_fake: wrk is not installed, so nothing was measured. Install it with `apt-get install wrk`")
        print("(Debian/Ubuntu) or `brew install wrk` (macOS), then run `just bench fake` again.")
        return 0
    print(f"wrk: 1 thread, {CONNECTIONS} keep-alive TLS connections, {ROUNDS} rounds of {SECONDS} s of 2,048-byte")
    print(f"submits; load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("round  submits/s  fake CPU/request  fake core share  p99 latency  accepted/requests  conns  one copy each")
    rounds = []
    for i in range(ROUNDS):
        r = run_round(wrk)
        rounds.append(r)
        print(
            f"{i + 1:5d}  {r.rate:9.0f}  {r.cpu_per_request * 1e6:13.0f} us  {r.core_share:15.0%}  {r.p99:>11}"
            f"  {r.accepted:8d}/{r.requests:<8d}  {r.connections:5d}  {r.one_copy_each}"
        )
    best = max(rounds, key=lambda r: r.rate)
    verdict = "meets" if best.rate >= BAR else "is BELOW"
    print(f"best: {best.rate:.0f} submits/s at {best.cpu_per_request * 1e6:.0f} us of fake CPU per request;")
    print(f"it {verdict} the bar of {BAR:.0f}/s ({best.rate / BAR:.2f}x); load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    main()  # no sys.exit: bench/run.py runs every benchmark in one process
