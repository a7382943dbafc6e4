"""Flowmailer's behaviour as flowmailer-api.md describes it: tokens, lockout, roles, submit, listings, stats."""

from __future__ import annotations

import base64
import bisect
import contextlib
import json
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, unquote_plus

import attrs

from flowmailer.testing._fake._records import AcceptedMessage, Recorder
from flowmailer.testing._fake._resources import Resources
from flowmailer.testing._fake._validate import error_detail, validate_submit
from flowmailer.testing._fake._wire import Request, Response, json_response

__all__ = ["API_HOST", "LOGIN_HOST", "SUBMIT_ROLE", "Credential"]

API_HOST = "api.flowmailer.test"
LOGIN_HOST = "login.flowmailer.test"
#: Flowmailer's submit-only role: everything but ``messages/submit`` is answered 403.
SUBMIT_ROLE = "FEATURE_SUBMITMESSAGE"
_OAUTH_JSON = "application/json;charset=UTF-8"
#: Flowmailer's references are upper-case base32hex (digits, then A-V); ``int(ref, 32)`` reads exactly that.
_RANGE = re.compile(r"^items=([0-9A-Va-v]*):([0-9]+)$")
#: A JSON body: Flowmailer's own media type or plain ``application/json``, any parameters after them.
_JSON_TYPE = re.compile(r"^\s*application/(?:vnd\.flowmailer\.v[0-9.]+\+)?json\s*(?:;.*)?$", re.IGNORECASE)
_BASE32HEX = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_ITEM_RANGE = re.compile(r"^items=([0-9]{1,9})-([0-9]{1,9})$")


@attrs.frozen
class Credential:
    """An API credential with its one role (any role other than FEATURE_SUBMITMESSAGE may do everything)."""

    client_id: str
    client_secret: str = attrs.field(repr=False)
    role: str = "ADMIN"
    #: The source the credential submits for: its messages carry this source and ``source_ids`` selects them.
    source_id: str = "1"


class _Message(NamedTuple):
    seq: int
    id: str
    submitted: float
    body: dict[str, Any]
    tags: tuple[str, ...]
    bounced: bool
    flow_id: str = "1"
    source_id: str = "1"


class _Positioned(NamedTuple):
    seq: int
    item: dict[str, Any]


class _Event(NamedTuple):
    seq: int
    message: _Message
    type: str
    received: float


def _timestamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _oauth_error(status: int, error: str, description: str) -> Response:
    return json_response(status, {"error": error, "error_description": description}, content_type=_OAUTH_JSON)


def _all_errors(status: int, code: str, message: str, field: str | None = None, value: object = None) -> Response:
    return json_response(status, {"allErrors": [error_detail(code, message, field, value, object_name=None)]})


def _reference(seq: int) -> str:
    """A listing position as Flowmailer shapes its references: 13 upper-case base32hex digits."""
    digits = []
    for _ in range(13):
        seq, digit = divmod(seq, 32)
        digits.append(_BASE32HEX[digit])
    return "".join(reversed(digits))


