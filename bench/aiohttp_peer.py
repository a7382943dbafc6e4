"""The aiohttp peer of bench_latency.py: a real asyncio HTTP client, run by the Python of bench/.venv-aiohttp.

aiohttp is not a dependency of flowmailer, so this runs as a child process of that venv's Python (see
bench_latency.py, which creates nothing itself; `just bench latency` makes the venv). It reads one JSON object on
stdin (addresses, port, host, path, token, body, CA bundle, messages, connections), POSTs the body ``messages``
times from ``connections`` workers over one ``TCPConnector(limit=connections)``, checks every answer is 201, and
prints ``{"seconds": ..., "cpu": ...}``: wall time and its own CPU time for the timed part.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import resource
import ssl
import sys
import time
from typing import Any


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(job: dict[str, Any]) -> dict[str, float]:
    aiohttp: Any = importlib.import_module("aiohttp")  # not in the project's venv, so mypy is not told of it
    context = ssl.create_default_context(cafile=job["ca_bundle"])
    headers = {
        "Host": job["host"],
        "Accept": job["media_type"],
        "Content-Type": job["media_type"],
        "Authorization": f"Bearer {job['token']}",
    }
    body = job["body"].encode()
    addresses = job["addresses"]
    connections = job["connections"]
    connector = aiohttp.TCPConnector(limit=connections, ssl=context)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(address: str) -> None:
            url = f"https://{address}:{job['port']}{job['path']}"
            async with session.post(url, data=body, headers=headers, server_hostname=job["host"]) as answer:
                await answer.read()
                if answer.status != 201:
                    raise RuntimeError(f"HTTP {answer.status}")

        await asyncio.gather(*(post(addresses[k % len(addresses)]) for k in range(connections)))  # warm
        work = iter(range(job["messages"]))

        async def worker(address: str) -> None:
            for _ in work:
                await post(address)

        started, cpu0 = time.perf_counter(), cpu()
        await asyncio.gather(*(worker(addresses[k % len(addresses)]) for k in range(connections)))
        return {"seconds": time.perf_counter() - started, "cpu": cpu() - cpu0}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.load(sys.stdin)))))
