"""AnyioTransport's writes on one connection, over a scripted stream (no network, no clock): the requests queued
while a write is in progress go out together in the next write, in order, each one's answer still its own; when a
joint write fails, only the request whose end it carried is not sent, those before it in it may have been; and
how many times each task is woken (trio's instrument)."""

from __future__ import annotations

import collections
import socket
from typing import Any

import anyio
import pytest
import trio
import trio.abc
import trio.lowlevel

from flowmailer.adapters.anyio_transport import AnyioTransport, _Conn
from flowmailer.core import Ambiguous, Host, NotSent, Origin, TransportResult, WireRequest, WireResponse

ORIGIN = Origin("api.flowmailer.test", 443)


class _Stream:
    """Records each write; a write numbered in ``held`` waits for its gate, one in ``failing`` raises after
    its gate, one in ``stalled`` never returns (the peer reads nothing); answers are what ``answer`` was given.

    It stands for a TLS stream over asyncio's transport, whose buffer tells what a stalled write left unsent:
    all of its bytes unless ``flushed``, then none (all of them went to the kernel)."""

    def __init__(
        self,
        held: set[int] = frozenset(),  # type: ignore[assignment]
        failing: set[int] = frozenset(),  # type: ignore[assignment]
        *,
        stalled: set[int] = frozenset(),  # type: ignore[assignment]
        flushed: bool = False,
    ) -> None:
        self.stalled = stalled
        self.transport_stream = self._transport = self
        self._unsent = 0
        self._flushed = flushed
        self.sent: list[bytes] = []
        self.gates = {n: anyio.Event() for n in held | failing}
        self.writing = {n: anyio.Event() for n in held | failing}
        self.failing = failing
        self._answers = bytearray()
        self._more = anyio.Event()
        self.closed = False

    async def send(self, data: bytes) -> None:
        n = len(self.sent)
        self.sent.append(data)
        if n in self.gates:
            self.writing[n].set()
            await self.gates[n].wait()
        if n in self.failing:
            self._unsent = 0 if self._flushed else len(data)
            raise anyio.BrokenResourceError
        if n in self.stalled:
            self._unsent = 0 if self._flushed else len(data)
            await anyio.Event().wait()  # until the request's deadline cancels it
        await anyio.lowlevel.checkpoint()

    def get_write_buffer_size(self) -> int:
        return self._unsent

    def answer(self, data: bytes) -> None:
        self._answers += data
        self._more.set()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._answers:
            if self.closed:
                raise anyio.ClosedResourceError
            self._more = anyio.Event()
            await self._more.wait()
        data = bytes(self._answers[:max_bytes])
        del self._answers[:max_bytes]
        return data

    async def aclose(self) -> None:
        self.closed = True
        self._more.set()


def _answer(n: int) -> bytes:
    return f"HTTP/1.1 201 Created\r\nLocation: /m/{n}\r\nContent-Length: 0\r\n\r\n".encode()


def _request(n: int) -> WireRequest:
    return WireRequest("POST", Host.API, f"/acct/messages/{n}", body=b'{"n": %d}' % n)


async def _exchanges(
    stream: _Stream, n: int, *, depth: int = 8, limit: float = 1e9
) -> tuple[_Conn, list[TransportResult | None], Any]:
    """The connection over ``stream``, each exchange's result, and a task running exchange ``i`` (within
    ``limit`` seconds)."""
    transport = AnyioTransport(pipeline_depth=depth)
    sock = socket.socket()
    conn = _Conn(("api.flowmailer.test", 443, "127.0.0.1"), stream, 0.0, sock)  # type: ignore[arg-type]
    results: list[TransportResult | None] = [None] * n

    async def one(i: int) -> None:
        request = _request(i)
        pieces = (b"request %d;" % i,)
        conn.in_flight += 1
        now = anyio.current_time()
        results[i] = await transport._exchange(conn, request, ORIGIN, pieces, now + limit, now)

    return conn, results, one


