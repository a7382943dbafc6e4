"""A TCP proxy that delays every byte by a fixed time each way: network latency on loopback, without netem.

It forwards TLS opaquely, so SNI and the certificate check still reach the server behind it. Each chunk read on
one side is written to the other ``delay`` seconds after it arrived, in order: latency, not a bandwidth limit.
A new connection's first bytes from the client wait one more round trip (``2 * delay``): the TCP handshake a real
network charges before anything can be sent, which loopback does not.
Run: python bench/delay_proxy.py DELAY LISTEN_IP:PORT=TARGET_IP:PORT ...  (prints "ready" once listening).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, handshake: float = 0.0
) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds late; the first one ``handshake`` more."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await chunks.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # the latency this proxy exists to add
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            chunks.put_nowait((loop.time() + delay + handshake, data))
            handshake = 0.0
            if not data:
                break
        await delivering
    except OSError:
        delivering.cancel()
        writer.transport.abort()


async def _serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> asyncio.Server:
    async def connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.transport.abort()
            return
        try:
            await asyncio.gather(
                _pump(client_reader, server_writer, delay, handshake=2 * delay),
                _pump(server_reader, client_writer, delay),
            )
        except asyncio.CancelledError:
            pass  # the proxy is stopping: its connections just end
        finally:
            server_writer.transport.abort()
            client_writer.transport.abort()

    return await asyncio.start_server(connection, *listen)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main(delay: float, routes: list[str]) -> None:
    servers = []
    for route in routes:
        listen, _, target = route.partition("=")
        servers.append(await _serve(_address(listen), _address(target), delay))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]), sys.argv[2:]))
