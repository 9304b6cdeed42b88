"""The panel API under load, and how long a change takes to reach a webhook.

A real ``mailgate serve`` (SQLite, loopback) with one webhook pointing at a receiver in
this process.  ``tickets`` requests open tickets through the API (each with its
acknowledgement and operator notice, each writing ticket.created and two
article.created events); the receiver stamps each event's arrival, and the figure is
the p50/p99 of arrival minus the event's ``created_at`` (the commit's clock).  Then
``seconds`` of ``GET /api/v1/tickets/{number}`` with ``concurrency`` clients in
flight, over the tickets made: requests per second and the p50/p99 latency.

    .venv/bin/python -m bench.api [--tickets 200] [--seconds 10] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.process import Mailgate
from tests.support import free_port

SECRET = "bench-secret-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def receiver(port: int, arrivals: dict[str, float]) -> web.AppRunner:
    async def hook(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        created = datetime.fromisoformat(body["created_at"]).timestamp()
        arrivals.setdefault(body["id"], time.time() - created)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def run(args: argparse.Namespace, mailgate: Mailgate, hook_port: int) -> None:
    arrivals: dict[str, float] = {}
    runner = await receiver(hook_port, arrivals)
    base = f"http://127.0.0.1:{mailgate.http_port}/api/v1"
    request = {
        "account": "bench",
        "from": "owner@customer.example",
        "subject": "Bench request",
        "body": "Please look at my server.\n" * 20,
    }
    async with aiohttp.ClientSession(headers=AUTH) as client:
        for _ in range(args.tickets):
            async with client.post(base + "/tickets", json=request) as r:
                assert r.status == 201, await r.text()
        expected = args.tickets * 3
        deadline = time.monotonic() + 120
        while len(arrivals) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        lags = list(arrivals.values())
        print(
            f"webhooks: {len(lags)}/{expected} events, commit->delivery "
            f"p50 {statistics.median(lags) * 1000:.0f} ms, p99 {pct(lags, 0.99) * 1000:.0f} ms"
        )
        latencies: list[float] = []
        stop = time.monotonic() + args.seconds

        async def reader() -> None:
            while time.monotonic() < stop:
                number = random.randint(1, args.tickets)
                started = time.perf_counter()
                async with client.get(f"{base}/tickets/{number}") as r:
                    await r.read()
                    assert r.status == 200
                latencies.append(time.perf_counter() - started)

        began = time.monotonic()
        await asyncio.gather(*(reader() for _ in range(args.concurrency)))
        elapsed = time.monotonic() - began
    print(
        f"GET /tickets/{{number}}: {len(latencies) / elapsed:.0f} requests/s "
        f"({args.concurrency} clients, {elapsed:.1f} s), p50 "
        f"{statistics.median(latencies) * 1000:.1f} ms, p99 {pct(latencies, 0.99) * 1000:.1f} ms"
    )
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    hook_port = free_port()
    os.environ["MAILGATE_API_TOKENS"] = f"bench:{SECRET}"
    os.environ["BENCH_HOOK_SECRET"] = "bench-hook-secret-0123456789"
    with tempfile.TemporaryDirectory() as tmp:
        mailgate = Mailgate(Path(tmp))
        mailgate.write_config(
            '[api]\ntokens_env = "MAILGATE_API_TOKENS"\n'
            "[[webhooks]]\n"
            f'url = "http://127.0.0.1:{hook_port}/hook"\nsecret_env = "BENCH_HOOK_SECRET"\n'
        )
        mailgate.start()
        try:
            for command in (
                ("accounts", "add", "bench", "--admin", "owner@customer.example"),
                ("operators", "add", "op@helpdesk.example", "--queue", "support"),
            ):
                assert mailgate.cli(*command).returncode == 0
            asyncio.run(run(args, mailgate, hook_port))
        finally:
            mailgate.stop()


if __name__ == "__main__":
    main()
