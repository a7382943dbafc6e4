"""``outbox prune``, ``--json`` on ``status`` and ``dead list``, and ``status --reference`` / ``--recipient``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.cli import main
from flowmailer.core import ErrorDetail, SubmissionState, SubmitMessage
from flowmailer.testing import FakeClock

Capsys = pytest.CaptureFixture[str]
DAY = 86400.0


@pytest.fixture
def path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("FLOWMAILER_CONFIG", "FLOWMAILER_OUTBOX"):
        monkeypatch.delenv(name, raising=False)
    assert main(["outbox", "init", "--outbox", f"sqlite://{tmp_path / 'outbox.db'}"]) == 0
    return tmp_path / "outbox.db"


def url(path: Path) -> list[str]:
    return ["--outbox", f"sqlite://{path}"]


def message(to: str) -> SubmitMessage:
    return SubmitMessage(sender_address="s@example.com", recipient_address=to, text="x")


def test_prune_deletes_only_messages_accepted_longer_ago(path: Path, capsys: Capsys) -> None:
    clock = FakeClock(start=time.time() - 40 * DAY)
    outbox = SQLiteOutbox(path, clock=clock)
    old, dead, recent, queued = outbox.enqueue_many(message(f"b{i}@example.com") for i in range(4))
    c_old, c_dead = outbox.claim("test", 2, 30)
    outbox.mark_accepted(c_old, "m-old")
    outbox.mark_dead(c_dead, "HTTP 422")
    clock.advance(30 * DAY)  # ten days ago
    [c_recent] = outbox.claim("test", 1, 30)
    outbox.mark_accepted(c_recent, "m-recent")
    outbox.close()
    capsys.readouterr()
    assert main(["outbox", "prune", "--accepted-older-than", "30d", *url(path)]) == 0
    assert capsys.readouterr().out == "pruned 1 accepted message(s)\n"
    outbox = SQLiteOutbox(path)
    left = {i: s.state if (s := outbox.status(i)) else None for i in (old, dead, recent, queued)}
    outbox.close()
    assert left == {
        old: None,
        dead: SubmissionState.DEAD,
        recent: SubmissionState.ACCEPTED,
        queued: SubmissionState.QUEUED,
    }


@pytest.mark.parametrize("age", ["30", "thirty days", "-1d", "30y"])
def test_prune_refuses_an_age_without_a_unit_naming_the_flag(path: Path, age: str, capsys: Capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["outbox", "prune", f"--accepted-older-than={age}", *url(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--accepted-older-than" in err
    assert "give e.g. 30d" in err


def test_status_json_counts_and_one_message(path: Path, capsys: Capsys) -> None:
    outbox = SQLiteOutbox(path)
    [first, second] = outbox.enqueue_many([message("a@example.com"), message("b@example.com")])
    claim = outbox.claim("test", 1, 30)[0]
    outbox.mark_dead(claim, "HTTP 422", (ErrorDetail(field="recipientAddress", default_message="invalid"),))
    outbox.close()
    capsys.readouterr()
    assert main(["status", "--json", *url(path)]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts == {s.value: {"queued": 1, "dead": 1}.get(s.value, 0) for s in SubmissionState}
    assert main(["status", str(first), "--json", *url(path)]) == 0
    item = json.loads(capsys.readouterr().out)
    assert (item["id"], item["state"], item["client_reference"], item["attempts"]) == (
        first,
        "dead",
        claim.client_reference,
        1,
    )
    assert item["last_reason"] == "HTTP 422"
    assert item["errors"][0]["field"] == "recipientAddress"
    assert item["enqueued_at"].endswith("Z")
    assert item["due_at"] is None
    assert second != first


def test_dead_list_json_one_object_a_line_and_the_next_page_on_stderr(path: Path, capsys: Capsys) -> None:
    outbox = SQLiteOutbox(path)
    ids = outbox.enqueue_many(message(f"b{i}@example.com") for i in range(3))
    for claim in outbox.claim("test", 3, 30):
        outbox.mark_dead(claim, "HTTP 422")
    outbox.close()
    capsys.readouterr()
    assert main(["dead", "list", "--json", "--limit", "2", *url(path)]) == 0
    captured = capsys.readouterr()
    items = [json.loads(line) for line in captured.out.splitlines()]
    assert [(i["id"], i["state"], i["last_reason"]) for i in items] == [(n, "dead", "HTTP 422") for n in ids[:2]]
    assert f"--after {ids[1]}" in captured.err


def test_status_by_reference_and_by_recipient(path: Path, capsys: Capsys) -> None:
    outbox = SQLiteOutbox(path)
    ids = outbox.enqueue_many([message("bob@example.com"), message("eve@example.com"), message("Bob@Example.com")])
    ref = outbox.status(ids[1]).client_reference  # type: ignore[union-attr]
    outbox.close()
    capsys.readouterr()
    for given in (ref, f"ref:{ref}"):
        assert main(["status", "--reference", given, "--json", *url(path)]) == 0
        assert json.loads(capsys.readouterr().out)["id"] == ids[1]
    assert main(["status", "--reference", "nope", *url(path)]) == 1
    assert "client reference (not shown) is unknown" in capsys.readouterr().err
    assert main(["status", "--recipient", "BOB@example.com", "--json", *url(path)]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == [ids[2], ids[0]]
    assert main(["status", "--recipient", "bob@example.com", "--limit", "1", *url(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == [str(ids[2]), "queued"]
    assert lines[-1].startswith("more may be older")
    assert main(["status", "--recipient", "nobody@example.com", *url(path)]) == 0
    assert "no messages to that address" in capsys.readouterr().out


def test_status_takes_one_of_id_reference_and_recipient(path: Path, capsys: Capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["status", "1", "--reference", "abc", *url(path)])
    assert exit_.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
