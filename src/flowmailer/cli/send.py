"""``flowmailer send``: put one message in the outbox (the relay submits it), from flags, a JSON file or an .eml."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import email.parser
import email.policy
import email.utils
import json
import re
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from flowmailer.cli._config import OUTBOX_ONLY, add_config_arguments, config_from_args
from flowmailer.cli._wiring import open_outbox
from flowmailer.core import Attachment, ConfigurationError, Header, SubmitMessage, from_json

#: Flags that describe the message itself, each refused where a file already gives that part.
_BODY_FLAGS = ("subject", "text", "html")
_ENVELOPE_FLAGS = ("to", "sender", "header_from_name", "header_to_name", "flow_selector", "tag")
#: The flags whose name is not the field's (``--from`` for ``sender_address``).
_FLAGS = {"sender_address": "--from", "recipient_address": "--to", "tags": "--tag"}
#: Where the display name goes that an address must not carry.
_DISPLAY_NAME = {"sender_address": "header_from_name", "recipient_address": "header_to_name"}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


#: The JSON keys of each object in a SubmitMessage file (the wire converter's camelCase names), and the nested ones.
_KEYS: dict[type, list[str]] = {
    cls: [_camel(f.name) for f in attrs.fields(cls) if f.init] for cls in (SubmitMessage, Attachment, Header)
}
_NESTED = {"attachments": Attachment, "headers": Header}
_FIELDS = {f.name for cls in _KEYS for f in attrs.fields(cls) if f.init}
#: A field name with an underscore in an error's text (a one-word name there is more likely an ordinary word).
_FIELD_WORDS = re.compile(r"\b(?:" + "|".join(sorted(n for n in _FIELDS if "_" in n)) + r")\b")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "send",
        help="enqueue one message (from flags, a JSON file or an .eml file)",
        description="Enqueue one message in the outbox; `flowmailer relay` submits it. Prints its outbox id and "
        "client reference.",
        allow_abbrev=False,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--json", metavar="FILE", help="a SubmitMessage in Flowmailer's JSON (camelCase); - for stdin")
    source.add_argument("--eml", metavar="FILE", help="a complete MIME message, sent as mimedata; - for stdin")
    parser.add_argument("--to", help="recipient address (for --eml: default the To header)")
    parser.add_argument("--from", dest="sender", help="sender address (for --eml: default the From header)")
    parser.add_argument("--subject")
    parser.add_argument("--text", help="plain-text body")
    parser.add_argument("--html", help="HTML body")
    parser.add_argument("--header-from-name", help="display name in the From header")
    parser.add_argument("--header-to-name", help="display name in the To header")
    parser.add_argument("--flow-selector", help="selects a Flowmailer flow, e.g. invoice")
    parser.add_argument("--tag", action="append", default=[], help="a searchable tag (repeatable)")
    parser.add_argument("--dedupe-key", help="enqueue the message once for this key; again, print the first id")
    add_config_arguments(parser, OUTBOX_ONLY)
    parser.set_defaults(handler=send)


def send(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    message = message_from_args(args)
    outbox = open_outbox(config)
    # From here until the id is printed, Ctrl-C and SIGTERM wait: a script that saw "interrupted" would send the
    # message again, though it may already be committed.
    with _signals_deferred() as caught:
        try:
            outbox_id = outbox.enqueue(message, dedupe_key=args.dedupe_key)
            status = outbox.status(outbox_id)
        finally:
            outbox.close()
        print(f"outbox id: {outbox_id}")
        if status is not None:
            print(f"client reference: {status.client_reference}")
        sys.stdout.flush()
    if caught:
        hint = "" if args.dedupe_key else "; give a --dedupe-key so that a script that sends again enqueues it once"
        print(
            f"flowmailer send: {signal.Signals(caught[0]).name} came while the message was being enqueued; it is "
            f"enqueued (outbox id {outbox_id}) and will be sent{hint}",
            file=sys.stderr,
        )
    return 0


@contextlib.contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """SIGINT and SIGTERM are noted rather than acted on inside the block; the list holds those that came."""
    caught: list[int] = []
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in wanted}
    try:
        yield caught
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def message_from_args(args: argparse.Namespace) -> SubmitMessage:
    """The message the flags and file describe; a flag that contradicts the file is refused, not ignored."""
    if args.json is not None:
        _refuse(args, (*_BODY_FLAGS, *_ENVELOPE_FLAGS), "--json", "the JSON file gives the whole message")
        return _message_from_json(
            _read(args.json, "--json"), "--json " + ("(standard input)" if args.json == "-" else args.json)
        )
    if args.eml is not None:
        _refuse(args, _BODY_FLAGS, "--eml", "the .eml file gives subject and body")
        raw = _read(args.eml, "--eml")
        with _in_terms_of(_flag):
            return _message_from_eml(args, raw)
    for flag, value in (("--to", args.to), ("--from", args.sender)):
        if not value:
            raise ConfigurationError(flag, "is required", f"pass {flag} ADDRESS, or give the message with --json/--eml")
    if not (args.text or args.html):
        raise ConfigurationError("--text", "the message has no body", "pass --text and/or --html")
    with _in_terms_of(_flag):
        return SubmitMessage(
            sender_address=args.sender,
            recipient_address=args.to,
            subject=args.subject,
            text=args.text,
            html=args.html,
            header_from_name=args.header_from_name,
            header_to_name=args.header_to_name,
            flow_selector=args.flow_selector,
            tags=tuple(args.tag),
        )


def _flag(field: str) -> str:
    return _FLAGS.get(field) or "--" + field.replace("_", "-")


@contextlib.contextmanager
def _in_terms_of(name: Callable[[str], str], source: str | None = None) -> Iterator[None]:
    """The model's errors in the user's terms: a field by its flag or JSON key, and the file it came from."""
    try:
        yield
    except ConfigurationError as e:
        rename = lambda m: name(m.group())  # noqa: E731 - used three times, in one expression each
        field = name(e.field) if e.field in _FIELDS else _FIELD_WORDS.sub(rename, e.field)
        if source is not None and field != source:
            field = f"{source}: {field}"
        fix = e.fix
        if e.field in _DISPLAY_NAME and e.problem.endswith("carries a display name"):
            fix = f"give the bare address (bob@example.com) and put the name in {name(_DISPLAY_NAME[e.field])}"
        problem, fix = (_FIELD_WORDS.sub(rename, text) for text in (e.problem, fix))
        raise ConfigurationError(field, problem, fix) from e


def _message_from_json(raw: bytes, source: str) -> SubmitMessage:
    """A SubmitMessage file, refused with the file, the camelCase key and the fix when anything is off."""
    fix = "fix the file: one SubmitMessage in Flowmailer's JSON (camelCase keys, e.g. recipientAddress)"
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise ConfigurationError(source, "is not UTF-8 text", fix) from None
    except json.JSONDecodeError as e:
        raise ConfigurationError(source, f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}", fix) from e
    if not isinstance(data, dict):
        raise ConfigurationError(source, f"holds a JSON {type(data).__name__}, not an object", fix)
    _refuse_unknown_keys(data, SubmitMessage, source)
    with _in_terms_of(_camel, source):
        return from_json(raw, SubmitMessage, what=source, fix=fix)


def _refuse_unknown_keys(data: Mapping[str, Any], cls: type, source: str, path: str = "") -> None:
    """The converter would drop an unknown key silently: a typo (``flowSelecter``) must not lose its value."""
    known = _KEYS[cls]
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            fix = f"rename it to {close[0]!r}" if close else f"remove it; the keys are {', '.join(known)}"
            raise ConfigurationError(f"{source}: {path}{key}", f"is not a key of {cls.__name__}", fix)
        nested = _NESTED.get(key) if cls is SubmitMessage else None
        if nested is not None and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _refuse_unknown_keys(item, nested, source, f"{key}[{i}].")


def _message_from_eml(args: argparse.Namespace, raw: bytes) -> SubmitMessage:
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    sender = args.sender or _address(headers.get("From"), "--from")
    recipient = args.to or _address(headers.get("To"), "--to")
    return SubmitMessage(
        sender_address=sender,
        recipient_address=recipient,
        mimedata=raw,
        header_from_name=args.header_from_name,
        header_to_name=args.header_to_name,
        flow_selector=args.flow_selector,
        tags=tuple(args.tag),
    )


def _address(header: str | None, flag: str) -> str:
    addresses = [a for _, a in email.utils.getaddresses([header or ""]) if a]
    if not addresses:
        raise ConfigurationError(flag, "the .eml file has no address in that header", f"pass {flag} ADDRESS")
    return addresses[0]


def _refuse(args: argparse.Namespace, names: tuple[str, ...], source: str, why: str) -> None:
    for name in names:
        if getattr(args, name):
            flag = "--from" if name == "sender" else f"--{name.replace('_', '-')}"
            raise ConfigurationError(flag, f"cannot be combined with {source}: {why}", f"drop {flag} or {source}")


def _read(name: str, flag: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as e:
        raise ConfigurationError(
            flag, f"cannot read {name!r} ({e.strerror})", "give a readable file, or - for stdin"
        ) from e
