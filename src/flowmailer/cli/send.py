"""``flowmailer send``: put one message in the outbox (the relay submits it), from flags, a JSON file or an .eml."""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import email.utils
import sys
from pathlib import Path
from typing import Any

from flowmailer.cli._config import add_config_arguments, config_from_args
from flowmailer.cli._wiring import open_outbox
from flowmailer.core import ConfigurationError, SubmitMessage, message_from_json

#: Flags that describe the message itself, each refused where a file already gives that part.
_BODY_FLAGS = ("subject", "text", "html")
_ENVELOPE_FLAGS = ("to", "sender", "header_from_name", "header_to_name", "flow_selector", "tag")


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
    add_config_arguments(parser)
    parser.set_defaults(handler=send)


def send(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    message = message_from_args(args)
    outbox = open_outbox(config)
    try:
        outbox_id = outbox.enqueue(message, dedupe_key=args.dedupe_key)
        status = outbox.status(outbox_id)
    finally:
        outbox.close()
    print(f"outbox id: {outbox_id}")
    if status is not None:
        print(f"client reference: {status.client_reference}")
    return 0


def message_from_args(args: argparse.Namespace) -> SubmitMessage:
    """The message the flags and file describe; a flag that contradicts the file is refused, not ignored."""
    if args.json is not None:
        _refuse(args, (*_BODY_FLAGS, *_ENVELOPE_FLAGS), "--json", "the JSON file gives the whole message")
        return message_from_json(_read(args.json, "--json"))
    if args.eml is not None:
        _refuse(args, _BODY_FLAGS, "--eml", "the .eml file gives subject and body")
        return _message_from_eml(args, _read(args.eml, "--eml"))
    for flag, value in (("--to", args.to), ("--from", args.sender)):
        if not value:
            raise ConfigurationError(flag, "is required", f"pass {flag} ADDRESS, or give the message with --json/--eml")
    if not (args.text or args.html):
        raise ConfigurationError("--text", "the message has no body", "pass --text and/or --html")
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