def _instant(text: str) -> float | None:
    """An ISO 8601 date-time with a zone, as Flowmailer reads one: ``Z``, ``+00:00`` or ``+0000``, milliseconds or
    not. Without a zone, or not a date, None."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return None if parsed.utcoffset() is None else parsed.timestamp()


def _date_range(text: str) -> tuple[float, float] | None:
    start, comma, end = text.partition(",")
    first, last = _instant(start), _instant(end)
    if not comma or first is None or last is None:
        return None
    return first, last


def _flag(query: dict[str, str], name: str) -> bool:
    """A boolean parameter: ``true`` or ``1`` (Flowmailer's server reads both, in any case) is on."""
    return query.get(name, "").strip().lower() in ("true", "1")


def _ids(text: str) -> frozenset[str]:
    return frozenset(unquote(i).strip() for i in text.split(",") if i.strip())


class FlowmailerState:
    """The fake's account: credentials, tokens, lockouts, messages and events, behind one lock."""

    def __init__(
        self,
        *,
        account_id: str,
        credentials: Sequence[Credential],
        token_lifetime: int,
        lockout_seconds: float,
        bounce_recipients: Iterable[str],
        clock: Callable[[], float],
        seed: int,
        recorder: Recorder,
    ) -> None:
        self.account_id = account_id
        self._credentials = {c.client_id: c for c in credentials}
        self.credential_list = tuple(credentials)
        self._token_lifetime = token_lifetime
        self._lockout_seconds = lockout_seconds
        self._bounces = frozenset(r.lower() for r in bounce_recipients)
        self._clock = clock
        self._random = random.Random(seed)
        self._recorder = recorder
        # Reentrant: the resources' handlers run under it and read messages through the helpers below.
        self._lock = threading.RLock()
        self._tokens: dict[str, tuple[Credential, float]] = {}
        self._locked_until: dict[str, float] = {}
        self._messages: list[_Message] = []
        self._by_id: dict[str, _Message] = {}
        self._by_tag: dict[str, list[_Message]] = {}
        self._events: list[_Event] = []
        self._id_second = (-1, "")
        self.resources = Resources(self)

    def issued_tokens(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._tokens)

    def expire_token(self, request: Request) -> None:
        """Fault hook: the request's bearer token stops being valid now, ahead of its expiry."""
        token = _bearer(request)
        with self._lock:
            if token in self._tokens:
                self._tokens[token] = (self._tokens[token][0], -math.inf)

    def handle(self, request: Request, *, client_address: str, server_address: str) -> Response:
        segments = request.path.split("/")[1:]
        names = [unquote(s.partition(";")[0]) if "%" in s or ";" in s else s for s in segments]
        if names == ["oauth", "token"]:
            if request.method != "POST":
                return _oauth_error(405, "invalid_request", "use POST")
            return self._token(request, client_address)
        token = _bearer(request)
        if token is None:
            return _oauth_error(401, "unauthorized", "Full authentication is required to access this resource")
        now = self._clock()
        with self._lock:
            credential, expires = self._tokens.get(token, (None, -math.inf))
        if credential is None or expires <= now:
            return _oauth_error(401, "invalid_token", "Access token expired or unknown")
        if names == ["accounts"] and request.method == "POST":
            body = self.json_body(request)
            if isinstance(body, Response):
                return body
            with self._lock:
                return self.resources.create_account(request, body)
        if not names or names[0] != self.account_id:
            return _all_errors(403, "forbidden", "Access is denied", "accountId", names[0] if names else None)
        route = names[1:]
        if credential.role == SUBMIT_ROLE and route != ["messages", "submit"]:
            return _all_errors(403, "forbidden", f"Access is denied for role {SUBMIT_ROLE}")
        content_type = request.header("content-type")
        if request.body and content_type is not None and not _JSON_TYPE.match(content_type):
            return _all_errors(
                415, "unsupported.mediatype", f"Content type {content_type!r} not supported: send JSON", "Content-Type"
            )
        if route == ["messages", "submit"]:
            if request.method != "POST":
                return _all_errors(405, "method", "use POST")
            return self._submit(request, credential, server_address, now)
        if route == ["messages", "simulate"]:
            return self._simulate(request) if request.method == "POST" else _all_errors(405, "method", "use POST")
        matrix = {k: v for s in segments for k, _, v in (p.partition("=") for p in s.split(";")[1:])}
        query = {k: v[-1] for k, v in parse_qs(request.target.partition("?")[2]).items()}
        with self._lock:
            answer = self.resources.handle(request, route, matrix, query)
        if answer is not None:
            return answer
        if request.method != "GET":
            return _all_errors(405, "method", "use GET")
        if len(route) == 2 and route[0] == "messages":
            with self._lock:
                message = self._by_id.get(route[1])
            if message is None:
                return _all_errors(404, "notfound", "Message not found", "messageId", route[1])
            return json_response(200, self._message_json(message, query))
        if len(route) == 3 and route[0] == "tag" and route[2] == "messages":
            with self._lock:
                tagged = list(self._by_tag.get(route[1], ()))
            return self._message_listing(request, matrix, query, tagged)
        if route == ["message_events"]:
            with self._lock:
                events = list(self._events)
            for name in ("receivedrange", "daterange"):
                if name in matrix:
                    span = _date_range(unquote(matrix[name]))
                    if span is None:
                        return _all_errors(400, "typeMismatch", f"{name} is start,end in ISO 8601", name)
                    # receivedrange: when the event arrived; daterange: when its message was submitted.
                    received = name == "receivedrange"
                    events = [
                        e for e in events if span[0] <= (e.received if received else e.message.submitted) < span[1]
                    ]
            if "flow_ids" in matrix:
                flows = _ids(matrix["flow_ids"])
                events = [e for e in events if e.message.flow_id in flows]
            if "source_ids" in matrix:
                sources = _ids(matrix["source_ids"])
                events = [e for e in events if e.message.source_id in sources]
            return self._listing(request, events, query, self._event_json)
        if route == ["messagestats"]:
            return self.stats(matrix, query)
        return _all_errors(404, "notfound", f"No resource {request.path}")

    def _token(self, request: Request, client_address: str) -> Response:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        scheme, _, basic = (request.header("authorization") or "").partition(" ")
        if scheme.lower() == "basic":  # OAuth2 client_secret_basic, which OAuth libraries send by default
            with contextlib.suppress(ValueError):
                pair = base64.b64decode(basic, validate=True).decode()
                form["client_id"], _, form["client_secret"] = (unquote_plus(p) for p in pair.partition(":"))
        client_id = form.get("client_id", "")
        self._recorder.token_requested(client_id)
        now = self._clock()
        with self._lock:
            until = self._locked_until.get(client_address, -math.inf)
            if now < until:
                return _oauth_error(
                    401,
                    "invalid_client",
                    f"{client_address} is locked out for {until - now:.0f} s after bad credentials",
                )
            if form.get("grant_type") != "client_credentials":
                return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
            credential = self._credentials.get(client_id)
            if credential is None or not secrets.compare_digest(
                credential.client_secret, form.get("client_secret", "")
            ):
                self._locked_until[client_address] = now + self._lockout_seconds
                return _oauth_error(401, "invalid_client", "Bad client credentials")
            if form.get("scope", "api") != "api":
                return _oauth_error(400, "invalid_scope", "scope must be api")
            token = secrets.token_urlsafe(24)
            self._tokens[token] = (credential, now + self._token_lifetime)
        payload = {"access_token": token, "expires_in": self._token_lifetime, "scope": "api", "token_type": "bearer"}
        return json_response(200, payload, content_type=_OAUTH_JSON)

    def _submit(self, request: Request, credential: Credential, server_address: str, now: float) -> Response:
        msg, errors = validate_submit(request.body)
        if errors:
            return json_response(400, {"allErrors": errors})
        tags = tuple(msg.get("tags") or ())
        with self._lock:
            message_id = self._store(msg, credential.source_id, now).id
        self._recorder.accepted(AcceptedMessage(message_id, msg, tags, credential.client_id, server_address, now))
        host = request.header("host") or API_HOST
        return Response(201, (("Location", f"https://{host}/{self.account_id}/messages/{message_id}"),))

    def _store(self, msg: dict[str, Any], source_id: str, now: float) -> _Message:
        """Keep an accepted message and its events; under the lock."""
        tags = tuple(msg.get("tags") or ())
        bounced = str(msg["recipientAddress"]).lower() in self._bounces
        second = int(now)
        if second != self._id_second[0]:
            self._id_second = (second, time.strftime("%Y%m%d%H%M%S", time.gmtime(second)))
        message_id = f"{self._id_second[1]}{self._random.getrandbits(72):018x}"
        flow_id = self.resources.flow_for(msg.get("flowSelector"))
        message = _Message(len(self._messages), message_id, now, msg, tags, bounced, flow_id, source_id)
        self._messages.append(message)
        self._by_id[message_id] = message
        for tag in tags:
            self._by_tag.setdefault(tag, []).append(message)
        if not self.held(message):
            for kind in ("SUBMITTED", "HARDBOUNCE" if bounced else "DELIVERED"):
                self._events.append(_Event(len(self._events), message, kind, now))
        return message

    # -- what the resources read (under the lock) ------------------------------------------------------------

    def message(self, message_id: str) -> _Message | None:
        return self._by_id.get(message_id)

    def messages(self) -> list[_Message]:
        return list(self._messages)

    def held(self, message: _Message) -> bool:
        """Scheduled for later: Flowmailer holds it until then."""
        at = message.body.get("scheduleAt")
        when = _instant(at) if isinstance(at, str) else None
        return when is not None and when > self._clock()

    @staticmethod
    def timestamp(t: float) -> str:
        return _timestamp(t)

    @staticmethod
    def date_range(text: str) -> tuple[float, float] | None:
        return _date_range(unquote(text))

    def resend(self, message: _Message, recipient: str) -> None:
        """A copy of ``message`` to ``recipient``, and a RESENT event on the original."""
        self._events.append(_Event(len(self._events), message, "RESENT", self._clock()))
        self._store({**message.body, "recipientAddress": recipient}, message.source_id, self._clock())

    @staticmethod
    def json_body(request: Request) -> dict[str, Any] | Response:
        """A write's JSON object, or the 400 that says it is not one."""
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _all_errors(400, "message.unreadable", "The request body is not valid JSON")
        if not isinstance(body, dict):
            return _all_errors(400, "message.unreadable", "The request body is not a JSON object")
        return body

    def render_message(self, m: _Message, query: dict[str, str]) -> dict[str, Any]:
        return self._message_json(m, query)

    def reference_listing(
        self,
        request: Request,
        matrix: dict[str, str],
        query: dict[str, str],
        keep: Callable[[_Message], bool],
        render: Callable[[_Message, dict[str, str]], dict[str, Any]] | None = None,
    ) -> Response:
        messages = [m for m in self._messages if keep(m)]
        return self._message_listing(request, matrix, query, messages, render)

    def plain_reference_listing(self, request: Request, query: dict[str, str], items: list[dict[str, Any]]) -> Response:
        """A reference-range listing of ready objects, in their order."""
        positioned = [_Positioned(i, item) for i, item in enumerate(items)]
        return self._listing(request, positioned, query, lambda p, _: p.item)

    def item_listing(
        self,
        request: Request,
        matrix: dict[str, str],
        keep: Callable[[_Message], bool],
        render: Callable[[_Message, dict[str, str]], dict[str, Any]] | None = None,
    ) -> Response:
        """A listing paged by position (``Range: items=START-END``, END inclusive), oldest first."""
        match = _ITEM_RANGE.match(request.header("range") or "items=0-99")
        if match is None or int(match[2]) < int(match[1]):
            return _all_errors(400, "range", "Range must be items=START-END", "Range", request.header("range"))
        start, end = int(match[1]), int(match[2])
        messages = [m for m in self._messages if keep(m)]
        if "daterange" in matrix:
            span = _date_range(unquote(matrix["daterange"]))
            if span is None:
                return _all_errors(400, "typeMismatch", "daterange is start,end in ISO 8601", "daterange")
            messages = [m for m in messages if span[0] <= m.submitted < span[1]]
        page = messages[start : end + 1]
        headers: tuple[tuple[str, str], ...] = ()
        if page:
            headers = (("Content-Range", f"items {start}-{start + len(page) - 1}/{len(messages)}"),)
        return json_response(206, [(render or self._message_json)(m, {}) for m in page], headers)

    @staticmethod
    def _simulate(request: Request) -> Response:
        """A preview of the message as the (one, default) flow would send it; nothing is stored or sent."""
        msg, errors = validate_submit(request.body)
        if not errors and not isinstance(msg.get("sourceId"), str | int):
            errors = [error_detail("NotNull", "may not be null", "sourceId")]
        if errors:
            return json_response(400, {"allErrors": errors})
        fields = ("messageType", "senderAddress", "recipientAddress", "subject", "html", "text", "data")
        preview = {k: msg.get(k) for k in fields}
        preview["flow"] = {"id": "1", "description": "default flow"}
        return json_response(200, preview)

    def _message_listing(
        self,
        request: Request,
        matrix: dict[str, str],
        query: dict[str, str],
        messages: list[_Message],
        render: Callable[[_Message, dict[str, str]], dict[str, Any]] | None = None,
    ) -> Response:
        if "daterange" in matrix:
            span = _date_range(unquote(matrix["daterange"]))
            if span is None:
                return _all_errors(400, "typeMismatch", "daterange is start,end", "daterange")
            messages = [m for m in messages if span[0] <= m.submitted < span[1]]
        return self._listing(request, messages, query, render or self._message_json)

    def _listing(
        self,
        request: Request,
        items: Sequence[Any],
        query: dict[str, str],
        render: Callable[[Any, dict[str, str]], dict[str, Any]],
    ) -> Response:
        """A reference-range page: items after (ASC) or before (DESC, the default) the reference."""
        match = _RANGE.match(request.header("range") or "items=:100")
        if match is None or int(match[2]) == 0:
            return _all_errors(400, "range", "Range must be items=REF:COUNT", "Range", request.header("range"))
        ref, count = match[1], int(match[2])
        seqs = [i.seq for i in items]
        if query.get("sortorder", "DESC").upper() == "ASC":
            start = bisect.bisect_right(seqs, int(ref, 32)) if ref else 0
            page = list(items[start : start + count])
        else:
            stop = bisect.bisect_left(seqs, int(ref, 32)) if ref else len(seqs)
            page = list(reversed(items[max(0, stop - count) : stop]))
        headers: tuple[tuple[str, str], ...] = ()
        if page:
            end = _reference(page[-1].seq)
            headers = (("Content-Range", f"items {ref}:{end}/*"), ("Next-Range", f"items={end}:{count}"))
        return json_response(206, [render(i, query) for i in page], headers)

    def _message_json(self, m: _Message, query: dict[str, str]) -> dict[str, Any]:
        body = m.body
        return {
            "id": m.id,
            "submitted": _timestamp(m.submitted),
            "messageType": body["messageType"],
            "senderAddress": body["senderAddress"],
            "recipientAddress": body["recipientAddress"],
            "subject": body.get("subject"),
            "status": "BOUNCED" if m.bounced else "DELIVERED",
            "tags": list(m.tags),
            "flow": self.resources.describe("flows", m.flow_id),
            "source": self.resources.describe("sources", m.source_id),
        }

    @staticmethod
    def _event_json(e: _Event, query: dict[str, str]) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": f"{e.seq:012x}",
            "messageId": e.message.id,
            "type": e.type,
            "received": _timestamp(e.received),
            "inserted": _timestamp(e.received),
            "mta": "fake.flowmailer.test",
            "snippet": "550 5.1.1 recipient unknown" if e.type == "HARDBOUNCE" else None,
            # As Flowmailer's published model types them: data is text, extraData a list.
            "data": "250 2.0.0 OK" if e.type == "DELIVERED" else None,
            "extraData": [],
        }
        if _flag(query, "addmessagetags"):
            item["messageTags"] = list(e.message.tags)
        return item

    def stats(
        self, matrix: dict[str, str], query: dict[str, str], keep: Callable[[_Message], bool] = lambda m: True
    ) -> Response:
        """Counts per interval of the messages ``keep`` selects; ``interval`` is read from ``query`` (messagestats)
        or, for a flow's or a source's stats, from the matrix."""
        span = _date_range(unquote(matrix.get("daterange", "")))
        if span is None:
            return _all_errors(400, "NotNull", "daterange (start,end) is required", "daterange")
        start, end = span
        try:
            interval = int(query.get("interval", end - start)) or (end - start)
        except ValueError:
            return _all_errors(400, "typeMismatch", "interval is whole seconds", "interval", query["interval"])
        if end <= start or interval <= 0 or (end - start) / interval > 10_000:
            return _all_errors(400, "invalid", "daterange must be non-empty with at most 10000 intervals", "daterange")
        buckets = math.ceil((end - start) / interval)
        counts = {name: [0] * buckets for name in ("processed", "sent", "delivered", "bounced")}
        with self._lock:
            messages = [m for m in self._messages if start <= m.submitted < end and keep(m)]
        for m in messages:
            b = int((m.submitted - start) // interval)
            for name in ("processed", "sent", "bounced" if m.bounced else "delivered"):
                counts[name][b] += 1
        datasets = [
            {
                "name": name,
                "samples": [{"timestamp": _timestamp(start + i * interval), "value": v} for i, v in enumerate(values)],
            }
            for name, values in counts.items()
        ]
        return json_response(200, {"list": datasets})


def _bearer(request: Request) -> str | None:
    scheme, _, token = (request.header("authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