@pytest.mark.anyio
async def test_requests_queued_behind_a_write_in_progress_go_out_in_one_write_each_answer_its_own() -> None:
    stream = _Stream(held={0})
    conn, results, one = await _exchanges(stream, 4)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(one, 0)
        await stream.writing[0].wait()
        for i in (1, 2, 3):  # one at a time: trio runs tasks started together in any order
            tasks.start_soon(one, i)
            await anyio.wait_all_tasks_blocked()
        stream.gates[0].set()
        stream.answer(b"".join(_answer(i) for i in range(4)))
    assert stream.sent == [b"request 0;", b"request 1;request 2;request 3;"]
    for i, result in enumerate(results):
        assert isinstance(result, WireResponse)
        assert dict(result.headers)["Location"] == f"/m/{i}"
    assert conn.broken is None
    conn.sock.close()


@pytest.mark.anyio
async def test_a_joint_write_that_fails_makes_only_its_last_request_not_sent_and_what_follows_it() -> None:
    # Write 0 (request 0) goes out; write 1 carries requests 1 and 2 and fails while request 3 waits behind it.
    stream = _Stream(held={0}, failing={1})
    conn, results, one = await _exchanges(stream, 4)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(one, 0)
        await stream.writing[0].wait()
        for i in (1, 2):
            tasks.start_soon(one, i)
            await anyio.wait_all_tasks_blocked()
        stream.gates[0].set()
        await stream.writing[1].wait()
        tasks.start_soon(one, 3)
        await anyio.wait_all_tasks_blocked()
        stream.gates[1].set()
    assert stream.sent == [b"request 0;", b"request 1;request 2;"]
    written, in_failed_write, its_last, behind = results
    assert isinstance(written, Ambiguous)  # written in full, no answer: never resent unreconciled
    assert isinstance(in_failed_write, Ambiguous)  # its bytes may all have gone before the failure
    assert isinstance(its_last, NotSent)  # its end was in the failed write: the server cannot act on it
    assert isinstance(behind, NotSent)
    assert "before the request was written" in behind.reason
    assert conn.broken is not None
    conn.sock.close()


@pytest.mark.anyio
@pytest.mark.parametrize("flushed", [True, False], ids=["nothing left unsent", "bytes left unsent"])
async def test_a_write_that_times_out_with_nothing_left_unsent_may_have_delivered_its_request(flushed: bool) -> None:
    """asyncio gives a write's bytes to its transport before it waits for the buffer to drain. A write whose
    deadline passes in that wait, with the buffer empty, may have delivered its request whole: Ambiguous,
    reconciled. With bytes still buffered (the request's end among them), they go with the connection: NotSent.
    (The deadline is a short real one: the write never returns, so only the deadline ends it.)"""
    stream = _Stream(stalled={0}, flushed=flushed)
    conn, results, one = await _exchanges(stream, 1, limit=0.05)
    await one(0)
    assert stream.sent == [b"request 0;"]
    result = results[0]
    if flushed:
        assert isinstance(result, Ambiguous)
        assert "may have been written in full" in result.reason
    else:
        assert isinstance(result, NotSent)
        assert "timed out writing" in result.reason
    assert conn.broken is not None
    conn.sock.close()


@pytest.mark.anyio
async def test_a_write_that_finds_the_connection_broken_is_not_sent_whatever_the_buffer() -> None:
    """A broken connection fails the write before its bytes go to the transport (or drops them with it): only a
    timeout in the wait after the hand-over can leave the request whole."""
    stream = _Stream(failing={0}, flushed=True)
    conn, results, one = await _exchanges(stream, 1)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(one, 0)
        await stream.writing[0].wait()
        stream.gates[0].set()
    assert isinstance(results[0], NotSent)
    conn.sock.close()


