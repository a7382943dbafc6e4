"""Running relay child processes against a FakeFlowmailer, and adding up what they printed."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

from flowmailer.core import SubmitMessage
from flowmailer.ports import Outbox
from flowmailer.testing._fake import FakeFlowmailer

CHILD = Path(__file__).with_name("relay_child.py")


def messages(n: int, start: int = 0) -> list[SubmitMessage]:
    """``n`` distinct messages of about 1 KB, as an application would enqueue them."""
    body = "Hello,\n\n" + "This is a test message from the relay chaos test. " * 18
    return [
        SubmitMessage(
            sender_address="app@example.com",
            recipient_address=f"user{i}@example.com",
            subject=f"Message {i}",
            text=body,
        )
        for i in range(start, start + n)
    ]


def enqueue(outbox: Outbox, n: int, batch: int = 500) -> None:
    for start in range(0, n, batch):
        outbox.enqueue_many(messages(min(batch, n - start), start))


def start_relay(
    fake: FakeFlowmailer,
    outbox_url: str,
    log: Path,
    owner: str,
    *,
    lease: float,
    batch_size: int,
    table: str = "flowmailer_outbox",
    forever: bool = False,
    refresh_ahead: float | None = None,
    log_records: Path | None = None,
    relay: str = "threaded",
    pipeline_depth: int = 1,
    slots: str | None = None,
) -> subprocess.Popen[bytes]:
    """One relay child (``relay``: "threaded", or the async relay on "asyncio" or "trio", pipelining
    ``pipeline_depth``) draining ``outbox_url``."""
    credential = fake.credential("ADMIN")
    command = [
        sys.executable,
        str(CHILD),
        f"--outbox={outbox_url}",
        f"--api-url={fake.api_url}",
        f"--login-url={fake.login_url}",
        f"--ca-bundle={fake.ca_bundle}",
        f"--addresses={','.join(fake.addresses)}",
        f"--account-id={fake.account_id}",
        f"--client-id={credential.client_id}",
        f"--owner={owner}",
        f"--lease={lease}",
        f"--batch-size={batch_size}",
        f"--table={table}",
        f"--relay={relay}",
        f"--pipeline-depth={pipeline_depth}",
        *(["--forever"] if forever else []),
        *([f"--refresh-ahead={refresh_ahead}"] if refresh_ahead is not None else []),
        *([f"--log-file={log_records}"] if log_records is not None else []),
        *([f"--slots={slots}"] if slots is not None else []),
    ]
    env = {**os.environ, "FLOWMAILER_CLIENT_SECRET": credential.client_secret}
    with log.open("ab") as out, log.with_suffix(".err").open("ab") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, env=env)


class Tally:
    """What the relay processes printed, added up (a line cut short by SIGKILL is skipped)."""

    def __init__(self, logs: list[Path]) -> None:
        self.sent: collections.Counter[str] = collections.Counter()
        self.sent_by: dict[str, set[str]] = collections.defaultdict(set)
        self.reconciled = 0
        self.retries: collections.Counter[str] = collections.Counter()
        self.dead: list[str] = []
        self.not_recorded = 0
        for log in logs:
            for line in log.read_text().splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if "sent" in item:
                    self.sent[item["sent"]] += 1
                    self.sent_by[log.stem].add(item["sent"])
                elif "reconciled" in item:
                    self.reconciled += 1
                elif "retry" in item:
                    self.retries[item["retry"]] += 1
                elif "dead" in item:
                    self.dead.append(f"{item['dead']}: {item['reason']}")
                elif "not_recorded" in item:
                    self.not_recorded += 1


def stderr_of(log: Path) -> str:
    path = log.with_suffix(".err")
    return path.read_text()[-3000:] if path.exists() else ""
