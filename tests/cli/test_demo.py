"""``flowmailer demo``: end to end as a subprocess, and its verdict on figures that show a loss."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from flowmailer.app import RelayStats
from flowmailer.cli._progress import Tally
from flowmailer.cli.demo import Figures
from flowmailer.core import SubmissionState
from flowmailer.testing import AcceptedMessage, Records


def figure(out: str, label: str) -> str:
    match = re.search(rf"^  {re.escape(label)}\s+(.+)$", out, re.MULTILINE)
    assert match is not None, f"no {label!r} line in:\n{out}"
    return match.group(1)


@pytest.mark.slow
@pytest.mark.parametrize("relay_flags", [(), ("--pipeline-depth", "8")], ids=["threaded", "pipelined"])
def test_demo_relays_every_message_once_through_the_faults_and_exits_0(relay_flags: tuple[str, ...]) -> None:
    command = [sys.executable, "-m", "flowmailer.cli", "demo", "--messages", "300", "--no-progress", "--seed", "7"]
    command += relay_flags
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert figure(out, "enqueued") == "300"
    assert figure(out, "accepted") == "300"
    assert figure(out, "distinct messages at the fake") == "300"
    assert figure(out, "duplicates at the fake") == "0"
    assert figure(out, "dead") == "0"
    assert int(figure(out, "tokens fetched")) >= 1
    traffic = figure(out, "traffic per address, as the fake saw it")
    assert re.search(r"127\.0\.0\.4 0 requests on 0 TLS connections \(\d+ connection\(s\) never answered\)", traffic)
    assert "accepted " in out.split("flowmailer demo: summary")[0]  # plain progress lines came first
    assert figure(out, "credentials") == "fake-submitter (FEATURE_SUBMITMESSAGE) submits, fake-admin (ADMIN) reconciles"
    assert "cannot be reconciled" not in done.stderr


def figures(*, enqueued: int, accepted: int, dead: int, copies: int) -> Figures:
    counts = dict.fromkeys(SubmissionState, 0) | {SubmissionState.ACCEPTED: accepted, SubmissionState.DEAD: dead}
    fake_accepted = tuple(
        AcceptedMessage(f"id{i}", {}, (f"ref:{i % accepted}",), "c", "127.0.0.2", 0.0) for i in range(copies)
    )
    records = Records(fake_accepted, (), 0, {}, {}, {}, "ref:")
    return Figures(enqueued, counts, records, RelayStats(), Tally().snapshot(), 1.0)


def test_figures_with_nothing_lost_or_doubled_have_no_problems() -> None:
    assert figures(enqueued=3, accepted=3, dead=0, copies=3).problems() == []


def test_figures_name_each_loss_and_duplicate() -> None:
    problems = figures(enqueued=3, accepted=2, dead=1, copies=3).problems()
    assert problems == [
        "1 of 3 messages were not accepted",
        "the fake holds 2 distinct messages, not 3",
        "the fake accepted 1 duplicate(s)",
        "1 message(s) are dead letters",
    ]