@pytest.mark.anyio
async def test_a_request_cancelled_while_queued_is_never_written_and_leaves_the_connection_whole() -> None:
    stream = _Stream(held={0})
    conn, results, one = await _exchanges(stream, 3)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(one, 0)
        await stream.writing[0].wait()
        async with anyio.create_task_group() as doomed:
            doomed.start_soon(one, 1)
            await anyio.wait_all_tasks_blocked()
            doomed.cancel_scope.cancel()  # request 1 is queued behind write 0, not taken by any write
        tasks.start_soon(one, 2)
        await anyio.wait_all_tasks_blocked()
        stream.gates[0].set()
        stream.answer(_answer(0) + _answer(2))
    assert stream.sent == [b"request 0;", b"request 2;"]
    assert results[1] is None
    for i in (0, 2):
        result = results[i]
        assert isinstance(result, WireResponse)
        assert dict(result.headers)["Location"] == f"/m/{i}"
    assert conn.broken is None
    conn.sock.close()


@pytest.mark.anyio
async def test_with_answers_due_a_write_waits_one_turn_so_requests_sent_in_that_turn_join_it() -> None:
    stream = _Stream()
    conn, results, one = await _exchanges(stream, 3)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(one, 0)
        await anyio.wait_all_tasks_blocked()  # written, its answer due
        tasks.start_soon(one, 1)
        tasks.start_soon(one, 2)  # in the same turn (trio runs the two in either order)
        await anyio.wait_all_tasks_blocked()
        assert stream.sent[0] == b"request 0;"
        assert len(stream.sent) == 2  # one write for both
        assert sorted(stream.sent[1].split(b";")) == [b"", b"request 1", b"request 2"]
        order = [int(part.split()[1]) for part in stream.sent[1].decode().rstrip(";").split(";")]
        stream.answer(b"".join(_answer(i) for i in [0, *order]))
    for i, result in enumerate(results):
        assert isinstance(result, WireResponse)
        assert dict(result.headers)["Location"] == f"/m/{i}"
    conn.sock.close()


class _Steps(trio.abc.Instrument):
    """How many times each task ran (trio's instrument: one step per resumption)."""

    def __init__(self) -> None:
        self.steps: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name] += 1


@pytest.mark.parametrize("answers", ["together", "one by one"])
def test_a_request_written_by_anothers_write_is_woken_once_for_its_answer(answers: str) -> None:
    """Seven requests queued behind a write in progress go out in the next write, written by the first of them;
    each of the others then runs once more, when its answer is there: not once for the write and again for its
    turn. Together (one read holds all the answers) each is given its answer by the read before it; one by one,
    each is woken at its turn and reads its own. Counted by trio's instrument, one step per resumption."""
    steps = _Steps()

    async def main() -> list[TransportResult | None]:
        stream = _Stream(held={0})
        conn, results, one = await _exchanges(stream, 8)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(one, 0, name="request 0")
            await stream.writing[0].wait()
            for i in range(1, 8):  # one at a time: trio runs tasks started together in any order
                tasks.start_soon(one, i, name=f"request {i}")
                await anyio.wait_all_tasks_blocked()
            before = dict(steps.steps)
            stream.gates[0].set()
            if answers == "together":
                await anyio.wait_all_tasks_blocked()
                stream.answer(b"".join(_answer(i) for i in range(8)))
            else:
                for i in range(8):
                    await anyio.wait_all_tasks_blocked()
                    stream.answer(_answer(i))
            await anyio.wait_all_tasks_blocked()
            woken = {name: n - before[name] for name, n in steps.steps.items() if name in before}
        assert stream.sent == [b"request 0;", b"".join(b"request %d;" % i for i in range(1, 8))]
        # Request 1 wrote the batch (woken to write it, then at its turn); each request it carried runs once when
        # its answer is there, or, one by one, once at its turn and once when its answer's bytes arrive.
        carried = {i: woken[f"request {i}"] for i in range(2, 8)}
        assert carried == dict.fromkeys(range(2, 8), 1 if answers == "together" else 2), woken
        conn.sock.close()
        return results

    results = trio.run(main, instruments=[steps])
    assert all(isinstance(r, WireResponse) for r in results)
