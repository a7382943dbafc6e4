"""``send``, ``status``, ``dead`` and ``outbox init``, run in-process against a SQLite outbox in a temporary folder."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from tests.outbox.postgres_server import PostgresServer

from flowmailer.adapters.sqlite_outbox import SQLiteOutbox
from flowmailer.cli import main
from flowmailer.core import ErrorDetail, SubmissionState, SubmitMessage

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def outbox_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("FLOWMAILER_CONFIG", "FLOWMAILER_OUTBOX", "FLOWMAILER_CLIENT_SECRET", "FLOWMAILER_CLIENT_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite://{tmp_path / 'outbox.db'}"
    assert main(["outbox", "init", "--outbox", url]) == 0
    return url


def sent_id(out: str) -> int:
    return int(out.split("outbox id: ")[1].split()[0])


def test_outbox_init_creates_the_sqlite_file_and_is_safe_to_repeat(tmp_path: Path, capsys: Capsys) -> None:
    url = f"sqlite://{tmp_path / 'new' / 'outbox.db'}"
    assert main(["outbox", "init", "--outbox", url]) == 0
    assert main(["outbox", "init", "--outbox", url]) == 0
    assert (tmp_path / "new" / "outbox.db").exists()
    assert "outbox ready" in capsys.readouterr().out


def test_send_from_flags_enqueues_and_prints_the_id_and_client_reference(
    outbox_url: str, tmp_path: Path, capsys: Capsys
) -> None:
    message = ["--to", "bob@example.com", "--from", "shop@example.com", "--subject", "Hi", "--text", "Hello"]
    assert main(["send", "--outbox", outbox_url, *message, "--tag", "welcome", "--flow-selector", "welcome"]) == 0
    out = capsys.readouterr().out
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    [claim] = outbox.claim("test", 10, 30)
    outbox.close()
    assert f"outbox id: {claim.id}" in out
    assert f"client reference: {claim.client_reference}" in out
    assert (claim.message.recipient_address, claim.message.subject, claim.message.text) == (
        "bob@example.com",
        "Hi",
        "Hello",
    )
    assert "welcome" in claim.message.tags
    assert claim.message.flow_selector == "welcome"


def test_send_from_a_json_file_in_flowmailers_shape(outbox_url: str, tmp_path: Path, capsys: Capsys) -> None:
    body = {
        "messageType": "EMAIL",
        "senderAddress": "shop@example.com",
        "recipientAddress": "bob@example.com",
        "subject": "Invoice",
        "html": "<p>Invoice</p>",
        "flowSelector": "invoice",
    }
    (tmp_path / "m.json").write_text(json.dumps(body), encoding="utf-8")
    assert main(["send", "--outbox", outbox_url, "--json", str(tmp_path / "m.json")]) == 0
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    status = outbox.status(sent_id(capsys.readouterr().out))
    [claim] = outbox.claim("test", 10, 30)
    outbox.close()
    assert status is not None
    assert status.state is SubmissionState.QUEUED
    assert (claim.message.flow_selector, claim.message.html) == ("invoice", "<p>Invoice</p>")


def test_send_an_eml_file_as_mimedata_with_addresses_from_its_headers(
    outbox_url: str, tmp_path: Path, capsys: Capsys
) -> None:
    raw = b"From: Shop <shop@example.com>\r\nTo: bob@example.com\r\nSubject: Hi\r\n\r\nHello\r\n"
    (tmp_path / "m.eml").write_bytes(raw)
    assert main(["send", "--outbox", outbox_url, "--eml", str(tmp_path / "m.eml"), "--tag", "t"]) == 0
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    [claim] = outbox.claim("test", 10, 30)
    outbox.close()
    assert claim.message.mimedata == raw
    assert (claim.message.sender_address, claim.message.recipient_address) == ("shop@example.com", "bob@example.com")


def test_send_with_the_same_dedupe_key_prints_the_first_id(outbox_url: str, capsys: Capsys) -> None:
    args = ["send", "--outbox", outbox_url, "--to", "b@example.com", "--from", "s@example.com", "--text", "x"]
    assert main([*args, "--dedupe-key", "order-1"]) == 0
    first = sent_id(capsys.readouterr().out)
    assert main([*args, "--dedupe-key", "order-1"]) == 0
    assert sent_id(capsys.readouterr().out) == first


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (["--from", "s@example.com", "--text", "x"], "--to"),
        (["--to", "b@example.com", "--from", "s@example.com"], "--text"),
        (["--to", "Bob <b@example.com>", "--from", "s@example.com", "--text", "x"], "--to"),
        (["--json", "-", "--subject", "x"], "--subject"),
    ],
)
def test_send_refuses_bad_input_naming_the_field_and_writes_nothing(
    outbox_url: str, tmp_path: Path, capsys: Capsys, extra: list[str], field: str
) -> None:
    assert main(["send", "--outbox", outbox_url, *extra]) == 2
    assert capsys.readouterr().err.startswith(f"flowmailer send: {field}:")
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    assert sum(outbox.counts().values()) == 0
    outbox.close()


def count(path: Path) -> int:
    outbox = SQLiteOutbox(path)
    try:
        return sum(outbox.counts().values())
    finally:
        outbox.close()


def test_send_refuses_an_address_that_is_not_one_naming_the_flag_and_no_display_name(
    outbox_url: str, capsys: Capsys
) -> None:
    assert main(["send", "--outbox", outbox_url, "--to", "nope", "--from", "s@example.com", "--text", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowmailer send: --to: 'nope' is not an email address")
    assert "display name" not in err
    assert "header" not in err


@pytest.mark.parametrize(
    ("flag", "value", "hint"),
    [("--to", "Bob <b@example.com>", "--header-to-name"), ("--from", "Shop <s@x.com>", "--header-from-name")],
)
def test_send_refuses_a_display_name_in_an_address_naming_the_flag_it_belongs_in(
    outbox_url: str, capsys: Capsys, flag: str, value: str, hint: str
) -> None:
    message = {"--to": "b@example.com", "--from": "s@example.com", flag: value}
    assert main(["send", "--outbox", outbox_url, *(x for f, v in message.items() for x in (f, v)), "--text", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flowmailer send: {flag}: {value!r} carries a display name.")
    assert err.rstrip().endswith(f"put the name in {hint}")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            '{"senderAddress": "s@example.com", "recipientAdress": "b@example.com", "text": "x"}',
            "recipientAdress: is not a key of SubmitMessage. rename it to 'recipientAddress'",
        ),
        (
            '{"senderAddress": "s@example.com", "recipientAddress": "b@example.com", "text": "x", "colour": 1}',
            "colour: is not a key of SubmitMessage. remove it; the keys are messageType, senderAddress,",
        ),
        (
            '{"senderAddress": "s@example.com", "recipientAddress": "b@example.com",'
            ' "attachments": [{"content": "eA==", "contentTyp": "text/plain"}]}',
            "attachments[0].contentTyp: is not a key of Attachment. rename it to 'contentType'",
        ),
        (
            '{"senderAddress": "s@example.com", "text": "x"}',
            "recipientAddress: is missing. add recipientAddress",
        ),
        (
            '{"senderAddress": "s@example.com", "recipientAddress": "Bob <b@example.com>", "text": "x"}',
            "recipientAddress: 'Bob <b@example.com>' carries a display name. give the bare address (bob@example.com)"
            " and put the name in headerToName",
        ),
        (
            '{"senderAddress": "s@example.com",\n',
            "is not valid JSON: Expecting property name enclosed in double quotes at line 2 column 1. fix the file",
        ),
        ('["s@example.com"]', "holds a JSON list, not an object. fix the file"),
    ],
)
def test_send_json_names_the_file_the_camelcase_key_and_the_fix_and_writes_nothing(
    outbox_url: str, tmp_path: Path, capsys: Capsys, body: str, error: str
) -> None:
    path = tmp_path / "m.json"
    path.write_text(body, encoding="utf-8")
    assert main(["send", "--outbox", outbox_url, "--json", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flowmailer send: --json {path}: {error}")
    assert "stored copy" not in err
    assert count(tmp_path / "outbox.db") == 0


def test_commands_refuse_an_outbox_file_that_does_not_exist(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["status", "--outbox", f"sqlite://{tmp_path / 'typo.db'}"]) == 2
    assert "flowmailer outbox init" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()


def test_without_an_outbox_setting_every_command_uses_the_default_file(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWMAILER_OUTBOX", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["status"]) == 2
    assert "the default file" in capsys.readouterr().err
    assert main(["outbox", "init"]) == 0
    assert main(["send", "--to", "b@example.com", "--from", "s@example.com", "--text", "x"]) == 0
    assert count(tmp_path / "flowmailer" / "outbox.db") == 1


def test_status_counts_every_state(outbox_url: str, capsys: Capsys) -> None:
    main(["send", "--outbox", outbox_url, "--to", "b@example.com", "--from", "s@example.com", "--text", "x"])
    capsys.readouterr()
    assert main(["status", "--outbox", outbox_url]) == 0
    lines = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert lines == {state.value: "1" if state is SubmissionState.QUEUED else "0" for state in SubmissionState}


def test_status_of_one_message(outbox_url: str, tmp_path: Path, capsys: Capsys) -> None:
    main(["send", "--outbox", outbox_url, "--to", "b@example.com", "--from", "s@example.com", "--text", "x"])
    outbox_id = sent_id(capsys.readouterr().out)
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    [claim] = outbox.claim("test", 1, 30)
    outbox.mark_accepted(claim, "20211230130407e3b36e2e92fdbefc86")
    outbox.close()
    assert main(["status", str(outbox_id), "--outbox", outbox_url]) == 0
    out = capsys.readouterr().out
    assert "state:            accepted" in out
    assert "attempts:         1" in out
    assert "message id:       20211230130407e3b36e2e92fdbefc86" in out


def status_lines(outbox_url: str, outbox_id: int, capsys: Capsys) -> dict[str, str]:
    assert main(["status", str(outbox_id), "--outbox", outbox_url]) == 0
    return {
        label: value.strip() for label, value in (line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    }


def test_status_shows_why_a_message_waits_to_be_retried(outbox_url: str, tmp_path: Path, capsys: Capsys) -> None:
    main(["send", "--outbox", outbox_url, "--to", "b@example.com", "--from", "s@example.com", "--text", "x"])
    outbox_id = sent_id(capsys.readouterr().out)
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    [claim] = outbox.claim("test", 1, 30)
    outbox.schedule_retry(claim, 0.0, "token: HTTP 503")
    outbox.close()
    rows = status_lines(outbox_url, outbox_id, capsys)
    assert (rows["state"], rows["reason"]) == ("retry_scheduled", "token: HTTP 503")


def test_status_of_an_accepted_message_labels_an_earlier_failure_as_previous(
    outbox_url: str, tmp_path: Path, capsys: Capsys
) -> None:
    main(["send", "--outbox", outbox_url, "--to", "b@example.com", "--from", "s@example.com", "--text", "x"])
    outbox_id = sent_id(capsys.readouterr().out)
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    [claim] = outbox.claim("test", 1, 30)
    outbox.schedule_retry(claim, 0.0, "token: HTTP 503")
    [claim] = outbox.claim("test", 1, 30)
    outbox.mark_accepted(claim, "20211230130407e3b36e2e92fdbefc86")
    outbox.close()
    rows = status_lines(outbox_url, outbox_id, capsys)
    assert (rows["state"], rows["previous failure"]) == ("accepted", "token: HTTP 503")
    assert "reason" not in rows
    assert "last reason" not in rows


def test_status_of_an_unknown_id_exits_1(outbox_url: str, capsys: Capsys) -> None:
    assert main(["status", "999", "--outbox", outbox_url]) == 1
    assert "999 is unknown" in capsys.readouterr().err


def kill(path: Path, count: int) -> list[int]:
    """Enqueue ``count`` messages and make them dead letters."""
    outbox = SQLiteOutbox(path)
    ids = outbox.enqueue_many(
        SubmitMessage(sender_address="s@example.com", recipient_address=f"b{i}@example.com", text="x")
        for i in range(count)
    )
    for claim in outbox.claim("test", count, 30):
        outbox.mark_dead(claim, "HTTP 422: recipientAddress invalid")
    outbox.close()
    return ids


def states(path: Path, ids: list[int]) -> list[SubmissionState]:
    outbox = SQLiteOutbox(path)
    found = [outbox.status(i) for i in ids]
    outbox.close()
    return [s.state for s in found if s is not None]


def test_dead_requeue_gives_the_listed_dead_letters_a_fresh_start(
    outbox_url: str, tmp_path: Path, capsys: Capsys
) -> None:
    ids = kill(tmp_path / "outbox.db", 2)
    assert main(["dead", "requeue", str(ids[0]), "--outbox", outbox_url]) == 0
    assert "requeued 1 dead letter(s)" in capsys.readouterr().out
    assert states(tmp_path / "outbox.db", ids) == [SubmissionState.QUEUED, SubmissionState.DEAD]


def test_dead_requeue_all(outbox_url: str, tmp_path: Path) -> None:
    ids = kill(tmp_path / "outbox.db", 2)
    assert main(["dead", "requeue", "--all", "--outbox", outbox_url]) == 0
    assert states(tmp_path / "outbox.db", ids) == [SubmissionState.QUEUED, SubmissionState.QUEUED]


@pytest.mark.parametrize("extra", [[], ["--all", "1"]])
def test_dead_requeue_needs_ids_or_all_but_not_both(outbox_url: str, capsys: Capsys, extra: list[str]) -> None:
    assert main(["dead", "requeue", *extra, "--outbox", outbox_url]) == 2
    assert "--all" in capsys.readouterr().err


def test_dead_requeue_of_a_live_message_requeues_nothing(outbox_url: str, tmp_path: Path, capsys: Capsys) -> None:
    ids = kill(tmp_path / "outbox.db", 1)
    main(["send", "--outbox", outbox_url, "--to", "b@example.com", "--from", "s@example.com", "--text", "x"])
    live = sent_id(capsys.readouterr().out)
    assert main(["dead", "requeue", str(ids[0]), str(live), "999", "--outbox", outbox_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"flowmailer dead requeue: nothing was requeued: outbox id {live} is queued, not dead; "
        "outbox id 999 is unknown, not dead. Requeue only ids that `flowmailer dead list` shows"
    )
    assert "status()" not in err
    assert states(tmp_path / "outbox.db", ids) == [SubmissionState.DEAD]


@pytest.mark.postgres
def test_outbox_init_creates_the_postgres_schema_and_send_and_status_use_it(
    postgres_server: PostgresServer, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole URL (which could carry a password) comes from the environment; the socket folder is a query.
    monkeypatch.setenv("FLOWMAILER_OUTBOX", f"postgresql://postgres@/postgres?host={postgres_server.socket_dir}")
    assert main(["outbox", "init"]) == 0
    assert main(["outbox", "init"]) == 0
    assert main(["send", "--to", "b@example.com", "--from", "s@example.com", "--text", "x"]) == 0
    outbox_id = sent_id(capsys.readouterr().out)
    assert main(["status", str(outbox_id)]) == 0
    assert "state:            queued" in capsys.readouterr().out


def test_an_interrupted_command_exits_130_without_a_traceback(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("flowmailer.cli.status.show_status", interrupted)
    assert main(["status"]) == 130
    assert capsys.readouterr().err == "flowmailer status: interrupted\n"


def test_dead_list_shows_each_dead_letter_oldest_first_with_why_it_died(
    outbox_url: str, tmp_path: Path, capsys: Capsys
) -> None:
    outbox = SQLiteOutbox(tmp_path / "outbox.db")
    ids = outbox.enqueue_many(
        SubmitMessage(sender_address="s@example.com", recipient_address=f"b{i}@example.com", text="x") for i in range(3)
    )
    first, second, third = outbox.claim("test", 3, 30)
    outbox.mark_dead(first, "HTTP 422", (ErrorDetail(field="recipientAddress", default_message="invalid address"),))
    outbox.mark_dead(third, "gave up after 50 attempts; the last: HTTP 503")
    outbox.mark_accepted(second, "m-2")
    outbox.close()
    assert main(["dead", "list", "--outbox", outbox_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "attempts", "client", "reference", "reason", "|", "first", "error"]
    assert lines[1].split()[:3] == [str(ids[0]), "1", first.client_reference]
    assert lines[1].endswith("  HTTP 422 | recipientAddress: invalid address")
    assert lines[2].split()[:3] == [str(ids[2]), "1", third.client_reference]
    assert lines[2].endswith("the last: HTTP 503 | -")
    assert len(lines) == 3


def test_dead_list_pages_with_limit_and_after(outbox_url: str, tmp_path: Path, capsys: Capsys) -> None:
    ids = kill(tmp_path / "outbox.db", 3)
    assert main(["dead", "list", "--limit", "2", "--outbox", outbox_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:3]] == [str(i) for i in ids[:2]]
    assert out[3] == f"more may follow: flowmailer dead list --after {ids[1]}"
    assert main(["dead", "list", "--limit", "2", "--after", str(ids[1]), "--outbox", outbox_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:]] == [str(ids[2])]
    assert main(["dead", "list", "--after", str(ids[2]), "--outbox", outbox_url]) == 0
    assert capsys.readouterr().out == f"no dead letters after outbox id {ids[2]}\n"


@pytest.mark.parametrize("during", ["enqueue", "status"])
def test_send_interrupted_while_enqueuing_finishes_prints_the_id_and_exits_0(
    outbox_url: str, tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch, during: str
) -> None:
    """A Ctrl-C inside the enqueue, or right after its commit: the row is there, so the command says so."""
    real = getattr(SQLiteOutbox, during)

    def interrupted(self: SQLiteOutbox, *args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGINT)  # delivered to the handler at the next bytecode boundary
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteOutbox, during, interrupted)
    argv = ["send", "--outbox", outbox_url, "--to", "b@example.com", "--from", "s@example.com", "--text", "x"]
    assert main(argv) == 0  # before: "interrupted", exit 130, and no id though the row may be committed
    out, err = capsys.readouterr()
    monkeypatch.undo()
    assert count(tmp_path / "outbox.db") == 1
    assert f"outbox id: {sent_id(out)}" in out
    assert "SIGINT came while the message was being enqueued; it is enqueued" in err
    assert "--dedupe-key" in err
