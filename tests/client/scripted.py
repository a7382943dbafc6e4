"""A Transport that answers from a script, for client tests that need exact control over every attempt."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence

import attrs

from flowmailer.core import Origin, TransportResult, WireRequest, WireResponse
from flowmailer.testing import StaticResolver

API = "api.flowmailer.test"
LOGIN = "login.flowmailer.test"


@attrs.frozen
class Sent:
    request: WireRequest
    origin: Origin
    address: str


def token_answer(value: str = "tok-1", expires_in: int = 60) -> WireResponse:
    body = json.dumps({"access_token": value, "expires_in": expires_in, "scope": "api", "token_type": "bearer"})
    return WireResponse(200, (("Content-Type", "application/json"),), body.encode())


def created(message_id: str = "20211230130407e3b36e2e92fdbefc86") -> WireResponse:
    return WireResponse(201, (("Location", f"https://{API}/acct/messages/{message_id}"),))


def status(code: int, body: object = None, **headers: str) -> WireResponse:
    raw = b"" if body is None else json.dumps(body).encode()
    return WireResponse(code, tuple((k.replace("_", "-"), v) for k, v in headers.items()), raw)


def page(items: Sequence[Mapping[str, object]], next_ref: str | None = None) -> WireResponse:
    headers = (("Next-Range", f"items={next_ref}:100"),) if next_ref else ()
    return WireResponse(206, headers, json.dumps(list(items)).encode())


class ScriptedTransport:
    """Each request takes the next answer queued for its path suffix (a callable may compute it); records all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[Sent] = []
        self.script: dict[str, list[TransportResult | Callable[[WireRequest, str], TransportResult]]] = {}
        self.default: dict[str, TransportResult] = {"/oauth/token": token_answer(), "/messages/submit": created()}
        self.closed = False

    def queue(self, suffix: str, *answers: TransportResult | Callable[[WireRequest, str], TransportResult]) -> None:
        self.script.setdefault(suffix, []).extend(answers)

    def send(self, request: WireRequest, origin: Origin, address: str) -> TransportResult:
        with self._lock:
            self.sent.append(Sent(request, origin, address))
            for suffix, answers in self.script.items():
                if request.path.endswith(suffix) and answers:
                    answer = answers.pop(0)
                    return answer(request, address) if callable(answer) else answer
            for suffix, default in self.default.items():
                if request.path.endswith(suffix):
                    return default
        raise AssertionError(f"nothing scripted for {request.method} {request.path}")

    def close(self) -> None:
        self.closed = True

    def to(self, suffix: str) -> list[Sent]:
        return [s for s in self.sent if s.request.path.endswith(suffix)]


def resolver() -> StaticResolver:
    return StaticResolver({API: ["127.0.0.2", "127.0.0.3", "127.0.0.4"], LOGIN: ["127.0.0.2", "127.0.0.3"]}, ttl=60)
