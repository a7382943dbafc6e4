"""A bare HTTP/1.1-over-TLS client (stdlib ssl and sockets) that the fake's tests drive it with.

It shares no code with the fake or with flowmailer's transports, so it checks the fake from the outside.
"""

from __future__ import annotations

import json
import socket
import ssl
from typing import Any
from urllib.parse import urlencode

import attrs

from flowmailer.testing import API_HOST, LOGIN_HOST, Credential, FakeFlowmailer


@attrs.frozen
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_bytes(
    method: str, target: str, *, host: str = API_HOST, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RawClient:
    """One TLS connection to one address of the fake, verifying ``server_hostname`` against the fake's CA.

    TLS runs over memory BIOs on a plain socket, so a TCP reset surfaces as ConnectionResetError and is not
    folded into a TLS end-of-file as ``ssl.SSLSocket`` does.
    """

    def __init__(
        self,
        fake: FakeFlowmailer,
        address: str | None = None,
        *,
        server_hostname: str = API_HOST,
        source: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.tcp = socket.create_connection(
            (address or fake.addresses[0], fake.port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = ssl.create_default_context(cafile=str(fake.ca_bundle))
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._buffer = b""
        try:
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush()
                    self._fill()
            self._flush()
        except BaseException:
            self.tcp.close()
            raise

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.tcp.close()

    def _flush(self) -> None:
        if data := self._outgoing.read():
            self.tcp.sendall(data)

    def _fill(self) -> None:
        data = self.tcp.recv(65536)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def send(self, *records: bytes) -> None:
        """Write each argument as its own TLS record, all in one TCP write."""
        for data in records:
            self._tls.write(data)
        self._flush()

    def recv(self, size: int = 65536) -> bytes:
        """Decrypted bytes; b"" once the fake closed the connection (with or without a TLS close_notify)."""
        while True:
            try:
                return self._tls.read(size)
            except ssl.SSLWantReadError:
                self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            data = self.recv()
            if not data:
                return b""
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def read_response(self) -> RawResponse:
        status_line = self._line()
        if not status_line:
            raise ConnectionError("the fake closed the connection without answering")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            data = self.recv()
            if not data:
                raise ConnectionError("the fake closed the connection in the middle of a body")
            self._buffer += data
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return RawResponse(status, headers, body)

    def request(
        self,
        method: str,
        target: str,
        *,
        host: str = API_HOST,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> RawResponse:
        self.send(request_bytes(method, target, host=host, headers=headers, body=body))
        return self.read_response()

    def token(self, credential: Credential, *, grant_type: str = "client_credentials") -> RawResponse:
        form = {
            "client_id": credential.client_id,
            "client_secret": credential.client_secret,
            "grant_type": grant_type,
            "scope": "api",
        }
        return self.request(
            "POST",
            "/oauth/token",
            host=LOGIN_HOST,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=urlencode(form).encode(),
        )

    def bearer(self, credential: Credential) -> dict[str, str]:
        answer = self.token(credential)
        assert answer.status == 200, answer
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def message(**fields: Any) -> bytes:
    """A valid SubmitMessage body, with ``fields`` overriding or (as None) removing fields."""
    body: dict[str, Any] = {
        "messageType": "EMAIL",
        "senderAddress": "app@example.test",
        "recipientAddress": "someone@example.test",
        "subject": "Hello",
        "text": "Hi there",
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()
